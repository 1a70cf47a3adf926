/**
 * `webseq bench`: training throughput of a preset (and, with `--ops`,
 * kernel benchmarks), as JSON lines naming the device.
 *
 * @module
 */
import {
  EXIT_OK,
  numberFlag,
  parseFlags,
  printJson,
  reportError,
  stringFlag,
  UsageError,
} from "./_common.ts";
import { isSoftwareAdapter, parseDevice, selectBackend } from "./_device.ts";
import {
  activationsFlag,
  f16AccumulateFlag,
  precisionFlag,
  presetFlag,
  tuneCacheFlag,
  tuneFlag,
  tuneTilesFlag,
} from "./train.ts";
import { presetConfig, validateConfig } from "../nn/config.ts";
import { readJsonFile } from "../train/run_folder.ts";
import { benchTrain, parityTflops } from "../bench/train_bench.ts";

/** Help text. */
export const HELP: string = `webseq bench — training throughput and kernel speed, as JSON lines

Examples:
  deno task bench --preset tiny --steps 3
  deno run --allow-read --allow-env cli.ts bench --preset small --batch-size 16 --src-len 32 --tgt-len 32 --json

Usage: webseq bench [--preset NAME|--config FILE] [options]

Options:
  --preset NAME            tiny | small | base (default small), vocab_size 8000
  --config FILE            a config.json instead of a preset
  --batch-size N           batch size (default 16)
  --src-len S              source length (default 32)
  --tgt-len T              target length (default 32)
  --steps N                timed steps after 2 warm-up steps (default 10)
  --warmup-ms N            then more warm-up steps until N ms have passed (default 1000 on
                           a hardware GPU, else 0: an idle GPU's clocks come up with load);
                           --torch warms up the same way
  --precision f32|f16      f16: the trainer's mixed precision (f16 Linear matmuls with f32
                           accumulation, loss scaling); WebGPU needs shader-f16 (default f32)
  --ops                    also run the kernel benchmarks (matmul, attention, dispatch)
  --profile                add "kernel_ms": time per op of one extra step (GPU time on
                           WebGPU adapters with timestamp-query; wall clock on the CPU)
  --step-times             add "step_times_ms": after the timed steps, as many more with a
                           wait for the device after each (no overlap of host and device;
                           on WebGPU each wait also costs Deno's readback latency)
  --device auto|webgpu|cpu (default auto: a hardware WebGPU adapter, else the CPU)
  --f16-accumulate MODE    with --precision f16: f32 (default), f16, f16/32, f16/64: f16 FMAs
                           within 16-, 32- or 64-deep K groups (as train)
  --tune auto|on|off       tune the matmul and attention kernels on the first warm-up step's
                           shapes, as train does (default auto: on a hardware GPU); the line
                           gets "tune_s", "tuned_shapes" and "tuned_attention"
  --tune-tiles T,T         also time these generator tiles when tuning (as train)
  --tune-cache FILE|off    the tuning cache (as train)
  --activations MODE       kept (default) or recomputed: what the backward reads from the
                           forward on WebGPU (as train); the line gets "gelu_stage" and
                           "attention_probs"
  --torch PYTHON           then run bench/torch_baseline.py with PYTHON on the same
                           workload (cuda when webseq ran on a hardware GPU, else cpu
                           with OMP_NUM_THREADS = cores) and print its lines and a
                           "compare" line with the ratios (needs --allow-run and a checkout)
  --torch-bf16             the PyTorch run autocasts to bfloat16
  --json                   JSON lines only (default prints JSON lines too)

Each line names its "device" and "kind"; the training line has kind "train",
tokens_per_s (target tokens/s, warm-up excluded), step_ms and peak_bytes.
Compare with PyTorch in the same command: --torch /usr/bin/python3 (same fields).

Permissions: --allow-read (a --config file) --allow-env; --allow-run with --torch
`;

const SPEC = {
  preset: { type: "string" },
  config: { type: "string" },
  "batch-size": { type: "string" },
  "src-len": { type: "string" },
  "tgt-len": { type: "string" },
  steps: { type: "string" },
  "warmup-ms": { type: "string" },
  ops: { type: "boolean" },
  profile: { type: "boolean" },
  "step-times": { type: "boolean" },
  device: { type: "string" },
  precision: { type: "string" },
  tune: { type: "string" },
  "tune-tiles": { type: "string" },
  "tune-cache": { type: "string" },
  activations: { type: "string" },
  "f16-accumulate": { type: "string" },
  torch: { type: "string" },
  "torch-bf16": { type: "boolean" },
  json: { type: "boolean" },
} as const;

/** What runTorchBaseline runs: the workload of the webseq line. */
interface TorchRun {
  python: string;
  preset: string;
  configFile?: string;
  batchSize: number;
  srcLen: number;
  tgtLen: number;
  steps: number;
  warmupMs: number;
  cuda: boolean;
  bf16: boolean;
  ops: boolean;
}

/** Runs bench/torch_baseline.py and returns its JSON lines (throws with its stderr on failure). */
async function runTorchBaseline(r: TorchRun): Promise<Record<string, unknown>[]> {
  const script = new URL("../bench/torch_baseline.py", import.meta.url);
  if (script.protocol !== "file:") {
    throw new UsageError("--torch needs a checkout of webseq (bench/torch_baseline.py)");
  }
  const args = [
    script.pathname,
    ...(r.configFile ? ["--config", r.configFile] : ["--preset", r.preset]),
    "--batch-size",
    String(r.batchSize),
    "--src-len",
    String(r.srcLen),
    "--tgt-len",
    String(r.tgtLen),
    "--steps",
    String(r.steps),
    "--warmup-steps",
    "2",
    "--warmup-ms",
    String(r.warmupMs),
    "--device",
    r.cuda ? "cuda" : "cpu",
    ...(r.bf16 ? ["--bf16"] : []),
    ...(r.ops ? ["--ops"] : []),
  ];
  const env: Record<string, string> = Deno.env.get("OMP_NUM_THREADS") ? {} : {
    OMP_NUM_THREADS: String(navigator.hardwareConcurrency),
  };
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command(r.python, { args, env, stdout: "piped", stderr: "piped" })
      .output();
  } catch (err) {
    throw new Error(`--torch ${r.python}: cannot run it (${(err as Error).message})`);
  }
  const text = new TextDecoder();
  if (!out.success) {
    const last = text.decode(out.stderr).trim().split("\n").pop() ?? "";
    throw new Error(`--torch: torch_baseline.py exited ${out.code}: ${last}`);
  }
  return text.decode(out.stdout).split("\n").filter((l) => l.startsWith("{")).map((l) =>
    JSON.parse(l)
  );
}

/** Runs `webseq bench`. */
export async function run(args: string[]): Promise<number> {
  try {
    const { flags } = parseFlags(args, SPEC);
    if (flags.help) {
      console.log(HELP);
      return EXIT_OK;
    }
    const device = parseDevice(stringFlag(flags, "device"));
    const precision = precisionFlag(stringFlag(flags, "precision"));
    const tune = tuneFlag(stringFlag(flags, "tune"));
    const tuneVariants = tuneTilesFlag(stringFlag(flags, "tune-tiles"));
    const tuneCache = tuneCacheFlag(stringFlag(flags, "tune-cache"));
    const f16Accumulate = f16AccumulateFlag(stringFlag(flags, "f16-accumulate"), precision);
    activationsFlag(stringFlag(flags, "activations"));
    if (flags.preset !== undefined && flags.config !== undefined) {
      throw new UsageError("Give --preset or --config, not both");
    }
    const int = (n: string) => numberFlag(flags, n, { integer: true, min: 1 });
    const cfgFile = stringFlag(flags, "config");
    const preset = presetFlag(stringFlag(flags, "preset")) ?? "small";
    const config = cfgFile
      ? validateConfig(await readJsonFile(cfgFile), cfgFile)
      : presetConfig(preset, { vocab_size: 8000 });
    // --torch is checked before webseq's own run (which can take minutes)
    const torchPython = stringFlag(flags, "torch");
    if (torchPython !== undefined) {
      const run = await Deno.permissions.query({ name: "run", command: torchPython });
      if (run.state !== "granted") {
        throw new UsageError(`Option --torch ${torchPython} needs --allow-run (to start it)`);
      }
      // a path that is not there (told only where reading it is allowed: a stat needs that)
      const read = await Deno.permissions.query({ name: "read", path: torchPython });
      if (torchPython.includes("/") && read.state === "granted") {
        try {
          await Deno.stat(torchPython);
        } catch (err) {
          if (err instanceof Deno.errors.NotFound) {
            throw new UsageError(`Option --torch: ${torchPython} does not exist`);
          }
        }
      }
    }
    const backend = await selectBackend(device, { quiet: true });
    if (flags.ops) {
      const { runOpsBench } = await import("../bench/ops_bench.ts");
      for await (const line of runOpsBench({ backend })) printJson(line);
    }
    const srcLen = int("src-len") ?? 32, tgtLen = int("tgt-len") ?? 32;
    if (Math.max(srcLen, tgtLen) > config.max_position) {
      throw new UsageError(`--src-len/--tgt-len exceed max_position ${config.max_position}`);
    }
    const batchSize = int("batch-size") ?? 16, steps = int("steps") ?? 10;
    const warmupMs = numberFlag(flags, "warmup-ms", { integer: true, min: 0 });
    const mine = await benchTrain(backend, {
      config,
      preset: cfgFile ?? preset,
      batchSize,
      srcLen,
      tgtLen,
      steps,
      warmupMs,
      profile: Boolean(flags.profile),
      stepTimes: Boolean(flags["step-times"]),
      precision,
      f16Accumulate,
      tune,
      tuneVariants,
      tuneCache,
    });
    printJson(mine);
    const python = torchPython;
    if (python !== undefined) {
      const lines = await runTorchBaseline({
        python,
        preset,
        configFile: cfgFile,
        batchSize,
        srcLen,
        tgtLen,
        steps,
        warmupMs: mine.warmup_ms,
        cuda: backend.kind === "webgpu" && !isSoftwareAdapter(backend),
        bf16: Boolean(flags["torch-bf16"]),
        ops: Boolean(flags.ops),
      });
      for (const line of lines) printJson(line);
      const theirs = lines.find((l) => l.kind === "train");
      if (theirs) {
        printJson({
          kind: "compare",
          device: mine.device,
          torch_device: theirs.device,
          tokens_per_s_ratio: mine.tokens_per_s / Number(theirs.tokens_per_s),
          // on the GPU both peaks are device allocations; on the CPU both are process RSS
          memory_ratio: (mine.rss_bytes ?? mine.peak_bytes) / Number(theirs.peak_bytes),
          // GPU: what each held from the device, pools and caches included
          ...(mine.peak_reserved_bytes !== undefined && theirs.peak_reserved_bytes !== undefined
            ? {
              reserved_ratio: mine.peak_reserved_bytes / Number(theirs.peak_reserved_bytes),
            }
            : {}),
          torch_bf16: Boolean(flags["torch-bf16"]),
          // with --profile: the products' TFLOP/s at which this step would take PyTorch's time,
          // the rest of the step's GPU time as it is
          ...parityTflops(mine, Number(theirs.step_ms)),
        });
      }
    }
    return EXIT_OK;
  } catch (err) {
    return reportError("bench", err);
  }
}
