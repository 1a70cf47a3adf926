/**
 * Kernel benchmarks: matmul GFLOP/s (square sizes and the model's shapes),
 * every WebGPU matmul variant at each size (`kind: "matmul_variant"`, the
 * table to tune ops/_matmul_variants.ts from), the autotuner's choice per
 * shape (`kind: "matmul_tune"`), a sweep over every tile the generator can
 * build (`kind: "matmul_sweep"`, opt-in), attention forward + backward (when
 * ops/attention.ts exists), and dispatch overhead (µs per dispatch recorded
 * in one pass, flushed each, synced each). Each result is one JSON object
 * naming the `device` and the `kind`.
 *
 * ```sh
 * deno run -A bench/ops_bench.ts --json
 * deno run -A bench/ops_bench.ts --device cpu --sizes 128,256 --json
 * deno run -A bench/ops_bench.ts --only variants --variant-sizes 64,128 --json
 * ```
 *
 * `webseq bench --ops` runs the same through {@linkcode runOpsBench}.
 * Timing: warm-up iterations, then `await backend.sync()` around a loop of N
 * iterations, N chosen so the loop lasts about `minTimeMs`.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { type GpuBackend, sharedGpuBackend } from "../gpu/backend.ts";
import { isSoftwareAdapter } from "../gpu/adapter.ts";
import * as OPS from "../ops/mod.ts";
import {
  addScalar,
  autotuneMatmul,
  configureMatmul,
  matmul,
  MATMUL_VARIANTS,
  type MatmulOptions,
  type MatmulShape,
  matmulSplitKFor,
  type MatmulTarget,
  type MatmulTile,
  matmulVariantFits,
  matmulVariantFor,
  msPerCall,
  sum,
  tileName,
  tileWorkgroupBytes,
  useMatmulVariant,
  warmCalls,
} from "../ops/mod.ts";
import { matmulVariant } from "../ops/_matmul_variants.ts";
import { CPU } from "../tensor/cpu_backend.ts";
import { makeRng } from "../tensor/rng.ts";
import { scope, type Tensor, tensor } from "../tensor/tensor.ts";
import type { Backend } from "../tensor/types.ts";
import { DEFAULT_CONFIG, PRESETS } from "../nn/config.ts";
import { errorLine } from "../tensor/errors.ts";

/** Options of {@linkcode runOpsBench}. */
export interface OpsBenchOptions {
  /** Backend to measure; default the WebGPU backend when an adapter exists, else the CPU. */
  backend?: Backend;
  /** Square matmul sizes; default 256, 1024, 4096 (4096 only on a hardware GPU unless `large`). */
  sizes?: number[];
  /** Run the largest sizes (and attention on software adapters) too. */
  large?: boolean;
  /** Tokens per batch (B·T) of the model-shape matmuls; default 16·32 = 512 (64 on software). */
  tokens?: number;
  /** Approximate duration of each timed loop in milliseconds; default 300. */
  minTimeMs?: number;
  /**
   * Which groups to run; default all but `tune`, and `variants` only on a
   * hardware GPU (or with `large`).
   */
  only?: OpsBenchGroup[];
  /** Square sizes of the per-variant table; default 256, 1024, 4096 (64, 128 on software). */
  variantSizes?: number[];
  /** Variants of the table (default every registered one the adapter fits). */
  variants?: string[];
  /** Operand layouts of the table: "NN", "NT" (b transposed), "TN", "TT"; default NN, NT. */
  layouts?: string[];
  /** Time budget of the tile sweep in seconds (default 60). */
  sweepSeconds?: number;
  /**
   * What the sweep multiplies: "f32", "f16" (f16 operands, f32 accumulation),
   * "f16s" (the same with the slices staged as f16 and widened at each
   * product, the form before session 12) and/or "f16acc" (f16 FMAs over
   * groups of 16 k; "f16acc32", "f16acc64" over deeper groups: fewer
   * conversions); default f32. The f16 forms need `shader-f16`.
   */
  sweepPrecisions?: SweepPrecision[];
  /** Tiles the sweep times, in this order (default every generator tile, likeliest first). */
  sweepTiles?: string[];
}

/** Benchmark groups. */
export type OpsBenchGroup =
  | "matmul"
  | "model"
  | "attention"
  | "dispatch"
  | "variants"
  | "tune"
  | "sweep";

/**
 * Every tile the generator can build within the adapter's limits, beyond the
 * registry: BM, BN in 32–256, TM, TN in 4–16 (at most 128 outputs per
 * thread), BK 8–32, single or double buffered, unpadded or padded slices (each
 * padded tile right after its unpadded twin), 64 to `maxInvocations`
 * threads. Ordered by closeness to the classic SIMT GEMM shape (256
 * threads, 8×8 outputs each, square), then by tile area: the likelier fast ones
 * first, as the sweep stops at its time budget.
 */
export function sweepTiles(target: MatmulTarget): MatmulTile[] {
  const out: MatmulTile[] = [];
  for (const BM of [32, 64, 128, 256]) {
    for (const BN of [32, 64, 128, 256]) {
      for (const TM of [4, 8, 16]) {
        for (const TN of [4, 8, 16]) {
          for (const BK of [8, 16, 32]) {
            for (const double of [true, false]) {
              for (const pad of [false, true]) {
                const t: MatmulTile = pad
                  ? { BM, BN, BK, TM, TN, double, pad }
                  : { BM, BN, BK, TM, TN, double };
                const threads = (BM / TM) * (BN / TN);
                if (TM > BM || TN > BN || TM * TN > 128 || threads < 64) continue;
                if (threads > target.maxInvocations) continue;
                if (tileWorkgroupBytes(t) > target.maxWorkgroupBytes) continue;
                out.push(t);
              }
            }
          }
        }
      }
    }
  }
  const off = (t: MatmulTile) =>
    Math.abs(Math.log2((t.BM / t.TM) * (t.BN / t.TN)) - 8) + Math.abs(Math.log2(t.TM * t.TN) - 6) +
    0.5 * (Math.abs(Math.log2(t.BM / t.BN)) + Math.abs(Math.log2(t.TM / t.TN)));
  return out.sort((a, b) => off(a) - off(b) || b.BM * b.BN - a.BM * a.BN);
}

/** The arithmetic of a sweep (see `OpsBenchOptions.sweepPrecisions`). */
export type SweepPrecision = (typeof SWEEP_PRECISIONS)[number];

/** Every {@linkcode SweepPrecision}. */
export const SWEEP_PRECISIONS = [
  "f32",
  "f16",
  "f16s",
  "f16acc",
  "f16acc32",
  "f16acc64",
] as const;

/** One result line: `kind` says what was measured; `device` names the adapter or CPU. */
export interface OpsBenchLine {
  /** "matmul", "attention" or "dispatch". */
  kind: string;
  /** `backend.description`. */
  device: string;
  /** "webgpu" or "cpu". */
  backend: string;
  /** Measured values and labels. */
  [field: string]: string | number | boolean;
}

function isSoftware(backend: Backend): boolean {
  if (backend.kind === "cpu") return true;
  return isSoftwareAdapter((backend as GpuBackend).adapterInfo);
}

function randomTensor(shape: number[], backend: Backend, seed: number): Tensor {
  const rng = makeRng(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = rng() * 2 - 1;
  return tensor(data, shape, { backend });
}

/**
 * Times `fn` (which records work and disposes what it makes): warm-up runs,
 * then N runs between two syncs. Returns ms per run and N.
 */
export async function timeLoop(
  backend: Backend,
  fn: () => void,
  minTimeMs = 300,
  warmup = 2,
): Promise<{ ms: number; iters: number }> {
  for (let i = 0; i < warmup; i++) fn();
  await backend.sync();
  let t0 = performance.now();
  fn();
  await backend.sync();
  const once = Math.max(1e-3, performance.now() - t0);
  const iters = Math.max(1, Math.min(1000, Math.ceil(minTimeMs / once)));
  if (iters === 1) return { ms: once, iters: 1 };
  t0 = performance.now();
  for (let i = 0; i < iters; i++) fn();
  await backend.sync();
  return { ms: (performance.now() - t0) / iters, iters };
}

async function benchMatmul(
  backend: Backend,
  label: string,
  m: number,
  k: number,
  n: number,
  opts: MatmulOptions,
  minTimeMs: number,
): Promise<OpsBenchLine> {
  const a = randomTensor(opts.transA ? [k, m] : [m, k], backend, 1);
  const b = randomTensor(opts.transB ? [n, k] : [k, n], backend, 2);
  const warmup = backend.kind === "cpu" || isSoftware(backend) ? 1 : 3;
  const run = () => matmul(a, b, opts).dispose();
  const { ms, iters } = await timeLoop(backend, run, minTimeMs, warmup);
  // GPU time per call from timestamps (the wall clock above includes a submit per call)
  const gpuMs = backend.kind === "webgpu" && !isSoftware(backend)
    ? await msPerCall(backend as GpuBackend, run, Math.min(iters, 50), "matmul")
    : null;
  a.dispose();
  b.dispose();
  const line: OpsBenchLine = {
    kind: "matmul",
    device: backend.description,
    backend: backend.kind,
    label,
    m,
    k,
    n,
    transA: Boolean(opts.transA),
    transB: Boolean(opts.transB),
    iters,
    ms: round(ms, 4),
    gflops: round((2 * m * n * k) / (ms * 1e6), 2),
  };
  if (backend.kind === "webgpu") {
    const shape = { M: m, N: n, K: k, transA: opts.transA, transB: opts.transB };
    line.variant = matmulVariantFor(shape);
    line.split_k = matmulSplitKFor(shape);
    if (gpuMs?.timing === "timestamp" && Number.isFinite(gpuMs.ms)) {
      line.gpu_ms = round(gpuMs.ms, 4);
      line.gpu_gflops = round((2 * m * n * k) / (gpuMs.ms * 1e6), 2);
    }
  }
  return line;
}

/**
 * One variant on one square size and layout: wall-clock ms per call (N calls
 * between two syncs), GPU ms per call from timestamp queries when the
 * adapter has them, and the first call's ms (pipeline compile included).
 */
async function benchVariant(
  backend: GpuBackend,
  variant: string,
  size: number,
  layout: string,
  minTimeMs: number,
): Promise<OpsBenchLine> {
  const transA = layout[0] === "T", transB = layout[1] === "T";
  const m = size, k = size, n = size;
  const a = randomTensor(transA ? [k, m] : [m, k], backend, 1);
  const b = randomTensor(transB ? [n, k] : [k, n], backend, 2);
  const flops = 2 * m * n * k;
  const base: OpsBenchLine = {
    kind: "matmul_variant",
    device: backend.description,
    backend: backend.kind,
    variant,
    label: "square",
    layout,
    m,
    k,
    n,
  };
  const run = () => matmul(a, b, { transA, transB }).dispose();
  useMatmulVariant(variant);
  try {
    await backend.sync();
    const t0 = performance.now();
    run();
    await backend.sync();
    const firstMs = performance.now() - t0;
    const { ms, iters } = await timeLoop(backend, run, minTimeMs, 1);
    const line: OpsBenchLine = {
      ...base,
      iters,
      ms: round(ms, 4),
      gflops: round(flops / (ms * 1e6), 2),
      first_ms: round(firstMs, 1),
    };
    if (backend.beginProfile()) {
      const reps = Math.max(1, Math.min(iters, 50));
      for (let i = 0; i < reps; i++) run();
      const prof = (await backend.endProfile())["matmul"];
      if (prof && prof.dispatches > 0 && prof.ms > 0) {
        const gpuMs = prof.ms / prof.dispatches;
        line.gpu_ms = round(gpuMs, 4);
        line.gpu_gflops = round(flops / (gpuMs * 1e6), 2);
      }
    }
    return line;
  } catch (err) {
    return { ...base, skipped: `failed: ${errorLine(err)}` };
  } finally {
    useMatmulVariant(null);
    a.dispose();
    b.dispose();
  }
}

/** The per-variant table: every variant × size × layout. */
async function* benchVariants(
  backend: Backend,
  opts: OpsBenchOptions,
  minTimeMs: number,
): AsyncGenerator<OpsBenchLine> {
  if (backend.kind !== "webgpu") return;
  const gpu = backend as GpuBackend;
  const target = configureMatmul(gpu);
  const sizes = opts.variantSizes ?? (target.software ? [64, 128] : [256, 1024, 4096]);
  const names = opts.variants ?? MATMUL_VARIANTS.map((v) => v.name);
  for (const size of sizes) {
    for (const layout of opts.layouts ?? ["NN", "NT"]) {
      for (const name of names) {
        if (!matmulVariantFits(name, target)) {
          yield {
            kind: "matmul_variant",
            device: backend.description,
            backend: backend.kind,
            variant: name,
            label: "square",
            layout,
            m: size,
            k: size,
            n: size,
            skipped: "above the adapter's workgroup limits",
          };
          continue;
        }
        yield await benchVariant(gpu, name, size, layout, minTimeMs);
      }
    }
  }
}

/** The autotuner on the square sizes and the model's shapes: its choice and each variant's ms. */
async function* benchTune(
  backend: Backend,
  shapes: { label: string; shape: MatmulShape }[],
  opts: OpsBenchOptions,
): AsyncGenerator<OpsBenchLine> {
  if (backend.kind !== "webgpu") return;
  const gpu = backend as GpuBackend;
  for (const { label, shape } of shapes) {
    const [r] = await autotuneMatmul(gpu, [shape], {
      variants: opts.variants,
      force: true,
      minTimeMs: opts.minTimeMs,
    });
    const ms: Record<string, number> = {};
    for (const [name, t] of Object.entries(r.ms)) ms[name] = round(t, 4);
    const flops = 2 * shape.M * shape.N * shape.K * (shape.P ?? 1);
    yield {
      kind: "matmul_tune",
      device: backend.description,
      backend: backend.kind,
      label,
      m: shape.M,
      k: shape.K,
      n: shape.N,
      transA: Boolean(shape.transA),
      transB: Boolean(shape.transB),
      variant: r.variant,
      timing: r.timing,
      ms: round(r.ms[r.variant] ?? NaN, 4),
      gflops: round(flops / ((r.ms[r.variant] ?? NaN) * 1e6), 2),
      variants_ms: JSON.stringify(ms),
    };
  }
}

/**
 * The tile sweep: every {@linkcode sweepTiles} tile on square matmuls (default
 * 4096; 128 on software adapters), NN and NT, GPU time from timestamp queries
 * (else wall clock) over 3 calls after a compiling one, until the time budget
 * is spent; then one `matmul_sweep_best` line per size and layout with the 5
 * fastest — what to register in ops/_matmul_variants.ts.
 */
async function* benchSweep(backend: Backend, opts: OpsBenchOptions): AsyncGenerator<OpsBenchLine> {
  if (backend.kind !== "webgpu") return;
  const gpu = backend as GpuBackend;
  const target = configureMatmul(gpu);
  // software adapters take minutes to compile the big unrolled tiles: the least code first there
  const code = (t: MatmulTile) => t.TM * t.TN * t.BK;
  const tiles = opts.sweepTiles
    ? opts.sweepTiles.map((name) => matmulVariant(name).tile).filter((t) => t !== null)
    : target.software
    ? sweepTiles(target).sort((x, y) => code(x) - code(y))
    : sweepTiles(target);
  const sizes = opts.variantSizes ?? (target.software ? [128] : [4096]);
  const layouts = opts.layouts ?? ["NN", "NT"];
  const wanted = opts.sweepPrecisions ?? ["f32"];
  const precisions = wanted.filter((p) => p === "f32" || gpu.hasF16);
  // the budget is shared evenly by the size × layout × precision combinations
  const share = ((opts.sweepSeconds ?? 60) * 1000) /
    Math.max(1, sizes.length * layouts.length * precisions.length);
  const base = { kind: "matmul_sweep", device: backend.description, backend: backend.kind };
  for (const precision of wanted.filter((p) => !precisions.includes(p))) {
    yield { ...base, precision, skipped: "the adapter has no shader-f16" };
  }
  for (const size of sizes) {
    for (const layout of layouts) {
      for (const precision of precisions) {
        yield* sweepOne(gpu, tiles, size, layout, precision, share, base);
      }
    }
  }
}

/** The sweep of one size, layout and precision within `share` milliseconds. */
async function* sweepOne(
  gpu: GpuBackend,
  tiles: MatmulTile[],
  size: number,
  layout: string,
  precision: SweepPrecision,
  share: number,
  base: { kind: string; device: string; backend: string },
): AsyncGenerator<OpsBenchLine> {
  const transA = layout[0] === "T", transB = layout[1] === "T";
  let a = randomTensor([size, size], gpu, 1), b = randomTensor([size, size], gpu, 2);
  if (precision !== "f32") {
    const [ah, bh] = [OPS.cast(a, "f16"), OPS.cast(b, "f16")];
    a.dispose(), b.dispose();
    [a, b] = [ah, bh];
  }
  const flops = 2 * size ** 3;
  const acc = precision.startsWith("f16acc") ? "f16" as const : "f32" as const;
  const group = precision === "f16acc32"
    ? 32 as const
    : precision === "f16acc64"
    ? 64 as const
    : 16;
  const stage = precision === "f16s" ? "f16" as const : "f32" as const;
  const run = () =>
    (precision === "f32"
      ? matmul(a, b, { transA, transB })
      : OPS.matmulF16(a, b, { transA, transB, acc, stage, group })).dispose();
  const done: { name: string; gflops: number }[] = [];
  const deadline = performance.now() + share;
  let tried = 0;
  try {
    for (const t of tiles) {
      if (performance.now() > deadline) break;
      tried++;
      useMatmulVariant(t);
      try {
        run(); // compiles
        await gpu.sync();
        const op = precision === "f32" ? "matmul" : "matmul_f16";
        // 3 timed calls (their median) after ~25 ms of untimed ones: the compile left the GPU
        // idle, and an idle GPU's clocks come up with load (ops/matmul.ts msPerCall)
        const probe = await msPerCall(gpu, run, 1, op);
        const { ms, timing } = await msPerCall(gpu, run, 3, op, warmCalls(probe.ms));
        const gflops = round(flops / (ms * 1e6), 2);
        done.push({ name: tileName(t), gflops });
        const line = { ...base, tile: tileName(t), size, layout, precision };
        yield { ...line, timing, ms: round(ms, 4), gflops };
      } catch (err) {
        yield { ...base, tile: tileName(t), size, layout, precision, skipped: errorLine(err) };
      } finally {
        useMatmulVariant(null);
      }
    }
  } finally {
    a.dispose();
    b.dispose();
  }
  done.sort((x, y) => y.gflops - x.gflops);
  yield {
    ...base,
    kind: "matmul_sweep_best",
    size,
    layout,
    precision,
    tried,
    of: tiles.length,
    best: JSON.stringify(done.slice(0, 5)),
  };
}

function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

async function benchDispatch(backend: Backend, minTimeMs: number): Promise<OpsBenchLine[]> {
  const x = tensor(new Float32Array(256), [256], { backend });
  const tiny = () => addScalar(x, 1).dispose();
  const lines: OpsBenchLine[] = [];
  const line = (mode: string, n: number, ms: number): OpsBenchLine => ({
    kind: "dispatch",
    device: backend.description,
    backend: backend.kind,
    mode,
    dispatches: n,
    us_per_dispatch: round((ms * 1000) / n, 2),
  });
  for (let i = 0; i < 20; i++) tiny();
  await backend.sync();
  // one pass: everything recorded, one submit at the sync
  const n1 = 2000;
  let t0 = performance.now();
  for (let i = 0; i < n1; i++) tiny();
  await backend.sync();
  lines.push(line("one_pass", n1, performance.now() - t0));
  if (backend.kind === "cpu") return lines;
  // a submit after each dispatch, one wait at the end
  const n2 = 300;
  t0 = performance.now();
  for (let i = 0; i < n2; i++) {
    tiny();
    backend.flush();
  }
  await backend.sync();
  lines.push(line("flush_each", n2, performance.now() - t0));
  // a full round trip (submit + wait) per dispatch
  const n3 = Math.max(10, Math.min(200, Math.round(minTimeMs / 2)));
  t0 = performance.now();
  for (let i = 0; i < n3; i++) {
    tiny();
    await backend.sync();
  }
  lines.push(line("sync_each", n3, performance.now() - t0));
  x.dispose();
  return lines;
}

// deno-lint-ignore no-explicit-any
type AnyFn = (...args: any[]) => any;

/**
 * Attention forward + backward through `attention()` of ops/mod.ts, when it
 * exists.
 */
async function benchAttention(
  backend: Backend,
  minTimeMs: number,
  large: boolean,
): Promise<OpsBenchLine[]> {
  const base = { kind: "attention", device: backend.description, backend: backend.kind };
  // looked up by name so this file builds before ops/mod.ts exports attention()
  const fn = (OPS as Record<string, unknown>).attention as AnyFn | undefined;
  if (typeof fn !== "function") {
    return [{ ...base, skipped: "ops/mod.ts exports no attention()" }];
  }
  const C = DEFAULT_CONFIG.d_model, H = DEFAULT_CONFIG.n_heads, D = C / H;
  if (backend.kind !== "cpu" && isSoftware(backend) && !large) {
    return [{ ...base, skipped: "software adapter (pass --large to run)" }];
  }
  // [B, T] with small's heads; on a GPU also [64, 128] with base's 8 heads (a base batch)
  const shapes = isSoftware(backend) ? [[2, 16]] : [[16, 32], [16, 128], [8, 512], [64, 128, 8]];
  // on a GPU: the row kernels, the per-head matmuls and each registered tile of a warp or more
  // that fits (forced by name; a tile that does not fit the backward runs the first one that
  // does there)
  const kernels = backend.kind === "webgpu"
    ? [
      "rows",
      "mm",
      ...OPS.fittingAttentionTiles("fwd", D, OPS.configureMatmul(backend as GpuBackend)).filter(
        (n) => OPS.attentionTileThreads(OPS.parseAttentionTileName(n)!) >= 32,
      ),
    ]
    : ["cpu"];
  const lines: OpsBenchLine[] = [];
  for (const kernel of kernels) {
    if (kernel !== "cpu") OPS.useAttentionKernel(kernel);
    try {
      lines.push(...await benchAttentionShapes(backend, fn, shapes, { H, D, kernel, minTimeMs }));
    } finally {
      if (kernel !== "cpu") OPS.useAttentionKernel(null);
    }
  }
  return lines;
}

/** {@linkcode benchAttention} of one kernel choice over `shapes` ([B, T] pairs). */
async function benchAttentionShapes(
  backend: Backend,
  fn: AnyFn,
  shapes: number[][],
  o: { H: number; D: number; kernel: string; minTimeMs: number },
): Promise<OpsBenchLine[]> {
  const { D, kernel, minTimeMs } = o;
  const base = { kind: "attention", device: backend.description, backend: backend.kind, kernel };
  const lines: OpsBenchLine[] = [];
  for (const [B, T, heads] of shapes) {
    const H = heads ?? o.H;
    const q = randomTensor([B, H, T, D], backend, 3);
    const k = randomTensor([B, H, T, D], backend, 4);
    const v = randomTensor([B, H, T, D], backend, 5);
    for (const t of [q, k, v]) t.requiresGrad = true;
    const step = () =>
      scope(() => {
        sum(fn(q, k, v, { causal: true }) as Tensor).backward();
        for (const t of [q, k, v]) {
          t.grad?.dispose();
          t.grad = null;
        }
      });
    try {
      const { ms, iters } = await timeLoop(backend, step, minTimeMs, 2);
      // forward QKᵀ and PV (4·B·H·T²·D), backward twice that; causal halves the useful work
      const flops = 3 * 4 * B * H * T * T * D;
      lines.push({
        ...base,
        label: "causal_self_fwd_bwd",
        B,
        H,
        T,
        D,
        iters,
        ms: round(ms, 4),
        gflops_dense_equiv: round(flops / (ms * 1e6), 2),
      });
    } catch (err) {
      lines.push({ ...base, B, H, T, D, skipped: `attention() failed: ${errorLine(err)}` });
    } finally {
      for (const t of [q, k, v]) t.dispose();
    }
  }
  return lines;
}

/** Runs the kernel benchmarks, yielding one line per measurement. */
export async function* runOpsBench(opts: OpsBenchOptions = {}): AsyncGenerator<OpsBenchLine> {
  const backend = opts.backend ?? (await sharedGpuBackend()) ?? CPU;
  const minTimeMs = opts.minTimeMs ?? 300;
  const software = isSoftware(backend);
  // the adapter's limits, and split K on hardware GPUs, as train and bench have them
  if (backend.kind === "webgpu") configureMatmul(backend as GpuBackend);
  const want = (g: OpsBenchGroup) =>
    opts.only
      ? opts.only.includes(g)
      : g === "variants"
      ? backend.kind === "webgpu" && (!software || Boolean(opts.large))
      : g !== "tune" && g !== "sweep";
  if (want("dispatch")) {
    for (const l of await benchDispatch(backend, minTimeMs)) yield l;
  }
  if (want("matmul")) {
    for (const s of opts.sizes ?? [256, 1024, 4096]) {
      if (s >= 4096 && software && !opts.large) {
        yield {
          kind: "matmul",
          device: backend.description,
          backend: backend.kind,
          label: "square",
          m: s,
          k: s,
          n: s,
          skipped: "software backend (pass --large to run)",
        };
        continue;
      }
      yield await benchMatmul(backend, "square", s, s, s, {}, minTimeMs);
    }
  }
  const BT = opts.tokens ?? (software && !opts.large ? 64 : 16 * 32);
  const presets = software && !opts.large ? ["small"] : ["small", "base"];
  const modelShapes: [string, number, number, number, MatmulOptions][] = [];
  for (const name of presets) {
    const cfg = { ...DEFAULT_CONFIG, ...PRESETS[name] };
    const C = cfg.d_model, F = cfg.d_ff, V = cfg.vocab_size;
    // Linear weights are [out, in] (PyTorch layout): y = x·Wᵀ, dW = dyᵀ·x
    modelShapes.push(
      [`${name}.qkv x·Wᵀ`, BT, C, 3 * C, { transB: true }],
      [`${name}.ffn_up x·Wᵀ`, BT, C, F, { transB: true }],
      [`${name}.ffn_down x·Wᵀ`, BT, F, C, { transB: true }],
      [`${name}.lm_head x·Wᵀ`, BT, C, V, { transB: true }],
      [`${name}.lm_head dW=dyᵀ·x`, V, BT, C, { transA: true }],
      [`${name}.lm_head dx=dy·W`, BT, V, C, {}],
    );
    // a weight gradient at a training batch's rows (base: 64 × 128 tokens): few output tiles
    // over a long K, which is what split K is for
    if (!software || opts.large) {
      modelShapes.push([`${name}.qkv dW=dyᵀ·x 8192 rows`, 3 * C, 8192, C, { transA: true }]);
    }
  }
  if (want("model")) {
    for (const [label, m, k, n, o] of modelShapes) {
      yield await benchMatmul(backend, label, m, k, n, o, minTimeMs);
    }
  }
  if (want("variants")) {
    for await (const l of benchVariants(backend, opts, minTimeMs)) yield l;
  }
  if (want("tune")) {
    const shapes = [
      ...(opts.variantSizes ?? opts.sizes ?? [256, 1024, 4096]).map((s) => ({
        label: "square",
        shape: { M: s, N: s, K: s },
      })),
      ...modelShapes.map(([label, M, K, N, o]) => ({
        label,
        shape: { M, N, K, transA: o.transA, transB: o.transB },
      })),
    ];
    for await (const l of benchTune(backend, shapes, opts)) yield l;
  }
  if (want("attention")) {
    for (const l of await benchAttention(backend, minTimeMs, Boolean(opts.large))) yield l;
  }
  if (want("sweep")) {
    for await (const l of benchSweep(backend, opts)) yield l;
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      device: { type: "string", default: "auto" },
      sizes: { type: "string" },
      tokens: { type: "string" },
      "min-time-ms": { type: "string" },
      only: { type: "string" },
      "variant-sizes": { type: "string" },
      variants: { type: "string" },
      layouts: { type: "string" },
      "sweep-seconds": { type: "string" },
      "sweep-precisions": { type: "string" },
      "sweep-tiles": { type: "string" },
      large: { type: "boolean" },
      json: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log(`ops_bench — matmul, attention and dispatch benchmarks as JSON lines

Examples:
  deno run -A bench/ops_bench.ts --json
  deno run -A bench/ops_bench.ts --device cpu --sizes 128,256 --only matmul,dispatch --json
  deno run -A bench/ops_bench.ts --only variants,tune --variant-sizes 1024,4096 --json

Options:
  --device auto|webgpu|cpu   backend (default auto: WebGPU if an adapter exists)
  --sizes N,N,...            square matmul sizes (default 256,1024,4096)
  --large                    on CPU/software adapters, also run 4096, base-model shapes,
                             attention and the per-variant table
  --tokens N                 B·T of the model-shape matmuls (default 512; 64 on software)
  --min-time-ms N            length of each timed loop (default 300)
  --only G,G                 groups: matmul, model, attention, dispatch, variants, tune,
                             sweep (default all but tune and sweep; variants only on a
                             hardware GPU)
  --variant-sizes N,N        square sizes of the per-variant table and the tuner
                             (default 256,1024,4096; 64,128 on software adapters)
  --variants NAME,NAME       variants of the table and the tuner (default all)
  --layouts NN,NT,TN,TT      operand layouts of the table and the sweep (default NN,NT)
  --sweep-seconds N          time budget of the tile sweep over every generator tile
                             (default 60; sizes from --variant-sizes, default 4096)
  --sweep-precisions P,P     f32, f16 (f16 operands, f32 accumulation), f16s (the same, f16
                             slices widened per product), f16acc (f16 FMAs over groups of
                             16 k), f16acc32, f16acc64 (deeper groups); the f16 forms need
                             shader-f16 (default f32)
  --sweep-tiles NAME,NAME    the tiles the sweep times, in order (default every tile)
  --json                     JSON lines (the only output format)

Permissions: --allow-read --allow-env`);
    Deno.exit(0);
  }
  const device = values.device;
  let backend: Backend;
  if (device === "cpu") backend = CPU;
  else if (device === "auto" || device === "webgpu") {
    const gpu = await sharedGpuBackend();
    if (!gpu && device === "webgpu") {
      console.error("ops_bench: --device webgpu but no WebGPU adapter was found");
      Deno.exit(1);
    }
    backend = gpu ?? CPU;
  } else {
    console.error(`ops_bench: --device must be auto, webgpu or cpu, got "${device}"`);
    Deno.exit(2);
  }
  const ints = (s: string | undefined) => s?.split(",").map((x) => Number.parseInt(x, 10));
  const precisions = values["sweep-precisions"]?.split(",");
  const bad = precisions?.find((p) => !(SWEEP_PRECISIONS as readonly string[]).includes(p));
  if (bad !== undefined) {
    console.error(
      `ops_bench: --sweep-precisions takes ${SWEEP_PRECISIONS.join(", ")}, got "${bad}"`,
    );
    Deno.exit(2);
  }
  const sweepTileNames = values["sweep-tiles"]?.split(",");
  for (const name of sweepTileNames ?? []) {
    let tile: MatmulTile | null = null;
    try {
      tile = matmulVariant(name).tile;
    } catch { /* reported below */ }
    if (!tile) {
      console.error(
        `ops_bench: --sweep-tiles takes generator tiles such as t128x128k16_8x8, got "${name}"`,
      );
      Deno.exit(2);
    }
  }
  for await (
    const line of runOpsBench({
      backend,
      sizes: ints(values.sizes),
      tokens: ints(values.tokens)?.[0],
      minTimeMs: ints(values["min-time-ms"])?.[0],
      large: values.large,
      only: values.only?.split(",") as OpsBenchOptions["only"],
      variantSizes: ints(values["variant-sizes"]),
      variants: values.variants?.split(","),
      layouts: values.layouts?.split(","),
      sweepSeconds: ints(values["sweep-seconds"])?.[0],
      sweepPrecisions: precisions as SweepPrecision[] | undefined,
      sweepTiles: sweepTileNames,
    })
  ) {
    console.log(JSON.stringify(line));
  }
}
