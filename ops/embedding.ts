/**
 * `embedding`: gathers rows of a table, `out[..., c] = weight[ids[...], c]`,
 * with a deterministic scatter-add backward
 * (`dweight[v, c] = Σ_{p: ids[p] = v} dy[p, c]`, summed in position order).
 *
 * Out-of-range ids: the CPU throws a RangeError naming the id and its
 * position; the GPU (which cannot throw) gives a zero row for them and they
 * receive no gradient.
 *
 * The GPU backward has no float atomics to rely on, so it links each position
 * to the next position holding the same id (`next[p]`) and finds the first
 * position of each id (`head[v]`); one thread per (v, c) then walks its list.
 * The work is O(N·C + V·C) plus an O(N²) id scan that reads only ids.
 *
 * @example
 * ```ts
 * import { tensor } from "../tensor/tensor.ts";
 * import { embedding } from "./embedding.ts";
 * const w = tensor([0, 1, 10, 11, 20, 21], [3, 2]);
 * const y = embedding(w, tensor(new Int32Array([2, 0]), [2]));
 * console.log(await y.toArray()); // [20, 21, 0, 1]
 * ```
 *
 * @module
 */
import { apply, type Tensor } from "../tensor/tensor.ts";
import { fmtShape, type OpDef, packUniform, sizeOf } from "../tensor/types.ts";
import { grid1d, LINEAR_INDEX, MAIN_1D } from "./_wgsl.ts";
import type { OpEntry } from "./registry.ts";

/**
 * Embedding gather: inputs `[weight [V, C], ids i32 [...]]`, output `[..., C]`.
 */
export const EMBEDDING: OpDef = {
  name: "embedding",
  outputs([w, ids]) {
    if (w.shape.length !== 2 || w.dtype === "i32") {
      throw new TypeError(
        `Cannot embedding: weight must be a float [V, C], got ${fmtShape(w.shape)} ${w.dtype}`,
      );
    }
    if (ids.dtype !== "i32") {
      throw new TypeError(`Cannot embedding: ids must be i32, got ${ids.dtype}`);
    }
    return [{ shape: [...ids.shape, w.shape[1]], dtype: w.dtype }];
  },
  cpu([w, ids], [out], info) {
    const [V, C] = info.inputs[0].shape;
    for (let p = 0; p < ids.length; p++) {
      const v = ids[p];
      if (!(v >= 0 && v < V)) {
        throw new RangeError(`embedding: id ${v} at position ${p} is outside [0, ${V})`);
      }
      for (let c = 0; c < C; c++) out[p * C + c] = w[v * C + c];
    }
  },
  gpu(info) {
    const [V, C] = info.inputs[0].shape;
    const n = sizeOf(info.outputs[0].shape);
    return {
      kernels: [{
        code: `
@group(0) @binding(0) var<storage, read> w: array<f32>;
@group(0) @binding(1) var<storage, read> ids: array<i32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
struct U { n: u32, V: u32, C: u32 }
@group(0) @binding(3) var<uniform> u: U;
${MAIN_1D()} {
  ${LINEAR_INDEX()}
  if (i >= u.n) { return; }
  let v = ids[i / u.C];
  if (v < 0 || u32(v) >= u.V) { out[i] = 0.0; return; }
  out[i] = w[u32(v) * u.C + i % u.C];
}`,
        bind: [{ in: 0 }, { in: 1 }, { out: 0 }],
        uniform: packUniform([n, V, C]),
        workgroups: grid1d(n),
      }],
    };
  },
  backward(c, [dy]) {
    const [w, ids] = c.inputs as Tensor[];
    if (!w.requiresGrad) return [null, null];
    return [apply(EMBEDDING_GRAD, [ids, dy as Tensor], { V: w.shape[0] })[0], null];
  },
};

/** Parameters of {@linkcode EMBEDDING_GRAD}. */
export interface EmbeddingGradParams {
  /** Rows of the table. */
  V: number;
}

const NONE = "0xffffffffu";

/**
 * Embedding backward (scatter-add): inputs `[ids i32 [...], dy [..., C]]`,
 * output `dweight [V, C]`; out-of-range ids contribute nothing.
 */
export const EMBEDDING_GRAD: OpDef<EmbeddingGradParams> = {
  name: "embeddingGrad",
  outputs([ids, dy], p) {
    const C = dy.shape[dy.shape.length - 1];
    if (
      ids.dtype !== "i32" || dy.shape.length !== ids.shape.length + 1 ||
      fmtShape(dy.shape.slice(0, -1)) !== fmtShape(ids.shape)
    ) {
      throw new TypeError(
        `Cannot embeddingGrad: ids ${fmtShape(ids.shape)} ${ids.dtype} and dy ${
          fmtShape(dy.shape)
        } do not fit`,
      );
    }
    return [{ shape: [p.V, C], dtype: dy.dtype }];
  },
  cpu([ids, dy], [dw], info, p) {
    const dyShape = info.inputs[1].shape;
    const C = dyShape[dyShape.length - 1];
    const acc = new Float64Array(p.V * C);
    for (let q = 0; q < ids.length; q++) {
      const v = ids[q];
      if (!(v >= 0 && v < p.V)) continue;
      for (let c = 0; c < C; c++) acc[v * C + c] += dy[q * C + c];
    }
    dw.set(acc);
  },
  gpu(info, p) {
    const N = sizeOf(info.inputs[0].shape);
    const dyShape = info.inputs[1].shape;
    const C = dyShape[dyShape.length - 1];
    const V = p.V;
    return {
      // tmp 0: head [V] (first position of each id), tmp 1: next [N] (next position, same id)
      temps: [Math.max(4, V * 4), Math.max(4, N * 4)],
      kernels: [
        {
          code: `
@group(0) @binding(0) var<storage, read_write> head: array<u32>;
struct U { V: u32 }
@group(0) @binding(1) var<uniform> u: U;
${MAIN_1D()} {
  ${LINEAR_INDEX()}
  if (i >= u.V) { return; }
  head[i] = ${NONE};
}`,
          bind: [{ tmp: 0 }],
          uniform: packUniform([V]),
          workgroups: grid1d(V),
        },
        {
          code: `
@group(0) @binding(0) var<storage, read> ids: array<i32>;
@group(0) @binding(1) var<storage, read_write> head: array<u32>;
@group(0) @binding(2) var<storage, read_write> next: array<u32>;
struct U { N: u32, V: u32 }
@group(0) @binding(3) var<uniform> u: U;
${MAIN_1D()} {
  ${LINEAR_INDEX()}
  if (i >= u.N) { return; }
  let v = ids[i];
  var nx = ${NONE};
  for (var q = i + 1u; q < u.N; q++) { if (ids[q] == v) { nx = q; break; } }
  next[i] = nx;
  if (v < 0 || u32(v) >= u.V) { return; }
  var first = true;
  for (var q = i; q > 0u; q--) { if (ids[q - 1u] == v) { first = false; break; } }
  if (first) { head[u32(v)] = i; }
}`,
          bind: [{ in: 0 }, { tmp: 0 }, { tmp: 1 }],
          uniform: packUniform([N, V]),
          workgroups: grid1d(N),
        },
        {
          code: `
@group(0) @binding(0) var<storage, read> head: array<u32>;
@group(0) @binding(1) var<storage, read> next: array<u32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> dw: array<f32>;
struct U { n: u32, C: u32 }
@group(0) @binding(4) var<uniform> u: U;
${MAIN_1D()} {
  ${LINEAR_INDEX()}
  if (i >= u.n) { return; }
  let c = i % u.C;
  var acc: f32 = 0.0;
  var q = head[i / u.C];
  loop {
    if (q == ${NONE}) { break; }
    acc += dy[q * u.C + c];
    q = next[q];
  }
  dw[i] = acc;
}`,
          bind: [{ tmp: 0 }, { tmp: 1 }, { in: 1 }, { out: 0 }],
          uniform: packUniform([V * C, C]),
          workgroups: grid1d(V * C),
        },
      ],
    };
  },
};

/**
 * Gathers rows of `weight` [V, C] at `ids` (i32, any shape) → `[...ids.shape, C]`.
 * CPU: RangeError for an id outside [0, V); GPU: a zero row instead.
 */
export function embedding(weight: Tensor, ids: Tensor): Tensor {
  return apply(EMBEDDING, [weight, ids], {})[0];
}

/** Registry entries of this file (see tests/ops_registry_test.ts). */
export const EMBEDDING_ENTRIES: OpEntry[] = [
  {
    op: EMBEDDING,
    cases: [
      { inputs: [{ shape: [5, 3] }, { shape: [4], dtype: "i32", intMax: 5 }], params: {} },
      {
        label: "repeated ids [2, 6] in V=4, C=7",
        inputs: [{ shape: [4, 7] }, {
          shape: [2, 6],
          dtype: "i32",
          values: [0, 3, 3, 1, 0, 0, 2, 3, 0, 0, 1, 3],
        }],
        params: {},
      },
      { inputs: [{ shape: [1, 1] }, { shape: [1], dtype: "i32", intMax: 1 }], params: {} },
      { inputs: [{ shape: [40, 130] }, { shape: [3, 5], dtype: "i32", intMax: 40 }], params: {} },
    ],
  },
  {
    op: EMBEDDING_GRAD,
    cases: [
      {
        label: "repeated ids, V=5 with an unused row",
        inputs: [{ shape: [2, 6], dtype: "i32", values: [0, 3, 3, 1, 0, 0, 2, 3, 0, 0, 1, 3] }, {
          shape: [2, 6, 7],
        }],
        params: { V: 5 },
      },
      {
        inputs: [{ shape: [300], dtype: "i32", intMax: 9 }, { shape: [300, 3] }],
        params: { V: 9 },
      },
      {
        label: "out-of-range ids get no gradient",
        inputs: [{ shape: [5], dtype: "i32", values: [1, 7, -1, 1, 0] }, { shape: [5, 2] }],
        params: { V: 3 },
      },
    ],
  },
];
