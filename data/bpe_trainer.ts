/**
 * Trains a BPE tokenizer on raw text and writes it as a standard Hugging Face `tokenizer.json`
 * that `@huggingface/tokenizers` (and the Rust `tokenizers`) load back with identical ids.
 *
 * The pipeline, as written in the file:
 * - special tokens (`<pad>`=0, `<s>`=1, `</s>`=2, `<unk>`=3 by default) are added tokens,
 *   matched in the raw text before anything else;
 * - normalizer `NFC`, so composed and decomposed forms (`İ` vs `I◌̇`) give the same ids;
 * - pre-tokenizer `Metaspace`: spaces become `▁`, a `▁` is prepended, and words split before
 *   each `▁`; the `Metaspace` decoder undoes it, so decode(encode(text)) gives back any NFC text
 *   that does not start with a space;
 * - with `splitDigits`, the pre-tokenizer is `Sequence[Metaspace, Digits(individual_digits)]`:
 *   every ASCII digit 0-9 is a piece of its own (as `\d` in the library's `[^\d]+|\d`), so no
 *   token joins a digit with anything else (LLaMA-style number handling);
 * - model `BPE` over Unicode code points (never UTF-16 halves), unknown characters become
 *   `<unk>`, or their UTF-8 bytes `<0x..>` with `byteFallback`.
 *
 * Training counts words first, then merges with incrementally updated pair counts, a pair →
 * words index and a lazy max-heap, so each merge only touches the words that hold the pair.
 *
 * @example Train on a few sentences
 * ```ts
 * import { trainBpe } from "@webseq/webseq";
 * const tok = await trainBpe(["the cat sat", "the cat ran"], { vocabSize: 40 });
 * console.log(tok.decode(tok.encode("the cat")) === "the cat");
 * ```
 *
 * @module
 */
import type { TextTokenizer } from "./tokenizer_types.ts";

/** Default special tokens, in id order: `<pad>`=0, `<s>`=1, `</s>`=2, `<unk>`=3. */
export const DEFAULT_SPECIAL_TOKENS: readonly string[] = ["<pad>", "<s>", "</s>", "<unk>"];

/** The Metaspace replacement character, U+2581 `▁`, that stands for a space inside tokens. */
export const METASPACE = "\u2581";

/** Progress reports of {@linkcode trainBpe}. */
export interface TrainProgress {
  /** `count`: reading texts and counting words; `merge`: learning merges. */
  phase: "count" | "merge";
  /** Texts read so far. */
  texts: number;
  /** Distinct words seen so far. */
  words: number;
  /** Merges learned so far. */
  merges: number;
  /** Current vocab size. */
  vocabSize: number;
}

/** Options of {@linkcode trainBpe}. */
export interface TrainBpeOptions {
  /**
   * Largest vocab wanted, special tokens included. Training stops there or earlier — unless the
   * special tokens and the alphabet alone hold more: every character seen is kept (as Hugging
   * Face's `BpeTrainer` keeps its alphabet), so the vocab is then that larger (see
   * `limitAlphabet`).
   */
  vocabSize: number;
  /** A pair must occur at least this often to be merged. Default: 2. */
  minFrequency?: number;
  /** Special tokens, given ids 0, 1, … in order. Default: {@linkcode DEFAULT_SPECIAL_TOKENS}. */
  specialTokens?: readonly string[];
  /** The token for unknown characters; must be one of `specialTokens`. Default: `<unk>`. */
  unkToken?: string;
  /** Encode unknown characters as their UTF-8 bytes (256 `<0x..>` tokens). Default: false. */
  byteFallback?: boolean;
  /**
   * Keep at most this many distinct characters (the most frequent); the rest become unknown (or
   * bytes, with `byteFallback`). Default: all.
   */
  limitAlphabet?: number;
  /**
   * Split every ASCII digit 0-9 into a piece of its own before BPE (the `Digits` pre-tokenizer
   * with `individual_digits: true`), so no token holds a digit and anything else. Default: false.
   */
  splitDigits?: boolean;
  /** Called now and then with progress (every 100k texts, every 1000 merges). */
  onProgress?: (p: TrainProgress) => void;
}

/** The parts a {@linkcode TrainedTokenizer} is made of. */
export interface TrainedTokenizerInit {
  /** Token strings by id. */
  vocab: readonly string[];
  /** Merges in rank order, as token string pairs. */
  merges: readonly (readonly [string, string])[];
  /** Special tokens (each in `vocab`). */
  specialTokens: readonly string[];
  /** The unknown token (in `vocab`), or null. */
  unkToken: string | null;
  /** Whether unknown characters fall back to `<0x..>` byte tokens. */
  byteFallback: boolean;
  /** Whether every ASCII digit is a piece of its own (`Digits` pre-tokenizer). Default: false. */
  splitDigits?: boolean;
}

/**
 * A BPE tokenizer made by {@linkcode trainBpe}, with its own fast encoder. `toJson()` gives the
 * `tokenizer.json` that `@huggingface/tokenizers` loads to the same ids.
 */
export class TrainedTokenizer implements TextTokenizer {
  /** Number of ids. */
  readonly vocabSize: number;
  /** Special tokens in id order. */
  readonly specialTokens: readonly string[];
  /** Merges in rank order. */
  readonly merges: readonly (readonly [string, string])[];
  /** Whether unknown characters fall back to `<0x..>` byte tokens. */
  readonly byteFallback: boolean;
  /** The unknown token, or null. */
  readonly unkToken: string | null;
  /** Whether every ASCII digit is a piece of its own (`Digits` pre-tokenizer). */
  readonly splitDigits: boolean;
  #vocab: readonly string[];
  #ids = new Map<string, number>();
  #specialIds: Set<number>;
  #specialRe: RegExp | null;
  #width: number;
  #rank = new Map<number, number>(); // pair key → rank
  #mergeId: Int32Array; // rank → id of the merged token
  #cache = new Map<string, number[]>(); // word without its ▁ → ids of ▁word
  #bareCache = new Map<string, number[]>(); // piece after a digit (no ▁) → ids
  #byteIds: Int32Array | null = null;
  #unkId: number;

  /**
   * A tokenizer over a trained vocabulary and merges.
   *
   * @param init vocab, merges and specials; see {@linkcode TrainedTokenizerInit}
   */
  constructor(init: TrainedTokenizerInit) {
    this.#vocab = init.vocab;
    this.vocabSize = init.vocab.length;
    this.merges = init.merges;
    this.specialTokens = init.specialTokens;
    this.byteFallback = init.byteFallback;
    this.unkToken = init.unkToken;
    this.splitDigits = init.splitDigits ?? false;
    init.vocab.forEach((t, id) => {
      if (this.#ids.has(t)) throw new TypeError(`Token ${JSON.stringify(t)} is in the vocab twice`);
      this.#ids.set(t, id);
    });
    const idOf = (t: string, what: string): number => {
      const id = this.#ids.get(t);
      if (id === undefined) throw new TypeError(`${what} ${JSON.stringify(t)} is not in the vocab`);
      return id;
    };
    this.#specialIds = new Set(init.specialTokens.map((t) => idOf(t, "Special token")));
    this.#specialRe = specialTokenRegExp(init.specialTokens);
    this.#unkId = init.unkToken === null ? -1 : idOf(init.unkToken, "Unknown token");
    this.#width = this.vocabSize + 1;
    this.#mergeId = new Int32Array(init.merges.length);
    init.merges.forEach(([a, b], r) => {
      const key = idOf(a, "Merge part") * this.#width + idOf(b, "Merge part");
      this.#rank.set(key, r); // a repeated merge takes its last rank, as in the library
      this.#mergeId[r] = idOf(a + b, "Merged token");
    });
    if (init.byteFallback) {
      this.#byteIds = new Int32Array(256);
      for (let i = 0; i < 256; i++) this.#byteIds[i] = idOf(byteToken(i), "Byte token");
    }
  }

  /** Ids of `text`, no special tokens added (special token strings in the text are matched). */
  encode(text: string): number[] {
    const out: number[] = [];
    const push = (ids: number[]) => {
      for (let i = 0; i < ids.length; i++) out.push(ids[i]);
    };
    const onWord = this.splitDigits
      ? (word: string) =>
        splitDigitPieces(word, (p) => push(this.#encodeWord(p)), (p) => push(this.#encodeBare(p)))
      : (word: string) => push(this.#encodeWord(word));
    preTokenize(text, this.#specialRe, onWord, (special) => out.push(this.#ids.get(special)!));
    return out;
  }

  /** Text of `ids`, special tokens skipped. Throws RangeError for an id outside the vocab. */
  decode(ids: readonly number[]): string {
    const pieces: string[] = [];
    let bytes: number[] = [];
    const flush = () => {
      if (bytes.length > 0) pieces.push(new TextDecoder().decode(Uint8Array.from(bytes)));
      bytes = [];
    };
    for (const id of ids) {
      if (!Number.isInteger(id)) throw new TypeError(`decode() needs integer ids, got ${id}`);
      if (id < 0 || id >= this.vocabSize) {
        throw new RangeError(`Token id ${id} is not in the vocab (size ${this.vocabSize})`);
      }
      if (this.#specialIds.has(id)) continue;
      const t = this.#vocab[id];
      const byte = this.byteFallback ? parseByteToken(t) : -1;
      if (byte >= 0) bytes.push(byte);
      else {
        flush();
        pieces.push(t);
      }
    }
    flush();
    // Metaspace decoder: ▁ → space, and the first piece loses one leading space.
    let text = "";
    for (let i = 0; i < pieces.length; i++) {
      let p = pieces[i].replaceAll(METASPACE, " ");
      if (i === 0 && p.startsWith(" ")) p = p.slice(1);
      text += p;
    }
    return text;
  }

  /** The id of a token string, or undefined. */
  tokenToId(token: string): number | undefined {
    return this.#ids.get(token);
  }

  /** The token string of an id, or undefined. */
  idToToken(id: number): string | undefined {
    return this.#vocab[id];
  }

  /** The tokens (strings) of `text`, no special tokens added. */
  tokenize(text: string): string[] {
    return this.encode(text).map((id) => this.#vocab[id]);
  }

  /** The standard `tokenizer.json` text of this tokenizer. */
  toJson(): string {
    const q = (s: string) => JSON.stringify(s);
    const added = this.specialTokens.map((t) =>
      `    {"id": ${this.#ids.get(t)}, "content": ${
        q(t)
      }, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}`
    );
    const metaspace =
      `{"type": "Metaspace", "replacement": "${METASPACE}", "prepend_scheme": "always", "split": true}`;
    const preTokenizer = this.splitDigits
      ? `{"type": "Sequence", "pretokenizers": [${metaspace}, {"type": "Digits", "individual_digits": true}]}`
      : metaspace;
    const decoder = this.byteFallback
      ? `{"type": "Sequence", "decoders": [{"type": "ByteFallback"}, ${metaspace}]}`
      : metaspace;
    const vocab = this.#vocab.map((t, id) => `      ${q(t)}: ${id}`);
    const merges = this.merges.map(([a, b]) => `      [${q(a)}, ${q(b)}]`);
    return [
      "{",
      `  "version": "1.0",`,
      `  "truncation": null,`,
      `  "padding": null,`,
      `  "added_tokens": [\n${added.join(",\n")}\n  ],`,
      `  "normalizer": {"type": "NFC"},`,
      `  "pre_tokenizer": ${preTokenizer},`,
      `  "post_processor": null,`,
      `  "decoder": ${decoder},`,
      `  "model": {`,
      `    "type": "BPE",`,
      `    "dropout": null,`,
      `    "unk_token": ${this.unkToken === null ? "null" : q(this.unkToken)},`,
      `    "continuing_subword_prefix": null,`,
      `    "end_of_word_suffix": null,`,
      `    "fuse_unk": false,`,
      `    "byte_fallback": ${this.byteFallback},`,
      `    "ignore_merges": false,`,
      `    "vocab": {\n${vocab.join(",\n")}\n    },`,
      `    "merges": [\n${merges.join(",\n")}\n    ]`,
      `  }`,
      "}",
      "",
    ].join("\n");
  }

  /** Ids of one Metaspace word `▁${rest}`. */
  #encodeWord(rest: string): number[] {
    const hit = this.#cache.get(rest);
    if (hit !== undefined) return hit;
    const chars = Array.from(rest);
    chars.unshift(METASPACE);
    return this.#encodeChars(chars, rest, this.#cache);
  }

  /** Ids of one piece with no leading `▁` (a digit, or the text after one). */
  #encodeBare(piece: string): number[] {
    const hit = this.#bareCache.get(piece);
    if (hit !== undefined) return hit;
    return this.#encodeChars(Array.from(piece), piece, this.#bareCache);
  }

  /** Ids of `chars` after the merges (lowest rank first, leftmost on ties); cached under `key`. */
  #encodeChars(chars: string[], key: string, cache: Map<string, number[]>): number[] {
    let ids = chars.map((c) => this.#ids.get(c) ?? -1);
    const W = this.#width;
    if (ids.length > LONG_WORD) [ids, chars] = this.#mergeLong(ids, chars);
    else {
      for (;;) {
        let best = Infinity;
        let at = -1;
        for (let i = 0; i + 1 < ids.length; i++) {
          const a = ids[i];
          const b = ids[i + 1];
          if (a < 0 || b < 0) continue;
          const r = this.#rank.get(a * W + b);
          if (r !== undefined && r < best) {
            best = r;
            at = i;
          }
        }
        if (at < 0) break;
        ids[at] = this.#mergeId[best];
        ids.splice(at + 1, 1);
        chars.splice(at + 1, 1); // chars stays aligned; only unknown (single) chars are read
      }
    }
    let out = ids;
    if (ids.includes(-1)) {
      out = [];
      for (let i = 0; i < ids.length; i++) {
        if (ids[i] >= 0) out.push(ids[i]);
        else if (this.#byteIds) {
          for (const byte of new TextEncoder().encode(chars[i])) out.push(this.#byteIds[byte]);
        } else if (this.#unkId >= 0) out.push(this.#unkId);
      }
    }
    if (cache.size >= 200_000) cache.clear();
    cache.set(key, out);
    return out;
  }

  /**
   * The merges of a long word (the loop above rescans the word for each merge: quadratic): the
   * same merges in the same order — the lowest rank first, the leftmost on ties — from a heap of
   * (rank, position) over a linked list, stale entries skipped. Returns the merged ids and the
   * characters aligned with them.
   */
  #mergeLong(ids0: number[], chars0: string[]): [number[], string[]] {
    const n = ids0.length, W = this.#width;
    const ids = Int32Array.from(ids0);
    const next = new Int32Array(n), prev = new Int32Array(n);
    for (let i = 0; i < n; i++) [next[i], prev[i]] = [i + 1 < n ? i + 1 : -1, i - 1];
    const alive = new Uint8Array(n).fill(1);
    // entries rank·n + position: ordered by rank, then leftmost (positions keep their order)
    const heap: number[] = [];
    const push = (i: number) => {
      const j = next[i];
      if (j < 0 || ids[i] < 0 || ids[j] < 0) return;
      const r = this.#rank.get(ids[i] * W + ids[j]);
      if (r === undefined) return;
      heap.push(r * n + i);
      for (let c = heap.length - 1; c > 0;) {
        const p = (c - 1) >> 1;
        if (heap[p] <= heap[c]) break;
        [heap[p], heap[c]] = [heap[c], heap[p]];
        c = p;
      }
    };
    const pop = (): number => {
      const top = heap[0], last = heap.pop()!;
      if (heap.length > 0) {
        heap[0] = last;
        for (let c = 0;;) {
          const l = 2 * c + 1, r = l + 1;
          let m = c;
          if (l < heap.length && heap[l] < heap[m]) m = l;
          if (r < heap.length && heap[r] < heap[m]) m = r;
          if (m === c) break;
          [heap[m], heap[c]] = [heap[c], heap[m]];
          c = m;
        }
      }
      return top;
    };
    for (let i = 0; i + 1 < n; i++) push(i);
    while (heap.length > 0) {
      const e = pop(), i = e % n, r = (e - i) / n, j = next[i];
      // stale: the left token merged away, or its pair changed since this entry
      if (!alive[i] || j < 0 || this.#rank.get(ids[i] * W + ids[j]) !== r) continue;
      ids[i] = this.#mergeId[r];
      alive[j] = 0;
      next[i] = next[j];
      if (next[j] >= 0) prev[next[j]] = i;
      if (prev[i] >= 0) push(prev[i]);
      push(i);
    }
    const outIds: number[] = [], outChars: string[] = [];
    for (let i = 0; i >= 0 && i < n; i = next[i]) {
      outIds.push(ids[i]);
      outChars.push(chars0[i]);
    }
    return [outIds, outChars];
  }
}

/** Words longer than this many symbols merge through a heap (TrainedTokenizer's `#mergeLong`). */
const LONG_WORD = 64;

/**
 * Trains a BPE tokenizer on `texts` (for translation: both sides of every pair).
 * Throws RangeError when `vocabSize` cannot hold the special (and byte) tokens.
 */
export async function trainBpe(
  texts: Iterable<string> | AsyncIterable<string>,
  opts: TrainBpeOptions,
): Promise<TrainedTokenizer> {
  const specials = [...(opts.specialTokens ?? DEFAULT_SPECIAL_TOKENS)];
  const unkToken = opts.unkToken ?? "<unk>";
  const byteFallback = opts.byteFallback ?? false;
  const minFrequency = opts.minFrequency ?? 2;
  // with splitDigits the ten digits are tokens too (below)
  const digits = opts.splitDigits ? 10 : 0;
  const reserved = specials.length + (byteFallback ? 256 : 0) + digits;
  if (!Number.isInteger(opts.vocabSize) || opts.vocabSize <= reserved) {
    throw new RangeError(
      `vocabSize must be an integer above ${reserved} (the special${byteFallback ? ", byte" : ""}${
        digits ? " and digit" : ""
      } tokens), got ${opts.vocabSize}`,
    );
  }
  if (!Number.isFinite(minFrequency) || minFrequency < 1) {
    throw new RangeError(`minFrequency must be at least 1, got ${minFrequency}`);
  }
  if (new Set(specials).size !== specials.length || specials.some((s) => s.length === 0)) {
    throw new TypeError(`specialTokens must be distinct non-empty strings`);
  }
  if (!specials.includes(unkToken)) {
    throw new TypeError(`unkToken ${JSON.stringify(unkToken)} must be one of the specialTokens`);
  }
  const progress = opts.onProgress ?? (() => {});
  const splitDigits = opts.splitDigits ?? false;

  // 1. Word frequencies, keyed by the word without its leading ▁; with splitDigits, also the
  // pieces that have no ▁ (digits and the text after them), counted apart.
  const wordCounts = new Map<string, number>();
  const bareCounts = new Map<string, number>();
  const specialRe = specialTokenRegExp(specials);
  const countOnly = (w: string) => wordCounts.set(w, (wordCounts.get(w) ?? 0) + 1);
  const countBare = (p: string) => bareCounts.set(p, (bareCounts.get(p) ?? 0) + 1);
  const countWord = splitDigits
    ? (w: string) => splitDigitPieces(w, countOnly, countBare)
    : countOnly;
  const ignore = () => {};
  let nTexts = 0;
  const countText = (text: string) => {
    if (typeof text !== "string") {
      throw new TypeError(`trainBpe() needs strings, got ${typeof text} at text ${nTexts}`);
    }
    preTokenize(text, specialRe, countWord, ignore);
    if (++nTexts % 100_000 === 0) {
      progress({ phase: "count", texts: nTexts, words: wordCounts.size, merges: 0, vocabSize: 0 });
    }
  };
  if (Symbol.iterator in texts) { for (const t of texts) countText(t); }
  else for await (const t of texts) countText(t);

  // 2. Initial vocab: specials, byte tokens, then the alphabet by code point.
  const vocab: string[] = [];
  const ids = new Map<string, number>();
  const add = (t: string): number => {
    let id = ids.get(t);
    if (id === undefined) {
      id = vocab.length;
      vocab.push(t);
      ids.set(t, id);
    }
    return id;
  };
  for (const s of specials) add(s);
  if (byteFallback) { for (let i = 0; i < 256; i++) add(byteToken(i)); }
  const charCounts = new Map<string, number>();
  let nSpaces = 0; // every word starts with one ▁
  for (const [w, c] of wordCounts) {
    nSpaces += c;
    for (const ch of w) charCounts.set(ch, (charCounts.get(ch) ?? 0) + c);
  }
  for (const [w, c] of bareCounts) {
    for (const ch of w) charCounts.set(ch, (charCounts.get(ch) ?? 0) + c);
  }
  if (nSpaces > 0) charCounts.set(METASPACE, nSpaces);
  // with splitDigits every digit is a token, seen in the texts or not (numbers unseen in
  // training then still encode digit by digit, not as <unk>), kept first when room is short
  const DIGITS = "0123456789";
  if (splitDigits) { for (const d of DIGITS) if (!charCounts.has(d)) charCounts.set(d, 0); }
  const rank = (ch: string) => splitDigits && DIGITS.includes(ch) ? Infinity : charCounts.get(ch)!;
  let alphabet = [...charCounts.keys()];
  const room = opts.limitAlphabet ?? Infinity;
  if (alphabet.length > room) {
    alphabet.sort((x, y) => rank(y) - rank(x) || cmpCodePoints(x, y));
    alphabet = alphabet.slice(0, room);
  }
  alphabet.sort(cmpCodePoints);
  for (const ch of alphabet) add(ch);

  // 3. Words as symbol ids (-1: a character outside the alphabet, which never merges).
  const nWords = wordCounts.size + bareCounts.size;
  const words: Int32Array[] = new Array(nWords);
  const lens = new Int32Array(nWords);
  const counts = new Float64Array(nWords);
  {
    let w = 0;
    for (const [word, c] of wordCounts) {
      const syms: number[] = [ids.get(METASPACE) ?? -1];
      for (const ch of word) syms.push(ids.get(ch) ?? -1);
      words[w] = Int32Array.from(syms);
      lens[w] = syms.length;
      counts[w] = c;
      w++;
    }
    for (const [piece, c] of bareCounts) {
      const syms: number[] = [];
      for (const ch of piece) syms.push(ids.get(ch) ?? -1);
      words[w] = Int32Array.from(syms);
      lens[w] = syms.length;
      counts[w] = c;
      w++;
    }
  }
  wordCounts.clear();
  bareCounts.clear();

  // 4. Pair counts, pair → words index, max-heap of (count, pair).
  // pair key = a * W + b; ids stay below vocabSize, or the alphabet's end when that is larger
  const W = Math.max(opts.vocabSize, vocab.length) + 1;
  const pairCounts = new Map<number, number>();
  const where = new Map<number, number[]>();
  const heap = new PairHeap();
  for (let w = 0; w < nWords; w++) {
    const s = words[w];
    const c = counts[w];
    for (let i = 0; i + 1 < lens[w]; i++) {
      if (s[i] < 0 || s[i + 1] < 0) continue;
      const k = s[i] * W + s[i + 1];
      pairCounts.set(k, (pairCounts.get(k) ?? 0) + c);
      const list = where.get(k);
      if (list === undefined) where.set(k, [w]);
      else if (list[list.length - 1] !== w) list.push(w);
    }
  }
  for (const [k, c] of pairCounts) heap.push(c, k);
  progress({ phase: "merge", texts: nTexts, words: nWords, merges: 0, vocabSize: vocab.length });

  // 5. Merge the most frequent pair until the vocab is full.
  const merges: [string, string][] = [];
  const seen = new Int32Array(nWords).fill(-1);
  const touched = new Set<number>();
  let c = 0; // count of the word being rewritten, used by inc/dec
  let wi = 0; // index of that word
  const dec = (k: number) => {
    const v = (pairCounts.get(k) ?? 0) - c;
    if (v > 0) pairCounts.set(k, v);
    else pairCounts.delete(k);
  };
  const inc = (k: number) => {
    pairCounts.set(k, (pairCounts.get(k) ?? 0) + c);
    const list = where.get(k);
    if (list === undefined) where.set(k, [wi]);
    else if (list[list.length - 1] !== wi) list.push(wi);
    touched.add(k);
  };
  while (vocab.length < opts.vocabSize && heap.size > 0) {
    const [count, key] = heap.pop();
    const current = pairCounts.get(key) ?? 0;
    if (current !== count) {
      // Stale entry: a newer one exists when the count grew; re-queue when it shrank.
      if (current > 0 && current < count) heap.push(current, key);
      continue;
    }
    if (count < minFrequency) break;
    const a = Math.floor(key / W);
    const b = key - a * W;
    const n = add(vocab[a] + vocab[b]);
    merges.push([vocab[a], vocab[b]]);
    const list = where.get(key) ?? [];
    where.delete(key);
    touched.clear();
    const stamp = merges.length;
    for (const w of list) {
      if (seen[w] === stamp) continue;
      seen[w] = stamp;
      const s = words[w];
      const len = lens[w];
      c = counts[w];
      wi = w;
      let j = 0;
      for (let i = 0; i < len;) {
        if (s[i] === a && i + 1 < len && s[i + 1] === b) {
          if (j > 0 && s[j - 1] >= 0) {
            dec(s[j - 1] * W + a);
            inc(s[j - 1] * W + n);
          }
          if (i + 2 < len && s[i + 2] >= 0) {
            dec(b * W + s[i + 2]);
            inc(n * W + s[i + 2]);
          }
          s[j++] = n;
          i += 2;
        } else s[j++] = s[i++];
      }
      lens[w] = j;
    }
    pairCounts.delete(key);
    for (const k of touched) {
      const v = pairCounts.get(k);
      if (v !== undefined && v > 0) heap.push(v, k);
    }
    if (merges.length % 1000 === 0) {
      progress({
        phase: "merge",
        texts: nTexts,
        words: nWords,
        merges: merges.length,
        vocabSize: vocab.length,
      });
    }
  }
  return new TrainedTokenizer({
    vocab,
    merges,
    specialTokens: specials,
    unkToken,
    byteFallback,
    splitDigits,
  });
}

/**
 * The {@linkcode TrainedTokenizer} that encodes and decodes exactly as `@huggingface/tokenizers`
 * does with the parsed `tokenizer.json` `obj`, when `obj` has the pipeline {@linkcode trainBpe}
 * writes (NFC, Metaspace "always", BPE over code points, special added tokens, no
 * post-processor); otherwise null. Loaders use it as a fast path.
 */
export function trainedTokenizerFromObject(obj: unknown): TrainedTokenizer | null {
  const o = obj;
  if (!isPlainObject(o) || o.post_processor != null) return null;
  const isMetaspace = (x: unknown) =>
    isPlainObject(x) && x.type === "Metaspace" && x.replacement === METASPACE &&
    x.prepend_scheme === "always" && (x.str_rep === undefined || x.str_rep === METASPACE);
  if (!isPlainObject(o.normalizer) || o.normalizer.type !== "NFC") return null;
  const pre = o.pre_tokenizer;
  const splitDigits = !isMetaspace(pre);
  if (
    splitDigits &&
    !(isPlainObject(pre) && pre.type === "Sequence" && Array.isArray(pre.pretokenizers) &&
      pre.pretokenizers.length === 2 && isMetaspace(pre.pretokenizers[0]) &&
      isPlainObject(pre.pretokenizers[1]) && pre.pretokenizers[1].type === "Digits" &&
      pre.pretokenizers[1].individual_digits === true)
  ) return null;
  const m = o.model;
  if (!isPlainObject(m) || m.type !== "BPE" || !isPlainObject(m.vocab)) return null;
  if (m.dropout != null || m.continuing_subword_prefix || m.end_of_word_suffix) return null;
  if (m.fuse_unk || m.ignore_merges || !Array.isArray(m.merges)) return null;
  const byteFallback = m.byte_fallback === true;
  const d = o.decoder;
  const decoderOk = byteFallback
    ? isPlainObject(d) && d.type === "Sequence" && Array.isArray(d.decoders) &&
      d.decoders.length === 2 && d.decoders[0]?.type === "ByteFallback" &&
      isMetaspace(d.decoders[1])
    : isMetaspace(d);
  if (!decoderOk) return null;
  const entries = Object.entries(m.vocab as Record<string, unknown>);
  const vocab: string[] = new Array(entries.length);
  for (const [t, id] of entries) {
    if (!Number.isInteger(id) || (id as number) < 0 || (id as number) >= entries.length) {
      return null;
    }
    if (vocab[id as number] !== undefined) return null;
    vocab[id as number] = t;
  }
  const specials: string[] = [];
  for (const a of o.added_tokens ?? []) {
    if (!isPlainObject(a) || a.special !== true || a.normalized !== false) return null;
    if (a.lstrip || a.rstrip || a.single_word) return null;
    if (typeof a.content !== "string" || vocab[a.id as number] !== a.content) return null;
    specials.push(a.content);
  }
  const unk = m.unk_token ?? null;
  if (unk !== null && (typeof unk !== "string" || !Object.hasOwn(m.vocab, unk))) return null;
  const merges: [string, string][] = [];
  for (const x of m.merges as unknown[]) {
    const pair = typeof x === "string" ? x.split(" ") : x;
    if (!Array.isArray(pair) || pair.length !== 2) return null;
    const [a, b] = pair;
    // A merge whose right part starts with ▁ would join words, which word-by-word encoding
    // cannot reproduce (the library encodes a whole section at once).
    if (typeof a !== "string" || typeof b !== "string" || b.startsWith(METASPACE)) return null;
    merges.push([a, b]);
  }
  try {
    return new TrainedTokenizer({
      vocab,
      merges,
      specialTokens: specials,
      unkToken: unk,
      byteFallback,
      splitDigits,
    });
  } catch {
    return null; // e.g. a merge whose result is not in the vocab
  }
}

// deno-lint-ignore no-explicit-any
type Loose = any; // parsed JSON, checked field by field

function isPlainObject(x: unknown): x is Record<string, Loose> {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

/**
 * Splits `text` as the written pipeline does: special tokens first (longest match, leftmost),
 * then each remaining section is NFC-normalized, spaces become `▁`, a `▁` is prepended, and the
 * section splits into words before each `▁`. `onWord` gets each word WITHOUT its leading `▁`
 * (every word has exactly one, at the start).
 */
function preTokenize(
  text: string,
  specialRe: RegExp | null,
  onWord: (rest: string) => void,
  onSpecial: (token: string) => void,
): void {
  if (specialRe === null) {
    section(text, onWord);
    return;
  }
  let start = 0;
  specialRe.lastIndex = 0;
  for (let m = specialRe.exec(text); m !== null; m = specialRe.exec(text)) {
    section(text.slice(start, m.index), onWord);
    onSpecial(m[0]);
    start = m.index + m[0].length;
  }
  section(start === 0 ? text : text.slice(start), onWord);
}

/** Code points below U+0300 are never changed by NFC (no combining marks, no exclusions). */
const MAYBE_NOT_NFC = /[\u0300-\uffff]/;

function section(s: string, onWord: (rest: string) => void): void {
  if (s.length === 0) return;
  if (MAYBE_NOT_NFC.test(s)) s = s.normalize("NFC");
  if (s.length === 0) return;
  if (!s.includes(METASPACE)) {
    // Fast path: the words are the space-separated pieces, each behind a ▁; a leading space
    // stands for the prepended ▁ and so adds no word of its own.
    const pieces = s.split(" ");
    for (let i = s.charCodeAt(0) === 32 ? 1 : 0; i < pieces.length; i++) onWord(pieces[i]);
    return;
  }
  s = s.replaceAll(" ", METASPACE);
  let start = s.charCodeAt(0) === 0x2581 ? 1 : 0;
  for (let i = start; i < s.length; i++) {
    if (s.charCodeAt(i) === 0x2581) {
      onWord(s.slice(start, i));
      start = i + 1;
    }
  }
  onWord(s.slice(start));
}

const ASCII_DIGIT = /[0-9]/;
const DIGIT_PIECES = /[0-9]|[^0-9]+/g;

/**
 * Splits the Metaspace word `▁${rest}` as the `Digits` pre-tokenizer (individual digits) does:
 * `onWord` gets the text before the first digit (the piece keeps the word's ▁, so it may be
 * empty: a lone ▁), `onBare` each digit and each run of non-digits after it.
 */
function splitDigitPieces(
  rest: string,
  onWord: (rest: string) => void,
  onBare: (piece: string) => void,
): void {
  const first = rest.search(ASCII_DIGIT);
  if (first < 0) {
    onWord(rest);
    return;
  }
  onWord(rest.slice(0, first));
  DIGIT_PIECES.lastIndex = first;
  for (let m = DIGIT_PIECES.exec(rest); m !== null; m = DIGIT_PIECES.exec(rest)) onBare(m[0]);
}

/** A regex matching any special token, longest first (as the library's dictionary splitter). */
function specialTokenRegExp(specials: readonly string[]): RegExp | null {
  if (specials.length === 0) return null;
  const sorted = [...specials].sort((x, y) => y.length - x.length);
  return new RegExp(sorted.map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join("|"), "g");
}

function byteToken(byte: number): string {
  return `<0x${byte.toString(16).toUpperCase().padStart(2, "0")}>`;
}

function parseByteToken(t: string): number {
  if (t.length !== 6 || !t.startsWith("<0x") || t[5] !== ">") return -1;
  const v = parseInt(t.slice(3, 5), 16);
  return Number.isNaN(v) ? -1 : v;
}

function cmpCodePoints(x: string, y: string): number {
  return x.codePointAt(0)! - y.codePointAt(0)!;
}

/** A binary max-heap of (count, key): larger count first, then smaller key. */
class PairHeap {
  #c: number[] = [];
  #k: number[] = [];

  get size(): number {
    return this.#c.length;
  }

  push(count: number, key: number): void {
    const c = this.#c;
    const k = this.#k;
    let i = c.length;
    c.push(count);
    k.push(key);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.#above(count, key, c[p], k[p])) break;
      c[i] = c[p];
      k[i] = k[p];
      i = p;
    }
    c[i] = count;
    k[i] = key;
  }

  pop(): [number, number] {
    const c = this.#c;
    const k = this.#k;
    const top: [number, number] = [c[0], k[0]];
    const lastC = c.pop()!;
    const lastK = k.pop()!;
    const n = c.length;
    if (n > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= n) break;
        const r = l + 1;
        const m = r < n && this.#above(c[r], k[r], c[l], k[l]) ? r : l;
        if (!this.#above(c[m], k[m], lastC, lastK)) break;
        c[i] = c[m];
        k[i] = k[m];
        i = m;
      }
      c[i] = lastC;
      k[i] = lastK;
    }
    return top;
  }

  #above(c1: number, k1: number, c2: number, k2: number): boolean {
    return c1 > c2 || (c1 === c2 && k1 < k2);
  }
}
