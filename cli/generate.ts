/**
 * `webseq generate`: outputs of a trained run for texts given on the command
 * line, in a file (one input a line) or on stdin — greedy, sampling or beam
 * search, one line per input or JSON lines.
 *
 * @module
 */
import {
  type GenerateOptions,
  type GenerateStrategy,
  generateText,
  MIN_TEMPERATURE,
} from "../train/generate.ts";
import { loadRun } from "../train/load_model.ts";
import {
  EXIT_OK,
  type Flags,
  numberFlag,
  parseFlags,
  printJson,
  reportError,
  stringFlag,
  UsageError,
} from "./_common.ts";
import { parseDevice, selectBackend } from "./_device.ts";
import { errorLine } from "../tensor/errors.ts";
import { readTextLines } from "../data/readers.ts";

/** Help text of `webseq generate`. */
export const HELP: string =
  `webseq generate: outputs of a trained model for input texts (greedy, sampling, beam search)

Examples:
  webseq generate --run runs/demo --text "how are you?" --text "good morning"
  webseq generate --run runs/demo --input questions.txt --strategy beam --num-beams 4 \\
    --num-return-sequences 2 --json

Usage:
  webseq generate --run DIR (--text TEXT ... | --input FILE|-) [options]

Reads DIR/config.json, DIR/model.safetensors and DIR/tokenizer.json. Prints one line
per input (several return sequences tab-separated), or with --json one object a line:
{"input": "...", "outputs": ["..."], "scores": [x]}; a score is the sum of the tokens'
log-probabilities divided by length ** length-penalty. Sampling flags (--temperature,
--top-k, --top-p) imply --strategy sample, --num-beams implies --strategy beam.

Options:
  --run DIR                   run folder (from webseq train)
  --text TEXT                 an input; repeat for several
  --input FILE|-              inputs one a line from FILE, or stdin with -
  --strategy NAME             greedy (default), sample or beam
  --max-new-tokens N          tokens to generate at most, eos included (default 64; at most
                              the model's max_position)
  --temperature X             sampling temperature (default 1)
  --top-k N                   sample from the N most likely tokens (default 0: all)
  --top-p X                   nucleus sampling: smallest set with probability >= X (default 1)
  --num-beams N               beam width (default 4 with --strategy beam)
  --length-penalty X          beam score = sum logprob / length ** X (default 1)
  --early-stopping            beam search: stop once num-beams hypotheses are finished
  --repetition-penalty X      CTRL penalty on tokens already generated (default 1: off)
  --no-repeat-ngram N         never repeat an n-gram of this size (default 0: off)
  --min-new-tokens N          no eos before N tokens (default 0: off; --max-new-tokens still
                              stops a sequence)
  --num-return-sequences N    outputs per input (default 1; sample or beam)
  --seed N                    sampling seed (default 0)
  --batch-size N              inputs decoded together (default 16)
  --device auto|webgpu|cpu    where to run (default auto: a hardware WebGPU adapter, else the
                              CPU; software adapters run slower than the CPU)
  --json                      one JSON object a line on stdout
  -h, --help                  show this help

Permissions: --allow-read=RUN_DIR,INPUT --allow-env`;

const SPEC = {
  run: { type: "string" },
  text: { type: "string", multiple: true },
  input: { type: "string" },
  strategy: { type: "string" },
  "max-new-tokens": { type: "string" },
  temperature: { type: "string" },
  "top-k": { type: "string" },
  "top-p": { type: "string" },
  "num-beams": { type: "string" },
  "length-penalty": { type: "string" },
  "early-stopping": { type: "boolean" },
  "repetition-penalty": { type: "string" },
  "no-repeat-ngram": { type: "string" },
  "min-new-tokens": { type: "string" },
  "num-return-sequences": { type: "string" },
  seed: { type: "string" },
  "batch-size": { type: "string" },
  device: { type: "string" },
  json: { type: "boolean" },
} as const;

const SAMPLE_FLAGS = ["temperature", "top-k", "top-p"] as const;
const BEAM_FLAGS = ["num-beams", "length-penalty", "early-stopping"] as const;

function chooseStrategy(flags: Flags): GenerateStrategy {
  const given = stringFlag(flags, "strategy");
  const sampleFlag = SAMPLE_FLAGS.find((f) => flags[f] !== undefined);
  const beamFlag = BEAM_FLAGS.find((f) => flags[f] !== undefined);
  if (given !== undefined && given !== "greedy" && given !== "sample" && given !== "beam") {
    throw new UsageError(`Option --strategy must be greedy, sample or beam, got "${given}"`);
  }
  if (given === undefined && sampleFlag && beamFlag) {
    throw new UsageError(
      `Options --${sampleFlag} (sampling) and --${beamFlag} (beam search) do not go together`,
    );
  }
  const strategy =
    (given ?? (sampleFlag ? "sample" : beamFlag ? "beam" : "greedy")) as GenerateStrategy;
  if (sampleFlag && strategy !== "sample") {
    throw new UsageError(`Option --${sampleFlag} needs --strategy sample`);
  }
  if (beamFlag && strategy !== "beam") {
    throw new UsageError(`Option --${beamFlag} needs --strategy beam`);
  }
  return strategy;
}

/** Generation options from the flags (usage errors for bad values). */
function optionsFromFlags(flags: Flags): GenerateOptions {
  const strategy = chooseStrategy(flags);
  const numBeams = numberFlag(flags, "num-beams", { integer: true, min: 1 });
  const numReturnSequences = numberFlag(flags, "num-return-sequences", { integer: true, min: 1 });
  if (numReturnSequences !== undefined && numReturnSequences > 1 && strategy === "greedy") {
    throw new UsageError("Option --num-return-sequences above 1 needs --strategy sample or beam");
  }
  if (
    strategy === "beam" && numReturnSequences !== undefined &&
    numReturnSequences > (numBeams ?? 4)
  ) {
    throw new UsageError(
      `Option --num-return-sequences (${numReturnSequences}) must not exceed --num-beams (${
        numBeams ?? 4
      })`,
    );
  }
  const temperature = numberFlag(flags, "temperature", { min: 0 });
  if (temperature === 0) throw new UsageError("Option --temperature must be above 0, got 0");
  if (temperature !== undefined && temperature < MIN_TEMPERATURE) {
    throw new UsageError(
      `Option --temperature must be at least ${MIN_TEMPERATURE.toExponential()} (greedy decoding is that limit), got ${temperature}`,
    );
  }
  const repetitionPenalty = numberFlag(flags, "repetition-penalty", { min: 0 });
  if (repetitionPenalty === 0) {
    throw new UsageError("Option --repetition-penalty must be above 0, got 0");
  }
  return {
    strategy,
    maxNewTokens: numberFlag(flags, "max-new-tokens", { integer: true, min: 1 }),
    temperature,
    topK: numberFlag(flags, "top-k", { integer: true, min: 0 }),
    topP: numberFlag(flags, "top-p", { min: 0, max: 1 }),
    numBeams,
    lengthPenalty: numberFlag(flags, "length-penalty"),
    earlyStopping: flags["early-stopping"] === true ? true : undefined,
    repetitionPenalty,
    noRepeatNgramSize: numberFlag(flags, "no-repeat-ngram", { integer: true, min: 0 }),
    minNewTokens: numberFlag(flags, "min-new-tokens", { integer: true, min: 0 }),
    numReturnSequences,
    seed: numberFlag(flags, "seed", { integer: true, min: 0, max: 2 ** 32 - 1 }),
  };
}

async function readInputs(flags: Flags): Promise<string[]> {
  const texts = (flags.text as string[] | undefined) ?? [];
  const input = stringFlag(flags, "input");
  if (texts.length > 0 && input !== undefined) {
    throw new UsageError("Give inputs with --text or with --input, not both");
  }
  if (input === undefined) {
    if (texts.length === 0) {
      throw new UsageError("Missing input: give --text TEXT or --input FILE|-");
    }
    return texts;
  }
  // lines as bleu and the data readers take them: a byte-order mark dropped, invalid UTF-8
  // an error naming the line
  if (input === "-") return await readTextLines(Deno.stdin.readable, "stdin");
  try {
    return await readTextLines(input);
  } catch (err) {
    if (err instanceof SyntaxError) throw err; // file:line: invalid UTF-8
    const why = err instanceof Deno.errors.NotFound ? "no such file" : errorLine(err);
    throw new Error(`cannot read --input file ${input}: ${why}`);
  }
}

/** One output line: tabs and newlines inside a text become spaces. */
function oneLine(s: string): string {
  return s.replace(/[\t\r\n]+/g, " ");
}

/** Runs `webseq generate`; returns the exit code. */
export async function run(args: string[]): Promise<number> {
  try {
    const { flags } = parseFlags(args, SPEC);
    if (flags.help) {
      console.log(HELP);
      return EXIT_OK;
    }
    const dir = stringFlag(flags, "run", true)!;
    const device = parseDevice(stringFlag(flags, "device"));
    const batchSize = numberFlag(flags, "batch-size", { integer: true, min: 1 }) ?? 16;
    const opts = optionsFromFlags(flags);
    const inputs = await readInputs(flags);

    const backend = await selectBackend(device);
    const { model, tokenizer } = await loadRun(dir, { backend });
    const maxPosition = model.config.max_position;
    if (opts.maxNewTokens !== undefined && opts.maxNewTokens > maxPosition) {
      model.dispose();
      throw new UsageError(
        `Option --max-new-tokens (${opts.maxNewTokens}) exceeds the model's max_position ${maxPosition} (${dir}/config.json)`,
      );
    }
    try {
      for (let start = 0; start < inputs.length; start += batchSize) {
        const batch = inputs.slice(start, start + batchSize);
        const res = await generateText(model, tokenizer!, batch, { ...opts, seedOffset: start });
        res.sequences.forEach((group, i) => {
          const outputs = group.map((s) => s.text ?? "");
          if (flags.json) {
            printJson({ input: batch[i], outputs, scores: group.map((s) => s.score) });
          } else {
            console.log(outputs.map(oneLine).join("\t"));
          }
        });
      }
    } finally {
      model.dispose();
    }
    return EXIT_OK;
  } catch (err) {
    return reportError("generate", err);
  }
}
