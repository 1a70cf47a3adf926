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
export {
  type CalendarDate,
  type Corpus,
  type CorpusOptions,
  type CorpusPair,
  type CorpusTask,
  DATE_STYLES,
  type DateStyle,
  formatDate,
  generateCorpus,
  isoDate,
  turkishNumber,
} from "./corpus_gen.ts";
