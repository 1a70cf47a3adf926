/**
 * `webseq eval`: loss, perplexity, accuracy, top-5 accuracy (and BLEU from
 * greedy decoding) of a trained run on a data file.
 *
 * @module
 */
import {
  columnFlag,
  EXIT_OK,
  numberFlag,
  parseFlags,
  printJson,
  reportError,
  stringFlag,
} from "./_common.ts";
import { parseDevice, selectBackend } from "./_device.ts";
import { loadRun } from "../train/load_model.ts";
import { checkPairIds, loadPairs } from "../data/readers.ts";
import { TokenizerDataset } from "../data/dataset.ts";
import { evaluate, idsToText } from "../train/evaluate.ts";
import { datasetOptionsFor } from "../train/batch_tensors.ts";

/** Help text. */
export const HELP: string = `webseq eval — loss, perplexity, accuracy and BLEU of a run on data

Examples:
  deno task webseq eval --run runs/default --data data/corpus/test.tsv --json
  deno run --allow-read --allow-env cli.ts eval --run runs/default --data data/corpus/test.tsv --bleu

Usage: webseq eval --run DIR --data FILE [options]

Options:
  --run DIR                run folder (config.json, tokenizer.json, model.safetensors)
  --data FILE              pairs to evaluate (.csv, .tsv, .jsonl)
  --source-col NAME|N      source column
  --target-col NAME|N      target column
  --max-length N           truncate like training (default 64)
  --batch-size N           batch size (default 32)
  --bleu                   also BLEU (sentence mean and corpus) from greedy decoding
  --bleu-limit N           decode at most N pairs for BLEU (default all)
  --smoothing N            NLTK smoothing method 0-7 for BLEU (default 1)
  --device auto|webgpu|cpu (default auto)
  --json                   one JSON object on stdout

Output fields: loss, perplexity, accuracy, top5_accuracy, tokens (non-pad targets),
and with --bleu: bleu_sentence, bleu_corpus (NLTK semantics, 0-1).

Permissions: --allow-read=RUN_DIR,DATA --allow-env
`;

const SPEC = {
  run: { type: "string" },
  data: { type: "string" },
  "source-col": { type: "string" },
  "target-col": { type: "string" },
  "max-length": { type: "string" },
  "batch-size": { type: "string" },
  bleu: { type: "boolean" },
  "bleu-limit": { type: "string" },
  smoothing: { type: "string" },
  device: { type: "string" },
  json: { type: "boolean" },
} as const;

/** Runs `webseq eval`. */
export async function run(args: string[]): Promise<number> {
  try {
    const { flags } = parseFlags(args, SPEC);
    if (flags.help) {
      console.log(HELP);
      return EXIT_OK;
    }
    const runDir = stringFlag(flags, "run", true)!;
    const data = stringFlag(flags, "data", true)!;
    const device = parseDevice(stringFlag(flags, "device"));
    const maxLength = numberFlag(flags, "max-length", { integer: true, min: 2 }) ?? 64;
    const batchSize = numberFlag(flags, "batch-size", { integer: true, min: 1 }) ?? 32;
    const smoothing = numberFlag(flags, "smoothing", { integer: true, min: 0, max: 7 }) ?? 1;
    const bleuLimit = numberFlag(flags, "bleu-limit", { integer: true, min: 1 });
    const backend = await selectBackend(device, {
      quiet: Boolean(flags.json),
    });
    const { model, config, tokenizer } = await loadRun(runDir, { backend });
    const { pairs } = await loadPairs(data, {
      sourceCol: columnFlag(flags, "source-col"),
      targetCol: columnFlag(flags, "target-col"),
    });
    if (pairs.length === 0) throw new RangeError(`${data}: no usable pairs`);
    checkPairIds(pairs, config.vocab_size, data);
    const ds = TokenizerDataset.fromPairs(pairs, tokenizer, datasetOptionsFor(config, maxLength));
    const m = await evaluate(model, ds, backend, {
      batchSize,
      bleu: flags.bleu
        ? {
          tokenizer,
          references: pairs.map((
            p,
          ) => (p.kind === "text" ? p.target : idsToText(p.targetIds, tokenizer))),
          limit: bleuLimit,
          smoothing,
          maxNewTokens: maxLength,
        }
        : undefined,
    });
    model.dispose();
    if (flags.json) {
      printJson({ ...m, pairs: pairs.length, truncated: ds.truncatedCount, device: backend.kind });
    } else {
      console.log(
        `pairs ${pairs.length}, target tokens ${m.tokens}${
          ds.truncatedCount ? ` (${ds.truncatedCount} truncated)` : ""
        }`,
      );
      console.log(`loss ${m.loss.toFixed(4)}  perplexity ${m.perplexity.toFixed(3)}`);
      console.log(
        `accuracy ${m.accuracy.toFixed(4)}  top-5 accuracy ${m.top5_accuracy.toFixed(4)}`,
      );
      if (m.bleu_corpus !== undefined) {
        console.log(
          `BLEU sentence mean ${m.bleu_sentence!.toFixed(4)}  corpus ${m.bleu_corpus.toFixed(4)}`,
        );
      }
    }
    return EXIT_OK;
  } catch (err) {
    return reportError("eval", err);
  }
}
