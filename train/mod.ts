/**
 * Training, evaluation, generation and checkpoints.
 *
 * @module
 */
export * from "./trainer.ts";
export * from "./evaluate.ts";
export {
  generate,
  type GeneratedSequence,
  type GenerateOptions,
  type GenerateStrategy,
  generateText,
  type GenerationResult,
} from "./generate.ts";
export * from "./load_model.ts";
export * from "./batch_tensors.ts";
export * from "./run_folder.ts";
export {
  type Dtype as SafetensorsDtype,
  type LoadedTensor,
  type ParseOptions,
  parseSafetensors,
  readSafetensors,
  readSafetensorsHeader,
  SafetensorsError,
  type SafetensorsFile,
  type SafetensorsHeader,
  serializeSafetensors,
  type TensorData,
  type TensorInfo as SafetensorsTensorInfo,
  type TensorToWrite,
  type WritableDtype,
  writeSafetensors,
} from "./safetensors.ts";
export * from "./atomic.ts";
export * from "./progress.ts";
export * from "./report.ts";
export * from "./tune_cache.ts";
