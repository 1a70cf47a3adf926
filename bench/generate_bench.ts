/**
 * Greedy decoding and sampling throughput of a randomly initialised preset,
 * choosing each token on the host (a readback per step) and on the device
 * (train/generate.ts `greedyOnDevice` and `sampleOnDevice`, a readback per 8
 * steps), in one process, as JSON lines (one per strategy; `--strategy
 * greedy|sample` runs one):
 *
 *   deno run -A bench/generate_bench.ts --preset small --rows 8 --tokens 32 --json
 *
 * Sampling uses temperature 0.8, top-k 50 and top-p 0.9 (seed 0), so every
 * filter runs. Both paths decode the same sequences (the line says so in
 * `same_ids`; sampling may differ where a cumulative probability lies within
 * f32 rounding of a draw); no row ends early (the eos id is out of the
 * vocabulary), so every row decodes `--tokens` tokens.
 *
 * @module
 */
import { parseArgs } from "node:util";
import "../ops/mod.ts";
import { sharedGpuBackend } from "../gpu/backend.ts";
import { CPU } from "../tensor/cpu_backend.ts";
import type { Backend } from "../tensor/types.ts";
import { presetConfig } from "../nn/config.ts";
import { Seq2Seq } from "../nn/seq2seq.ts";
import { initContext } from "../nn/module.ts";
import {
  createDecodeSession,
  decodeSteps,
  type DecodeStepsOptions,
  type GenerateStrategy,
  type GenerationResult,
  greedyOnDevice,
  sampleOnDevice,
} from "../train/generate.ts";

/** The sampling settings of the "sample" lines (every filter on). */
export const BENCH_SAMPLING: { temperature: number; topK: number; topP: number; seed: number } = {
  temperature: 0.8,
  topK: 50,
  topP: 0.9,
  seed: 0,
};

/** Options of {@linkcode benchGenerate}. */
export interface GenerateBenchOptions {
  /** Where to run (default: the shared WebGPU backend, else the CPU). */
  backend?: Backend;
  /** Model preset (default "tiny"). */
  preset?: string;
  /** Vocabulary size (default 8000, as `webseq bench`). */
  vocabSize?: number;
  /** Sequences decoded together (default 8). */
  rows?: number;
  /** Source tokens per row (default 16). */
  srcLen?: number;
  /** New tokens per row (default 32). */
  tokens?: number;
  /** Timed repetitions after one warm-up (default 2). */
  repeats?: number;
  /** "greedy" (default) or "sample" (with {@linkcode BENCH_SAMPLING}). */
  strategy?: Exclude<GenerateStrategy, "beam">;
}

/** One result line. */
export interface GenerateBenchLine {
  /** "generate". */
  kind: string;
  /** "greedy" or "sample". */
  strategy: string;
  /** `<backend kind>: <description>`. */
  device: string;
  /** The preset. */
  preset: string;
  /** Rows decoded together. */
  rows: number;
  /** New tokens per row. */
  tokens: number;
  /** Milliseconds per decode, choosing on the host (best of the repeats). */
  host_ms: number;
  /** Milliseconds per decode, choosing on the device (WebGPU only). */
  device_ms?: number;
  /** host_ms / device_ms. */
  speedup?: number;
  /** Whether both paths gave the same ids. */
  same_ids?: boolean;
  /** Generated tokens per second of the faster path. */
  tokens_per_s: number;
}

/** Times greedy decoding or sampling both ways on a random model (see the module doc). */
export async function benchGenerate(opts: GenerateBenchOptions = {}): Promise<GenerateBenchLine> {
  const backend = opts.backend ?? (await sharedGpuBackend()) ?? CPU;
  const preset = opts.preset ?? "tiny";
  const rows = opts.rows ?? 8, tokens = opts.tokens ?? 32, srcLen = opts.srcLen ?? 16;
  const cfg = presetConfig(preset, {
    vocab_size: opts.vocabSize ?? 8000,
    max_position: Math.max(64, tokens + 1, srcLen),
  });
  const model = new Seq2Seq(cfg, initContext(1, backend)).eval();
  const V = cfg.vocab_size;
  const src = Array.from(
    { length: rows },
    (_, i) => Array.from({ length: srcLen }, (_, j) => 4 + ((i * 131 + j * 17) % (V - 4))),
  );
  const strategy = opts.strategy ?? "greedy";
  if (strategy !== "greedy" && strategy !== "sample") {
    throw new TypeError(`strategy must be "greedy" or "sample", got "${strategy}"`);
  }
  const ids: DecodeStepsOptions = {
    ...(strategy === "sample" ? { strategy, ...BENCH_SAMPLING } : {}),
    maxNewTokens: tokens,
    vocabSize: V,
    startTokenId: cfg.decoder_start_token_id,
    eosTokenId: V, // never picked: every row decodes `tokens` tokens
    padTokenId: cfg.pad_token_id,
  };
  const time = async (device: boolean): Promise<{ ms: number; result: GenerationResult }> => {
    let best = Infinity, result: GenerationResult | null = null;
    for (let i = 0; i <= (opts.repeats ?? 2); i++) {
      const session = createDecodeSession(model, src);
      const t0 = performance.now();
      try {
        const onDevice = strategy === "sample" ? sampleOnDevice : greedyOnDevice;
        result = device
          ? await onDevice(session, backend, ids)
          : await decodeSteps(session.step, rows, ids);
      } finally {
        session.dispose();
      }
      if (i > 0) best = Math.min(best, performance.now() - t0); // the first one compiles
    }
    return { ms: best, result: result! };
  };
  try {
    const host = await time(false);
    const line: GenerateBenchLine = {
      kind: "generate",
      strategy,
      device: `${backend.kind}: ${backend.description}`,
      preset,
      rows,
      tokens,
      host_ms: host.ms,
      tokens_per_s: (rows * tokens) / (host.ms / 1000),
    };
    if (backend.kind !== "webgpu") return line;
    const dev = await time(true);
    const idsOf = (r: GenerationResult) => JSON.stringify(r.sequences.map((g) => g[0].ids));
    return {
      ...line,
      device_ms: dev.ms,
      speedup: host.ms / dev.ms,
      same_ids: idsOf(host.result) === idsOf(dev.result),
      tokens_per_s: (rows * tokens) / (Math.min(host.ms, dev.ms) / 1000),
    };
  } finally {
    model.dispose();
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      preset: { type: "string" },
      rows: { type: "string" },
      tokens: { type: "string" },
      "src-len": { type: "string" },
      device: { type: "string" },
      strategy: { type: "string" },
      json: { type: "boolean" },
    },
  });
  const int = (v: string | undefined) => (v === undefined ? undefined : Number(v));
  const backend = values.device === "cpu" ? CPU : undefined;
  const strategies = values.strategy === undefined || values.strategy === "both"
    ? (["greedy", "sample"] as const)
    : [values.strategy as "greedy" | "sample"];
  for (const strategy of strategies) {
    const line = await benchGenerate({
      backend,
      strategy,
      preset: values.preset,
      rows: int(values.rows),
      tokens: int(values.tokens),
      srcLen: int(values["src-len"]),
    });
    console.log(values.json ? JSON.stringify(line) : line);
  }
}
