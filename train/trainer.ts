/**
 * The training loop of `webseq train`: the notebook's loop (epochs, forward,
 * backward, AdamW, linear warmup, metrics each epoch, sample generations
 * every `sampleInterval` epochs, a progress bar with a live postfix) made
 * into a tool you can rely on: atomic checkpoints each epoch and on
 * SIGINT/SIGTERM, exact `--resume`, best-model tracking, early stopping,
 * metrics.jsonl, samples.jsonl and report.html in the run folder.
 *
 * Exact resume: the dropout seed of step s is hash(seed, s), the data order
 * of epoch e depends only on (seed, e), and the optimizer moments and step
 * count are saved, so an interrupted and resumed run ends with the same
 * weights as one that was not (bit for bit on the CPU backend).
 *
 * @module
 */
import { noGrad, scope, type Tensor, tensor } from "../tensor/tensor.ts";
import type { Backend } from "../tensor/types.ts";
import { hashU32, makeRng } from "../tensor/rng.ts";
import { add, autotuneStep, configureMatmul, scale } from "../ops/mod.ts";
import type { GpuBackend } from "../gpu/backend.ts";
import { isSoftwareAdapter } from "../gpu/adapter.ts";
import { type ModelConfig, presetConfig, validateConfig } from "../nn/config.ts";
import { initContext, type StateDict } from "../nn/module.ts";
import { Seq2Seq } from "../nn/seq2seq.ts";
import { type Batch, DataLoader, TokenizerDataset } from "../data/dataset.ts";
import {
  checkPairIds,
  formatFromPath,
  loadPairs,
  type Pair,
  type PairsFormat,
  type ReadPairsOptions,
} from "../data/readers.ts";
import type { TextTokenizer } from "../data/tokenizer_types.ts";
import {
  KNOWN_SPECIAL_TOKENS,
  loadTokenizer,
  resolveTokenizer,
  saveTokenizer,
  specialTokenIds,
} from "../data/tokenizer.ts";
import { trainBpe } from "../data/bpe_trainer.ts";
import { AdamW } from "../optim/adamw.ts";
import { clipGradNorm } from "../optim/clip.ts";
import { GradScaler, type GradScalerState } from "../optim/grad_scaler.ts";
import { autocast, type Precision } from "../nn/layers.ts";
import { F16_ACCUMULATE, isF16Accumulate, type MatmulF16Accumulate } from "../ops/matmul_f16.ts";
import { linearWarmupSchedule } from "../optim/schedule.ts";
import {
  appendJsonl,
  loadConfig,
  loadModelWeights,
  loadOptimizerState,
  loadTrainerState,
  readJsonl,
  runPath,
  saveConfig,
  saveModelWeights,
  saveOptimizerState,
  saveTrainerState,
  type TrainerState,
} from "./run_folder.ts";
import {
  absolutePath,
  checkCheckpoint,
  dropLaterLines,
  resumedOption,
  samePairs,
  TrainOptionError,
} from "./resume.ts";

export { TrainOptionError } from "./resume.ts";
export { RUN_LOCK_FILE, RunLockedError } from "./run_lock.ts";
import { pathExists, writeFileAtomic } from "./atomic.ts";
import { lockRunFolder } from "./run_lock.ts";
import { resolveTuneCache, restoreTuneCache, storeTuneCache } from "./tune_cache.ts";
import { batchLoss, batchTensors, datasetOptionsFor } from "./batch_tensors.ts";
import { type EvalMetrics, evaluate, idsToText } from "./evaluate.ts";
import { generate } from "./generate.ts";
import { ProgressBar } from "./progress.ts";
import { type MetricsRecord, renderReport, type SampleRecord } from "./report.ts";

/** Everything `webseq train` takes; comments give the defaults. */
export interface TrainOptions {
  /**
   * Training pairs (CSV, TSV or JSONL); required, except when resuming a run
   * that recorded its data (its trainer_state.json `options.data`).
   */
  data?: string;
  /** Validation pairs; default: a seeded 5% split of `data` (at most 500 pairs). */
  valid?: string;
  /** Run folder. */
  out: string;
  /** Model preset when no config file (default "tiny"). */
  preset?: string;
  /** Model config JSON file (overrides preset). */
  configFile?: string;
  /** Start from this run folder's weights, tokenizer and config. */
  initFrom?: string;
  /**
   * Tokenizer file or folder, or a Hub model id ("owner/name", fetched only when the process has
   * network permission for the Hub's host); default: train a BPE tokenizer on the data.
   */
  tokenizer?: string;
  /** Hub endpoint and cache folder for a Hub tokenizer (default `$HF_ENDPOINT` or huggingface.co). */
  hub?: { endpoint?: string; cacheDir?: string };
  /** Vocabulary size of a trained tokenizer (default 1000). */
  vocabSize?: number;
  /**
   * Split every digit 0-9 into a token of its own in a trained tokenizer (the LLaMA-style
   * `Digits` pre-tokenizer); default false.
   */
  splitDigits?: boolean;
  /** Longest source/target in tokens, eos included (default 64). */
  maxLength?: number;
  /** Epochs (default 10). */
  epochs?: number;
  /** Stop after this many optimizer steps (default: epochs × batches). */
  maxSteps?: number;
  /** Batch size (default 32). */
  batchSize?: number;
  /** Micro-batches per optimizer step (default 1). */
  gradAccum?: number;
  /** Peak learning rate (default 1e-3). */
  lr?: number;
  /** AdamW weight decay (default 0.01; none on biases, norms, gammas). */
  weightDecay?: number;
  /** Warmup steps (default 5% of all steps). */
  warmup?: number;
  /** Shuffle each epoch (default true). */
  shuffle?: boolean;
  /** Override dropout; 0 also turns off attention dropout and DropPath. */
  dropout?: number;
  /** Seed of init, data order and dropout (default 0). */
  seed?: number;
  /** Clip the global gradient norm (default 1; 0 disables). */
  maxGradNorm?: number;
  /** Label smoothing ε (default 0). */
  labelSmoothing?: number;
  /**
   * "f32" (default), or "f16": mixed precision — Linear layers multiply f16
   * operands with f32 accumulation (nn/layers.ts `autocast`), master weights
   * and everything else stay f32, and the loss is scaled dynamically
   * (optim/grad_scaler.ts). Needs `shader-f16` on WebGPU; on the CPU it
   * emulates the f16 rounding (a numerics check, no faster).
   */
  precision?: Precision;
  /**
   * With precision "f16": how the f16 matmuls accumulate, "f32" (default)
   * or "f16", "f16/32", "f16/64" (16-, 32- or 64-deep K groups by f16 FMAs,
   * the groups in f32: faster on GPUs with packed half math, less exact;
   * nn/layers.ts `autocast`).
   */
  f16Accumulate?: MatmulF16Accumulate;
  /**
   * Continue the run in `out` exactly where it stopped: the data, columns,
   * maximum length, seed, shuffling, learning rate, weight decay, warmup,
   * batch, accumulation, clipping, label smoothing and precision it recorded
   * apply (an option left out takes the recorded value, a different one is a
   * TrainOptionError, train/resume.ts); `epochs` and `maxSteps` may change (the schedule then ends
   * at the new last step). Preset, config, tokenizer, vocabulary and digit
   * splitting come from the run folder and may not be given.
   */
  resume?: boolean;
  /** Sample generations every N epochs (default 1; 0 disables). */
  sampleInterval?: number;
  /** How many samples (default 3). */
  sampleCount?: number;
  /** Early stopping after N epochs without improvement (default 0: off). */
  patience?: number;
  /** BLEU on at most this many validation pairs per epoch (default 200; 0 disables). */
  bleuLimit?: number;
  /** Read the loss back every N steps (default 1 on CPU, 10 on WebGPU). */
  logEvery?: number;
  /**
   * Also write a checkpoint every N optimizer steps within an epoch (default
   * 0: at epochs' ends only), so a crash or kill loses at most N steps;
   * `--resume` continues from it as from an interrupt's checkpoint. A resumed
   * run keeps the recorded N unless given another.
   */
  saveSteps?: number;
  /**
   * Kernel tuning on the first step (ops/autotune.ts `autotuneStep`: matmul
   * variants and attention kernels): "auto" (default) tunes on a hardware
   * WebGPU adapter, "on" also on a software one, "off" never. Speed only:
   * the kernels give the same numbers up to f32 rounding.
   */
  tune?: TuneMode;
  /** The matmul variants tuning compares (default every registered one that fits the adapter). */
  tuneVariants?: string[];
  /** The attention kernels tuning compares (default "rows" and every tile that fits). */
  tuneAttentionKernels?: string[];
  /**
   * The tuning cache file (train/tune_cache.ts): choices saved there for this
   * adapter are used, new ones added. Default: `tuning.json` in the webseq
   * cache folder when read and write permission for it is granted; null: none.
   */
  tuneCache?: string | null;
  /**
   * Format of the data files (default: from their extensions; see
   * `ReadPairsOptions.format`). A resumed run keeps the recorded one.
   */
  format?: PairsFormat;
  /**
   * CSV/TSV: the first row is a header (default: when it names "source" and
   * "target", or a column is chosen by name). A resumed run keeps the recorded one.
   */
  header?: boolean;
  /** Column of the source text. */
  sourceCol?: string | number;
  /** Column of the target text. */
  targetCol?: string | number;
  /** No progress bar or logs. */
  quiet?: boolean;
  /** Print one JSON object per epoch on stdout. */
  json?: boolean;
  /** The backend to train on. */
  backend: Backend;
  /** Abort signal (SIGINT/SIGTERM): a checkpoint is written, then `train` returns. */
  signal?: AbortSignal;
  /** Log lines (default stderr). */
  log?: (line: string) => void;
  /**
   * Called with true before a checkpoint's files (and best/) are written and with false after
   * (the CLI defers a second Ctrl-C's exit until then, so the checkpoint stays whole).
   */
  onCheckpointWrite?: (writing: boolean) => void;
  /** Called after every optimizer step (tests use it to interrupt at a given step). */
  onStep?: (step: number) => void;
}

/** What `train` returns. */
export interface TrainSummary {
  /** Optimizer steps done in total. */
  steps: number;
  /** Epochs completed. */
  epochs: number;
  /** Why training stopped. */
  stopped: "completed" | "max_steps" | "early_stopping" | "interrupted";
  /** Last validation metrics. */
  valid: EvalMetrics | null;
  /** Run folder. */
  out: string;
}

/** A non-finite loss stopped training; the last checkpoint is intact. */
export class NonFiniteLossError extends Error {
  /**
   * Creates the error.
   *
   * @param message where the loss went non-finite
   */
  constructor(message: string) {
    super(message);
    this.name = "NonFiniteLossError";
  }
}

function hubEndpoint(): string {
  let env: string | undefined;
  try {
    env = Deno.env.get("HF_ENDPOINT");
  } catch { /* no env permission: the default */ }
  return env || "https://huggingface.co";
}

/** Whether this process may reach the Hub (least privilege: never ask, only look). */
async function networkAllowed(endpoint: string): Promise<boolean> {
  const host = new URL(endpoint).host;
  return (await Deno.permissions.query({ name: "net", host })).state === "granted";
}

function splitValid(pairs: Pair[], seed: number, file: string): { train: Pair[]; valid: Pair[] } {
  const n = Math.min(500, Math.max(1, Math.floor(pairs.length * 0.05)));
  if (pairs.length < 2) {
    throw new RangeError(
      `${file}: ${pairs.length} usable pair; at least 2 are needed to split off validation pairs (or give --valid)`,
    );
  }
  const rng = makeRng(seed ^ 0x5eed);
  const idx = pairs.map((_, i) => i);
  for (let i = idx.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    [idx[i], idx[j]] = [idx[j], idx[i]];
  }
  const validSet = new Set(idx.slice(0, n));
  return {
    train: pairs.filter((_, i) => !validSet.has(i)),
    valid: pairs.filter((_, i) => validSet.has(i)),
  };
}

function textOf(p: Pair, side: "source" | "target", tok: TextTokenizer | null): string {
  if (p.kind === "text") return side === "source" ? p.source : p.target;
  return idsToText(side === "source" ? p.sourceIds : p.targetIds, tok);
}

/**
 * The error that stops a diverged run: `what` went non-finite, and what the
 * run folder still holds (its last checkpoint, untouched, or none yet).
 */
async function nonFiniteError(out: string, what: string): Promise<NonFiniteLossError> {
  let step: number | null = null;
  try {
    step = (await loadTrainerState(out)).step;
  } catch { /* none written yet */ }
  return new NonFiniteLossError(
    `${what}; ${
      step === null
        ? `no checkpoint was written to ${out}`
        : `the last checkpoint in ${out} (step ${step}) is intact`
    } — try a lower --lr or --max-grad-norm`,
  );
}

/** Whether every value is finite (a plain loop: checkpoints scan every weight). */
function allFinite(xs: ArrayLike<number>): boolean {
  for (let i = 0; i < xs.length; i++) if (!Number.isFinite(xs[i])) return false;
  return true;
}

/** Throws {@linkcode nonFiniteError} when a weight is not finite. */
async function checkFiniteWeights(
  out: string,
  weights: Record<string, { data: ArrayLike<number> }>,
  step: number,
): Promise<void> {
  for (const [name, t] of Object.entries(weights)) {
    if (!allFinite(t.data)) {
      throw await nonFiniteError(out, `${name} became non-finite by step ${step}`);
    }
  }
}

async function saveCheckpoint(
  out: string,
  model: Seq2Seq,
  opt: AdamW,
  state: TrainerState,
  checked?: StateDict,
): Promise<void> {
  // the three files are written one after another (each atomically): each records the step, so
  // a resume can tell a checkpoint whose writing was cut short between them
  const stepMeta = { webseq_step: String(state.step) };
  // never a diverged model over the last good checkpoint: a non-finite weight (an update from a
  // non-finite gradient shows in the loss only a step later) stops the run with that one intact
  // (`checked`: the weights read back and checked already, for best/)
  const weights = checked ?? await model.stateDict();
  if (!checked) await checkFiniteWeights(out, weights, state.step);
  const sums = state.epoch_train_sums;
  if (Array.isArray(sums) && !sums.every(Number.isFinite)) {
    throw await nonFiniteError(out, `loss became non-finite by step ${state.step}`);
  }
  await saveModelWeights(out, weights, {
    tieEmbeddings: model.config.tie_embeddings,
    metadata: stepMeta,
  });
  await saveOptimizerState(out, { ...(await opt.state()), metadata: stepMeta });
  await saveTrainerState(out, state);
}

/** When the trainer and the benchmark tune matmul kernels (see `TrainOptions.tune`). */
export type TuneMode = "auto" | "on" | "off";

/** Whether `mode` tunes on `backend`: WebGPU only; "auto" skips software adapters. */
export function tunesOn(mode: TuneMode, backend: Backend): boolean {
  if (mode !== "auto" && mode !== "on" && mode !== "off") {
    throw new RangeError(`tune must be "auto", "on" or "off", got ${JSON.stringify(mode)}`);
  }
  if (backend.kind !== "webgpu" || mode === "off") return false;
  return mode === "on" || !isSoftwareAdapter((backend as GpuBackend).adapterInfo);
}

/**
 * Checks the numeric options of {@linkcode train} before anything is read or
 * written (the CLI checks its flags the same way): a RangeError naming the
 * field and its allowed values.
 */
export function checkTrainOptions(opts: TrainOptions): void {
  const o = opts as unknown as Record<string, unknown>;
  const rules: [keyof TrainOptions, "int" | "num", number, number, boolean?][] = [
    // field, kind, min, max, max exclusive
    ["vocabSize", "int", 5, Infinity],
    ["maxLength", "int", 2, Infinity],
    ["epochs", "int", 1, Infinity],
    ["maxSteps", "int", 1, Infinity],
    ["batchSize", "int", 1, Infinity],
    ["gradAccum", "int", 1, Infinity],
    ["warmup", "int", 0, Infinity],
    ["seed", "int", 0, 2 ** 32 - 1],
    ["sampleInterval", "int", 0, Infinity],
    ["sampleCount", "int", 0, Infinity],
    ["patience", "int", 0, Infinity],
    ["bleuLimit", "int", 0, Infinity],
    ["logEvery", "int", 1, Infinity],
    ["saveSteps", "int", 0, Infinity],
    ["lr", "num", 0, Infinity],
    ["weightDecay", "num", 0, Infinity],
    ["maxGradNorm", "num", 0, Infinity],
    ["labelSmoothing", "num", 0, 1],
    ["dropout", "num", 0, 1, true],
  ];
  for (const [field, kind, min, max, open] of rules) {
    const v = o[field];
    if (v === undefined) continue;
    const ok = typeof v === "number" &&
      (kind === "int" ? Number.isInteger(v) : Number.isFinite(v)) &&
      v >= min && (open ? v < max : v <= max);
    if (!ok) {
      const range = max === Infinity ? `≥ ${min}` : `in [${min}, ${max}${open ? ")" : "]"}`;
      throw new RangeError(
        `train: ${field} must be ${kind === "int" ? "an integer" : "a number"} ${range}, got ${
          typeof v === "number" ? v : JSON.stringify(v)
        }`,
      );
    }
  }
  if (opts.format !== undefined && !["csv", "tsv", "jsonl"].includes(opts.format)) {
    throw new RangeError(
      `train: format must be "csv", "tsv" or "jsonl", got ${JSON.stringify(opts.format)}`,
    );
  }
  if (typeof opts.out !== "string" || opts.out === "") {
    throw new TypeError(`train: out must name the run folder, got ${JSON.stringify(opts.out)}`);
  }
}

/**
 * Trains a model per `opts` in the run folder `opts.out`, which it holds for
 * the run (train/run_lock.ts: a second trainer into the same folder is refused
 * with {@linkcode RunLockedError}).
 */
export async function train(opts: TrainOptions): Promise<TrainSummary> {
  checkTrainOptions(opts);
  const lock = await lockRunFolder(opts.out);
  try {
    return await trainInFolder(opts);
  } finally {
    await lock.release();
  }
}

async function trainInFolder(opts: TrainOptions): Promise<TrainSummary> {
  const log = opts.log ?? ((s: string) => console.error(s));
  const info = (s: string) => {
    if (!opts.quiet) log(s);
  };
  const backend = opts.backend;
  const out = opts.out;
  // ---- a resumed run's recorded settings (checked before anything is read or written)
  const from = opts.resume ? out : opts.initFrom;
  if (opts.resume && !(await pathExists(runPath(out, "trainerState")))) {
    throw new Error(`${runPath(out, "trainerState")}: nothing to resume (no checkpoint in ${out})`);
  }
  if (!opts.resume && (await pathExists(runPath(out, "trainerState")))) {
    throw new Error(
      `${out} already holds a run: pass --resume to continue it, or choose another --out`,
    );
  }
  if (from) {
    const with_ = opts.resume ? "--resume" : "--init-from";
    const given = [
      ["--preset", opts.preset],
      ["--config", opts.configFile],
      ["--tokenizer", opts.tokenizer],
      ["--vocab-size", opts.vocabSize],
    ].find(([, v]) => v !== undefined);
    if (given) {
      throw new TrainOptionError(
        `${
          given[0]
        } does not apply with ${with_}: the model's config and tokenizer come from ${from}`,
      );
    }
  }
  const resumeState: TrainerState | null = opts.resume ? await loadTrainerState(out) : null;
  if (resumeState) await checkCheckpoint(out, resumeState);
  // a resumed run continues with the settings it was trained with: an option left out takes
  // the saved value, a different one is refused (the run would not continue as it was)
  const saved = (resumeState?.options ?? {}) as Record<string, unknown>;
  const keep = <T>(key: string, flag: string, given: T | undefined, fallback: T): T =>
    resumedOption(out, { flag, given, saved: saved[key], fallback });
  const seed = resumedOption(out, {
    flag: "--seed",
    given: opts.seed,
    saved: saved.seed ?? resumeState?.seed,
    fallback: 0,
  });
  // the data files: recorded as absolute paths; a resumed run reads the recorded ones, or files
  // given again (moved, or named from elsewhere) holding as many pairs as the recorded ones
  const data = opts.data ?? (saved.data as string | undefined);
  if (data === undefined) {
    throw new RangeError(
      opts.resume
        ? `${
          runPath(out, "trainerState")
        } does not record the run's data: give --data (and --valid, --lr, --epochs if the run had them)`
        : "no training data: give data",
    );
  }
  // null: validation pairs split off the training data
  const validFile = opts.valid ?? (saved.valid as string | null | undefined) ?? null;
  if (saved.valid === null && opts.valid !== undefined) {
    throw new TrainOptionError(
      `${out} was trained with validation pairs split off --data, not --valid ${opts.valid}: leave --valid out to resume it as it was`,
    );
  }
  // the recorded options used after the data is read, checked now (before any reading)
  const recorded: [string, string, unknown][] = [
    ["lr", "--lr", opts.lr],
    ["weight_decay", "--weight-decay", opts.weightDecay],
    ["warmup", "--warmup", opts.warmup],
    ["batch_size", "--batch-size", opts.batchSize],
    ["grad_accum", "--grad-accum", opts.gradAccum],
    ["max_grad_norm", "--max-grad-norm", opts.maxGradNorm],
    ["label_smoothing", "--label-smoothing", opts.labelSmoothing],
    ["precision", "--precision", opts.precision],
    ["f16_accumulate", "--f16-accumulate", opts.f16Accumulate],
  ];
  for (const [key, flag, given] of recorded) keep(key, flag, given, undefined);
  if (opts.resume && opts.dropout !== undefined) {
    // the run's config holds its dropout: the same value continues it, another is refused
    const config = await loadConfig(out);
    const same = opts.dropout === 0
      ? config.dropout === 0 && config.attention_dropout === 0 && config.drop_path === 0
      : config.dropout === opts.dropout;
    if (!same) {
      throw new TrainOptionError(
        `${out} was trained with dropout ${config.dropout}, not ${opts.dropout}: leave --dropout out to resume it as it was`,
      );
    }
  }
  const sourceCol = keep("source_col", "--source-col", opts.sourceCol, undefined);
  const targetCol = keep("target_col", "--target-col", opts.targetCol, undefined);
  const maxLengthOpt = keep("max_length", "--max-length", opts.maxLength, 64);
  const shuffle = resumedOption(out, {
    flag: "--no-shuffle",
    given: opts.shuffle,
    saved: saved.shuffle,
    fallback: true,
    show: (v) => (v ? "shuffling" : "--no-shuffle"),
  });
  // checked before anything is read; a resumed run takes its saved settings (below)
  let precision = checkPrecision(opts.precision ?? "f32", backend);
  let f16Accumulate = opts.resume
    ? "f32"
    : checkF16Accumulate(opts.f16Accumulate ?? "f32", precision);
  const tuneMode = opts.tune ?? "auto";
  let tuneNow = tunesOn(tuneMode, backend); // checked before anything is written
  // choices saved by earlier runs on this adapter: tuning then measures only what is new
  const tuneCache = tuneNow ? resolveTuneCache(opts.tuneCache) : null;
  if (tuneCache) await restoreTuneCache(tuneCache, backend as GpuBackend, info);
  // the matmul selection learns the adapter's limits (and whether K may be split) even untuned
  if (backend.kind === "webgpu") configureMatmul(backend as GpuBackend);
  const format = keep("format", "--format", opts.format, undefined);
  const header = keep("header", "--header", opts.header, undefined);
  const readOpts: ReadPairsOptions = {
    sourceCol,
    targetCol,
    ...(format ? { format } : {}),
    ...(header !== undefined ? { header } : {}),
  };

  // ---- data, run folder, config and tokenizer
  let config: ModelConfig;
  let tokenizer: TextTokenizer | null = null;
  const loaded = await loadPairs(data, readOpts);
  if (loaded.pairs.length === 0) throw new RangeError(`${data}: no usable pairs`);
  samePairs(out, "--data", data, loaded.pairs.length, saved.data, saved.data_pairs);
  if (loaded.skippedEmpty) {
    info(`${data}: skipped ${loaded.skippedEmpty} rows with an empty side`);
  }
  const first = loaded.pairs[0];
  const table = (format ?? formatFromPath(data)) !== "jsonl";
  if (table && header === undefined && first.kind === "text" && first.line === 1) {
    // no header found: the first row is a pair; say so, since a header named otherwise (input,
    // output) would be trained on
    const show = (t: string) => JSON.stringify(t.length > 24 ? t.slice(0, 24) + "…" : t);
    info(
      `${data}: no header row (the first row, ${show(first.source)} → ${
        show(first.target)
      }, is a pair; --header skips a header, --source-col/--target-col name columns)`,
    );
  }
  let trainPairs = loaded.pairs;
  let validPairs: Pair[];
  if (validFile) {
    validPairs = (await loadPairs(validFile, readOpts)).pairs;
    if (validPairs.length === 0) throw new RangeError(`${validFile}: no usable pairs`);
    samePairs(out, "--valid", validFile, validPairs.length, saved.valid, saved.valid_pairs);
  } else {
    const split = splitValid(trainPairs, seed, data);
    trainPairs = split.train;
    validPairs = split.valid;
    info(
      `no --valid: holding out ${validPairs.length} of ${loaded.pairs.length} pairs for validation`,
    );
  }
  const allIds = trainPairs.every((p) => p.kind === "ids");

  if (from) {
    config = await loadConfig(from);
    if (await pathExists(runPath(from, "tokenizer"))) {
      tokenizer = await loadTokenizer(runPath(from, "tokenizer"));
    }
  } else {
    let base: unknown;
    if (opts.configFile) {
      try {
        base = JSON.parse(await Deno.readTextFile(opts.configFile));
      } catch (err) {
        if (err instanceof SyntaxError) throw new SyntaxError(`${opts.configFile}: ${err.message}`);
        if (err instanceof Deno.errors.NotFound) {
          throw new Deno.errors.NotFound(`${opts.configFile}: no such file`);
        }
        throw err;
      }
      config = validateConfig(base, opts.configFile);
    } else {
      config = presetConfig(opts.preset ?? "tiny");
    }
    if (opts.tokenizer) {
      tokenizer = await resolveTokenizer(opts.tokenizer, {
        ...opts.hub,
        endpoint: opts.hub?.endpoint ?? hubEndpoint(),
        allowNetwork: await networkAllowed(opts.hub?.endpoint ?? hubEndpoint()),
      });
    } else if (!allIds) {
      const vocab = opts.vocabSize ?? 1000;
      info(`training a BPE tokenizer (vocab ${vocab}) on ${trainPairs.length} pairs`);
      const texts = trainPairs.flatMap((p) => (p.kind === "text" ? [p.source, p.target] : []));
      tokenizer = await trainBpe(texts, {
        vocabSize: vocab,
        minFrequency: 2,
        splitDigits: opts.splitDigits ?? false,
      });
      if (tokenizer.vocabSize > vocab) {
        info(
          `tokenizer: the data's characters alone exceed --vocab-size ${vocab}: all are kept (vocab ${tokenizer.vocabSize}, no merges); a larger --vocab-size leaves room for merges`,
        );
      }
    }
    // fields the config file sets itself (not filled in by defaults)
    const fileSets = (field: string) =>
      opts.configFile !== undefined && typeof base === "object" && base !== null &&
      Object.hasOwn(base, field);
    let vocab = config.vocab_size;
    let special: Partial<ModelConfig> = {};
    if (tokenizer) {
      // the tokenizer's size; a config file's vocab_size may round it up, never down
      vocab = tokenizer.vocabSize;
      if (fileSets("vocab_size")) {
        if (config.vocab_size < vocab) {
          throw new RangeError(
            `${opts.configFile}: field "vocab_size" (${config.vocab_size}) is below the tokenizer's ${vocab} tokens`,
          );
        }
        vocab = config.vocab_size;
      }
      const tokName = opts.tokenizer ?? "the tokenizer";
      special = specialIdsFrom(tokenizer, config, fileSets, tokName);
      // where each id came from, and a config file's id that is not the tokenizer's own token
      const found = specialTokenIds(tokenizer);
      const roles = [
        ["pad", "pad_token_id", found.pad],
        ["eos", "eos_token_id", found.eos],
        ["decoder start", "decoder_start_token_id", found.bos ?? found.pad],
      ] as const;
      // the decoder start comes from the file's decoder_start_token_id, else its bos_token_id
      const setByFile = (field: string) =>
        fileSets(field) || (field === "decoder_start_token_id" && fileSets("bos_token_id"));
      const fromFile = roles.filter(([, field]) => setByFile(field)).map(([role]) => role);
      if (opts.tokenizer || fromFile.length > 0) {
        info(
          `special tokens: ${
            roles.map(([role, field]) => `${role} ${special[field]}`).join(", ")
          } (${
            fromFile.length === 0
              ? `from ${tokName}`
              : fromFile.length === roles.length
              ? `from ${opts.configFile}`
              : `${fromFile.join(", ")} from ${opts.configFile}, the rest from ${tokName}`
          })`,
        );
      }
      for (const [role, field, own] of roles) {
        if (setByFile(field) && own !== undefined && own !== special[field]) {
          // the field the file sets (the decoder start may come from its bos_token_id)
          const set = fileSets(field) ? field : "bos_token_id";
          info(
            `note: ${opts.configFile} sets ${set} ${
              special[field]
            }, but ${tokName}'s ${role} token is ${own}: the model uses ${
              special[field]
            } (leave the field out to take the tokenizer's)`,
          );
        }
      }
    } else {
      let maxId = 3;
      for (const p of [...trainPairs, ...validPairs]) {
        if (p.kind === "ids") {
          for (const id of [...p.sourceIds, ...p.targetIds]) maxId = Math.max(maxId, id);
        }
      }
      // a vocab_size the config file sets is kept (ids beyond it are refused below, by line);
      // else the vocabulary is as large as the ids need
      vocab = fileSets("vocab_size")
        ? config.vocab_size
        : Math.max(opts.configFile ? config.vocab_size : 0, maxId + 1);
    }
    config = validateConfig({
      ...config,
      ...special,
      vocab_size: vocab,
      max_position: Math.max(config.max_position, maxLengthOpt),
    }, opts.configFile ?? "config");
  }
  if (config.pad_token_id === config.eos_token_id) {
    // the loss skips pad targets: an eos that is pad would never be learned (a model with
    // pad = eos still loads and generates; it cannot be trained here, nor fine-tuned)
    throw new RangeError(
      `${
        from ? runPath(from, "config") : opts.configFile ?? "config"
      }: field "pad_token_id" (${config.pad_token_id}) must differ from eos_token_id (the loss ignores padding, so the model would never learn to stop)`,
    );
  }
  if (opts.dropout !== undefined && !opts.resume) {
    config = opts.dropout === 0
      ? { ...config, dropout: 0, attention_dropout: 0, drop_path: 0 }
      : { ...config, dropout: opts.dropout };
    config = validateConfig(config, "--dropout");
  }
  precision = checkPrecision(keep("precision", "--precision", opts.precision, "f32"), backend);
  f16Accumulate = checkF16Accumulate(
    keep("f16_accumulate", "--f16-accumulate", opts.f16Accumulate, "f32"),
    precision,
  );
  if (precision === "f16" && backend.kind === "cpu") {
    info("precision f16 on the CPU: emulates f16 rounding to check the numerics, at no speed gain");
  }
  const maxLength = Math.min(maxLengthOpt, config.max_position);
  if (tokenizer && tokenizer.vocabSize > config.vocab_size) {
    throw new RangeError(
      `tokenizer has ${tokenizer.vocabSize} tokens but vocab_size is ${config.vocab_size}`,
    );
  }
  // ids files: every id within the vocabulary, found here with its line (not at an embedding)
  const specialIds = { pad: config.pad_token_id, eos: config.eos_token_id };
  checkPairIds(trainPairs, config.vocab_size, data, specialIds);
  checkPairIds(validPairs, config.vocab_size, validFile ?? data, specialIds);
  if (!tokenizer) {
    // text with no tokenizer (pre-tokenized training data, or a run from ids): named by its line
    for (const [pairs, file] of [[trainPairs, data], [validPairs, validFile ?? data]] as const) {
      const text = pairs.find((p) => p.kind === "text");
      if (text) {
        throw new RangeError(
          `${file}:${text.line}: a text pair, but there is no tokenizer (${
            from ? `${from} has none` : "the training data is pre-tokenized"
          }): give ids (source_ids, target_ids)${from ? "" : ", or train on text"}`,
        );
      }
    }
  }

  // ---- data
  const dsOpts = datasetOptionsFor(config, maxLength);
  const trainSet = TokenizerDataset.fromPairs(trainPairs, tokenizer, dsOpts);
  const validSet = TokenizerDataset.fromPairs(validPairs, tokenizer, dsOpts);
  for (const [name, ds] of [["train", trainSet], ["valid", validSet]] as const) {
    if (ds.truncatedCount) {
      info(`${name}: ${ds.truncatedCount} of ${ds.length} pairs truncated to ${maxLength} tokens`);
    }
  }
  const batchSize = keep("batch_size", "--batch-size", opts.batchSize, 32);
  const loader = new DataLoader(trainSet, {
    batchSize,
    shuffle,
    seed,
    bucketByLength: shuffle,
  });
  const gradAccum = keep("grad_accum", "--grad-accum", opts.gradAccum, 1);
  const maxGradNorm = keep("max_grad_norm", "--max-grad-norm", opts.maxGradNorm, 1);
  const labelSmoothing = keep("label_smoothing", "--label-smoothing", opts.labelSmoothing, 0);
  // the length of a resumed run may change (train longer, or stop sooner): --epochs lifts a
  // recorded --max-steps, --max-steps keeps the recorded epochs; a state from before the
  // length was recorded holds its schedule's total steps
  const sched = (resumeState?.schedule ?? {}) as Record<string, unknown>;
  const stepsPerEpoch = Math.ceil(loader.length / gradAccum);
  const recordedMax =
    (saved.max_steps ?? (saved.epochs === undefined ? sched.total_steps : undefined)) as
      | number
      | undefined;
  const epochs = opts.epochs ?? (saved.epochs as number | undefined) ??
    (recordedMax !== undefined ? Math.ceil(recordedMax / stepsPerEpoch) : 10);
  const maxSteps = opts.maxSteps ?? (opts.epochs !== undefined ? undefined : recordedMax);
  const totalSteps = maxSteps ?? epochs * stepsPerEpoch;
  // warmup and peak rate: as recorded (or as the schedule of an older state holds them)
  const warmup = keep(
    "warmup",
    "--warmup",
    opts.warmup,
    (sched.warmup_steps as number | undefined) ?? Math.floor(totalSteps * 0.05),
  );
  const schedule = linearWarmupSchedule(warmup, totalSteps);
  const lr = keep("lr", "--lr", opts.lr, (sched.lr as number | undefined) ?? 1e-3);
  const weightDecay = keep("weight_decay", "--weight-decay", opts.weightDecay, 0.01);

  // ---- model and optimizer
  const model = new Seq2Seq(config, initContext(seed, backend));
  if (from) model.loadStateDict(await loadModelWeights(from), { source: runPath(from, "model") });
  const opt = new AdamW(new Map(model.namedParameters()), { lr, weightDecay });
  const scaler = precision === "f16" ? new GradScaler({ backend }) : null;
  let step = 0, epoch = 0;
  let bestMetric: number | null = null, bestStep: number | null = null, badEpochs = 0;
  if (resumeState) {
    opt.loadState(await loadOptimizerState(out));
    const savedScaler = resumeState.grad_scaler as GradScalerState | undefined;
    if (scaler && savedScaler) scaler.load(savedScaler);
    step = resumeState.step;
    epoch = resumeState.epoch;
    bestMetric = resumeState.best_metric ?? null;
    bestStep = resumeState.best_step ?? null;
    badEpochs = Number(resumeState.bad_epochs ?? 0);
    loader.restore({ epoch, position: resumeState.batch_in_epoch ?? 0, seed });
    // an epoch's metrics and samples are appended before its checkpoint is written: those of
    // an epoch whose checkpoint never landed go, so the resumed run does not log them twice
    await dropLaterLines(runPath(out, "metrics"), (r) => !(Number(r.step) > step));
    await dropLaterLines(runPath(out, "samples"), (r) => !(Number(r.epoch) > epoch));
    info(
      `resuming ${out} at step ${step} (epoch ${epoch + 1}, batch ${
        resumeState.batch_in_epoch ?? 0
      })`,
    );
  } else {
    await Deno.mkdir(out, { recursive: true });
    await saveConfig(out, config);
    if (tokenizer) await saveTokenizer(tokenizer, runPath(out, "tokenizer"));
  }
  info(
    `model: ${
      model.parameterCount().toLocaleString("en")
    } parameters, d_model ${config.d_model}, ` +
      `${config.n_encoder_layers}+${config.n_decoder_layers} layers, vocab ${config.vocab_size}; ` +
      `device: ${backend.kind} (${backend.description})`,
  );
  info(
    `data: ${trainSet.length} train / ${validSet.length} valid pairs, ${stepsPerEpoch} steps per epoch, ${totalSteps} steps`,
  );

  const logEvery = opts.logEvery ?? (backend.kind === "cpu" ? 1 : 10);
  const saveSteps = opts.saveSteps ?? Number(saved.save_steps ?? 0);
  if (!Number.isInteger(saveSteps) || saveSteps < 0) {
    throw new RangeError(`saveSteps must be a whole number of steps (0: off), got ${saveSteps}`);
  }
  const num = (v: unknown) => (Number.isSafeInteger(v) ? v as number : undefined);
  // what the epochs log and when the run stops early: a resumed run keeps the recorded values
  // (so it logs and stops as an uninterrupted run would) unless given others
  const sampleInterval = opts.sampleInterval ?? num(saved.sample_interval) ?? 1;
  const sampleCount = opts.sampleCount ?? num(saved.sample_count) ?? 3;
  const bleuLimit = opts.bleuLimit ?? num(saved.bleu_limit) ?? 200;
  const patience = opts.patience ?? num(saved.patience) ?? 0;
  const state = (): TrainerState => {
    const ls = loader.state();
    return {
      step,
      epoch: ls.epoch,
      batch_in_epoch: ls.position,
      seed,
      best_metric: bestMetric,
      best_metric_name: "valid_loss",
      best_step: bestStep,
      bad_epochs: badEpochs,
      schedule: { warmup_steps: warmup, total_steps: totalSteps, lr },
      options: {
        data: absolutePath(data),
        data_pairs: loaded.pairs.length,
        valid: validFile === null ? null : absolutePath(validFile),
        ...(validFile !== null ? { valid_pairs: validPairs.length } : {}),
        ...(sourceCol !== undefined ? { source_col: sourceCol } : {}),
        ...(targetCol !== undefined ? { target_col: targetCol } : {}),
        ...(format !== undefined ? { format } : {}),
        ...(header !== undefined ? { header } : {}),
        max_length: maxLengthOpt,
        seed,
        shuffle,
        epochs,
        ...(maxSteps !== undefined ? { max_steps: maxSteps } : {}),
        lr,
        weight_decay: weightDecay,
        warmup,
        batch_size: batchSize,
        grad_accum: gradAccum,
        max_grad_norm: maxGradNorm,
        label_smoothing: labelSmoothing,
        precision,
        ...(precision === "f16" ? { f16_accumulate: f16Accumulate } : {}),
        ...(saveSteps > 0 ? { save_steps: saveSteps } : {}),
        patience,
        bleu_limit: bleuLimit,
        sample_interval: sampleInterval,
        sample_count: sampleCount,
      },
    };
  };
  // the trainer state, with the loss scaler's state (one readback) in f16 runs
  const checkpointState = async (extra: Partial<TrainerState> = {}): Promise<TrainerState> =>
    scaler ? { ...state(), ...extra, grad_scaler: await scaler.read() } : { ...state(), ...extra };
  // a checkpoint within an epoch records the epoch's running statistics, so the resumed run logs
  // the epoch's train loss over all its batches, as an uninterrupted run does
  const savedSums = resumeState?.epoch_train_sums;
  let resumeSums = (resumeState?.batch_in_epoch ?? 0) > 0 && Array.isArray(savedSums) &&
      savedSums.length === 4 && savedSums.every(Number.isFinite)
    ? savedSums as number[]
    : null;

  // the checkpoint's files (and best/) are written as one: `onCheckpointWrite` hears when
  const writingCheckpoint = async (write: () => Promise<void>) => {
    opts.onCheckpointWrite?.(true);
    try {
      await write();
    } finally {
      opts.onCheckpointWrite?.(false);
    }
  };
  let stopped: TrainSummary["stopped"] = "completed";
  let lastYield = performance.now();
  let lastValid: EvalMetrics | null = null;

  if (patience && badEpochs >= patience) {
    // the run had stopped early (a resumed one with more --epochs): it stays stopped
    info(
      `early stopping: validation loss had not improved for ${badEpochs} epochs (--patience ${patience})`,
    );
    stopped = "early_stopping";
  }
  while (epoch < epochs && step < totalSteps && stopped !== "early_stopping") {
    model.train();
    // the batches this epoch will take: all, or as many as the steps left (--max-steps)
    const batchesLeft = (totalSteps - step) * gradAccum + loader.state().position;
    const bar = new ProgressBar({
      label: `epoch ${epoch + 1}/${epochs}`,
      // optimizer steps, as the "steps per epoch" above counts them (not micro-batches)
      total: Math.ceil(Math.min(loader.length, batchesLeft) / gradAccum),
      quiet: opts.quiet,
    });
    bar.update(Math.ceil(loader.state().position / gradAccum));
    // running sums on the device: [ce, tokens, correct, top5] (a resumed epoch's so far)
    let running: Tensor | null = resumeSums
      ? tensor(Float32Array.from(resumeSums), [4], { backend })
      : null;
    resumeSums = null;
    const pending: { stats: Tensor }[] = [];
    // folds the pending statistics into the running sums, in order, as every log point does (so
    // folding early for a checkpoint changes no sum)
    const foldRunning = (): Tensor | null => {
      if (pending.length === 0) return running;
      const sums = noGrad(() =>
        scope(() =>
          pending.reduce((acc: Tensor | null, p) => (acc ? add(acc, p.stats) : p.stats), running)
        )
      );
      for (const p of pending) if (p.stats !== sums) p.stats.dispose();
      if (running && running !== sums) running.dispose();
      running = sums;
      pending.length = 0;
      return running;
    };
    // the state of a checkpoint within this epoch
    const midEpochState = async (): Promise<TrainerState> => {
      const sums = foldRunning();
      return await checkpointState(sums ? { epoch_train_sums: Array.from(await sums.data()) } : {});
    };
    let seenTokens = 0;
    const t0 = performance.now();
    let interrupted = false;
    const group: Batch[] = [];
    for (const batch of loader) {
      group.push(batch);
      if (group.length < gradAccum && loader.state().position !== 0) continue;
      const runStep = () => {
        // micro-batch losses weighted by their share of the group's target tokens, so the
        // accumulated gradient equals that of one batch holding the whole group
        const groupTokens = group.reduce((a, b) => a + b.targetTokens, 0);
        group.forEach((b, micro) => {
          const seedStep = hashU32(seed, step * gradAccum + micro);
          const stats = scope(() => {
            const t = batchTensors(b, backend);
            const { loss, stats } = autocast(
              precision,
              () => batchLoss(model, t, { labelSmoothing, seed: seedStep }),
              { accumulate: f16Accumulate },
            );
            const w = b.targetTokens / Math.max(1, groupTokens);
            const weighted = group.length > 1 ? scale(loss, w) : loss;
            (scaler ? scaler.scale(weighted) : weighted).backward();
            return stats;
          });
          pending.push({ stats });
          seenTokens += b.targetTokens;
        });
        bar.update(1);
        group.length = 0;
        const factor = schedule(step);
        scope(() => {
          if (scaler) {
            // unscale, clip, skip the update on inf/NaN gradients, adjust the scale: on the device
            scaler.step(opt, { maxNorm: maxGradNorm, lr: lr * factor });
            return;
          }
          if (maxGradNorm > 0) clipGradNorm(opt, maxGradNorm);
          opt.step(lr * factor);
        });
        opt.zeroGrad();
        // one submit per step: the GPU starts on it while the next one records, and the uniform
        // arena restarts, so the next step's bind groups come from the cache
        backend.flush();
        return factor;
      };
      let factor: number;
      if (tuneNow) {
        // tune the matmul kernels of every shape class the step brings that has no measured
        // choice yet (the first step, then new batch lengths); nothing to do costs nothing
        const r = await autotuneStep(backend as GpuBackend, runStep, {
          force: tuneMode === "on",
          variants: opts.tuneVariants,
          attentionKernels: opts.tuneAttentionKernels,
          // a first step on a new GPU pauses for a minute or so: say why, before it does
          onBegin: (what, n) =>
            info(
              what === "matmul"
                ? `kernels: timing the candidate kernels of ${n} matmul shapes on this adapter (once: ${
                  tuneCache ? "the choices are cached" : "--tune-cache keeps the choices"
                }; --tune off skips this)`
                : `kernels: timing the attention kernels of ${n} geometries`,
            ),
        });
        factor = r.value;
        const picks = new Set([
          ...r.matmul.map((x) => x.variant),
          ...r.attention.map((x) => x.kernel),
        ]);
        if (r.error) {
          tuneNow = false; // the defaults keep the rest of the run
          info(`kernels: tuning failed (${r.error}); the default kernels run`);
        } else if (r.matmul.length + r.attention.length > 0) {
          info(
            `kernels: tuned ${r.matmul.length} matmul shapes and ${r.attention.length} attention geometries in ${
              r.seconds.toFixed(1)
            } s (${[...picks].join(", ")}); --tune off skips this`,
          );
          const wrong = [
            ...r.matmul.flatMap((m) => m.rejected),
            ...r.attention.flatMap((a) => a.rejected),
          ];
          if (wrong.length > 0) {
            info(
              `kernels: ${wrong.length} candidate kernels computed wrong results on this adapter and were skipped (${
                [...new Set(wrong)].join(", ")
              })`,
            );
          }
          if (tuneCache) await storeTuneCache(tuneCache, backend as GpuBackend, info);
        }
      } else factor = runStep();
      step++;
      opts.onStep?.(step);
      // a step's own waits may all be microtasks (the CPU backend), which never let a signal
      // listener run: give the event loop a turn at least every 100 ms, so Ctrl-C stops the
      // run after the step under way
      if (opts.signal && performance.now() - lastYield > 100) {
        await new Promise((r) => setTimeout(r, 0));
        lastYield = performance.now();
      }
      if (step % logEvery === 0 || step >= totalSteps || loader.state().position === 0) {
        const [ce, tok, cor] = await foldRunning()!.data();
        if (!Number.isFinite(ce)) {
          bar.close();
          throw await nonFiniteError(
            out,
            `loss became non-finite at step ${step} (epoch ${epoch + 1})`,
          );
        }
        const secs = (performance.now() - t0) / 1000;
        bar.setPostfix({
          loss: ce / tok,
          acc: cor / tok,
          lr: lr * factor,
          "tok/s": seenTokens / secs,
        });
      }
      if (opts.signal?.aborted) {
        interrupted = true;
        break;
      }
      if (step >= totalSteps) break;
      // a checkpoint within the epoch (its end writes one anyway), as an interrupt's
      if (saveSteps > 0 && step % saveSteps === 0 && loader.state().position !== 0) {
        await backend.sync();
        await writingCheckpoint(async () => saveCheckpoint(out, model, opt, await midEpochState()));
      }
    }
    bar.close();
    // an interrupt on an epoch's last step (or the run's) still owes that epoch's evaluation,
    // metrics, samples and best model: they come first, as in an uninterrupted run
    const owed = loader.state().position === 0 || step >= totalSteps;
    if (interrupted && !owed) {
      await backend.sync();
      await writingCheckpoint(async () => saveCheckpoint(out, model, opt, await midEpochState()));
      info(`interrupted: checkpoint written to ${out} at step ${step}; continue with --resume`);
      stopped = "interrupted";
      running?.dispose();
      for (const p of pending) p.stats.dispose();
      break;
    }
    // ---- end of epoch (or max steps mid-epoch)
    const finishedEpoch = loader.state().position === 0;
    const hadBatches = running !== null;
    const [ce, tok, cor, top5] = running ? await running.data() : [NaN, 0, 0, 0];
    running?.dispose();
    for (const p of pending) p.stats.dispose();
    const trainLoss = ce / tok;
    const epochNo = finishedEpoch ? epoch + 1 : epoch + loader.state().position / loader.length;
    const valid = await evaluate(model, validSet, backend, {
      batchSize,
      bleu: bleuLimit > 0
        ? {
          tokenizer,
          references: validPairs.map((p) => textOf(p, "target", tokenizer)),
          limit: bleuLimit,
          maxNewTokens: maxLength,
        }
        : undefined,
    });
    lastValid = valid;
    // a diverged epoch stops here: no metrics line, best/ or checkpoint of it
    if ((hadBatches && !Number.isFinite(ce)) || !Number.isFinite(valid.loss)) {
      throw await nonFiniteError(
        out,
        `${
          hadBatches && !Number.isFinite(ce) ? "training" : "validation"
        } loss became non-finite in epoch ${epoch + 1} (step ${step})`,
      );
    }
    const record: MetricsRecord = {
      epoch: Number(epochNo.toFixed(4)),
      step,
      lr: lr * schedule(Math.max(0, step - 1)),
      train_loss: trainLoss,
      train_perplexity: Math.exp(trainLoss),
      train_accuracy: cor / tok,
      train_top5_accuracy: top5 / tok,
      train_tokens: tok,
      valid_loss: valid.loss,
      valid_perplexity: valid.perplexity,
      valid_accuracy: valid.accuracy,
      valid_top5_accuracy: valid.top5_accuracy,
      valid_tokens: valid.tokens,
      valid_bleu_sentence: valid.bleu_sentence ?? null,
      valid_bleu_corpus: valid.bleu_corpus ?? null,
      seconds: Number(((performance.now() - t0) / 1000).toFixed(2)),
    };
    await appendJsonl(runPath(out, "metrics"), record);
    if (opts.json) console.log(JSON.stringify(record));
    info(
      `epoch ${record.epoch}: train loss ${trainLoss.toFixed(4)} acc ${(cor / tok).toFixed(3)} | ` +
        `valid loss ${valid.loss.toFixed(4)} ppl ${valid.perplexity.toFixed(2)} acc ${
          valid.accuracy.toFixed(3)
        } ` +
        `top5 ${valid.top5_accuracy.toFixed(3)}` +
        (valid.bleu_corpus !== undefined
          ? ` BLEU ${valid.bleu_sentence!.toFixed(3)}/${valid.bleu_corpus.toFixed(3)} (sent/corpus)`
          : ""),
    );
    // ---- samples (top-k + top-p) every sampleInterval epochs
    if (
      sampleInterval > 0 && finishedEpoch && (epoch + 1) % sampleInterval === 0 && validSet.length
    ) {
      const n = Math.min(sampleCount, validSet.length);
      const idx = Array.from({ length: n }, (_, i) => Math.floor((i * validSet.length) / n));
      model.eval();
      const res = await generate(
        model,
        idx.map((i) => [...validSet.sourceIds(i), validSet.eosTokenId]),
        {
          strategy: "sample",
          topK: 50,
          topP: 0.9,
          seed: hashU32(seed, epoch),
          maxNewTokens: maxLength,
        },
      );
      model.train();
      const samples: SampleRecord[] = idx.map((i, k) => ({
        epoch: epoch + 1,
        source: textOf(validPairs[i], "source", tokenizer),
        reference: textOf(validPairs[i], "target", tokenizer),
        output: idsToText(res.sequences[k][0].ids, tokenizer),
        strategy: "top-k 50 + top-p 0.9",
      }));
      for (const s of samples) {
        await appendJsonl(runPath(out, "samples"), s);
        // one line each (a text's own line breaks as spaces; samples.jsonl keeps them)
        const flat = (t: string) => t.replace(/[\t\r\n]+/g, " ");
        info(
          `  sample: ${flat(s.source)}\n    ref: ${flat(s.reference)}\n    out: ${flat(s.output)}`,
        );
      }
    }
    epoch = loader.state().epoch;
    // ---- best model and early stopping
    const improved = bestMetric === null || valid.loss < bestMetric;
    if (improved) {
      bestMetric = valid.loss;
      bestStep = step;
      badEpochs = 0;
    } else {
      badEpochs++;
    }
    await writingCheckpoint(async () => {
      // best/ before the checkpoint that records it: a crash between the two replays the epoch
      // on --resume, which writes best/ again (a best/ newer than trainer_state's best_step is
      // that same epoch's weights), never a best_step whose best/ was not written
      // one readback of the weights for both, checked once
      const weights = await model.stateDict();
      await checkFiniteWeights(out, weights, step);
      if (improved) {
        const best = `${out}/best`;
        await Deno.mkdir(best, { recursive: true });
        await saveConfig(best, config);
        if (tokenizer) await saveTokenizer(tokenizer, runPath(best, "tokenizer"));
        await saveModelWeights(best, weights, {
          tieEmbeddings: config.tie_embeddings,
          metadata: { webseq_step: String(step) },
        });
      }
      // a --max-steps stop within an epoch keeps its running statistics, as a step checkpoint does
      await saveCheckpoint(
        out,
        model,
        opt,
        await checkpointState(finishedEpoch ? {} : { epoch_train_sums: [ce, tok, cor, top5] }),
        weights,
      );
    });
    await writeReport(out, { device: backend.description, parameters: model.parameterCount() });
    if (patience && badEpochs >= patience) {
      info(`early stopping: validation loss did not improve for ${badEpochs} epochs`);
      stopped = "early_stopping";
      break;
    }
    if (step >= totalSteps && epoch < epochs) {
      stopped = "max_steps";
      break;
    }
    if (interrupted && epoch < epochs) {
      info(`interrupted: checkpoint written to ${out} at step ${step}; continue with --resume`);
      stopped = "interrupted";
      break;
    }
  }
  model.dispose();
  opt.dispose();
  scaler?.dispose();
  return { steps: step, epochs: epoch, stopped, valid: lastValid, out };
}

/**
 * The config's special token ids for a tokenizer (CONTRACTS §4 uses them to build the
 * sequences): pad and eos are the tokenizer's own (specialTokenIds), the decoder starts with its
 * start token, or with pad where it has none (T5, Marian); a field the config file sets itself
 * (`fileSets`) is kept. No pad or no eos token is a RangeError naming the tokenizer.
 */
function specialIdsFrom(
  tok: TextTokenizer,
  config: ModelConfig,
  fileSets: (field: string) => boolean,
  name: string,
): Partial<ModelConfig> {
  const found = specialTokenIds(tok);
  const role = (field: keyof ModelConfig, id: number | undefined, what: string) => {
    if (fileSets(field)) return config[field] as number;
    if (id === undefined) {
      const known = KNOWN_SPECIAL_TOKENS[what === "padding" ? "pad" : "eos"].join(", ");
      throw new RangeError(
        `${name} has no ${what} token (${known}): name one as ${
          what === "padding" ? "pad" : "eos"
        }_token in its tokenizer_config.json, or give --config with ${field}`,
      );
    }
    return id;
  };
  const pad = role("pad_token_id", found.pad, "padding");
  const eos = role("eos_token_id", found.eos, "end-of-sequence");
  const start = fileSets("decoder_start_token_id")
    ? config.decoder_start_token_id
    : fileSets("bos_token_id")
    ? config.bos_token_id
    : found.bos ?? pad;
  const bos = fileSets("bos_token_id") ? config.bos_token_id : found.bos ?? start;
  return { pad_token_id: pad, eos_token_id: eos, bos_token_id: bos, decoder_start_token_id: start };
}

/** The f16 accumulation mode, checked: "f16" needs precision f16. */
export function checkF16Accumulate(
  acc: MatmulF16Accumulate,
  precision: Precision,
): MatmulF16Accumulate {
  if (!isF16Accumulate(acc)) {
    throw new RangeError(
      `f16 accumulate must be ${F16_ACCUMULATE.map((a) => `"${a}"`).join(", ")}, got ${
        JSON.stringify(acc)
      }`,
    );
  }
  if (acc !== "f32" && precision !== "f16") {
    throw new RangeError("f16 accumulation needs precision f16 (--precision f16)");
  }
  return acc;
}

/**
 * The precision if the backend can run it: f16 on WebGPU needs `shader-f16`
 * (a one-line error naming the adapter otherwise).
 */
export function checkPrecision(precision: Precision, backend: Backend): Precision {
  if (precision !== "f32" && precision !== "f16") {
    throw new RangeError(`precision must be "f32" or "f16", got ${JSON.stringify(precision)}`);
  }
  if (
    precision === "f16" && backend.kind === "webgpu" && !(backend as { hasF16?: boolean }).hasF16
  ) {
    throw new Error(
      `--precision f16 needs the WebGPU feature shader-f16, which the adapter ${backend.description} ` +
        `lacks: use a GPU whose driver exposes it (recent NVIDIA, AMD, Intel, Apple; Mesa lavapipe ` +
        `with DENO_WEBGPU_BACKEND=vulkan), --device cpu to check the numerics, or --precision f32`,
    );
  }
  return precision;
}

/** Rewrites `report.html` from the run's metrics.jsonl and samples.jsonl. */
export async function writeReport(
  out: string,
  extra: Record<string, string | number> = {},
): Promise<void> {
  const records = (await readJsonl(runPath(out, "metrics")).catch(() => [])) as MetricsRecord[];
  const samples = (await readJsonl(runPath(out, "samples")).catch(() => [])) as SampleRecord[];
  const name = out.replace(/\/+$/, "").split("/").pop() ?? out;
  await writeFileAtomic(`${out}/report.html`, renderReport(name, records, samples, extra));
}
