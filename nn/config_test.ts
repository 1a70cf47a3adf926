import assert from "node:assert/strict";
import { presetConfig, validateConfig } from "./config.ts";

Deno.test("validateConfig() refuses pad = eos (a model trained under the pad-ignoring loss never learns to stop)", () => {
  assert.throws(
    () => presetConfig("tiny", { vocab_size: 10, pad_token_id: 2 }),
    new RangeError(
      'preset tiny: field "pad_token_id" (2) must differ from eos_token_id (the loss ignores padding, so the model would never learn to stop)',
    ),
  );
  // T5 and Marian start the decoder with pad: allowed
  const t5 = validateConfig({
    ...presetConfig("tiny", { vocab_size: 10 }),
    decoder_start_token_id: 0,
  });
  assert.equal(t5.decoder_start_token_id, t5.pad_token_id);
});
