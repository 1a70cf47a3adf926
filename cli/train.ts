/**
 * `webseq train`: train a seq2seq model on sentence pairs.
 *
 * @module
 */
import {
  columnFlag,
  EXIT_FAILURE,
  EXIT_OK,
  type Flags,
  formatFlag,
  numberFlag,
  parseFlags,
  reportError,
  stringFlag,
  UsageError,
} from "./_common.ts";
import { parseDevice, selectBackend } from "./_device.ts";
import {
  NonFiniteLossError,
  train,
  TrainOptionError,
  type TrainOptions,
  type TuneMode,
} from "../train/trainer.ts";
import { releaseRunFolderSync } from "../train/run_lock.ts";
import { MATMUL_VARIANTS, parseTileName, useActivations } from "../ops/mod.ts";
import { F16_ACCUMULATE, isF16Accumulate, type MatmulF16Accumulate } from "../ops/matmul_f16.ts";
import { PRESETS } from "../nn/config.ts";

/** Help text. */
export const HELP: string = `webseq train — train an encoder–decoder transformer on sentence pairs

With no options it trains the "tiny" preset on the built-in corpus
(dates in English/Turkish → ISO 8601, numbers → Turkish words) into runs/default.

Examples:
  deno task train
  deno run --allow-read --allow-write=runs --allow-env cli.ts train \\
    --data data/corpus/train.tsv --valid data/corpus/valid.tsv --out runs/dates --epochs 5

Usage: webseq train [--data FILE] [--valid FILE] [--out DIR] [options]

Data:
  --data FILE              training pairs: .csv, .tsv or .jsonl (default data/corpus/train.tsv)
  --valid FILE             validation pairs (default: data/corpus/valid.tsv with the built-in
                           data, else a seeded 5% split of --data, at most 500 pairs)
  --format csv|tsv|jsonl   the data files' format (default: from the extension; .gz files
                           are read through gzip)
  --header                 CSV/TSV: the first row of --data and --valid is a header (default:
                           when it names "source" and "target", or a column is chosen by name)
  --source-col NAME|N      source column (default "source" or the first column)
  --target-col NAME|N      target column (default "target" or the second column)
  --tokenizer FILE|ID      tokenizer.json (or its folder) to use, or a Hub model id such as
                           "google-t5/t5-small" when run with --allow-net=huggingface.co
                           (cached under $WEBSEQ_CACHE or ~/.cache/webseq; HF_ENDPOINT and
                           HF_TOKEN are honoured); default: train a BPE tokenizer on the data
  --vocab-size N           vocabulary of the trained tokenizer (default 1000; 300 on the
                           built-in corpus)
  --split-digits           the trained tokenizer makes every digit 0-9 a token of its own
                           (always on with the built-in corpus)
  --max-length N           longest source/target in tokens, eos included (default 64)
Model:
  --preset NAME            tiny | small | base (default tiny)
  --config FILE            a config.json (a run folder's, or its fields: README "Data, model
                           and run folder") instead of a preset
  --init-from DIR          start from a run folder's weights, tokenizer and config (so no
                           --preset, --config, --tokenizer, --vocab-size or --split-digits)
  --dropout X              override dropout; 0 also disables attention dropout and DropPath
Optimisation:
  --epochs N               epochs (default 10; 12 on the built-in corpus)
  --max-steps N            stop after N optimizer steps
  --batch-size N           pairs per batch (default 32)
  --grad-accum N           micro-batches per optimizer step (default 1)
  --lr X                   peak learning rate (default 1e-3; 3e-3 on the built-in corpus)
  --weight-decay X         AdamW decoupled weight decay (default 0.01)
  --warmup N               linear warmup steps (default 5% of all steps)
  --max-grad-norm X        clip the global gradient norm (default 1; 0 disables)
  --label-smoothing X      label smoothing (default 0)
  --precision f32|f16      f16: mixed precision (f16 Linear matmuls with f32 accumulation, f32
                           master weights, dynamic loss scaling); needs WebGPU shader-f16, and
                           on the CPU only emulates the rounding (default f32)
  --f16-accumulate MODE    with --precision f16: f32 (default), or f16, f16/32, f16/64: the
                           f16 matmuls sum each 16-, 32- or 64-deep K group by f16 FMAs,
                           the groups in f32 (faster with packed half math, less exact)
  --no-shuffle             keep the file order (deterministic comparisons)
  --seed N                 seed of init, data order and dropout (default 0)
Run:
  --out DIR                run folder (default runs/default)
  --resume                 continue the run in --out exactly where it stopped, with the settings
                           it recorded: --data, --valid, the columns, --max-length, --seed,
                           --no-shuffle, --lr, --weight-decay, --warmup, --batch-size,
                           --grad-accum, --max-grad-norm, --label-smoothing, --precision and
                           --f16-accumulate (leave them out; another value is an error; data
                           files given again may be moved copies with as many pairs);
                           --epochs or --max-steps may change (the schedule then ends at the
                           new last step; --epochs lifts a recorded --max-steps); the model and
                           tokenizer are the run's own
  --device auto|webgpu|cpu where to train (default auto: a hardware WebGPU adapter, else CPU)
  --tune auto|on|off       time the matmul variants and attention kernels on the first step's
                           shapes and use the fastest (default auto: on a hardware GPU; same
                           numbers up to f32 rounding)
  --tune-cache FILE|off    keep tuned choices per adapter in FILE (default tuning.json in
                           $WEBSEQ_CACHE or ~/.cache/webseq when write access to it is granted)
  --tune-tiles T,T         also time these generator tiles (names as bench/ops_bench.ts
                           --only sweep prints them, e.g. t128x64k16_8x8d)
  --activations MODE       kept (default): on WebGPU the backward reads the GELU activations
                           and attention probabilities kept from the forward (faster, as
                           PyTorch); recomputed: it computes them again (less GPU memory:
                           4·d_ff bytes per token and FFN block, 4·S bytes per query and
                           head and attention call)
  --sample-interval N      print sample generations every N epochs (default 1; 0 disables)
  --patience N             early stopping after N epochs without validation improvement
                           (default 0: off)
  --bleu-limit N           validation pairs decoded for BLEU each epoch (default 200; 0 disables)
  --log-every N            read the loss back every N steps (default 1 on CPU, 10 on WebGPU)
  --save-steps N           also write a checkpoint every N steps within an epoch, so a crash
                           loses at most N steps to --resume (default 0: at epoch ends; a
                           resumed run keeps the recorded N unless given another)
  --quiet                  no progress bar or logs
  --json                   one JSON object per epoch on stdout

Ctrl-C (SIGINT) or SIGTERM writes a checkpoint and exits with 130; --resume continues it.
A second Ctrl-C exits at once (once a checkpoint being written is whole).

Permissions: --allow-read (data, config, tokenizer, run folder) --allow-write=DIR (the run folder)
             --allow-env (XDG_RUNTIME_DIR, DENO_WEBGPU_BACKEND). No network, except for a Hub
             --tokenizer (--allow-net=huggingface.co and write access to the cache folder, which
             also keeps the GPU kernel tuning: $WEBSEQ_CACHE or ~/.cache/webseq).
`;

const SPEC = {
  data: { type: "string" },
  valid: { type: "string" },
  out: { type: "string" },
  format: { type: "string" },
  header: { type: "boolean" },
  "source-col": { type: "string" },
  "target-col": { type: "string" },
  tokenizer: { type: "string" },
  "vocab-size": { type: "string" },
  "max-length": { type: "string" },
  preset: { type: "string" },
  config: { type: "string" },
  "init-from": { type: "string" },
  dropout: { type: "string" },
  epochs: { type: "string" },
  "max-steps": { type: "string" },
  "batch-size": { type: "string" },
  "grad-accum": { type: "string" },
  lr: { type: "string" },
  "weight-decay": { type: "string" },
  warmup: { type: "string" },
  "max-grad-norm": { type: "string" },
  "label-smoothing": { type: "string" },
  precision: { type: "string" },
  "f16-accumulate": { type: "string" },
  "no-shuffle": { type: "boolean" },
  seed: { type: "string" },
  resume: { type: "boolean" },
  device: { type: "string" },
  tune: { type: "string" },
  "tune-tiles": { type: "string" },
  "tune-cache": { type: "string" },
  activations: { type: "string" },
  "sample-interval": { type: "string" },
  patience: { type: "string" },
  "bleu-limit": { type: "string" },
  "log-every": { type: "string" },
  "save-steps": { type: "string" },
  quiet: { type: "boolean" },
  json: { type: "boolean" },
  "split-digits": { type: "boolean" },
} as const;

const BUILTIN_TRAIN = "data/corpus/train.tsv";
/** Defaults tuned for the built-in corpus (a tiny model learns it in minutes on 2 cores). */
const BUILTIN_DEFAULTS = { vocabSize: 300, lr: 3e-3, epochs: 12, splitDigits: true };
const BUILTIN_VALID = "data/corpus/valid.tsv";

/**
 * `--f16-accumulate`: f32 (default), or f16, f16/32, f16/64 (f16 FMAs over K groups of 16, 32,
 * 64), which need `--precision f16`.
 */
export function f16AccumulateFlag(
  value: string | undefined,
  precision: "f32" | "f16",
): MatmulF16Accumulate {
  if (value !== undefined && !isF16Accumulate(value)) {
    throw new UsageError(
      `--f16-accumulate must be ${F16_ACCUMULATE.join(", ")}, got ${JSON.stringify(value)}`,
    );
  }
  if (value !== undefined && value !== "f32" && precision !== "f16") {
    throw new UsageError(`--f16-accumulate ${value} needs --precision f16`);
  }
  return value ?? "f32";
}

/** `--tune`: auto (default), on or off. */
export function tuneFlag(value: string | undefined): TuneMode {
  if (value === undefined || value === "auto" || value === "on" || value === "off") {
    return value ?? "auto";
  }
  throw new UsageError(`--tune must be auto, on or off, got ${JSON.stringify(value)}`);
}

/**
 * `--tune-tiles`: the registered matmul tiles plus the named generator
 * tiles (checked here, so a typo stops the run before it starts); undefined
 * when not given (the tuner's default, the registry).
 */
export function tuneTilesFlag(value: string | undefined): string[] | undefined {
  if (value === undefined) return undefined;
  const names = value.split(",").map((x) => x.trim()).filter((x) => x !== "");
  for (const name of names) {
    let ok: boolean;
    try {
      ok = parseTileName(name) !== null;
    } catch (err) {
      throw new UsageError(`--tune-tiles: ${(err as Error).message}`);
    }
    if (!ok) {
      throw new UsageError(
        `--tune-tiles: "${name}" is not a tile name like t128x64k16_8x8d (t<BM>x<BN>k<BK>_<TM>x<TN>[d])`,
      );
    }
  }
  const registered = MATMUL_VARIANTS.filter((v) => v.tile).map((v) => v.name);
  return [...new Set([...registered, ...names])];
}

/** `--tune-cache`: a file, "off" (null), or undefined (the default file where permitted). */
export function tuneCacheFlag(value: string | undefined): string | null | undefined {
  if (value === "") throw new UsageError("--tune-cache needs a file name or off");
  return value === "off" ? null : value;
}

/**
 * `--activations`: kept or recomputed (ops/activations.ts), applied at once;
 * absent leaves the default (and `WEBSEQ_GELU_STAGE`, `WEBSEQ_ATTENTION_PROBS`).
 */
export function activationsFlag(value: string | undefined): void {
  if (value === undefined) return;
  if (value !== "kept" && value !== "recomputed") {
    throw new UsageError(`--activations must be kept or recomputed, got ${JSON.stringify(value)}`);
  }
  useActivations(value);
}

/** `--preset`: a preset's name (nn/config.ts PRESETS), or undefined when not given. */
export function presetFlag(value: string | undefined): string | undefined {
  if (value !== undefined && !Object.hasOwn(PRESETS, value)) {
    throw new UsageError(
      `--preset must be ${Object.keys(PRESETS).join(", ")}, got ${JSON.stringify(value)}`,
    );
  }
  return value;
}

/** `--precision`: f32 (default) or f16. */
export function precisionFlag(value: string | undefined): "f32" | "f16" {
  if (value === undefined || value === "f32" || value === "f16") return value ?? "f32";
  throw new UsageError(`--precision must be f32 or f16, got ${JSON.stringify(value)}`);
}

/** The listeners {@linkcode interruptHandler} makes. */
export interface InterruptHandler {
  /** The SIGINT/SIGTERM listener. */
  onSignal: () => void;
  /** `TrainOptions.onCheckpointWrite`: whether a checkpoint is being written. */
  onCheckpointWrite: (writing: boolean) => void;
}

/**
 * The signal listeners of `train`: the first SIGINT/SIGTERM aborts
 * `controller` (the run stops after the step under way, with a checkpoint);
 * a second one calls `exit(130)` at once — or, while a checkpoint is being
 * written, as soon as it is (so the run folder keeps a whole checkpoint).
 */
export function interruptHandler(
  controller: AbortController,
  exit: (code: number) => void = Deno.exit,
): InterruptHandler {
  let writing = false, exitAfterWrite = false;
  return {
    onSignal: () => {
      if (!controller.signal.aborted) {
        console.error(
          "webseq train: interrupted: stopping after this step with a checkpoint (again: exit at once)",
        );
        controller.abort();
      } else if (writing) {
        console.error("webseq train: interrupted again: exiting once the checkpoint is written");
        exitAfterWrite = true;
      } else {
        console.error("webseq train: interrupted again: exiting without a new checkpoint");
        exit(130);
      }
    },
    onCheckpointWrite: (now) => {
      writing = now;
      if (!now && exitAfterWrite) exit(130);
    },
  };
}

/** `--out`: the run folder (default runs/default); an empty one is a usage error. */
function outFlag(flags: Flags): string {
  const out = stringFlag(flags, "out");
  if (out === "") throw new UsageError("Option --out needs a folder name");
  return out ?? "runs/default";
}

/** Runs `webseq train`. */
export async function run(args: string[]): Promise<number> {
  const controller = new AbortController();
  let out: string | undefined;
  const { onSignal, onCheckpointWrite } = interruptHandler(controller, (code) => {
    if (out !== undefined) releaseRunFolderSync(out); // Deno.exit skips train's `finally`
    Deno.exit(code);
  });
  const signals: Deno.Signal[] = ["SIGINT", "SIGTERM"];
  try {
    const { flags } = parseFlags(args, SPEC);
    if (flags.help) {
      console.log(HELP);
      return EXIT_OK;
    }
    const int = (n: string, min = 0) => numberFlag(flags, n, { integer: true, min });
    const resume = Boolean(flags.resume);
    // a resumed run's data (and every setting it recorded) comes from its trainer_state.json
    const data = stringFlag(flags, "data") ?? (resume ? undefined : BUILTIN_TRAIN);
    const device = parseDevice(stringFlag(flags, "device"));
    if (flags.preset !== undefined && flags.config !== undefined) {
      throw new UsageError("Give --preset or --config, not both");
    }
    if (resume && flags["init-from"] !== undefined) {
      throw new UsageError("Give --resume or --init-from, not both");
    }
    const from = resume ? "--resume" : flags["init-from"] !== undefined ? "--init-from" : null;
    for (const f of ["preset", "config", "tokenizer", "vocab-size", "split-digits"]) {
      if (from && flags[f] !== undefined) {
        throw new UsageError(
          `--${f} does not apply with ${from}: the model's config and tokenizer come from the run folder`,
        );
      }
    }
    for (const f of ["vocab-size", "split-digits"]) {
      if (flags.tokenizer !== undefined && flags[f] !== undefined) {
        throw new UsageError(`--${f} is for a tokenizer trained on the data, not with --tokenizer`);
      }
    }
    const preset = presetFlag(stringFlag(flags, "preset"));
    activationsFlag(stringFlag(flags, "activations"));
    // the built-in corpus's defaults, for a new run on it
    const builtin = !resume && data === BUILTIN_TRAIN;
    const opts: Omit<TrainOptions, "backend"> = {
      data,
      // the built-in data's validation file (also for a run resumed from an older state, which
      // did not record it)
      valid: stringFlag(flags, "valid") ?? (data === BUILTIN_TRAIN ? BUILTIN_VALID : undefined),
      out: outFlag(flags),
      format: formatFlag(flags),
      header: flags.header ? true : undefined,
      sourceCol: columnFlag(flags, "source-col"),
      targetCol: columnFlag(flags, "target-col"),
      tokenizer: stringFlag(flags, "tokenizer"),
      // the specials and one more, as tokenizer train (trainBpe also counts digits or bytes)
      vocabSize: int("vocab-size", 5) ??
        (builtin && !from ? BUILTIN_DEFAULTS.vocabSize : undefined),
      splitDigits: Boolean(flags["split-digits"]) || (builtin && BUILTIN_DEFAULTS.splitDigits),
      maxLength: int("max-length", 2),
      preset,
      configFile: stringFlag(flags, "config"),
      initFrom: stringFlag(flags, "init-from"),
      dropout: numberFlag(flags, "dropout", { min: 0, max: 0.99 }),
      epochs: int("epochs", 1) ?? (builtin ? BUILTIN_DEFAULTS.epochs : undefined),
      maxSteps: int("max-steps", 1),
      batchSize: int("batch-size", 1),
      gradAccum: int("grad-accum", 1),
      lr: numberFlag(flags, "lr", { min: 0 }) ?? (builtin ? BUILTIN_DEFAULTS.lr : undefined),
      weightDecay: numberFlag(flags, "weight-decay", { min: 0 }),
      warmup: int("warmup"),
      maxGradNorm: numberFlag(flags, "max-grad-norm", { min: 0 }),
      labelSmoothing: numberFlag(flags, "label-smoothing", { min: 0, max: 1 }),
      // absent stays undefined: --resume then continues with the run's saved settings
      precision: stringFlag(flags, "precision") === undefined
        ? undefined
        : precisionFlag(stringFlag(flags, "precision")),
      f16Accumulate: stringFlag(flags, "f16-accumulate") === undefined
        ? undefined
        : f16AccumulateFlag(
          stringFlag(flags, "f16-accumulate"),
          // resuming an f16 run needs no --precision again (the trainer checks the pair)
          flags.resume && stringFlag(flags, "precision") === undefined
            ? "f16"
            : precisionFlag(stringFlag(flags, "precision")),
        ),
      tune: tuneFlag(stringFlag(flags, "tune")),
      tuneVariants: tuneTilesFlag(stringFlag(flags, "tune-tiles")),
      tuneCache: tuneCacheFlag(stringFlag(flags, "tune-cache")),
      // absent stays undefined: a resumed run keeps its recorded shuffling
      shuffle: flags["no-shuffle"] ? false : undefined,
      seed: numberFlag(flags, "seed", { integer: true, min: 0, max: 2 ** 32 - 1 }),
      resume,
      sampleInterval: int("sample-interval"),
      patience: int("patience"),
      bleuLimit: int("bleu-limit"),
      logEvery: int("log-every", 1),
      saveSteps: int("save-steps"),
      quiet: Boolean(flags.quiet),
      json: Boolean(flags.json),
      signal: controller.signal,
      onCheckpointWrite,
    };
    const backend = await selectBackend(device, { quiet: opts.quiet });
    out = opts.out;
    for (const s of signals) Deno.addSignalListener(s, onSignal);
    const summary = await train({ ...opts, backend });
    if (summary.stopped === "interrupted") return 130;
    if (!opts.quiet) {
      console.error(
        `done: ${summary.steps} steps, ${summary.epochs} epochs (${summary.stopped}); run folder ${summary.out}`,
      );
    }
    return EXIT_OK;
  } catch (err) {
    if (err instanceof NonFiniteLossError) {
      console.error(`webseq train: error: ${err.message}`);
      return EXIT_FAILURE;
    }
    // an option that does not fit the run (a resumed run's record, the run folder's model)
    if (err instanceof TrainOptionError) return reportError("train", new UsageError(err.message));
    return reportError("train", err);
  } finally {
    for (const s of signals) {
      try {
        Deno.removeSignalListener(s, onSignal);
      } catch { /* not added */ }
    }
  }
}
