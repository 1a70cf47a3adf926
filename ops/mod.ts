/**
 * Every op of webseq, re-exported by name, and `ALL_OPS`: the explicit list
 * the registry-driven test walks. Adding an op touches its file, its cases
 * here, and nothing else.
 *
 * @module
 */
import { registerAutogradOps } from "../tensor/tensor.ts";
import type { OpDef } from "../tensor/types.ts";
import type { OpCase, OpEntry } from "./registry.ts";
import { ELEMENTWISE_OPS, SCALE } from "./elementwise.ts";
import { BINARY } from "./binary.ts";
import { BROADCAST_TO, MAX_GRAD, REDUCE, setScaleOp } from "./reduce.ts";
import { PERMUTE } from "./reshape.ts";
import { MATMUL, MATMUL_BIAS_ENTRIES } from "./matmul.ts";
import { LINEAR_GROUP_ENTRIES } from "./linear_group.ts";
import { OPTIM_ENTRIES } from "./optim_ops.ts";
import { SOFTMAX_ENTRIES } from "./softmax.ts";
import { LAYER_NORM_ENTRIES } from "./layer_norm.ts";
import { EMBEDDING_ENTRIES } from "./embedding.ts";
import { DROPOUT_ENTRIES } from "./dropout.ts";
import { MASKED_FILL_ENTRIES } from "./masked_fill.ts";
import { SLICE_ENTRIES } from "./slice.ts";
import { CROSS_ENTROPY_ENTRIES } from "./cross_entropy.ts";
import { ATTENTION_ENTRIES } from "./attention.ts";
import { RESIDUAL_ENTRIES } from "./residual.ts";
import { RESIDUAL_LAYER_NORM_ENTRIES } from "./residual_layer_norm.ts";
import { CAST_ENTRIES } from "./cast.ts";
import { GELU_LINEAR_ENTRIES } from "./gelu_linear.ts";
import { GREEDY_PICK_ENTRIES } from "./greedy_pick.ts";
import { SAMPLE_PICK_ENTRIES } from "./sample_pick.ts";
import { SWIGLU_ENTRIES } from "./swiglu.ts";

export * from "./elementwise.ts";
export * from "./binary.ts";
export * from "./reduce.ts";
export * from "./reshape.ts";
export * from "./matmul.ts";
export * from "./optim_ops.ts";
export * from "./softmax.ts";
export * from "./layer_norm.ts";
export * from "./embedding.ts";
export * from "./dropout.ts";
export * from "./masked_fill.ts";
export * from "./slice.ts";
export * from "./cross_entropy.ts";
export * from "./attention.ts";
export * from "./activations.ts";
export * from "./autotune.ts";
export * from "./residual.ts";
export * from "./residual_layer_norm.ts";
export * from "./cast.ts";
export * from "./matmul_f16.ts";
export * from "./linear_group.ts";
export * from "./gelu_linear.ts";
export * from "./greedy_pick.ts";
export * from "./sample_pick.ts";
export * from "./swiglu.ts";
export type { InputSpec, OpCase, OpEntry } from "./registry.ts";
export type { MatmulGroup, MatmulHalf, ScoresGradRows, ScoresProb } from "./_matmul_wgsl.ts";

setScaleOp(SCALE);
registerAutogradOps(BINARY_ADD());

function BINARY_ADD(): OpDef<unknown> {
  // autograd accumulates with the broadcasting add (same shapes)
  const op = BINARY as OpDef<unknown>;
  return {
    ...op,
    name: "accumulate",
    cpu: (i, o, info) => op.cpu(i, o, info, { kind: "add" }),
    gpu: (info) => op.gpu!(info, { kind: "add" }),
    backward: undefined,
  };
}

/** Every op with its test cases. */
export const ALL_OPS: OpEntry[] = [
  ...ELEMENTWISE_OPS.map(({ op, arity, min }) => ({
    op,
    cases: [[3, 5], [1], [2, 1, 67], [300]].map((shape) => ({
      inputs: Array.from({ length: arity }, () => ({ shape, min: min ?? -2, max: 2 })),
      params: { a: 0.7 },
      noGradCheck: op.backward === undefined || op.name === "relu",
    })),
  })),
  {
    op: BINARY,
    cases: (["add", "sub", "mul", "div"] as const).flatMap((kind): OpCase[] => [
      { inputs: [{ shape: [2, 3, 4] }, { shape: [2, 3, 4], min: 0.5, max: 2 }], params: { kind } },
      { inputs: [{ shape: [2, 3, 4] }, { shape: [4], min: 0.5, max: 2 }], params: { kind } },
      { inputs: [{ shape: [2, 1, 5] }, { shape: [1, 3, 1], min: 0.5, max: 2 }], params: { kind } },
      { inputs: [{ shape: [1] }, { shape: [7, 2, 3], min: 0.5, max: 2 }], params: { kind } },
    ]).concat([{
      inputs: [{ shape: [3, 4], values: [1, 2, 3, 4, 5, 6, 7, 8, 9, 1, 2, 3] }, {
        shape: [4],
        values: [1, 6, 0, 4],
      }],
      params: { kind: "eq" },
      noGradCheck: true,
    }]),
  },
  {
    op: REDUCE,
    cases: [
      { inputs: [{ shape: [3, 5] }], params: { kind: "sum", start: 1, end: 2, keepdims: false } },
      { inputs: [{ shape: [3, 5] }], params: { kind: "sum", start: 0, end: 1, keepdims: true } },
      {
        inputs: [{ shape: [2, 3, 4, 5] }],
        params: { kind: "sum", start: 1, end: 3, keepdims: true },
      },
      { inputs: [{ shape: [1000] }], params: { kind: "sum", start: 0, end: 1, keepdims: false } },
      { inputs: [{ shape: [2, 3, 7] }], params: { kind: "max", start: 2, end: 3, keepdims: true } },
      {
        inputs: [{ shape: [2, 3, 7] }],
        params: { kind: "max", start: 0, end: 2, keepdims: false },
      },
      { inputs: [{ shape: [4, 1] }], params: { kind: "max", start: 1, end: 2, keepdims: false } },
    ],
  },
  {
    op: BROADCAST_TO,
    cases: [
      { inputs: [{ shape: [1, 3, 1] }], params: { shape: [2, 3, 5] } },
      { inputs: [{ shape: [4] }], params: { shape: [4] } },
    ],
  },
  {
    op: MAX_GRAD,
    cases: [{
      inputs: [{ shape: [2, 3], values: [1, 5, 5, 2, 0, -1] }, { shape: [2, 1], values: [5, 2] }, {
        shape: [2, 1],
      }],
      params: {},
      noGradCheck: true,
    }],
  },
  {
    op: PERMUTE,
    cases: [
      { inputs: [{ shape: [2, 3, 4] }], params: { perm: [2, 0, 1] } },
      { inputs: [{ shape: [2, 3, 4, 5] }], params: { perm: [0, 2, 1, 3] } },
      { inputs: [{ shape: [3, 1] }], params: { perm: [1, 0] } },
      { inputs: [{ shape: [2, 3], dtype: "i32", intMax: 100 }], params: { perm: [1, 0] } },
    ],
  },
  {
    op: MATMUL,
    cases: [
      { inputs: [{ shape: [3, 5] }, { shape: [5, 4] }], params: { transA: false, transB: false } },
      { inputs: [{ shape: [5, 3] }, { shape: [5, 4] }], params: { transA: true, transB: false } },
      { inputs: [{ shape: [3, 5] }, { shape: [4, 5] }], params: { transA: false, transB: true } },
      { inputs: [{ shape: [5, 3] }, { shape: [4, 5] }], params: { transA: true, transB: true } },
      {
        inputs: [{ shape: [2, 3, 17] }, { shape: [17, 6] }],
        params: { transA: false, transB: false },
      },
      {
        inputs: [{ shape: [2, 2, 5, 3] }, { shape: [2, 2, 5, 4] }],
        params: { transA: true, transB: false },
      },
      { inputs: [{ shape: [1, 1] }, { shape: [1, 1] }], params: { transA: false, transB: false } },
      {
        label: "70x90x66",
        inputs: [{ shape: [70, 90] }, { shape: [66, 90] }],
        params: { transA: false, transB: true },
        noGradCheck: true,
      },
    ],
  },
  ...MATMUL_BIAS_ENTRIES,
  ...LINEAR_GROUP_ENTRIES,
  ...OPTIM_ENTRIES,
  ...SOFTMAX_ENTRIES,
  ...LAYER_NORM_ENTRIES,
  ...ATTENTION_ENTRIES,
  ...RESIDUAL_ENTRIES,
  ...CAST_ENTRIES,
  ...GELU_LINEAR_ENTRIES,
  ...EMBEDDING_ENTRIES,
  ...DROPOUT_ENTRIES,
  ...MASKED_FILL_ENTRIES,
  ...SLICE_ENTRIES,
  ...CROSS_ENTROPY_ENTRIES,
  ...GREEDY_PICK_ENTRIES,
  ...SAMPLE_PICK_ENTRIES,
  ...SWIGLU_ENTRIES,
  ...RESIDUAL_LAYER_NORM_ENTRIES,
];
