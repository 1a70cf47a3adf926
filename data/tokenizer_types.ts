/**
 * The tokenizer interface the rest of webseq relies on. Implementations live
 * in `data/tokenizer.ts` (Hugging Face `tokenizer.json`, loaded or trained).
 *
 * @module
 */

/** Text ↔ ids, without adding special tokens (the dataset adds eos/start). */
export interface TextTokenizer {
  /** Number of ids (the model's vocab_size must be at least this). */
  readonly vocabSize: number;
  /** Ids of `text`, no special tokens added. */
  encode(text: string): number[];
  /** Text of `ids`, special tokens skipped. */
  decode(ids: readonly number[]): string;
  /** The id of a token string, or undefined. */
  tokenToId(token: string): number | undefined;
  /** The tokenizer as a standard `tokenizer.json` string. */
  toJson(): string;
}
