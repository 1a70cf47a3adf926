/**
 * `maskedFill(x, mask, value)`: `value` where the mask is non-zero, `x`
 * elsewhere. The mask (f32 0/1 or i32) broadcasts to x's shape (NumPy rules;
 * the result always has x's shape). Backward: `dy` with zeros where masked;
 * the mask takes no gradient.
 *
 * @example
 * ```ts
 * import { maskedFill, tensor } from "@webseq/webseq";
 * const y = maskedFill(tensor([1, 2, 3, 4], [2, 2]), tensor(new Int32Array([0, 1]), [2]), -1e9);
 * console.log(await y.toArray()); // [1, -1e9, 3, -1e9]
 * ```
 *
 * @module
 */
import { apply, type Tensor } from "../tensor/tensor.ts";
import { fmtShape, type OpDef, packUniform, type Shape, sizeOf } from "../tensor/types.ts";
import { DIMS6, grid1d, LINEAR_INDEX, MAIN_1D, OFFSET6, STRIDES6, UNRAVEL6 } from "./_wgsl.ts";
import type { OpEntry } from "./registry.ts";

/** Parameters of {@linkcode MASKED_FILL}. */
export interface MaskedFillParams {
  /** The fill value (may be ±Infinity). */
  value: number;
}

/**
 * The mask's strides read in x's index space (0 on broadcast dims), with
 * adjacent dims merged where both run contiguously: `[dims, strides]`.
 */
function maskGeometry(xs: Shape, ms: Shape): [number[], number[]] {
  const r = xs.length, pad = r - ms.length;
  const d: number[] = [], st: number[] = [];
  let s = 1;
  const full = new Array<number>(r);
  for (let k = r - 1; k >= 0; k--) {
    const m = k < pad ? 1 : ms[k - pad];
    full[k] = m === 1 && xs[k] !== 1 ? 0 : s;
    s *= m;
  }
  for (let k = 0; k < r; k++) {
    if (xs[k] === 1) continue;
    const last = d.length - 1;
    if (last >= 0 && st[last] === full[k] * xs[k]) {
      d[last] *= xs[k];
      st[last] = full[k];
    } else {
      d.push(xs[k]);
      st.push(full[k]);
    }
  }
  return [d, st];
}

/** Fills `value` where the broadcast mask is non-zero: inputs `[x, mask]`. */
export const MASKED_FILL: OpDef<MaskedFillParams> = {
  name: "maskedFill",
  outputs([x, mask]) {
    if (x.dtype === "i32") throw new TypeError("Cannot maskedFill: x must be a float tensor");
    const r = x.shape.length, pad = r - mask.shape.length;
    if (
      pad < 0 ||
      mask.shape.some((d, k) => d !== 1 && d !== x.shape[k + pad])
    ) {
      throw new TypeError(
        `Cannot maskedFill: mask ${fmtShape(mask.shape)} does not broadcast to x ${
          fmtShape(x.shape)
        }`,
      );
    }
    return [{ shape: x.shape, dtype: x.dtype }];
  },
  cpu([x, mask], [out], info, p) {
    const [d, st] = maskGeometry(info.inputs[0].shape, info.inputs[1].shape);
    const r = d.length;
    for (let i = 0; i < out.length; i++) {
      let rem = i, off = 0;
      for (let k = r - 1; k >= 0; k--) {
        const c = rem % d[k];
        rem = (rem - c) / d[k];
        off += c * st[k];
      }
      out[i] = mask[off] !== 0 ? p.value : x[i];
    }
  },
  gpu(info, p) {
    const [d, st] = maskGeometry(info.inputs[0].shape, info.inputs[1].shape);
    if (d.length > 6) throw new TypeError("Cannot maskedFill: rank above 6 after collapsing");
    const pad = 6 - d.length;
    const n = sizeOf(info.inputs[0].shape);
    const isInt = info.inputs[1].dtype === "i32";
    return {
      kernels: [{
        code: `
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> mask: array<${isInt ? "i32" : "f32"}>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
struct U { n: u32, ${DIMS6}, ${STRIDES6("s")}, value: f32 }
@group(0) @binding(3) var<uniform> u: U;
${MAIN_1D()} {
  ${LINEAR_INDEX()}
  if (i >= u.n) { return; }
  ${UNRAVEL6}
  let m = mask[${OFFSET6("s")}];
  out[i] = select(x[i], u.value, m != ${isInt ? "0" : "0.0"});
}`,
        bind: [{ in: 0 }, { in: 1 }, { out: 0 }],
        uniform: packUniform(
          [n, ...Array(pad).fill(1), ...d, ...Array(pad).fill(0), ...st],
          [p.value],
        ),
        workgroups: grid1d(n),
      }],
    };
  },
  backward(c, [dy]) {
    return [apply(MASKED_FILL, [dy as Tensor, c.inputs[1] as Tensor], { value: 0 })[0], null];
  },
};

/** `value` where `mask` (broadcast to x; f32 0/1 or i32) is non-zero, else `x`. */
export function maskedFill(x: Tensor, mask: Tensor, value: number): Tensor {
  return apply(MASKED_FILL, [x, mask], { value })[0];
}

/** Registry entries of this file (see tests/ops_registry_test.ts). */
export const MASKED_FILL_ENTRIES: OpEntry[] = [{
  op: MASKED_FILL,
  cases: [
    {
      inputs: [{ shape: [3, 4] }, {
        shape: [3, 4],
        values: [1, 0, 0, 1, 0, 0, 1, 1, 0, 1, 0, 0],
        noGrad: true,
      }],
      params: { value: -5 },
    },
    {
      label: "key padding [B=2, 1, 1, S=5] over [2, 3, 4, 5], a fully padded row, -Infinity",
      inputs: [{ shape: [2, 3, 4, 5] }, {
        shape: [2, 1, 1, 5],
        dtype: "i32",
        values: [0, 0, 0, 1, 1, 1, 1, 1, 1, 1],
        noGrad: true,
      }],
      params: { value: -Infinity },
      noGradCheck: true,
    },
    {
      label: "key padding [2, 1, 1, 5] with -1e9",
      inputs: [{ shape: [2, 3, 4, 5] }, {
        shape: [2, 1, 1, 5],
        values: [0, 0, 0, 1, 1, 1, 1, 1, 1, 1],
        noGrad: true,
      }],
      params: { value: -1e9 },
      noGradCheck: true, // a 1e9 constant in the loss swamps finite differences
    },
    {
      label: "causal [4, 4] mask over [2, 4, 4]",
      inputs: [{ shape: [2, 4, 4] }, {
        shape: [4, 4],
        dtype: "i32",
        values: [0, 1, 1, 1, 0, 0, 1, 1, 0, 0, 0, 1, 0, 0, 0, 0],
      }],
      params: { value: 0 },
    },
    { inputs: [{ shape: [1] }, { shape: [1], values: [1], noGrad: true }], params: { value: 2 } },
    { inputs: [{ shape: [300] }, { shape: [1], values: [0], noGrad: true }], params: { value: 2 } },
  ],
}];
