/**
 * webseq: encoder–decoder transformers trained from scratch on WebGPU or the
 * CPU, in TypeScript.
 *
 * @example
 * ```ts
 * import { initContext, presetConfig, Seq2Seq } from "@webseq/webseq";
 * const model = new Seq2Seq(presetConfig("tiny", { vocab_size: 100 }), initContext(0));
 * console.log(model.parameterCount());
 * ```
 *
 * @module
 */
export * from "./tensor/types.ts";
export {
  full,
  getDefaultBackend,
  isGradEnabled,
  noGrad,
  ones,
  scope,
  scopeAsync,
  setDefaultBackend,
  Tensor,
  tensor,
  type TensorOptions,
  toBackend,
  zeros,
} from "./tensor/tensor.ts";
export { CPU, CpuBackend } from "./tensor/cpu_backend.ts";
export { hashU32, hashUniform, makeNormal, makeRng } from "./tensor/rng.ts";
export * from "./ops/mod.ts";
export * from "./gpu/mod.ts";
export * from "./nn/mod.ts";
export * from "./optim/mod.ts";
export * from "./data/mod.ts";
export * from "./metrics/mod.ts";
export * from "./train/mod.ts";
