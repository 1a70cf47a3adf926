/**
 * Evaluation: loss, perplexity, token accuracy and top-5 accuracy over a
 * dataset (token-weighted, exactly as if all batches were one), and BLEU from
 * greedy decoding (NLTK semantics, CONTRACTS.md §5).
 *
 * @module
 */
import { noGrad, scope, type Tensor } from "../tensor/tensor.ts";
import { add } from "../ops/mod.ts";
import type { Backend } from "../tensor/types.ts";
import { DataLoader, type TokenizerDataset } from "../data/dataset.ts";
import type { TextTokenizer } from "../data/tokenizer_types.ts";
import type { Seq2Seq } from "../nn/seq2seq.ts";
import { bleuSummary } from "../metrics/bleu.ts";
import { generate } from "./generate.ts";
import { batchLoss, batchTensors, checkDatasetFits } from "./batch_tensors.ts";

/** What {@linkcode evaluate} reports. */
export interface EvalMetrics {
  /** Mean cross-entropy over non-pad target tokens (no label smoothing). */
  loss: number;
  /** exp(loss). */
  perplexity: number;
  /** Argmax == target, over non-pad targets. */
  accuracy: number;
  /** Target within the 5 largest logits. */
  top5_accuracy: number;
  /** Count of non-pad target tokens. */
  tokens: number;
  /** Mean sentence BLEU (0–1), with `bleu`. */
  bleu_sentence?: number;
  /** Corpus BLEU (0–1), with `bleu`. */
  bleu_corpus?: number;
}

/** Options of {@linkcode evaluate}. */
export interface EvaluateOptions {
  /** Batch size (default 32). */
  batchSize?: number;
  /** BLEU from greedy decoding of these examples. */
  bleu?: {
    /** Decodes ids to text. */
    tokenizer: TextTokenizer | null;
    /** Reference texts by example index (default: decoded target ids). */
    references?: string[];
    /** Evaluate BLEU on at most this many examples (default all). */
    limit?: number;
    /** Longest generation (default the dataset's maxLength). */
    maxNewTokens?: number;
    /** NLTK smoothing method (default 1). */
    smoothing?: number;
  };
  /** Called after each batch (progress). */
  onBatch?: (done: number, total: number) => void;
  /**
   * The message of a BLEU error for example `index` (smoothing method 6 on a
   * sentence without trigrams), e.g. naming its file and line; default
   * `sentence INDEX: …`.
   */
  onBleuError?: (index: number, message: string) => string;
}

/**
 * Text of ids: the tokenizer's decode, or ids joined by spaces for pre-tokenized data. Ids past
 * the tokenizer's vocabulary (a model vocab_size rounded up beyond it) have no text and are
 * skipped, as the Hugging Face decoders skip them.
 */
export function idsToText(ids: readonly number[], tokenizer: TextTokenizer | null): string {
  if (!tokenizer) return ids.join(" ");
  const n = tokenizer.vocabSize;
  return tokenizer.decode(ids.every((id) => id < n) ? ids : ids.filter((id) => id < n));
}

/** Evaluates `model` (switched to eval mode and back) on `dataset`. */
export async function evaluate(
  model: Seq2Seq,
  dataset: TokenizerDataset,
  backend: Backend,
  opts: EvaluateOptions = {},
): Promise<EvalMetrics> {
  checkDatasetFits(model.config, dataset);
  const wasTraining = model.training;
  model.eval();
  try {
    const loader = new DataLoader(dataset, { batchSize: opts.batchSize ?? 32, shuffle: false });
    let total: Tensor | null = null;
    let done = 0;
    for (const batch of loader) {
      const next: Tensor = noGrad(() =>
        scope(() => {
          const { stats } = batchLoss(model, batchTensors(batch, backend));
          return total ? add(total, stats) : stats;
        })
      );
      total?.dispose();
      total = next;
      opts.onBatch?.(++done, loader.length);
      if (done % 16 === 0) await backend.sync();
    }
    const [ce, tokens, correct, topk] = total ? await total.data() : [NaN, 0, 0, 0];
    total?.dispose();
    const loss = ce / tokens;
    const out: EvalMetrics = {
      loss,
      perplexity: Math.exp(loss),
      accuracy: correct / tokens,
      top5_accuracy: topk / tokens,
      tokens,
    };
    if (opts.bleu) {
      const n = Math.min(dataset.length, opts.bleu.limit ?? dataset.length);
      const tok = opts.bleu.tokenizer;
      const src: number[][] = [];
      const refs: string[][] = [];
      for (let i = 0; i < n; i++) {
        src.push([...dataset.sourceIds(i), dataset.eosTokenId]); // tokens + eos (CONTRACTS §4)
        refs.push([opts.bleu.references?.[i] ?? idsToText(Array.from(dataset.targetIds(i)), tok)]);
      }
      const hyps: string[] = [];
      const bs = opts.batchSize ?? 32;
      for (let i = 0; i < n; i += bs) {
        const res = await generate(model, src.slice(i, i + bs), {
          strategy: "greedy",
          maxNewTokens: opts.bleu.maxNewTokens ?? dataset.maxLength,
        });
        for (const seqs of res.sequences) hyps.push(idsToText(seqs[0].ids, tok));
      }
      let s: ReturnType<typeof bleuSummary>;
      try {
        s = bleuSummary(refs, hyps, { smoothing: opts.bleu.smoothing ?? 1 });
      } catch (err) {
        // "sentence i: …" (smoothing method 6 on a sentence without trigrams): the caller's words
        const m = /^sentence (\d+): (.*)$/.exec(err instanceof Error ? err.message : "");
        if (m && opts.onBleuError) throw new RangeError(opts.onBleuError(Number(m[1]), m[2]));
        throw err;
      }
      out.bleu_sentence = s.sentenceMean;
      out.bleu_corpus = s.corpus;
    }
    return out;
  } finally {
    model.train(wasTraining);
  }
}
