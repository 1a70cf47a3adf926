import assert from "node:assert/strict";
import { evaluate } from "./evaluate.ts";
import { checkDatasetFits, datasetOptionsFor } from "./batch_tensors.ts";
import { TokenizerDataset } from "../data/dataset.ts";
import { presetConfig } from "../nn/config.ts";
import { initContext } from "../nn/module.ts";
import { Seq2Seq } from "../nn/seq2seq.ts";
import { CPU } from "../tensor/cpu_backend.ts";

const CFG = presetConfig("tiny", {
  vocab_size: 20,
  d_model: 16,
  n_heads: 2,
  d_ff: 32,
  n_encoder_layers: 1,
  n_decoder_layers: 1,
  max_position: 16,
  pad_token_id: 3,
  eos_token_id: 4,
  bos_token_id: 5,
  decoder_start_token_id: 5,
});
const SRC = [[7, 8, 9], [10]], TGT = [[11, 12], [13, 14, 15, 16]];

Deno.test("evaluate() counts the targets of a dataset built for the model, and refuses one with other special ids", async () => {
  const model = new Seq2Seq(CFG, initContext(0));
  try {
    const fits = new TokenizerDataset(SRC, TGT, null, datasetOptionsFor(CFG, 64));
    assert.equal(fits.maxLength, 16); // capped at max_position
    const m = await evaluate(model, fits, CPU);
    assert.equal(m.tokens, 2 + 1 + 4 + 1); // the targets and their eos
    const defaults = new TokenizerDataset(SRC, TGT, null, { maxLength: 8 });
    await assert.rejects(
      () => evaluate(model, defaults, CPU),
      new TypeError(
        "dataset padTokenId 0 differs from the model's pad_token_id 3: build the dataset with datasetOptionsFor(model.config, maxLength)",
      ),
    );
    const otherStart = new TokenizerDataset(SRC, TGT, null, {
      ...datasetOptionsFor(CFG, 8),
      decoderStartTokenId: 3,
    });
    assert.throws(() => checkDatasetFits(CFG, otherStart), /decoderStartTokenId 3 differs/);
    // a BLEU error (method 6 on one-token hypotheses) in the caller's words
    await assert.rejects(
      () =>
        evaluate(model, fits, CPU, {
          // references holding every id: a one-token hypothesis matches a unigram, no trigram
          bleu: {
            tokenizer: null,
            smoothing: 6,
            maxNewTokens: 1,
            references: SRC.map(() => [...Array(20).keys()].join(" ")),
          },
          onBleuError: (i, message) => `pairs.tsv line ${i + 2}: ${message}`,
        }),
      /^RangeError: pairs\.tsv line 2: BLEU smoothing method 6/,
    );
  } finally {
    model.dispose();
  }
});
