/**
 * Turns a collated {@linkcode Batch} into tensors on a backend, and the loss
 * of a batch: masked cross-entropy over non-pad targets.
 *
 * @module
 */
import { type Tensor, tensor } from "../tensor/tensor.ts";
import type { Backend } from "../tensor/types.ts";
import type { Batch, DatasetOptions, TokenizerDataset } from "../data/dataset.ts";
import type { ModelConfig } from "../nn/config.ts";
import { reshape } from "../ops/mod.ts";
import { crossEntropy, crossEntropyStats } from "../ops/cross_entropy.ts";
import type { Seq2Seq } from "../nn/seq2seq.ts";

/**
 * The {@linkcode TokenizerDataset} options that fit a model: its start, eos
 * and pad ids, and `maxLength` (capped at its max_position).
 */
export function datasetOptionsFor(config: ModelConfig, maxLength: number): DatasetOptions {
  return {
    maxLength: Math.min(maxLength, config.max_position),
    decoderStartTokenId: config.decoder_start_token_id,
    eosTokenId: config.eos_token_id,
    padTokenId: config.pad_token_id,
  };
}

/**
 * Throws a one-line TypeError when `dataset`'s special ids differ from the
 * model config's: its batches would pad, end and start sequences with tokens
 * the model (and the loss, which ignores the config's pad) does not take as
 * such, and the metrics would be silently wrong.
 */
export function checkDatasetFits(config: ModelConfig, dataset: TokenizerDataset): void {
  const pairs: [string, number, string, number][] = [
    ["padTokenId", dataset.padTokenId, "pad_token_id", config.pad_token_id],
    ["eosTokenId", dataset.eosTokenId, "eos_token_id", config.eos_token_id],
    [
      "decoderStartTokenId",
      dataset.decoderStartTokenId,
      "decoder_start_token_id",
      config.decoder_start_token_id,
    ],
  ];
  for (const [field, got, key, want] of pairs) {
    if (got !== want) {
      throw new TypeError(
        `dataset ${field} ${got} differs from the model's ${key} ${want}: build the dataset with datasetOptionsFor(model.config, maxLength)`,
      );
    }
  }
}

/** A batch as tensors. */
export interface BatchTensors {
  /** i32 [B, S] */
  src: Tensor;
  /** f32 [B, S] */
  srcMask: Tensor;
  /** i32 [B, T] */
  tgt: Tensor;
  /** f32 [B, T] */
  tgtMask: Tensor;
  /** i32 [B·T] */
  targets: Tensor;
}

/** Uploads a batch (masks become f32). */
export function batchTensors(b: Batch, backend: Backend): BatchTensors {
  return {
    src: tensor(b.encoderInputIds, [b.B, b.S], { dtype: "i32", backend }),
    srcMask: tensor(Float32Array.from(b.encoderAttentionMask), [b.B, b.S], { backend }),
    tgt: tensor(b.decoderInputIds, [b.B, b.T], { dtype: "i32", backend }),
    tgtMask: tensor(Float32Array.from(b.decoderAttentionMask), [b.B, b.T], { backend }),
    targets: tensor(b.decoderTargetIds, [b.B * b.T], { dtype: "i32", backend }),
  };
}

/** Options of {@linkcode batchLoss}. */
export interface LossOptions {
  /** Label smoothing ε (default 0). */
  labelSmoothing?: number;
  /** Dropout seed of this forward (default: a fresh one each call, `ForwardOptions.seed`). */
  seed?: number;
  /** Top-k of the accuracy statistic (default 5). */
  k?: number;
}

/**
 * Forward + loss of a batch. Returns the scalar loss (with the tape when
 * gradients are on) and `stats` f32 [4] = [sum CE, tokens, correct, top-k correct].
 */
export function batchLoss(
  model: Seq2Seq,
  t: BatchTensors,
  opts: LossOptions = {},
): { loss: Tensor; stats: Tensor } {
  const logits = model.forward(t.src, t.srcMask, t.tgt, t.tgtMask, { seed: opts.seed });
  const [B, T, V] = logits.shape;
  const flat = reshape(logits, [B * T, V]);
  const pad = model.config.pad_token_id;
  const loss = crossEntropy(flat, t.targets, {
    ignoreIndex: pad,
    labelSmoothing: opts.labelSmoothing ?? 0,
  });
  const stats = crossEntropyStats(flat.detach(), t.targets, { ignoreIndex: pad, k: opts.k ?? 5 });
  return { loss, stats };
}
