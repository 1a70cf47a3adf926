/**
 * GELU, SiLU and their gradients, the cross-entropy row kernels, attention forward and
 * backward and the matmul path's softmax rows, the AdamW update, dropout and its keep
 * mask of the CPU backend in WebAssembly
 * (tools/wasm/matmul.wat), run on the worker threads of ops/_cpu_threads.ts
 * when the arrays are large. Each mirrors its op's TypeScript CPU function
 * (attention: its float64 reference) operation for operation, in float64
 * with the `exp` of ops/_exp.ts (`expF64`, two lanes at a time in f64x2), so
 * the results are the same bits (ops/_cpu_threads_kernels_test.ts checks
 * that). The ops call these for f32 data and run their TypeScript loops when
 * they return false (WebAssembly off or unavailable).
 *
 * @module
 */
import {
  cut,
  TASK_WEIGHTS,
  WASM_TASK,
  wasmAddress,
  type WasmTaskKind,
  type WasmTasks,
  wasmTasks,
} from "./_wasm_matmul.ts";

/** Work (elements, each an exp or two) below which one thread runs a kernel. */
const MIN_THREADED = 1 << 15;

/** Cuts n units costing `cost` each into [start, end) tasks for `threads` threads (sized as the matmul's). */
function ranges(n: number, threads: number, cost: number): [number, number][] {
  if (threads <= 1 || n * cost < MIN_THREADED || n < 2) return [[0, n]];
  return cut(n, TASK_WEIGHTS.flatMap((w) => new Array<number>(threads).fill(w)));
}

const align16 = (n: number): number => (n + 15) & ~15;

/**
 * Where a kernel's arrays sit: a resident array (in the kernels' memory) in place, any other
 * at a workspace offset it is copied to or from. `add` them in order, then `bytes` is the
 * workspace they need; after `wasmTasks`, `at(i)` is array i's byte address.
 */
class Placement {
  readonly #arrays: (Float32Array | Int32Array)[] = [];
  readonly #where: number[] = []; // resident address, or −1 − workspace offset
  bytes = 0;
  #data = 0;

  /** Adds `a` (its first n elements; `slack` bytes more when copied); returns its index. */
  add(a: Float32Array | Int32Array, slack = 0): number {
    const r = wasmAddress(a);
    this.#arrays.push(a);
    if (r >= 0) this.#where.push(r);
    else {
      this.#where.push(-1 - this.bytes);
      this.bytes = align16(this.bytes + a.byteLength + slack);
    }
    return this.#arrays.length - 1;
  }

  /** Copies the listed (non-resident) arrays in, for a workspace starting at `data`. */
  copyIn(w: WasmTasks, ...which: number[]): void {
    this.#data = w.data;
    for (const i of which) {
      const a = this.#arrays[i];
      if (this.#where[i] >= 0) continue;
      if (a instanceof Int32Array) w.i32.set(a, this.at(i) >> 2);
      else w.f32.set(a, this.at(i) >> 2);
    }
  }

  /** Byte address of array i (after `copyIn`). */
  at(i: number): number {
    const r = this.#where[i];
    return r >= 0 ? r : this.#data - 1 - r;
  }

  /** Copies the listed (non-resident) arrays back out. */
  copyOut(w: WasmTasks, ...which: number[]): void {
    for (const i of which) {
      const a = this.#arrays[i];
      if (this.#where[i] >= 0) continue;
      const p = this.at(i) >> 2;
      if (a instanceof Int32Array) a.set(w.i32.subarray(p, p + a.length));
      else a.set(w.f32.subarray(p, p + a.length));
    }
  }
}

/**
 * An elementwise kernel over n f32: task words `[x, dy or 0, out, n]` (dy
 * only for the gradients); `cost` weighs an element for the threading rule.
 */
function mapF32(
  kind: WasmTaskKind,
  cost: number,
  x: Float32Array,
  dy: Float32Array | null,
  out: Float32Array,
): boolean {
  const n = out.length, pl = new Placement();
  // 16 bytes of slack: the kernels' f64x2 loads of the pair past an odd count read one f32 more
  const X = pl.add(x.subarray(0, n), 16), D = dy ? pl.add(dy.subarray(0, n), 16) : -1;
  const O = pl.add(out);
  const w = wasmTasks(pl.bytes);
  if (w === null) return false;
  pl.copyIn(w, X, ...(dy ? [D] : []));
  const xp = pl.at(X), dp = dy ? pl.at(D) : 0, op = pl.at(O);
  const tasks = ranges(n, w.threads, cost);
  tasks.forEach(([s, e], i) =>
    w.set(i, kind, [xp + 4 * s, dy ? dp + 4 * s : 0, op + 4 * s, e - s])
  );
  w.run(tasks.length);
  pl.copyOut(w, O);
  return true;
}

/**
 * The dropout keep mask of elements 0 … n−1, one byte each: 1 where
 * `hashU32(seed, i) >>> 8 >= thr`, else 0 (`keepMask` in ops/residual.ts);
 * null when WebAssembly is off.
 */
export function keepMaskU8(n: number, seed: number, thr: number): Uint8Array | null {
  const w = wasmTasks(n);
  if (w === null) return null;
  const op = w.data;
  const tasks = ranges(n, w.threads, 1);
  tasks.forEach(([s, e], i) => w.set(i, WASM_TASK.keepMask, [op + s, e - s, s, seed | 0, thr]));
  w.run(tasks.length);
  return new Uint8Array(w.f32.buffer, op, n).slice();
}

/** The geometry of {@linkcode softmaxRowsF32}. */
export interface SoftmaxRowsF32 {
  /** Query rows per head (row r is query r mod T of head ⌊r / T⌋). */
  T: number;
  /** Keys per row. */
  S: number;
  /** Heads per batch row (head h is batch ⌊h / H⌋). */
  H: number;
  /** Query t attends keys s ≤ t + S − T. */
  causal: boolean;
  /** The scores' scale. */
  scale: number;
  /** `stats[2r]` holds row r's lse on the way in (the backward's recomputation). */
  lseIn: boolean;
}

/**
 * The softmax rows of the attention matmul path (`softmaxRows` in
 * ops/attention.ts, the same bits): z [rows, S] is scaled in place (−∞ off the
 * allowed keys), prob [rows, S] filled; per row, stats[2r], stats[2r + 1] =
 * the largest score and Σ exp (without `lseIn`) or −, the largest score (with
 * it; stats[2r] is the lse given); a row with no allowed key has largest score
 * −∞ and uniform prob. `allowed` [B, S]: 0 masks a key (null: none). False
 * when WebAssembly is off.
 */
export function softmaxRowsF32(
  z: Float32Array,
  prob: Float32Array,
  allowed: Float32Array | null,
  stats: Float64Array,
  o: SoftmaxRowsF32,
): boolean {
  const rows = stats.length / 2, n = rows * o.S;
  const pOff = align16(4 * n), aOff = pOff + align16(4 * n);
  const sOff = aOff + align16(4 * (allowed?.length ?? 0));
  const w = wasmTasks(sOff + 16 * rows);
  if (w === null) return false;
  const zp = w.data, pp = w.data + pOff, ap = w.data + aOff, sp = w.data + sOff;
  w.f32.set(z.subarray(0, n), zp >> 2);
  if (allowed) w.f32.set(allowed, ap >> 2);
  if (o.lseIn) w.f64.set(stats, sp >> 3);
  const tasks = ranges(rows, w.threads, o.S);
  tasks.forEach(([r0, r1], i) =>
    w.set(
      i,
      WASM_TASK.softmaxRows,
      [zp, pp, allowed ? ap : 0, sp, r0, r1, o.T, o.S],
      [o.scale, o.H, o.causal ? 1 : 0, o.lseIn ? 1 : 0],
    )
  );
  w.run(tasks.length);
  z.set(w.f32.subarray(zp >> 2, (zp >> 2) + n));
  prob.set(w.f32.subarray(pp >> 2, (pp >> 2) + n));
  stats.set(w.f64.subarray(sp >> 3, (sp >> 3) + 2 * rows));
  return true;
}

/** out[i] = GELU(x[i]) as `GELU.cpu` in ops/elementwise.ts; false when WebAssembly is off. */
export function geluF32(x: Float32Array, out: Float32Array): boolean {
  return mapF32(WASM_TASK.gelu, 1, x, null, out);
}

/** out[i] = SiLU(x[i]) as `SILU.cpu` in ops/elementwise.ts; false when WebAssembly is off. */
export function siluF32(x: Float32Array, out: Float32Array): boolean {
  return mapF32(WASM_TASK.silu, 1, x, null, out);
}

/** out[i] = dy[i]·SiLU'(x[i]) as `SILU_GRAD.cpu` in ops/elementwise.ts; false when WebAssembly is off. */
export function siluGradF32(x: Float32Array, dy: Float32Array, out: Float32Array): boolean {
  return mapF32(WASM_TASK.siluGrad, 1, x, dy, out);
}

/**
 * out[i] = x[i]·scale where `hashU32(seed, i) >>> 8 >= thr`, else 0, as
 * `DROPOUT.cpu` in ops/dropout.ts; false when WebAssembly is off.
 */
export function dropoutF32(
  x: Float32Array,
  out: Float32Array,
  seed: number,
  thr: number,
  scale: number,
): boolean {
  // x may be out (in place): each element is read before it is written
  const n = out.length, pl = new Placement();
  const X = pl.add(x.subarray(0, n)), O = pl.add(out);
  const w = wasmTasks(pl.bytes);
  if (w === null) return false;
  pl.copyIn(w, X);
  const xp = pl.at(X), op = pl.at(O);
  const tasks = ranges(n, w.threads, 1);
  tasks.forEach(([s, e], i) =>
    w.set(i, WASM_TASK.dropout, [xp + 4 * s, op + 4 * s, e - s, s, seed | 0, thr], [scale])
  );
  w.run(tasks.length);
  pl.copyOut(w, O);
  return true;
}

/** out[i] = dy[i]·GELU'(x[i]) as `GELU_GRAD.cpu` in ops/elementwise.ts; false when WebAssembly is off. */
export function geluGradF32(x: Float32Array, dy: Float32Array, out: Float32Array): boolean {
  return mapF32(WASM_TASK.geluGrad, 2, x, dy, out);
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
  const pl = new Placement();
  // 16 bytes of slack past copies: pairs of f32 read one past an odd count
  const X = pl.add(x.subarray(0, N * V), 16), T = t ? pl.add(t.subarray(0, N), 16) : -1;
  const sOff = pl.bytes;
  const w = wasmTasks(sOff + 32 * N);
  if (w === null) return null;
  pl.copyIn(w, X, ...(t ? [T] : []));
  const xp = pl.at(X), tp = t ? pl.at(T) : 0, sp = w.data + sOff;
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
  const pl = new Placement();
  // 16 bytes of slack past copies: pairs of f32 read one past an odd count
  const X = pl.add(x.subarray(0, N * V), 16), T = pl.add(t.subarray(0, N), 16);
  const L = pl.add(lse.subarray(0, N), 16), D = pl.add(dx.subarray(0, N * V));
  const w = wasmTasks(pl.bytes);
  if (w === null) return false;
  pl.copyIn(w, X, T, L);
  const xp = pl.at(X), tp = pl.at(T), lp = pl.at(L), dp = pl.at(D);
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
  pl.copyOut(w, D);
  return true;
}

/** Constants of {@linkcode adamwF32} (from `adamwScalars` in ops/optim_ops.ts). */
export interface AdamWF32 {
  /** Weight-decay factor of elements 0 .. decayEnd-1. */
  decay: number;
  /** Factor of the rest (1 − lr·0). */
  noDecay: number;
  /** Elements before this get `decay`. */
  decayEnd: number;
  /** β1. */
  b1: number;
  /** 1 − β1. */
  c1: number;
  /** β2. */
  b2: number;
  /** 1 − β2. */
  c2: number;
  /** lr / (1 − β1ᵗ). */
  stepSize: number;
  /** √(1 − β2ᵗ). */
  bc2Sqrt: number;
  /** ε. */
  eps: number;
  /** Gradient scale (clipping). */
  scale: number;
}

/** Elements per pass through the WebAssembly memory (4 arrays of 1 MiB). */
const ADAMW_CHUNK = 1 << 18;

/**
 * The AdamW update of `ADAMW_FLAT.cpu` in ops/optim_ops.ts over f32 p, g, m, v
 * (p, m, v written), in chunks on the CPU threads, with the same bits; false
 * when WebAssembly is off.
 */
export function adamwF32(
  p: Float32Array,
  g: Float32Array,
  m: Float32Array,
  v: Float32Array,
  o: AdamWF32,
): boolean {
  const n = p.length, end = Math.max(0, Math.min(o.decayEnd, n));
  // all four resident in the kernels' memory: updated in place, no copies
  const home = [p, g, m, v].map(wasmAddress);
  if (n > 0 && home.every((a) => a >= 0)) {
    const w = wasmTasks(64);
    if (w === null) return false;
    runAdamw(w, home, n, end, o);
    return true;
  }
  const chunk = Math.min(n, ADAMW_CHUNK), bytes = align16(4 * chunk);
  const pOff = 64, gOff = pOff + bytes, mOff = gOff + bytes, vOff = mOff + bytes;
  const w = wasmTasks(vOff + bytes);
  if (w === null) return false;
  const [P, G, M, V] = [pOff, gOff, mOff, vOff].map((off) => w.data + off);
  for (let c0 = 0; c0 < n; c0 += chunk) {
    const c1 = Math.min(n, c0 + chunk), len = c1 - c0;
    w.f32.set(p.subarray(c0, c1), P >> 2);
    w.f32.set(g.subarray(c0, c1), G >> 2);
    w.f32.set(m.subarray(c0, c1), M >> 2);
    w.f32.set(v.subarray(c0, c1), V >> 2);
    runAdamw(w, [P, G, M, V], len, Math.max(0, Math.min(len, end - c0)), o);
    p.set(w.f32.subarray(P >> 2, (P >> 2) + len), c0);
    m.set(w.f32.subarray(M >> 2, (M >> 2) + len), c0);
    v.set(w.f32.subarray(V >> 2, (V >> 2) + len), c0);
  }
  return true;
}

/**
 * The AdamW tasks over `len` elements at byte addresses `at` = [p, g, m, v], the first
 * `split` with weight decay; the constants go to the workspace's first 64 bytes.
 */
function runAdamw(w: WasmTasks, at: number[], len: number, split: number, o: AdamWF32): void {
  const cp = w.data;
  w.f64.set([o.b1, o.c1, o.b2, o.c2, o.stepSize, o.bc2Sqrt, o.eps, o.scale], cp >> 3);
  let count = 0;
  // [s, e) with decay factor d
  const segment = (s: number, e: number, d: number) => {
    for (const [a, b] of ranges(e - s, w.threads, 4)) {
      const i = 4 * (s + a);
      w.set(count++, WASM_TASK.adamw, [at[0] + i, at[1] + i, at[2] + i, at[3] + i, b - a, cp], [d]);
    }
  };
  if (split > 0) segment(0, split, o.decay);
  if (split < len) segment(split, len, o.noDecay);
  w.run(count);
}

/** The geometry of {@linkcode attentionF32} and {@linkcode attentionBackwardF32}. */
export interface AttentionF32 {
  /** Batch rows. */
  B: number;
  /** Heads. */
  H: number;
  /** Query rows per head. */
  T: number;
  /** Key rows per head. */
  S: number;
  /** Head size. */
  D: number;
  /** Layout `[B, H, L, D]` (else `[B, L, H, D]`). */
  bhtd: boolean;
  /** Query t attends keys s ≤ t + S − T. */
  causal: boolean;
  /** Score scale. */
  scale: number;
}

/** A key mask as f32 0/1 (an i32 mask's nonzero entries are 1), or null. */
function maskF32(mask: Float32Array | Int32Array | null): Float32Array | null {
  if (mask === null || mask instanceof Float32Array) return mask;
  return Float32Array.from(mask, (m) => (m !== 0 ? 1 : 0));
}

/** Per-thread scratch of the attention kernels (tools/wasm/matmul.wat `$att_fwd`, `$att_bwd`). */
function attentionScratch(S: number, D: number, backward: boolean): number {
  const base = align16(8 * S) + align16(8 * (S + 1)) + align16(4 * S) + align16(8 * (D + 1));
  return backward ? base + 2 * align16(8 * (S * D + 1)) : base;
}

/**
 * Runs an attention kernel (`kind`) over all heads: stages each region (f32
 * data copied in, or `bytes` of room for a result; absent ones get address 0),
 * writes the parameter block (the regions' addresses, then H T S D bhtd causal,
 * the scratch and its stride per thread; the scale at byte `4·(n + 8)` rounded
 * up to 8) and returns the memory and the regions' addresses; null when
 * WebAssembly is off.
 */
function runAttention(
  kind: WasmTaskKind,
  g: AttentionF32,
  regions: ({ data: Float32Array } | { out: Float32Array } | { bytes: number } | null)[],
  backward: boolean,
): { w: WasmTasks; at: number[] } | null {
  // inputs (data) and outputs (out) resident in the kernels' memory are used in place
  const home = regions.map((r) =>
    r && "data" in r ? wasmAddress(r.data) : r && "out" in r ? wasmAddress(r.out) : -1
  );
  const offsets: number[] = [];
  let bytes = 0;
  regions.forEach((r, i) => {
    offsets.push(bytes);
    if (r && home[i] < 0) {
      bytes += align16(
        "data" in r ? 4 * r.data.length + 16 : "out" in r ? 4 * r.out.length : r.bytes,
      );
    }
  });
  const words = regions.length + 8, scaleAt = 8 * Math.ceil(4 * words / 8), po = bytes;
  bytes += align16(scaleAt + 8);
  const scratch = attentionScratch(g.S, g.D, backward);
  const w = wasmTasks(bytes, scratch);
  if (w === null) return null;
  const d = w.data;
  const at = regions.map((r, i) => (!r ? 0 : home[i] >= 0 ? home[i] : d + offsets[i]));
  regions.forEach((r, i) => {
    if (r && "data" in r && home[i] < 0) w.f32.set(r.data, at[i] >> 2);
  });
  const { H, T, S, D } = g;
  w.i32.set([...at, H, T, S, D, +g.bhtd, +g.causal, align16(d + bytes), scratch], (d + po) >> 2);
  w.f64[(d + po + scaleAt) >> 3] = g.scale;
  const tasks = ranges(g.B * H, w.threads, T * S * D);
  tasks.forEach(([s, e], i) => w.set(i, kind, [d + po, s, e]));
  w.run(tasks.length);
  regions.forEach((r, i) => {
    if (r && "out" in r && home[i] < 0) {
      r.out.set(w.f32.subarray(at[i] >> 2, (at[i] >> 2) + r.out.length));
    }
  });
  return { w, at };
}

/**
 * Attention forward without dropout as `attentionCpu` in ops/attention.ts (the
 * reference, f64 sums in its order), in WebAssembly on the CPU threads: out
 * and lse (f32) from q, k, v and an optional key mask; false when WebAssembly
 * is off.
 */
export function attentionF32(
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  mask: Float32Array | Int32Array | null,
  out: Float32Array,
  lse: Float32Array,
  g: AttentionF32,
): boolean {
  const { B, H, T, S, D } = g, nq = B * H * T * D, nk = B * H * S * D, rows = B * H * T;
  const m = maskF32(mask);
  const r = runAttention(WASM_TASK.attention, g, [
    { data: q.subarray(0, nq) },
    { data: k.subarray(0, nk) },
    { data: v.subarray(0, nk) },
    m ? { data: m.subarray(0, B * S) } : null,
    { out: out.subarray(0, nq) },
    { bytes: 16 * rows }, // per row: the max and Σ exp (f64), or −∞ and −1 when no key is allowed
  ], false);
  if (r === null) return false;
  const { w, at } = r;
  const st = at[5] >> 3, logS = Math.log(S);
  for (let i = 0; i < rows; i++) {
    const max = w.f64[st + 2 * i], sum = w.f64[st + 2 * i + 1];
    lse[i] = sum === -1 ? logS : max + Math.log(sum);
  }
  return true;
}

/**
 * Attention backward without dropout as `attentionBackwardCpu` in
 * ops/attention.ts, in WebAssembly on the CPU threads: dq, dk, dv from q, k,
 * v, the key mask, out, lse, dOut and an optional dLse; false when
 * WebAssembly is off.
 */
export function attentionBackwardF32(
  ins: {
    q: Float32Array;
    k: Float32Array;
    v: Float32Array;
    mask: Float32Array | Int32Array | null;
    o: Float32Array;
    lse: Float32Array;
    dO: Float32Array;
    dlse: Float32Array | null;
  },
  dq: Float32Array,
  dk: Float32Array,
  dv: Float32Array,
  g: AttentionF32,
): boolean {
  const { B, H, T, S, D } = g, nq = B * H * T * D, nk = B * H * S * D, rows = B * H * T;
  const m = maskF32(ins.mask);
  const r = runAttention(WASM_TASK.attentionBackward, g, [
    { data: ins.q.subarray(0, nq) },
    { data: ins.k.subarray(0, nk) },
    { data: ins.v.subarray(0, nk) },
    m ? { data: m.subarray(0, B * S) } : null,
    { data: ins.o.subarray(0, nq) },
    { data: ins.lse.subarray(0, rows) },
    { data: ins.dO.subarray(0, nq) },
    ins.dlse ? { data: ins.dlse.subarray(0, rows) } : null,
    { out: dq.subarray(0, nq) },
    { out: dk.subarray(0, nk) },
    { out: dv.subarray(0, nk) },
  ], true);
  return r !== null;
}

/**
 * LayerNorm forward as `LAYER_NORM.cpu` in ops/layer_norm.ts (the same bits): y [R, C],
 * mean and rstd [R] from x [R, C], w and b [C]; rows split among the threads. False when
 * WebAssembly is off.
 */
export function layerNormF32(
  x: Float32Array,
  w: Float32Array,
  b: Float32Array,
  out: { y: Float32Array; mean: Float32Array; rstd: Float32Array },
  g: { R: number; C: number; eps: number },
): boolean {
  const { R, C } = g, n = R * C, pl = new Placement();
  // 16 bytes of slack past copies: an odd C's last pair reads one f32 past x's row, w and b
  const X = pl.add(x.subarray(0, n), 16), W = pl.add(w.subarray(0, C), 16);
  const B = pl.add(b.subarray(0, C), 16), Y = pl.add(out.y.subarray(0, n));
  const M = pl.add(out.mean.subarray(0, R)), S = pl.add(out.rstd.subarray(0, R));
  const ws = wasmTasks(pl.bytes);
  if (ws === null) return false;
  pl.copyIn(ws, X, W, B);
  const tasks = ranges(R, ws.threads, C);
  tasks.forEach(([r0, r1], i) =>
    ws.set(i, WASM_TASK.layerNorm, [
      pl.at(X) + 4 * r0 * C,
      pl.at(W),
      pl.at(B),
      pl.at(Y) + 4 * r0 * C,
      pl.at(M) + 4 * r0,
      pl.at(S) + 4 * r0,
      r1 - r0,
      C,
    ], [g.eps])
  );
  ws.run(tasks.length);
  pl.copyOut(ws, Y, M, S);
  return true;
}

/** Column tasks of the LayerNorm backward's dw and db at most (each has its own sums). */
const LN_COLUMN_TASKS = 8;

/**
 * LayerNorm backward as `LAYER_NORM_GRAD.cpu` (the same bits): dx [R, C] (plus acc when
 * given), dw and db [C], from x, dy [R, C], w [C], mean and rstd [R]. The threads split
 * dx by rows and dw, db by columns (each column summed over the rows in order). False
 * when WebAssembly is off.
 */
export function layerNormGradF32(
  ins: {
    x: Float32Array;
    w: Float32Array;
    mean: Float32Array;
    rstd: Float32Array;
    dy: Float32Array;
    acc: Float32Array | null;
  },
  out: { dx: Float32Array; dw: Float32Array; db: Float32Array },
  g: { R: number; C: number },
): boolean {
  const { R, C } = g, n = R * C, pl = new Placement();
  // 16 bytes of slack past copies: the kernels read one f32 past an odd count
  const X = pl.add(ins.x.subarray(0, n), 16), DY = pl.add(ins.dy.subarray(0, n), 16);
  const A = ins.acc ? pl.add(ins.acc.subarray(0, n), 16) : -1;
  const W = pl.add(ins.w.subarray(0, C), 16), M = pl.add(ins.mean.subarray(0, R));
  const S = pl.add(ins.rstd.subarray(0, R)), DX = pl.add(out.dx.subarray(0, n));
  const DW = pl.add(out.dw.subarray(0, C)), DB = pl.add(out.db.subarray(0, C));
  const sOff = pl.bytes;
  const ws = wasmTasks(sOff + 16 * (C + 2 * LN_COLUMN_TASKS));
  if (ws === null) return false;
  pl.copyIn(ws, X, DY, ...(ins.acc ? [A] : []), W, M, S);
  const at = (i: number) => pl.at(i);
  let k = 0;
  for (const [r0, r1] of ranges(R, ws.threads, 2 * C)) {
    ws.set(k++, WASM_TASK.layerNormGrad, [
      at(X) + 4 * r0 * C,
      at(W),
      at(M) + 4 * r0,
      at(S) + 4 * r0,
      at(DY) + 4 * r0 * C,
      ins.acc ? at(A) + 4 * r0 * C : 0,
      at(DX) + 4 * r0 * C,
      r1 - r0,
      C,
    ]);
  }
  const parts = ws.threads > 1 && n >= MIN_THREADED ? Math.min(ws.threads, LN_COLUMN_TASKS, C) : 1;
  let sums = ws.data + sOff;
  for (const [j0, j1] of cut(C, new Array<number>(parts).fill(1))) {
    ws.set(k++, WASM_TASK.layerNormGradColumns, [
      at(X) + 4 * j0,
      at(M),
      at(S),
      at(DY) + 4 * j0,
      R,
      j1 - j0,
      C,
      sums,
      at(DW) + 4 * j0,
      at(DB) + 4 * j0,
    ]);
    sums += 16 * (j1 - j0 + 2);
  }
  ws.run(k);
  pl.copyOut(ws, DX, DW, DB);
  return true;
}

/** The residual's masks and sizes for {@linkcode residualF32} and {@linkcode residualBackwardF32}. */
export interface ResidualF32 {
  /** Samples (the first axis). */
  B: number;
  /** Elements per sample. */
  per: number;
  /** Columns (γ's length). */
  C: number;
  /** DropPath multipliers per sample (f32 values), or null. */
  path: Float64Array | null;
  /** Dropout, or null: element i is dropped when `hashU32(seed, i) >>> 8 < thr`. */
  dropout: { seed: number; thr: number; scale: number } | null;
}

/** Body byte of the residual tasks' f64 (after their 12 or 15 words). */
const RESIDUAL_FLOATS_AT = 88;

/** The residual tasks' last words (dropout on, seed, threshold) and their f64 (the scale). */
function dropoutWords(d: ResidualF32["dropout"]): { words: number[]; floats: number[] } {
  return d
    ? { words: [1, d.seed | 0, d.thr], floats: [d.scale] }
    : { words: [0, 0, 0], floats: [1] };
}

/**
 * The residual forward as `RESIDUAL.cpu` in ops/residual.ts computes it in f32 (the same
 * bits): out = x + DropPath(γ ⊙ dropout(branch)), γ optional; elements among the threads.
 * False when WebAssembly is off.
 */
export function residualF32(
  x: Float32Array,
  branch: Float32Array,
  gamma: Float32Array | null,
  out: Float32Array,
  o: ResidualF32,
): boolean {
  const n = o.B * o.per, pl = new Placement();
  const X = pl.add(x.subarray(0, n)), BR = pl.add(branch.subarray(0, n));
  const G = gamma ? pl.add(gamma.subarray(0, o.C)) : -1, OUT = pl.add(out.subarray(0, n));
  const pathOff = pl.bytes;
  const w = wasmTasks(pathOff + 8 * (o.path?.length ?? 0));
  if (w === null) return false;
  pl.copyIn(w, X, BR, ...(gamma ? [G] : []));
  if (o.path) w.f64.set(o.path, (w.data + pathOff) >> 3);
  const drop = dropoutWords(o.dropout);
  const tasks = ranges(n, w.threads, 2);
  tasks.forEach(([i0, i1], i) =>
    w.set(
      i,
      WASM_TASK.residual,
      [
        pl.at(X),
        pl.at(BR),
        gamma ? pl.at(G) : 0,
        pl.at(OUT),
        o.path ? w.data + pathOff : 0,
        i0,
        i1,
        o.per,
        o.C,
        ...drop.words,
      ],
      drop.floats,
      RESIDUAL_FLOATS_AT,
    )
  );
  w.run(tasks.length);
  pl.copyOut(w, OUT);
  return true;
}

/**
 * The residual backward as `RESIDUAL_BACKWARD.cpu` computes it in f32 (the same bits):
 * dbranch from dy, and with `dgamma` its column sums Σ dy·kp·dropout(branch) in f64 over
 * the rows in order (branch needed then); columns among the threads. False when
 * WebAssembly is off.
 */
export function residualBackwardF32(
  dy: Float32Array,
  branch: Float32Array | null,
  gamma: Float32Array | null,
  dbranch: Float32Array,
  dgamma: Float32Array | null,
  o: ResidualF32,
): boolean {
  const n = o.B * o.per, rows = n / o.C, pl = new Placement();
  const DY = pl.add(dy.subarray(0, n)), BR = branch && dgamma ? pl.add(branch.subarray(0, n)) : -1;
  const G = gamma ? pl.add(gamma.subarray(0, o.C)) : -1, DB = pl.add(dbranch.subarray(0, n));
  const DG = dgamma ? pl.add(dgamma.subarray(0, o.C)) : -1;
  const pathOff = pl.bytes, accOff = align16(pathOff + 8 * (o.path?.length ?? 0));
  const w = wasmTasks(accOff + 8 * o.C);
  if (w === null) return false;
  pl.copyIn(w, DY, ...(BR >= 0 ? [BR] : []), ...(gamma ? [G] : []));
  if (o.path) w.f64.set(o.path, (w.data + pathOff) >> 3);
  const drop = dropoutWords(o.dropout);
  const tasks = ranges(o.C, w.threads, 2 * rows);
  tasks.forEach(([j0, j1], i) =>
    w.set(
      i,
      WASM_TASK.residualBackward,
      [
        pl.at(DY),
        BR >= 0 ? pl.at(BR) : 0,
        gamma ? pl.at(G) : 0,
        pl.at(DB),
        dgamma ? w.data + accOff : 0,
        dgamma ? pl.at(DG) : 0,
        o.path ? w.data + pathOff : 0,
        rows,
        o.per,
        o.C,
        j0,
        j1,
        ...drop.words,
      ],
      drop.floats,
      RESIDUAL_FLOATS_AT,
    )
  );
  w.run(tasks.length);
  pl.copyOut(w, DB, ...(dgamma ? [DG] : []));
  return true;
}
