/**
 * Layout ops: `reshape` (a free view) and `permute`/`transpose` (a strided
 * copy; rank ≤ 6).
 *
 * @module
 */
import { apply, recordNode, type Tensor } from "../tensor/tensor.ts";
import { fmtShape, type OpDef, packUniform, type Shape, sizeOf } from "../tensor/types.ts";
import { DIMS6, grid1d, LINEAR_INDEX, MAIN_1D, OFFSET6, STRIDES6, UNRAVEL6 } from "./_wgsl.ts";
import { setReshape } from "./reduce.ts";

/** Parameters of reshape. */
export interface ReshapeParams {
  /** New shape. */
  shape: Shape;
}

/** Reshape's tape entry (the forward is a view and never runs `cpu`/`gpu`). */
export const RESHAPE: OpDef<ReshapeParams> = {
  name: "reshape",
  outputs([x], p) {
    return [{ shape: p.shape, dtype: x.dtype }];
  },
  cpu([x], [out]) {
    out.set(x);
  },
  gpu() {
    throw new Error("reshape is a view");
  },
  backward(c, [dy]) {
    const x = c.inputs[0] as Tensor;
    return [(dy as Tensor).view(x.shape)];
  },
};

/** A view of `x` with another shape of the same size; one dim may be -1. */
export function reshape(x: Tensor, shape: Shape): Tensor {
  const known = shape.filter((d) => d !== -1).reduce((a, b) => a * b, 1);
  const free = shape.filter((d) => d === -1).length;
  if (free > 1) throw new TypeError(`Cannot reshape to ${fmtShape(shape)}: more than one -1`);
  const resolved = shape.map((d) => (d === -1 ? x.size / known : d));
  if (sizeOf(resolved) !== x.size || resolved.some((d) => !Number.isInteger(d) || d < 0)) {
    throw new TypeError(`Cannot reshape ${fmtShape(x.shape)} to ${fmtShape(shape)}`);
  }
  const y = x.view(resolved);
  recordNode(RESHAPE, [x], [y], { shape: resolved });
  return y;
}
setReshape(reshape);

/** Parameters of permute. */
export interface PermuteParams {
  /** `out.shape[k] = x.shape[perm[k]]`. */
  perm: number[];
}

function permGeometry(xs: Shape, perm: number[]): { d: number[]; st: number[] } {
  const r = xs.length;
  const xst = new Array<number>(r);
  let s = 1;
  for (let k = r - 1; k >= 0; k--) {
    xst[k] = s;
    s *= xs[k];
  }
  return { d: perm.map((p) => xs[p]), st: perm.map((p) => xst[p]) };
}

/** Permutes the axes (materialises the result). */
export const PERMUTE: OpDef<PermuteParams> = {
  name: "permute",
  outputs([x], p) {
    const r = x.shape.length;
    if (p.perm.length !== r || [...p.perm].sort((a, b) => a - b).some((v, k) => v !== k)) {
      throw new TypeError(`Cannot permute ${fmtShape(x.shape)} by [${p.perm.join(", ")}]`);
    }
    if (r > 6) throw new TypeError(`permute supports rank ≤ 6, got ${r}`);
    return [{ shape: p.perm.map((k) => x.shape[k]), dtype: x.dtype }];
  },
  cpu([x], [out], info, p) {
    const { d, st } = permGeometry(info.inputs[0].shape, p.perm);
    const r = d.length;
    if (r <= 4) {
      // nested loops over the output in memory order, offsets by addition
      const [d0, d1, d2, d3] = [...Array(4 - r).fill(1), ...d];
      const [s0, s1, s2, s3] = [...Array(4 - r).fill(0), ...st];
      let i = 0;
      for (let c0 = 0, o0 = 0; c0 < d0; c0++, o0 += s0) {
        for (let c1 = 0, o1 = o0; c1 < d1; c1++, o1 += s1) {
          for (let c2 = 0, o2 = o1; c2 < d2; c2++, o2 += s2) {
            for (let c3 = 0, o3 = o2; c3 < d3; c3++, o3 += s3) out[i++] = x[o3];
          }
        }
      }
      return;
    }
    for (let i = 0; i < out.length; i++) {
      let rem = i, off = 0;
      for (let k = r - 1; k >= 0; k--) {
        const c = rem % d[k];
        rem = (rem - c) / d[k];
        off += c * st[k];
      }
      out[i] = x[off];
    }
  },
  gpu(info, p) {
    const { d, st } = permGeometry(info.inputs[0].shape, p.perm);
    const pad = 6 - d.length;
    const n = sizeOf(d);
    const ty = info.inputs[0].dtype === "i32" ? "i32" : "f32";
    return {
      kernels: [{
        code: `
@group(0) @binding(0) var<storage, read> x: array<${ty}>;
@group(0) @binding(1) var<storage, read_write> out: array<${ty}>;
struct U { n: u32, ${DIMS6}, ${STRIDES6("s")} }
@group(0) @binding(2) var<uniform> u: U;
${MAIN_1D()} {
  ${LINEAR_INDEX()}
  if (i >= u.n) { return; }
  ${UNRAVEL6}
  out[i] = x[${OFFSET6("s")}];
}`,
        bind: [{ in: 0 }, { out: 0 }],
        uniform: packUniform([n, ...Array(pad).fill(1), ...d, ...Array(pad).fill(0), ...st]),
        workgroups: grid1d(n),
      }],
    };
  },
  backward(c, [dy]) {
    const inv = new Array<number>(c.params.perm.length);
    c.params.perm.forEach((p, k) => (inv[p] = k));
    return [permute(dy as Tensor, inv)];
  },
};

/** Permutes axes: `out.shape[k] = x.shape[perm[k]]`. */
export function permute(x: Tensor, perm: number[]): Tensor {
  return apply(PERMUTE, [x], { perm })[0];
}

/** Swaps two axes (negative axes count from the end). */
export function transpose(x: Tensor, a: number, b: number): Tensor {
  const r = x.rank;
  const perm = Array.from({ length: r }, (_, k) => k);
  const i = a < 0 ? a + r : a, j = b < 0 ? b + r : b;
  [perm[i], perm[j]] = [perm[j], perm[i]];
  return permute(x, perm);
}
