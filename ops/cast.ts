/**
 * `cast(x, dtype)`: converts between f32 and f16 (the mixed-precision
 * training mode casts a Linear layer's input and weight to f16 for
 * {@linkcode matmulF16}). The backward casts the gradient back to the input's
 * dtype, as torch's `Tensor.to` does.
 *
 * Rounding: to nearest, ties to even (IEEE `roundTiesToEven`, what
 * `Float16Array` stores do); magnitudes of 65520 and more become ±Infinity
 * and NaN stays NaN, so an overflow reaches the loss scaler
 * (optim/grad_scaler.ts) as a non-finite gradient norm. WGSL lets `f16(v)`
 * round either way for values between two f16 and leaves out-of-range
 * values undefined, so the kernel turns magnitudes ≥ 65520 into an f32
 * infinity first (converting ±inf and NaN is exact on IEEE hardware), and
 * the GPU may differ from the CPU by one f16 ulp (2⁻¹¹ relative).
 *
 * f16 tensors run on WebGPU only where the device has `shader-f16`
 * (`GpuBackend.hasF16`); the CPU stores them in `Float16Array`.
 *
 * @example
 * ```ts
 * import { cast, tensor } from "@webseq/webseq";
 * const h = cast(tensor([1 / 3, 70000], [2]), "f16");
 * console.log(h.dtype, await h.toArray()); // "f16" [0.333251953125, Infinity]
 * ```
 *
 * @module
 */
import { apply, type Tensor } from "../tensor/tensor.ts";
import { type DType, type OpDef, packUniform, sizeOf } from "../tensor/types.ts";
import type { OpEntry } from "./registry.ts";
import { grid1d, LINEAR_INDEX, MAIN_1D } from "./_wgsl.ts";

/** Float dtypes {@linkcode cast} converts between. */
export type CastDType = "f32" | "f16";

/** Parameters of {@linkcode CAST}. */
export interface CastParams {
  /** The output dtype. */
  to: CastDType;
}

/**
 * WGSL: `to_f16(v: f32) -> f16`, round to nearest with the overflow to ±inf
 * and NaN made explicit (WGSL leaves them undefined). Needs `enable f16;`.
 */
export const WGSL_TO_F16: string = `
fn to_f16(v: f32) -> f16 {
  let inf = bitcast<f32>(0x7f800000u | (bitcast<u32>(v) & 0x80000000u));
  return f16(select(v, inf, abs(v) >= 65520.0));
}
fn to_f16v4(v: vec4<f32>) -> vec4<f16> {
  let inf = bitcast<vec4<f32>>(vec4<u32>(0x7f800000u) | (bitcast<vec4<u32>>(v) & vec4<u32>(0x80000000u)));
  return vec4<f16>(select(v, inf, abs(v) >= vec4<f32>(65520.0)));
}`;

/**
 * WGSL: `round_f16(v: f32) -> f32` and `round_f16v4`: `v` rounded to the
 * nearest f16 value (ties to even, f16 subnormals kept, magnitudes ≥ 65520
 * to ±inf, NaN kept), still an f32 — `Math.f16round` of `v`,
 * exact on every input. Written with integer operations, not as
 * `f32(f16(v))`: an NVIDIA H100's Vulkan compiler folded that round trip
 * away (the value came back unrounded), which integer arithmetic does not
 * allow. Values that stay normal f16 ones (2⁻¹⁴ ≤ |v| < 65520, all four for
 * the vec4 form) take 6 integer operations after one range test: the low 13
 * significand bits rounded off, ties to even, a carry moving into the
 * exponent. The rest take `round_f16_any`: `round()` (ties to even) on the
 * subnormal grid of 2⁻²⁴, ±inf from 65520 up, NaN kept. Needs no
 * `enable f16;`.
 */
export const WGSL_ROUND_F16: string = `
fn round_f16_any(v: f32) -> f32 {
  let b = bitcast<u32>(v);
  let s = b & 0x80000000u;
  let a = b ^ s;
  let n = (a + 0xfffu + ((a >> 13u) & 1u)) & 0xffffe000u;
  let d = bitcast<u32>(round(bitcast<f32>(a) * 16777216.0) * 5.9604644775390625e-8);
  let r = select(select(n, d, a < 0x38800000u), 0x7f800000u, a >= 0x477ff000u);
  return select(bitcast<f32>(s | r), v, a > 0x7f800000u);
}
fn round_f16(v: f32) -> f32 {
  let b = bitcast<u32>(v);
  if ((b & 0x7fffffffu) - 0x38800000u < 0x0efff000u) {
    return bitcast<f32>((b + 0xfffu + ((b >> 13u) & 1u)) & 0xffffe000u);
  }
  return round_f16_any(v);
}
fn round_f16v4(v: vec4<f32>) -> vec4<f32> {
  let b = bitcast<vec4<u32>>(v);
  if (all((b & vec4<u32>(0x7fffffffu)) - vec4<u32>(0x38800000u) < vec4<u32>(0x0efff000u))) {
    return bitcast<vec4<f32>>((b + vec4<u32>(0xfffu) + ((b >> vec4<u32>(13u)) & vec4<u32>(1u))) & vec4<u32>(0xffffe000u));
  }
  return vec4<f32>(round_f16_any(v.x), round_f16_any(v.y), round_f16_any(v.z), round_f16_any(v.w));
}`;

function castCode(from: DType, to: DType): string {
  if (from === to) {
    return `
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
struct U { n: u32 }
@group(0) @binding(2) var<uniform> u: U;
${MAIN_1D()} {
  ${LINEAR_INDEX()}
  if (i < u.n) { out[i] = x[i]; }
}`;
  }
  // two elements per thread: f16 moves as vec2<f16> (f16 buffers hold whole 4-byte words)
  if (to === "f16") {
    return `enable f16;
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<vec2<f16>>;
struct U { n: u32 }
@group(0) @binding(2) var<uniform> u: U;
${WGSL_TO_F16}
${MAIN_1D()} {
  ${LINEAR_INDEX()}
  let j = 2u * i;
  if (j >= u.n) { return; }
  let hi = select(0.0, x[min(j + 1u, u.n - 1u)], j + 1u < u.n);
  out[i] = vec2<f16>(to_f16(x[j]), to_f16(hi));
}`;
  }
  return `enable f16;
@group(0) @binding(0) var<storage, read> x: array<vec2<f16>>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
struct U { n: u32 }
@group(0) @binding(2) var<uniform> u: U;
${MAIN_1D()} {
  ${LINEAR_INDEX()}
  let j = 2u * i;
  if (j >= u.n) { return; }
  let v = vec2<f32>(x[i]);
  out[j] = v.x;
  if (j + 1u < u.n) { out[j + 1u] = v.y; }
}`;
}

/** The cast op: f32 ↔ f16 (f64 on the CPU for gradient checks). */
export const CAST: OpDef<CastParams> = {
  name: "cast",
  f16: true,
  outputs([x], p) {
    if (x.dtype === "i32") throw new TypeError("Cannot cast: i32 tensors hold ids, not values");
    if (p.to !== "f32" && p.to !== "f16") {
      throw new TypeError(`Cannot cast to ${JSON.stringify(p.to)}: expected "f32" or "f16"`);
    }
    return [{ shape: x.shape, dtype: p.to }];
  },
  cpu([x], [out]) {
    // typed-array stores round: Float16Array to nearest even, overflow to ±Infinity
    out.set(x);
  },
  gpu(info) {
    const from = info.inputs[0].dtype, to = info.outputs[0].dtype;
    const n = sizeOf(info.outputs[0].shape);
    const threads = from === to ? n : Math.ceil(n / 2);
    return {
      kernels: [{
        code: castCode(from, to),
        bind: [{ in: 0 }, { out: 0 }],
        uniform: packUniform([n]),
        workgroups: grid1d(threads),
      }],
    };
  },
  backward(c, [dy]) {
    const x = c.inputs[0] as Tensor, g = dy as Tensor;
    return [g.dtype === x.dtype ? g.detach() : apply(CAST, [g], { to: x.dtype as CastDType })[0]];
  },
};

/** `x` converted to `dtype` (x itself when it already has it). */
export function cast(x: Tensor, dtype: CastDType): Tensor {
  if (x.dtype === dtype) return x;
  return apply(CAST, [x], { to: dtype })[0];
}

/**
 * Registry cases: the f32 side only (the registry's inputs are f32 and the
 * CI adapter has no shader-f16); the f16 kernels are checked by
 * ops/cast_test.ts on an adapter that has it.
 */
export const CAST_ENTRIES: OpEntry[] = [{
  op: CAST,
  cases: [
    { inputs: [{ shape: [3, 5] }], params: { to: "f32" } },
    { inputs: [{ shape: [1] }], params: { to: "f32" } },
  ],
}];
