/**
 * `slice(x, axis, start, end)` and `concat(xs, axis)` for f32 and i32
 * tensors (token buffers and the KV cache use both). Backward: slice pads
 * `dy` with zeros back into x's shape ({@linkcode SLICE_PAD}); concat slices
 * `dy` into its pieces.
 *
 * Every kernel views a tensor as `[O, D, I]` around the axis: O the product
 * of the dims before it, D the axis, I the product of the dims after it.
 *
 * @example
 * ```ts
 * import { concat, slice, tensor } from "@webseq/webseq";
 * const x = tensor([0, 1, 2, 3, 4, 5], [2, 3]);
 * console.log(await slice(x, 1, 1, 3).toArray()); // [1, 2, 4, 5]
 * console.log((concat([x, x], 0)).shape); // [4, 3]
 * ```
 *
 * @module
 */
import { apply, type Tensor } from "../tensor/tensor.ts";
import {
  type DType,
  fmtShape,
  type OpDef,
  packUniform,
  type Shape,
  type TensorInfo,
} from "../tensor/types.ts";
import { grid1d, LINEAR_INDEX, MAIN_1D } from "./_wgsl.ts";
import type { OpEntry } from "./registry.ts";

/** Parameters of {@linkcode SLICE}: `[start, end)` along `axis` (normalised, non-negative). */
export interface SliceParams {
  /** The axis. */
  axis: number;
  /** First index kept. */
  start: number;
  /** One past the last index kept. */
  end: number;
}

/** Parameters of {@linkcode SLICE_PAD}: place the input at `start` of an axis of length `size`. */
export interface SlicePadParams {
  /** The axis. */
  axis: number;
  /** Where the input starts along the axis. */
  start: number;
  /** Length of the axis in the output. */
  size: number;
}

/** Parameters of {@linkcode CONCAT}. */
export interface ConcatParams {
  /** The axis (normalised, non-negative). */
  axis: number;
}

/** `[O, D, I]` of `shape` around `axis`. */
function around(shape: Shape, axis: number): [number, number, number] {
  let O = 1, I = 1;
  for (let k = 0; k < axis; k++) O *= shape[k];
  for (let k = axis + 1; k < shape.length; k++) I *= shape[k];
  return [O, shape[axis], I];
}

function wgslType(dtype: DType): string {
  return dtype === "i32" ? "i32" : "f32";
}

function checkAxis(what: string, x: TensorInfo, axis: number): void {
  if (!Number.isInteger(axis) || axis < 0 || axis >= x.shape.length) {
    throw new RangeError(`Cannot ${what}: axis ${axis} is out of range for ${fmtShape(x.shape)}`);
  }
}

/**
 * A kernel copying a `[O, Dx, I]` block into a `[O, Dy, I]` one: thread `i`
 * of the destination reads source row `j − off` (zero outside the source), or
 * with `scatter` thread `i` of the source writes destination row `j + off`.
 */
function copyKernel(ty: string, scatter: boolean): string {
  const body = scatter
    ? `let o = i / (u.Dx * u.I);
  let j = (i / u.I) % u.Dx;
  out[(o * u.Dy + j + u.off) * u.I + i % u.I] = x[i];`
    : `let o = i / (u.Dy * u.I);
  let j = (i / u.I) % u.Dy;
  if (j < u.off || j >= u.off + u.Dx) { out[i] = ${ty}(0); return; }
  out[i] = x[(o * u.Dx + j - u.off) * u.I + i % u.I];`;
  return `
@group(0) @binding(0) var<storage, read> x: array<${ty}>;
@group(0) @binding(1) var<storage, read_write> out: array<${ty}>;
struct U { n: u32, Dx: u32, Dy: u32, I: u32, off: u32 }
@group(0) @binding(2) var<uniform> u: U;
${MAIN_1D()} {
  ${LINEAR_INDEX()}
  if (i >= u.n) { return; }
  ${body}
}`;
}

/** Slice along one axis: output `x[..., start:end, ...]`. */
export const SLICE: OpDef<SliceParams> = {
  name: "slice",
  outputs([x], p) {
    checkAxis("slice", x, p.axis);
    const D = x.shape[p.axis];
    if (
      !(Number.isInteger(p.start) && Number.isInteger(p.end) && 0 <= p.start && p.start <= p.end &&
        p.end <= D)
    ) {
      throw new RangeError(
        `Cannot slice ${
          fmtShape(x.shape)
        }: [${p.start}, ${p.end}) is outside axis ${p.axis} of length ${D}`,
      );
    }
    const shape = [...x.shape];
    shape[p.axis] = p.end - p.start;
    return [{ shape, dtype: x.dtype }];
  },
  cpu([x], [out], info, p) {
    const [O, D, I] = around(info.inputs[0].shape, p.axis);
    const L = p.end - p.start;
    for (let o = 0; o < O; o++) {
      out.set(x.subarray((o * D + p.start) * I, (o * D + p.end) * I), o * L * I);
    }
  },
  gpu(info, p) {
    // a slice is the pad kernel read backwards: source rows [start, end) of D
    const [O, D, I] = around(info.inputs[0].shape, p.axis);
    const L = p.end - p.start;
    const n = O * L * I;
    return {
      kernels: [{
        code: `
@group(0) @binding(0) var<storage, read> x: array<${wgslType(info.inputs[0].dtype)}>;
@group(0) @binding(1) var<storage, read_write> out: array<${wgslType(info.inputs[0].dtype)}>;
struct U { n: u32, D: u32, L: u32, I: u32, start: u32 }
@group(0) @binding(2) var<uniform> u: U;
${MAIN_1D()} {
  ${LINEAR_INDEX()}
  if (i >= u.n) { return; }
  let o = i / (u.L * u.I);
  let j = (i / u.I) % u.L;
  out[i] = x[(o * u.D + j + u.start) * u.I + i % u.I];
}`,
        bind: [{ in: 0 }, { out: 0 }],
        uniform: packUniform([n, D, L, I, p.start]),
        workgroups: grid1d(n),
      }],
    };
  },
  backward(c, [dy]) {
    const x = c.inputs[0] as Tensor;
    const { axis, start } = c.params;
    return [apply(SLICE_PAD, [dy as Tensor], { axis, start, size: x.shape[axis] })[0]];
  },
};

/** Slice backward: zeros of length `size` along `axis` with the input placed at `start`. */
export const SLICE_PAD: OpDef<SlicePadParams> = {
  name: "slicePad",
  outputs([x], p) {
    checkAxis("slicePad", x, p.axis);
    if (!(p.start >= 0 && p.start + x.shape[p.axis] <= p.size)) {
      throw new RangeError(
        `Cannot slicePad ${
          fmtShape(x.shape)
        } at ${p.start} into length ${p.size} on axis ${p.axis}`,
      );
    }
    const shape = [...x.shape];
    shape[p.axis] = p.size;
    return [{ shape, dtype: x.dtype }];
  },
  cpu([x], [out], info, p) {
    const [O, L, I] = around(info.inputs[0].shape, p.axis);
    out.fill(0);
    for (let o = 0; o < O; o++) {
      out.set(x.subarray(o * L * I, (o + 1) * L * I), (o * p.size + p.start) * I);
    }
  },
  gpu(info, p) {
    const [O, L, I] = around(info.inputs[0].shape, p.axis);
    const n = O * p.size * I;
    return {
      kernels: [{
        code: copyKernel(wgslType(info.inputs[0].dtype), false),
        bind: [{ in: 0 }, { out: 0 }],
        uniform: packUniform([n, L, p.size, I, p.start]),
        workgroups: grid1d(n),
      }],
    };
  },
  backward(c, [dy]) {
    const { axis, start } = c.params;
    const L = (c.inputs[0] as Tensor).shape[axis];
    return [apply(SLICE, [dy as Tensor], { axis, start, end: start + L })[0]];
  },
};

/** Concatenation along one axis; all inputs share the other dims and the dtype. */
export const CONCAT: OpDef<ConcatParams> = {
  name: "concat",
  outputs(xs, p) {
    if (xs.length === 0) throw new TypeError("Cannot concat: no tensors");
    const first = xs[0];
    checkAxis("concat", first, p.axis);
    let total = 0;
    for (const x of xs) {
      if (
        x.dtype !== first.dtype || x.shape.length !== first.shape.length ||
        x.shape.some((d, k) => k !== p.axis && d !== first.shape[k])
      ) {
        throw new TypeError(
          `Cannot concat on axis ${p.axis}: ${
            xs.map((t) => `${fmtShape(t.shape)} ${t.dtype}`).join(", ")
          }`,
        );
      }
      total += x.shape[p.axis];
    }
    const shape = [...first.shape];
    shape[p.axis] = total;
    return [{ shape, dtype: first.dtype }];
  },
  cpu(xs, [out], info, p) {
    const [O, Dy, I] = around(info.outputs[0].shape, p.axis);
    let off = 0;
    xs.forEach((x, k) => {
      const L = info.inputs[k].shape[p.axis];
      for (let o = 0; o < O; o++) {
        out.set(x.subarray(o * L * I, (o + 1) * L * I), (o * Dy + off) * I);
      }
      off += L;
    });
  },
  gpu(info, p) {
    // one copy kernel per input, each writing its own rows of the output
    const [O, Dy, I] = around(info.outputs[0].shape, p.axis);
    const code = copyKernel(wgslType(info.outputs[0].dtype), true);
    let off = 0;
    return {
      kernels: info.inputs.map((x, k) => {
        const L = x.shape[p.axis];
        const n = O * L * I;
        const kernel = {
          code,
          bind: [{ in: k }, { out: 0 }],
          uniform: packUniform([n, L, Dy, I, off]),
          workgroups: grid1d(n),
        };
        off += L;
        return kernel;
      }),
    };
  },
  backward(c, [dy]) {
    const { axis } = c.params;
    let off = 0;
    return (c.inputs as Tensor[]).map((x) => {
      const start = off;
      off += x.shape[axis];
      if (!x.requiresGrad) return null;
      return apply(SLICE, [dy as Tensor], { axis, start, end: off })[0];
    });
  },
};

function normAxis(what: string, shape: Shape, axis: number): number {
  const r = shape.length;
  const a = axis < 0 ? axis + r : axis;
  if (!Number.isInteger(a) || a < 0 || a >= r) {
    throw new RangeError(`Cannot ${what}: axis ${axis} is out of range for ${fmtShape(shape)}`);
  }
  return a;
}

/**
 * `x[..., start:end, ...]` along `axis` (negative axis and indices count from
 * the end; RangeError outside the axis). Works for f32 and i32.
 */
export function slice(x: Tensor, axis: number, start: number, end: number): Tensor {
  const a = normAxis("slice", x.shape, axis);
  const D = x.shape[a];
  const s = start < 0 ? start + D : start, e = end < 0 ? end + D : end;
  return apply(SLICE, [x], { axis: a, start: s, end: e })[0];
}

/** Concatenates tensors (same dtype, f32 or i32; same other dims) along `axis`. */
export function concat(xs: Tensor[], axis: number): Tensor {
  if (xs.length === 0) throw new TypeError("Cannot concat: no tensors");
  return apply(CONCAT, xs, { axis: normAxis("concat", xs[0].shape, axis) })[0];
}

/** Registry entries of this file (see tests/ops_registry_test.ts). */
export const SLICE_ENTRIES: OpEntry[] = [
  {
    op: SLICE,
    cases: [
      { inputs: [{ shape: [3, 5] }], params: { axis: 1, start: 1, end: 4 } },
      { inputs: [{ shape: [2, 3, 4] }], params: { axis: 0, start: 1, end: 2 } },
      { inputs: [{ shape: [2, 7, 3] }], params: { axis: 1, start: 0, end: 7 } },
      { inputs: [{ shape: [1] }], params: { axis: 0, start: 0, end: 1 } },
      { inputs: [{ shape: [300, 3] }], params: { axis: 0, start: 17, end: 290 } },
      {
        inputs: [{ shape: [2, 9, 3], dtype: "i32", intMax: 1000 }],
        params: { axis: 1, start: 2, end: 5 },
      },
    ],
  },
  {
    op: SLICE_PAD,
    cases: [
      { inputs: [{ shape: [3, 2] }], params: { axis: 1, start: 1, size: 5 } },
      { inputs: [{ shape: [1, 3, 4] }], params: { axis: 0, start: 1, size: 2 } },
      {
        inputs: [{ shape: [2, 3], dtype: "i32", intMax: 50 }],
        params: { axis: 0, start: 3, size: 5 },
      },
    ],
  },
  {
    op: CONCAT,
    cases: [
      { inputs: [{ shape: [2, 3] }, { shape: [2, 4] }], params: { axis: 1 } },
      { inputs: [{ shape: [1, 3] }, { shape: [2, 3] }, { shape: [1, 3] }], params: { axis: 0 } },
      {
        label: "KV cache [B, H, T, D] on axis 2",
        inputs: [{ shape: [2, 2, 5, 3] }, { shape: [2, 2, 1, 3] }],
        params: { axis: 2 },
      },
      { inputs: [{ shape: [1] }], params: { axis: 0 } },
      {
        inputs: [{ shape: [2, 3], dtype: "i32", intMax: 100 }, {
          shape: [2, 1],
          dtype: "i32",
          intMax: 100,
        }],
        params: { axis: 1 },
      },
      { inputs: [{ shape: [2, 0, 3] }, { shape: [2, 130, 3] }], params: { axis: 1 } },
    ],
  },
];
