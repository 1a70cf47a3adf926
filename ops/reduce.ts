/**
 * Reductions over axes: `sum`, `mean`, `max` (keepdims optional), and
 * `sumTo` (reduce a broadcast gradient back to an input's shape).
 *
 * A reduction over a contiguous block of axes is viewed as `[O, R, I]`
 * (outer, reduced, inner). When I = 1 one workgroup reduces each row with a
 * tree in workgroup memory; otherwise each thread loops over R for one output
 * when R is short, and for tall inputs (a bias gradient `[B·T, C]` → `[C]`)
 * two dispatches: partials over chunks of 32 rows, then a tree per output.
 * Non-contiguous axis sets reduce one block at a time.
 *
 * @module
 */
import { apply, type Tensor } from "../tensor/tensor.ts";
import { fmtShape, type GpuPlan, type OpDef, packUniform, type Shape } from "../tensor/types.ts";
import { DIMS6, grid1d, LINEAR_INDEX, MAIN_1D, OFFSET6, STRIDES6, UNRAVEL6 } from "./_wgsl.ts";

/** Reduction kinds. */
export type ReduceKind = "sum" | "max";

/** Parameters of the reduce op: one contiguous block of axes. */
export interface ReduceParams {
  /** Kind of reduction. */
  kind: ReduceKind;
  /** First reduced axis. */
  start: number;
  /** One past the last reduced axis. */
  end: number;
  /** Keep reduced axes as size 1. */
  keepdims: boolean;
}

function dims(shape: Shape, p: ReduceParams): [number, number, number] {
  let o = 1, r = 1, i = 1;
  shape.forEach((d, k) => {
    if (k < p.start) o *= d;
    else if (k < p.end) r *= d;
    else i *= d;
  });
  return [o, r, i];
}

const ROW_WG = 256;
const LOWEST = "-3.4028234663852886e38";

function rowKernel(kind: ReduceKind): string {
  const init = kind === "sum" ? "0.0" : LOWEST;
  const comb = kind === "sum" ? "a + b" : "max(a, b)";
  return `
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
struct U { O: u32, R: u32 }
@group(0) @binding(2) var<uniform> u: U;
var<workgroup> part: array<f32, ${ROW_WG}>;
fn comb(a: f32, b: f32) -> f32 { return ${comb}; }
@compute @workgroup_size(${ROW_WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u,
        @builtin(num_workgroups) nwg: vec3u) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= u.O) { return; }
  var acc: f32 = ${init};
  for (var r = lid.x; r < u.R; r += ${ROW_WG}u) { acc = comb(acc, x[row * u.R + r]); }
  part[lid.x] = acc;
  workgroupBarrier();
  for (var s = ${ROW_WG / 2}u; s > 0u; s >>= 1u) {
    if (lid.x < s) { part[lid.x] = comb(part[lid.x], part[lid.x + s]); }
    workgroupBarrier();
  }
  if (lid.x == 0u) { out[row] = part[0]; }
}`;
}

function colKernel(kind: ReduceKind): string {
  const init = kind === "sum" ? "0.0" : LOWEST;
  const comb = kind === "sum" ? "acc + v" : "max(acc, v)";
  return `
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
struct U { O: u32, R: u32, I: u32 }
@group(0) @binding(2) var<uniform> u: U;
${MAIN_1D()} {
  ${LINEAR_INDEX()}
  if (i >= u.O * u.I) { return; }
  let o = i / u.I;
  let k = i % u.I;
  var acc: f32 = ${init};
  for (var r = 0u; r < u.R; r++) { let v = x[(o * u.R + r) * u.I + k]; acc = ${comb}; }
  out[i] = acc;
}`;
}

/**
 * Above this many reduced rows (with I > 1) the column reduction runs in two
 * levels: one thread per output loops over at most CHUNK rows, not all R.
 */
const SERIAL_ROWS = 64;
/** Rows summed per thread in the first level (grows only past MAX_CHUNKS chunks). */
const CHUNK = 32;
/** Chunks per output at most (bounds the partials and the second level's loops). */
const MAX_CHUNKS = 4096;
/** Second level: a workgroup of LANES chunk-lanes × LANES outputs. */
const LANES = 16;
/**
 * With one element per output row (I = 1), fewer rows than this take the two
 * levels when a row is longer than ROW_WG·SERIAL_ROWS: one workgroup per row
 * would leave most of a GPU idle (a whole-tensor sum ran on one workgroup),
 * and each of its threads would loop R/ROW_WG times (past 65535 iterations,
 * Mesa's llvmpipe stops a loop: a 2^24-element sum came out 131070).
 */
const ROW_MIN_ROWS = 64;

/** Level 1: partial results of chunks of rows → part[O, K, I]. */
function chunkKernel(kind: ReduceKind): string {
  const init = kind === "sum" ? "0.0" : LOWEST;
  const comb = kind === "sum" ? "acc + v" : "max(acc, v)";
  return `
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> part: array<f32>;
struct U { O: u32, R: u32, I: u32, K: u32, chunk: u32 }
@group(0) @binding(2) var<uniform> u: U;
${MAIN_1D()} {
  ${LINEAR_INDEX()}
  if (i >= u.O * u.K * u.I) { return; }
  let k = i % u.I;
  let c = (i / u.I) % u.K;
  let o = i / (u.I * u.K);
  let r1 = min(u.R, (c + 1u) * u.chunk);
  var acc: f32 = ${init};
  for (var r = c * u.chunk; r < r1; r++) { let v = x[(o * u.R + r) * u.I + k]; acc = ${comb}; }
  part[i] = acc;
}`;
}

/** Level 2: the K partials of each output, LANES strided lanes then a tree. */
function chunkTreeKernel(kind: ReduceKind): string {
  const init = kind === "sum" ? "0.0" : LOWEST;
  const comb = kind === "sum" ? "a + b" : "max(a, b)";
  return `
@group(0) @binding(0) var<storage, read> part: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
struct U { O: u32, I: u32, K: u32 }
@group(0) @binding(2) var<uniform> u: U;
var<workgroup> red: array<f32, ${LANES * LANES}>;
fn comb(a: f32, b: f32) -> f32 { return ${comb}; }
@compute @workgroup_size(${LANES}, ${LANES})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u,
        @builtin(num_workgroups) nwg: vec3u) {
  let q = (wid.x + wid.y * nwg.x) * ${LANES}u + lid.x;
  var acc: f32 = ${init};
  if (q < u.O * u.I) {
    let base = (q / u.I) * u.K * u.I + q % u.I;
    for (var c = lid.y; c < u.K; c += ${LANES}u) { acc = comb(acc, part[base + c * u.I]); }
  }
  red[lid.y * ${LANES}u + lid.x] = acc;
  workgroupBarrier();
  for (var h = ${LANES / 2}u; h > 0u; h >>= 1u) {
    if (lid.y < h) {
      red[lid.y * ${LANES}u + lid.x] = comb(red[lid.y * ${LANES}u + lid.x], red[(lid.y + h) * ${LANES}u + lid.x]);
    }
    workgroupBarrier();
  }
  if (lid.y == 0u && q < u.O * u.I) { out[q] = red[lid.x]; }
}`;
}

/** The reduce op (one contiguous block of axes). */
export const REDUCE: OpDef<ReduceParams> = {
  name: "reduce",
  outputs([x], p) {
    if (p.start < 0 || p.end > x.shape.length || p.start >= p.end) {
      throw new TypeError(`Cannot reduce ${fmtShape(x.shape)} over axes ${p.start}..${p.end - 1}`);
    }
    if (p.kind === "max" && x.shape.slice(p.start, p.end).some((d) => d === 0)) {
      throw new TypeError(`Cannot max over an empty axis of ${fmtShape(x.shape)}`);
    }
    const shape = p.keepdims
      ? x.shape.map((d, k) => (k >= p.start && k < p.end ? 1 : d))
      : [...x.shape.slice(0, p.start), ...x.shape.slice(p.end)];
    return [{ shape, dtype: x.dtype }];
  },
  cpu([x], [out], info, p) {
    const [O, R, I] = dims(info.inputs[0].shape, p);
    // walk x in memory order, accumulating a row of I outputs (float64 sums)
    const acc = new Float64Array(I);
    for (let o = 0; o < O; o++) {
      acc.fill(p.kind === "sum" ? 0 : -Infinity);
      for (let r = 0; r < R; r++) {
        const base = (o * R + r) * I;
        if (p.kind === "sum") { for (let k = 0; k < I; k++) acc[k] += x[base + k]; }
        else for (let k = 0; k < I; k++) acc[k] = Math.max(acc[k], x[base + k]);
      }
      for (let k = 0; k < I; k++) out[o * I + k] = acc[k];
    }
  },
  gpu(info, p) {
    const [O, R, I] = dims(info.inputs[0].shape, p);
    // one workgroup per row: fine for many rows or short ones; a few long rows (a whole-tensor
    // sum) take the two levels below instead, which spread each row over many threads
    if (I === 1 && (O >= ROW_MIN_ROWS || R <= ROW_WG * SERIAL_ROWS)) {
      return {
        kernels: [{
          code: rowKernel(p.kind),
          bind: [{ in: 0 }, { out: 0 }],
          uniform: packUniform([O, R]),
          workgroups: grid1d(O, 1),
        }],
      };
    }
    if (R <= SERIAL_ROWS) {
      return {
        kernels: [{
          code: colKernel(p.kind),
          bind: [{ in: 0 }, { out: 0 }],
          uniform: packUniform([O, R, I]),
          workgroups: grid1d(O * I),
        }],
      };
    }
    // tall: partials over chunks of rows (many threads, short loops), then a tree per output
    const chunk = Math.max(CHUNK, Math.ceil(R / MAX_CHUNKS));
    const K = Math.ceil(R / chunk);
    return {
      temps: [O * K * I * 4],
      kernels: [{
        code: chunkKernel(p.kind),
        bind: [{ in: 0 }, { tmp: 0 }],
        uniform: packUniform([O, R, I, K, chunk]),
        workgroups: grid1d(O * K * I),
      }, {
        code: chunkTreeKernel(p.kind),
        bind: [{ tmp: 0 }, { out: 0 }],
        uniform: packUniform([O, I, K]),
        workgroups: grid1d(O * I, LANES),
      }],
    };
  },
  backward(c, [dy]) {
    const x = c.inputs[0] as Tensor;
    const kept = keepShape(x.shape, c.params);
    const dyk = (dy as Tensor).view(kept);
    if (c.params.kind === "sum") return [expandTo(dyk, x.shape)];
    const y = (c.outputs[0] as Tensor).view(kept);
    return [apply(MAX_GRAD, [x, y, dyk], {})[0]];
  },
};

function keepShape(shape: Shape, p: ReduceParams): number[] {
  return shape.map((d, k) => (k >= p.start && k < p.end ? 1 : d));
}

/**
 * Gradient of max: dy spread evenly over the tied maxima (torch.amax).
 * Inputs x [..], y and dy with the reduced axes kept as 1.
 */
export const MAX_GRAD: OpDef = {
  name: "maxGrad",
  outputs([x]) {
    return [{ shape: x.shape, dtype: x.dtype }];
  },
  cpu([x, y, dy], [dx], info) {
    const xs = info.inputs[0].shape, ys = info.inputs[1].shape;
    const { O, R, I } = blockOf(xs, ys);
    for (let o = 0; o < O; o++) {
      for (let k = 0; k < I; k++) {
        const m = y[o * I + k];
        let cnt = 0;
        for (let r = 0; r < R; r++) if (x[(o * R + r) * I + k] === m) cnt++;
        for (let r = 0; r < R; r++) {
          const j = (o * R + r) * I + k;
          dx[j] = x[j] === m ? dy[o * I + k] / cnt : 0;
        }
      }
    }
  },
  gpu(info) {
    const { O, R, I } = blockOf(info.inputs[0].shape, info.inputs[1].shape);
    return {
      kernels: [{
        code: `
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> y: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;
struct U { O: u32, R: u32, I: u32 }
@group(0) @binding(4) var<uniform> u: U;
${MAIN_1D()} {
  ${LINEAR_INDEX()}
  if (i >= u.O * u.I) { return; }
  let o = i / u.I;
  let k = i % u.I;
  let m = y[i];
  var cnt = 0.0;
  for (var r = 0u; r < u.R; r++) { if (x[(o * u.R + r) * u.I + k] == m) { cnt += 1.0; } }
  for (var r = 0u; r < u.R; r++) {
    let j = (o * u.R + r) * u.I + k;
    dx[j] = select(0.0, dy[i] / cnt, x[j] == m);
  }
}`,
        bind: [{ in: 0 }, { in: 1 }, { in: 2 }, { out: 0 }],
        uniform: packUniform([O, R, I]),
        workgroups: grid1d(O * I),
      }],
    };
  },
};

function blockOf(xs: Shape, ys: Shape): { O: number; R: number; I: number } {
  let start = -1, end = -1;
  xs.forEach((d, k) => {
    if (ys[k] !== d) {
      if (start < 0) start = k;
      end = k + 1;
    }
  });
  if (start < 0) return { O: xs.reduce((a, b) => a * b, 1), R: 1, I: 1 };
  const [O, R, I] = dims(xs, { kind: "sum", start, end, keepdims: true });
  return { O, R, I };
}

/** Parameters of {@linkcode BROADCAST_TO}. */
export interface BroadcastParams {
  /** Target shape (same rank; size-1 dims expand). */
  shape: Shape;
}

/** Expands size-1 dims to a target shape (materialises). */
export const BROADCAST_TO: OpDef<BroadcastParams> = {
  name: "broadcastTo",
  outputs([x], p) {
    if (x.shape.length !== p.shape.length || x.shape.some((d, k) => d !== 1 && d !== p.shape[k])) {
      throw new TypeError(`Cannot broadcast ${fmtShape(x.shape)} to ${fmtShape(p.shape)}`);
    }
    return [{ shape: p.shape, dtype: x.dtype }];
  },
  cpu([x], [out], info, p) {
    const xs = info.inputs[0].shape;
    const r = p.shape.length;
    const strides = new Array<number>(r);
    let s = 1;
    for (let k = r - 1; k >= 0; k--) {
      strides[k] = xs[k] === 1 ? 0 : s;
      s *= xs[k];
    }
    for (let i = 0; i < out.length; i++) {
      let rem = i, off = 0;
      for (let k = r - 1; k >= 0; k--) {
        const c = rem % p.shape[k];
        rem = (rem - c) / p.shape[k];
        off += c * strides[k];
      }
      out[i] = x[off];
    }
  },
  gpu(info, p) {
    return stridedCopyPlan(info.inputs[0].shape, p.shape);
  },
  backward(c, [dy]) {
    return [sumTo(dy as Tensor, (c.inputs[0] as Tensor).shape)];
  },
};

/** A plan copying x into `shape` where x's size-1 dims broadcast (rank ≤ 6). */
function stridedCopyPlan(xs: Shape, shape: Shape): GpuPlan {
  const r = shape.length;
  if (r > 6) throw new TypeError(`broadcastTo supports rank ≤ 6, got ${r}`);
  const pad = 6 - r;
  const d = [...Array(pad).fill(1), ...shape];
  const xsP = [...Array(pad).fill(1), ...xs];
  const st = new Array<number>(6);
  let s = 1;
  for (let k = 5; k >= 0; k--) {
    st[k] = xsP[k] === 1 ? 0 : s;
    s *= xsP[k];
  }
  const n = shape.reduce((a, b) => a * b, 1);
  return {
    kernels: [{
      code: `
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
struct U { n: u32, ${DIMS6}, ${STRIDES6("s")} }
@group(0) @binding(2) var<uniform> u: U;
${MAIN_1D()} {
  ${LINEAR_INDEX()}
  if (i >= u.n) { return; }
  ${UNRAVEL6}
  out[i] = x[${OFFSET6("s")}];
}`,
      bind: [{ in: 0 }, { out: 0 }],
      uniform: packUniform([n, ...d, ...st]),
      workgroups: grid1d(n),
    }],
  };
}

function normAxes(rank: number, axes: number | number[] | undefined): number[] {
  const list = axes === undefined
    ? Array.from({ length: rank }, (_, k) => k)
    : (Array.isArray(axes) ? axes : [axes]);
  const out = list.map((a) => {
    const k = a < 0 ? a + rank : a;
    if (!Number.isInteger(k) || k < 0 || k >= rank) {
      throw new RangeError(`Axis ${a} is out of range for rank ${rank}`);
    }
    return k;
  });
  return [...new Set(out)].sort((a, b) => a - b);
}

function reduceAxes(x: Tensor, kind: ReduceKind, axes: number[], keepdims: boolean): Tensor {
  if (axes.length === 0) return apply(BROADCAST_TO, [x], { shape: x.shape })[0];
  // split into contiguous blocks; reduce the last block first so axis numbers stay valid
  const blocks: [number, number][] = [];
  for (const a of axes) {
    const last = blocks[blocks.length - 1];
    if (last && last[1] === a) last[1] = a + 1;
    else blocks.push([a, a + 1]);
  }
  let y = x;
  for (let b = blocks.length - 1; b >= 0; b--) {
    const [start, end] = blocks[b];
    const next = apply(REDUCE, [y], { kind, start, end, keepdims: true })[0];
    if (y !== x) y.dispose();
    y = next;
  }
  if (keepdims) return y;
  const shape = x.shape.filter((_, k) => !axes.includes(k));
  return reshapeView(y, shape);
}

// a view-with-grad reshape, defined in ops/reshape.ts; set there to avoid an import cycle
let reshapeView: (x: Tensor, shape: Shape) => Tensor = () => {
  throw new Error("ops/reshape.ts not loaded");
};
/** @internal */
export function setReshape(fn: (x: Tensor, shape: Shape) => Tensor): void {
  reshapeView = fn;
}

/** Options of the reductions. */
export interface ReduceOptions {
  /** Keep reduced axes with size 1. */
  keepdims?: boolean;
}

/** Sum over `axes` (all when omitted). */
export function sum(x: Tensor, axes?: number | number[], opts: ReduceOptions = {}): Tensor {
  return reduceAxes(x, "sum", normAxes(x.rank, axes), opts.keepdims ?? false);
}

/** Mean over `axes` (all when omitted). */
export function mean(x: Tensor, axes?: number | number[], opts: ReduceOptions = {}): Tensor {
  const ax = normAxes(x.rank, axes);
  const n = ax.reduce((a, k) => a * x.shape[k], 1);
  const s = sum(x, ax, opts);
  const [m] = apply(SCALE_OP(), [s], { a: 1 / n });
  s.dispose();
  return m;
}

/** Max over `axes` (all when omitted); the gradient is split among ties. */
export function max(x: Tensor, axes?: number | number[], opts: ReduceOptions = {}): Tensor {
  return reduceAxes(x, "max", normAxes(x.rank, axes), opts.keepdims ?? false);
}

let scaleOp: OpDef<{ a: number }> | null = null;
/** @internal */
export function setScaleOp(op: OpDef<{ a: number }>): void {
  scaleOp = op;
}
function SCALE_OP(): OpDef<{ a: number }> {
  return scaleOp!;
}

/** Expands `x` (same rank, size-1 dims) to `shape`. */
export function expandTo(x: Tensor, shape: Shape): Tensor {
  return apply(BROADCAST_TO, [x], { shape })[0];
}

/** Sums a broadcast result back to `shape` (the reverse of broadcasting). */
export function sumTo(x: Tensor, shape: Shape): Tensor {
  const r = x.rank, pad = r - shape.length;
  if (pad < 0) throw new TypeError(`Cannot sumTo ${fmtShape(x.shape)} → ${fmtShape(shape)}`);
  const axes: number[] = [];
  for (let k = 0; k < r; k++) {
    const target = k < pad ? 1 : shape[k - pad];
    if (k < pad || (target === 1 && x.shape[k] !== 1)) axes.push(k);
    else if (target !== x.shape[k]) {
      throw new TypeError(`Cannot sumTo ${fmtShape(x.shape)} → ${fmtShape(shape)}`);
    }
  }
  // nothing to reduce: a view (backward rules hand it on; the storage is shared and refcounted)
  if (axes.length === 0) return x.view(shape);
  const s = sum(x, axes, { keepdims: true });
  const out = reshapeView(s, shape);
  return out;
}
