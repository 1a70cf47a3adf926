/**
 * GELU, its gradient and the cross-entropy row kernels of the CPU backend in
 * WebAssembly (tools/wasm/matmul.wat), run on the worker threads of
 * ops/_cpu_threads.ts when the arrays are large. Each mirrors its op's
 * TypeScript CPU function operation for operation, in float64 with an `exp`
 * that is Math.exp's algorithm, so the results are the same bits
 * (ops/_cpu_threads_kernels_test.ts checks that). The ops call these for f32
 * data and run their TypeScript loops when they return false (WebAssembly
 * off or unavailable).
 *
 * @module
 */
import { WASM_TASK, wasmTasks } from "./_wasm_matmul.ts";

/** Work (elements, each an exp or two) below which one thread runs a kernel. */
const MIN_THREADED = 1 << 15;
/** Relative task sizes per thread, biggest first, as the matmul's. */
const WEIGHTS = [4, 2, 1];

/** Cuts n units costing `cost` each into [start, end) tasks for `threads` threads. */
function ranges(n: number, threads: number, cost: number): [number, number][] {
  if (threads <= 1 || n * cost < MIN_THREADED || n < 2) return [[0, n]];
  const weights = WEIGHTS.flatMap((w) => new Array<number>(threads).fill(w));
  const total = weights.reduce((x, y) => x + y, 0), out: [number, number][] = [];
  let acc = 0, start = 0;
  for (const w of weights) {
    acc += w;
    const end = Math.round((n * acc) / total);
    if (end > start) out.push([start, end]);
    start = end;
  }
  return out;
}

const align16 = (n: number): number => (n + 15) & ~15;

/** out[i] = GELU(x[i]) as `GELU.cpu` in ops/elementwise.ts; false when WebAssembly is off. */
export function geluF32(x: Float32Array, out: Float32Array): boolean {
  const n = out.length, xOff = 0, oOff = align16(4 * n);
  const w = wasmTasks(oOff + 4 * n);
  if (w === null) return false;
  const xp = w.data + xOff, op = w.data + oOff;
  w.f32.set(x.subarray(0, n), xp >> 2);
  const tasks = ranges(n, w.threads, 1);
  tasks.forEach(([s, e], i) => w.set(i, WASM_TASK.gelu, [xp + 4 * s, 0, op + 4 * s, e - s]));
  w.run(tasks.length);
  out.set(w.f32.subarray(op >> 2, (op >> 2) + n));
  return true;
}

/** out[i] = dy[i]·GELU'(x[i]) as `GELU_GRAD.cpu` in ops/elementwise.ts; false when WebAssembly is off. */
export function geluGradF32(x: Float32Array, dy: Float32Array, out: Float32Array): boolean {
  const n = out.length, dOff = align16(4 * n), oOff = dOff + align16(4 * n);
  const w = wasmTasks(oOff + 4 * n);
  if (w === null) return false;
  const xp = w.data, dp = w.data + dOff, op = w.data + oOff;
  w.f32.set(x.subarray(0, n), xp >> 2);
  w.f32.set(dy.subarray(0, n), dp >> 2);
  const tasks = ranges(n, w.threads, 2);
  tasks.forEach(([s, e], i) =>
    w.set(i, WASM_TASK.geluGrad, [xp + 4 * s, dp + 4 * s, op + 4 * s, e - s])
  );
  w.run(tasks.length);
  out.set(w.f32.subarray(op >> 2, (op >> 2) + n));
  return true;
}

/**
 * Row statistics of x [N, V] as `rowStats` in ops/cross_entropy.ts: per row,
 * `stats[4r ..]` = max m, Σ x, Σ exp(x − m) and, when `t` is given and
 * 0 ≤ t[r] < V, how many j have x[j] > x[t[r]] or x[j] = x[t[r]] with j < t[r]
 * (else −1). Returns null when WebAssembly is off.
 */
export function crossEntropyRowsF32(
  x: Float32Array,
  t: Int32Array | null,
  N: number,
  V: number,
): Float64Array | null {
  const tOff = align16(4 * N * V), sOff = tOff + align16(4 * N);
  const w = wasmTasks(sOff + 32 * N);
  if (w === null) return null;
  const xp = w.data, tp = w.data + tOff, sp = w.data + sOff;
  w.f32.set(x.subarray(0, N * V), xp >> 2);
  if (t) w.i32.set(t.subarray(0, N), tp >> 2);
  const tasks = ranges(N, w.threads, V * (t ? 2 : 1));
  tasks.forEach(([r0, r1], i) =>
    w.set(i, WASM_TASK.crossEntropyRows, [xp, t ? tp : 0, sp, r0, r1, V])
  );
  w.run(tasks.length);
  return w.f64.slice(sp >> 3, (sp >> 3) + 4 * N);
}

/** Options of {@linkcode crossEntropyGradF32}. */
export interface CrossEntropyGradF32 {
  /** Rows. */
  N: number;
  /** Classes. */
  V: number;
  /** Target ignored (its row's gradient is 0). */
  ignoreIndex: number;
  /** Label smoothing ε. */
  eps: number;
  /** dy / count. */
  g: number;
}

/**
 * dx [N, V] of the cross-entropy as `CROSS_ENTROPY_GRAD.cpu` in
 * ops/cross_entropy.ts, from logits x, targets t and row log-sum-exps lse;
 * false when WebAssembly is off.
 */
export function crossEntropyGradF32(
  x: Float32Array,
  t: Int32Array,
  lse: Float32Array,
  dx: Float32Array,
  o: CrossEntropyGradF32,
): boolean {
  const { N, V } = o;
  const tOff = align16(4 * N * V), lOff = tOff + align16(4 * N), dOff = lOff + align16(4 * N);
  const w = wasmTasks(dOff + 4 * N * V);
  if (w === null) return false;
  const xp = w.data, tp = w.data + tOff, lp = w.data + lOff, dp = w.data + dOff;
  w.f32.set(x.subarray(0, N * V), xp >> 2);
  w.i32.set(t.subarray(0, N), tp >> 2);
  w.f32.set(lse.subarray(0, N), lp >> 2);
  const tasks = ranges(N, w.threads, V);
  tasks.forEach(([r0, r1], i) =>
    w.set(
      i,
      WASM_TASK.crossEntropyGrad,
      [xp, tp, dp, r0, r1, V, lp, o.ignoreIndex],
      [1 - o.eps, o.eps / V, o.g],
    )
  );
  w.run(tasks.length);
  dx.set(w.f32.subarray(dp >> 2, (dp >> 2) + N * V));
  return true;
}
