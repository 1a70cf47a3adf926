/**
 * CPU f32 matmul benchmark: GFLOP/s of the TypeScript reference in
 * `MATMUL.cpu` against the WebAssembly SIMD kernel (ops/_wasm_matmul.ts, both
 * its fused-multiply-add and plain builds, on one thread and, as `fma:N`, on
 * N threads), in one process, on square sizes and the shapes of the tiny and
 * small models (512 tokens per batch). One JSON line per shape; each kernel is
 * timed `--repeats` times, interleaved, so that load from other processes hits
 * all of them alike, and the line gives the median and the range. Columns are
 * `<kernel>_gflops` with `fma:2` written `fma_2t`.
 *
 * ```sh
 * deno run --allow-env bench/cpu_matmul_bench.ts
 * deno run bench/cpu_matmul_bench.ts --only square --kernels fma,fma:2 --repeats 5
 * ```
 *
 * @module
 */
import { parseArgs } from "node:util";
import { MATMUL, type MatmulParams } from "../ops/matmul.ts";
import { useWasmMatmul, type WasmMatmulMode } from "../ops/_wasm_matmul.ts";
import { cpuThreads, useCpuThreads } from "../ops/_cpu_threads.ts";
import { makeRng } from "../tensor/rng.ts";
import type { OpInfo, Shape } from "../tensor/types.ts";

/** One benchmarked product: `op(a)[m, k] · op(b)[k, n]`. */
export interface CpuMatmulShape {
  /** What it is ("square", "tiny.ffn1", ...). */
  label: string;
  /** Rows of the output. */
  m: number;
  /** Inner dimension. */
  k: number;
  /** Columns of the output. */
  n: number;
  /** `a` stored `[k, m]`. */
  transA: boolean;
  /** `b` stored `[n, k]`. */
  transB: boolean;
}

/** One result line: GFLOP/s per kernel (median and range over the repeats) and the speed-up. */
export interface CpuMatmulLine extends CpuMatmulShape {
  /** Always "cpu_matmul". */
  kind: string;
  /** Median, min and max GFLOP/s per kernel, as `<kernel>_gflops[_min|_max]`. */
  [field: string]: string | number | boolean;
}

const T = 512; // tokens per batch (B·T)

/** The default shapes: square sizes, then the tiny and small models' forward and backward products. */
export const CPU_MATMUL_SHAPES: CpuMatmulShape[] = [
  ...[64, 256, 512, 1024].map((s) => ({
    label: "square",
    m: s,
    k: s,
    n: s,
    transA: false,
    transB: false,
  })),
  // tiny: C = 64, F = 256, V = 1000
  { label: "tiny.qkv", m: T, k: 64, n: 192, transA: false, transB: false },
  { label: "tiny.ffn1", m: T, k: 64, n: 256, transA: false, transB: true },
  { label: "tiny.ffn2", m: T, k: 256, n: 64, transA: false, transB: true },
  { label: "tiny.logits", m: T, k: 64, n: 1000, transA: false, transB: true },
  { label: "tiny.logits8k", m: T, k: 64, n: 8000, transA: false, transB: true },
  { label: "tiny.logits.dx", m: T, k: 1000, n: 64, transA: false, transB: false },
  { label: "tiny.ffn1.dw", m: 256, k: T, n: 64, transA: true, transB: false },
  // small: C = 256, F = 1024
  { label: "small.qkv", m: T, k: 256, n: 768, transA: false, transB: true },
  { label: "small.ffn1", m: T, k: 256, n: 1024, transA: false, transB: false },
  { label: "small.ffn2", m: T, k: 1024, n: 256, transA: false, transB: true },
  { label: "small.ffn1.dw", m: 1024, k: T, n: 256, transA: true, transB: false },
];

/** Options of {@linkcode runCpuMatmulBench}. */
export interface CpuMatmulBenchOptions {
  /** Shapes to run; default {@linkcode CPU_MATMUL_SHAPES}. */
  shapes?: CpuMatmulShape[];
  /** Timed runs per kernel and shape; default 3. */
  repeats?: number;
  /** Approximate duration of each timed run in milliseconds; default 200. */
  minTimeMs?: number;
  /**
   * Kernels to compare: "ts", "plain", "fma", or a WebAssembly build on N
   * threads as "fma:N" / "plain:N"; default ts, plain, fma and, with more
   * than one CPU thread, fma:<threads> (those that load).
   */
  kernels?: string[];
}

function timeOnce(fn: () => void, minTimeMs: number): number {
  let t0 = performance.now();
  fn();
  const once = Math.max(1e-3, performance.now() - t0);
  const iters = Math.max(1, Math.min(10000, Math.ceil(minTimeMs / once)));
  t0 = performance.now();
  for (let i = 0; i < iters; i++) fn();
  return (performance.now() - t0) / iters;
}

function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** Times every kernel on every shape; yields one line per shape. */
export function* runCpuMatmulBench(opts: CpuMatmulBenchOptions = {}): Generator<CpuMatmulLine> {
  const repeats = opts.repeats ?? 3, minTimeMs = opts.minTimeMs ?? 200;
  const threads0 = cpuThreads();
  const modes: Record<string, WasmMatmulMode> = { ts: "off", plain: "plain", fma: "fma" };
  const parse = (k: string): [WasmMatmulMode, number] => {
    const [name, n = "1"] = k.split(":");
    if (!(name in modes) || (name === "ts" && n !== "1")) {
      throw new TypeError(`cpu_matmul_bench: unknown kernel ${JSON.stringify(k)}`);
    }
    return [modes[name], Number(n)];
  };
  const use = (k: string): boolean => {
    const [m, n] = parse(k);
    useCpuThreads(n);
    return useWasmMatmul(m);
  };
  const key = (k: string): string => k.replace(/:(\d+)$/, "_$1t");
  const defaults = ["ts", "plain", "fma", ...(threads0 > 1 ? [`fma:${threads0}`] : [])];
  const kernels = (opts.kernels ?? defaults).filter(use);
  try {
    for (const s of opts.shapes ?? CPU_MATMUL_SHAPES) {
      const rng = makeRng(s.m * 7 + s.k * 13 + s.n);
      const as: Shape = s.transA ? [s.k, s.m] : [s.m, s.k];
      const bs: Shape = s.transB ? [s.n, s.k] : [s.k, s.n];
      const a = new Float32Array(s.m * s.k).map(() => rng() * 2 - 1);
      const b = new Float32Array(s.k * s.n).map(() => rng() * 2 - 1);
      const out = new Float32Array(s.m * s.n);
      const info: OpInfo = {
        inputs: [{ shape: as, dtype: "f32" }, { shape: bs, dtype: "f32" }],
        outputs: [{ shape: [s.m, s.n], dtype: "f32" }],
      };
      const p: MatmulParams = { transA: s.transA, transB: s.transB };
      const run = () => MATMUL.cpu([a, b], [out], info, p);
      const gflops: Record<string, number[]> = {};
      for (const k of kernels) {
        use(k);
        run(); // warm-up (and tier-up of the WebAssembly code; starts the workers)
        gflops[k] = [];
      }
      for (let r = 0; r < repeats; r++) {
        for (const k of kernels) {
          use(k);
          gflops[k].push((2 * s.m * s.n * s.k) / (timeOnce(run, minTimeMs) * 1e6));
        }
      }
      const line: CpuMatmulLine = { kind: "cpu_matmul", ...s };
      for (const k of kernels) {
        line[`${key(k)}_gflops`] = round(median(gflops[k]), 2);
        line[`${key(k)}_gflops_min`] = round(Math.min(...gflops[k]), 2);
        line[`${key(k)}_gflops_max`] = round(Math.max(...gflops[k]), 2);
      }
      if (kernels.includes("ts")) {
        for (const k of kernels) {
          if (k !== "ts") {
            line[`${key(k)}_speedup`] = round(median(gflops[k]) / median(gflops.ts), 1);
          }
        }
      }
      for (const k of kernels) {
        const [m, n] = parse(k), one = m === "fma" ? "fma" : "plain";
        if (n > 1 && kernels.includes(one)) {
          line[`${key(k)}_vs_1t`] = round(median(gflops[k]) / median(gflops[one]), 2);
        }
      }
      yield line;
    }
  } finally {
    useWasmMatmul("auto");
    useCpuThreads(threads0);
  }
}

const HELP = `Usage: deno run bench/cpu_matmul_bench.ts [--repeats N] [--min-time-ms MS]
       [--only square|tiny|small] [--kernels ts,plain,fma,fma:2]`;

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      repeats: { type: "string", default: "3" },
      "min-time-ms": { type: "string", default: "200" },
      only: { type: "string" },
      kernels: { type: "string" },
      json: { type: "boolean", default: true },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log(HELP);
    Deno.exit(0);
  }
  const only = values.only;
  const shapes = only === undefined
    ? CPU_MATMUL_SHAPES
    : CPU_MATMUL_SHAPES.filter((s) => s.label === only || s.label.startsWith(`${only}.`));
  const kernels = values.kernels?.split(",");
  for (
    const line of runCpuMatmulBench({
      shapes,
      repeats: Number(values.repeats),
      minTimeMs: Number(values["min-time-ms"]),
      kernels,
    })
  ) console.log(JSON.stringify(line));
}
