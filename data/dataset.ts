/**
 * From sentence pairs to the tensors the model eats: {@link TokenizerDataset} (tokenize once,
 * build the five fields of CONTRACTS.md §4), {@link collate} (stack examples into a padded
 * batch) and {@link DataLoader} (seeded, resumable batching with optional length bucketing).
 *
 * Per pair, with `L = maxLength` and `tokens(x)` the tokenizer's ids without special tokens:
 * ```
 * encoderInputIds      = tokens(source) + [eos]         truncated to L keeping eos, padded with pad
 * encoderAttentionMask = 1 for those real ids, 0 for padding
 * decoderInputIds      = [decoderStart] + tokens(target) truncated to L, padded with pad
 * decoderAttentionMask = 1 for those real ids, 0 for padding
 * decoderTargetIds     = tokens(target) + [eos]         truncated to L keeping eos, padded with pad
 * ```
 * `decoderInputIds[t]` is the input whose next token is `decoderTargetIds[t]`; both have the same
 * real length `min(len(tokens(target)) + 1, L)`.
 *
 * @example Batches for one epoch
 * ```ts ignore
 * const ds = new TokenizerDataset(sources, targets, tokenizer, { maxLength: 64 });
 * const loader = new DataLoader(ds, { batchSize: 32, seed: 1, bucketByLength: true });
 * for (const batch of loader) console.log(batch.B, batch.S, batch.T); // one epoch
 * ```
 *
 * @module
 */

import type { TextTokenizer } from "./tokenizer_types.ts";

/** One example: five Int32Arrays of length `maxLength` (right-padded). */
export interface Example {
  /** [maxLength] tokens(source) + [eos], right-padded. */
  encoderInputIds: Int32Array;
  /** [maxLength] 1 for real tokens, 0 for padding. */
  encoderAttentionMask: Int32Array;
  /** [maxLength] [decoderStart] + tokens(target), right-padded. */
  decoderInputIds: Int32Array;
  /** [maxLength] 1 for real tokens, 0 for padding. */
  decoderAttentionMask: Int32Array;
  /** [maxLength] tokens(target) + [eos], padded with pad (ignored by the loss). */
  decoderTargetIds: Int32Array;
}

/**
 * A batch of examples as flat row-major Int32Arrays. `S` and `T` are the longest source and
 * target lengths in the batch (dynamic padding), rounded up to `padToMultipleOf` (at most
 * `maxLength`), unless padding to the full `maxLength` was asked for.
 */
export interface Batch {
  /** Number of examples. */
  B: number;
  /** Source length (columns of the encoder arrays). */
  S: number;
  /** Target length (columns of the decoder arrays). */
  T: number;
  /** [B, S] */
  encoderInputIds: Int32Array;
  /** [B, S] 1 for real tokens, 0 for padding. */
  encoderAttentionMask: Int32Array;
  /** [B, T] */
  decoderInputIds: Int32Array;
  /** [B, T] 1 for real tokens, 0 for padding. */
  decoderAttentionMask: Int32Array;
  /** [B, T] pad where the mask is 0 (ignored by the loss). */
  decoderTargetIds: Int32Array;
  /** Number of real (non-pad) target tokens. */
  targetTokens: number;
}

/** Options of {@link TokenizerDataset}. */
export interface DatasetOptions {
  /** Longest source and target, counting eos (or the start token). */
  maxLength: number;
  /** First decoder input. Default 1 (`<s>`). */
  decoderStartTokenId?: number;
  /** Appended to source and target tokens. Default 2 (`</s>`). */
  eosTokenId?: number;
  /** Padding id. Default 0 (`<pad>`). */
  padTokenId?: number;
}

/** Options of {@link collate} and {@link TokenizerDataset.batch}. */
export interface CollateOptions {
  /** Padding id. Default: the dataset's, or 0 for {@link collate}. */
  padTokenId?: number;
  /** Round S and T up to a multiple of this (fewer distinct shapes for GPU kernels). Default 1. */
  padToMultipleOf?: number;
  /** Pad to the full `maxLength` instead of the batch's longest sequence. Default false. */
  padToMaxLength?: boolean;
}

/** A side of a pair: text to tokenize, or ids already tokenized (no special tokens). */
export type Side = string | readonly number[];

/** A pair as {@link TokenizerDataset.fromPairs} takes it (the readers' `Pair` fits). */
export type DatasetPair =
  | { readonly kind: "text"; readonly source: string; readonly target: string }
  | {
    readonly kind: "ids";
    readonly sourceIds: readonly number[];
    readonly targetIds: readonly number[];
  };

/** Growable Int32Array. */
class IdBuffer {
  data = new Int32Array(1024);
  length = 0;
  push(ids: readonly number[], count: number): void {
    if (this.length + count > this.data.length) {
      const grown = new Int32Array(Math.max(this.data.length * 2, this.length + count));
      grown.set(this.data.subarray(0, this.length));
      this.data = grown;
    }
    for (let k = 0; k < count; k++) this.data[this.length + k] = ids[k];
    this.length += count;
  }
}

/**
 * Tokenized sentence pairs. Tokenizes every pair once at construction and keeps the ids (only
 * as many as fit `maxLength`) in flat arrays.
 */
export class TokenizerDataset {
  /** Longest sequence, counting eos / the start token. */
  readonly maxLength: number;
  /** First decoder input id. */
  readonly decoderStartTokenId: number;
  /** Id appended to sources and targets. */
  readonly eosTokenId: number;
  /** Padding id. */
  readonly padTokenId: number;
  /** Pairs whose source or target was cut to fit `maxLength`. */
  readonly truncatedCount: number;
  /** Pairs whose source was cut. */
  readonly truncatedSourceCount: number;
  /** Pairs whose target was cut. */
  readonly truncatedTargetCount: number;

  // Tokens (no special tokens) of pair i: ids[offsets[i] .. offsets[i] + lengths[i]].
  #sourceIds: Int32Array;
  #sourceOffsets: Int32Array;
  #sourceLengths: Int32Array;
  #targetIds: Int32Array;
  #targetOffsets: Int32Array;
  #targetLengths: Int32Array;

  /**
   * Tokenizes every pair (or takes its ids) and keeps what fits `maxLength`.
   *
   * @param sources source texts or id arrays
   * @param targets target texts or id arrays, as many as `sources`
   * @param tokenizer encodes the texts; may be null when every side is ids
   * @param options lengths and special token ids
   */
  constructor(
    sources: readonly Side[],
    targets: readonly Side[],
    tokenizer: TextTokenizer | null,
    options: DatasetOptions,
  ) {
    if (sources.length !== targets.length) {
      throw new TypeError(
        `TokenizerDataset: ${sources.length} sources but ${targets.length} targets`,
      );
    }
    const L = options.maxLength;
    if (!Number.isInteger(L) || L < 1) {
      throw new RangeError(`TokenizerDataset: maxLength must be a positive integer, got ${L}`);
    }
    this.maxLength = L;
    this.decoderStartTokenId = checkId(options.decoderStartTokenId ?? 1, "decoderStartTokenId");
    this.eosTokenId = checkId(options.eosTokenId ?? 2, "eosTokenId");
    this.padTokenId = checkId(options.padTokenId ?? 0, "padTokenId");
    if (this.padTokenId === this.eosTokenId) {
      throw new RangeError(
        `TokenizerDataset: padTokenId (${this.padTokenId}) must differ from eosTokenId (the loss ignores padding, so a model would never learn to stop)`,
      );
    }

    const n = sources.length;
    const encode = (side: Side, i: number, what: string): readonly number[] => {
      if (typeof side !== "string") {
        for (const id of side) {
          if (!Number.isInteger(id) || id < 0 || id > 0x7fffffff) {
            throw new TypeError(`TokenizerDataset: ${what} ${i} holds ${id}, not a token id`);
          }
        }
        return side;
      }
      if (tokenizer === null) {
        throw new TypeError(`TokenizerDataset: ${what} ${i} is text but no tokenizer was given`);
      }
      // a cut text still holds more than L tokens, so it counts as truncated below
      return encodePrefix(tokenizer, side, L).ids;
    };
    const store = (sides: readonly Side[], what: string) => {
      const buf = new IdBuffer();
      const offsets = new Int32Array(n);
      const lengths = new Int32Array(n);
      const cut = new Uint8Array(n);
      let truncated = 0;
      for (let i = 0; i < n; i++) {
        const ids = encode(sides[i], i, what);
        const keep = Math.min(ids.length, L - 1); // room for eos / the start token
        if (keep < ids.length) {
          cut[i] = 1;
          truncated++;
        }
        offsets[i] = buf.length;
        lengths[i] = keep;
        buf.push(ids, keep);
      }
      return { ids: buf.data.slice(0, buf.length), offsets, lengths, cut, truncated };
    };
    const src = store(sources, "source");
    const tgt = store(targets, "target");
    this.#sourceIds = src.ids;
    this.#sourceOffsets = src.offsets;
    this.#sourceLengths = src.lengths;
    this.#targetIds = tgt.ids;
    this.#targetOffsets = tgt.offsets;
    this.#targetLengths = tgt.lengths;
    this.truncatedSourceCount = src.truncated;
    this.truncatedTargetCount = tgt.truncated;
    let either = 0;
    for (let i = 0; i < n; i++) either += src.cut[i] | tgt.cut[i];
    this.truncatedCount = either;
  }

  /** A dataset of pairs as the readers give them (text pairs need `tokenizer`). */
  static fromPairs(
    pairs: readonly DatasetPair[],
    tokenizer: TextTokenizer | null,
    options: DatasetOptions,
  ): TokenizerDataset {
    const sources: Side[] = new Array(pairs.length);
    const targets: Side[] = new Array(pairs.length);
    for (let i = 0; i < pairs.length; i++) {
      const p = pairs[i];
      sources[i] = p.kind === "text" ? p.source : p.sourceIds;
      targets[i] = p.kind === "text" ? p.target : p.targetIds;
    }
    return new TokenizerDataset(sources, targets, tokenizer, options);
  }

  /** Number of pairs. */
  get length(): number {
    return this.#sourceLengths.length;
  }

  /** Real length of example i's encoder input: source tokens + eos, at most maxLength. */
  sourceLength(i: number): number {
    return this.#sourceLengths[this.#check(i)] + 1;
  }

  /** Real length of example i's decoder input (and target), at most maxLength. */
  targetLength(i: number): number {
    return this.#targetLengths[this.#check(i)] + 1;
  }

  /** The kept source tokens of pair i (no special tokens). */
  sourceIds(i: number): Int32Array {
    const o = this.#sourceOffsets[this.#check(i)];
    return this.#sourceIds.subarray(o, o + this.#sourceLengths[i]);
  }

  /** The kept target tokens of pair i (no special tokens). */
  targetIds(i: number): Int32Array {
    const o = this.#targetOffsets[this.#check(i)];
    return this.#targetIds.subarray(o, o + this.#targetLengths[i]);
  }

  /** Example i, its five fields padded to `maxLength`. */
  get(i: number): Example {
    const b = this.batch([i], { padToMaxLength: true });
    return {
      encoderInputIds: b.encoderInputIds,
      encoderAttentionMask: b.encoderAttentionMask,
      decoderInputIds: b.decoderInputIds,
      decoderAttentionMask: b.decoderAttentionMask,
      decoderTargetIds: b.decoderTargetIds,
    };
  }

  /** The examples at `indices` as one batch (the same result as `collate` of their `get`s). */
  batch(indices: readonly number[], opts: CollateOptions = {}): Batch {
    const B = indices.length;
    if (B === 0) throw new TypeError("TokenizerDataset.batch: no indices");
    const pad = opts.padTokenId ?? this.padTokenId;
    let S = 1;
    let T = 1;
    if (opts.padToMaxLength) {
      S = T = this.maxLength;
    } else {
      for (const i of indices) {
        S = Math.max(S, this.sourceLength(i));
        T = Math.max(T, this.targetLength(i));
      }
      S = Math.min(roundUp(S, opts.padToMultipleOf), this.maxLength);
      T = Math.min(roundUp(T, opts.padToMultipleOf), this.maxLength);
    }
    const out = emptyBatch(B, S, T, pad);
    for (let b = 0; b < B; b++) {
      const i = indices[b];
      // Encoder: tokens + [eos].
      const src = this.sourceIds(i);
      const e = b * S;
      out.encoderInputIds.set(src, e);
      out.encoderInputIds[e + src.length] = this.eosTokenId;
      out.encoderAttentionMask.fill(1, e, e + src.length + 1);
      // Decoder: [start] + tokens as input, tokens + [eos] as target.
      const tgt = this.targetIds(i);
      const d = b * T;
      out.decoderInputIds[d] = this.decoderStartTokenId;
      out.decoderInputIds.set(tgt, d + 1);
      out.decoderAttentionMask.fill(1, d, d + tgt.length + 1);
      out.decoderTargetIds.set(tgt, d);
      out.decoderTargetIds[d + tgt.length] = this.eosTokenId;
      out.targetTokens += tgt.length + 1;
    }
    return out;
  }

  #check(i: number): number {
    if (!Number.isInteger(i) || i < 0 || i >= this.length) {
      throw new RangeError(`TokenizerDataset: index ${i} out of range [0, ${this.length})`);
    }
    return i;
  }
}

/**
 * Stacks examples into one batch, trimmed to the longest sequence in the batch (dynamic
 * padding): `S` and `T` are the batch's longest source and target (real tokens, found from the
 * attention masks), rounded up to `padToMultipleOf`; with `padToMaxLength` they stay the examples'
 * full length.
 */
export function collate(items: readonly Example[], opts: CollateOptions = {}): Batch {
  const B = items.length;
  if (B === 0) throw new TypeError("collate: no examples");
  const full = items[0].encoderInputIds.length;
  const fullT = items[0].decoderInputIds.length;
  const realLength = (mask: Int32Array) => {
    let n = 0;
    for (let k = 0; k < mask.length; k++) n += mask[k] === 0 ? 0 : 1;
    return n;
  };
  let S = 1;
  let T = 1;
  for (const [b, it] of items.entries()) {
    if (it.encoderInputIds.length !== full || it.decoderInputIds.length !== fullT) {
      throw new TypeError(
        `collate: example ${b} has lengths ${it.encoderInputIds.length}/${it.decoderInputIds.length}, expected ${full}/${fullT}`,
      );
    }
    S = Math.max(S, realLength(it.encoderAttentionMask));
    T = Math.max(T, realLength(it.decoderAttentionMask));
  }
  if (opts.padToMaxLength) {
    S = full;
    T = fullT;
  } else {
    S = Math.min(roundUp(S, opts.padToMultipleOf), full);
    T = Math.min(roundUp(T, opts.padToMultipleOf), fullT);
  }
  const pad = opts.padTokenId ?? 0;
  const out = emptyBatch(B, S, T, pad);
  const copy = (dst: Int32Array, src: Int32Array, at: number, n: number) => {
    dst.set(src.subarray(0, Math.min(n, src.length)), at);
  };
  for (let b = 0; b < B; b++) {
    const it = items[b];
    copy(out.encoderInputIds, it.encoderInputIds, b * S, S);
    copy(out.encoderAttentionMask, it.encoderAttentionMask, b * S, S);
    copy(out.decoderInputIds, it.decoderInputIds, b * T, T);
    copy(out.decoderAttentionMask, it.decoderAttentionMask, b * T, T);
    copy(out.decoderTargetIds, it.decoderTargetIds, b * T, T);
    out.targetTokens += realLength(it.decoderAttentionMask);
  }
  return out;
}

/** Options of {@link DataLoader}. */
export interface DataLoaderOptions {
  /** Examples per batch. */
  batchSize: number;
  /** Shuffle the order every epoch. Default true. */
  shuffle?: boolean;
  /** Seed of the shuffle; with the epoch number it fixes each epoch's order. Default 0. */
  seed?: number;
  /** Leave out the last batch when it is smaller than `batchSize`. Default false. */
  dropLast?: boolean;
  /**
   * Group examples of similar length: take the shuffled order in chunks of `bucketSize` batches,
   * sort each chunk by source length then target length, cut it into batches, then shuffle the order of all batches.
   * Padding stays small; each batch is still a random draw. Default false.
   */
  bucketByLength?: boolean;
  /** Batches per bucketing chunk. Default 50. */
  bucketSize?: number;
  /** Passed to {@link TokenizerDataset.batch}. Default 1. */
  padToMultipleOf?: number;
}

/** Where a {@link DataLoader} stands: batches already handed out in epoch `epoch`. */
export interface LoaderState {
  /** Epoch (0-based). */
  epoch: number;
  /** Batches already handed out in that epoch. */
  position: number;
  /** Seed of the shuffle. */
  seed: number;
}

/**
 * Batches of a {@link TokenizerDataset}. Iterating it yields the rest of the current epoch
 * (`for (const batch of loader)` is one epoch) and then moves to the next epoch. The order of
 * epoch e depends only on (seed, e), so `state()` saved after any batch and `restore`d into a new
 * loader continues with exactly the batches the first loader would have given.
 */
export class DataLoader implements Iterable<Batch> {
  /** The dataset batched. */
  readonly dataset: TokenizerDataset;
  /** Examples per batch. */
  readonly batchSize: number;
  /** Whether each epoch is shuffled. */
  readonly shuffle: boolean;
  /** Whether a last, smaller batch is left out. */
  readonly dropLast: boolean;
  /** Whether batches group examples of similar length. */
  readonly bucketByLength: boolean;
  /** Batches per bucketing chunk. */
  readonly bucketSize: number;
  /** S and T are rounded up to a multiple of this. */
  readonly padToMultipleOf: number;
  #seed: number;
  #epoch = 0;
  #position = 0;
  #generation = 0; // bumped by restore(), to end an iteration in progress

  /** Batches `dataset` per `opts`, starting at epoch 0. */
  constructor(dataset: TokenizerDataset, opts: DataLoaderOptions) {
    const positive = (v: number, name: string) => {
      if (!Number.isInteger(v) || v < 1) {
        throw new RangeError(`DataLoader: ${name} must be a positive integer, got ${v}`);
      }
      return v;
    };
    this.dataset = dataset;
    this.batchSize = positive(opts.batchSize, "batchSize");
    this.shuffle = opts.shuffle ?? true;
    this.#seed = checkSeed(opts.seed ?? 0);
    this.dropLast = opts.dropLast ?? false;
    this.bucketByLength = opts.bucketByLength ?? false;
    this.bucketSize = positive(opts.bucketSize ?? 50, "bucketSize");
    this.padToMultipleOf = positive(opts.padToMultipleOf ?? 1, "padToMultipleOf");
  }

  /** Batches per epoch. */
  get length(): number {
    const n = this.dataset.length;
    return this.dropLast ? Math.floor(n / this.batchSize) : Math.ceil(n / this.batchSize);
  }

  /** The current epoch (0-based). */
  get epoch(): number {
    return this.#epoch;
  }

  /** Where the loader stands; after the last batch of epoch e it reads `{epoch: e + 1, position: 0}`. */
  state(): LoaderState {
    return { epoch: this.#epoch, position: this.#position, seed: this.#seed };
  }

  /** Continues from a saved state (its seed replaces the loader's). */
  restore(state: LoaderState): void {
    const { epoch, position } = state;
    if (!Number.isInteger(epoch) || epoch < 0) {
      throw new RangeError(
        `DataLoader.restore: epoch must be a non-negative integer, got ${epoch}`,
      );
    }
    if (!Number.isInteger(position) || position < 0 || position > this.length) {
      throw new RangeError(
        `DataLoader.restore: position ${position} out of range [0, ${this.length}]`,
      );
    }
    this.#seed = checkSeed(state.seed);
    this.#epoch = position === this.length ? epoch + 1 : epoch;
    this.#position = position === this.length ? 0 : position;
    this.#generation++;
  }

  /** The dataset indices of every batch of epoch `epoch`, in order. */
  epochBatches(epoch: number): number[][] {
    const n = this.dataset.length;
    const bs = this.batchSize;
    const random = mulberry32(mixSeed(this.#seed, epoch));
    const order = Array.from({ length: n }, (_, i) => i);
    if (this.shuffle) shuffleInPlace(order, random);
    // dropLast: the examples past the whole batches go before any bucketing, so they are the
    // (shuffled) order's last, as in torch, and not the longest of a sorted chunk every epoch
    if (this.length * bs < n) order.length = this.length * bs;
    if (this.bucketByLength) {
      const ds = this.dataset;
      // By source length, then target length.
      const key = (i: number) => ds.sourceLength(i) * (ds.maxLength + 1) + ds.targetLength(i);
      const chunk = bs * this.bucketSize;
      for (let c = 0; c < order.length; c += chunk) {
        const sorted = order.slice(c, c + chunk).sort((a, b) => key(a) - key(b));
        for (let k = 0; k < sorted.length; k++) order[c + k] = sorted[k];
      }
    }
    const batches: number[][] = [];
    for (let b = 0; b < this.length; b++) batches.push(order.slice(b * bs, (b + 1) * bs));
    if (this.bucketByLength && this.shuffle) shuffleInPlace(batches, random);
    return batches;
  }

  /**
   * Yields the rest of the current epoch, then moves to the next. One iteration at a time; a
   * `restore` during an iteration ends it.
   */
  *[Symbol.iterator](): Generator<Batch, void, undefined> {
    const generation = this.#generation;
    const epoch = this.#epoch;
    const plan = this.epochBatches(epoch);
    if (plan.length === 0) this.#epoch = epoch + 1;
    for (let k = this.#position; k < plan.length; k++) {
      const last = k + 1 === plan.length;
      this.#epoch = last ? epoch + 1 : epoch;
      this.#position = last ? 0 : k + 1;
      yield this.dataset.batch(plan[k], { padToMultipleOf: this.padToMultipleOf });
      if (this.#generation !== generation) return;
    }
  }
}

/** mulberry32: a small, fast 32-bit PRNG; returns floats in [0, 1). */
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

/** A 32-bit seed from (seed, epoch), mixed so that nearby seeds and epochs differ everywhere. */
function mixSeed(seed: number, epoch: number): number {
  let h = Math.imul((seed >>> 0) ^ 0x9e3779b9, 0x85ebca6b);
  h = Math.imul(h ^ (Math.floor(seed / 4294967296) >>> 0) ^ (h >>> 13), 0xc2b2ae35);
  h = Math.imul(h ^ (epoch >>> 0) ^ (h >>> 16), 0x85ebca6b);
  return (h ^ (h >>> 13)) >>> 0;
}

function shuffleInPlace<T>(a: T[], random: () => number): void {
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    const t = a[i];
    a[i] = a[j];
    a[j] = t;
  }
}

function checkSeed(seed: number): number {
  if (!Number.isSafeInteger(seed) || seed < 0) {
    throw new RangeError(`DataLoader: seed must be a non-negative integer, got ${seed}`);
  }
  return seed;
}

function checkId(id: number, name: string): number {
  if (!Number.isInteger(id) || id < 0 || id > 0x7fffffff) {
    throw new RangeError(`TokenizerDataset: ${name} must be a non-negative integer, got ${id}`);
  }
  return id;
}

function roundUp(n: number, multiple = 1): number {
  if (!Number.isInteger(multiple) || multiple < 1) {
    throw new RangeError(`padToMultipleOf must be a positive integer, got ${multiple}`);
  }
  return Math.ceil(n / multiple) * multiple;
}

function emptyBatch(B: number, S: number, T: number, pad: number): Batch {
  const filled = (n: number) => pad === 0 ? new Int32Array(n) : new Int32Array(n).fill(pad);
  return {
    B,
    S,
    T,
    encoderInputIds: filled(B * S),
    encoderAttentionMask: new Int32Array(B * S),
    decoderInputIds: filled(B * T),
    decoderAttentionMask: new Int32Array(B * T),
    decoderTargetIds: filled(B * T),
    targetTokens: 0,
  };
}

/** Characters a token is first taken to cover, where {@linkcode encodePrefix} cuts a text. */
export const MAX_TOKEN_CHARS = 32;

/**
 * The tokens of `text` as far as `maxTokens` of them reach, without
 * encoding all of a very long text: a text longer than `maxTokens ·
 * MAX_TOKEN_CHARS + 64` characters is cut there (at the last whitespace
 * within 256 characters, else between whole UTF-16 code points) and the
 * prefix encoded; where that gives fewer than `maxTokens + 8` tokens (long
 * tokens, characters a normalizer drops, a word a tokenizer maps to one
 * unknown token) the cut doubles, up to the whole text. `cut`: the ids are of
 * a prefix (and more than `maxTokens`). BPE encodes one unbroken word in
 * time quadratic in its length in the library (an 8-million-character line
 * without spaces took days); the tokens a sequence keeps come before the cut
 * with 8 more to spare, so they are those of the whole text.
 */
export function encodePrefix(
  tokenizer: TextTokenizer,
  text: string,
  maxTokens: number,
): { ids: number[]; cut: boolean } {
  for (let cap = maxTokens * MAX_TOKEN_CHARS + 64; text.length > cap; cap *= 2) {
    let end = cap;
    for (let j = cap; j > cap - 256; j--) {
      if (/\s/.test(text[j])) {
        end = j;
        break;
      }
    }
    // never half a surrogate pair
    const c = text.charCodeAt(end - 1);
    if (end === cap && c >= 0xd800 && c <= 0xdbff) end--;
    const ids = tokenizer.encode(text.slice(0, end));
    if (ids.length >= maxTokens + 8) return { ids, cut: true };
  }
  return { ids: tokenizer.encode(text), cut: false };
}
