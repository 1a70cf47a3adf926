/**
 * The gate of a SwiGLU feed-forward block (nn/feed_forward.ts with
 * `ffn_activation: "swiglu"`): `out = silu(gate) ⊙ up` as one op, and its
 * backward as one op with two outputs.
 *
 * The CPU functions compute the composition `mulSame(silu(gate), up)` and
 * its autograd exactly (SiLU rounded to the dtype first, the same products
 * in the same order; SiLU and its gradient through ops/elementwise.ts, in
 * WebAssembly for f32), so fusing changes no number. On WebGPU it is one
 * dispatch forward and one backward instead of two and three, and the tape
 * keeps `gate` and `up` for the backward but no `silu(gate)`: a third less
 * of the block's saved activations ([B·T, F] f32 per layer).
 *
 * @example
 * ```ts
 * import { swiglu, tensor } from "@webseq/webseq";
 * const y = swiglu(tensor([0, 2], [2]), tensor([3, 1], [2]));
 * console.log(await y.toArray()); // [0, 1.7615941…]: silu(0)·3, silu(2)·1
 * ```
 *
 * @module
 */
import { apply, type Tensor } from "../tensor/tensor.ts";
import { allocArray, fmtShape, type OpDef, packUniform, sizeOf } from "../tensor/types.ts";
import { grid1d, LINEAR_INDEX, MAIN_1D } from "./_wgsl.ts";
import { SILU, SILU_GRAD } from "./elementwise.ts";
import type { OpEntry } from "./registry.ts";

/** The ops take no parameters. */
export type SwigluParams = Record<string, never>;

function sameShapes(name: string, inputs: { shape: readonly number[]; dtype: string }[]): void {
  for (const t of inputs) {
    if (t.dtype === "i32") throw new TypeError(`Cannot ${name}: needs float inputs`);
    if (fmtShape(t.shape) !== fmtShape(inputs[0].shape)) {
      throw new TypeError(
        `Cannot ${name}: shapes differ (${inputs.map((s) => fmtShape(s.shape)).join(" vs ")})`,
      );
    }
  }
}

/** `out = silu(gate) ⊙ up`: inputs `[gate, up]` (one shape), output of that shape. */
export const SWIGLU: OpDef<SwigluParams> = {
  name: "swiglu",
  overwrites: true,
  outputs(inputs) {
    sameShapes("swiglu", inputs);
    if (inputs.length !== 2) throw new TypeError(`swiglu: expected 2 inputs, got ${inputs.length}`);
    return [{ shape: inputs[0].shape, dtype: inputs[0].dtype }];
  },
  cpu([gate, up], [out], info) {
    // out holds silu(gate) in its dtype (as the unfused op's output), then the product
    SILU.cpu([gate], [out], info, { a: 0 });
    for (let i = 0; i < out.length; i++) out[i] = out[i] * up[i];
  },
  gpu(info) {
    const n = sizeOf(info.outputs[0].shape);
    return {
      kernels: [{
        code: `
@group(0) @binding(0) var<storage, read> gate: array<f32>;
@group(0) @binding(1) var<storage, read> up: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
struct U { n: u32 }
@group(0) @binding(3) var<uniform> u: U;
${MAIN_1D()} {
  ${LINEAR_INDEX()}
  if (i >= u.n) { return; }
  let g = gate[i];
  out[i] = (g / (1.0 + exp(-g))) * up[i];
}`,
        bind: [{ in: 0 }, { in: 1 }, { out: 0 }],
        uniform: packUniform([n]),
        workgroups: grid1d(n),
      }],
    };
  },
  backward(c, [dy]) {
    const [gate, up] = c.inputs as Tensor[];
    const [dGate, dUp] = apply(SWIGLU_GRAD, [gate, up, dy as Tensor], {});
    if (!gate.requiresGrad) dGate.dispose();
    if (!up.requiresGrad) dUp.dispose();
    return [gate.requiresGrad ? dGate : null, up.requiresGrad ? dUp : null];
  },
};

/**
 * The backward of {@linkcode SWIGLU}: inputs `[gate, up, dy]` (one shape),
 * outputs `[dGate, dUp]` with `dUp = dy ⊙ silu(gate)` and `dGate =
 * silu'(gate) · (dy ⊙ up)`, each product rounded to the dtype as the unfused
 * ops round it.
 */
export const SWIGLU_GRAD: OpDef<SwigluParams> = {
  name: "swigluGrad",
  overwrites: true,
  outputs(inputs) {
    sameShapes("swigluGrad", inputs);
    if (inputs.length !== 3) {
      throw new TypeError(`swigluGrad: expected 3 inputs, got ${inputs.length}`);
    }
    const o = { shape: inputs[0].shape, dtype: inputs[0].dtype };
    return [o, o];
  },
  cpu([gate, up, dy], [dGate, dUp], info) {
    const one = { inputs: [info.inputs[0]], outputs: [info.outputs[0]] };
    // dUp = dy ⊙ silu(gate): silu into dUp, then the product
    SILU.cpu([gate], [dUp], one, { a: 0 });
    for (let i = 0; i < dUp.length; i++) dUp[i] = dy[i] * dUp[i];
    // dGate = siluGrad(gate, dy ⊙ up), the product rounded to the dtype first
    const ds = allocArray(info.outputs[0].dtype, dGate.length);
    for (let i = 0; i < ds.length; i++) ds[i] = dy[i] * up[i];
    SILU_GRAD.cpu([gate, ds], [dGate], one, { a: 0 });
  },
  gpu(info) {
    const n = sizeOf(info.inputs[0].shape);
    return {
      kernels: [{
        // the unfused kernels' expressions: silu, mulSame, siluGrad
        code: `
@group(0) @binding(0) var<storage, read> gate: array<f32>;
@group(0) @binding(1) var<storage, read> up: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> dGate: array<f32>;
@group(0) @binding(4) var<storage, read_write> dUp: array<f32>;
struct U { n: u32 }
@group(0) @binding(5) var<uniform> u: U;
${MAIN_1D()} {
  ${LINEAR_INDEX()}
  if (i >= u.n) { return; }
  let g = gate[i];
  let d = dy[i];
  dUp[i] = d * (g / (1.0 + exp(-g)));
  let ds = d * up[i];
  dGate[i] = ds * (1.0 / (1.0 + exp(-g))) * (1.0 + g * (1.0 - 1.0 / (1.0 + exp(-g))));
}`,
        bind: [{ in: 0 }, { in: 1 }, { in: 2 }, { out: 0 }, { out: 1 }],
        uniform: packUniform([n]),
        workgroups: grid1d(n),
      }],
    };
  },
};

/** `silu(gate) ⊙ up` for tensors of one shape (a SwiGLU block's gate). */
export function swiglu(gate: Tensor, up: Tensor): Tensor {
  return apply(SWIGLU, [gate, up], {})[0];
}

/** Registry cases (tests/ops_registry_test.ts): small, size 1, odd lengths, large |gate|. */
export const SWIGLU_ENTRIES: OpEntry[] = [
  {
    op: SWIGLU,
    cases: [[3, 5], [1], [2, 1, 67], [300]].map((shape) => ({
      inputs: [{ shape, min: -6, max: 6 }, { shape }],
      params: {},
    })).concat([{ inputs: [{ shape: [40], min: -90, max: 90 }, { shape: [40] }], params: {} }]),
  },
  {
    op: SWIGLU_GRAD,
    cases: [[3, 5], [1], [2, 1, 67], [300]].map((shape) => ({
      inputs: [{ shape, min: -6, max: 6 }, { shape }, { shape }],
      params: {},
      noGradCheck: true,
    })).concat([{
      inputs: [{ shape: [40], min: -90, max: 90 }, { shape: [40] }, { shape: [40] }],
      params: {},
      noGradCheck: true,
    }]),
  },
];
