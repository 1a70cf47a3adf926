/**
 * Hand-made Hugging Face `tokenizer.json` files for tests: the special-token layouts of
 * pretrained tokenizers (BERT, T5, GPT-2) without their large vocabularies.
 *
 * @module
 */

/** A minimal WordPiece `tokenizer.json`: `vocab` in id order, `specials` as special added tokens. */
export function wordPieceJson(vocab: string[], specials: string[]): string {
  return JSON.stringify({
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: specials.map((content) => ({
      id: vocab.indexOf(content),
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    })),
    normalizer: null,
    pre_tokenizer: { type: "BertPreTokenizer" },
    post_processor: null,
    decoder: { type: "WordPiece", prefix: "##", cleanup: true },
    model: {
      type: "WordPiece",
      unk_token: vocab.find((t) => /unk/i.test(t)) ?? vocab[0],
      continuing_subword_prefix: "##",
      max_input_chars_per_word: 100,
      vocab: Object.fromEntries(vocab.map((t, i) => [t, i])),
    },
  });
}
