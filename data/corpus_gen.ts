/**
 * A seeded generator of small, learnable seq2seq tasks, and the source of webseq's built-in
 * corpus (`data/corpus/{train,valid,test}.tsv`) that `deno task train` uses with no arguments.
 *
 * Tasks (mixed half and half by default):
 * - **dates**: a date written by hand, in English or Turkish, to ISO 8601.
 *   `March 5, 2021`, `Mar 5, 2021`, `5 March 2021`, `5 Mar 2021`, `March 5th, 2021`,
 *   `the 5th of March, 2021`, `Friday, March 5, 2021`, `5 Mart 2021`, `5 Mart 2021 Cuma`,
 *   `Cuma, 5 Mart 2021`, `05.03.2021` → `2021-03-05` (years 1900–2099; numeric dates are always
 *   day.month.year, so no input is ambiguous; weekdays are the true ones).
 * - **numbers**: a number 0 … 999999 in digits to Turkish words: `1234` → `bin iki yüz otuz dört`
 *   (the number of digits is uniform, so small numbers are as common as large ones).
 *
 * Each split holds distinct sources, and no source appears in two splits. The test split is drawn
 * first, then valid, then train, so with a fixed seed a larger `--train` keeps the same valid and
 * test sets. Rows are `source<TAB>target` under a `source\ttarget` header.
 *
 * @example Make a larger corpus (needs --allow-write)
 * ```sh
 * deno run --allow-write data/corpus_gen.ts --out data/big --train 200000 --valid 2000 --test 2000 --seed 7
 * deno run --allow-write data/corpus_gen.ts --out data/numbers --tasks numbers --train 50000
 * ```
 *
 * The committed corpus was made with
 * `deno run --allow-write data/corpus_gen.ts --out data/corpus --train 4000 --valid 300 --test 300 --seed 1`.
 *
 * @module
 */

import { numberFlag, parseFlags, stringFlag, UsageError } from "../cli/_common.ts";

// ---------------------------------------------------------------------------------------------
// Numbers in Turkish words.

const ONES = ["", "bir", "iki", "üç", "dört", "beş", "altı", "yedi", "sekiz", "dokuz"];
const TENS = ["", "on", "yirmi", "otuz", "kırk", "elli", "altmış", "yetmiş", "seksen", "doksan"];
const SCALES = ["", "bin", "milyon", "milyar"];

/** 1 … 999 in words: "yüz", not "bir yüz". */
function belowThousand(n: number): string[] {
  const words: string[] = [];
  const h = Math.floor(n / 100);
  if (h > 0) {
    if (h > 1) words.push(ONES[h]);
    words.push("yüz");
  }
  const t = Math.floor(n / 10) % 10;
  if (t > 0) words.push(TENS[t]);
  if (n % 10 > 0) words.push(ONES[n % 10]);
  return words;
}

/**
 * `n` in Turkish words, separated by spaces: 0 → "sıfır", 1000 → "bin" (not "bir bin"),
 * 1_000_000 → "bir milyon". `n` is an integer in [0, 10^12).
 *
 * @example
 * ```ts
 * import { turkishNumber } from "@webseq/webseq";
 * console.log(turkishNumber(1234)); // "bin iki yüz otuz dört"
 * ```
 */
export function turkishNumber(n: number): string {
  if (!Number.isInteger(n) || n < 0 || n >= 1e12) {
    throw new RangeError(`turkishNumber: ${n} is not an integer in [0, 10^12)`);
  }
  if (n === 0) return "sıfır";
  const words: string[] = [];
  for (let scale = SCALES.length - 1; scale >= 0; scale--) {
    const group = Math.floor(n / 1000 ** scale) % 1000;
    if (group === 0) continue;
    if (!(scale === 1 && group === 1)) words.push(...belowThousand(group)); // "bin", not "bir bin"
    if (scale > 0) words.push(SCALES[scale]);
  }
  return words.join(" ");
}

// ---------------------------------------------------------------------------------------------
// Dates.

/** A calendar date (proleptic Gregorian); month 1–12. */
export interface CalendarDate {
  /** Year, e.g. 2021. */
  year: number;
  /** Month, 1–12. */
  month: number;
  /** Day of the month, 1–31. */
  day: number;
}

const EN_MONTHS = [
  "January",
  "February",
  "March",
  "April",
  "May",
  "June",
  "July",
  "August",
  "September",
  "October",
  "November",
  "December",
];
const EN_DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];
const TR_MONTHS = [
  "Ocak",
  "Şubat",
  "Mart",
  "Nisan",
  "Mayıs",
  "Haziran",
  "Temmuz",
  "Ağustos",
  "Eylül",
  "Ekim",
  "Kasım",
  "Aralık",
];
const TR_DAYS = ["Pazar", "Pazartesi", "Salı", "Çarşamba", "Perşembe", "Cuma", "Cumartesi"];

/** Days in `month` (1–12) of `year`. */
export function daysInMonth(year: number, month: number): number {
  return new Date(Date.UTC(year, month, 0)).getUTCDate();
}

/** Day of the week, 0 = Sunday … 6 = Saturday. */
export function weekday(d: CalendarDate): number {
  const date = new Date(Date.UTC(2000, d.month - 1, d.day));
  date.setUTCFullYear(d.year); // Date.UTC maps years 0–99 to 1900–1999
  return date.getUTCDay();
}

const pad2 = (n: number) => String(n).padStart(2, "0");

/** ISO 8601: "2021-03-05". */
export function isoDate(d: CalendarDate): string {
  return `${String(d.year).padStart(4, "0")}-${pad2(d.month)}-${pad2(d.day)}`;
}

/** "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", ... */
export function englishOrdinal(n: number): string {
  const tens = n % 100;
  const suffix = tens >= 11 && tens <= 13 ? "th" : ["th", "st", "nd", "rd"][n % 10] ?? "th";
  return `${n}${suffix}`;
}

/** Ways of writing a date by hand; see {@link formatDate}. */
export const DATE_STYLES = [
  "en_mdy", // March 5, 2021
  "en_mdy_short", // Mar 5, 2021
  "en_dmy", // 5 March 2021
  "en_dmy_short", // 5 Mar 2021
  "en_mdy_ordinal", // March 5th, 2021
  "en_the_ordinal", // the 5th of March, 2021
  "en_weekday", // Friday, March 5, 2021
  "tr_dmy", // 5 Mart 2021
  "tr_dmy_weekday", // 5 Mart 2021 Cuma
  "tr_weekday_dmy", // Cuma, 5 Mart 2021
  "tr_numeric", // 05.03.2021
] as const;

/** A style from {@link DATE_STYLES}. */
export type DateStyle = typeof DATE_STYLES[number];

/** `d` written in `style`. */
export function formatDate(d: CalendarDate, style: DateStyle): string {
  const { year: y, month: m, day } = d;
  const en = EN_MONTHS[m - 1];
  const enShort = en.slice(0, 3);
  const tr = TR_MONTHS[m - 1];
  switch (style) {
    case "en_mdy":
      return `${en} ${day}, ${y}`;
    case "en_mdy_short":
      return `${enShort} ${day}, ${y}`;
    case "en_dmy":
      return `${day} ${en} ${y}`;
    case "en_dmy_short":
      return `${day} ${enShort} ${y}`;
    case "en_mdy_ordinal":
      return `${en} ${englishOrdinal(day)}, ${y}`;
    case "en_the_ordinal":
      return `the ${englishOrdinal(day)} of ${en}, ${y}`;
    case "en_weekday":
      return `${EN_DAYS[weekday(d)]}, ${en} ${day}, ${y}`;
    case "tr_dmy":
      return `${day} ${tr} ${y}`;
    case "tr_dmy_weekday":
      return `${day} ${tr} ${y} ${TR_DAYS[weekday(d)]}`;
    case "tr_weekday_dmy":
      return `${TR_DAYS[weekday(d)]}, ${day} ${tr} ${y}`;
    case "tr_numeric":
      return `${pad2(day)}.${pad2(m)}.${y}`;
  }
}

// ---------------------------------------------------------------------------------------------
// The generator.

/** Task names for {@link generateCorpus}. */
export type CorpusTask = "dates" | "numbers";

/** A generated pair. */
export interface CorpusPair {
  /** The input text. */
  source: string;
  /** The output text. */
  target: string;
}

/** Options of {@link generateCorpus}. */
export interface CorpusOptions {
  /** Pairs in the train split. Default 4000. */
  train?: number;
  /** Pairs in the valid split. Default 300. */
  valid?: number;
  /** Pairs in the test split. Default 300. */
  test?: number;
  /** Seed; the same seed and counts give the same files. Default 1. */
  seed?: number;
  /** Tasks to mix, drawn with equal probability. Default both. */
  tasks?: readonly CorpusTask[];
}

/** The three splits. */
export interface Corpus {
  /** Pairs to train on. */
  train: CorpusPair[];
  /** Pairs to validate on. */
  valid: CorpusPair[];
  /** Held-out pairs. */
  test: CorpusPair[];
}

/** mulberry32: a small 32-bit PRNG giving floats in [0, 1). Kept here so the corpus never drifts. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** One random pair of `task`. */
export function randomPair(task: CorpusTask, random: () => number): CorpusPair {
  const int = (lo: number, hi: number) => lo + Math.floor(random() * (hi - lo + 1)); // [lo, hi]
  if (task === "numbers") {
    const digits = int(1, 6);
    const n = digits === 1 ? int(0, 9) : int(10 ** (digits - 1), 10 ** digits - 1);
    return { source: String(n), target: turkishNumber(n) };
  }
  const year = int(1900, 2099);
  const month = int(1, 12);
  const date = { year, month, day: int(1, daysInMonth(year, month)) };
  const style = DATE_STYLES[int(0, DATE_STYLES.length - 1)];
  return { source: formatDate(date, style), target: isoDate(date) };
}

/** Test, valid and train splits of distinct sources (drawn in that order). */
export function generateCorpus(opts: CorpusOptions = {}): Corpus {
  const counts = { test: opts.test ?? 300, valid: opts.valid ?? 300, train: opts.train ?? 4000 };
  const tasks = opts.tasks ?? ["dates", "numbers"];
  if (tasks.length === 0) throw new TypeError("generateCorpus: no tasks");
  for (const [name, n] of Object.entries(counts)) {
    if (!Number.isInteger(n) || n < 0) {
      throw new RangeError(`generateCorpus: ${name} must be a non-negative integer, got ${n}`);
    }
  }
  const random = mulberry32(opts.seed ?? 1);
  const seen = new Set<string>();
  const draw = (n: number): CorpusPair[] => {
    const out: CorpusPair[] = [];
    let misses = 0;
    while (out.length < n) {
      const pair = randomPair(tasks[Math.floor(random() * tasks.length)], random);
      if (seen.has(pair.source)) {
        if (++misses > 1000 + 10 * n) {
          throw new RangeError(`generateCorpus: too few distinct pairs for ${n} more rows`);
        }
        continue;
      }
      seen.add(pair.source);
      out.push(pair);
    }
    return out;
  };
  const test = draw(counts.test);
  const valid = draw(counts.valid);
  const train = draw(counts.train);
  return { train, valid, test };
}

/** Pairs as a TSV file with a `source\ttarget` header. */
export function toTsv(pairs: readonly CorpusPair[]): string {
  return ["source\ttarget", ...pairs.map((p) => `${p.source}\t${p.target}`)].join("\n") + "\n";
}

/** Usage of the command line. */
export const HELP: string =
  `Generate a seeded corpus of dates → ISO 8601 and numbers → Turkish words.

Examples:
  deno run --allow-write data/corpus_gen.ts --out data/corpus --train 4000 --valid 300 --test 300 --seed 1
  deno run --allow-write data/corpus_gen.ts --out data/numbers --tasks numbers --train 50000

Usage: deno run --allow-write data/corpus_gen.ts [options]

Options:
  --out DIR        folder for train.tsv, valid.tsv, test.tsv (default data/corpus)
  --train N        train pairs (default 4000)
  --valid N        valid pairs (default 300)
  --test N         test pairs (default 300)
  --seed S         seed (default 1)
  --tasks LIST     comma-separated tasks: dates,numbers (default both)
  -h, --help       show this help

Permissions: --allow-write (the output folder).`;

/** Command line: writes the three splits; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  try {
    const { flags } = parseFlags(args, {
      out: { type: "string" },
      train: { type: "string" },
      valid: { type: "string" },
      test: { type: "string" },
      seed: { type: "string" },
      tasks: { type: "string" },
    });
    if (flags.help) {
      console.log(HELP);
      return 0;
    }
    const count = { integer: true, min: 0 };
    const taskList = (stringFlag(flags, "tasks") ?? "dates,numbers").split(",").map((t) =>
      t.trim()
    );
    for (const t of taskList) {
      if (t !== "dates" && t !== "numbers") {
        throw new UsageError(`Option --tasks: unknown task "${t}" (dates, numbers)`);
      }
    }
    const out = stringFlag(flags, "out") ?? "data/corpus";
    const corpus = generateCorpus({
      train: numberFlag(flags, "train", count),
      valid: numberFlag(flags, "valid", count),
      test: numberFlag(flags, "test", count),
      seed: numberFlag(flags, "seed", { integer: true, min: 0, max: 2 ** 32 - 1 }),
      tasks: taskList as CorpusTask[],
    });
    await Deno.mkdir(out, { recursive: true });
    for (const split of ["train", "valid", "test"] as const) {
      const path = `${out}/${split}.tsv`;
      await Deno.writeTextFile(path, toTsv(corpus[split]));
      console.log(`${path}: ${corpus[split].length} pairs`);
    }
    return 0;
  } catch (e) {
    const usage = e instanceof UsageError;
    console.error(
      `corpus_gen: ${usage ? "usage: " : "error: "}${(e as Error).message.split("\n")[0]}`,
    );
    return usage ? 2 : 1;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
