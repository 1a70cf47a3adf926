/**
 * BLEU with the exact semantics of NLTK's `nltk.translate.bleu_score`
 * (`sentence_bleu`, `corpus_bleu`, `SmoothingFunction` methods 0–7), and a
 * sacreBLEU-style corpus BLEU on the 0–100 scale with its `13a` tokenizer.
 *
 * NLTK details reproduced on purpose (they change scores):
 * - modified precision clips each hypothesis n-gram count by its largest count
 *   in any one reference; its denominator is at least 1 per sentence, so a
 *   sentence shorter than n adds 1 to the corpus denominator of order n;
 * - the closest reference length breaks ties towards the shorter reference;
 * - the result is 0 when no unigram matches, before any smoothing;
 * - method0 replaces a zero precision with `sys.float_info.min`, so the score
 *   is tiny but not exactly 0 (e.g. 5.9e-155), as NLTK returns it;
 * - precisions that are still not positive after smoothing are skipped in the
 *   weighted log sum, which NLTK takes with `math.fsum`;
 * - in `corpus_bleu`, methods 4–7 see the corpus hypothesis length but the
 *   last sentence's references and hypothesis (Python's leaked loop
 *   variables): method5's 5-gram precision and method6's n-gram counts come
 *   from the last pair;
 * - method6 fails (NLTK: AssertionError) when the trigram precision is 0.
 *
 * webseq's default smoothing is method1 (CONTRACTS.md §5); NLTK's own
 * default is method0 — pass `{ smoothing: 0 }` for it.
 *
 * @example
 * ```ts
 * import { sentenceBleuText } from "@webseq/webseq";
 * const s = sentenceBleuText(["the cat is on the mat"], "the cat sat on the mat");
 * console.log(s.toFixed(4));
 * ```
 *
 * @module
 */

/** Options of {@linkcode sentenceBleu} and {@linkcode corpusBleu} (NLTK's arguments). */
export interface BleuOptions {
  /** Weights of the 1..N-gram log precisions. Default `[0.25, 0.25, 0.25, 0.25]` (BLEU-4). */
  weights?: readonly number[];
  /** NLTK `SmoothingFunction().method{N}`, 0–7. Default 1 (webseq's default; NLTK's is 0). */
  smoothing?: number;
  /** `epsilon` of method1. Default 0.1. */
  epsilon?: number;
  /** `alpha` of method6. Default 5. */
  alpha?: number;
  /** `k` of method4 (and 7). Default 5. */
  k?: number;
  /** NLTK's `auto_reweigh`: uniform weights over hypothesis length when it is < 4 and weights are BLEU-4. Default false. */
  autoReweigh?: boolean;
}

/** Corpus BLEU with its parts, as {@linkcode corpusBleuDetails} returns it. */
export interface BleuDetails {
  /** The BLEU score, 0–1. */
  bleu: number;
  /** Clipped n-gram matches per order (summed over sentences). */
  numerators: number[];
  /** Hypothesis n-gram counts per order (each sentence at least 1). */
  denominators: number[];
  /** Unsmoothed precisions `numerators[i] / denominators[i]`. */
  precisions: number[];
  /** Brevity penalty. */
  brevityPenalty: number;
  /** Total hypothesis length (tokens). */
  hypLength: number;
  /** Total closest-reference length (tokens). */
  refLength: number;
}

/** A precision kept as NLTK keeps it: an unreduced fraction or, after smoothing, a float. */
interface Precision {
  value: number;
  /** Set while the value is still NLTK's unnormalized `Fraction`. */
  numerator?: number;
  denominator?: number;
}

const DEFAULT_WEIGHTS: readonly number[] = [0.25, 0.25, 0.25, 0.25];
/** Python's `sys.float_info.min` (smallest normal double). */
const FLOAT_INFO_MIN = 2.2250738585072014e-308;

/** Characters that Python's `str.split()` treats as whitespace (it includes \x1c–\x1f and \x85). */
const PY_WHITESPACE_CLASS =
  "[\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]";
const PY_WHITESPACE = new RegExp(`${PY_WHITESPACE_CLASS}+`);
const PY_TRAILING_WHITESPACE = new RegExp(`${PY_WHITESPACE_CLASS}+$`);

/**
 * Splits on runs of whitespace exactly as Python's `str.split()` does (the
 * tokenization NLTK users apply with `.split()`); no empty tokens.
 */
export function splitWhitespace(text: string): string[] {
  return text.split(PY_WHITESPACE).filter((t) => t.length > 0);
}

/** Interns tokens as integers so that n-gram keys are short and collision-free. */
class NgramKeys {
  #ids = new Map<string, number>();
  encode(tokens: readonly string[]): number[] {
    return tokens.map((t) => {
      let id = this.#ids.get(t);
      if (id === undefined) {
        id = this.#ids.size;
        this.#ids.set(t, id);
      }
      return id;
    });
  }
}

function countNgrams(ids: readonly number[], n: number): Map<string, number> {
  const counts = new Map<string, number>();
  for (let i = 0; i + n <= ids.length; i++) {
    const key = n === 1 ? String(ids[i]) : ids.slice(i, i + n).join(",");
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return counts;
}

function modifiedPrecisionIds(
  refs: readonly number[][],
  hyp: readonly number[],
  n: number,
): { numerator: number; denominator: number } {
  const counts = countNgrams(hyp, n);
  const maxCounts = new Map<string, number>();
  for (const ref of refs) {
    const refCounts = countNgrams(ref, n);
    for (const key of counts.keys()) {
      maxCounts.set(key, Math.max(maxCounts.get(key) ?? 0, refCounts.get(key) ?? 0));
    }
  }
  let numerator = 0;
  let total = 0;
  for (const [key, c] of counts) {
    numerator += Math.min(c, maxCounts.get(key) ?? 0);
    total += c;
  }
  return { numerator, denominator: Math.max(1, total) };
}

/**
 * NLTK's `modified_precision`: clipped n-gram matches over hypothesis n-grams,
 * unreduced (the denominator is at least 1).
 */
export function modifiedPrecision(
  references: readonly (readonly string[])[],
  hypothesis: readonly string[],
  n: number,
): { numerator: number; denominator: number } {
  if (!Number.isInteger(n) || n < 1) {
    throw new RangeError(`modifiedPrecision: n must be a positive integer, got ${n}`);
  }
  const keys = new NgramKeys();
  return modifiedPrecisionIds(references.map((r) => keys.encode(r)), keys.encode(hypothesis), n);
}

/** NLTK's `closest_ref_length`: the reference length closest to `hypLen`, ties to the shorter. */
export function closestRefLength(refLengths: readonly number[], hypLen: number): number {
  if (refLengths.length === 0) {
    throw new TypeError("closestRefLength: no references (each hypothesis needs at least one)");
  }
  let best = refLengths[0];
  for (const r of refLengths) {
    const d = Math.abs(r - hypLen);
    const bd = Math.abs(best - hypLen);
    if (d < bd || (d === bd && r < best)) best = r;
  }
  return best;
}

/** NLTK's `brevity_penalty`: 1 when longer than the reference, 0 when empty, else `exp(1 - r/h)`. */
export function brevityPenalty(closestRefLen: number, hypLen: number): number {
  if (hypLen > closestRefLen) return 1;
  if (hypLen === 0) return 0;
  return Math.exp(1 - closestRefLen / hypLen);
}

/**
 * Python's `math.fsum`: the correctly rounded sum (Shewchuk's algorithm with
 * CPython's half-even fix-up), so that the log sum matches NLTK bit for bit.
 */
export function fsum(values: Iterable<number>): number {
  const p: number[] = [];
  let special = 0;
  for (let x of values) {
    if (!Number.isFinite(x)) {
      special += x;
      continue;
    }
    let i = 0;
    for (let j = 0; j < p.length; j++) {
      let y = p[j];
      if (Math.abs(x) < Math.abs(y)) [x, y] = [y, x];
      const hi = x + y;
      const lo = y - (hi - x);
      if (lo !== 0) p[i++] = lo;
      x = hi;
    }
    p.length = i;
    p.push(x);
  }
  if (special !== 0 || Number.isNaN(special)) return special;
  let n = p.length;
  let hi = 0;
  if (n > 0) {
    hi = p[--n];
    let lo = 0;
    while (n > 0) {
      const x = hi;
      const y = p[--n];
      hi = x + y;
      const yr = hi - x;
      lo = y - yr;
      if (lo !== 0) break;
    }
    if (n > 0 && ((lo < 0 && p[n - 1] < 0) || (lo > 0 && p[n - 1] > 0))) {
      const y = lo * 2;
      const x = hi + y;
      const yr = x - hi;
      if (y === yr) hi = x;
    }
  }
  return hi;
}

function fraction(numerator: number, denominator: number): Precision {
  return { value: numerator / denominator, numerator, denominator };
}

/**
 * NLTK's SmoothingFunction methods. `last` is the pair NLTK's loop variables
 * point at (the last sentence), `hypLen` the corpus hypothesis length.
 */
function smooth(
  method: number,
  pn: Precision[],
  last: { refs: number[][]; hyp: number[] },
  hypLenIn: number,
  o: { epsilon: number; alpha: number; k: number },
): Precision[] {
  const hypLen = hypLenIn ? hypLenIn : last.hyp.length;
  const method4 = (p: Precision[]): Precision[] => {
    let incvnt = 1;
    return p.map((pi) => {
      if (pi.numerator === 0 && hypLen > 1) {
        const numerator = 1 / ((2 ** incvnt * o.k) / Math.log(hypLen));
        incvnt++;
        return { value: numerator / pi.denominator! };
      }
      return pi;
    });
  };
  const method5 = (p: Precision[]): Precision[] => {
    const five = modifiedPrecisionIds(last.refs, last.hyp, 5);
    const plus1 = [...p.map((x) => x.value), five.numerator / five.denominator];
    const out: Precision[] = [];
    let prev = p[0].value + 1;
    for (let i = 0; i < p.length; i++) {
      const v = (prev + p[i].value + plus1[i + 1]) / 3;
      out.push({ value: v });
      prev = v;
    }
    return out;
  };
  switch (method) {
    case 0:
      return pn.map((pi) => (pi.numerator !== 0 ? pi : { value: FLOAT_INFO_MIN }));
    case 1:
      return pn.map((pi) =>
        pi.numerator === 0 ? { value: (pi.numerator + o.epsilon) / pi.denominator! } : pi
      );
    case 2:
      return pn.map((pi, i) => (i !== 0 ? fraction(pi.numerator! + 1, pi.denominator! + 1) : pi));
    case 3: {
      let incvnt = 1;
      return pn.map((pi) => {
        if (pi.numerator !== 0) return pi;
        const v = 1 / (2 ** incvnt * pi.denominator!);
        incvnt++;
        return { value: v };
      });
    }
    case 4:
      return method4(pn);
    case 5:
      return method5(pn);
    case 6: {
      if (pn.length < 3) {
        throw new RangeError(
          "BLEU smoothing method 6 needs at least 3 n-gram orders (NLTK raises IndexError)",
        );
      }
      if (pn[2].value === 0) {
        throw new RangeError(
          "BLEU smoothing method 6 needs a non-zero trigram precision (NLTK raises AssertionError)",
        );
      }
      const out = pn.slice();
      for (let i = 2; i < out.length; i++) {
        const pi0 = out[i - 2].value === 0 ? 0 : out[i - 1].value ** 2 / out[i - 2].value;
        const m = pn[i].numerator!;
        const l = Math.max(0, last.hyp.length - i);
        out[i] = { value: (m + o.alpha * pi0) / (l + o.alpha) };
      }
      return out;
    }
    case 7:
      return method5(method4(pn));
    default:
      throw new RangeError(`BLEU smoothing method must be an integer 0–7, got ${method}`);
  }
}

function checkOptions(opts: BleuOptions): Required<BleuOptions> {
  const weights = opts.weights ?? DEFAULT_WEIGHTS;
  if (weights.length === 0 || !weights.every((w) => Number.isFinite(w))) {
    throw new TypeError("BLEU weights must be a non-empty list of finite numbers");
  }
  const smoothing = opts.smoothing ?? 1;
  if (!Number.isInteger(smoothing) || smoothing < 0 || smoothing > 7) {
    throw new RangeError(`BLEU smoothing method must be an integer 0–7, got ${smoothing}`);
  }
  return {
    weights,
    smoothing,
    epsilon: opts.epsilon ?? 0.1,
    alpha: opts.alpha ?? 5,
    k: opts.k ?? 5,
    autoReweigh: opts.autoReweigh ?? false,
  };
}

/**
 * Corpus BLEU (NLTK `corpus_bleu`) with its n-gram statistics and brevity
 * penalty. `listOfReferences[i]` holds the token lists of the references of
 * `hypotheses[i]`.
 */
export function corpusBleuDetails(
  listOfReferences: readonly (readonly (readonly string[])[])[],
  hypotheses: readonly (readonly string[])[],
  opts: BleuOptions = {},
): BleuDetails {
  const o = checkOptions(opts);
  if (listOfReferences.length !== hypotheses.length) {
    throw new TypeError(
      `corpusBleu: ${hypotheses.length} hypotheses but ${listOfReferences.length} reference sets`,
    );
  }
  if (hypotheses.length === 0) {
    throw new RangeError("corpusBleu: the corpus is empty (NLTK raises ZeroDivisionError)");
  }
  const N = o.weights.length;
  const numerators = new Array<number>(N).fill(0);
  const denominators = new Array<number>(N).fill(0);
  let hypLength = 0;
  let refLength = 0;
  const keys = new NgramKeys();
  let last = { refs: [] as number[][], hyp: [] as number[] };
  for (let s = 0; s < hypotheses.length; s++) {
    const refs = listOfReferences[s].map((r) => keys.encode(r));
    const hyp = keys.encode(hypotheses[s]);
    if (refs.length === 0) throw new TypeError(`corpusBleu: hypothesis ${s} has no references`);
    for (let n = 1; n <= N; n++) {
      const p = modifiedPrecisionIds(refs, hyp, n);
      numerators[n - 1] += p.numerator;
      denominators[n - 1] += p.denominator;
    }
    hypLength += hyp.length;
    refLength += closestRefLength(refs.map((r) => r.length), hyp.length);
    last = { refs, hyp };
  }
  const bp = brevityPenalty(refLength, hypLength);
  const precisions = numerators.map((num, i) => num / denominators[i]);
  const details = {
    numerators,
    denominators,
    precisions,
    brevityPenalty: bp,
    hypLength,
    refLength,
  };
  if (numerators[0] === 0) return { bleu: 0, ...details };

  const pn = smooth(
    o.smoothing,
    numerators.map((num, i) => fraction(num, denominators[i])),
    last,
    hypLength,
    o,
  );
  let weights = o.weights;
  if (
    o.autoReweigh && hypLength < 4 && weights.length === 4 && weights.every((w) => w === 0.25)
  ) {
    weights = new Array<number>(hypLength).fill(1 / hypLength);
  }
  const terms: number[] = [];
  for (let i = 0; i < Math.min(weights.length, pn.length); i++) {
    if (pn[i].value > 0) terms.push(weights[i] * Math.log(pn[i].value));
  }
  return { bleu: bp * Math.exp(fsum(terms)), ...details };
}

/** NLTK `corpus_bleu` on token lists (0–1). */
export function corpusBleu(
  listOfReferences: readonly (readonly (readonly string[])[])[],
  hypotheses: readonly (readonly string[])[],
  opts: BleuOptions = {},
): number {
  return corpusBleuDetails(listOfReferences, hypotheses, opts).bleu;
}

/** NLTK `sentence_bleu` on token lists (0–1): corpus BLEU of one sentence. */
export function sentenceBleu(
  references: readonly (readonly string[])[],
  hypothesis: readonly string[],
  opts: BleuOptions = {},
): number {
  return corpusBleuDetails([references], [hypothesis], opts).bleu;
}

/** {@linkcode sentenceBleu} on strings, tokenized with {@linkcode splitWhitespace}. */
export function sentenceBleuText(
  references: readonly string[],
  hypothesis: string,
  opts: BleuOptions = {},
): number {
  return sentenceBleu(references.map(splitWhitespace), splitWhitespace(hypothesis), opts);
}

/**
 * {@linkcode corpusBleu} on strings, tokenized with {@linkcode splitWhitespace};
 * `references[i]` holds the reference strings of `hypotheses[i]`.
 */
export function corpusBleuText(
  references: readonly (readonly string[])[],
  hypotheses: readonly string[],
  opts: BleuOptions = {},
): number {
  return corpusBleu(
    references.map((rs) => rs.map(splitWhitespace)),
    hypotheses.map(splitWhitespace),
    opts,
  );
}

/** Sentence BLEU of every pair, their mean and corpus BLEU, as `webseq bleu` and `eval --bleu` report them. */
export interface BleuSummary {
  /** Sentence BLEU per hypothesis (0–1). */
  sentence: number[];
  /** Mean of `sentence`. */
  sentenceMean: number;
  /** Corpus BLEU (0–1). */
  corpus: number;
}

/**
 * Sentence BLEU per pair, its mean, and corpus BLEU on whitespace tokens.
 * `references[i]` holds the reference strings of `hypotheses[i]`. An error
 * for one sentence (method 6) names its index.
 */
export function bleuSummary(
  references: readonly (readonly string[])[],
  hypotheses: readonly string[],
  opts: BleuOptions = {},
): BleuSummary {
  const refs = references.map((rs) => rs.map(splitWhitespace));
  const hyps = hypotheses.map(splitWhitespace);
  const sentence = hyps.map((h, i) => {
    try {
      return sentenceBleu(refs[i], h, opts);
    } catch (err) {
      if (err instanceof RangeError) throw new RangeError(`sentence ${i}: ${err.message}`);
      throw err;
    }
  });
  const corpus = corpusBleu(refs, hyps, opts);
  let sum = 0;
  for (const x of sentence) sum += x;
  return { sentence, sentenceMean: sum / sentence.length, corpus };
}

// ---------------------------------------------------------------- sacreBLEU style

/** Options of {@linkcode corpusSacreBleu} (sacreBLEU 2.x `BLEU(...)` arguments). */
export interface SacreBleuOptions {
  /** Lowercase before tokenizing. Default false. */
  lowercase?: boolean;
  /** `"13a"` (mteval-v13a, sacreBLEU's default) or `"none"` (split on whitespace). */
  tokenize?: "13a" | "none";
  /** `"exp"` (default), `"floor"`, `"add-k"` or `"none"`. */
  smoothMethod?: "exp" | "floor" | "add-k" | "none";
  /** Value of `floor` (default 0.1) and `add-k` (default 1). */
  smoothValue?: number;
  /** Drop n-gram orders the hypothesis has none of. Default false (true for sentences). */
  effectiveOrder?: boolean;
  /** Highest n-gram order. Default 4. */
  maxNgramOrder?: number;
}

/** A sacreBLEU-style score (0–100) with the statistics sacreBLEU prints. */
export interface SacreBleuScore {
  /** BLEU, 0–100. */
  score: number;
  /** Clipped matches per order. */
  counts: number[];
  /** Hypothesis n-grams per order. */
  totals: number[];
  /** Precisions per order, 0–100 (smoothed as sacreBLEU reports them). */
  precisions: number[];
  /** Brevity penalty. */
  bp: number;
  /** Hypothesis length / reference length (0 when the reference is empty). */
  ratio: number;
  /** Total hypothesis tokens. */
  sysLen: number;
  /** Total closest-reference tokens. */
  refLen: number;
  /** sacreBLEU's reproducibility signature, e.g. `nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.x`. */
  signature: string;
  /** sacreBLEU's one-line summary: `BLEU = 40.15 81.8/55.6/28.6/20.0 (BP = 1.000 ratio = 1.100 hyp_len = 11 ref_len = 10)`. */
  text: string;
}

/**
 * sacreBLEU's `13a` tokenizer (mteval-v13a): unescapes a few entities and
 * splits punctuation, keeping `.` and `,` inside numbers and `-` after a digit
 * split. Returns the tokens joined by single spaces.
 */
export function tokenize13a(line: string): string {
  let s = line.replaceAll("<skipped>", "").replaceAll("-\n", "").replaceAll("\n", " ");
  if (s.includes("&")) {
    s = s.replaceAll("&quot;", '"').replaceAll("&amp;", "&").replaceAll("&lt;", "<")
      .replaceAll("&gt;", ">");
  }
  s = ` ${s} `;
  s = s.replace(/([{-~[-`\x20-&(-+:-@/])/g, " $1 ");
  s = s.replace(/([^0-9])([.,])/g, "$1 $2 ");
  s = s.replace(/([.,])([^0-9])/g, " $1 $2");
  s = s.replace(/([0-9])(-)/g, "$1 $2 ");
  return splitWhitespace(s).join(" ");
}

/** Python's `str.rstrip()` (Python whitespace). */
function rstripPy(s: string): string {
  return s.replace(PY_TRAILING_WHITESPACE, "");
}

const SMOOTH_DEFAULTS: Record<string, number | undefined> = {
  none: undefined,
  floor: 0.1,
  "add-k": 1,
  exp: undefined,
};

/**
 * sacreBLEU-style corpus BLEU (0–100) with the `13a` tokenizer and `exp`
 * smoothing by default; equals sacreBLEU 2.x `BLEU().corpus_score` (checked
 * against it in the tests). `references[i]` holds the references of
 * `hypotheses[i]` (sacreBLEU takes reference streams instead; same data).
 * Differences: lowercasing uses JavaScript's `toLowerCase` (Python's
 * `str.lower` differs for a handful of characters); only the `13a` and
 * `none` tokenizers exist.
 */
export function corpusSacreBleu(
  references: readonly (readonly string[])[],
  hypotheses: readonly string[],
  opts: SacreBleuOptions = {},
): SacreBleuScore {
  const tokenize = opts.tokenize ?? "13a";
  const smoothMethod = opts.smoothMethod ?? "exp";
  if (!(smoothMethod in SMOOTH_DEFAULTS)) {
    throw new RangeError(
      `sacreBLEU smoothMethod must be exp, floor, add-k or none, got ${smoothMethod}`,
    );
  }
  if (tokenize !== "13a" && tokenize !== "none") {
    throw new RangeError(`sacreBLEU tokenize must be 13a or none, got ${tokenize}`);
  }
  const order = opts.maxNgramOrder ?? 4;
  if (!Number.isInteger(order) || order < 1) {
    throw new RangeError(`sacreBLEU maxNgramOrder must be a positive integer, got ${order}`);
  }
  if (references.length !== hypotheses.length) {
    throw new TypeError(
      `sacreBleu: ${hypotheses.length} hypotheses but ${references.length} reference sets`,
    );
  }
  const prep = (s: string): string[] => {
    const t = rstripPy(opts.lowercase ? s.toLowerCase() : s);
    return splitWhitespace(tokenize === "13a" ? tokenize13a(t) : t);
  };
  const keys = new NgramKeys();
  const correct = new Array<number>(order).fill(0);
  const total = new Array<number>(order).fill(0);
  let sysLen = 0;
  let refLen = 0;
  const nrefs = new Set<number>();
  for (let s = 0; s < hypotheses.length; s++) {
    const refs = references[s].map((r) => keys.encode(prep(r)));
    nrefs.add(refs.length);
    if (refs.length === 0) throw new TypeError(`sacreBleu: hypothesis ${s} has no references`);
    const hyp = keys.encode(prep(hypotheses[s]));
    sysLen += hyp.length;
    refLen += closestRefLength(refs.map((r) => r.length), hyp.length);
    for (let n = 1; n <= order; n++) {
      const h = countNgrams(hyp, n);
      const maxRef = new Map<string, number>();
      for (const r of refs) {
        for (const [k, c] of countNgrams(r, n)) maxRef.set(k, Math.max(maxRef.get(k) ?? 0, c));
      }
      for (const [k, c] of h) {
        total[n - 1] += c;
        correct[n - 1] += Math.min(c, maxRef.get(k) ?? 0);
      }
    }
  }
  const smoothValue = opts.smoothValue ?? SMOOTH_DEFAULTS[smoothMethod];
  const effectiveOrder = opts.effectiveOrder ?? false;
  const bp = sysLen < refLen ? (sysLen > 0 ? Math.exp(1 - refLen / sysLen) : 0) : 1;
  const precisions = new Array<number>(order).fill(0);
  let score = 0;
  if (correct.some((c) => c !== 0)) {
    let smoothMteval = 1;
    let effOrder = order;
    for (let n = 1; n <= order; n++) {
      if (smoothMethod === "add-k" && n > 1) {
        correct[n - 1] += smoothValue!;
        total[n - 1] += smoothValue!;
      }
      if (total[n - 1] === 0) break;
      if (effectiveOrder) effOrder = n;
      if (correct[n - 1] === 0) {
        if (smoothMethod === "exp") {
          smoothMteval *= 2;
          precisions[n - 1] = 100 / (smoothMteval * total[n - 1]);
        } else if (smoothMethod === "floor") {
          precisions[n - 1] = (100 * smoothValue!) / total[n - 1];
        }
      } else {
        precisions[n - 1] = (100 * correct[n - 1]) / total[n - 1];
      }
    }
    let sum = 0;
    for (const p of precisions.slice(0, effOrder)) sum += p === 0 ? -9999999999 : Math.log(p);
    score = bp * Math.exp(sum / effOrder);
  }
  const ratio = refLen ? sysLen / refLen : 0;
  let smoothStr: string = smoothMethod;
  if (SMOOTH_DEFAULTS[smoothMethod] !== undefined) smoothStr += `[${smoothValue!.toFixed(2)}]`;
  const signature = [
    `nrefs:${nrefs.size === 1 ? [...nrefs][0] : "var"}`,
    `case:${opts.lowercase ? "lc" : "mixed"}`,
    `eff:${effectiveOrder ? "yes" : "no"}`,
    `tok:${tokenize}`,
    `smooth:${smoothStr}`,
    "version:2.x",
  ].join("|");
  const text = `BLEU = ${score.toFixed(2)} ${precisions.map((p) => p.toFixed(1)).join("/")} ` +
    `(BP = ${bp.toFixed(3)} ratio = ${ratio.toFixed(3)} hyp_len = ${sysLen} ref_len = ${refLen})`;
  return {
    score,
    counts: correct,
    totals: total,
    precisions,
    bp,
    ratio,
    sysLen,
    refLen,
    signature,
    text,
  };
}

/**
 * sacreBLEU-style sentence BLEU (0–100): {@linkcode corpusSacreBleu} of one
 * sentence with `effectiveOrder` on by default, like `sacrebleu.sentence_bleu`.
 */
export function sentenceSacreBleu(
  references: readonly string[],
  hypothesis: string,
  opts: SacreBleuOptions = {},
): SacreBleuScore {
  return corpusSacreBleu([references], [hypothesis], { effectiveOrder: true, ...opts });
}
