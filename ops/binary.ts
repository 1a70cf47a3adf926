/**
 * Broadcasting binary ops: `add`, `sub`, `mul`, `div` (NumPy broadcasting
 * rules, rank ≤ 6), and `equal` (1 where equal, no gradient). Backward rules
 * reduce the gradient back to each input's shape with `sumTo`.
 *
 * @module
 */
import { apply, type Tensor } from "../tensor/tensor.ts";
import { fmtShape, type OpDef, packUniform, type Shape } from "../tensor/types.ts";
import { DIMS6, grid1d, LINEAR_INDEX, MAIN_1D, OFFSET6, STRIDES6, UNRAVEL6 } from "./_wgsl.ts";
import { sumTo } from "./reduce.ts";
import { mulSame, neg } from "./elementwise.ts";

/** Binary op kinds. */
export type BinaryKind = "add" | "sub" | "mul" | "div" | "eq";

/** Parameters of the binary op. */
export interface BinaryParams {
  /** Which operation. */
  kind: BinaryKind;
}

/** The broadcast shape of two shapes, or a TypeError naming both. */
export function broadcastShapes(a: Shape, b: Shape, what = "broadcast"): number[] {
  const r = Math.max(a.length, b.length);
  const out = new Array<number>(r);
  for (let k = 0; k < r; k++) {
    const da = a[a.length - r + k] ?? 1;
    const db = b[b.length - r + k] ?? 1;
    if (da !== db && da !== 1 && db !== 1) {
      throw new TypeError(
        `Cannot ${what}: shapes ${fmtShape(a)} and ${fmtShape(b)} do not broadcast`,
      );
    }
    out[k] = da === 1 ? db : da;
  }
  return out;
}

/** Strides of `shape` read as `out` (0 on broadcast dims), left-padded to `out`'s rank. */
function bstrides(shape: Shape, out: Shape): number[] {
  const r = out.length, pad = r - shape.length;
  const st = new Array<number>(r);
  let s = 1;
  for (let k = r - 1; k >= 0; k--) {
    const d = k < pad ? 1 : shape[k - pad];
    st[k] = d === 1 && out[k] !== 1 ? 0 : s;
    s *= d;
  }
  return st;
}

/** Merges adjacent dims that both operands traverse contiguously. */
function collapse(out: number[], sa: number[], sb: number[]): [number[], number[], number[]] {
  const d: number[] = [], a: number[] = [], b: number[] = [];
  for (let k = 0; k < out.length; k++) {
    if (out[k] === 1) continue;
    const last = d.length - 1;
    if (
      last >= 0 && a[last] === sa[k] * out[k] && b[last] === sb[k] * out[k]
    ) {
      d[last] *= out[k];
      a[last] = sa[k];
      b[last] = sb[k];
    } else {
      d.push(out[k]);
      a.push(sa[k]);
      b.push(sb[k]);
    }
  }
  return [d, a, b];
}

const WGSL_EXPR: Record<BinaryKind, string> = {
  add: "x + y",
  sub: "x - y",
  mul: "x * y",
  div: "x / y",
  eq: "select(0.0, 1.0, x == y)",
};
const CPU_FN: Record<BinaryKind, (x: number, y: number) => number> = {
  add: (x, y) => x + y,
  sub: (x, y) => x - y,
  mul: (x, y) => x * y,
  div: (x, y) => x / y,
  eq: (x, y) => (x === y ? 1 : 0),
};

function kernel(kind: BinaryKind): string {
  return `
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
struct U { n: u32, ${DIMS6}, ${STRIDES6("a")}, ${STRIDES6("b")} }
@group(0) @binding(3) var<uniform> u: U;
${MAIN_1D()} {
  ${LINEAR_INDEX()}
  if (i >= u.n) { return; }
  ${UNRAVEL6}
  let x = a[${OFFSET6("a")}];
  let y = b[${OFFSET6("b")}];
  out[i] = ${WGSL_EXPR[kind]};
}`;
}

/** The broadcasting binary op. */
export const BINARY: OpDef<BinaryParams> = {
  name: "binary",
  overwrites: true,
  outputs([a, b], p) {
    if (a.dtype === "i32" || b.dtype === "i32") {
      throw new TypeError(`Cannot ${p.kind}: needs float inputs`);
    }
    return [{ shape: broadcastShapes(a.shape, b.shape, p.kind), dtype: a.dtype }];
  },
  cpu([a, b], [out], info, p) {
    const os = info.outputs[0].shape as number[];
    const [d, sa, sb] = collapse(
      os,
      bstrides(info.inputs[0].shape, os),
      bstrides(info.inputs[1].shape, os),
    );
    const f = CPU_FN[p.kind];
    const r = d.length;
    if (r <= 2) {
      // fast path (same shapes, a row vector against a matrix, …): two plain loops
      const [d0, d1] = r === 2 ? d : [1, d[0] ?? 1];
      const [a0, a1] = r === 2 ? sa : [0, sa[0] ?? 0];
      const [b0, b1] = r === 2 ? sb : [0, sb[0] ?? 0];
      let i = 0;
      for (let c0 = 0; c0 < d0; c0++) {
        let ia = c0 * a0, ib = c0 * b0;
        // one loop per kind: no call per element
        switch (p.kind) {
          case "add":
            for (let c1 = 0; c1 < d1; c1++, ia += a1, ib += b1) out[i++] = a[ia] + b[ib];
            break;
          case "sub":
            for (let c1 = 0; c1 < d1; c1++, ia += a1, ib += b1) out[i++] = a[ia] - b[ib];
            break;
          case "mul":
            for (let c1 = 0; c1 < d1; c1++, ia += a1, ib += b1) out[i++] = a[ia] * b[ib];
            break;
          default:
            for (let c1 = 0; c1 < d1; c1++, ia += a1, ib += b1) out[i++] = f(a[ia], b[ib]);
        }
      }
      return;
    }
    for (let i = 0; i < out.length; i++) {
      let rem = i, ia = 0, ib = 0;
      for (let k = r - 1; k >= 0; k--) {
        const c = rem % d[k];
        rem = (rem - c) / d[k];
        ia += c * sa[k];
        ib += c * sb[k];
      }
      out[i] = f(a[ia], b[ib]);
    }
  },
  gpu(info, p) {
    const os = info.outputs[0].shape as number[];
    const [d, sa, sb] = collapse(
      os,
      bstrides(info.inputs[0].shape, os),
      bstrides(info.inputs[1].shape, os),
    );
    if (d.length > 6) throw new TypeError(`Cannot ${p.kind}: rank above 6 after collapsing`);
    const pad = 6 - d.length;
    const n = os.reduce((x, y) => x * y, 1);
    return {
      kernels: [{
        code: kernel(p.kind),
        bind: [{ in: 0 }, { in: 1 }, { out: 0 }],
        uniform: packUniform([
          n,
          ...Array(pad).fill(1),
          ...d,
          ...Array(pad).fill(0),
          ...sa,
          ...Array(pad).fill(0),
          ...sb,
        ]),
        workgroups: grid1d(n),
      }],
    };
  },
  backward(c, [dyAny]) {
    const dy = dyAny as Tensor;
    const a = c.inputs[0] as Tensor, b = c.inputs[1] as Tensor;
    switch (c.params.kind) {
      case "add":
        return [sumTo(dy, a.shape), sumTo(dy, b.shape)];
      case "sub":
        return [sumTo(dy, a.shape), b.requiresGrad ? neg(sumTo(dy, b.shape)) : null];
      case "mul":
        return [
          a.requiresGrad ? sumTo(mul(dy, b), a.shape) : null,
          b.requiresGrad ? sumTo(mul(dy, a), b.shape) : null,
        ];
      case "div": {
        const da = a.requiresGrad ? sumTo(div(dy, b), a.shape) : null;
        let db: Tensor | null = null;
        if (b.requiresGrad) {
          // d(a/b)/db = -a/b² = -out/b
          const y = c.outputs[0] as Tensor;
          db = neg(sumTo(div(mulSame(dy, y), b), b.shape));
        }
        return [da, db];
      }
      default:
        return [null, null];
    }
  },
};

/** a + b (broadcasting). */
export function add(a: Tensor, b: Tensor): Tensor {
  return apply(BINARY, [a, b], { kind: "add" })[0];
}
/** a − b (broadcasting). */
export function sub(a: Tensor, b: Tensor): Tensor {
  return apply(BINARY, [a, b], { kind: "sub" })[0];
}
/** a · b (broadcasting). */
export function mul(a: Tensor, b: Tensor): Tensor {
  return apply(BINARY, [a, b], { kind: "mul" })[0];
}
/** a / b (broadcasting). */
export function div(a: Tensor, b: Tensor): Tensor {
  return apply(BINARY, [a, b], { kind: "div" })[0];
}
/** 1 where a = b, else 0 (broadcasting; no gradient). */
export function equal(a: Tensor, b: Tensor): Tensor {
  return apply(BINARY, [a, b], { kind: "eq" })[0];
}
