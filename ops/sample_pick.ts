/**
 * Sampling's choice, made where the logits are: for logits `[N, V]`, a done
 * flag and a uniform draw per row, each row's sampled token as the host's
 * sampling path in train/generate.ts picks it for a row without penalties
 * (`applyTemperature`, `applyTopK`, `applyTopP`, then `sampleIndex` with
 * that draw), its log-softmax value under the ORIGINAL logits, and the done
 * flags after this step. It is {@linkcode GREEDY_PICK}'s twin: a WebGPU
 * decoder feeds the ids straight into its next step and reads the picks back
 * only every few steps, since in Deno 2.9.6 each readback waits about 12 ms.
 *
 * Inputs `[logits [N, V] f32, done [N] f32 (0 or 1), u [N] f32 in [0, 1)]`,
 * params `{ eosId, padId, temperature, topK, topP }`, outputs:
 * - `ids [N, 1] i32`: the sampled id, or `padId` where the row was done;
 * - `picks [N, 2] f32`: (id, log-softmax of the logits at id), or (padId, 0) where done;
 * - `done [N] f32`: 1 where the row was done or picked `eosId`.
 *
 * Per row, as the host: `w = logits / temperature` (in the row's float
 * type; temperature 1 leaves it as is); top-k keeps the values ≥ the k-th
 * largest (ties kept; k = 0 or k ≥ V: off); top-p keeps the smallest prefix
 * of the values in descending order (ties: lower index first) whose softmax
 * mass reaches p, at least one value (p = 1: off); every other value becomes
 * −∞. The draw walks the indices ascending over the positive probabilities
 * of softmax of what is left and returns the first index whose cumulative
 * probability exceeds u, else the last positive one. −∞ logits have
 * probability 0; a row that is −∞ everywhere (after the temperature) samples
 * uniformly over all V indices (the filters leave it as it is), and its
 * log-probability is −log V where the logits themselves are all −∞.
 *
 * The CPU reference runs those steps on the host in the input's float type
 * (float64 sums), so with f32 inputs it gives exactly the host's picks. The
 * GPU works in f32, one workgroup per row (at most 1 KiB of workgroup
 * memory): tree reductions for the maxima and softmax sums; the k-th largest
 * value exactly, by a bitwise binary search over the order-preserving u32
 * keys of the tempered values (counting the values ≥ each candidate key);
 * top-p's boundary value by the same search on the mass at or above a
 * candidate, and the boundary's ties in index order by a workgroup prefix
 * count; the draw by a prefix sum over contiguous per-thread chunks of the
 * indices. The keys and masses wait between those passes in two scratch
 * buffers (N rows of ⌈V/4⌉ vec4s). Its ids can differ from the host's only where a
 * cumulative probability lies within f32 rounding of u or of p (the GPU
 * holds both as f32), or where the division by the temperature (WGSL allows
 * 2.5 ulp) rounds two values onto or off a tie. Logits that are NaN or +∞,
 * or finite ones whose quotient by the temperature overflows to +∞, give
 * unspecified GPU picks.
 *
 * @example
 * ```ts
 * import { samplePick, tensor } from "@webseq/webseq";
 * // row 0 keeps its two largest (top-k 2): probabilities 0.27, 0.73 → u 0.5 takes index 3;
 * // row 1 is done already
 * const [ids, picks, done] = samplePick(
 *   tensor([0, 2, -1, 3, 1, 1, 1, 1], [2, 4]),
 *   tensor([0, 1], [2]),
 *   tensor([0.5, 0.5], [2]),
 *   { eosId: 3, padId: 0, temperature: 1, topK: 2, topP: 1 },
 * );
 * console.log(await ids.toArray(), await done.toArray()); // [3, 0] [1, 1]
 * ```
 *
 * @module
 */
import { apply, type Tensor } from "../tensor/tensor.ts";
import { fmtShape, type OpDef, packUniform } from "../tensor/types.ts";
import type { OpEntry } from "./registry.ts";
import { WGSL_WRITE_PICK } from "./greedy_pick.ts";
import { expF64 } from "./_exp.ts";
import { crossEntropyRowsF32 } from "./_cpu_threads_kernels.ts";
import { lastAxisRows, rowWorkgroupSize, wgslRowMain, wgslRowReduce } from "./softmax.ts";

/** Parameters of {@linkcode SAMPLE_PICK}. */
export interface SamplePickParams {
  /** End-of-sequence id: a row that picks it is done. */
  eosId: number;
  /** Id a done row gets. */
  padId: number;
  /** The logits are divided by it before the filters (> 0; 1 leaves them). */
  temperature: number;
  /** Keep the k largest values, ties with the k-th included (0 or ≥ V: off). */
  topK: number;
  /** Keep the smallest most likely set whose probability reaches p, in [0, 1] (1: off). */
  topP: number;
}

// ---------------------------------------------------------------------------
// The row functions: the host's sampling path (train/generate.ts re-exports
// them) and this op's CPU reference

/** One row of logits, in the float type of the logits (the host's rows are Float32Arrays). */
export type LogitsRow = Float32Array | Float64Array | Float16Array;

/**
 * log Σ exp(row) as `max + log Σ exp(row − max)` (float64 sums in index order
 * with `expF64`; −∞ entries skipped, they add expF64(−∞) = 0), or −∞ when
 * every entry is −∞. The log-softmax of entry i is `row[i] − logSumExp(row)`
 * (all −∞: −log V).
 */
export function logSumExp(row: LogitsRow): number {
  let max = -Infinity;
  for (let j = 0; j < row.length; j++) if (row[j] > max) max = row[j];
  if (max === -Infinity) return -Infinity;
  let z = 0;
  for (let j = 0; j < row.length; j++) if (row[j] !== -Infinity) z += expF64(row[j] - max);
  return max + Math.log(z);
}

/**
 * {@linkcode logSumExp} of each row of `x` [N, V], the same bits: for f32,
 * every row at once from the cross-entropy row kernel (WebAssembly on the CPU
 * threads: the largest logit and Σ expF64(x − max) in index order), about 40×
 * faster than one row at a time with N·V = 256k.
 */
export function rowsLogSumExp(x: LogitsRow, N: number, V: number): Float64Array {
  const out = new Float64Array(N);
  const stats = x instanceof Float32Array && V > 0 ? crossEntropyRowsF32(x, null, N, V) : null;
  for (let r = 0; r < N; r++) {
    const m = stats ? stats[4 * r] : NaN;
    // a row of −∞ has no sum there (exp(−∞ − (−∞)) is NaN); the kernel's max is NaN where a
    // NaN is, logSumExp's max skips it: such rows (rare) take logSumExp itself
    if (m === -Infinity) out[r] = -Infinity;
    else if (m === m) out[r] = m + Math.log(stats![4 * r + 2]);
    else out[r] = logSumExp(x.subarray(r * V, (r + 1) * V));
  }
  return out;
}

/**
 * log-softmax of `row` at `i` (all −∞: −log V), as `logSoftmax` in
 * train/generate.ts; `lse` is the row's {@linkcode logSumExp} when known.
 */
export function logSoftmaxAt(row: LogitsRow, i: number, lse: number = logSumExp(row)): number {
  return lse === -Infinity ? -Math.log(row.length) : row[i] - lse;
}

/** softmax of one row, computed in double precision (all −∞: uniform). */
export function softmaxRow(logits: LogitsRow): Float64Array {
  let max = -Infinity;
  for (const v of logits) if (v > max) max = v;
  const out = new Float64Array(logits.length);
  if (max === -Infinity) return out.fill(1 / logits.length);
  let z = 0;
  for (let i = 0; i < logits.length; i++) {
    // a filtered (−∞) logit is probability 0: no exp call
    if (logits[i] !== -Infinity) z += out[i] = Math.exp(logits[i] - max);
  }
  for (let i = 0; i < out.length; i++) out[i] /= z;
  return out;
}

/** Divides the logits by `temperature`, in place. */
export function applyTemperature(logits: LogitsRow, temperature: number): void {
  if (temperature === 1) return;
  if (!(temperature > 0)) throw new RangeError(`temperature must be > 0, got ${temperature}`);
  for (let i = 0; i < logits.length; i++) logits[i] /= temperature;
}

/** Keeps the `k` largest logits (ties with the k-th kept, as HF does); the rest -Infinity. */
export function applyTopK(logits: LogitsRow, k: number): void {
  if (k <= 0 || k >= logits.length) return;
  const kth = kthLargest(logits, k);
  for (let i = 0; i < logits.length; i++) if (logits[i] < kth) logits[i] = -Infinity;
}

/**
 * The value at `Float64Array.from(x).sort()[x.length - k]` (ascending, NaN
 * last) for 1 ≤ k ≤ x.length, without the sort: NaN when the k largest are all
 * NaN, else the (k − #NaN)-th largest of the rest, from a min-heap of that many
 * values (O(V log k): 40–60 µs where the sort of 8000 logits took 600–800).
 */
export function kthLargest(x: ArrayLike<number>, k: number): number {
  let nan = 0;
  for (let i = 0; i < x.length; i++) if (x[i] !== x[i]) nan++;
  if (k <= nan) return NaN;
  const m = k - nan, heap = new Float64Array(m);
  let size = 0;
  for (let i = 0; i < x.length; i++) {
    const v = x[i];
    if (v !== v) continue;
    if (size < m) {
      // sift up
      let c = size++;
      while (c > 0) {
        const p = (c - 1) >> 1;
        if (heap[p] <= v) break;
        heap[c] = heap[p];
        c = p;
      }
      heap[c] = v;
    } else if (v > heap[0]) {
      // replace the smallest, sift down
      let c = 0;
      for (;;) {
        let j = 2 * c + 1;
        if (j >= m) break;
        if (j + 1 < m && heap[j + 1] < heap[j]) j++;
        if (heap[j] >= v) break;
        heap[c] = heap[j];
        c = j;
      }
      heap[c] = v;
    }
  }
  return heap[0];
}

/**
 * Nucleus filtering, in place: keeps the smallest set of most likely tokens
 * (descending, ties: lower index first) whose cumulative probability reaches
 * `p` (always at least one token).
 */
export function applyTopP(logits: LogitsRow, p: number): void {
  if (p >= 1) return;
  if (!(p >= 0)) throw new RangeError(`topP must be in [0, 1], got ${p}`);
  const probs = softmaxRow(logits);
  // only the entries not already −∞ need ordering: the rest have probability 0, come last in
  // the descending order and stay −∞ whether kept or not (after top-k: k of V to sort)
  const order: number[] = [];
  for (let i = 0; i < logits.length; i++) if (logits[i] !== -Infinity) order.push(i);
  order.sort((a, b) => (logits[b] - logits[a]) || a - b);
  let cum = 0;
  let keep = 0;
  while (keep < order.length) {
    cum += probs[order[keep]];
    keep++;
    if (cum >= p) break;
  }
  for (let r = keep; r < order.length; r++) logits[order[r]] = -Infinity;
}

/**
 * The index softmax(logits) draws for the uniform `u` in [0, 1): the first
 * whose cumulative probability exceeds `u`, walking the positive
 * probabilities in index order (the last of them if rounding leaves `u` above
 * the total).
 */
export function sampleAt(logits: LogitsRow, u: number): number {
  const probs = softmaxRow(logits);
  let cum = 0;
  let last = 0;
  for (let i = 0; i < probs.length; i++) {
    if (probs[i] <= 0) continue;
    last = i;
    cum += probs[i];
    if (u < cum) return i;
  }
  return last;
}

/** One row's (id, log-probability) from logits `x` at offset `o` and the draw `u`. */
function pickRow(
  x: LogitsRow,
  o: number,
  V: number,
  u: number,
  p: SamplePickParams,
): [number, number] {
  const row = x.slice(o, o + V);
  applyTemperature(row, p.temperature);
  applyTopK(row, p.topK);
  applyTopP(row, p.topP);
  const id = sampleAt(row, u);
  return [id, logSoftmaxAt(x.subarray(o, o + V), id)];
}

function checkParams(p: SamplePickParams): void {
  const ints: [string, number][] = [["eosId", p.eosId], ["padId", p.padId], ["topK", p.topK]];
  for (const [name, v] of ints) {
    if (!Number.isInteger(v)) {
      throw new TypeError(`Cannot samplePick: ${name} must be an integer, got ${v}`);
    }
    if (v < 0) throw new RangeError(`Cannot samplePick: ${name} must be at least 0, got ${v}`);
  }
  if (!(p.temperature > 0) || !Number.isFinite(p.temperature)) {
    throw new RangeError(
      `Cannot samplePick: temperature must be a positive number, got ${p.temperature}`,
    );
  }
  if (!(p.topP >= 0 && p.topP <= 1)) {
    throw new RangeError(`Cannot samplePick: topP must be in [0, 1], got ${p.topP}`);
  }
}

/** See the module doc. */
export const SAMPLE_PICK: OpDef<SamplePickParams> = {
  name: "samplePick",
  outputs([logits, done, u], p) {
    const [N] = logits.shape.length === 2 ? logits.shape : [-1];
    const flags = (t: typeof done) => t.shape.length === 1 && t.shape[0] === N && t.dtype !== "i32";
    if (
      logits.shape.length !== 2 || logits.dtype === "i32" || logits.shape[1] < 1 || !flags(done) ||
      !flags(u)
    ) {
      throw new TypeError(
        `Cannot samplePick: logits ${
          fmtShape(logits.shape)
        } ${logits.dtype} must be float [N, V] ` +
          `(V ≥ 1), done ${fmtShape(done.shape)} ${done.dtype} and u ${
            fmtShape(u.shape)
          } ${u.dtype} float [N]`,
      );
    }
    checkParams(p);
    return [
      { shape: [N, 1], dtype: "i32" },
      { shape: [N, 2], dtype: logits.dtype },
      { shape: [N], dtype: logits.dtype },
    ];
  },
  cpu([x, done, u], [ids, picks, doneOut], info, p) {
    const [N, V] = lastAxisRows(info.inputs[0].shape);
    for (let r = 0; r < N; r++) {
      if (done[r] !== 0) {
        ids[r] = p.padId;
        picks[2 * r] = p.padId;
        picks[2 * r + 1] = 0;
        doneOut[r] = 1;
        continue;
      }
      const [id, logp] = pickRow(x as LogitsRow, r * V, V, u[r], p);
      ids[r] = id;
      picks[2 * r] = id;
      picks[2 * r + 1] = logp;
      doneOut[r] = id === p.eosId ? 1 : 0;
    }
  },
  gpu(info, p) {
    const [N, V] = lastAxisRows(info.inputs[0].shape);
    const wg = rowWorkgroupSize(V);
    const k = p.topK >= V ? 0 : p.topK;
    const W = Math.ceil(V / 4);
    return {
      temps: [N * W * 16, N * W * 16], // keys and masses, ⌈V/4⌉ vec4s a row
      kernels: [{
        code: kernelCode(wg),
        bind: [
          { in: 0 },
          { in: 1 },
          { in: 2 },
          { out: 0 },
          { out: 1 },
          { out: 2 },
          { tmp: 0 },
          { tmp: 1 },
        ],
        uniform: packUniform(
          [N, V, p.eosId, p.padId, k, p.topP < 1 ? 1 : 0],
          [p.temperature, p.topP],
        ),
        workgroups: N <= 65535 ? [N, 1, 1] : [65535, Math.ceil(N / 65535), 1],
      }],
    };
  },
};

// ---------------------------------------------------------------------------
// WGSL

const codes = new Map<number, string>();

/** `wg_scan(v, lid)`: (exclusive prefix sum over the threads, total), through `red`. */
function wgslScan(wg: number): string {
  return `fn wg_scan(v: f32, lid: u32) -> vec2f {
  red[lid] = v;
  workgroupBarrier();
  for (var s = 1u; s < ${wg}u; s <<= 1u) {
    let a = select(0.0, red[select(0u, lid - s, lid >= s)], lid >= s);
    workgroupBarrier();
    red[lid] = red[lid] + a;
    workgroupBarrier();
  }
  let r = vec2f(select(0.0, red[max(lid, 1u) - 1u], lid > 0u), red[${wg - 1}u]);
  workgroupBarrier();
  return r;
}`;
}

/**
 * One workgroup per row, in six phases (the reductions return to every
 * thread): 1. the maxima of the logits and of the tempered row, whose keys go
 * to the scratch `keys`; 2. top-k's threshold key `kth`; 3. the softmax sums,
 * with the keys after top-k and their masses written back to `keys` and
 * `mass`; 4. top-p's boundary key `tau` and the mass above it; 5. the ranks
 * of the values at `tau` in index order; 6. the draw over contiguous chunks.
 * The scratch holds a row as ⌈V/4⌉ vec4s (padding: key 0, below every value,
 * and mass 0), so the search passes (up to 64) read four values a step without a
 * division or an exp. `V` is 0 for a done row, so its loops are empty;
 * thread 0 writes.
 */
function kernelCode(wg: number): string {
  let code = codes.get(wg);
  if (code) return code;
  code = `
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> done: array<f32>;
@group(0) @binding(2) var<storage, read> draw: array<f32>;
@group(0) @binding(3) var<storage, read_write> ids: array<i32>;
@group(0) @binding(4) var<storage, read_write> picks: array<f32>;
@group(0) @binding(5) var<storage, read_write> done_out: array<f32>;
@group(0) @binding(6) var<storage, read_write> keys: array<vec4u>; // [N, ⌈V/4⌉] scratch
@group(0) @binding(7) var<storage, read_write> mass: array<vec4f>; // [N, ⌈V/4⌉] scratch
struct U { R: u32, V: u32, eos: u32, pad: u32, k: u32, top_p_on: u32, temp: f32, top_p: f32 }
@group(0) @binding(8) var<uniform> u: U;
${wgslRowReduce(wg)}
${wgslScan(wg)}
const LOWEST: f32 = -3.4028234663852886e38;
const NEG_INF_KEY: u32 = 0x007fffffu; // key(−∞): a key above it is a value above −∞

// the order-preserving u32 of an f32, −0 as +0: a < b exactly where key(a) < key(b)
fn key(v: f32) -> u32 {
  let b = select(bitcast<u32>(v), 0u, v == 0.0);
  return select(b | 0x80000000u, ~b, b >= 0x80000000u);
}

// the f32 of keys
fn value(k: vec4u) -> vec4f {
  return bitcast<vec4f>(select(~k, k ^ vec4u(0x80000000u), k >= vec4u(0x80000000u)));
}

fn sum4(v: vec4f) -> f32 { return (v.x + v.y) + (v.z + v.w); }

${WGSL_WRITE_PICK}
${wgslRowMain(wg)}
  let o = row * u.V;
  let W = (u.V + 3u) / 4u; // the scratch row in vec4s
  let o4 = row * W;
  let V = select(u.V, 0u, done[row] != 0.0);
  let V4 = select(W, 0u, done[row] != 0.0);
  let chunk = (V + ${wg - 1}u) / ${wg}u;
  let c0 = min(lid * chunk, V);
  let c1 = min(c0 + chunk, V);

  // 1. maxima of the logits (log-softmax) and of the tempered row (the host's f32
  //    row[i] /= temperature), whose keys go to the scratch
  var mx = LOWEST;
  var mw = LOWEST;
  var live_x = false;
  var live_w = false;
  for (var j4 = lid; j4 < V4; j4 += ${wg}u) {
    var k4 = vec4u(0u);
    for (var c = 0u; c < 4u; c++) {
      let j = 4u * j4 + c;
      if (j < V) {
        let v = x[o + j];
        if (key(v) > NEG_INF_KEY) { mx = max(mx, v); live_x = true; }
        let t = select(v / u.temp, v, u.temp == 1.0);
        k4[c] = key(t);
        if (k4[c] > NEG_INF_KEY) { mw = max(mw, t); live_w = true; }
      }
    }
    keys[o4 + j4] = k4;
  }
  let max_x = wg_max(mx, lid);
  let any_x = wg_max(select(0.0, 1.0, live_x), lid) > 0.0;
  let max_w = wg_max(mw, lid);
  // the tempered row is −∞ everywhere: the host's filters leave it, and it samples uniformly
  let uniform_row = wg_max(select(0.0, 1.0, live_w), lid) == 0.0;

  // 2. top-k: the largest key that at least k values reach, bit by bit from the top (no value
  //    reaches a key above the maximum's: no pass)
  let top = key(max_w);
  var kth = 0u;
  if (u.k > 0u) {
    for (var b = 0u; b < 32u; b++) {
      let cand = kth | (0x80000000u >> b);
      var n = vec4f(0.0);
      if (cand <= top) {
        for (var j4 = lid; j4 < V4; j4 += ${wg}u) {
          n += select(vec4f(0.0), vec4f(1.0), keys[o4 + j4] >= vec4u(cand));
        }
      }
      if (wg_sum(sum4(n), lid) >= f32(u.k)) { kth = cand; }
    }
  }

  // 3. softmax sums: of the logits, and of the row after top-k, whose keys (dropped: −∞) and
  //    masses exp(t − max) (−∞: 0; a uniform row: 1) go to the scratch
  var zx = 0.0;
  var zk = vec4f(0.0);
  for (var j4 = lid; j4 < V4; j4 += ${wg}u) {
    for (var c = 0u; c < 4u; c++) {
      let j = 4u * j4 + c;
      if (j < V) {
        let v = x[o + j];
        if (key(v) > NEG_INF_KEY) { zx += exp(max(v - max_x, -150.0)); }
      }
    }
    let real = vec4u(4u * j4) + vec4u(0u, 1u, 2u, 3u) < vec4u(V);
    var k4 = keys[o4 + j4];
    k4 = select(k4, vec4u(NEG_INF_KEY), real & (k4 < vec4u(kth)));
    let live = k4 > vec4u(NEG_INF_KEY);
    var e = select(vec4f(0.0), exp(max(value(k4) - max_w, vec4f(-150.0))), live);
    if (uniform_row) { e = select(vec4f(0.0), vec4f(1.0), real); }
    keys[o4 + j4] = k4;
    mass[o4 + j4] = e;
    zk += e;
  }
  let sum_x = wg_sum(zx, lid);
  let target_p = u.top_p * wg_sum(sum4(zk), lid);
  storageBarrier();

  // 4. top-p: tau = the largest key (at most the maximum's) whose values and those above carry
  //    mass ≥ target_p, bit by bit (a key ≤ kth carries all of the top-k row's mass: no pass);
  //    the mass above tau decides how many of its ties stay
  var tau = 0u;
  var above = 0.0;
  var rank0 = 0.0;
  if (u.top_p_on != 0u) {
    for (var b = 0u; b < 32u; b++) {
      let cand = tau | (0x80000000u >> b);
      var s = vec4f(0.0);
      if (cand <= top && cand > kth) {
        for (var j4 = lid; j4 < V4; j4 += ${wg}u) {
          s += select(vec4f(0.0), mass[o4 + j4], keys[o4 + j4] >= vec4u(cand));
        }
      }
      let got = wg_sum(sum4(s), lid);
      if (cand <= top && (cand <= kth || got >= target_p)) { tau = cand; }
    }
    var s = vec4f(0.0);
    for (var j4 = lid; j4 < V4; j4 += ${wg}u) {
      s += select(vec4f(0.0), mass[o4 + j4], keys[o4 + j4] > vec4u(tau));
    }
    above = wg_sum(sum4(s), lid);
    // 5. this chunk's first rank among the values at tau (index order)
    var n = 0.0;
    for (var j = c0; j < c1; j++) { if (keys[o4 + j / 4u][j % 4u] == tau) { n += 1.0; } }
    rank0 = wg_scan(n, lid).x;
  }
  // what the draw sees: all of a uniform row; else the mass of the keys above tau and of the
  // ones at tau while the mass before them is below target_p (the first one always)
  let keep_all = u.top_p_on == 0u || uniform_row;

  // 6. the draw: prefix sums of the kept mass in index order; the first index whose cumulative
  //    mass exceeds u · total, else the last index with mass
  var part = 0.0;
  var rank = rank0;
  for (var j = c0; j < c1; j++) {
    let kk = keys[o4 + j / 4u][j % 4u];
    let e = mass[o4 + j / 4u][j % 4u];
    if (keep_all || kk > tau || (kk == tau && (rank == 0.0 || above + rank * e < target_p))) {
      part += e;
    }
    if (kk == tau) { rank += 1.0; }
  }
  let scan = wg_scan(part, lid);
  let aim = draw[row] * scan.y;
  var cum = scan.x;
  var hit = -f32(u.V); // −index of this chunk's first hit (−V: none)
  var last = -1.0;
  rank = rank0;
  for (var j = c0; j < c1; j++) {
    let kk = keys[o4 + j / 4u][j % 4u];
    var e = mass[o4 + j / 4u][j % 4u];
    if (!(keep_all || kk > tau || (kk == tau && (rank == 0.0 || above + rank * e < target_p)))) {
      e = 0.0;
    }
    if (kk == tau) { rank += 1.0; }
    if (e > 0.0) {
      last = f32(j);
      cum += e;
      if (aim < cum) { hit = -f32(j); break; }
    }
  }
  let first = wg_max(hit, lid);
  let fallback = wg_max(last, lid);
  if (lid == 0u) {
    var id = 0u;
    if (first > -f32(u.V)) { id = u32(-first); } else if (fallback >= 0.0) { id = u32(fallback); }
    let logp = select(-log(f32(u.V)), x[o + id] - (max_x + log(sum_x)), any_x);
    write_pick(row, id, logp);
  }
}`;
  codes.set(wg, code);
  return code;
}

/** See the module doc: `[ids [N, 1] i32, picks [N, 2], done [N]]`. */
export function samplePick(
  logits: Tensor,
  done: Tensor,
  u: Tensor,
  params: SamplePickParams,
): [Tensor, Tensor, Tensor] {
  const [ids, picks, doneOut] = apply(SAMPLE_PICK, [logits, done, u], params);
  return [ids, picks, doneOut];
}

const NEG = -Infinity;

/**
 * Registry cases: every filter with ties at its boundary, −∞ entries and a
 * −∞ row, done rows and eos picks, wide rows (several elements per thread);
 * no cumulative mass lies near a draw or p.
 */
export const SAMPLE_PICK_ENTRIES: OpEntry[] = [{
  op: SAMPLE_PICK,
  cases: [
    {
      label: "temperature, top-k and top-p with ties; −∞; done rows pad, eos finishes",
      inputs: [
        {
          shape: [5, 6],
          values: [
            ...[0.5, 2, -1, 1.5, 0, 3],
            ...[1, 0, 4, 1, -2, 0.5],
            ...[9, 9, 9, 9, 9, 9],
            ...[NEG, NEG, NEG, NEG, NEG, NEG],
            ...[1, NEG, 1, 1, NEG, 0.25],
          ],
        },
        { shape: [5], values: [0, 0, 1, 0, 0] },
        { shape: [5], values: [0.6, 0.3, 0.5, 0.55, 0.8] },
      ],
      params: { eosId: 2, padId: 5, temperature: 0.8, topK: 4, topP: 0.75 },
      noGradCheck: true,
    },
    {
      label: "wide rows",
      inputs: [
        { shape: [3, 1000], min: -4, max: 4 },
        { shape: [3], values: [0, 0, 0] },
        { shape: [3], values: [0.1, 0.5, 0.9] },
      ],
      params: { eosId: 7, padId: 0, temperature: 0.7, topK: 200, topP: 0.9 },
      noGradCheck: true,
    },
    {
      label: "plain sampling, wide rows",
      inputs: [
        { shape: [2, 300], min: -3, max: 3 },
        { shape: [2], values: [0, 0] },
        { shape: [2], values: [0.25, 0.7] },
      ],
      params: { eosId: 1, padId: 0, temperature: 1, topK: 0, topP: 1 },
      noGradCheck: true,
    },
    {
      label: "V = 1",
      inputs: [{ shape: [2, 1] }, { shape: [2], values: [0, 1] }, {
        shape: [2],
        values: [0.5, 0.5],
      }],
      params: { eosId: 0, padId: 3, temperature: 2, topK: 1, topP: 0.5 },
      noGradCheck: true,
    },
  ],
}];
