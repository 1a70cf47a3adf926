/**
 * The `webseq` command line: parse, dispatch, exit. Each subcommand lives in
 * `cli/<name>.ts` with its help text and `run(args)`.
 *
 * @example
 * ```sh
 * deno task train                      # train the tiny preset on the built-in corpus
 * deno task webseq generate --run runs/default --text "12 Nisan 1999"
 * ```
 *
 * @module
 */
import { EXIT_OK, EXIT_USAGE } from "./cli/_common.ts";

type Command = { HELP: string; run(args: string[]): Promise<number> };

/** Subcommands, loaded on demand so `--help` stays fast. */
export const COMMANDS: Record<string, { summary: string; load: () => Promise<Command> }> = {
  train: { summary: "train a model on sentence pairs", load: () => import("./cli/train.ts") },
  generate: {
    summary: "generate outputs with a trained run",
    load: () => import("./cli/generate.ts"),
  },
  eval: {
    summary: "loss, perplexity, accuracy (and BLEU) of a run on data",
    load: () => import("./cli/eval.ts"),
  },
  bleu: {
    summary: "sentence and corpus BLEU of hypothesis files (NLTK semantics)",
    load: () => import("./cli/bleu.ts"),
  },
  tokenizer: {
    summary: "train, encode and decode with tokenizers",
    load: () => import("./cli/tokenizer.ts"),
  },
  bench: {
    summary: "benchmark kernels and training throughput (JSON)",
    load: () => import("./cli/bench.ts"),
  },
  info: {
    summary: "devices, WebGPU adapter, features and limits",
    load: () => import("./cli/info.ts"),
  },
};

/** Top-level help. */
export const HELP: string =
  `webseq — train and run encoder–decoder transformers on WebGPU or the CPU

Examples:
  deno task train
  deno task webseq generate --run runs/default --text "12 Nisan 1999"

Usage: webseq <command> [options]     (webseq <command> --help for its options)

Commands:
${Object.entries(COMMANDS).map(([k, v]) => `  ${k.padEnd(10)} ${v.summary}`).join("\n")}
`;

function unknownCommand(name: string): number {
  console.error(
    `webseq: usage: unknown command "${name}" (one of ${Object.keys(COMMANDS).join(", ")})`,
  );
  return EXIT_USAGE;
}

/** Runs the command line and returns the exit code. */
export async function main(args: string[]): Promise<number> {
  const [name, ...rest] = args;
  // `webseq help train` is `webseq train --help`
  if (name === "help" && rest.length > 0 && !["--help", "-h", "help"].includes(rest[0])) {
    if (!COMMANDS[rest[0]]) return unknownCommand(rest[0]);
    return (await COMMANDS[rest[0]].load()).run(["--help"]);
  }
  if (name === undefined) {
    // no command is a usage error: the help goes to stderr, as the usage errors do
    console.error(HELP);
    return EXIT_USAGE;
  }
  if (name === "--help" || name === "-h" || name === "help") {
    console.log(HELP);
    return EXIT_OK;
  }
  if (name === "--version") {
    console.log("webseq 0.1.0");
    return EXIT_OK;
  }
  const cmd = COMMANDS[name];
  if (!cmd) return unknownCommand(name);
  return (await cmd.load()).run(rest);
}

if (import.meta.main) {
  const code = await main(Deno.args);
  Deno.exit(code);
}
