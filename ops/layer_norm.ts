/**
 * `layerNorm` over the last axis C, like `torch.nn.functional.layer_norm`
 * (biased variance, eps inside the square root):
 * `y = (x − mean)·rstd·weight + bias`, `rstd = 1/sqrt(var + eps)`.
 *
 * The fused forward also outputs `mean` and `rstd` per row (saved for the
 * backward). The fused backward {@linkcode LAYER_NORM_GRAD} gives
 * `dx = rstd·(g − mean(g) − x̂·mean(g·x̂))` with `g = dy·weight`, and the column
 * sums `dweight = Σ_rows dy·x̂`, `dbias = Σ_rows dy` in two deterministic
 * stages (partial sums over chunks of rows, then the chunks in order).
 *
 * @example
 * ```ts
 * import { ones, tensor, zeros } from "../tensor/tensor.ts";
 * import { layerNorm } from "./layer_norm.ts";
 * const y = layerNorm(tensor([1, 2, 3, 4], [2, 2]), ones([2]), zeros([2]), 1e-5);
 * console.log(await y.toArray()); // ≈ [-1, 1, -1, 1]
 * ```
 *
 * @module
 */
import { apply, type Tensor } from "../tensor/tensor.ts";
import { fmtShape, type OpDef, packUniform } from "../tensor/types.ts";
import { grid1d, LINEAR_INDEX, MAIN_1D } from "./_wgsl.ts";
import type { OpEntry } from "./registry.ts";
import { lastAxisRows, rowWorkgroupSize, wgslRowMain, wgslRowReduce } from "./softmax.ts";

/** Parameters of the layer norm ops. */
export interface LayerNormParams {
  /** Added to the variance before the square root. */
  eps: number;
}

/** Rows summed per thread in the first stage of the dweight/dbias reduction. */
const CHUNK = 32;

/**
 * Fused layer norm forward: inputs `[x [..., C], weight [C], bias [C]]`,
 * outputs `[y [..., C], mean [...], rstd [...]]`.
 */
export const LAYER_NORM: OpDef<LayerNormParams> = {
  name: "layerNorm",
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
    for (let r = 0; r < R; r++) {
      const o = r * C;
      let s = 0;
      for (let j = 0; j < C; j++) s += x[o + j];
      const m = s / C;
      let v = 0;
      for (let j = 0; j < C; j++) v += (x[o + j] - m) ** 2;
      const rs = 1 / Math.sqrt(v / C + p.eps);
      for (let j = 0; j < C; j++) y[o + j] = (x[o + j] - m) * rs * w[j] + b[j];
      mean[r] = m;
      rstd[r] = rs;
    }
  },
  gpu(info, p) {
    const [R, C] = lastAxisRows(info.inputs[0].shape);
    const wg = rowWorkgroupSize(C);
    return {
      kernels: [{
        code: `
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read_write> mean: array<f32>;
@group(0) @binding(5) var<storage, read_write> rstd: array<f32>;
struct U { R: u32, C: u32, eps: f32 }
@group(0) @binding(6) var<uniform> u: U;
${wgslRowReduce(wg)}
${wgslRowMain(wg)}
  let o = row * u.C;
  var ps: f32 = 0.0;
  for (var j = lid; j < u.C; j += ${wg}u) { ps += x[o + j]; }
  let m = wg_sum(ps, lid) / f32(u.C);
  var pv: f32 = 0.0;
  for (var j = lid; j < u.C; j += ${wg}u) { let d = x[o + j] - m; pv += d * d; }
  let rs = 1.0 / sqrt(wg_sum(pv, lid) / f32(u.C) + u.eps);
  for (var j = lid; j < u.C; j += ${wg}u) { y[o + j] = (x[o + j] - m) * rs * w[j] + b[j]; }
  if (lid == 0u) { mean[row] = m; rstd[row] = rs; }
}`,
        bind: [{ in: 0 }, { in: 1 }, { in: 2 }, { out: 0 }, { out: 1 }, { out: 2 }],
        uniform: packUniform([R, C], [p.eps]),
        workgroups: grid1d(R, 1),
      }],
    };
  },
  backward(c, [dy]) {
    const [x, w] = c.inputs as Tensor[];
    const [, mean, rstd] = c.outputs as Tensor[];
    // mean and rstd are saved values: gradients reaching them are ignored
    if (!dy) return [null, null, null];
    return apply(LAYER_NORM_GRAD, [x, w, mean, rstd, dy as Tensor], c.params);
  },
};

/**
 * Fused layer norm backward: inputs `[x, weight, mean, rstd, dy]`, outputs
 * `[dx [..., C], dweight [C], dbias [C]]`.
 */
export const LAYER_NORM_GRAD: OpDef<LayerNormParams> = {
  name: "layerNormGrad",
  outputs([x, w, mean, rstd, dy]) {
    const rows = fmtShape(x.shape.slice(0, -1));
    if (
      fmtShape(dy.shape) !== fmtShape(x.shape) || fmtShape(mean.shape) !== rows ||
      fmtShape(rstd.shape) !== rows || w.shape.length !== 1 ||
      w.shape[0] !== x.shape[x.shape.length - 1]
    ) {
      throw new TypeError(
        `Cannot layerNormGrad: x ${fmtShape(x.shape)}, weight ${fmtShape(w.shape)}, mean ${
          fmtShape(mean.shape)
        }, rstd ${fmtShape(rstd.shape)}, dy ${fmtShape(dy.shape)} do not fit`,
      );
    }
    return [
      { shape: x.shape, dtype: x.dtype },
      { shape: w.shape, dtype: x.dtype },
      { shape: w.shape, dtype: x.dtype },
    ];
  },
  cpu([x, w, mean, rstd, dy], [dx, dw, db], info) {
    const [R, C] = lastAxisRows(info.inputs[0].shape);
    const sw = new Float64Array(C), sb = new Float64Array(C);
    for (let r = 0; r < R; r++) {
      const o = r * C, m = mean[r], rs = rstd[r];
      let sg = 0, sgx = 0;
      for (let j = 0; j < C; j++) {
        const g = dy[o + j] * w[j], xh = (x[o + j] - m) * rs;
        sg += g;
        sgx += g * xh;
        sw[j] += dy[o + j] * xh;
        sb[j] += dy[o + j];
      }
      for (let j = 0; j < C; j++) {
        const xh = (x[o + j] - m) * rs;
        dx[o + j] = rs * (dy[o + j] * w[j] - sg / C - xh * sgx / C);
      }
    }
    dw.set(sw);
    db.set(sb);
  },
  gpu(info) {
    const [R, C] = lastAxisRows(info.inputs[0].shape);
    const wg = rowWorkgroupSize(C);
    const K = Math.ceil(R / CHUNK);
    const head = `
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> mean: array<f32>;
@group(0) @binding(2) var<storage, read> rstd: array<f32>;
@group(0) @binding(3) var<storage, read> dy: array<f32>;`;
    return {
      temps: [Math.max(4, 2 * K * C * 4)],
      kernels: [
        { // dx: one workgroup per row
          code: `${head}
@group(0) @binding(4) var<storage, read> w: array<f32>;
@group(0) @binding(5) var<storage, read_write> dx: array<f32>;
struct U { R: u32, C: u32 }
@group(0) @binding(6) var<uniform> u: U;
${wgslRowReduce(wg)}
${wgslRowMain(wg)}
  let o = row * u.C;
  let m = mean[row];
  let rs = rstd[row];
  var pg: f32 = 0.0;
  var pgx: f32 = 0.0;
  for (var j = lid; j < u.C; j += ${wg}u) {
    let g = dy[o + j] * w[j];
    pg += g;
    pgx += g * (x[o + j] - m) * rs;
  }
  let mg = wg_sum(pg, lid) / f32(u.C);
  let mgx = wg_sum(pgx, lid) / f32(u.C);
  for (var j = lid; j < u.C; j += ${wg}u) {
    let xh = (x[o + j] - m) * rs;
    dx[o + j] = rs * (dy[o + j] * w[j] - mg - xh * mgx);
  }
}`,
          bind: [{ in: 0 }, { in: 2 }, { in: 3 }, { in: 4 }, { in: 1 }, { out: 0 }],
          uniform: packUniform([R, C]),
          workgroups: grid1d(R, 1),
        },
        { // stage 1: partial column sums over chunks of CHUNK rows → part[K, C] twice
          code: `${head}
@group(0) @binding(4) var<storage, read_write> part: array<f32>;
struct U { R: u32, C: u32, K: u32 }
@group(0) @binding(5) var<uniform> u: U;
${MAIN_1D()} {
  ${LINEAR_INDEX()}
  if (i >= u.K * u.C) { return; }
  let k = i / u.C;
  let c = i % u.C;
  let r1 = min(u.R, (k + 1u) * ${CHUNK}u);
  var sw: f32 = 0.0;
  var sb: f32 = 0.0;
  for (var r = k * ${CHUNK}u; r < r1; r++) {
    let g = dy[r * u.C + c];
    sw += g * (x[r * u.C + c] - mean[r]) * rstd[r];
    sb += g;
  }
  part[i] = sw;
  part[u.K * u.C + i] = sb;
}`,
          bind: [{ in: 0 }, { in: 2 }, { in: 3 }, { in: 4 }, { tmp: 0 }],
          uniform: packUniform([R, C, K]),
          workgroups: grid1d(K * C),
        },
        { // stage 2: sum the chunks in order
          code: `
@group(0) @binding(0) var<storage, read> part: array<f32>;
@group(0) @binding(1) var<storage, read_write> dw: array<f32>;
@group(0) @binding(2) var<storage, read_write> db: array<f32>;
struct U { C: u32, K: u32 }
@group(0) @binding(3) var<uniform> u: U;
${MAIN_1D()} {
  ${LINEAR_INDEX()}
  if (i >= u.C) { return; }
  var sw: f32 = 0.0;
  var sb: f32 = 0.0;
  for (var k = 0u; k < u.K; k++) {
    sw += part[k * u.C + i];
    sb += part[(u.K + k) * u.C + i];
  }
  dw[i] = sw;
  db[i] = sb;
}`,
          bind: [{ tmp: 0 }, { out: 1 }, { out: 2 }],
          uniform: packUniform([C, K]),
          workgroups: grid1d(C),
        },
      ],
    };
  },
};

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
        label: "70 rows (chunks not a multiple) × 130",
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
    ],
  },
];
