/**
 * The run folder of CONTRACTS.md §7: everything a training run writes, and
 * everything `generate`, `eval`, `--resume` and `--init-from` read back.
 *
 * ```
 * runs/NAME/config.json          model configuration (§1)
 * runs/NAME/tokenizer.json       Hugging Face tokenizer
 * runs/NAME/model.safetensors    F32 weights under the §3 names
 * runs/NAME/optimizer.safetensors AdamW moments: exp_avg.<name>, exp_avg_sq.<name>
 * runs/NAME/trainer_state.json   step, epoch, data position, RNG, best metric, schedule
 * runs/NAME/metrics.jsonl        one JSON object a line
 * runs/NAME/samples.jsonl        one JSON object a line
 * ```
 *
 * Whole-file writes are atomic (temporary file in the same folder, fsync,
 * rename). A missing file gives `Deno.errors.NotFound` and a corrupt one a
 * SyntaxError (or the TypeError/RangeError of the config check), each with
 * a one-line message naming the file. Everything here is plain data
 * (Float32Array); nothing depends on the tensor engine.
 *
 * @module
 */
import { type ModelConfig, validateConfig } from "../nn/config.ts";
import { writeJsonAtomic } from "./atomic.ts";
import {
  type LoadedTensor,
  readSafetensors,
  type TensorToWrite,
  writeSafetensors,
} from "./safetensors.ts";
import { errorLine } from "../tensor/errors.ts";

/** File names inside a run folder (CONTRACTS.md §7). */
export const RUN_FILES = {
  config: "config.json",
  tokenizer: "tokenizer.json",
  model: "model.safetensors",
  optimizer: "optimizer.safetensors",
  trainerState: "trainer_state.json",
  metrics: "metrics.jsonl",
  samples: "samples.jsonl",
} as const;

/** Name of the LM head weight, omitted from model.safetensors when embeddings are tied. */
export const LM_HEAD_WEIGHT = "decoder.lm_head.weight";

/** A named parameter (or optimizer moment) as plain data. */
export interface NamedTensor {
  /** Dimensions, row-major; Linear weights are [out, in] as in PyTorch. */
  shape: number[];
  /** Elements, row-major. */
  data: Float32Array;
}

/** Path of `file` inside run folder `dir`. */
export function runPath(dir: string, file: keyof typeof RUN_FILES): string {
  return `${dir.replace(/\/+$/, "") || "/"}/${RUN_FILES[file]}`;
}

async function readText(path: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (err) {
    throw fileError(path, err);
  }
}

function fileError(path: string, err: unknown): Error {
  if (err instanceof Deno.errors.NotFound) {
    return new Deno.errors.NotFound(`${path}: file is missing`);
  }
  const why = errorLine(err);
  return new Error(`${path}: cannot read (${why})`, { cause: err });
}

/** The JSON of the file at `path`; a missing file or invalid JSON is an error naming it. */
export async function readJsonFile(path: string): Promise<unknown> {
  const text = await readText(path);
  try {
    return JSON.parse(text);
  } catch (err) {
    const why = errorLine(err);
    throw new SyntaxError(`${path}: invalid JSON (${why})`);
  }
}

// ---------------------------------------------------------------------------
// config.json

/** Validates `config` and writes it as `DIR/config.json` (creating DIR). */
export async function saveConfig(dir: string, config: ModelConfig): Promise<void> {
  const path = runPath(dir, "config");
  const checked = validateConfig(config, path);
  await Deno.mkdir(dir, { recursive: true });
  await writeJsonAtomic(path, checked);
}

/** Reads and validates `DIR/config.json`. */
export async function loadConfig(dir: string): Promise<ModelConfig> {
  const path = runPath(dir, "config");
  return validateConfig(await readJsonFile(path), path);
}

// ---------------------------------------------------------------------------
// model.safetensors

/** Options of {@linkcode saveModelWeights}. */
export interface SaveWeightsOptions {
  /** When true, `decoder.lm_head.weight` is left out of the file (it is decoder.embed.weight). */
  tieEmbeddings: boolean;
  /** Extra string metadata; `format: "pt"` is always set, as `safetensors.torch.save_file` does. */
  metadata?: Record<string, string>;
}

function toWritable(
  tensors: Readonly<Record<string, NamedTensor>>,
  label: string,
  prefix = "",
  skip?: string,
): Record<string, TensorToWrite> {
  const out: Record<string, TensorToWrite> = Object.create(null);
  for (const name of Object.keys(tensors)) {
    if (name === skip) continue;
    const t = tensors[name];
    if (!t || !(t.data instanceof Float32Array)) {
      throw new TypeError(`${label}: tensor ${JSON.stringify(name)} must hold a Float32Array`);
    }
    out[prefix + name] = { dtype: "F32", shape: t.shape, data: t.data };
  }
  return out;
}

/** Writes F32 weights under their §3 names to `DIR/model.safetensors` (creating DIR). */
export async function saveModelWeights(
  dir: string,
  tensors: Readonly<Record<string, NamedTensor>>,
  opts: SaveWeightsOptions,
): Promise<void> {
  const path = runPath(dir, "model");
  const skip = opts.tieEmbeddings ? LM_HEAD_WEIGHT : undefined;
  const writable = toWritable(tensors, path, "", skip);
  await Deno.mkdir(dir, { recursive: true });
  await writeSafetensors(path, writable, { ...opts.metadata, format: "pt" });
}

async function readFloatTensors(path: string): Promise<{
  tensors: Record<string, NamedTensor>;
  metadata: Record<string, string>;
}> {
  let file;
  try {
    file = await readSafetensors(path);
  } catch (err) {
    if (err instanceof SyntaxError) throw err; // SafetensorsError names the file
    throw fileError(path, err);
  }
  const tensors: Record<string, NamedTensor> = Object.create(null);
  for (const name of Object.keys(file.tensors)) {
    const t: LoadedTensor = file.tensors[name];
    if (!(t.data instanceof Float32Array)) {
      throw new TypeError(
        `${path}: tensor ${JSON.stringify(name)} has dtype ${t.dtype}; expected F32, F16 or BF16`,
      );
    }
    tensors[name] = { shape: t.shape, data: t.data };
  }
  return { tensors, metadata: file.metadata };
}

/**
 * Reads `DIR/model.safetensors` (F32, F16 or BF16; returned as Float32Array).
 * A tied file has no `decoder.lm_head.weight`: the model reuses decoder.embed.weight.
 */
export async function loadModelWeights(dir: string): Promise<Record<string, NamedTensor>> {
  return (await readFloatTensors(runPath(dir, "model"))).tensors;
}

// ---------------------------------------------------------------------------
// optimizer.safetensors

/** AdamW state: first and second moments per parameter name, and the step count. */
export interface OptimizerState {
  /** Optimizer steps taken (drives bias correction). */
  step: number;
  /** First moments (torch `exp_avg`) by parameter name. */
  expAvg: Record<string, NamedTensor>;
  /** Second moments (torch `exp_avg_sq`) by parameter name. */
  expAvgSq: Record<string, NamedTensor>;
  /** Extra string metadata (e.g. hyperparameters); `step` and `optimizer` are reserved. */
  metadata?: Record<string, string>;
}

const EXP_AVG = "exp_avg.";
const EXP_AVG_SQ = "exp_avg_sq.";

/** Writes AdamW moments as `exp_avg.<name>` / `exp_avg_sq.<name>` with the step in metadata. */
export async function saveOptimizerState(dir: string, state: OptimizerState): Promise<void> {
  const path = runPath(dir, "optimizer");
  if (!Number.isSafeInteger(state.step) || state.step < 0) {
    throw new RangeError(`${path}: step must be a non-negative integer, got ${state.step}`);
  }
  const m = Object.keys(state.expAvg).sort();
  const v = Object.keys(state.expAvgSq).sort();
  if (m.join("\n") !== v.join("\n")) {
    throw new TypeError(`${path}: exp_avg and exp_avg_sq must name the same parameters`);
  }
  for (const name of m) {
    const a = state.expAvg[name].shape, b = state.expAvgSq[name].shape;
    if (a.join(",") !== b.join(",")) {
      throw new TypeError(`${path}: moments of ${JSON.stringify(name)} differ in shape`);
    }
  }
  const writable = {
    ...toWritable(state.expAvg, path, EXP_AVG),
    ...toWritable(state.expAvgSq, path, EXP_AVG_SQ),
  };
  await Deno.mkdir(dir, { recursive: true });
  await writeSafetensors(path, writable, {
    ...state.metadata,
    format: "pt",
    optimizer: "adamw",
    step: String(state.step),
  });
}

/** Reads `DIR/optimizer.safetensors`, checking that every moment has its pair. */
export async function loadOptimizerState(dir: string): Promise<OptimizerState> {
  const path = runPath(dir, "optimizer");
  const { tensors, metadata } = await readFloatTensors(path);
  const stepText = metadata.step;
  if (stepText === undefined || !/^(0|[1-9][0-9]*)$/.test(stepText)) {
    throw new SyntaxError(`${path}: metadata "step" must be a non-negative integer`);
  }
  const expAvg: Record<string, NamedTensor> = Object.create(null);
  const expAvgSq: Record<string, NamedTensor> = Object.create(null);
  for (const key of Object.keys(tensors)) {
    if (key.startsWith(EXP_AVG_SQ)) expAvgSq[key.slice(EXP_AVG_SQ.length)] = tensors[key];
    else if (key.startsWith(EXP_AVG)) expAvg[key.slice(EXP_AVG.length)] = tensors[key];
    else throw new SyntaxError(`${path}: unexpected tensor ${JSON.stringify(key)}`);
  }
  for (const name of new Set([...Object.keys(expAvg), ...Object.keys(expAvgSq)])) {
    const a = expAvg[name], b = expAvgSq[name];
    if (!a || !b) {
      throw new SyntaxError(
        `${path}: ${a ? EXP_AVG_SQ : EXP_AVG}${name} is missing (moments come in pairs)`,
      );
    }
    if (a.shape.join(",") !== b.shape.join(",")) {
      throw new SyntaxError(`${path}: moments of ${JSON.stringify(name)} differ in shape`);
    }
  }
  const extra: Record<string, string> = {};
  for (const [k, v] of Object.entries(metadata)) {
    if (k !== "step" && k !== "optimizer" && k !== "format") extra[k] = v;
  }
  return { step: Number(stepText), expAvg, expAvgSq, metadata: extra };
}

// ---------------------------------------------------------------------------
// trainer_state.json

/**
 * Where training stands, enough to resume so that the final weights equal an
 * uninterrupted run's. An open record: the trainer may add fields; the
 * fields below are checked when present.
 */
export interface TrainerState {
  /** Optimizer steps completed. */
  step: number;
  /** Epoch in progress, 0-based. */
  epoch: number;
  /** Batches of the current epoch already consumed; the data loader skips them on resume. */
  batch_in_epoch?: number;
  /** Seed the run started with. */
  seed?: number;
  /** Serialized random generator states by use (e.g. "shuffle", "dropout"). */
  rng_states?: Record<string, unknown>;
  /** Best validation metric so far (null before the first evaluation). */
  best_metric?: number | null;
  /** Name of that metric, e.g. "loss". */
  best_metric_name?: string;
  /** Step at which best_metric was reached. */
  best_step?: number | null;
  /** Learning-rate schedule state (e.g. warmup_steps, total_steps, last lr). */
  schedule?: Record<string, unknown>;
  /** Anything else the trainer keeps. */
  [key: string]: unknown;
}

const COUNT_FIELDS = ["step", "epoch", "batch_in_epoch", "seed"] as const;

function checkTrainerState(raw: unknown, path: string): TrainerState {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new TypeError(`${path}: expected a JSON object`);
  }
  const s = raw as Record<string, unknown>;
  for (const f of COUNT_FIELDS) {
    const v = s[f];
    if (v === undefined && (f === "step" || f === "epoch")) {
      throw new TypeError(`${path}: field "${f}" is missing`);
    }
    if (v !== undefined && (!Number.isSafeInteger(v) || (v as number) < 0)) {
      throw new TypeError(`${path}: field "${f}" must be a non-negative integer`);
    }
  }
  for (const f of ["best_metric", "best_step"] as const) {
    const v = s[f];
    if (v !== undefined && v !== null && (typeof v !== "number" || !Number.isFinite(v))) {
      throw new TypeError(`${path}: field "${f}" must be a finite number or null`);
    }
  }
  for (const f of ["rng_states", "schedule"] as const) {
    const v = s[f];
    if (v !== undefined && (typeof v !== "object" || v === null || Array.isArray(v))) {
      throw new TypeError(`${path}: field "${f}" must be an object`);
    }
  }
  return s as TrainerState;
}

/** Checks and writes `DIR/trainer_state.json` (creating DIR). */
export async function saveTrainerState(dir: string, state: TrainerState): Promise<void> {
  const path = runPath(dir, "trainerState");
  checkTrainerState(state, path);
  await Deno.mkdir(dir, { recursive: true });
  await writeJsonAtomic(path, state);
}

/** Reads and checks `DIR/trainer_state.json`. */
export async function loadTrainerState(dir: string): Promise<TrainerState> {
  const path = runPath(dir, "trainerState");
  return checkTrainerState(await readJsonFile(path), path);
}

// ---------------------------------------------------------------------------
// metrics.jsonl / samples.jsonl

/** Appends `obj` as one JSON line to `path`, creating the file if missing. */
export async function appendJsonl(path: string, obj: unknown): Promise<void> {
  const line = JSON.stringify(obj);
  if (line === undefined) throw new TypeError(`${path}: value is not JSON-serializable`);
  await Deno.writeTextFile(path, line + "\n", { append: true, create: true });
}

/** Reads a JSONL file; blank lines are skipped, a bad line names `path:line`. */
export async function readJsonl(path: string): Promise<unknown[]> {
  const text = await readText(path);
  const out: unknown[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    if (lines[i].trim() === "") continue;
    try {
      out.push(JSON.parse(lines[i]));
    } catch (err) {
      const why = errorLine(err);
      throw new SyntaxError(`${path}:${i + 1}: invalid JSON (${why})`);
    }
  }
  return out;
}
