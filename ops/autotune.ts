/**
 * Kernel tuning for a whole training step: runs the step once while
 * recording the matmul shapes and attention geometries it plans, then times
 * the candidate kernels of those the adapter has no measured choice for yet
 * (`autotuneMatmul` in ops/matmul.ts, `autotuneAttention` below) and keeps
 * the fastest. Later calls of the same shape classes run them.
 *
 * @example
 * ```ts ignore
 * const gpu = await createGpuBackend();
 * const r = await autotuneStep(gpu, () => trainStep()); // the step runs once, then tuning
 * console.log(r.matmul.length, r.attention.map((a) => a.kernel));
 * ```
 *
 * @module
 */
import type { GpuBackend } from "../gpu/backend.ts";
import { makeRng } from "../tensor/rng.ts";
import { apply, type Tensor, tensor } from "../tensor/tensor.ts";
import {
  type AttentionLimits,
  type AttentionShape,
  attentionTileFits,
  fittingAttentionTiles,
  forcedAttentionKernel,
  parseAttentionTileName,
  setTunedAttentionKernel,
  startAttentionShapeRecording,
  stopAttentionShapeRecording,
  tileThreads,
  tunedAttentionKernel,
  withAttentionKernel,
} from "./_attention_tiled.ts";
import {
  ATTENTION,
  ATTENTION_BACKWARD,
  type AttentionParams,
  attentionProbs,
} from "./attention.ts";
import { mmFits, mmProductShapes } from "./_attention_mm.ts";
import { tunedVariant } from "./_matmul_variants.ts";
import {
  autotuneMatmul,
  type AutotuneMatmulOptions,
  autotuneMatmulsOf,
  configureMatmul,
  fastestOf,
  type MatmulTuning,
  msPerCall,
  runoff,
  sameResults,
  timeCandidate,
  warmCalls,
} from "./matmul.ts";
import { errorLine } from "../tensor/errors.ts";
import { tuneProductF16 } from "./matmul_f16.ts";

/** What {@linkcode autotuneAttention} found for one geometry. */
export interface AttentionTuning {
  /** The geometry (its class: BH, T and S rounded up to powers of two). */
  shape: AttentionShape;
  /** "rows" or the tile name calls of this class now run. */
  kernel: string;
  /** Milliseconds per call by kernel; Infinity where it failed. */
  ms: Record<string, number>;
  /**
   * Tiles whose result differed from the row kernels' (beyond `TUNE_TOLERANCE`):
   * not timed and never chosen.
   */
  rejected: string[];
  /** The runoff of the near ties (ops/matmul.ts `runoff`; empty when one was clearly fastest). */
  runoff: Record<string, number>;
}

/** Options of {@linkcode autotuneAttention}. */
export interface AutotuneAttentionOptions {
  /** Tune on a software adapter too (off by default). */
  force?: boolean;
  /** Approximate measured time per kernel and geometry in milliseconds (default 20). */
  minTimeMs?: number;
  /**
   * Kernels to try: "rows" and tile names (default "rows" and every registered tile that
   * fits the adapter; tiles that do not fit are skipped).
   */
  kernels?: string[];
  /** Matmul variants the "mm" kernels' products are tuned among (default: every registered one). */
  matmulVariants?: string[];
}

/** Threads a registered tile needs to be among the tuner's default candidates. */
const MIN_TUNED_THREADS = 32;

/** Heads used for timing a geometry: any divisor of B·H gives the same work. */
function headsOf(BH: number): number {
  for (const h of [8, 4, 2]) if (BH % h === 0) return h;
  return 1;
}

/**
 * Times the row kernels and every registered tile of 32 threads or more that
 * fits the adapter (or `kernels`) on
 * each geometry (its forward or its backward), remembers the fastest for
 * the geometry's class on this adapter, and returns the table. Off on
 * software adapters unless `force`. A forced kernel
 * (`WEBSEQ_ATTENTION_KERNEL`) still wins over tuning.
 */
export async function autotuneAttention(
  backend: GpuBackend,
  shapes: AttentionShape[],
  opts: AutotuneAttentionOptions = {},
): Promise<AttentionTuning[]> {
  const target = configureMatmul(backend);
  if (target.software && !opts.force) return [];
  const out: AttentionTuning[] = [];
  const minTimeMs = opts.minTimeMs ?? 20;
  for (const s of shapes) {
    const H = headsOf(s.BH), B = s.BH / H, rng = makeRng(7);
    const made: Tensor[] = [];
    const rand = (shape: number[], lo = -1, hi = 1) => {
      const n = shape.reduce((x, y) => x * y, 1);
      const t = tensor(Float32Array.from({ length: n }, () => lo + rng() * (hi - lo)), shape, {
        backend,
      });
      made.push(t);
      return t;
    };
    const p: AttentionParams = {
      layout: "BTHD",
      hasMask: s.mask,
      causal: s.causal,
      scale: 1 / Math.sqrt(s.D),
      dropoutP: s.dropout ? 0.1 : 0,
      seed: 1,
    };
    const q = rand([B, s.T, H, s.D]), k = rand([B, s.S, H, s.D]), v = rand([B, s.S, H, s.D]);
    const ins = [q, k, v];
    if (s.mask) {
      // the last eighth of each row's keys is padding
      const keep = Math.max(1, s.S - Math.floor(s.S / 8));
      ins.push(tensor(Array.from({ length: B * s.S }, (_, i) => +(i % s.S < keep)), [B, s.S], {
        backend,
      }));
      made.push(ins[3]);
    }
    try {
      let call: () => Tensor[], opName: string;
      if (s.op === "fwd") {
        call = () => apply(ATTENTION, ins, p);
        opName = ATTENTION.name;
      } else {
        const [o, lse] = await withAttentionKernel(
          "rows",
          () => Promise.resolve(apply(ATTENTION, ins, p)),
        );
        made.push(o, lse);
        const bins = [q, k, v, o, lse, rand([B, s.T, H, s.D])];
        if (s.mask) bins.push(ins[3]);
        const bp = { ...p, hasDLse: false };
        // "mm" is timed as training runs it: over the probabilities its forward kept, where
        // attention keeps them (ops/attention.ts keepsProbs)
        let probs: Tensor | null = null;
        if (attentionProbs() === "kept" && !s.dropout && mmFits(s.BH, s.T, s.S)) {
          const kept = await withAttentionKernel(
            "mm",
            () => Promise.resolve(apply(ATTENTION, ins, { ...p, keepProbs: true })),
          );
          made.push(...kept);
          probs = kept[2];
        }
        call = () =>
          probs && forcedAttentionKernel() === "mm"
            ? apply(ATTENTION_BACKWARD, [...bins, probs], { ...bp, keepProbs: true })
            : apply(ATTENTION_BACKWARD, bins, bp);
        opName = ATTENTION_BACKWARD.name;
      }
      const run = () => call().forEach((t) => t.dispose());
      // the row kernels' result is the reference every tile must match
      const want = await withAttentionKernel("rows", () => Promise.resolve(call()));
      made.push(...want);
      const ms: Record<string, number> = {}, rejected: string[] = [];
      // by default the registered tiles that fit and fill a warp (the smallest are for tests)
      const fit = fittingAttentionTiles(s.op, s.D, target).filter((n) =>
        tileThreads(parseAttentionTileName(n)!) >= MIN_TUNED_THREADS
      );
      // the per-head matmuls where their scratch is allowed
      const mm = mmFits(s.BH, s.T, s.S) ? ["mm"] : [];
      const names = opts.kernels
        ? opts.kernels.filter((n) =>
          n === "rows" || (n === "mm" ? mm.length > 0 : attentionTileFitsName(s, n, target))
        )
        : ["rows", ...mm, ...fit];
      if (names.includes("mm")) {
        // the products' tiles first (shapes not yet tuned), so "mm" is timed at its best
        const todo = mmProductShapes(s).filter((m) => tunedVariant(m) === undefined);
        if (todo.length > 0) {
          await autotuneMatmul(backend, todo, {
            force: opts.force,
            minTimeMs,
            variants: opts.matmulVariants,
          });
        }
      }
      for (const name of names) {
        const check = name === "rows" ? undefined : () => sameResults(call(), want);
        ms[name] = await withAttentionKernel(name, async () => {
          const r = await timeCandidate(backend, run, { opName, minTimeMs, maxCalls: 50, check });
          if (r.rejected) rejected.push(name);
          return r.ms;
        });
      }
      // near ties: timed again, interleaved (ops/matmul.ts runoff)
      const rerun = await runoff(ms, (name) =>
        withAttentionKernel(name, async () => {
          const n = Math.max(1, Math.min(50, Math.ceil(minTimeMs / 3 / ms[name])));
          return (await msPerCall(backend, run, n, opName, warmCalls(ms[name]))).ms;
        }));
      const best = fastestOf(ms, rerun, names[0] ?? "rows");
      setTunedAttentionKernel(target.description, s, best);
      out.push({ shape: s, kernel: best, ms, rejected, runoff: rerun });
    } finally {
      for (const t of made) t.dispose();
    }
  }
  return out;
}

/** Whether a tile name (registered or not) runs this geometry on the adapter. */
function attentionTileFitsName(s: AttentionShape, name: string, limits: AttentionLimits): boolean {
  const t = parseAttentionTileName(name);
  return t !== null && attentionTileFits(s.op, s.D, t, limits);
}

/** Options of {@linkcode autotuneStep}: the matmul tuner's, and the attention kernels to try. */
export interface AutotuneStepOptions extends AutotuneMatmulOptions {
  /** Attention kernels to try (see {@linkcode AutotuneAttentionOptions}). */
  attentionKernels?: string[];
}

/** What {@linkcode autotuneStep} did. */
export interface StepTuning<T> {
  /** What the step returned. */
  value: T;
  /** Matmul shapes measured now. */
  matmul: MatmulTuning[];
  /** Attention geometries measured now. */
  attention: AttentionTuning[];
  /** Seconds spent tuning (compiles included). */
  seconds: number;
  /** Why tuning stopped early (the rest keeps the defaults), if it did. */
  error?: string;
}

/**
 * Runs `fn` (one training step) while recording its matmul shapes and
 * attention geometries, then tunes those whose class has no measured choice
 * on this adapter yet. When every class is known it returns at once, so a
 * trainer may wrap every step. Software adapters are tuned only with
 * `force`. A failure while tuning is reported in `error`, never thrown.
 */
export async function autotuneStep<T>(
  backend: GpuBackend,
  fn: () => T | Promise<T>,
  opts: AutotuneStepOptions = {},
): Promise<StepTuning<T>> {
  const target = configureMatmul(backend);
  if (target.software && !opts.force) {
    return { value: await fn(), matmul: [], attention: [], seconds: 0 };
  }
  startAttentionShapeRecording();
  let m, shapes: AttentionShape[];
  try {
    // the f16 products (autocast) are tuned as f16 kernels
    m = await autotuneMatmulsOf(backend, fn, { product: tuneProductF16, ...opts });
  } finally {
    shapes = stopAttentionShapeRecording();
  }
  const todo = shapes.filter((s) => tunedAttentionKernel(target.description, s) === undefined);
  const base = { value: m.value, matmul: m.tunings, attention: [], seconds: m.seconds };
  if (m.error) return { ...base, error: m.error };
  if (todo.length === 0) return base;
  opts.onBegin?.("attention", todo.length);
  const t0 = performance.now();
  try {
    const attention = await autotuneAttention(backend, todo, {
      force: opts.force,
      kernels: opts.attentionKernels,
    });
    return { ...base, attention, seconds: m.seconds + (performance.now() - t0) / 1000 };
  } catch (err) {
    const error = errorLine(err);
    return { ...base, seconds: m.seconds + (performance.now() - t0) / 1000, error };
  }
}
