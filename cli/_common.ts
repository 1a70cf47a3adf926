/**
 * Shared plumbing for subcommands: argument parsing with usage errors, exit
 * codes, and one-line error reporting.
 *
 * Every subcommand file exports `HELP: string` and
 * `run(args: string[]): Promise<number>` returning the exit code.
 *
 * @module
 */
import { parseArgs, type ParseArgsConfig } from "node:util";
import { GpuOutOfMemoryError } from "../gpu/errors.ts";

/** Exit code of a successful run (and of `--help`). */
export const EXIT_OK = 0;
/** Exit code of a failed run (bad data, I/O error, …). */
export const EXIT_FAILURE = 1;
/** Exit code of a usage error (unknown flag, missing value, …). */
export const EXIT_USAGE = 2;

/** A command-line usage error: reported in one line, exit code 2. */
export class UsageError extends Error {
  /** @param message what is wrong with the command line */
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** Options of {@linkcode parseFlags}. */
export type FlagSpec = NonNullable<ParseArgsConfig["options"]>;

/** Parsed flags: strings, booleans or string arrays by flag name. */
export type Flags = Record<string, string | boolean | string[] | undefined>;

/**
 * Parses `args` strictly against `spec` (plus `--help`/`-h`); unknown flags
 * and stray positionals become a {@linkcode UsageError}.
 */
export function parseFlags(
  args: string[],
  spec: FlagSpec,
  opts: { positionals?: boolean } = {},
): { flags: Flags; positionals: string[] } {
  try {
    const { values, positionals } = parseArgs({
      args: joinNegativeValues(args, spec),
      options: { help: { type: "boolean", short: "h" }, ...spec },
      strict: true,
      allowPositionals: opts.positionals ?? false,
    });
    return { flags: values as Flags, positionals };
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err);
    throw new UsageError(msg.split("\n")[0].replace(/\s+To specify.*$/, ""));
  }
}

/**
 * `--flag -3` as `--flag=-3` for the string options of `spec`: parseArgs
 * reads a value that starts with "-" as a flag of its own ("argument is
 * ambiguous"), so a negative number would never reach the range checks, and
 * an input text such as `--text "-abc"` or `--text "- 5"` would be refused.
 * A value that starts with "--", or is "-h", still reads as a flag (the
 * value was most likely forgotten).
 */
function joinNegativeValues(args: string[], spec: FlagSpec): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--") return [...out, ...args.slice(i)];
    const name = a.startsWith("--") && !a.includes("=") ? a.slice(2) : null;
    const next = args[i + 1];
    if (
      name !== null && spec[name]?.type === "string" && next !== undefined &&
      /^-[^-]/.test(next) && next !== "-h"
    ) {
      out.push(`${a}=${next}`);
      i++;
    } else out.push(a);
  }
  return out;
}

/** Reads a string flag; throws a UsageError when `required` and missing. */
export function stringFlag(flags: Flags, name: string, required = false): string | undefined {
  const v = flags[name];
  if (v === undefined) {
    if (required) throw new UsageError(`Missing required option --${name}`);
    return undefined;
  }
  if (typeof v !== "string" || (required && v === "")) {
    throw new UsageError(`Option --${name} needs a value`);
  }
  return v;
}

/** Reads a numeric flag with range checks; `integer` forbids fractions. */
export function numberFlag(
  flags: Flags,
  name: string,
  opts: { integer?: boolean; min?: number; max?: number } = {},
): number | undefined {
  const s = stringFlag(flags, name);
  if (s === undefined) return undefined;
  const v = Number(s);
  // decimal notation only (Number() also takes "0x10", "0b1", "" and whitespace); an integer
  // may be written 1e5
  const form = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i;
  if (!form.test(s) || !Number.isFinite(v) || (opts.integer && !Number.isSafeInteger(v))) {
    throw new UsageError(
      `Option --${name} must be ${opts.integer ? "an integer" : "a number"}, got "${s}"`,
    );
  }
  if (opts.min !== undefined && v < opts.min) {
    throw new UsageError(`Option --${name} must be at least ${opts.min}, got ${v}`);
  }
  if (opts.max !== undefined && v > opts.max) {
    throw new UsageError(`Option --${name} must be at most ${opts.max}, got ${v}`);
  }
  return v;
}

/** A column flag (`--source-col`, `--target-col`): a 0-based index when all digits, else a header name. */
export function columnFlag(flags: Flags, name: string): string | number | undefined {
  const v = stringFlag(flags, name);
  return v === undefined ? undefined : /^\d+$/.test(v) ? Number(v) : v;
}

/** `--format`: csv, tsv or jsonl (undefined: from the file's extension). */
export function formatFlag(flags: Flags): "csv" | "tsv" | "jsonl" | undefined {
  const v = stringFlag(flags, "format");
  if (v === undefined || v === "csv" || v === "tsv" || v === "jsonl") return v;
  throw new UsageError(`Option --format must be csv, tsv or jsonl, got ${JSON.stringify(v)}`);
}

/** Writes a one-line error to stderr and returns the matching exit code. */
export function reportError(command: string, err: unknown): number {
  const usage = err instanceof UsageError;
  let msg = err instanceof Error ? err.message : String(err);
  msg = msg.split("\n")[0];
  // what frees GPU memory in a training step, on the same line
  if (err instanceof GpuOutOfMemoryError && (command === "train" || command === "bench")) {
    msg += ` (try a smaller --batch-size${
      command === "train" ? " with --grad-accum" : ""
    }, or --activations recomputed)`;
  }
  // one line (CONTRACTS §9), the pointer to the help on it
  const help = usage ? ` (webseq ${command} --help lists the options)` : "";
  console.error(`webseq ${command}: ${usage ? "usage: " : "error: "}${msg}${help}`);
  return usage ? EXIT_USAGE : EXIT_FAILURE;
}

/** Prints one JSON object as a line on stdout. */
export function printJson(obj: unknown): void {
  console.log(JSON.stringify(obj));
}
