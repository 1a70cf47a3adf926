/**
 * Generation: greedy, sampling (temperature, top-k, top-p) and beam search
 * over a {@linkcode Seq2Seq}, with repetition penalty, no-repeat-n-gram,
 * a minimum length, several return sequences and stop at eos.
 *
 * The spine: sources are padded into one batch and encoded ONCE; then each
 * new token costs one decoder step on the key/value cache
 * ({@linkcode createDecodeSession}). Only the last position's logits [N, V]
 * come back to the host each step; the search itself (logits processors,
 * sampling, beams) is plain host code over Float32Arrays
 * ({@linkcode decodeSteps}), so it can be tested without a model. On
 * WebGPU, plain greedy decoding and sampling (no penalties) choose on the
 * device instead and read the picks back every 8 steps
 * ({@linkcode greedyOnDevice}, {@linkcode sampleOnDevice}).
 *
 * Semantics follow Hugging Face `generate()`:
 * - processors run in the order repetition penalty, no-repeat-n-gram,
 *   min-new-tokens, then (sampling only) temperature, top-k, top-p; they see
 *   the decoder sequence including the start token;
 * - beam search applies the processors to log-probabilities, keeps 2·numBeams
 *   candidates per input, and scores a finished hypothesis as
 *   `sum logprob / len ** lengthPenalty`, len = generated tokens including eos;
 *   `earlyStopping: false` stops an input when no running beam can beat the
 *   worst kept hypothesis (HF's heuristic);
 * - scores of greedy and sampled sequences use the same formula, with the
 *   log-probabilities after the penalties and before temperature/top-k/top-p.
 *
 * @example
 * ```ts ignore
 * import { generateText, loadRun } from "@webseq/webseq";
 * const { model, tokenizer } = await loadRun("runs/demo");
 * const res = await generateText(model, tokenizer!, ["hello world"], { strategy: "beam", numBeams: 4 });
 * console.log(res.sequences[0][0].text);
 * ```
 *
 * @module
 */
import { noGrad, scope, type Tensor, tensor } from "../tensor/tensor.ts";
import type { Backend } from "../tensor/types.ts";
import { hashU32, makeRng } from "../tensor/rng.ts";
import { reshape } from "../ops/mod.ts";
import { concat, slice } from "../ops/slice.ts";
import { greedyPick } from "../ops/greedy_pick.ts";
import {
  applyTemperature,
  applyTopK,
  applyTopP,
  type LogitsRow,
  logSoftmaxAt,
  logSumExp,
  rowsLogSumExp,
  sampleAt,
  samplePick,
  softmaxRow,
} from "../ops/sample_pick.ts";
import { embedding } from "../ops/embedding.ts";
import { encodePrefix } from "../data/dataset.ts";
import type { Seq2Seq } from "../nn/seq2seq.ts";
import type { DecoderCache } from "../nn/seq2seq.ts";
import type { TextTokenizer } from "../data/tokenizer_types.ts";

/** How the next token is chosen. */
export type GenerateStrategy = "greedy" | "sample" | "beam";

/** Options of {@linkcode generate}; every field has a default. */
export interface GenerateOptions {
  /** Tokens to generate at most, eos included (default 64; capped at max_position). */
  maxNewTokens?: number;
  /** "greedy" (default), "sample" or "beam". */
  strategy?: GenerateStrategy;
  /** Sampling temperature (default 1; must be > 0). */
  temperature?: number;
  /** Sampling: keep the k most likely tokens (default 0 = off). */
  topK?: number;
  /** Sampling: keep the smallest set with cumulative probability >= p (default 1 = off). */
  topP?: number;
  /** Seed of the sampling generator (default 0). */
  seed?: number;
  /**
   * Index of the first input within a larger job (default 0): row i samples
   * from a generator seeded by (seed, seedOffset + i), so splitting a job into
   * batches does not change the samples.
   */
  seedOffset?: number;
  /** Beam width (default 4 for "beam"). */
  numBeams?: number;
  /** Beam score = sum logprob / len ** lengthPenalty (default 1). */
  lengthPenalty?: number;
  /** Beam search: stop an input as soon as numBeams hypotheses are finished (default false). */
  earlyStopping?: boolean;
  /** CTRL repetition penalty (default 1 = off): seen tokens' logits are divided (>0) or multiplied (<0). */
  repetitionPenalty?: number;
  /** Forbid repeating any n-gram of this size (default 0 = off). */
  noRepeatNgramSize?: number;
  /**
   * Generate at least this many tokens before eos may end a sequence
   * (default 0 = off): eos gets probability 0 until then (Hugging Face
   * `min_new_tokens`). A sequence may still stop at `maxNewTokens`.
   */
  minNewTokens?: number;
  /** Sequences returned per input (default 1; at most numBeams for beam search). */
  numReturnSequences?: number;
  /** Use the key/value cache (default true); false re-runs the decoder over the prefix each step. */
  useCache?: boolean;
  /** When given, each sequence is decoded to text. */
  tokenizer?: TextTokenizer;
}

/** One generated sequence. */
export interface GeneratedSequence {
  /** Generated ids, without the start token and without eos. */
  ids: number[];
  /** `tokenizer.decode(ids)` when a tokenizer was given (ids past its vocabulary skipped). */
  text?: string;
  /** sum logprob / len ** lengthPenalty (len counts eos when it was generated). */
  score: number;
  /** Whether eos ended the sequence (false: stopped at maxNewTokens). */
  finished: boolean;
}

/** What {@linkcode generate} returns. */
export interface GenerationResult {
  /** `sequences[i][j]`: the j-th sequence of input i, best first for beam search. */
  sequences: GeneratedSequence[][];
  /** Decoder steps run (each one a forward of one new token per row). */
  steps: number;
}

// ---------------------------------------------------------------------------
// Logits processors: pure functions on one row of logits [V], in place.

/** One row of logits or log-probabilities [V]. */
export type { LogitsRow };
// temperature, top-k and top-p live beside the device sampler that mirrors them
export { applyTemperature, applyTopK, applyTopP };

/**
 * CTRL / Hugging Face repetition penalty, in place: for every token in
 * `context`, a positive logit is divided by `penalty`, a negative one
 * multiplied by it. `penalty` 1 leaves the logits as they are.
 */
export function applyRepetitionPenalty(
  logits: LogitsRow,
  context: readonly number[],
  penalty: number,
): void {
  if (penalty === 1) return;
  if (!(penalty > 0)) throw new RangeError(`repetitionPenalty must be > 0, got ${penalty}`);
  const seen = new Set(context);
  for (const t of seen) {
    if (t < 0 || t >= logits.length) continue;
    const v = logits[t];
    logits[t] = v < 0 ? v * penalty : v / penalty;
  }
}

/**
 * Tokens that would repeat an n-gram of `context` (Hugging Face
 * `NoRepeatNGramLogitsProcessor`): every token that followed an earlier
 * occurrence of the last n-1 tokens.
 */
export function bannedNgramTokens(context: readonly number[], n: number): number[] {
  if (n <= 0 || context.length + 1 < n) return [];
  const L = context.length;
  const banned = new Set<number>();
  for (let s = 0; s + n <= L; s++) {
    let match = true;
    for (let j = 0; j < n - 1; j++) {
      if (context[s + j] !== context[L - n + 1 + j]) {
        match = false;
        break;
      }
    }
    if (match) banned.add(context[s + n - 1]);
  }
  return [...banned];
}

/** Sets the logits of {@linkcode bannedNgramTokens} to -Infinity, in place. */
export function applyNoRepeatNgram(
  logits: LogitsRow,
  context: readonly number[],
  n: number,
): void {
  for (const t of bannedNgramTokens(context, n)) {
    if (t >= 0 && t < logits.length) logits[t] = -Infinity;
  }
}

/** softmax of one row, computed in double precision (all −∞: uniform). */
export const softmax: (logits: LogitsRow) => Float64Array = softmaxRow;

/**
 * log-softmax of one row, computed in double precision: `logits[i] − lse`
 * with `lse` = {@linkcode logSumExp} of the row (pass it when known, e.g.
 * from `rowsLogSumExp` over a whole step's rows).
 */
export function logSoftmax(logits: LogitsRow, lse?: number): Float64Array {
  const out = new Float64Array(logits.length);
  const lz = lse ?? logSumExp(logits);
  if (lz === -Infinity) return out.fill(-Math.log(logits.length));
  for (let i = 0; i < logits.length; i++) out[i] = logits[i] - lz;
  return out;
}

/** Index of the largest value (the first one on ties, as torch.argmax). */
export function argmax(values: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}

/** Draws an index from softmax(logits) with a uniform [0, 1) generator (one draw). */
export function sampleIndex(logits: LogitsRow, rng: () => number): number {
  return sampleAt(logits, rng());
}

// ---------------------------------------------------------------------------
// The search, over an abstract step function.

/**
 * One decoder step for N rows: `tokens[r]` is the newest token of row r;
 * `parents` (beam search) says which row of the previous step each row
 * continues (null: row r continues row r). Returns next-token logits [N·V].
 */
export type StepFn = (tokens: Int32Array, parents: Int32Array | null) => Promise<Float32Array>;

/** Options of {@linkcode decodeSteps}: the search options plus the special ids. */
export interface DecodeStepsOptions extends Omit<GenerateOptions, "useCache" | "tokenizer"> {
  /** Vocabulary size V (row width of the step's logits). */
  vocabSize: number;
  /** First decoder token. */
  startTokenId: number;
  /** Stops a sequence. */
  eosTokenId: number;
  /** Fed to finished rows. */
  padTokenId: number;
}

/** Resolved options with defaults, checked. */
interface Resolved {
  strategy: GenerateStrategy;
  maxNewTokens: number;
  temperature: number;
  topK: number;
  topP: number;
  seed: number;
  seedOffset: number;
  numBeams: number;
  lengthPenalty: number;
  earlyStopping: boolean;
  repetitionPenalty: number;
  noRepeatNgramSize: number;
  minNewTokens: number;
  numReturnSequences: number;
}

function checkInt(name: string, v: number, min: number): number {
  if (!Number.isInteger(v)) throw new TypeError(`${name} must be an integer, got ${v}`);
  if (v < min) throw new RangeError(`${name} must be at least ${min}, got ${v}`);
  return v;
}

/** The lowest temperature: below it `logits / T` overflows f32 for ordinary logits. */
export const MIN_TEMPERATURE = 1e-6;

function resolveOptions(opts: Omit<GenerateOptions, "useCache" | "tokenizer">): Resolved {
  // as in transformers: sampling options (other than their defaults) ask for sampling,
  // numBeams above 1 and the beam options for beam search; given a strategy, they must fit it
  const sampleOpt = (opts.temperature !== undefined && opts.temperature !== 1)
    ? "temperature"
    : (opts.topK ?? 0) !== 0
    ? "topK"
    : (opts.topP !== undefined && opts.topP !== 1)
    ? "topP"
    : null;
  const beamOpt = (opts.numBeams ?? 1) > 1
    ? "numBeams"
    : (opts.lengthPenalty !== undefined && opts.lengthPenalty !== 1)
    ? "lengthPenalty"
    : opts.earlyStopping
    ? "earlyStopping"
    : null;
  if (opts.strategy === undefined && sampleOpt && beamOpt) {
    throw new TypeError(
      `${sampleOpt} (sampling) and ${beamOpt} (beam search) do not go together: choose a strategy`,
    );
  }
  const strategy = opts.strategy ?? (sampleOpt ? "sample" : beamOpt ? "beam" : "greedy");
  if (strategy !== "greedy" && strategy !== "sample" && strategy !== "beam") {
    throw new TypeError(`strategy must be "greedy", "sample" or "beam", got "${strategy}"`);
  }
  if (sampleOpt && strategy !== "sample") {
    throw new TypeError(`${sampleOpt} needs strategy "sample", not "${strategy}"`);
  }
  if (beamOpt && strategy !== "beam") {
    throw new TypeError(`${beamOpt} needs strategy "beam", not "${strategy}"`);
  }
  const r: Resolved = {
    strategy,
    maxNewTokens: checkInt("maxNewTokens", opts.maxNewTokens ?? 64, 0),
    temperature: opts.temperature ?? 1,
    topK: checkInt("topK", opts.topK ?? 0, 0),
    topP: opts.topP ?? 1,
    seed: checkInt("seed", opts.seed ?? 0, 0),
    seedOffset: checkInt("seedOffset", opts.seedOffset ?? 0, 0),
    numBeams: checkInt("numBeams", opts.numBeams ?? (strategy === "beam" ? 4 : 1), 1),
    lengthPenalty: opts.lengthPenalty ?? 1,
    earlyStopping: opts.earlyStopping ?? false,
    repetitionPenalty: opts.repetitionPenalty ?? 1,
    noRepeatNgramSize: checkInt("noRepeatNgramSize", opts.noRepeatNgramSize ?? 0, 0),
    minNewTokens: checkInt("minNewTokens", opts.minNewTokens ?? 0, 0),
    numReturnSequences: checkInt("numReturnSequences", opts.numReturnSequences ?? 1, 1),
  };
  if (!(r.temperature > 0) || !Number.isFinite(r.temperature)) {
    throw new RangeError(`temperature must be a positive number, got ${r.temperature}`);
  }
  if (r.temperature < MIN_TEMPERATURE) {
    throw new RangeError(
      `temperature must be at least ${MIN_TEMPERATURE.toExponential()} (logits / temperature overflows below; greedy decoding is the limit), got ${r.temperature}`,
    );
  }
  if (!(r.topP >= 0 && r.topP <= 1)) throw new RangeError(`topP must be in [0, 1], got ${r.topP}`);
  if (!(r.repetitionPenalty > 0) || !Number.isFinite(r.repetitionPenalty)) {
    throw new RangeError(`repetitionPenalty must be a positive number, got ${r.repetitionPenalty}`);
  }
  if (!Number.isFinite(r.lengthPenalty)) {
    throw new RangeError(`lengthPenalty must be a finite number, got ${r.lengthPenalty}`);
  }
  if (strategy === "greedy" && r.numReturnSequences > 1) {
    throw new RangeError(
      `numReturnSequences ${r.numReturnSequences} needs strategy "sample" or "beam" (greedy gives one)`,
    );
  }
  if (strategy === "beam" && r.numReturnSequences > r.numBeams) {
    throw new RangeError(
      `numReturnSequences (${r.numReturnSequences}) must not exceed numBeams (${r.numBeams})`,
    );
  }
  return r;
}

/** Rows per input the search needs: beams, return sequences, or one. */
export function rowsPerInput(opts: Omit<GenerateOptions, "useCache" | "tokenizer">): number {
  const r = resolveOptions(opts);
  return r.strategy === "beam" ? r.numBeams : r.numReturnSequences;
}

function normalizedScore(sum: number, len: number, lengthPenalty: number): number {
  return len === 0 ? 0 : sum / len ** lengthPenalty;
}

/**
 * Hugging Face `MinNewTokensLengthLogitsProcessor`, in place: eos's logit is
 * −∞ while fewer than `minNewTokens` tokens follow the start token in `context`.
 */
export function applyMinNewTokens(
  logits: LogitsRow,
  context: readonly number[],
  minNewTokens: number,
  eosTokenId: number,
): void {
  if (context.length - 1 < minNewTokens && eosTokenId >= 0 && eosTokenId < logits.length) {
    logits[eosTokenId] = -Infinity;
  }
}

/** Whether any logits processor applies (then every strategy chooses on the host). */
function hasProcessors(o: Resolved): boolean {
  return o.repetitionPenalty !== 1 || o.noRepeatNgramSize > 0 || o.minNewTokens > 0;
}

/** The processors every strategy applies (in HF order), in place. */
function applyPenalties(
  row: LogitsRow,
  context: readonly number[],
  o: Resolved,
  eosTokenId: number,
): void {
  applyRepetitionPenalty(row, context, o.repetitionPenalty);
  if (o.noRepeatNgramSize > 0) applyNoRepeatNgram(row, context, o.noRepeatNgramSize);
  if (o.minNewTokens > 0) applyMinNewTokens(row, context, o.minNewTokens, eosTokenId);
}

/**
 * Runs the search for `numInputs` inputs over a step function whose rows are
 * `numInputs · rowsPerInput(opts)` (input-major). Pure host logic: the model
 * enters only through `step`.
 */
export async function decodeSteps(
  step: StepFn,
  numInputs: number,
  opts: DecodeStepsOptions,
): Promise<GenerationResult> {
  const o = resolveOptions(opts);
  if (o.strategy === "beam") return await beamSearch(step, numInputs, opts, o);
  return await greedyOrSample(step, numInputs, opts, o);
}

async function greedyOrSample(
  step: StepFn,
  numInputs: number,
  ids: DecodeStepsOptions,
  o: Resolved,
): Promise<GenerationResult> {
  const k = o.numReturnSequences;
  const N = numInputs * k;
  const V = ids.vocabSize;
  const seqs: number[][] = Array.from({ length: N }, () => [ids.startTokenId]);
  const sums = new Float64Array(N);
  const finished = new Array<boolean>(N).fill(false);
  const rngs = Array.from(
    { length: N },
    (_, r) => makeRng(hashU32(o.seed, o.seedOffset * k + r)),
  );
  const tokens = new Int32Array(N).fill(ids.startTokenId);
  let steps = 0;
  const penalties = hasProcessors(o);
  for (let t = 0; t < o.maxNewTokens && finished.some((f) => !f); t++) {
    const logits = await step(tokens, null);
    steps++;
    // the rows' log-sum-exps at once where no penalty changes a row first
    const lse = penalties ? null : rowsLogSumExp(logits, N, V);
    for (let r = 0; r < N; r++) {
      if (finished[r]) {
        tokens[r] = ids.padTokenId;
        continue;
      }
      const row = logits.slice(r * V, (r + 1) * V);
      applyPenalties(row, seqs[r], o, ids.eosTokenId);
      let tok: number;
      if (o.strategy === "greedy") {
        tok = argmax(row);
      } else {
        const w = row.slice(); // the score is the log-probability before the filters
        applyTemperature(w, o.temperature);
        applyTopK(w, o.topK);
        applyTopP(w, o.topP);
        tok = sampleIndex(w, rngs[r]);
      }
      sums[r] += logSoftmaxAt(row, tok, lse?.[r]);
      seqs[r].push(tok);
      tokens[r] = tok;
      if (tok === ids.eosTokenId) finished[r] = true;
    }
  }
  return { sequences: groupSequences(seqs, finished, sums, k, o.lengthPenalty), steps };
}

/**
 * The result of a greedy or sampling decode: row r = i·k + j is input i's
 * j-th sequence (without the start token; eos dropped where it ended one),
 * scored `sums[r] / len ** lengthPenalty`.
 */
function groupSequences(
  seqs: number[][],
  finished: boolean[],
  sums: Float64Array,
  k: number,
  lengthPenalty: number,
): GeneratedSequence[][] {
  const sequences: GeneratedSequence[][] = [];
  for (let i = 0; i < seqs.length / k; i++) {
    const group: GeneratedSequence[] = [];
    for (let j = 0; j < k; j++) {
      const r = i * k + j;
      const gen = seqs[r].slice(1);
      const len = gen.length;
      if (finished[r]) gen.pop();
      group.push({
        ids: gen,
        score: normalizedScore(sums[r], len, lengthPenalty),
        finished: finished[r],
      });
    }
    sequences.push(group);
  }
  return sequences;
}

/** Finished hypotheses of one input (Hugging Face `BeamHypotheses`). */
class Hypotheses {
  readonly list: { score: number; ids: number[]; finished: boolean }[] = [];
  worst = 1e9;
  constructor(readonly numBeams: number, readonly lengthPenalty: number) {}

  add(ids: number[], sumLogprobs: number, len: number, finished: boolean): void {
    const score = normalizedScore(sumLogprobs, len, this.lengthPenalty);
    if (this.list.length < this.numBeams || score > this.worst) {
      this.list.push({ score, ids, finished });
      if (this.list.length > this.numBeams) {
        const order = this.list.map((h, i) => [h.score, i]).sort((a, b) => a[0] - b[0]);
        this.list.splice(order[0][1], 1);
        this.worst = order[1][0];
      } else {
        this.worst = Math.min(score, this.worst);
      }
    }
  }

  isDone(bestSum: number, len: number, earlyStopping: boolean): boolean {
    if (this.list.length < this.numBeams) return false;
    if (earlyStopping) return true;
    return this.worst >= normalizedScore(bestSum, len, this.lengthPenalty);
  }
}

async function beamSearch(
  step: StepFn,
  numInputs: number,
  ids: DecodeStepsOptions,
  o: Resolved,
): Promise<GenerationResult> {
  const nb = o.numBeams;
  const N = numInputs * nb;
  const V = ids.vocabSize;
  const keep = 2 * nb;
  let seqs: number[][] = Array.from({ length: N }, () => [ids.startTokenId]);
  let beamScores = new Float64Array(N).map((_, r) => (r % nb === 0 ? 0 : -1e9));
  const hyps = Array.from({ length: numInputs }, () => new Hypotheses(nb, o.lengthPenalty));
  const done = new Array<boolean>(numInputs).fill(false);
  const tokens = new Int32Array(N).fill(ids.startTokenId);
  let parents: Int32Array | null = null;
  let steps = 0;
  for (let t = 0; t < o.maxNewTokens && done.some((d) => !d); t++) {
    const logits = await step(tokens, parents);
    const lse = rowsLogSumExp(logits, N, V); // every row's at once (the same bits as per row)
    steps++;
    const len = t + 1; // generated tokens after this step
    const nextParents = new Int32Array(N);
    const nextScores = new Float64Array(N);
    const nextSeqs: number[][] = new Array(N);
    for (let b = 0; b < numInputs; b++) {
      if (done[b]) {
        for (let j = 0; j < nb; j++) {
          const r = b * nb + j;
          nextParents[r] = r;
          tokens[r] = ids.padTokenId;
          nextSeqs[r] = seqs[r];
        }
        continue;
      }
      // top 2·nb of (beam score + processed logprob) over nb·V candidates
      const candScore = new Float64Array(keep).fill(-Infinity);
      const candIdx = new Int32Array(keep).fill(-1);
      for (let j = 0; j < nb; j++) {
        const r = b * nb + j;
        const row = logSoftmax(logits.subarray(r * V, (r + 1) * V), lse[r]);
        applyPenalties(row, seqs[r], o, ids.eosTokenId);
        for (let v = 0; v < V; v++) {
          const s = beamScores[r] + row[v];
          if (!(s > candScore[keep - 1]) && candIdx[keep - 1] !== -1) continue;
          // insert keeping descending order (stable: earlier candidates first on ties)
          let p = keep - 1;
          while (p > 0 && (s > candScore[p - 1] || candIdx[p - 1] === -1)) {
            candScore[p] = candScore[p - 1];
            candIdx[p] = candIdx[p - 1];
            p--;
          }
          candScore[p] = s;
          candIdx[p] = j * V + v;
        }
      }
      let filled = 0;
      for (let rank = 0; rank < keep && filled < nb; rank++) {
        if (candIdx[rank] < 0) break;
        const j = Math.floor(candIdx[rank] / V);
        const v = candIdx[rank] % V;
        const parent = b * nb + j;
        if (v === ids.eosTokenId) {
          if (rank >= nb) continue;
          hyps[b].add(seqs[parent].slice(1), candScore[rank], len, true);
        } else {
          const r = b * nb + filled;
          nextParents[r] = parent;
          nextScores[r] = candScore[rank];
          nextSeqs[r] = [...seqs[parent], v];
          tokens[r] = v;
          filled++;
        }
      }
      done[b] = hyps[b].isDone(candScore[0], len, o.earlyStopping);
    }
    seqs = nextSeqs;
    beamScores = nextScores;
    parents = nextParents;
  }
  const sequences: GeneratedSequence[][] = [];
  for (let b = 0; b < numInputs; b++) {
    if (!done[b]) {
      for (let j = 0; j < nb; j++) {
        const r = b * nb + j;
        hyps[b].add(seqs[r].slice(1), beamScores[r], seqs[r].length - 1, false);
      }
    }
    const best = [...hyps[b].list].sort((x, y) => y.score - x.score).slice(
      0,
      o.numReturnSequences,
    );
    sequences.push(best.map((h) => ({ ids: h.ids, score: h.score, finished: h.finished })));
  }
  return { sequences, steps };
}

// ---------------------------------------------------------------------------
// The model side: encode once, then one decoder step per token.

/** A decoder over an encoded batch, stepping one token at a time. */
export interface DecodeSession {
  /** Rows N (inputs × rows per input). */
  readonly rows: number;
  /** Vocabulary size V. */
  readonly vocabSize: number;
  /** See {@linkcode StepFn}. */
  step: StepFn;
  /**
   * With the key/value cache: one step whose tokens `ids [N, 1]` (i32) are
   * already on the model's backend and whose logits `[N, V]` stay there
   * (the caller disposes them): no readback, for decoding that chooses on
   * the device ({@linkcode generate}'s greedy and sampling paths on WebGPU).
   */
  stepOnDevice?: (ids: Tensor) => Tensor;
  /** Frees the encoder output and the caches. */
  dispose(): void;
}

/** Options of {@linkcode createDecodeSession}. */
export interface DecodeSessionOptions {
  /** Rows per input (beams or return sequences); default 1. */
  expand?: number;
  /** Use the key/value cache (default true). */
  useCache?: boolean;
}

/** The backend the model's parameters live on. */
export function modelBackend(model: Seq2Seq): Backend {
  const p = model.parameters()[0];
  if (!p) throw new TypeError("The model has no parameters");
  return p.backend;
}

/** Right-pads `srcIds` with pad into i32 ids [B, S] and an f32 mask [B, S]. */
export function padSources(
  srcIds: readonly (readonly number[])[],
  padId: number,
): { ids: Int32Array; mask: Float32Array; length: number } {
  const S = Math.max(1, ...srcIds.map((s) => s.length));
  const ids = new Int32Array(srcIds.length * S).fill(padId);
  const mask = new Float32Array(srcIds.length * S);
  srcIds.forEach((s, b) => {
    for (let j = 0; j < s.length; j++) {
      ids[b * S + j] = s[j];
      mask[b * S + j] = 1;
    }
  });
  return { ids, mask, length: S };
}

/** Rows `idx` of x [N, ...] → [M, ...] (an index_select on the first axis). */
function gatherRows(x: Tensor, idx: Int32Array): Tensor {
  const [N, ...rest] = x.shape;
  const width = rest.reduce((a, d) => a * d, 1);
  const table = reshape(x, [N, width]);
  const out = embedding(table, tensor(idx, [idx.length], { backend: x.backend }));
  return reshape(out, [idx.length, ...rest]);
}

function isIdentity(p: Int32Array): boolean {
  for (let i = 0; i < p.length; i++) if (p[i] !== i) return false;
  return true;
}

function cacheTensors(cache: DecoderCache): Tensor[] {
  const out: Tensor[] = [];
  for (const b of cache.blocks) {
    if (b.self) out.push(b.self.k, b.self.v);
    if (b.cross) out.push(b.cross.k, b.cross.v);
  }
  return out;
}

/**
 * Encodes `srcIds` once (padded to one batch) and returns a session whose
 * `step` runs the decoder on the newest token of each row: with the cache,
 * one position per step; without, the whole prefix again. The model should
 * be in eval mode.
 */
export function createDecodeSession(
  model: Seq2Seq,
  srcIds: readonly (readonly number[])[],
  opts: DecodeSessionOptions = {},
): DecodeSession {
  const cfg = model.config;
  const backend = modelBackend(model);
  const k = opts.expand ?? 1;
  const useCache = opts.useCache ?? true;
  const B = srcIds.length;
  if (B === 0) throw new TypeError("generate: no inputs");
  srcIds.forEach((s, i) => {
    if (s.length === 0) throw new TypeError(`generate: input ${i} is empty`);
    if (s.length > cfg.max_position) {
      throw new RangeError(
        `generate: input ${i} has ${s.length} tokens, more than max_position ${cfg.max_position}`,
      );
    }
    for (const id of s) {
      if (!Number.isInteger(id) || id < 0 || id >= cfg.vocab_size) {
        throw new RangeError(
          `generate: input ${i} has token id ${id} outside [0, ${cfg.vocab_size})`,
        );
      }
    }
  });
  const N = B * k;
  const V = cfg.vocab_size;
  const { ids, mask, length: S } = padSources(srcIds, cfg.pad_token_id);
  const ctx = model.context();
  const expandIdx = Int32Array.from({ length: N }, (_, r) => Math.floor(r / k));
  const expMask = new Float32Array(N * S);
  for (let r = 0; r < N; r++) {
    expMask.set(mask.subarray(expandIdx[r] * S, expandIdx[r] * S + S), r * S);
  }

  const { memory, srcMask } = noGrad(() =>
    scope(() => {
      const src = tensor(ids, [B, S], { backend });
      const m = model.encode(src, tensor(mask, [B, S], { backend }), ctx);
      return {
        memory: k === 1 ? m : gatherRows(m, expandIdx),
        srcMask: tensor(expMask, [N, S], { backend }),
      };
    })
  );
  memory.keep();
  srcMask.keep();

  let cache: DecoderCache | null = useCache ? model.decoder.newCache() : null;
  let prefix: Int32Array[] = Array.from({ length: N }, () => new Int32Array(0));
  let disposed = false;

  // one cached step from the newest tokens x [N, 1] (rows reordered by `order` first)
  const advance = (x: Tensor, order: Int32Array | null): Tensor => {
    const c = cache!;
    const old = new Set(cacheTensors(c));
    if (order) {
      for (const b of c.blocks) {
        if (b.self) {
          b.self = { k: gatherRows(b.self.k, order), v: gatherRows(b.self.v, order) };
        }
      }
    }
    const out = model.decoder.forward(x, undefined, memory, srcMask, ctx, c); // [N, 1, V]
    const now = cacheTensors(c);
    for (const t of now) if (!old.has(t)) t.keep();
    const live = new Set(now);
    for (const t of old) if (!live.has(t)) t.dispose();
    return reshape(out, [N, V]);
  };

  const step: StepFn = async (tokens, parents) => {
    if (disposed) throw new TypeError("DecodeSession was used after dispose()");
    if (tokens.length !== N) {
      throw new TypeError(`DecodeSession.step: expected ${N} tokens, got ${tokens.length}`);
    }
    const order = parents !== null && !isIdentity(parents) ? parents : null;
    const logits = noGrad(() =>
      scope(() => {
        if (cache) return advance(tensor(tokens, [N, 1], { backend }), order);
        if (order) prefix = Array.from(order, (p) => prefix[p]);
        const T = prefix[0].length + 1;
        const all = new Int32Array(N * T);
        for (let r = 0; r < N; r++) {
          all.set(prefix[r], r * T);
          all[r * T + T - 1] = tokens[r];
        }
        prefix = Array.from({ length: N }, (_, r) => all.slice(r * T, r * T + T));
        const x = tensor(all, [N, T], { backend });
        const out = model.decoder.forward(x, undefined, memory, srcMask, ctx); // [N, T, V]
        return reshape(slice(out, 1, T - 1, T), [N, V]);
      })
    );
    try {
      return Float32Array.from(await logits.data());
    } finally {
      logits.dispose();
    }
  };

  const stepOnDevice = (ids: Tensor): Tensor => {
    if (disposed) throw new TypeError("DecodeSession was used after dispose()");
    if (ids.dtype !== "i32" || ids.shape.length !== 2 || ids.shape[0] !== N || ids.shape[1] !== 1) {
      throw new TypeError(`DecodeSession.stepOnDevice: expected i32 ids [${N}, 1]`);
    }
    return noGrad(() => scope(() => advance(ids, null)));
  };

  return {
    rows: N,
    vocabSize: V,
    step,
    ...(cache ? { stepOnDevice } : {}),
    dispose() {
      if (disposed) return;
      disposed = true;
      memory.dispose();
      srcMask.dispose();
      if (cache) { for (const t of cacheTensors(cache)) t.dispose(); }
      cache = null;
      prefix = [];
    },
  };
}

/**
 * Generates for a batch of encoder inputs (ids as the dataset builds them:
 * tokens + eos, no padding). Encodes once, then decodes with the key/value
 * cache (one decoder step per token) unless `useCache` is false.
 */
export async function generate(
  model: Seq2Seq,
  srcIds: number[][],
  opts: GenerateOptions = {},
): Promise<GenerationResult> {
  const cfg = model.config;
  const searchOpts: DecodeStepsOptions = {
    ...opts,
    maxNewTokens: Math.min(opts.maxNewTokens ?? 64, cfg.max_position),
    vocabSize: cfg.vocab_size,
    startTokenId: cfg.decoder_start_token_id,
    eosTokenId: cfg.eos_token_id,
    padTokenId: cfg.pad_token_id,
  };
  const expand = rowsPerInput(searchOpts); // also checks the options
  const wasTraining = model.training;
  model.eval();
  const session = createDecodeSession(model, srcIds, { expand, useCache: opts.useCache });
  try {
    // plain greedy and sampling on a GPU choose on the device: no readback per token (see
    // greedyOnDevice, sampleOnDevice); beam search and the penalties choose on the host
    const r = resolveOptions(searchOpts);
    const plain = !hasProcessors(r);
    const backend = modelBackend(model);
    const onDevice = plain && session.stepOnDevice !== undefined && backend.kind === "webgpu";
    const result = onDevice && r.strategy === "greedy"
      ? await greedyOnDevice(session, backend, searchOpts)
      : onDevice && r.strategy === "sample"
      ? await sampleOnDevice(session, backend, searchOpts)
      : await decodeSteps(session.step, srcIds.length, searchOpts);
    if (opts.tokenizer) {
      for (const group of result.sequences) {
        // ids past the tokenizer's vocabulary (a vocab_size rounded up) have no text
        const n = opts.tokenizer.vocabSize;
        for (const s of group) s.text = opts.tokenizer.decode(s.ids.filter((id) => id < n));
      }
    }
    return result;
  } finally {
    session.dispose();
    if (wasTraining) model.train();
  }
}

/**
 * Steps run on the device between two readbacks (see {@linkcode greedyOnDevice}
 * and {@linkcode sampleOnDevice}).
 */
export const GREEDY_READBACK_EVERY = 8;

/**
 * Greedy decoding with the choice on the device (ops/greedy_pick.ts): each
 * step's argmax feeds the next step without leaving the GPU, and the picks
 * (id and log-probability per row) are read back once per
 * {@linkcode GREEDY_READBACK_EVERY} steps, in one buffer. The host then
 * replays them exactly as `decodeSteps` would have chosen: the same ids,
 * the same finished rows and step count; the scores add f32
 * log-probabilities (the host path: float64 log-softmax of f32 logits).
 * Up to 7 steps past the last row's end are computed and dropped. `generate`
 * takes this path for plain greedy decoding with the key/value cache on
 * WebGPU; a repetition or n-gram penalty needs `decodeSteps` (TypeError).
 */
export async function greedyOnDevice(
  session: DecodeSession,
  backend: Backend,
  ids: DecodeStepsOptions,
): Promise<GenerationResult> {
  const o = resolveOptions(ids);
  const params = { eosId: ids.eosTokenId, padId: ids.padTokenId };
  return await decodeOnDevice("greedyOnDevice", session, backend, ids, o, 1, {
    pick: (logits, done) => greedyPick(logits, done, params),
  });
}

/** The largest f32 below 1: a draw that rounds up to 1 in f32 becomes it. */
const BELOW_ONE = 1 - 2 ** -24;

/**
 * Sampling with the choice on the device (ops/sample_pick.ts), the twin of
 * {@linkcode greedyOnDevice}: temperature, top-k, top-p and the draw run on
 * the GPU, the sampled ids feed the next step, and the picks are read back
 * once per {@linkcode GREEDY_READBACK_EVERY} steps. The draws come from the
 * host's generators (row r = i·k + j of input i's j-th return sequence:
 * `makeRng(hashU32(seed, seedOffset·k + r))`, one draw per step while the
 * row is unfinished), rounded to f32 and uploaded at the start of each
 * chunk as one `[N]` tensor per step (no dispatch to pick a step's). A row unfinished at a chunk's start draws for every
 * step of the chunk; the draws after it picks eos are never used, and
 * neither is its generator again, so each row sees exactly the host's
 * draws. The result equals `decodeSteps` with strategy "sample" on the same
 * logits (sequences, finished rows, step count; scores add f32
 * log-probabilities) except where a cumulative probability lies within f32
 * rounding of a draw or of topP (see ops/sample_pick.ts). `generate` takes
 * this path for sampling with the key/value cache on WebGPU; a repetition
 * or n-gram penalty needs `decodeSteps` (TypeError).
 */
export async function sampleOnDevice(
  session: DecodeSession,
  backend: Backend,
  ids: DecodeStepsOptions,
): Promise<GenerationResult> {
  const o = resolveOptions({ ...ids, strategy: "sample" });
  const N = session.rows;
  const k = o.numReturnSequences;
  const rngs = Array.from(
    { length: N },
    (_, r) => makeRng(hashU32(o.seed, o.seedOffset * k + r)),
  );
  const params = {
    eosId: ids.eosTokenId,
    padId: ids.padTokenId,
    temperature: o.temperature,
    topK: o.topK,
    topP: o.topP,
  };
  let draws: Tensor[] = []; // the chunk's uniforms, [N] per step (uploads, no dispatch)
  return await decodeOnDevice("sampleOnDevice", session, backend, ids, o, k, {
    begin(steps, finished) {
      const u = Array.from({ length: steps }, () => new Float32Array(N));
      for (let r = 0; r < N; r++) {
        if (finished[r]) continue;
        for (let c = 0; c < steps; c++) u[c][r] = Math.min(Math.fround(rngs[r]()), BELOW_ONE);
      }
      draws = u.map((d) => tensor(d, [N], { backend }).keep());
    },
    pick: (logits, done, c) => samplePick(logits, done, draws[c], params),
    end() {
      for (const d of draws) d.dispose();
      draws = [];
    },
  });
}

/** One strategy's choice on the device, for {@linkcode decodeOnDevice}. */
interface DevicePicker {
  /** Before a chunk of `steps` steps; `finished`: the rows the host has seen end. */
  begin?(steps: number, finished: readonly boolean[]): void;
  /** Step `c` of the chunk: `[ids [N, 1] i32, picks [N, 2], done [N]]` from logits [N, V], done [N]. */
  pick(logits: Tensor, done: Tensor, c: number): Tensor[];
  /** After the chunk (also when it failed). */
  end?(): void;
}

/**
 * The loop of {@linkcode greedyOnDevice} and {@linkcode sampleOnDevice}:
 * chunks of device steps, one readback of the picks per chunk, and the
 * host's replay of them (rows r = i·k + j, k sequences per input).
 */
async function decodeOnDevice(
  name: string,
  session: DecodeSession,
  backend: Backend,
  ids: DecodeStepsOptions,
  o: Resolved,
  k: number,
  picker: DevicePicker,
): Promise<GenerationResult> {
  if (!session.stepOnDevice) throw new TypeError(`${name}: the session has no device step`);
  if (o.repetitionPenalty !== 1) {
    throw new TypeError(`${name}: repetitionPenalty ${o.repetitionPenalty} needs decodeSteps`);
  }
  if (o.noRepeatNgramSize > 0) {
    throw new TypeError(`${name}: noRepeatNgramSize ${o.noRepeatNgramSize} needs decodeSteps`);
  }
  if (o.minNewTokens > 0) {
    throw new TypeError(`${name}: minNewTokens ${o.minNewTokens} needs decodeSteps`);
  }
  const N = session.rows;
  if (N % k !== 0) {
    throw new TypeError(`${name}: ${N} rows are not a multiple of numReturnSequences ${k}`);
  }
  const seqs: number[][] = Array.from({ length: N }, () => [ids.startTokenId]);
  const sums = new Float64Array(N);
  const finished = new Array<boolean>(N).fill(false);
  let tok = tensor(new Int32Array(N).fill(ids.startTokenId), [N, 1], { backend }).keep();
  let done = tensor(new Float32Array(N), [N], { backend }).keep();
  let steps = 0;
  try {
    for (let t = 0; t < o.maxNewTokens && finished.some((f) => !f);) {
      const chunk = Math.min(GREEDY_READBACK_EVERY, o.maxNewTokens - t);
      const picks: Tensor[] = [];
      try {
        picker.begin?.(chunk, finished);
        for (let c = 0; c < chunk; c++) {
          const logits = session.stepOnDevice(tok);
          const [nextTok, pick, nextDone] = noGrad(() => picker.pick(logits, done, c));
          logits.dispose();
          tok.dispose();
          done.dispose();
          tok = nextTok.keep();
          done = nextDone.keep();
          picks.push(pick.keep());
        }
        const all = noGrad(() => (picks.length === 1 ? picks[0] : concat(picks, 0)));
        const data = await all.data(); // [chunk·N, 2]: (id, log-probability) per row and step
        if (all !== picks[0]) all.dispose();
        for (let c = 0; c < chunk && finished.some((f) => !f); c++) {
          steps++;
          for (let r = 0; r < N; r++) {
            if (finished[r]) continue;
            const id = data[2 * (c * N + r)];
            sums[r] += data[2 * (c * N + r) + 1];
            seqs[r].push(id);
            if (id === ids.eosTokenId) finished[r] = true;
          }
        }
      } finally {
        picker.end?.();
        for (const p of picks) p.dispose();
      }
      t += chunk;
    }
  } finally {
    tok.dispose();
    done.dispose();
  }
  return { sequences: groupSequences(seqs, finished, sums, k, o.lengthPenalty), steps };
}

/**
 * Encoder ids of a text per CONTRACTS.md §4: tokens + [eos], truncated to
 * `maxLength` keeping eos.
 */
export function encoderIds(
  tokenizer: TextTokenizer,
  text: string,
  eosId: number,
  maxLength: number,
): number[] {
  const { ids } = encodePrefix(tokenizer, text, maxLength);
  if (ids.length + 1 > maxLength) ids.length = Math.max(0, maxLength - 1);
  ids.push(eosId);
  return ids;
}

/** Tokenizes `texts` (tokens + eos), generates, and decodes every sequence to text. */
export async function generateText(
  model: Seq2Seq,
  tokenizer: TextTokenizer,
  texts: string[],
  opts: GenerateOptions = {},
): Promise<GenerationResult> {
  const cfg = model.config;
  const src = texts.map((t) => encoderIds(tokenizer, t, cfg.eos_token_id, cfg.max_position));
  return await generate(model, src, { ...opts, tokenizer });
}
