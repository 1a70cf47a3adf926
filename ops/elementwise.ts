/**
 * Elementwise maps: `neg`, `exp`, `log`, `sqrt`, `relu`, `gelu` (exact, erf),
 * `silu`, `scale` (x·a), `addScalar` (x+a), and the fused derivative maps that
 * their backward rules use. Each entry keeps its CPU function, its WGSL
 * expression and its backward rule on adjacent lines.
 *
 * @module
 */
import { apply, type Tensor } from "../tensor/tensor.ts";
import { type CpuArray, fmtShape, type OpDef, packUniform, sizeOf } from "../tensor/types.ts";
import { erfApprox, grid1d, LINEAR_INDEX, MAIN_1D, WGSL_ERF, WGSL_GELU_GRAD } from "./_wgsl.ts";
import { geluF32, geluGradF32, siluF32, siluGradF32 } from "./_cpu_threads_kernels.ts";
import { expF64 } from "./_exp.ts";

/** Parameter of the scalar maps. */
export interface ScalarParams {
  /** The scalar `a`. */
  a: number;
}

const SQRT1_2 = Math.SQRT1_2;
const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);

/** GELU (exact): x·Φ(x). */
export function geluScalar(x: number): number {
  return 0.5 * x * (1 + erfApprox(x * SQRT1_2));
}

/** d/dx GELU: Φ(x) + x·φ(x). */
export function geluGradScalar(x: number): number {
  return 0.5 * (1 + erfApprox(x * SQRT1_2)) + x * INV_SQRT_2PI * expF64(-0.5 * x * x);
}

/** σ(x) with {@linkcode expF64} (a few ulp from `Math.exp`, several times faster). */
function sigmoid(x: number): number {
  return 1 / (1 + expF64(-x));
}

/**
 * The CPU loop of an elementwise op: `out[i]` from the inputs' element i
 * (and the scalar `a`). Each op writes its own loop: one loop shared by
 * every op through a callback ran at 13–60 ns an element (a megamorphic call,
 * and boxed arguments before), against 1–5 ns for the op's own loop.
 */
type MapLoop = (ins: CpuArray[], out: CpuArray, a: number) => void;

/**
 * Builds an elementwise op over same-shape inputs: `cpu` is its CPU loop,
 * `wgsl` the same element as a WGSL expression over `x0`, `x1`, … and `a`.
 */
function mapOp(
  name: string,
  arity: number,
  cpu: MapLoop,
  wgsl: string,
  backward?: OpDef<ScalarParams>["backward"],
  prelude = "",
): OpDef<ScalarParams> {
  const bindings = Array.from(
    { length: arity },
    (_, k) => `@group(0) @binding(${k}) var<storage, read> x${k}_buf: array<f32>;`,
  ).join("\n");
  const loads = Array.from({ length: arity }, (_, k) => `let x${k} = x${k}_buf[i];`).join(" ");
  const code = `${prelude}
${bindings}
@group(0) @binding(${arity}) var<storage, read_write> out: array<f32>;
struct U { n: u32, a: f32 }
@group(0) @binding(${arity + 1}) var<uniform> u: U;
${MAIN_1D()} {
  ${LINEAR_INDEX()}
  if (i >= u.n) { return; }
  let a = u.a;
  ${loads}
  out[i] = ${wgsl};
}`;
  return {
    name,
    overwrites: true, // every loop writes out[i] for all i
    outputs(inputs) {
      for (const t of inputs) {
        if (t.dtype === "i32") throw new TypeError(`Cannot ${name}: needs float inputs`);
        if (fmtShape(t.shape) !== fmtShape(inputs[0].shape)) {
          throw new TypeError(
            `Cannot ${name}: shapes differ (${inputs.map((s) => fmtShape(s.shape)).join(" vs ")})`,
          );
        }
      }
      return [{ shape: inputs[0].shape, dtype: inputs[0].dtype }];
    },
    cpu(ins, [out], _info, p) {
      cpu(ins, out, p.a);
    },
    gpu(info, p) {
      const n = sizeOf(info.outputs[0].shape);
      return {
        kernels: [{
          code,
          bind: [...Array.from({ length: arity }, (_, k) => ({ in: k })), { out: 0 }],
          uniform: packUniform([n], [p.a]),
          workgroups: grid1d(n),
        }],
      };
    },
    backward,
  };
}

/** The ops of this file, for the registry. */
export const NEG: OpDef<ScalarParams> = mapOp(
  "neg",
  1,
  ([x], out) => {
    for (let i = 0; i < out.length; i++) out[i] = -x[i];
  },
  "-x0",
  (_c, [dy]) => [neg(dy)],
);
/** exp(x); backward dy·y. */
export const EXP: OpDef<ScalarParams> = mapOp(
  "exp",
  1,
  ([x], out) => {
    for (let i = 0; i < out.length; i++) out[i] = Math.exp(x[i]);
  },
  "exp(x0)",
  (c, [dy]) => [mulSame(dy, c.outputs[0] as Tensor)],
);
/** log(x); backward dy/x. */
export const LOG: OpDef<ScalarParams> = mapOp(
  "log",
  1,
  ([x], out) => {
    for (let i = 0; i < out.length; i++) out[i] = Math.log(x[i]);
  },
  "log(x0)",
  (c, [dy]) => [apply(DIV_SAME, [dy, c.inputs[0] as Tensor], { a: 0 })[0]],
);
/** sqrt(x); backward dy·0.5/y. */
export const SQRT: OpDef<ScalarParams> = mapOp(
  "sqrt",
  1,
  ([x], out) => {
    for (let i = 0; i < out.length; i++) out[i] = Math.sqrt(x[i]);
  },
  "sqrt(x0)",
  (c, [dy]) => [apply(HALF_DIV, [dy, c.outputs[0] as Tensor], { a: 0 })[0]],
);
/** max(x, 0); backward dy·[x > 0]. */
export const RELU: OpDef<ScalarParams> = mapOp(
  "relu",
  1,
  ([x], out) => {
    for (let i = 0; i < out.length; i++) out[i] = x[i] > 0 ? x[i] : 0;
  },
  "max(x0, 0.0)",
  (c, [dy]) => [apply(RELU_GRAD, [c.inputs[0] as Tensor, dy], { a: 0 })[0]],
);
/** Exact GELU; backward through {@linkcode GELU_GRAD}. */
export const GELU: OpDef<ScalarParams> = mapOp(
  "gelu",
  1,
  ([x], out) => {
    // f32: the same arithmetic in WebAssembly on the CPU threads (ops/_cpu_threads_kernels.ts)
    if (x instanceof Float32Array && out instanceof Float32Array && geluF32(x, out)) return;
    for (let i = 0; i < out.length; i++) out[i] = geluScalar(x[i]);
  },
  "0.5 * x0 * (1.0 + erf_f(x0 * 0.70710678118654752))",
  (c, [dy]) => [apply(GELU_GRAD, [c.inputs[0] as Tensor, dy], { a: 0 })[0]],
  WGSL_ERF,
);
/** SiLU x·σ(x); backward through {@linkcode SILU_GRAD}. */
export const SILU: OpDef<ScalarParams> = mapOp(
  "silu",
  1,
  ([x], out) => {
    // f32: the same bits in WebAssembly on the CPU threads (ops/_cpu_threads_kernels.ts)
    if (x instanceof Float32Array && out instanceof Float32Array && siluF32(x, out)) return;
    for (let i = 0; i < out.length; i++) out[i] = x[i] * sigmoid(x[i]);
  },
  "x0 / (1.0 + exp(-x0))",
  (c, [dy]) => [apply(SILU_GRAD, [c.inputs[0] as Tensor, dy], { a: 0 })[0]],
);
/** x·a; backward dy·a. */
export const SCALE: OpDef<ScalarParams> = mapOp(
  "scale",
  1,
  ([x], out, a) => {
    for (let i = 0; i < out.length; i++) out[i] = x[i] * a;
  },
  "x0 * a",
  (c, [dy]) => [scale(dy, c.params.a)],
);
/** x+a; backward dy. */
export const ADD_SCALAR: OpDef<ScalarParams> = mapOp(
  "addScalar",
  1,
  ([x], out, a) => {
    for (let i = 0; i < out.length; i++) out[i] = x[i] + a;
  },
  "x0 + a",
  (_c, [dy]) => [scale(dy, 1)],
);

/** GELU'(x)·dy (inputs x, dy). */
export const GELU_GRAD: OpDef<ScalarParams> = mapOp(
  "geluGrad",
  2,
  ([x, dy], out) => {
    // as GELU's
    if (
      x instanceof Float32Array && dy instanceof Float32Array && out instanceof Float32Array &&
      geluGradF32(x, dy, out)
    ) return;
    for (let i = 0; i < out.length; i++) out[i] = dy[i] * geluGradScalar(x[i]);
  },
  "x1 * gelu_grad_f(x0)",
  undefined,
  WGSL_GELU_GRAD,
);
/** SiLU'(x)·dy (inputs x, dy). */
export const SILU_GRAD: OpDef<ScalarParams> = mapOp("siluGrad", 2, ([x, dy], out) => {
  if (
    x instanceof Float32Array && dy instanceof Float32Array && out instanceof Float32Array &&
    siluGradF32(x, dy, out)
  ) return;
  for (let i = 0; i < out.length; i++) {
    const v = x[i], s = sigmoid(v);
    out[i] = dy[i] * s * (1 + v * (1 - s));
  }
}, "x1 * (1.0 / (1.0 + exp(-x0))) * (1.0 + x0 * (1.0 - 1.0 / (1.0 + exp(-x0))))");
/** [x > 0]·dy (inputs x, dy). */
export const RELU_GRAD: OpDef<ScalarParams> = mapOp(
  "reluGrad",
  2,
  ([x, dy], out) => {
    for (let i = 0; i < out.length; i++) out[i] = x[i] > 0 ? dy[i] : 0;
  },
  "select(0.0, x1, x0 > 0.0)",
);
/** x0·x1, same shapes (no broadcasting; cheaper than `mul`). */
export const MUL_SAME: OpDef<ScalarParams> = mapOp(
  "mulSame",
  2,
  ([x, y], out) => {
    for (let i = 0; i < out.length; i++) out[i] = x[i] * y[i];
  },
  "x0 * x1",
  (c, [dy]) => [mulSame(dy, c.inputs[1] as Tensor), mulSame(dy, c.inputs[0] as Tensor)],
);
/** x0/x1, same shapes (used by log's backward). */
export const DIV_SAME: OpDef<ScalarParams> = mapOp("divSame", 2, ([x, y], out) => {
  for (let i = 0; i < out.length; i++) out[i] = x[i] / y[i];
}, "x0 / x1");
/** 0.5·x0/x1 (sqrt's backward). */
export const HALF_DIV: OpDef<ScalarParams> = mapOp(
  "halfDiv",
  2,
  ([x, y], out) => {
    for (let i = 0; i < out.length; i++) out[i] = 0.5 * x[i] / y[i];
  },
  "0.5 * x0 / x1",
);

/** −x. */
export function neg(x: Tensor): Tensor {
  return apply(NEG, [x], { a: 0 })[0];
}
/** eˣ. */
export function exp(x: Tensor): Tensor {
  return apply(EXP, [x], { a: 0 })[0];
}
/** Natural log. */
export function log(x: Tensor): Tensor {
  return apply(LOG, [x], { a: 0 })[0];
}
/** Square root. */
export function sqrt(x: Tensor): Tensor {
  return apply(SQRT, [x], { a: 0 })[0];
}
/** max(x, 0). */
export function relu(x: Tensor): Tensor {
  return apply(RELU, [x], { a: 0 })[0];
}
/** Exact GELU, x·Φ(x) with erf (torch's default `gelu`). */
export function gelu(x: Tensor): Tensor {
  return apply(GELU, [x], { a: 0 })[0];
}
/** SiLU (swish), x·σ(x). */
export function silu(x: Tensor): Tensor {
  return apply(SILU, [x], { a: 0 })[0];
}
/** x·a for a number a. */
export function scale(x: Tensor, a: number): Tensor {
  return apply(SCALE, [x], { a })[0];
}
/** x + a for a number a. */
export function addScalar(x: Tensor, a: number): Tensor {
  return apply(ADD_SCALAR, [x], { a })[0];
}
/** x·y for tensors of the same shape. */
export function mulSame(x: Tensor, y: Tensor): Tensor {
  return apply(MUL_SAME, [x, y], { a: 0 })[0];
}

/** Elementwise ops with their gradient-check domains (inputs drawn from it). */
export const ELEMENTWISE_OPS: { op: OpDef<ScalarParams>; arity: number; min?: number }[] = [
  { op: NEG, arity: 1 },
  { op: EXP, arity: 1 },
  { op: LOG, arity: 1, min: 0.2 },
  { op: SQRT, arity: 1, min: 0.2 },
  { op: RELU, arity: 1 },
  { op: GELU, arity: 1 },
  { op: SILU, arity: 1 },
  { op: SCALE, arity: 1 },
  { op: ADD_SCALAR, arity: 1 },
  { op: GELU_GRAD, arity: 2 },
  { op: SILU_GRAD, arity: 2 },
  { op: RELU_GRAD, arity: 2 },
  { op: MUL_SAME, arity: 2 },
  { op: DIV_SAME, arity: 2, min: 0.2 },
  { op: HALF_DIV, arity: 2, min: 0.2 },
];
