/**
 * Streaming readers for files of (source, target) sentence pairs: CSV, TSV and JSONL.
 *
 * - **CSV** follows RFC 4180: quoted fields may hold commas, doubled quotes (`""`) and line
 *   breaks (kept as they are, LF or CRLF); records end in LF or CRLF; a UTF-8 byte order mark is
 *   dropped. Every record must have as many fields as the first one.
 * - **TSV** is split on tabs with no quoting (the Tatoeba and Anki export layouts); columns past
 *   the ones asked for are ignored, and Anki's `#key:value` header lines at the top are skipped.
 *   Every row must have as many fields as the first one.
 * - **JSONL** holds one JSON object a line, with text fields (`"source"`, `"target"` by default)
 *   or pre-tokenized `"source_ids"` / `"target_ids"` integer arrays (no special tokens).
 *
 * Columns are chosen by header name or by 0-based index (`sourceCol`, `targetCol`). Without them,
 * a CSV/TSV whose first row names `source` and `target` uses those columns (that row is the
 * header); otherwise columns 0 and 1 are used and every row is data.
 *
 * The file is read in chunks and decoded line by line with a fatal UTF-8 decoder, so memory is
 * bounded by the longest line, never by the file. Bad input throws a one-line error naming the
 * file and line: `data.csv:17: unclosed quote ...` (`SyntaxError` for unparseable text and
 * invalid UTF-8, `TypeError` for a missing column or a field of the wrong type, `RangeError` for
 * an id out of range). Rows whose source or target is empty (or blank) are skipped and counted.
 *
 * @example Read a file of pairs
 * ```ts ignore
 * import { loadPairs } from "@webseq/webseq";
 * const { pairs, skippedEmpty } = await loadPairs("data/corpus/train.tsv");
 * console.log(pairs.length, skippedEmpty);
 * ```
 *
 * @module
 */
import { createGunzip } from "node:zlib";
import { Readable } from "node:stream";

/** A pair of texts, as read from a CSV, TSV or JSONL file. */
export interface TextPair {
  /** Discriminant: text to tokenize. */
  readonly kind: "text";
  /** Source text, as in the file. */
  readonly source: string;
  /** Target text, as in the file. */
  readonly target: string;
  /** 1-based line where the row starts in its file. */
  readonly line: number;
}

/** A pre-tokenized pair (JSONL `source_ids` / `target_ids`), without special tokens. */
export interface IdsPair {
  /** Discriminant: ids that bypass the tokenizer. */
  readonly kind: "ids";
  /** Source token ids. */
  readonly sourceIds: number[];
  /** Target token ids. */
  readonly targetIds: number[];
  /** 1-based line where the row starts in its file. */
  readonly line: number;
}

/** One row of a pairs file: text, or ids that bypass the tokenizer. */
export type Pair = TextPair | IdsPair;

/** File formats the readers understand. */
export type PairsFormat = "csv" | "tsv" | "jsonl";

/** Options of {@link readPairs} and {@link loadPairs}. */
export interface ReadPairsOptions {
  /**
   * File format; by default taken from the extension (.csv; .tsv .tab .txt; .jsonl .ndjson .json;
   * any of them followed by .gz is read through gzip).
   */
  format?: PairsFormat;
  /**
   * Source column: a header name, or a 0-based index (a number, or a string of digits).
   * CSV/TSV default: the column named "source" when the first row names "source" and "target",
   * else column 0. JSONL default: the field "source" (or "source_ids").
   */
  sourceCol?: string | number;
  /** Target column, as `sourceCol`. Defaults: "target", or column 1; JSONL field "target". */
  targetCol?: string | number;
  /**
   * CSV/TSV: whether the first row is a header. Default: yes when a column is chosen by name or
   * when the first row names both "source" and "target"; otherwise no.
   */
  header?: boolean;
  /** Stop after this many pairs (skipped rows do not count). Default: no limit. */
  maxPairs?: number;
}

/** What a read skipped; the return value of the {@link readPairs} generator. */
export interface ReadSummary {
  /** Pairs yielded. */
  pairs: number;
  /** Rows skipped because the source or the target was empty or blank. */
  skippedEmpty: number;
}

/** The result of {@link loadPairs}. */
export interface LoadedPairs {
  /** The pairs, in file order. */
  pairs: Pair[];
  /** Rows skipped because the source or the target was empty or blank. */
  skippedEmpty: number;
}

/** A quoted CSV field or a line longer than this is an error (it is almost surely a stray quote). */
export const MAX_FIELD_CHARS = 1 << 24;

/** The format of `path` by its extension, or undefined when the extension is not known. */
export function formatFromPath(path: string): PairsFormat | undefined {
  const m = /\.([A-Za-z0-9]+)(\.gz)?$/i.exec(path);
  switch (m?.[1].toLowerCase()) {
    case "csv":
      return "csv";
    case "tsv":
    case "tab":
    case "txt":
      return "tsv";
    case "jsonl":
    case "ndjson":
    case "json":
      return "jsonl";
    default:
      return undefined;
  }
}

/**
 * Opens `path` to read, with errors that name it (`name`): a missing file a
 * NotFound, a folder a TypeError, anything else the system's words after the name.
 */
async function openForReading(path: string, name: string): Promise<Deno.FsFile> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new Deno.errors.NotFound(`${name}: no such file`);
    if (e instanceof Error && !e.message.startsWith(name)) e.message = `${name}: ${e.message}`;
    throw e;
  }
  // a folder opens on Linux, and fails at the first read with "Is a directory"
  if ((await file.stat()).isDirectory) {
    file.close();
    throw new TypeError(`${name}: is a folder, not a file`);
  }
  return file;
}

/** Whether `path` names a gzip file (`.gz`): the readers decompress it as they read. */
export function isGzipPath(path: string): boolean {
  return /\.gz$/i.test(path);
}

/**
 * The bytes of the file at `path`, decompressed when it is `.gz`; a corrupt
 * gzip stream is an error naming the file (`name`).
 */
async function openStream(path: string, name: string): Promise<ReadableStream<Uint8Array>> {
  const raw = (await openForReading(path, name)).readable;
  if (!isGzipPath(path)) return raw;
  // node:zlib reads every member of a multi-member file (`cat a.gz b.gz`, bgzip), as gzip -d
  // does; the web DecompressionStream stops at the first
  const source = Readable.fromWeb(raw as import("node:stream/web").ReadableStream<Uint8Array>);
  const gunzip = createGunzip();
  source.pipe(gunzip);
  return new ReadableStream<Uint8Array>({
    start(controller) {
      gunzip.on("data", (chunk: Uint8Array) => {
        controller.enqueue(new Uint8Array(chunk));
        if ((controller.desiredSize ?? 1) <= 0) gunzip.pause(); // the reader is behind
      });
      gunzip.on("end", () => controller.close());
      // either side's error ends both (pipe() alone would leave the file open)
      gunzip.on("error", (err: Error) => {
        source.destroy();
        controller.error(new TypeError(`${name}: not a whole gzip file (${err.message})`));
      });
      source.on("error", (err: Error) => {
        gunzip.destroy();
        controller.error(new Error(`${name}: ${err.message}`));
      });
    },
    pull() {
      gunzip.resume();
    },
    cancel() {
      source.destroy();
      gunzip.destroy();
    },
  }, { highWaterMark: 4 });
}

/**
 * Pairs of the file at `path`, streamed. The generator's return value counts the rows skipped.
 * Needs `--allow-read`.
 */
export async function* readPairs(
  path: string,
  opts: ReadPairsOptions = {},
): AsyncGenerator<Pair, ReadSummary, undefined> {
  const format = opts.format ?? formatFromPath(path);
  if (format === undefined) {
    throw new TypeError(
      `${path}: cannot tell the format from the extension: name it .csv, .tsv (.tab, .txt) or .jsonl (.ndjson, .json), gzipped or not, or give the format (--format)`,
    );
  }
  const stream = await openStream(path, path);
  // readPairsFromStream cancels the stream (closing the file) when it stops early.
  return yield* readPairsFromStream(stream, path, { ...opts, format });
}

/** Pairs of a byte stream named `name` (used in error messages); `opts.format` is required. */
export async function* readPairsFromStream(
  stream: ReadableStream<Uint8Array>,
  name: string,
  opts: ReadPairsOptions & { format: PairsFormat },
): AsyncGenerator<Pair, ReadSummary, undefined> {
  const maxPairs = opts.maxPairs ?? Infinity;
  const summary: ReadSummary = { pairs: 0, skippedEmpty: 0 };
  if (maxPairs <= 0) {
    await stream.cancel();
    return summary;
  }
  const lines = readLines(stream, name);
  const rows = opts.format === "csv"
    ? csvRecords(lines, name)
    : opts.format === "tsv"
    ? tsvRecords(lines)
    : undefined;
  try {
    const pairs = rows ? tableRows(rows, name, opts) : jsonlRows(lines, name, opts);
    for await (const pair of pairs) {
      if (pair === null) {
        summary.skippedEmpty++;
        continue;
      }
      summary.pairs++;
      yield pair;
      if (summary.pairs >= maxPairs) break;
    }
  } finally {
    await lines.return(undefined);
  }
  return summary;
}

/** All pairs of the file at `path` in memory, with the count of skipped empty rows. */
export async function loadPairs(path: string, opts: ReadPairsOptions = {}): Promise<LoadedPairs> {
  return await collectPairs(readPairs(path, opts));
}

/** {@linkcode loadPairs} of a byte stream named `name` (e.g. stdin); `opts.format` is required. */
export async function loadPairsFromStream(
  stream: ReadableStream<Uint8Array>,
  name: string,
  opts: ReadPairsOptions & { format: PairsFormat },
): Promise<LoadedPairs> {
  return await collectPairs(readPairsFromStream(stream, name, opts));
}

async function collectPairs(
  it: AsyncGenerator<Pair, ReadSummary, undefined>,
): Promise<LoadedPairs> {
  const pairs: Pair[] = [];
  for (;;) {
    const r = await it.next();
    if (r.done) return { pairs, skippedEmpty: r.value.skippedEmpty };
    pairs.push(r.value);
  }
}

/**
 * The lines of a UTF-8 text file at `source` (or of a byte stream) as
 * strings: a byte-order mark dropped, LF or CRLF line ends (a final line feed
 * ends the last line, it starts no empty one), invalid UTF-8 a SyntaxError
 * naming the line (`name:3: invalid UTF-8`), a missing file a NotFound
 * naming it. `name` (default: the path, or "stdin") is what errors say.
 */
export async function readTextLines(
  source: string | ReadableStream<Uint8Array>,
  name: string = typeof source === "string" ? source : "stdin",
): Promise<string[]> {
  const stream = typeof source === "string" ? await openStream(source, name) : source;
  const out: string[] = [];
  for await (const line of readLines(stream, name)) {
    out.push(line.text.endsWith("\r") ? line.text.slice(0, -1) : line.text);
  }
  return out;
}

/**
 * Checks that every id of the id pairs among `pairs` (read from `file`) is
 * below `vocabSize`: a RangeError naming the file, line and item otherwise
 * (`ids.jsonl:21: source id item 1 = 99999 is outside the vocabulary [0, 60)`),
 * before any of them reaches an embedding. With `special`, the pad and eos
 * ids are refused too: pre-tokenized ids come without special tokens (the
 * dataset adds eos, the start token and padding), and a pad inside a target
 * would silently drop out of the loss.
 */
export function checkPairIds(
  pairs: readonly Pair[],
  vocabSize: number,
  file: string,
  special: { pad?: number; eos?: number } = {},
): void {
  for (const p of pairs) {
    if (p.kind !== "ids") continue;
    for (const [side, ids] of [["source", p.sourceIds], ["target", p.targetIds]] as const) {
      const k = ids.findIndex((id) => id >= vocabSize || id === special.pad || id === special.eos);
      if (k < 0) continue;
      const id = ids[k];
      throw new RangeError(
        `${file}:${p.line}: ${side} id item ${k} = ${id} ${
          id >= vocabSize
            ? `is outside the vocabulary [0, ${vocabSize})`
            : `is the ${
              id === special.pad ? "pad" : "eos"
            } id (pre-tokenized ids come without special tokens: eos, the start token and padding are added)`
        }`,
      );
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Bytes → lines. A line feed byte (0x0A) never occurs inside a multi-byte UTF-8 sequence, so the
// bytes are cut at line feeds first and each run of whole lines is decoded on its own: invalid
// UTF-8 is then found on its exact line.

interface Line {
  /** The line without its "\n" (a "\r" before it is kept). */
  text: string;
  /** 1-based line number. */
  no: number;
}

const LF = 0x0a;

async function* readLines(
  stream: ReadableStream<Uint8Array>,
  name: string,
): AsyncGenerator<Line, void, undefined> {
  const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
  const reader = stream.getReader();
  let pending: Uint8Array[] = []; // bytes after the last line feed seen
  let pendingBytes = 0;
  let lineNo = 1; // number of the next line to emit
  let first = true;

  const decode = (bytes: Uint8Array, startLine: number): string => {
    if (first) {
      first = false;
      if (bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) bytes = bytes.subarray(3);
    }
    try {
      return decoder.decode(bytes);
    } catch {
      throw new SyntaxError(`${name}:${badUtf8Line(decoder, bytes, startLine)}: invalid UTF-8`);
    }
  };

  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      const cut = value.lastIndexOf(LF);
      if (cut < 0) {
        pending.push(value);
        pendingBytes += value.length;
        if (pendingBytes > 4 * MAX_FIELD_CHARS) {
          throw new SyntaxError(`${name}:${lineNo}: line longer than ${4 * MAX_FIELD_CHARS} bytes`);
        }
        continue;
      }
      const head = value.subarray(0, cut + 1);
      const bytes = pending.length === 0
        ? head
        : concat([...pending, head], pendingBytes + cut + 1);
      pending = cut + 1 < value.length ? [value.subarray(cut + 1)] : [];
      pendingBytes = value.length - cut - 1;
      const text = decode(bytes, lineNo);
      let start = 0;
      for (;;) {
        const nl = text.indexOf("\n", start);
        if (nl < 0) break;
        yield { text: text.slice(start, nl), no: lineNo++ };
        start = nl + 1;
      }
    }
    if (pendingBytes > 0) yield { text: decode(concat(pending, pendingBytes), lineNo), no: lineNo };
  } finally {
    // Stop the underlying source (closes a file) when the consumer stops early or on error.
    await reader.cancel().catch(() => {});
    reader.releaseLock();
  }
}

function concat(parts: Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** The line (counted from `startLine`) of the first line of `bytes` that is not valid UTF-8. */
function badUtf8Line(decoder: TextDecoder, bytes: Uint8Array, startLine: number): number {
  let line = startLine;
  let start = 0;
  while (start < bytes.length) {
    let end = bytes.indexOf(LF, start);
    if (end < 0) end = bytes.length;
    try {
      decoder.decode(bytes.subarray(start, end));
    } catch {
      return line;
    }
    line++;
    start = end + 1;
  }
  return startLine;
}

// ---------------------------------------------------------------------------------------------
// Lines → records (arrays of fields) for CSV and TSV.

interface TableRecord {
  fields: string[];
  /** Line where the record starts. */
  no: number;
}

function stripCr(s: string): string {
  return s.endsWith("\r") ? s.slice(0, -1) : s;
}

/** RFC 4180 records; a quoted field may run over several lines. Blank lines are skipped. */
async function* csvRecords(
  lines: AsyncIterable<Line>,
  name: string,
): AsyncGenerator<TableRecord, void, undefined> {
  let fields: string[] = [];
  let field = ""; // the field being read
  let inQuotes = false; // inside a quoted field that continues on the next line
  let recordLine = 0;
  let quoteLine = 0; // where the open quoted field started
  let spanned = 0; // where a quoted field of this record that spanned lines started (0: none)

  for await (const { text, no } of lines) {
    // A record ends at n: before the "\r" of a CRLF. Inside quotes the "\r" is content.
    const n = text.endsWith("\r") ? text.length - 1 : text.length;
    let i = 0;
    if (inQuotes) {
      field += "\n"; // the line break is part of the quoted field
    } else {
      if (n === 0) continue;
      recordLine = no;
      spanned = 0;
      fields = [];
      field = "";
    }
    for (;;) {
      if (inQuotes) {
        const q = text.indexOf('"', i);
        if (q < 0) {
          field += text.slice(i);
          if (field.length > MAX_FIELD_CHARS) {
            throw new SyntaxError(
              `${name}:${quoteLine}: unclosed quote: quoted field longer than ${MAX_FIELD_CHARS} characters`,
            );
          }
          break; // the field goes on on the next line
        }
        field += text.slice(i, q);
        if (text.charCodeAt(q + 1) === 0x22) { // "" → "
          field += '"';
          i = q + 2;
          continue;
        }
        inQuotes = false;
        if (quoteLine !== no) spanned = quoteLine;
        i = q + 1;
        // After the closing quote: a comma, or the end of the record.
        if (i >= n) {
          fields.push(field);
          yield { fields, no: recordLine };
          break;
        }
        if (text[i] !== ",") {
          // a quoted field that spanned lines most likely opened with a stray quote: say where
          const began = spanned
            ? ` (a quoted field ran from line ${spanned}: a stray quote there?)`
            : "";
          throw new SyntaxError(
            `${name}:${no}: unexpected ${JSON.stringify(text[i])} after a closing quote${began}`,
          );
        }
        fields.push(field);
        field = "";
        i++;
        if (i === n) { // trailing comma: an empty last field
          fields.push("");
          yield { fields, no: recordLine };
          break;
        }
        continue;
      }
      // At the start of a field.
      if (text.charCodeAt(i) === 0x22) {
        inQuotes = true;
        quoteLine = no;
        i++;
        continue;
      }
      const comma = text.indexOf(",", i);
      const end = comma < 0 ? n : comma;
      const value = text.slice(i, end);
      if (value.includes('"')) {
        throw new SyntaxError(
          `${name}:${no}: quote inside an unquoted field (quote the whole field and double inner quotes)`,
        );
      }
      fields.push(value);
      if (comma < 0) {
        yield { fields, no: recordLine };
        break;
      }
      i = comma + 1;
      if (i === n) {
        fields.push("");
        yield { fields, no: recordLine };
        break;
      }
    }
  }
  if (inQuotes) throw new SyntaxError(`${name}:${quoteLine}: unclosed quote`);
}

/** Tab-separated records with no quoting. Blank lines and Anki's leading `#key:value` lines are skipped. */
async function* tsvRecords(
  lines: AsyncIterable<Line>,
): AsyncGenerator<TableRecord, void, undefined> {
  let started = false;
  for await (const { text: raw, no } of lines) {
    const text = stripCr(raw);
    if (text === "") continue;
    if (!started && /^#[A-Za-z ]+:/.test(text)) continue; // Anki: #separator:tab, #html:true, ...
    started = true;
    yield { fields: text.split("\t"), no };
  }
}

/** Records → pairs (null for a row skipped as empty), with header and column resolution. */
async function* tableRows(
  records: AsyncIterable<TableRecord>,
  name: string,
  opts: ReadPairsOptions,
): AsyncGenerator<TextPair | null, void, undefined> {
  let width = -1;
  let si = 0;
  let ti = 1;
  for await (const { fields, no } of records) {
    if (width < 0) {
      width = fields.length;
      const names = fields.map((f) => f.trim().toLowerCase());
      const byName = (c: string | number | undefined) => typeof c === "string" && !/^\d+$/.test(c);
      const header = opts.header ??
        (byName(opts.sourceCol) || byName(opts.targetCol) ||
          (names.includes("source") && names.includes("target")));
      const resolve = (col: string | number | undefined, fallback: string, index: number) => {
        if (col === undefined) {
          if (header && names.includes(fallback)) return names.indexOf(fallback);
          col = index;
        }
        if (typeof col === "string" && /^\d+$/.test(col)) col = Number(col);
        if (typeof col === "number") {
          if (!Number.isInteger(col) || col < 0) {
            throw new TypeError(`${name}: column index ${col} is not a non-negative integer`);
          }
          if (col >= width) {
            throw new TypeError(
              `${name}:${no}: missing column ${col} (rows have ${width} field${
                width === 1 ? "" : "s"
              }, numbered from 0)`,
            );
          }
          return col;
        }
        if (!header) {
          throw new TypeError(`${name}: column "${col}" chosen by name, but header is false`);
        }
        const k = names.indexOf(col.trim().toLowerCase());
        if (k < 0) {
          throw new TypeError(
            `${name}:${no}: missing column "${col}" (header has ${
              fields.map((f) => JSON.stringify(f)).join(", ")
            })`,
          );
        }
        return k;
      };
      si = resolve(opts.sourceCol, "source", 0);
      ti = resolve(opts.targetCol, "target", 1);
      if (header) continue;
    } else if (fields.length !== width) {
      throw new SyntaxError(
        `${name}:${no}: ragged row: ${fields.length} field${
          fields.length === 1 ? "" : "s"
        }, expected ${width} like the first row`,
      );
    }
    const source = fields[si];
    const target = fields[ti];
    if (source.trim() === "" || target.trim() === "") yield null;
    else yield { kind: "text", source, target, line: no };
  }
}

/** JSON Lines rows → pairs (null for a row skipped as empty). */
async function* jsonlRows(
  lines: AsyncIterable<Line>,
  name: string,
  opts: ReadPairsOptions,
): AsyncGenerator<Pair | null, void, undefined> {
  const sourceKey = String(opts.sourceCol ?? "source");
  const targetKey = String(opts.targetCol ?? "target");
  for await (const { text, no } of lines) {
    if (text.trim() === "") continue;
    let row: unknown;
    try {
      row = JSON.parse(text);
    } catch (e) {
      const hint = no === 1 && text.trimStart().startsWith("[")
        ? " (expected JSON Lines: one object a line, not a JSON array)"
        : "";
      throw new SyntaxError(`${name}:${no}: bad JSON: ${(e as Error).message}${hint}`);
    }
    if (typeof row !== "object" || row === null || Array.isArray(row)) {
      throw new TypeError(`${name}:${no}: expected a JSON object, got ${jsonType(row)}`);
    }
    const obj = row as Record<string, unknown>;
    if ("source_ids" in obj || "target_ids" in obj) {
      const sourceIds = idsField(obj, "source_ids", name, no);
      const targetIds = idsField(obj, "target_ids", name, no);
      if (sourceIds.length === 0 || targetIds.length === 0) yield null;
      else yield { kind: "ids", sourceIds, targetIds, line: no };
      continue;
    }
    const source = textField(obj, sourceKey, name, no);
    const target = textField(obj, targetKey, name, no);
    if (source.trim() === "" || target.trim() === "") yield null;
    else yield { kind: "text", source, target, line: no };
  }
}

function jsonType(v: unknown): string {
  return v === null ? "null" : Array.isArray(v) ? "an array" : typeof v;
}

function textField(obj: Record<string, unknown>, key: string, name: string, no: number): string {
  if (!(key in obj)) {
    const keys = Object.keys(obj).map((k) => JSON.stringify(k)).join(", ");
    throw new TypeError(
      `${name}:${no}: missing column "${key}" (the object has ${keys || "no fields"})`,
    );
  }
  const v = obj[key];
  if (typeof v !== "string") {
    throw new TypeError(`${name}:${no}: field "${key}" should be a string, got ${jsonType(v)}`);
  }
  return v;
}

function idsField(obj: Record<string, unknown>, key: string, name: string, no: number): number[] {
  if (!(key in obj)) throw new TypeError(`${name}:${no}: missing column "${key}"`);
  const v = obj[key];
  if (!Array.isArray(v)) {
    throw new TypeError(
      `${name}:${no}: field "${key}" should be an array of integers, got ${jsonType(v)}`,
    );
  }
  for (let k = 0; k < v.length; k++) {
    const id = v[k];
    if (typeof id !== "number" || !Number.isInteger(id)) {
      throw new TypeError(
        `${name}:${no}: field "${key}" should be an array of integers, item ${k} is ${
          JSON.stringify(id)
        }`,
      );
    }
    if (id < 0 || id > 0x7fffffff) {
      throw new RangeError(
        `${name}:${no}: field "${key}" item ${k} = ${id} is not a valid token id`,
      );
    }
  }
  return v as number[];
}
