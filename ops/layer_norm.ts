/**
 * `layerNorm` over the last axis C, like `torch.nn.functional.layer_norm`
 * (biased variance, eps inside the square root):
 * `y = (x − mean)·rstd·weight + bias`, `rstd = 1/sqrt(var + eps)`.
 *
 * The fused forward also outputs `mean` and `rstd` per row (saved for the
 * backward). The fused backward {@linkcode LAYER_NORM_GRAD} gives
 * `dx = rstd·(g − mean(g) − x̂·mean(g·x̂))` with `g = dy·weight`, and the column
 * sums `dweight = Σ_rows dy·x̂`, `dbias = Σ_rows dy`. On WebGPU the forward
 * is one dispatch and the backward two, both deterministic: `dx` with partial
 * column sums over groups of rows, then a tree over the partials. The
 * backward also adds the gradient already pending for x (the residual's, in a
 * pre-LN block) into `dx`, saving autograd's separate `accumulate` pass.
 *
 * @example
 * ```ts
 * import { layerNorm, ones, tensor, zeros } from "@webseq/webseq";
 * const y = layerNorm(tensor([1, 2, 3, 4], [2, 2]), ones([2]), zeros([2]), 1e-5);
 * console.log(await y.toArray()); // ≈ [-1, 1, -1, 1]
 * ```
 *
 * @module
 */
import { apply, applyInto, type Tensor } from "../tensor/tensor.ts";
import {
  fmtShape,
  type GpuKernel,
  type GpuPlan,
  type OpDef,
  packUniform,
} from "../tensor/types.ts";
import { grid1d, wgslPairwiseSum } from "./_wgsl.ts";
import type { OpEntry } from "./registry.ts";
import { layerNormF32, layerNormGradF32 } from "./_cpu_threads_kernels.ts";
import { lastAxisRows, rowWorkgroupSize } from "./softmax.ts";

/** Parameters of the layer norm ops. */
export interface LayerNormParams {
  /** Added to the variance before the square root. */
  eps: number;
}

/**
 * Fused layer norm forward: inputs `[x [..., C], weight [C], bias [C]]`,
 * outputs `[y [..., C], mean [...], rstd [...]]`.
 */
export const LAYER_NORM: OpDef<LayerNormParams> = {
  name: "layerNorm",
  overwrites: true,
  outputs([x, w, b]) {
    const C = x.shape[x.shape.length - 1];
    if (x.shape.length === 0 || x.dtype === "i32") {
      throw new TypeError(
        `Cannot layerNorm: x must be a float tensor with an axis, got ${
          fmtShape(x.shape)
        } ${x.dtype}`,
      );
    }
    for (const [what, t] of [["weight", w], ["bias", b]] as const) {
      if (t.shape.length !== 1 || t.shape[0] !== C || t.dtype === "i32") {
        throw new TypeError(
          `Cannot layerNorm: ${what} ${fmtShape(t.shape)} must be [${C}] for x ${
            fmtShape(x.shape)
          }`,
        );
      }
    }
    const rows = x.shape.slice(0, -1);
    return [
      { shape: x.shape, dtype: x.dtype },
      { shape: rows, dtype: x.dtype },
      { shape: rows, dtype: x.dtype },
    ];
  },
  cpu([x, w, b], [y, mean, rstd], info, p) {
    const [R, C] = lastAxisRows(info.inputs[0].shape);
    // f32: the same bits in WebAssembly on the CPU threads (ops/_cpu_threads_kernels.ts)
    if (
      x instanceof Float32Array && w instanceof Float32Array && b instanceof Float32Array &&
      y instanceof Float32Array && mean instanceof Float32Array && rstd instanceof Float32Array &&
      layerNormF32(x, w, b, { y, mean, rstd }, { R, C, eps: p.eps })
    ) return;
    for (let r = 0; r < R; r++) {
      const o = r * C;
      // sums in two lanes, even and odd columns (an odd C's last column in the even one), as
      // the WebAssembly kernel's f64x2 adds them
      let s0 = 0, s1 = 0, j = 0;
      for (; j + 1 < C; j += 2) {
        s0 += x[o + j];
        s1 += x[o + j + 1];
      }
      if (j < C) s0 += x[o + j];
      const m = (s0 + s1) / C;
      let v0 = 0, v1 = 0;
      for (j = 0; j + 1 < C; j += 2) {
        const d0 = x[o + j] - m, d1 = x[o + j + 1] - m;
        v0 += d0 * d0;
        v1 += d1 * d1;
      }
      if (j < C) {
        const d = x[o + j] - m;
        v0 += d * d;
      }
      const rs = 1 / Math.sqrt((v0 + v1) / C + p.eps);
      for (let j = 0; j < C; j++) y[o + j] = (x[o + j] - m) * rs * w[j] + b[j];
      mean[r] = m;
      rstd[r] = rs;
    }
  },
  gpu(info, p) {
    const [R, C] = lastAxisRows(info.inputs[0].shape);
    return {
      kernels: [{
        code: layerNormForwardWgsl(C, {
          key: "x",
          inputs: "@group(0) @binding(0) var<storage, read> x: array<f32>;",
          first: 1,
          uniform: "struct U { R: u32, C: u32, eps: f32 }",
          read: "let v = x[o + j];",
        }),
        bind: [{ in: 0 }, { in: 1 }, { in: 2 }, { out: 0 }, { out: 1 }, { out: 2 }],
        uniform: packUniform([R, C], [p.eps]),
        workgroups: layerNormForwardGrid(R, C),
      }],
    };
  },
  backward(c, [dy]) {
    const [x, w] = c.inputs as Tensor[];
    const [, mean, rstd] = c.outputs as Tensor[];
    // mean and rstd are saved values: gradients reaching them are ignored
    if (!dy) return [null, null, null];
    // x's pending gradient (the residual's dy in a pre-LN block), summed into dx
    const acc = (c.takeGrad?.(0) ?? null) as Tensor | null;
    const ins = [x, w, mean, rstd, dy as Tensor];
    // dw and db straight into the optimizer's flat buffer where it offers it
    const into = [null, c.gradSink?.(1), c.gradSink?.(2)];
    const grads = applyInto(LAYER_NORM_GRAD, acc ? [...ins, acc] : ins, c.params, into);
    acc?.dispose();
    return grads;
  },
};

/** Kernel code generated once per key (a step plans these ops dozens of times). */
const codes = new Map<string, string>();

function memoCode(key: string, build: () => string): string {
  let code = codes.get(key);
  if (code === undefined) codes.set(key, code = build());
  return code;
}

/** What {@linkcode layerNormForwardWgsl} puts before the LayerNorm of a row. */
export interface LayerNormPrologue {
  /** Names the prologue: equal keys must give equal code (the code is generated once per key). */
  key: string;
  /** Declarations of the input bindings `0 .. first-1`. */
  inputs: string;
  /** Bindings before `w` (weight), `b` (bias), then `y`, `mean`, `rstd`, the uniform `u`. */
  first: number;
  /** The uniform struct `U`, with at least `R: u32, C: u32` and `eps: f32`. */
  uniform: string;
  /** WGSL helpers the reads use. */
  helpers?: string;
  /** Statements giving `v`, element `j` of the row that starts at `o` (they may write it out). */
  read: string;
  /** Further f32 outputs the reads write, bound after `rstd` (before the uniform). */
  outputs?: string[];
}

/**
 * @internal The LayerNorm forward kernel, {@linkcode layerNormLanes} threads
 * per row and 256 / lanes rows per workgroup (dispatch
 * {@linkcode layerNormForwardGrid}): each thread reads its elements once
 * (`read`) and keeps them in registers for the mean, the variance and the
 * output passes. ops/residual_layer_norm.ts reads the
 * residual's sum there.
 */
export function layerNormForwardWgsl(C: number, pro: LayerNormPrologue): string {
  return memoCode(`f|${C}|${pro.key}`, () => forwardCode(C, pro));
}

/**
 * Threads sharing one row in the forward kernel: about 8 elements each,
 * 32 to 256 (a power of two). A workgroup of 256 threads holds 256 / lanes
 * rows, so narrow rows do not leave a whole workgroup of threads to a short
 * tree of barriers (C = 512: 64 lanes, 4 rows, 8 elements each).
 */
export function layerNormLanes(C: number): number {
  const want = Math.ceil(C / 8);
  return Math.min(256, Math.max(32, 2 ** Math.ceil(Math.log2(Math.max(1, want)))));
}

/** Workgroups of a {@linkcode layerNormForwardWgsl} dispatch over R rows of C. */
export function layerNormForwardGrid(R: number, C: number): [number, number, number] {
  return grid1d(Math.ceil(R / (256 / layerNormLanes(C))), 1);
}

/**
 * WGSL: workgroup arrays `red` (256 values), `red1` (32), `red2` (4) and
 * `fn seg_sum(v, lid, seg)`, the sum over the `L` lanes of row segment `seg`
 * returned to each of them. A tree of radix 8: each level's lanes add eight
 * consecutive values (pairwise) until at most eight partials are left, which
 * every lane adds (pairwise) itself — 2 barriers for `L` ≤ 64, 3 up to 512,
 * where a binary tree took `log2(L) + 2` (10 at `L` = 256, the backward's,
 * once per row: a row's few loads per thread leave a barrier's wait nothing
 * to hide behind). The order is fixed, so the sum is deterministic. Call
 * from workgroup-uniform control flow; the next call may follow at once
 * (each level's array is written again only after a barrier that every
 * lane reaches after reading it).
 */
function segmentSum(type: string, L: number): string {
  const names = ["red", "red1", "red2"];
  const body: string[] = [`red[seg * ${L}u + lid] = v;`, "workgroupBarrier();"];
  let n = L, level = 0; // values per segment in array names[level]
  for (; n > 8; level++) {
    const m = n / 8, from = names[level], to = names[level + 1];
    const eight = wgslPairwiseSum(Array.from({ length: 8 }, (_, i) => `${from}[b + ${i}u]`));
    body.push(
      `if (lid < ${m}u) { let b = seg * ${n}u + lid * 8u; ${to}[seg * ${m}u + lid] = ${eight}; }`,
      "workgroupBarrier();",
    );
    n = m;
  }
  const last = names[level];
  body.push(
    `let q = seg * ${n}u;`,
    `return ${wgslPairwiseSum(Array.from({ length: n }, (_, i) => `${last}[q + ${i}u]`))};`,
  );
  return `var<workgroup> red: array<${type}, 256>;
var<workgroup> red1: array<${type}, 32>;
var<workgroup> red2: array<${type}, 4>;
fn seg_sum(v: ${type}, lid: u32, seg: u32) -> ${type} {
  ${body.join("\n  ")}
}`;
}

/**
 * WGSL: the entry point of a kernel over row segments of `L` lanes, `RW` per
 * workgroup: defines `lid` (the lane), `seg` (the segment in the workgroup)
 * and `id`, the segment's index over the {@linkcode grid1d} dispatch.
 */
function segmentMain(L: number, RW: number, id: string): string {
  return `@compute @workgroup_size(${L}, ${RW})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid3: vec3u,
        @builtin(num_workgroups) nwg: vec3u) {
  let lid = lid3.x;
  let seg = lid3.y;
  let ${id} = (wid.x + wid.y * nwg.x) * ${RW}u + seg;`;
}

function forwardCode(C: number, pro: LayerNormPrologue): string {
  const L = layerNormLanes(C), RW = 256 / L;
  const cols = Math.max(1, Math.ceil(C / L)); // elements per thread, kept in registers
  // rows past R (the last workgroup's) skip reads and writes but join the barriers
  const perCol = (body: string) => unrolledColumns(cols, L, "live", body);
  const f = pro.first, more = pro.outputs ?? [];
  const extra = more.map((name, i) =>
    `@group(0) @binding(${f + 5 + i}) var<storage, read_write> ${name}: array<f32>;`
  );
  return `
${pro.inputs}
@group(0) @binding(${f}) var<storage, read> w: array<f32>;
@group(0) @binding(${f + 1}) var<storage, read> b: array<f32>;
@group(0) @binding(${f + 2}) var<storage, read_write> y: array<f32>;
@group(0) @binding(${f + 3}) var<storage, read_write> mean: array<f32>;
@group(0) @binding(${f + 4}) var<storage, read_write> rstd: array<f32>;
${extra.join("\n")}
${pro.uniform}
@group(0) @binding(${f + 5 + more.length}) var<uniform> u: U;
${pro.helpers ?? ""}
${segmentSum("f32", L)}
${segmentMain(L, RW, "row")}
  let live = row < u.R;
  let o = row * u.C;
  var xr: array<f32, ${cols}>;
  var ps: f32 = 0.0;
  ${perCol(`${pro.read} xr[t] = v; ps += v;`)}
  let m = seg_sum(ps, lid, seg) / f32(u.C);
  var pv: f32 = 0.0;
  ${perCol("let d = xr[t] - m; pv += d * d;")}
  let rs = 1.0 / sqrt(seg_sum(pv, lid, seg) / f32(u.C) + u.eps);
  ${perCol("y[o + j] = (xr[t] - m) * rs * w[j] + b[j];")}
  if (live && lid == 0u) { mean[row] = m; rstd[row] = rs; }
}`;
}

/**
 * WGSL: `body` for each of a thread's `cols` columns `j = lid + t·L` of a row
 * (where `guard` holds and `j < u.C`), unrolled with `t` a constant: the
 * per-thread arrays it indexes by `t` stay in registers whatever the driver
 * makes of loops (a loop it did not unroll would index them at run time, from
 * local memory).
 */
function unrolledColumns(cols: number, L: number, guard: string, body: string): string {
  return Array.from({ length: cols }, (_, t) =>
    `{
    const t = ${t}u;
    let j = lid + ${t * L}u;
    if (${guard} && j < u.C) { ${body} }
  }`).join("\n  ");
}

/** At most this many rows are summed serially per row segment of the backward. */
const MAX_ROWS_PER_GROUP = 16;
/**
 * Row segments (workgroups) the backward aims for (so also partial sums per
 * column): a `base` batch's 8192 rows give 4 rows per workgroup, so a large
 * GPU keeps several workgroups per multiprocessor and walks few rows serially.
 */
const TARGET_GROUPS = 2048;
/**
 * Up to this many rows one segment does them all and writes dweight/dbias
 * itself: one dispatch (a few row trees cost less than a second dispatch).
 */
const SINGLE_GROUP_ROWS = 32;
/**
 * The column reduction of the backward: a workgroup sums SUM_COLS columns,
 * each over SUM_LANES strided lanes then a tree. Many lanes per column keep
 * each lane's serial sum short (a base batch's 2048 partial rows: 32 per
 * lane), and the grid wide (C / SUM_COLS workgroups): 16 × 16 left 32
 * workgroups of 128-long serial sums at C = 512, 59 µs on an NVIDIA H200.
 */
const SUM_COLS = 4;
const SUM_LANES = 64;

/**
 * Rows one segment of the backward walks (it sums their dweight/dbias
 * contributions in registers): enough segments to fill a device, and short
 * serial sums; the partials of the segments are then reduced in a tree.
 */
function rowsPerGroup(R: number): number {
  if (R <= SINGLE_GROUP_ROWS) return Math.max(1, R);
  return Math.max(1, Math.min(MAX_ROWS_PER_GROUP, Math.ceil(R / TARGET_GROUPS)));
}

/**
 * Fused layer norm backward: inputs `[x, weight, mean, rstd, dy]` and
 * optionally `acc [..., C]` (a gradient of x to add to dx), outputs
 * `[dx [..., C], dweight [C], dbias [C]]`.
 *
 * On WebGPU: two dispatches. (1) One workgroup per group of rows: per row,
 * `dx` with the two row sums combined in one tree; each thread keeps the dweight/dbias sums of its
 * columns over the group's rows in registers and writes them as one partial
 * row. (2) The partials of each column summed by 64 lanes, then a tree. Up
 * to {@linkcode SINGLE_GROUP_ROWS} rows, (1) alone in one workgroup, writing
 * dweight/dbias.
 */
export const LAYER_NORM_GRAD: OpDef<LayerNormParams> = {
  name: "layerNormGrad",
  overwrites: true,
  outputs([x, w, mean, rstd, dy, acc]) {
    const rows = fmtShape(x.shape.slice(0, -1));
    if (
      fmtShape(dy.shape) !== fmtShape(x.shape) || fmtShape(mean.shape) !== rows ||
      (acc && fmtShape(acc.shape) !== fmtShape(x.shape)) ||
      fmtShape(rstd.shape) !== rows || w.shape.length !== 1 ||
      w.shape[0] !== x.shape[x.shape.length - 1]
    ) {
      throw new TypeError(
        `Cannot layerNormGrad: x ${fmtShape(x.shape)}, weight ${fmtShape(w.shape)}, mean ${
          fmtShape(mean.shape)
        }, rstd ${fmtShape(rstd.shape)}, dy ${fmtShape(dy.shape)}${
          acc ? `, acc ${fmtShape(acc.shape)}` : ""
        } do not fit`,
      );
    }
    return [
      { shape: x.shape, dtype: x.dtype },
      { shape: w.shape, dtype: x.dtype },
      { shape: w.shape, dtype: x.dtype },
    ];
  },
  cpu([x, w, mean, rstd, dy, acc], [dx, dw, db], info) {
    const [R, C] = lastAxisRows(info.inputs[0].shape);
    // f32: the same bits in WebAssembly on the CPU threads (ops/_cpu_threads_kernels.ts)
    if (
      x instanceof Float32Array && w instanceof Float32Array && mean instanceof Float32Array &&
      rstd instanceof Float32Array && dy instanceof Float32Array &&
      (acc === undefined || acc instanceof Float32Array) && dx instanceof Float32Array &&
      dw instanceof Float32Array && db instanceof Float32Array &&
      layerNormGradF32({ x, w, mean, rstd, dy, acc: acc ?? null }, { dx, dw, db }, { R, C })
    ) return;
    const f32 = !(dx instanceof Float64Array);
    const sw = new Float64Array(C), sb = new Float64Array(C);
    const xh = new Float64Array(C), g = new Float64Array(C);
    for (let r = 0; r < R; r++) {
      const o = r * C, m = mean[r], rs = rstd[r];
      // Σ g and Σ g·h in two lanes, even and odd columns, as LAYER_NORM.cpu sums
      let sg0 = 0, sg1 = 0, sgx0 = 0, sgx1 = 0;
      for (let j = 0; j < C; j++) {
        const d = dy[o + j], h = (x[o + j] - m) * rs, gj = d * w[j];
        xh[j] = h;
        g[j] = gj;
        if (j & 1) {
          sg1 += gj;
          sgx1 += gj * h;
        } else {
          sg0 += gj;
          sgx0 += gj * h;
        }
        sw[j] += d * h;
        sb[j] += d;
      }
      const mg = (sg0 + sg1) / C, mgx = (sgx0 + sgx1) / C;
      // with acc: the LayerNorm gradient rounded to dx's precision, then the sum rounded: the
      // numbers of a separate dx and autograd's add (and of the f32 GPU kernel). Three loops, so
      // that no element pays for the choice (a closure call per element was 2× slower).
      if (!acc) { for (let j = 0; j < C; j++) dx[o + j] = rs * (g[j] - mg - xh[j] * mgx); }
      else if (f32) {
        for (let j = 0; j < C; j++) {
          dx[o + j] = Math.fround(rs * (g[j] - mg - xh[j] * mgx)) + acc[o + j];
        }
      } else for (let j = 0; j < C; j++) dx[o + j] = rs * (g[j] - mg - xh[j] * mgx) + acc[o + j];
    }
    dw.set(sw);
    db.set(sb);
  },
  gpu(info) {
    const [R, C] = lastAxisRows(info.inputs[0].shape);
    return layerNormGradPlan(R, C, info.inputs.length === 6);
  },
};

/**
 * @internal What a fused op adds to {@linkcode layerNormGradPlan}'s kernel
 * (ops/residual_layer_norm.ts: the residual's backward of dx): inputs bound
 * after the LayerNorm gradient's, outputs written per element after `dx`,
 * uniform fields after `R, C, K, rpg`, and at most one more column sum.
 */
export interface LayerNormGradExtra {
  /** Names the extra: equal keys must give equal code (the code is generated once per key). */
  key: string;
  /** Names of further f32 inputs (bound after `acc`). */
  inputs: string[];
  /** Names of further per-element f32 outputs (bound after `dx`). */
  outputs: string[];
  /** u32 uniform fields (WGSL declarations) and their values. */
  u32: [string, number][];
  /** f32 uniform fields and their values. */
  f32: [string, number][];
  /** WGSL helpers the element statements call. */
  helpers: string;
  /**
   * Statements run for element `i` (column `j`, slot `t`) once `v`, its dx, is
   * known; with `sum`, they add to `es[t]`, this thread's share of the column sum.
   */
  element: string;
  /** Whether there is a third column sum (`es`), output after dweight and dbias. */
  sum: boolean;
}

/**
 * @internal The LayerNorm backward's plan (see {@linkcode LAYER_NORM_GRAD}):
 * one workgroup per group of rows writes dx (plus `acc`) and partial column
 * sums of dweight and dbias (and `extra`'s), then the partials are added.
 * Binding order: `x, w, mean, rstd, dy, acc?, ...extra inputs`, then `dx`,
 * the extra outputs, dweight, dbias and the extra sum.
 */
export function layerNormGradPlan(
  R: number,
  C: number,
  acc: boolean,
  extra?: LayerNormGradExtra,
): GpuPlan {
  // one segment of L lanes per workgroup (segment k walks rows [k·rpg, (k+1)·rpg)): on an H200,
  // segments of layerNormLanes(C) lanes, four per workgroup and 2 rows each, took base's
  // residualLayerNormGrad rows kernel from 59 to 87 µs a call
  const L = rowWorkgroupSize(C), RW = 1;
  const cols = Math.max(1, Math.ceil(C / L)); // columns per thread
  const rpg = rowsPerGroup(R);
  const K = Math.max(1, Math.ceil(R / rpg));
  const single = K === 1; // one segment: no partials, no second dispatch
  const xIns = extra?.inputs ?? [], xOuts = extra?.outputs ?? [];
  const S = extra?.sum ? 3 : 2; // column sums: dweight, dbias (, extra)
  const nIn = 5 + (acc ? 1 : 0) + xIns.length; // dx is binding nIn, after the inputs
  const sums = ["dw", "db", "ds"].slice(0, S);
  // dead segments and rows (past K or R) skip reads and writes but join the barriers
  const perCol = (body: string, guard = "live") => unrolledColumns(cols, L, guard, body);
  const decl = (names: string[], first: number, access: string) =>
    names.map((n, i) =>
      `@group(0) @binding(${first + i}) var<storage, ${access}> ${n}: array<f32>;`
    ).join("\n");
  const firstOut = nIn + 1 + xOuts.length; // dweight (single) or part
  const uFields = () => [
    "R: u32, C: u32, K: u32, rpg: u32",
    ...(extra?.u32 ?? []).map(([f]) => `${f}: u32`),
    ...(extra?.f32 ?? []).map(([f]) => `${f}: f32`),
  ];
  const uniform = packUniform(
    [R, C, K, rpg, ...(extra?.u32 ?? []).map(([, v]) => v)],
    (extra?.f32 ?? []).map(([, v]) => v),
  );
  const store = () =>
    single
      ? sums.map((n, i) => `${n}[j] = ${["sw", "sb", "es"][i]}[t];`).join(" ")
      : sums.map((_, i) => `part[(${i}u * u.K + k) * u.C + j] = ${["sw", "sb", "es"][i]}[t];`)
        .join(" ");
  const kernels: GpuKernel[] = [
    { // dx per row, and partial column sums per group of rows → part[S, K, C]
      code: memoCode(`g|${C}|${+single}|${+acc}|${extra?.key ?? ""}`, () => `
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read> mean: array<f32>;
@group(0) @binding(3) var<storage, read> rstd: array<f32>;
@group(0) @binding(4) var<storage, read> dy: array<f32>;
${acc ? "@group(0) @binding(5) var<storage, read> acc: array<f32>;" : ""}
${decl(xIns, acc ? 6 : 5, "read")}
@group(0) @binding(${nIn}) var<storage, read_write> dx: array<f32>;
${decl(xOuts, nIn + 1, "read_write")}
${
        single
          ? decl(sums, firstOut, "read_write")
          : `@group(0) @binding(${firstOut}) var<storage, read_write> part: array<f32>;`
      }
struct U { ${uFields().join(", ")} }
@group(0) @binding(${firstOut + (single ? S : 1)}) var<uniform> u: U;
${extra?.helpers ?? ""}
${segmentSum("vec2f", L)}
${segmentMain(L, RW, "k")}
  let seg_live = k < u.K;
  var wr: array<f32, ${cols}>;
  var xh: array<f32, ${cols}>;
  var g: array<f32, ${cols}>;
  var sw: array<f32, ${cols}>;
  var sb: array<f32, ${cols}>;
  ${extra?.sum ? `var es: array<f32, ${cols}>;` : ""}
  ${perCol("wr[t] = w[j];", "seg_live")}
  // row i's dy, x, mean and rstd wait in registers, loaded while row i - 1 was summed
  var dyr: array<f32, ${cols}>;
  var xr: array<f32, ${cols}>;
  var m = 0.0;
  var rs = 0.0;
  {
    let row = k * u.rpg;
    let live = seg_live && row < u.R;
    let o = row * u.C;
    if (live) {
      m = mean[row];
      rs = rstd[row];
    }
    ${perCol("dyr[t] = dy[o + j]; xr[t] = x[o + j];")}
  }
  for (var i = 0u; i < u.rpg; i++) {
    let row = k * u.rpg + i;
    let live = seg_live && row < u.R;
    let o = row * u.C;
    let rsr = rs;
    var p = vec2f(0.0);
    ${
        perCol(`let d = dyr[t];
      let h = (xr[t] - m) * rsr;
      xh[t] = h;
      g[t] = d * wr[t];
      p += vec2f(g[t], g[t] * h);
      sw[t] += d * h;
      sb[t] += d;`)
      }
    // the next row's loads go out before this row's sum: their latency hides behind its
    // barriers and dx writes instead of stalling the next iteration
    {
      let row = k * u.rpg + i + 1u;
      let live = seg_live && i + 1u < u.rpg && row < u.R;
      let o = row * u.C;
      if (live) {
        m = mean[row];
        rs = rstd[row];
      }
      ${perCol("dyr[t] = dy[o + j]; xr[t] = x[o + j];")}
    }
    let mg = seg_sum(p, lid, seg) / f32(u.C);
    ${
        perCol(`let i = o + j;
      let v = rsr * (g[t] - mg.x - xh[t] * mg.y)${acc ? " + acc[i]" : ""};
      dx[i] = v;
      ${extra?.element ?? ""}`)
      }
  }
  ${perCol(store(), "seg_live")}
}`),
      bind: [
        ...Array.from({ length: nIn }, (_, i) => ({ in: i })),
        ...Array.from({ length: 1 + xOuts.length }, (_, i) => ({ out: i })),
        ...(single ? sums.map((_, i) => ({ out: 1 + xOuts.length + i })) : [{ tmp: 0 }]),
      ],
      uniform,
      workgroups: grid1d(Math.ceil(K / RW), 1),
    },
    { // the K partials of each column: SUM_LANES strided lanes, then a tree
      code: memoCode(`gs|${S}`, () => `
@group(0) @binding(0) var<storage, read> part: array<f32>;
${decl(sums, 1, "read_write")}
struct U { C: u32, K: u32 }
@group(0) @binding(${1 + S}) var<uniform> u: U;
var<workgroup> acc: array<vec${S}f, ${SUM_COLS * SUM_LANES}>;
@compute @workgroup_size(${SUM_COLS}, ${SUM_LANES})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u,
        @builtin(num_workgroups) nwg: vec3u) {
  let c = (wid.x + wid.y * nwg.x) * ${SUM_COLS}u + lid.x;
  var s = vec${S}f(0.0);
  if (c < u.C) {
    for (var k = lid.y; k < u.K; k += ${SUM_LANES}u) {
      s += vec${S}f(${sums.map((_, i) => `part[(${i}u * u.K + k) * u.C + c]`).join(", ")});
    }
  }
  acc[lid.y * ${SUM_COLS}u + lid.x] = s;
  workgroupBarrier();
  for (var h = ${SUM_LANES / 2}u; h > 0u; h >>= 1u) {
    if (lid.y < h) { acc[lid.y * ${SUM_COLS}u + lid.x] += acc[(lid.y + h) * ${SUM_COLS}u + lid.x]; }
    workgroupBarrier();
  }
  if (lid.y == 0u && c < u.C) {
    ${sums.map((n, i) => `${n}[c] = acc[lid.x].${"xyz"[i]};`).join("\n    ")}
  }
}`),
      bind: [{ tmp: 0 }, ...sums.map((_, i) => ({ out: 1 + xOuts.length + i }))],
      uniform: packUniform([C, K]),
      workgroups: grid1d(C, SUM_COLS),
    },
  ];
  if (single) return { kernels: kernels.slice(0, 1) };
  return { temps: [S * K * C * 4], kernels };
}

/**
 * Layer norm over the last axis (biased variance, like
 * `torch.nn.functional.layer_norm(x, [C], weight, bias, eps)`).
 */
export function layerNorm(x: Tensor, weight: Tensor, bias: Tensor, eps: number): Tensor {
  const [y, mean, rstd] = apply(LAYER_NORM, [x, weight, bias], { eps });
  if (!y.node) {
    // no tape: the saved statistics are not needed
    mean.dispose();
    rstd.dispose();
  }
  return y;
}

/** Registry entries of this file (see tests/ops_registry_test.ts). */
export const LAYER_NORM_ENTRIES: OpEntry[] = [
  {
    op: LAYER_NORM,
    cases: [
      { inputs: [{ shape: [3, 5] }, { shape: [5] }, { shape: [5] }], params: { eps: 1e-5 } },
      { inputs: [{ shape: [2, 1, 7] }, { shape: [7] }, { shape: [7] }], params: { eps: 1e-5 } },
      {
        inputs: [{ shape: [2, 300], min: -50, max: 50 }, { shape: [300] }, { shape: [300] }],
        params: { eps: 1e-5 },
      },
      { inputs: [{ shape: [4, 1] }, { shape: [1] }, { shape: [1] }], params: { eps: 0.1 } },
      { inputs: [{ shape: [6] }, { shape: [6] }, { shape: [6] }], params: { eps: 1e-5 } },
      {
        label: "outputs mean and rstd",
        inputs: [{ shape: [2, 3, 9], min: 2, max: 3 }, { shape: [9] }, { shape: [9] }],
        params: { eps: 1e-3 },
      },
    ],
  },
  {
    op: LAYER_NORM_GRAD,
    cases: [
      {
        inputs: [
          { shape: [3, 5] },
          { shape: [5] },
          { shape: [3], min: -0.1, max: 0.1 },
          { shape: [3], min: 0.5, max: 2 },
          { shape: [3, 5] },
        ],
        params: { eps: 1e-5 },
      },
      {
        label: "70 rows × 130",
        inputs: [
          { shape: [70, 130] },
          { shape: [130] },
          { shape: [70], min: -0.1, max: 0.1 },
          { shape: [70], min: 0.5, max: 2 },
          { shape: [70, 130] },
        ],
        params: { eps: 1e-5 },
      },
      {
        inputs: [
          { shape: [1, 1] },
          { shape: [1] },
          { shape: [1] },
          { shape: [1], min: 0.5, max: 2 },
          { shape: [1, 1] },
        ],
        params: { eps: 1e-5 },
      },
      {
        label: "1030 rows (1 per group) × 20",
        inputs: [
          { shape: [1030, 20] },
          { shape: [20] },
          { shape: [1030], min: -0.1, max: 0.1 },
          { shape: [1030], min: 0.5, max: 2 },
          { shape: [1030, 20] },
        ],
        params: { eps: 1e-5 },
      },
      ...[[9001, 3, "5 per group, the last of 1"], [33000, 2, "16 per group, the last of 8"]]
        .map((
          [R, C, why],
        ) => ({
          label: `${R} rows (${why}) × ${C}`,
          inputs: [
            { shape: [R as number, C as number] },
            { shape: [C as number] },
            { shape: [R as number], min: -0.1, max: 0.1 },
            { shape: [R as number], min: 0.5, max: 2 },
            { shape: [R as number, C as number] },
          ],
          params: { eps: 1e-5 },
        })),
      ...[[3, 5], [1, 1], [70, 130], [1030, 20]].map(([R, C]) => ({
        label: `${R} rows × ${C} with a pending gradient (acc) added to dx`,
        inputs: [
          { shape: [R, C] },
          { shape: [C] },
          { shape: [R], min: -0.1, max: 0.1 },
          { shape: [R], min: 0.5, max: 2 },
          { shape: [R, C] },
          { shape: [R, C], min: -3, max: 3 },
        ],
        params: { eps: 1e-5 },
      })),
      {
        label: "C = 600 (128 lanes, 5 columns per thread)",
        inputs: [
          { shape: [5, 600] },
          { shape: [600] },
          { shape: [5], min: -0.1, max: 0.1 },
          { shape: [5], min: 0.5, max: 2 },
          { shape: [5, 600] },
        ],
        params: { eps: 1e-5 },
      },
    ],
  },
];
