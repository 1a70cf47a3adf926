/**
 * chrF and chrF++ (Popović 2015, 2017) with sacreBLEU 2.x `CHRF` semantics:
 * character n-grams up to 6 with whitespace removed, beta 2, scores 0–100.
 * Corpus chrF sums the n-gram statistics over sentences before computing
 * the F-score; with several references, each sentence uses the reference
 * with the best sentence-level F-score. Checked against sacreBLEU's own code
 * in the tests (tests/testdata/bleu/sacrebleu.json).
 *
 * Strings are handled by Unicode code point, as Python does. Lowercasing
 * uses JavaScript's `toLowerCase` (Python's `str.lower` differs for a
 * handful of characters).
 *
 * @example
 * ```ts
 * import { corpusChrf } from "@webseq/webseq";
 * const { score, name } = corpusChrf([["The cat is on the mat."]], ["The cat sat on the mat."]);
 * console.log(name, score.toFixed(2));
 * ```
 *
 * @module
 */
import { splitWhitespace } from "./bleu.ts";

/** Options of {@linkcode corpusChrf} and {@linkcode sentenceChrf} (sacreBLEU's `CHRF(...)` arguments). */
export interface ChrfOptions {
  /** Character n-gram order. Default 6. */
  charOrder?: number;
  /** Word n-gram order; 2 gives chrF++. Default 0. */
  wordOrder?: number;
  /** Recall weight beta. Default 2. */
  beta?: number;
  /** Lowercase both sides first. Default false. */
  lowercase?: boolean;
  /** Keep whitespace inside character n-grams. Default false. */
  whitespace?: boolean;
  /** chrF++.py/NLTK-style epsilon smoothing instead of sacreBLEU's effective order. Default false. */
  epsSmoothing?: boolean;
}

/** A chrF score with its sacreBLEU name and signature. */
export interface ChrfScore {
  /** chrF, 0–100. */
  score: number;
  /** `chrF2`, `chrF2++`, … */
  name: string;
  /** e.g. `nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.x`. */
  signature: string;
}

const PUNCTS = new Set(Array.from("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"));

type Counts = Map<string, number>;

function charNgrams(line: string, maxOrder: number, whitespace: boolean): Counts[] {
  const chars = Array.from(whitespace ? line : splitWhitespace(line).join(""));
  const out: Counts[] = [];
  for (let n = 1; n <= maxOrder; n++) {
    const c: Counts = new Map();
    for (let i = 0; i + n <= chars.length; i++) {
      const k = chars.slice(i, i + n).join("");
      c.set(k, (c.get(k) ?? 0) + 1);
    }
    out.push(c);
  }
  return out;
}

function removePunctuation(sent: string): string[] {
  const out: string[] = [];
  for (const w of splitWhitespace(sent)) {
    const cs = Array.from(w);
    if (cs.length === 1) out.push(w);
    else if (PUNCTS.has(cs[cs.length - 1])) out.push(cs.slice(0, -1).join(""), cs[cs.length - 1]);
    else if (PUNCTS.has(cs[0])) out.push(cs[0], cs.slice(1).join(""));
    else out.push(w);
  }
  return out;
}

function wordNgrams(tokens: string[], n: number): Counts {
  const c: Counts = new Map();
  for (let i = 0; i + n <= tokens.length; i++) {
    const k = tokens.slice(i, i + n).join(" ");
    c.set(k, (c.get(k) ?? 0) + 1);
  }
  return c;
}

interface Resolved {
  charOrder: number;
  wordOrder: number;
  beta: number;
  lowercase: boolean;
  whitespace: boolean;
  epsSmoothing: boolean;
}

function resolve(opts: ChrfOptions): Resolved {
  const o = {
    charOrder: opts.charOrder ?? 6,
    wordOrder: opts.wordOrder ?? 0,
    beta: opts.beta ?? 2,
    lowercase: opts.lowercase ?? false,
    whitespace: opts.whitespace ?? false,
    epsSmoothing: opts.epsSmoothing ?? false,
  };
  if (!Number.isInteger(o.charOrder) || o.charOrder < 0) {
    throw new RangeError(`chrF charOrder must be a non-negative integer, got ${o.charOrder}`);
  }
  if (!Number.isInteger(o.wordOrder) || o.wordOrder < 0) {
    throw new RangeError(`chrF wordOrder must be a non-negative integer, got ${o.wordOrder}`);
  }
  if (o.charOrder + o.wordOrder === 0) throw new RangeError("chrF needs charOrder + wordOrder > 0");
  if (!(o.beta >= 0) || !Number.isFinite(o.beta)) {
    throw new RangeError(`chrF beta must be a non-negative number, got ${o.beta}`);
  }
  return o;
}

function allNgrams(sent: string, o: Resolved): Counts[] {
  const s = o.lowercase ? sent.toLowerCase() : sent;
  const grams = charNgrams(s, o.charOrder, o.whitespace);
  if (o.wordOrder > 0) {
    const words = removePunctuation(s);
    for (let n = 1; n <= o.wordOrder; n++) grams.push(wordNgrams(words, n));
  }
  return grams;
}

/** sacreBLEU `CHRF._compute_f_score` on flattened [hyp, ref, match] triples. */
function fScore(stats: readonly number[], o: Resolved): number {
  const order = o.charOrder + o.wordOrder;
  const eps = 1e-16;
  const factor = o.beta ** 2;
  let score = 0;
  let effectiveOrder = 0;
  let avgPrec = 0;
  let avgRec = 0;
  for (let i = 0; i < order; i++) {
    const [nHyp, nRef, nMatch] = stats.slice(3 * i, 3 * i + 3);
    const prec = nHyp > 0 ? nMatch / nHyp : eps;
    const rec = nRef > 0 ? nMatch / nRef : eps;
    const denom = factor * prec + rec;
    score += denom > 0 ? ((1 + factor) * prec * rec) / denom : eps;
    if (nHyp > 0 && nRef > 0) {
      avgPrec += prec;
      avgRec += rec;
      effectiveOrder += 1;
    }
  }
  if (o.epsSmoothing) return (100 * score) / order;
  if (effectiveOrder === 0) {
    avgPrec = avgRec = 0;
  } else {
    avgPrec /= effectiveOrder;
    avgRec /= effectiveOrder;
  }
  if (avgPrec + avgRec) {
    let s = (1 + factor) * avgPrec * avgRec;
    s /= factor * avgPrec + avgRec;
    return 100 * s;
  }
  return 0;
}

/** The best-matching reference's [hyp, ref, match] statistics for one sentence. */
function sentenceStats(refs: readonly string[], hyp: string, o: Resolved): number[] {
  const h = allNgrams(hyp, o);
  let best: number[] = [];
  let bestF = -1;
  for (const ref of refs) {
    const r = allNgrams(ref, o);
    const stats: number[] = [];
    for (let i = 0; i < h.length; i++) {
      let match = 0;
      let hypCount = 0;
      for (const [g, c] of h[i]) {
        hypCount += c;
        const rc = r[i].get(g);
        if (rc !== undefined) match += Math.min(c, rc);
      }
      let refCount = 0;
      for (const c of r[i].values()) refCount += c;
      stats.push(r[i].size > 0 ? hypCount : 0, refCount, match);
    }
    const f = fScore(stats, o);
    if (f > bestF) {
      bestF = f;
      best = stats;
    }
  }
  return best;
}

function named(score: number, nrefs: Set<number>, o: Resolved): ChrfScore {
  const signature = [
    `nrefs:${nrefs.size === 1 ? [...nrefs][0] : "var"}`,
    `case:${o.lowercase ? "lc" : "mixed"}`,
    `eff:${o.epsSmoothing ? "no" : "yes"}`,
    `nc:${o.charOrder}`,
    `nw:${o.wordOrder}`,
    `space:${o.whitespace ? "yes" : "no"}`,
    "version:2.x",
  ].join("|");
  return { score, name: `chrF${o.beta}${"+".repeat(o.wordOrder)}`, signature };
}

/**
 * Corpus chrF (0–100): statistics summed over sentences, then one F-score.
 * `references[i]` holds the reference strings of `hypotheses[i]`.
 */
export function corpusChrf(
  references: readonly (readonly string[])[],
  hypotheses: readonly string[],
  opts: ChrfOptions = {},
): ChrfScore {
  const o = resolve(opts);
  if (references.length !== hypotheses.length) {
    throw new TypeError(
      `chrF: ${hypotheses.length} hypotheses but ${references.length} reference sets`,
    );
  }
  const total = new Array<number>(3 * (o.charOrder + o.wordOrder)).fill(0);
  const nrefs = new Set<number>();
  for (let s = 0; s < hypotheses.length; s++) {
    if (references[s].length === 0) throw new TypeError(`chrF: hypothesis ${s} has no references`);
    nrefs.add(references[s].length);
    const st = sentenceStats(references[s], hypotheses[s], o);
    for (let i = 0; i < st.length; i++) total[i] += st[i];
  }
  return named(fScore(total, o), nrefs, o);
}

/** Sentence chrF (0–100) against one or more references. */
export function sentenceChrf(
  references: readonly string[],
  hypothesis: string,
  opts: ChrfOptions = {},
): ChrfScore {
  return corpusChrf([references], [hypothesis], opts);
}
