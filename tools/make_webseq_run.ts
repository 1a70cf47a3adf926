/**
 * Writes a small random webseq run folder (config.json + model.safetensors)
 * for the interop round trip: tools/make_interop_fixtures.py loads it in the
 * PyTorch twin and records the twin's logits.
 *
 *   deno run --allow-read --allow-write=tests/testdata/interop tools/make_webseq_run.ts
 *
 * @module
 */
import { presetConfig } from "../nn/config.ts";
import { initContext } from "../nn/module.ts";
import { Seq2Seq } from "../nn/seq2seq.ts";
import { saveConfig, saveModelWeights } from "../train/run_folder.ts";

if (import.meta.main) {
  const out = "tests/testdata/interop/webseq_run";
  const cfg = presetConfig("tiny", {
    vocab_size: 29,
    d_model: 16,
    n_heads: 2,
    d_ff: 24,
    n_encoder_layers: 1,
    n_decoder_layers: 2,
    max_position: 16,
    ffn_activation: "swiglu",
    positional_encoding: "learned",
    tie_embeddings: false,
    layer_scale_init: 0.5,
  });
  const model = new Seq2Seq(cfg, initContext(11));
  await saveConfig(out, cfg);
  await saveModelWeights(out, await model.stateDict(), { tieEmbeddings: cfg.tie_embeddings });
  console.log(`wrote ${out}`);
}
