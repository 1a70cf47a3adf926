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
import { parseDevice, selectBackend } from "./_device.ts";
import { presetConfig, validateConfig } from "../nn/config.ts";
import { benchTrain } from "../bench/train_bench.ts";

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
  --ops                    also run the kernel benchmarks (matmul, attention, dispatch)
  --profile                add "kernel_ms": GPU time per op of one extra step
                           (WebGPU adapters with timestamp-query)
  --device auto|webgpu|cpu (default auto)
  --json                   JSON lines only (default prints JSON lines too)

Each line names its "device" and "kind"; the training line has kind "train",
tokens_per_s (target tokens/s, warm-up excluded), step_ms and peak_bytes.
Compare with PyTorch: python3 bench/torch_baseline.py --preset small ... (same fields).

Permissions: --allow-read (a --config file) --allow-env
`;

const SPEC = {
  preset: { type: "string" },
  config: { type: "string" },
  "batch-size": { type: "string" },
  "src-len": { type: "string" },
  "tgt-len": { type: "string" },
  steps: { type: "string" },
  ops: { type: "boolean" },
  profile: { type: "boolean" },
  device: { type: "string" },
  json: { type: "boolean" },
} as const;

/** Runs `webseq bench`. */
export async function run(args: string[]): Promise<number> {
  try {
    const { flags } = parseFlags(args, SPEC);
    if (flags.help) {
      console.log(HELP);
      return EXIT_OK;
    }
    const device = parseDevice(stringFlag(flags, "device"));
    if (flags.preset !== undefined && flags.config !== undefined) {
      throw new UsageError("Give --preset or --config, not both");
    }
    const int = (n: string) => numberFlag(flags, n, { integer: true, min: 1 });
    const cfgFile = stringFlag(flags, "config");
    const preset = stringFlag(flags, "preset") ?? "small";
    const config = cfgFile
      ? validateConfig(JSON.parse(await Deno.readTextFile(cfgFile)), cfgFile)
      : presetConfig(preset, { vocab_size: 8000 });
    const backend = await selectBackend(device, { quiet: true });
    if (flags.ops) {
      const { runOpsBench } = await import("../bench/ops_bench.ts");
      for await (const line of runOpsBench({ backend })) printJson(line);
    }
    const srcLen = int("src-len") ?? 32, tgtLen = int("tgt-len") ?? 32;
    if (Math.max(srcLen, tgtLen) > config.max_position) {
      throw new UsageError(`--src-len/--tgt-len exceed max_position ${config.max_position}`);
    }
    printJson(
      await benchTrain(backend, {
        config,
        preset: cfgFile ?? preset,
        batchSize: int("batch-size"),
        srcLen,
        tgtLen,
        steps: int("steps"),
        profile: Boolean(flags.profile),
      }),
    );
    return EXIT_OK;
  } catch (err) {
    return reportError("bench", err);
  }
}
