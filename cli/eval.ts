/**
 * `webseq eval`: loss, perplexity, accuracy, top-5 accuracy (and BLEU from
 * greedy decoding) of a trained run on a data file.
 *
 * @module
 */
import {
  columnFlag,
  EXIT_OK,
  formatFlag,
  numberFlag,
  parseFlags,
  printJson,
  reportError,
  stringFlag,
  UsageError,
} from "./_common.ts";
import { parseDevice, selectBackend } from "./_device.ts";
import { loadRun } from "../train/load_model.ts";
import { checkPairIds, formatFromPath, loadPairs, loadPairsFromStream } from "../data/readers.ts";
import { TokenizerDataset } from "../data/dataset.ts";
import { evaluate, idsToText } from "../train/evaluate.ts";
import { datasetOptionsFor } from "../train/batch_tensors.ts";
import { loadTrainerState } from "../train/run_folder.ts";
import { absolutePath } from "../train/resume.ts";
import { basename, dirname } from "node:path";

/** Help text. */
export const HELP: string = `webseq eval — loss, perplexity, accuracy and BLEU of a run on data

Examples:
  deno task webseq eval --run runs/default --data data/corpus/test.tsv --json
  deno run --allow-read --allow-env cli.ts eval --run runs/default --data data/corpus/test.tsv --bleu

Usage: webseq eval --run DIR --data FILE [options]

Options:
  --run DIR                run folder (config.json, tokenizer.json, model.safetensors)
  --data FILE|-            pairs to evaluate (.csv, .tsv, .jsonl, also .gz), or stdin with -
                           (and --format)
  --format csv|tsv|jsonl   the data files' format (default: from the extension; .gz files
                           are read through gzip)
  --header                 CSV/TSV: the first row is a header (default: when it names
                           "source" and "target", or a column is chosen by name)
  --source-col NAME|N      source column
  --target-col NAME|N      target column
                           (--max-length defaults to the run's; on the run's own --data or
                           --valid file, so do the columns, --header and, where the extension
                           does not tell, --format)
  --max-length N           truncate like training (default: the run's own, from its
                           trainer_state.json, else 64)
  --batch-size N           batch size (default 32)
  --bleu                   also BLEU (sentence mean and corpus) from greedy decoding
  --bleu-limit N           with --bleu: decode at most N pairs (default all)
  --smoothing N            with --bleu: NLTK smoothing method 0-7 (default 1)
  --device auto|webgpu|cpu (default auto: a hardware WebGPU adapter, else the CPU)
  --json                   one JSON object on stdout

Output fields: loss, perplexity, accuracy, top5_accuracy, tokens (non-pad targets),
pairs, skipped (rows with an empty side, left out), truncated, max_length, and with
--bleu: bleu_sentence, bleu_corpus (NLTK semantics, 0-1).

Permissions: --allow-read=RUN_DIR,DATA --allow-env
`;

const SPEC = {
  run: { type: "string" },
  data: { type: "string" },
  format: { type: "string" },
  header: { type: "boolean" },
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

/** What a run recorded of how it read its data (trainer_state.json's options). */
export interface RecordedReading {
  /** `--max-length`. */
  max_length?: number;
  /** `--source-col`. */
  source_col?: string | number;
  /** `--target-col`. */
  target_col?: string | number;
  /** `--header`. */
  header?: boolean;
  /** `--format`. */
  format?: "csv" | "tsv" | "jsonl";
  /** The run's data and validation files (absolute paths): the files the above describe. */
  files?: string[];
  /** The trainer_state.json that could not be read for lack of permission, if any. */
  unreadable?: string;
}

/**
 * How a run read its data: its trainer_state.json's recorded options (a
 * `best/` folder's from the run beside it); empty when none is recorded.
 * `eval` takes them as its defaults, so the run's own files read as it read them.
 */
export async function recordedReading(runDir: string): Promise<RecordedReading> {
  const dirs = [runDir];
  if (basename(runDir.replace(/[\\/]+$/, "")) === "best") dirs.push(dirname(runDir));
  for (const dir of dirs) {
    let o: Record<string, unknown> | undefined;
    try {
      o = (await loadTrainerState(dir)).options as Record<string, unknown> | undefined;
    } catch (err) {
      if (err instanceof Deno.errors.NotCapable || err instanceof Deno.errors.PermissionDenied) {
        return { unreadable: `${dir}/trainer_state.json` };
      }
    }
    if (!o) continue;
    const files = [o.data, o.valid].filter((f): f is string => typeof f === "string");
    const col = (
      v: unknown,
    ) => (typeof v === "string" || Number.isInteger(v) ? v as string | number : undefined);
    return {
      ...(Number.isInteger(o.max_length) ? { max_length: o.max_length as number } : {}),
      ...(col(o.source_col) !== undefined ? { source_col: col(o.source_col) } : {}),
      ...(col(o.target_col) !== undefined ? { target_col: col(o.target_col) } : {}),
      ...(typeof o.header === "boolean" ? { header: o.header } : {}),
      ...(o.format === "csv" || o.format === "tsv" || o.format === "jsonl"
        ? { format: o.format }
        : {}),
      ...(files.length > 0 ? { files } : {}),
    };
  }
  return {};
}

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
    const maxLengthFlag = numberFlag(flags, "max-length", { integer: true, min: 2 });
    const format = formatFlag(flags);
    // read as the run read its data (its length, columns, header; its format for a file whose
    // extension does not tell, and for stdin), so its own files evaluate as it validated them
    const recorded = await recordedReading(runDir);
    if (recorded.unreadable) {
      console.error(
        `webseq eval: note: cannot read ${recorded.unreadable} (add it to --allow-read): the run's --max-length and columns are not known, defaults apply`,
      );
    }
    // columns, header and format describe the run's own files: they apply to those (and stdin)
    const own = data === "-" || (recorded.files ?? []).includes(absolutePath(data));
    const rec: RecordedReading = own ? recorded : { max_length: recorded.max_length };
    const readFormat = format ??
      (data === "-" || formatFromPath(data) === undefined ? rec.format : undefined);
    if (data === "-" && readFormat === undefined) {
      throw new UsageError("Option --data - (stdin) needs --format csv, tsv or jsonl");
    }
    const batchSize = numberFlag(flags, "batch-size", { integer: true, min: 1 }) ?? 32;
    const smoothing = numberFlag(flags, "smoothing", { integer: true, min: 0, max: 7 }) ?? 1;
    const bleuLimit = numberFlag(flags, "bleu-limit", { integer: true, min: 1 });
    for (const f of ["smoothing", "bleu-limit"]) {
      if (flags[f] !== undefined && !flags.bleu) {
        throw new UsageError(`Option --${f} applies to BLEU: add --bleu`);
      }
    }
    const backend = await selectBackend(device, {
      quiet: Boolean(flags.json),
    });
    const { model, config, tokenizer } = await loadRun(runDir, { backend });
    if (config.pad_token_id === config.eos_token_id) {
      model.dispose();
      // the loss ignores pad targets, so eos would never count: no honest loss to report
      throw new RangeError(
        `${runDir}/config.json: pad_token_id equals eos_token_id (${config.pad_token_id}): the loss would not count eos, so eval cannot score this model (generate can run it)`,
      );
    }
    const maxLength = maxLengthFlag ?? rec.max_length ?? 64;
    const header = flags.header ? true : rec.header;
    const cols = {
      sourceCol: columnFlag(flags, "source-col") ?? rec.source_col,
      targetCol: columnFlag(flags, "target-col") ?? rec.target_col,
      ...(header !== undefined ? { header } : {}),
    };
    // "-": standard input, in the --format given (or recorded)
    const dataName = data === "-" ? "stdin" : data;
    const { pairs, skippedEmpty } = data === "-"
      ? await loadPairsFromStream(Deno.stdin.readable, dataName, { ...cols, format: readFormat! })
      : await loadPairs(data, { ...cols, format: readFormat });
    if (pairs.length === 0) throw new RangeError(`${dataName}: no usable pairs`);
    checkPairIds(pairs, config.vocab_size, dataName, {
      pad: config.pad_token_id,
      eos: config.eos_token_id,
    });
    const ds = TokenizerDataset.fromPairs(pairs, tokenizer, datasetOptionsFor(config, maxLength));
    const m = await evaluate(model, ds, backend, {
      onBleuError: (i, message) => `${dataName} line ${pairs[i].line}: ${message}`,
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
      printJson({
        ...m,
        pairs: pairs.length,
        skipped: skippedEmpty,
        truncated: ds.truncatedCount,
        max_length: ds.maxLength,
        device: backend.kind,
      });
    } else {
      console.log(
        `pairs ${pairs.length}${
          skippedEmpty ? ` (${skippedEmpty} rows with an empty side left out)` : ""
        }, target tokens ${m.tokens}${
          ds.truncatedCount ? ` (${ds.truncatedCount} truncated to ${ds.maxLength})` : ""
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
