/**
 * `webseq tokenizer`: train a BPE tokenizer on a file of sentence pairs and write it as a
 * Hugging Face `tokenizer.json`; encode or decode with one (for debugging).
 *
 * @module
 */
import { pathExists } from "../train/atomic.ts";
import {
  EXIT_OK,
  type Flags,
  formatFlag,
  numberFlag,
  parseFlags,
  printJson,
  reportError,
  stringFlag,
  UsageError,
} from "./_common.ts";
import { readPairs, type ReadSummary } from "../data/readers.ts";
import { DEFAULT_SPECIAL_TOKENS, trainBpe } from "../data/bpe_trainer.ts";
import { loadTokenizer, saveTokenizer } from "../data/tokenizer.ts";

/** Help text of `webseq tokenizer`. */
export const HELP: string =
  `webseq tokenizer: train a BPE tokenizer (Hugging Face tokenizer.json), or encode/decode with one

Examples:
  webseq tokenizer train --data data/corpus/train.tsv --vocab-size 2000 --out runs/tok/tokenizer.json
  webseq tokenizer encode --tokenizer runs/tok/tokenizer.json --text "Yarın İstanbul'a gidiyorum."

Usage:
  webseq tokenizer train --data FILE --vocab-size N --out FILE [options]
  webseq tokenizer encode --tokenizer FILE|DIR --text TEXT [--json]
  webseq tokenizer decode --tokenizer FILE|DIR --ids "5 17 2" [--json]

Options of train (both sides of every pair are used; special tokens <pad>=0 <s>=1 </s>=2 <unk>=3):
  --data FILE           pairs file: .csv, .tsv or .jsonl
  --vocab-size N        vocab size wanted, special tokens included
  --out FILE|DIR        where to write tokenizer.json (atomically; folders are created; a
                        folder, or a path ending in "/", gets DIR/tokenizer.json)
  --source-col C        source column: header name or 0-based index (default: "source" or 0)
  --target-col C        target column: header name or 0-based index (default: "target" or 1)
  --format F            csv, tsv or jsonl (default: from the extension; .gz read through gzip)
  --header              CSV/TSV: the first row is a header (default: when it names source
                        and target, or a column is chosen by name)
  --min-frequency N     merge only pairs seen at least N times (default 2)
  --byte-fallback       unknown characters become UTF-8 byte tokens <0x..> instead of <unk>
  --split-digits        every digit 0-9 is a token of its own (LLaMA-style Digits pre-tokenizer)
  --json                print one JSON line: out, vocab_size, merges, pairs, skipped_empty,
                        skipped_ids, seconds

Options of encode / decode:
  --tokenizer FILE|DIR  a tokenizer.json, or a folder (e.g. a run folder) holding one
  --text TEXT           text to encode (no special tokens are added)
  --ids LIST            ids to decode, separated by spaces or commas (special tokens skipped)
  --json                print JSON: {"ids", "tokens"} or {"text"}

Permissions: --allow-read (data and tokenizer files, and train's --out folder: the file is
written to a temporary name and renamed, which needs both), --allow-write (the --out folder)`;

const TRAIN_FLAGS = {
  data: { type: "string" },
  "vocab-size": { type: "string" },
  out: { type: "string" },
  "source-col": { type: "string" },
  "target-col": { type: "string" },
  format: { type: "string" },
  header: { type: "boolean" },
  "min-frequency": { type: "string" },
  "byte-fallback": { type: "boolean" },
  "split-digits": { type: "boolean" },
  json: { type: "boolean" },
} as const;

const ENCODE_FLAGS = {
  tokenizer: { type: "string" },
  text: { type: "string" },
  json: { type: "boolean" },
} as const;

const DECODE_FLAGS = {
  tokenizer: { type: "string" },
  ids: { type: "string" },
  json: { type: "boolean" },
} as const;

/** Runs `webseq tokenizer ARGS` and returns the exit code. */
export async function run(args: string[]): Promise<number> {
  const [action, ...rest] = args;
  try {
    if (action === "--help" || action === "-h" || action === "help") {
      console.log(HELP);
      return EXIT_OK;
    }
    switch (action) {
      case "train":
        return await train(rest);
      case "encode":
        return await encode(rest);
      case "decode":
        return await decode(rest);
      case undefined:
        throw new UsageError("Missing action: train, encode or decode");
      default:
        throw new UsageError(`Unknown action "${action}": expected train, encode or decode`);
    }
  } catch (err) {
    return reportError("tokenizer", err);
  }
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isDirectory;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return false;
    throw err;
  }
}

async function train(args: string[]): Promise<number> {
  const { flags } = parseFlags(args, TRAIN_FLAGS);
  if (flags.help) return help();
  const data = stringFlag(flags, "data", true)!;
  const outFlag = stringFlag(flags, "out", true)!;
  // a folder (an existing one, or a path ending in "/") gets its tokenizer.json, as
  // --tokenizer takes a folder
  const out = outFlag.endsWith("/") || (await isDirectory(outFlag))
    ? `${outFlag.replace(/\/+$/, "")}/tokenizer.json`
    : outFlag;
  const byteFallback = flags["byte-fallback"] === true;
  const minVocab = DEFAULT_SPECIAL_TOKENS.length + (byteFallback ? 256 : 0) + 1;
  const vocabSize = numberFlag(flags, "vocab-size", { integer: true, min: minVocab });
  if (vocabSize === undefined) throw new UsageError("Missing required option --vocab-size");
  const minFrequency = numberFlag(flags, "min-frequency", { integer: true, min: 1 }) ?? 2;
  const json = flags.json === true;
  const format = formatFlag(flags);

  const t0 = performance.now();
  const summary: ReadSummary = { pairs: 0, skippedEmpty: 0 };
  let skippedIds = 0;
  async function* texts(): AsyncGenerator<string> {
    const it = readPairs(data, {
      sourceCol: stringFlag(flags, "source-col"),
      targetCol: stringFlag(flags, "target-col"),
      ...(format ? { format } : {}),
      ...(flags.header ? { header: true } : {}),
    });
    for (;;) {
      const r = await it.next();
      if (r.done) {
        Object.assign(summary, r.value);
        return;
      }
      const pair = r.value;
      if (pair.kind === "ids") {
        skippedIds++;
        continue;
      }
      yield pair.source;
      yield pair.target;
    }
  }
  const tok = await trainBpe(texts(), {
    vocabSize,
    minFrequency,
    byteFallback,
    splitDigits: flags["split-digits"] === true,
    onProgress: (p) => {
      if (p.phase === "count") console.error(`counting: ${p.texts} texts, ${p.words} words`);
      else if (p.merges > 0) console.error(`merging: ${p.merges} merges, vocab ${p.vocabSize}`);
      else if (p.texts >= 100_000) console.error(`merging: ${p.words} distinct words`);
    },
  });
  const textPairs = summary.pairs - skippedIds;
  if (textPairs === 0) {
    throw new TypeError(
      `${data}: no text pairs to train on${
        skippedIds > 0 ? ` (${skippedIds} pre-tokenized rows)` : ""
      }`,
    );
  }
  const slash = out.lastIndexOf("/");
  const folder = slash > 0 ? out.slice(0, slash) : null;
  const made = folder !== null && !(await pathExists(folder));
  if (folder) await Deno.mkdir(folder, { recursive: true });
  try {
    await saveTokenizer(tok, out);
  } catch (err) {
    if (made) await Deno.remove(folder!).catch(() => {}); // only when empty: nothing half-made
    throw err;
  }
  const seconds = Math.round(performance.now() - t0) / 1000;
  if (tok.vocabSize > vocabSize) {
    console.error(
      `note: the data's characters alone exceed --vocab-size ${vocabSize}: all are kept (vocab ${tok.vocabSize}, no merges); a larger --vocab-size leaves room for merges`,
    );
  }
  if (json) {
    printJson({
      out,
      vocab_size: tok.vocabSize,
      merges: tok.merges.length,
      pairs: textPairs,
      skipped_empty: summary.skippedEmpty,
      skipped_ids: skippedIds,
      seconds,
    });
  } else {
    const skipped = summary.skippedEmpty + skippedIds;
    console.log(
      `Wrote ${out}: vocab ${tok.vocabSize} (${DEFAULT_SPECIAL_TOKENS.length} special), ` +
        `${tok.merges.length} merges, from ${textPairs} pairs` +
        `${skipped > 0 ? ` (${skipped} rows skipped)` : ""} in ${seconds} s`,
    );
  }
  return EXIT_OK;
}

async function encode(args: string[]): Promise<number> {
  const { flags } = parseFlags(args, ENCODE_FLAGS);
  if (flags.help) return help();
  const path = stringFlag(flags, "tokenizer", true)!;
  const text = stringFlag(flags, "text", true)!;
  const tok = await loadTokenizer(path);
  const ids = tok.encode(text);
  if (isJson(flags)) printJson({ ids, tokens: tok.tokenize(text) });
  else console.log(ids.join(" "));
  return EXIT_OK;
}

async function decode(args: string[]): Promise<number> {
  const { flags } = parseFlags(args, DECODE_FLAGS);
  if (flags.help) return help();
  const path = stringFlag(flags, "tokenizer", true)!;
  const list = stringFlag(flags, "ids", true)!;
  const parts = list.split(/[\s,]+/).filter((s) => s.length > 0);
  const ids = parts.map((s) => {
    if (!/^\d+$/.test(s)) throw new UsageError(`Option --ids: "${s}" is not a token id`);
    return Number(s);
  });
  const tok = await loadTokenizer(path);
  const text = tok.decode(ids);
  if (isJson(flags)) printJson({ text });
  else console.log(text);
  return EXIT_OK;
}

function help(): number {
  console.log(HELP);
  return EXIT_OK;
}

function isJson(flags: Flags): boolean {
  return flags.json === true;
}

if (import.meta.main) Deno.exit(await run(Deno.args));
