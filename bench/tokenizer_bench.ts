/**
 * Benchmarks BPE training and encoding on a synthetic parallel corpus (Zipf-distributed words
 * built from Latin and Turkish syllables), printing one JSON object a line.
 *
 * ```sh
 * deno run --allow-read --allow-env bench/tokenizer_bench.ts --pairs 100000 --vocab-size 8000
 * deno run --allow-read --allow-env bench/tokenizer_bench.ts --pairs 1000000 --vocab-size 16000
 * ```
 *
 * @module
 */
import { parseArgs } from "node:util";
import { trainBpe } from "../data/bpe_trainer.ts";
import { tokenizerFromJson } from "../data/tokenizer.ts";

/** Options of {@linkcode syntheticPairs} and {@linkcode benchTokenizer}. */
export interface TokenizerBenchOptions {
  /** Sentence pairs to make. */
  pairs: number;
  /** Vocab size to train. Default: 8000. */
  vocabSize?: number;
  /** Distinct words per language. Default: 30000. */
  wordTypes?: number;
  /** Seed of the generator. Default: 1. */
  seed?: number;
}

/** One result line of {@linkcode benchTokenizer}. */
export interface TokenizerBenchLine {
  kind: "tokenizer_train" | "tokenizer_encode";
  [field: string]: string | number;
}

/** A seeded generator of (source, target) sentence pairs with Zipf-distributed words. */
export function* syntheticPairs(opts: TokenizerBenchOptions): Generator<[string, string]> {
  const rand = mulberry32(opts.seed ?? 1);
  const types = opts.wordTypes ?? 30_000;
  const en = ["th", "e", "a", "in", "on", "er", "st", "re", "an", "ing", "o", "ou", "ch", "s", "t"];
  const tr = [
    "ğı",
    "ş",
    "ç",
    "ü",
    "ö",
    "ı",
    "le",
    "ar",
    "ler",
    "İs",
    "da",
    "de",
    "ım",
    "ak",
    "yor",
  ];
  const vocabOf = (syl: string[]) =>
    Array.from({ length: types }, () => {
      let w = "";
      const n = 1 + Math.floor(rand() * 4);
      for (let i = 0; i < n; i++) w += syl[Math.floor(rand() * syl.length)];
      return w;
    });
  const words = [vocabOf(en), vocabOf(tr)];
  // Zipf(1) sampling through the cumulative weights.
  const cdf = new Float64Array(types);
  let acc = 0;
  for (let i = 0; i < types; i++) cdf[i] = acc += 1 / (i + 1);
  const pick = (list: string[]) => {
    const x = rand() * acc;
    let lo = 0;
    let hi = types - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cdf[mid] < x) lo = mid + 1;
      else hi = mid;
    }
    return list[lo];
  };
  const sentence = (list: string[]) => {
    const n = 4 + Math.floor(rand() * 12);
    const out: string[] = [];
    for (let i = 0; i < n; i++) out.push(pick(list));
    return out.join(" ") + (rand() < 0.5 ? "." : "?");
  };
  for (let p = 0; p < opts.pairs; p++) yield [sentence(words[0]), sentence(words[1])];
}

/** Trains on `opts.pairs` synthetic pairs and times it, then times encoding. */
export async function benchTokenizer(opts: TokenizerBenchOptions): Promise<TokenizerBenchLine[]> {
  const vocabSize = opts.vocabSize ?? 8000;
  let t0 = performance.now();
  const texts: string[] = [];
  for (const [s, t] of syntheticPairs(opts)) texts.push(s, t);
  const genS = (performance.now() - t0) / 1000;
  let countS = 0;
  t0 = performance.now();
  const tok = await trainBpe(texts, {
    vocabSize,
    onProgress: (p) => {
      if (p.phase === "merge" && p.merges === 0) countS = (performance.now() - t0) / 1000;
    },
  });
  const trainS = (performance.now() - t0) / 1000;
  const lines: TokenizerBenchLine[] = [{
    kind: "tokenizer_train",
    pairs: opts.pairs,
    vocab_size: tok.vocabSize,
    merges: tok.merges.length,
    seconds: round(trainS),
    pairs_per_s: Math.round(opts.pairs / trainS),
    count_s: round(countS),
    merge_s: round(trainS - countS),
    generate_s: round(genS),
  }];
  const sample = texts.slice(0, Math.min(texts.length, 20_000));
  const hf = tokenizerFromJson(tok.toJson(), "bench", { fastPath: false });
  for (const [name, enc] of [["webseq", tok], ["huggingface", hf]] as const) {
    t0 = performance.now();
    let n = 0;
    for (const s of sample) n += enc.encode(s).length;
    const s = (performance.now() - t0) / 1000;
    lines.push({
      kind: "tokenizer_encode",
      encoder: name,
      sentences: sample.length,
      tokens: n,
      seconds: round(s),
      sentences_per_s: Math.round(sample.length / s),
    });
  }
  return lines;
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      pairs: { type: "string", default: "100000" },
      "vocab-size": { type: "string", default: "8000" },
      seed: { type: "string", default: "1" },
      "word-types": { type: "string", default: "30000" },
    },
  });
  const lines = await benchTokenizer({
    pairs: Number(values.pairs),
    vocabSize: Number(values["vocab-size"]),
    seed: Number(values.seed),
    wordTypes: Number(values["word-types"]),
  });
  for (const line of lines) console.log(JSON.stringify(line));
}
