/**
 * Data: readers, tokenizers, TokenizerDataset, collate, DataLoader, and the
 * built-in corpus generator.
 *
 * @module
 */
export * from "./readers.ts";
export * from "./tokenizer.ts";
export * from "./bpe_trainer.ts";
export * from "./dataset.ts";
export { formatDate, generateCorpus, isoDate, turkishNumber } from "./corpus_gen.ts";
