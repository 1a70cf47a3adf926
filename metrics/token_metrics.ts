/**
 * Plain-array reference implementations of the loss-side metrics (CONTRACTS.md
 * §5), computed in float64: masked cross-entropy with optional label smoothing
 * equal to `torch.nn.CrossEntropyLoss(ignore_index, label_smoothing)`, token
 * accuracy, top-k accuracy and perplexity. The tensor ops on CPU and GPU are
 * tested against these.
 *
 * Layout: `logits` is `[N, V]` row-major (N positions, V classes), `targets`
 * is `[N]`. Positions whose target equals `ignoreIndex` count nowhere.
 * With no counted position, means are NaN (torch returns nan too).
 *
 * Ties: accuracy takes the first maximal logit as the prediction
 * (`torch.argmax`); top-k counts the target as hit when fewer than k logits
 * rank above it, a logit ranking above when it is larger, or equal at a lower
 * class index (so top-1 equals accuracy).
 *
 * @example
 * ```ts
 * import { maskedCrossEntropy } from "@webseq/webseq";
 * const logits = new Float32Array([2, 0, 0, 0, 3, 0]); // [N=2, V=3]
 * const loss = maskedCrossEntropy(logits, new Int32Array([0, 1]), 3, { ignoreIndex: 0 });
 * ```
 *
 * @module
 */

/** Options shared by the token metrics. */
export interface TokenMetricOptions {
  /** Target id that is skipped (torch `ignore_index`; use the pad id). Default -100 as in torch. */
  ignoreIndex?: number;
  /** Label smoothing in [0, 1] (torch `label_smoothing`); affects the loss only. Default 0. */
  labelSmoothing?: number;
  /** k of top-k accuracy. Default 5. */
  k?: number;
}

/** Sums that aggregate exactly over batches; divide by `count` for means. */
export interface TokenMetricCounts {
  /** Number of positions whose target is not `ignoreIndex`. */
  count: number;
  /** Sum of the (label-smoothed) cross-entropy over counted positions. */
  lossSum: number;
  /** Sum of the plain cross-entropy (no smoothing), for perplexity. */
  nllSum: number;
  /** Counted positions whose argmax is the target. */
  correct: number;
  /** Counted positions whose target is within the top k. */
  topKCorrect: number;
}

/** Logits `[N, V]`, row-major. */
export type Logits = Float32Array | Float64Array;

function check(logits: Logits, targets: Int32Array, V: number, o: TokenMetricOptions) {
  if (!Number.isInteger(V) || V < 1) {
    throw new TypeError(`Token metrics: V must be a positive integer, got ${V}`);
  }
  if (logits.length !== targets.length * V) {
    throw new TypeError(
      `Token metrics: logits has ${logits.length} values, expected targets.length * V = ${targets.length} * ${V}`,
    );
  }
  const ls = o.labelSmoothing ?? 0;
  if (!(ls >= 0 && ls <= 1)) {
    throw new RangeError(`Token metrics: labelSmoothing must be in [0, 1], got ${ls}`);
  }
  const k = o.k ?? 5;
  if (!Number.isInteger(k) || k < 1) {
    throw new RangeError(`Token metrics: k must be a positive integer, got ${k}`);
  }
  return { ignoreIndex: o.ignoreIndex ?? -100, ls, k };
}

/**
 * All token metrics as sums over the counted positions, in one pass.
 * Throws RangeError for a target outside [0, V) that is not `ignoreIndex`
 * (torch raises too).
 */
export function tokenMetricCounts(
  logits: Logits,
  targets: Int32Array,
  V: number,
  opts: TokenMetricOptions = {},
): TokenMetricCounts {
  const { ignoreIndex, ls, k } = check(logits, targets, V, opts);
  const out: TokenMetricCounts = { count: 0, lossSum: 0, nllSum: 0, correct: 0, topKCorrect: 0 };
  for (let n = 0; n < targets.length; n++) {
    const t = targets[n];
    if (t === ignoreIndex) continue;
    if (!(t >= 0 && t < V)) {
      throw new RangeError(`Token metrics: target ${t} at position ${n} is outside [0, ${V})`);
    }
    const row = n * V;
    // log-sum-exp with the row max subtracted; argmax is the first maximum
    let max = -Infinity;
    let argmax = 0;
    for (let j = 0; j < V; j++) {
      if (logits[row + j] > max) {
        max = logits[row + j];
        argmax = j;
      }
    }
    let sumExp = 0;
    let sumLogits = 0;
    for (let j = 0; j < V; j++) {
      sumExp += Math.exp(logits[row + j] - max);
      sumLogits += logits[row + j];
    }
    const lse = max + Math.log(sumExp);
    const nll = lse - logits[row + t]; // -log p[t]
    const smoothTerm = lse - sumLogits / V; // -(1/V) sum_j log p[j]
    out.count++;
    out.nllSum += nll;
    // a term of weight 0 left out (a −∞ logit makes the other +∞; 0·∞ is NaN), as the op does
    out.lossSum += (ls < 1 ? (1 - ls) * nll : 0) + (ls > 0 ? ls * smoothTerm : 0);
    if (argmax === t) out.correct++;
    const xt = logits[row + t];
    let above = 0;
    for (let j = 0; j < V; j++) {
      const x = logits[row + j];
      if (x > xt || (x === xt && j < t)) above++;
    }
    if (above < k) out.topKCorrect++;
  }
  return out;
}

/**
 * Mean cross-entropy over positions whose target is not `ignoreIndex`, with
 * optional label smoothing: equals torch
 * `CrossEntropyLoss(ignore_index=ignoreIndex, label_smoothing=labelSmoothing)`.
 */
export function maskedCrossEntropy(
  logits: Logits,
  targets: Int32Array,
  V: number,
  opts: TokenMetricOptions = {},
): number {
  const c = tokenMetricCounts(logits, targets, V, opts);
  return c.lossSum / c.count;
}

/** Fraction of counted positions whose argmax (first maximum) equals the target. */
export function tokenAccuracy(
  logits: Logits,
  targets: Int32Array,
  V: number,
  opts: TokenMetricOptions = {},
): number {
  const c = tokenMetricCounts(logits, targets, V, opts);
  return c.correct / c.count;
}

/** Fraction of counted positions whose target is among the `opts.k` (default 5) largest logits. */
export function topKAccuracy(
  logits: Logits,
  targets: Int32Array,
  V: number,
  opts: TokenMetricOptions = {},
): number {
  const c = tokenMetricCounts(logits, targets, V, opts);
  return c.topKCorrect / c.count;
}

/** `exp(mean cross-entropy)` over counted positions, without label smoothing. */
export function perplexity(
  logits: Logits,
  targets: Int32Array,
  V: number,
  opts: TokenMetricOptions = {},
): number {
  const c = tokenMetricCounts(logits, targets, V, { ...opts, labelSmoothing: 0 });
  return Math.exp(c.nllSum / c.count);
}
