import assert from "node:assert/strict";
import { presetConfig, validateConfig } from "./config.ts";

Deno.test("validateConfig() loads pad = eos (such a model generates; train() and TokenizerDataset refuse it) and start = pad", () => {
  const c = presetConfig("tiny", { vocab_size: 10, pad_token_id: 2 });
  assert.equal(c.pad_token_id, c.eos_token_id);
  // T5 and Marian start the decoder with pad
  const t5 = validateConfig({
    ...presetConfig("tiny", { vocab_size: 10 }),
    decoder_start_token_id: 0,
  });
  assert.equal(t5.decoder_start_token_id, t5.pad_token_id);
  assert.throws(
    () => presetConfig("tiny", { vocab_size: 10, eos_token_id: 10 }),
    /field "eos_token_id" \(10\) must be below vocab_size/,
  );
});
