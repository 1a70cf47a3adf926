/**
 * `softmax` and `logSoftmax` over the last axis, numerically stable (the row
 * maximum is subtracted), with fused backward kernels:
 * softmax `dx = y·(dy − Σ dy·y)`, logSoftmax `dx = dy − exp(y)·Σ dy`.
 *
 * On the GPU one workgroup handles one row: each thread strides over the row
 * and a tree in workgroup memory combines the partial max and sum, so rows
 * can be long (V = 8000).
 *
 * A row whose entries are all −∞ (fully masked) gives softmax 0 everywhere
 * (not NaN) and logSoftmax −∞ everywhere.
 *
 * @example
 * ```ts
 * import { softmax, tensor } from "@webseq/webseq";
 * const y = softmax(tensor([1, 2, 3, 50, 50, 50], [2, 3]));
 * console.log(await y.toArray()); // [0.090, 0.245, 0.665, 1/3, 1/3, 1/3]
 * ```
 *
 * @module
 */
import { apply, type Tensor } from "../tensor/tensor.ts";
import {
  type CpuArray,
  fmtShape,
  type GpuPlan,
  type OpDef,
  type OpInfo,
  packUniform,
  type Shape,
  type TensorInfo,
} from "../tensor/types.ts";
import { grid1d, wgslPairwiseSum } from "./_wgsl.ts";
import type { OpEntry } from "./registry.ts";

/** Rows R and row length D of a last-axis op on `shape`. */
export function lastAxisRows(shape: Shape): [number, number] {
  const D = shape.length ? shape[shape.length - 1] : 1;
  let R = 1;
  for (let k = 0; k < shape.length - 1; k++) R *= shape[k];
  return [R, D];
}

/** Threads per workgroup of the one-workgroup-per-row kernels, by row length. */
export function rowWorkgroupSize(D: number): number {
  return D > 128 ? 256 : 64;
}

/**
 * @internal WGSL helpers for one-workgroup-per-row kernels: `wg_sum` and
 * `wg_max` combine one value per thread in workgroup memory (tree order,
 * deterministic) and return the result to every thread. Call them from
 * workgroup-uniform control flow only.
 */
export function wgslRowReduce(wg: number): string {
  return `
var<workgroup> red: array<f32, ${wg}>;
${wgslTreeReduce("wg_sum", "f32", wg, "a + b")}
${wgslTreeReduce("wg_max", "f32", wg, "max(a, b)")}`;
}

/**
 * @internal One WGSL tree reduction `fn name(v: type, lid: u32) -> type`
 * over the workgroup array `red` (declared by the caller, `wg` elements of
 * `type`), combining `a` and `b` with `combine`; every thread gets the result.
 */
export function wgslTreeReduce(name: string, type: string, wg: number, combine: string): string {
  return `fn ${name}(v: ${type}, lid: u32) -> ${type} {
  red[lid] = v;
  workgroupBarrier();
  for (var s = ${wg / 2}u; s > 0u; s >>= 1u) {
    if (lid < s) { let a = red[lid]; let b = red[lid + s]; red[lid] = ${combine}; }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}`;
}

/**
 * @internal WGSL: `fn row_merge(pm, ps, pa, pb, lid) -> vec4f` for a one-workgroup-per-row
 * kernel of `wg` threads (a power of two, at least 8): each thread's running softmax pair — the
 * largest value `pm` it saw and `ps` = Σ exp(v − pm) over its values — and two plain sums `pa`,
 * `pb` merge into
 * the row's `(M, Σ exp(v − M), Σ a, Σ b)`, returned to every thread. A radix-8 tree in workgroup
 * memory (`rs_red`, `rs_red1`, `rs_red2`): 2 barriers up to 64 threads, 3 up to 512, where the
 * binary trees of {@linkcode wgslRowReduce} take `log2(wg) + 2` per value. A lane with no values
 * passes `pm` = the lowest f32 and `ps` = 0. Call from workgroup-uniform control flow, at most once
 * per invocation (no barrier protects a second call's writes).
 */
export function wgslRowMerge(wg: number): string {
  // merges n consecutive entries of `arr` from index `b`: max, then rescaled sums
  const merge = (arr: string, n: number): string => {
    const at = (q: number) => `${arr}[q0 + ${q}u]`;
    const mx = Array.from({ length: n - 1 }, (_, q) => q + 1).reduce(
      (acc, q) => `max(${acc}, ${at(q)}.x)`,
      `${at(0)}.x`,
    );
    const terms = Array.from({ length: n }, (_, q) => `${at(q)}.y * exp(${at(q)}.x - mx)`);
    const za = Array.from({ length: n }, (_, q) => `${at(q)}.zw`);
    return `let mx = ${mx}; let sab = ${wgslPairwiseSum(za)};
    r = vec4f(mx, ${wgslPairwiseSum(terms)}, sab.x, sab.y);`;
  };
  const names = ["rs_red", "rs_red1", "rs_red2"];
  const body: string[] = ["rs_red[lid] = vec4f(pm, ps, pa, pb);", "workgroupBarrier();"];
  let n = wg, level = 0;
  for (; n > 8; level++) {
    const k = n / 8;
    body.push(
      `if (lid < ${k}u) { let q0 = lid * 8u; var r: vec4f; ${merge(names[level], 8)} ${
        names[level + 1]
      }[lid] = r; }`,
      "workgroupBarrier();",
    );
    n = k;
  }
  body.push(`let q0 = 0u; var r: vec4f; ${merge(names[level], n)}`, "return r;");
  return `
var<workgroup> rs_red: array<vec4f, ${wg}>;
var<workgroup> rs_red1: array<vec4f, ${Math.max(1, wg / 8)}>;
var<workgroup> rs_red2: array<vec4f, ${Math.max(1, wg / 64)}>;
fn row_merge(pm: f32, ps: f32, pa: f32, pb: f32, lid: u32) -> vec4f {
  ${body.join("\n  ")}
}`;
}

/**
 * @internal WGSL: `fn softmax_take(v, p: ptr<function, vec2f>)`, one value into a thread's
 * running softmax pair `(m, s)` (see {@linkcode wgslRowMerge}).
 */
export const WGSL_SOFTMAX_TAKE = `
fn softmax_take(v: f32, p: ptr<function, vec2f>) {
  if (v > (*p).x) {
    (*p).y = (*p).y * exp((*p).x - v) + 1.0;
    (*p).x = v;
  } else {
    (*p).y += exp(v - (*p).x);
  }
}`;

/** @internal the entry point of a one-workgroup-per-row kernel; defines `row`, `lid`. */
export function wgslRowMain(wg: number): string {
  return `@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid3: vec3u,
        @builtin(num_workgroups) nwg: vec3u) {
  let row = wid.x + wid.y * nwg.x;
  let lid = lid3.x;
  if (row >= u.R) { return; }`;
}

const LOWEST = "-3.4028234663852886e38";

function checkFloat(name: string, t: TensorInfo): void {
  if (t.dtype === "i32") throw new TypeError(`Cannot ${name}: needs a float tensor, got i32`);
  if (t.shape.length === 0) throw new TypeError(`Cannot ${name}: needs at least one axis, got []`);
}

// ---------------------------------------------------------------- forward

/** CPU reference of both forwards (float64 accumulation). */
function softmaxCpu(x: CpuArray, out: CpuArray, shape: Shape, log: boolean): void {
  const [R, D] = lastAxisRows(shape);
  for (let r = 0; r < R; r++) {
    const o = r * D;
    let m = -Infinity;
    for (let j = 0; j < D; j++) m = Math.max(m, x[o + j]);
    if (m === -Infinity) m = 0; // fully masked row: exp(−∞) = 0 below
    let s = 0;
    for (let j = 0; j < D; j++) s += Math.exp(x[o + j] - m);
    const ls = Math.log(s);
    for (let j = 0; j < D; j++) {
      // (x − m) − log s rather than x − lse: exact-ish in float32 for large logits
      if (log) out[o + j] = s > 0 ? (x[o + j] - m) - ls : x[o + j];
      else out[o + j] = s > 0 ? Math.exp(x[o + j] - m) / s : 0;
    }
  }
}

function softmaxPlan(info: OpInfo, log: boolean): GpuPlan {
  const [R, D] = lastAxisRows(info.inputs[0].shape);
  const wg = rowWorkgroupSize(D);
  const write = log
    ? "out[o + j] = select(x[o + j], (x[o + j] - m) - ls, s > 0.0);"
    : "out[o + j] = select(0.0, exp(x[o + j] - m) / s, s > 0.0);";
  return {
    kernels: [{
      code: `
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
struct U { R: u32, D: u32 }
@group(0) @binding(2) var<uniform> u: U;
${wgslRowReduce(wg)}
${wgslRowMain(wg)}
  let o = row * u.D;
  var pm: f32 = ${LOWEST};
  for (var j = lid; j < u.D; j += ${wg}u) { pm = max(pm, x[o + j]); }
  let m = wg_max(pm, lid);
  var ps: f32 = 0.0;
  for (var j = lid; j < u.D; j += ${wg}u) { ps += exp(x[o + j] - m); }
  let s = wg_sum(ps, lid);
  let ls = log(s);
  for (var j = lid; j < u.D; j += ${wg}u) { ${write} }
}`,
      bind: [{ in: 0 }, { out: 0 }],
      uniform: packUniform([R, D]),
      workgroups: grid1d(R, 1),
    }],
  };
}

/** Softmax over the last axis; backward through {@linkcode SOFTMAX_GRAD}. */
export const SOFTMAX: OpDef = {
  name: "softmax",
  overwrites: true,
  outputs([x]) {
    checkFloat("softmax", x);
    return [{ shape: x.shape, dtype: x.dtype }];
  },
  cpu([x], [out], info) {
    softmaxCpu(x, out, info.inputs[0].shape, false);
  },
  gpu(info) {
    return softmaxPlan(info, false);
  },
  backward(c, [dy]) {
    return [apply(SOFTMAX_GRAD, [c.outputs[0] as Tensor, dy as Tensor], {})[0]];
  },
};

/** Log-softmax over the last axis; backward through {@linkcode LOG_SOFTMAX_GRAD}. */
export const LOG_SOFTMAX: OpDef = {
  name: "logSoftmax",
  overwrites: true,
  outputs([x]) {
    checkFloat("logSoftmax", x);
    return [{ shape: x.shape, dtype: x.dtype }];
  },
  cpu([x], [out], info) {
    softmaxCpu(x, out, info.inputs[0].shape, true);
  },
  gpu(info) {
    return softmaxPlan(info, true);
  },
  backward(c, [dy]) {
    return [apply(LOG_SOFTMAX_GRAD, [c.outputs[0] as Tensor, dy as Tensor], {})[0]];
  },
};

// ---------------------------------------------------------------- backward

function gradOutputs(name: string, [y, dy]: TensorInfo[]): TensorInfo[] {
  checkFloat(name, y);
  if (fmtShape(y.shape) !== fmtShape(dy.shape)) {
    throw new TypeError(
      `Cannot ${name}: y ${fmtShape(y.shape)} and dy ${fmtShape(dy.shape)} differ`,
    );
  }
  return [{ shape: y.shape, dtype: y.dtype }];
}

function gradCpu(y: CpuArray, dy: CpuArray, dx: CpuArray, shape: Shape, log: boolean): void {
  const [R, D] = lastAxisRows(shape);
  for (let r = 0; r < R; r++) {
    const o = r * D;
    let s = 0;
    for (let j = 0; j < D; j++) s += log ? dy[o + j] : dy[o + j] * y[o + j];
    for (let j = 0; j < D; j++) {
      dx[o + j] = log ? dy[o + j] - Math.exp(y[o + j]) * s : y[o + j] * (dy[o + j] - s);
    }
  }
}

function gradPlan(info: OpInfo, log: boolean): GpuPlan {
  const [R, D] = lastAxisRows(info.inputs[0].shape);
  const wg = rowWorkgroupSize(D);
  return {
    kernels: [{
      code: `
@group(0) @binding(0) var<storage, read> y: array<f32>;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> dx: array<f32>;
struct U { R: u32, D: u32 }
@group(0) @binding(3) var<uniform> u: U;
${wgslRowReduce(wg)}
${wgslRowMain(wg)}
  let o = row * u.D;
  var ps: f32 = 0.0;
  for (var j = lid; j < u.D; j += ${wg}u) { ps += ${log ? "dy[o + j]" : "dy[o + j] * y[o + j]"}; }
  let s = wg_sum(ps, lid);
  for (var j = lid; j < u.D; j += ${wg}u) {
    dx[o + j] = ${log ? "dy[o + j] - exp(y[o + j]) * s" : "y[o + j] * (dy[o + j] - s)"};
  }
}`,
      bind: [{ in: 0 }, { in: 1 }, { out: 0 }],
      uniform: packUniform([R, D]),
      workgroups: grid1d(R, 1),
    }],
  };
}

/** Fused softmax backward: inputs `[y, dy]`, output `dx = y·(dy − Σ dy·y)` per row. */
export const SOFTMAX_GRAD: OpDef = {
  name: "softmaxGrad",
  overwrites: true,
  outputs(inputs) {
    return gradOutputs("softmaxGrad", inputs);
  },
  cpu([y, dy], [dx], info) {
    gradCpu(y, dy, dx, info.inputs[0].shape, false);
  },
  gpu(info) {
    return gradPlan(info, false);
  },
};

/** Fused log-softmax backward: inputs `[y, dy]`, output `dx = dy − exp(y)·Σ dy` per row. */
export const LOG_SOFTMAX_GRAD: OpDef = {
  name: "logSoftmaxGrad",
  overwrites: true,
  outputs(inputs) {
    return gradOutputs("logSoftmaxGrad", inputs);
  },
  cpu([y, dy], [dx], info) {
    gradCpu(y, dy, dx, info.inputs[0].shape, true);
  },
  gpu(info) {
    return gradPlan(info, true);
  },
};

// ---------------------------------------------------------------- user functions

/** Softmax over the last axis (stable; a fully −∞ row gives zeros). */
export function softmax(x: Tensor): Tensor {
  return apply(SOFTMAX, [x], {})[0];
}

/** Log-softmax over the last axis (stable; a fully −∞ row gives −∞). */
export function logSoftmax(x: Tensor): Tensor {
  return apply(LOG_SOFTMAX, [x], {})[0];
}

const NEG_INF_ROW = [-Infinity, -Infinity, -Infinity, -Infinity, -Infinity];
const MASKED_ROWS = [0.5, -Infinity, 2, -1, -Infinity, ...NEG_INF_ROW];

/** Registry entries of this file (see tests/ops_registry_test.ts). */
export const SOFTMAX_ENTRIES: OpEntry[] = [SOFTMAX, LOG_SOFTMAX].map((op) => ({
  op,
  cases: [
    { inputs: [{ shape: [3, 5], min: -3, max: 3 }], params: {} },
    { inputs: [{ shape: [1] }], params: {} },
    { inputs: [{ shape: [2, 1, 7] }], params: {} },
    { inputs: [{ shape: [2, 300] }], params: {}, label: "rows of 300" },
    { inputs: [{ shape: [4, 9], min: -50, max: 50 }], params: {}, label: "±50" },
    { inputs: [{ shape: [2, 1000], min: -60, max: 60 }], params: {}, noGradCheck: true },
    {
      inputs: [{ shape: [2, 5], values: MASKED_ROWS }],
      params: {},
      noGradCheck: true,
      label: "masked rows",
    },
  ],
})).concat([SOFTMAX_GRAD, LOG_SOFTMAX_GRAD].map((op) => ({
  op,
  cases: [
    {
      inputs: [{ shape: [3, 5], min: 0, max: 1 }, { shape: [3, 5], min: -2, max: 2 }],
      params: {},
    },
    { inputs: [{ shape: [1] }, { shape: [1] }], params: {} },
    { inputs: [{ shape: [2, 700], min: -3, max: 0 }, { shape: [2, 700] }], params: {} },
  ],
})));
