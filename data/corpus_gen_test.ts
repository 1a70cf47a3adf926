import assert from "node:assert/strict";
import {
  DATE_STYLES,
  daysInMonth,
  englishOrdinal,
  formatDate,
  generateCorpus,
  isoDate,
  main,
  toTsv,
  turkishNumber,
  weekday,
} from "./corpus_gen.ts";
import { loadPairs } from "./readers.ts";

Deno.test("turkishNumber() writes Turkish number words correctly", () => {
  const cases: [number, string][] = [
    [0, "sıfır"],
    [1, "bir"],
    [7, "yedi"],
    [10, "on"],
    [11, "on bir"],
    [40, "kırk"],
    [69, "altmış dokuz"],
    [100, "yüz"],
    [101, "yüz bir"],
    [110, "yüz on"],
    [200, "iki yüz"],
    [999, "dokuz yüz doksan dokuz"],
    [1000, "bin"],
    [1001, "bin bir"],
    [1100, "bin yüz"],
    [1234, "bin iki yüz otuz dört"],
    [2000, "iki bin"],
    [10000, "on bin"],
    [21000, "yirmi bir bin"],
    [100000, "yüz bin"],
    [101000, "yüz bir bin"],
    [111111, "yüz on bir bin yüz on bir"],
    [200001, "iki yüz bin bir"],
    [999999, "dokuz yüz doksan dokuz bin dokuz yüz doksan dokuz"],
    [1000000, "bir milyon"],
    [1001000, "bir milyon bin"],
    [2000000000, "iki milyar"],
  ];
  for (const [n, words] of cases) assert.equal(turkishNumber(n), words, String(n));
  assert.throws(() => turkishNumber(-1), RangeError);
  assert.throws(() => turkishNumber(1.5), RangeError);
});

/** Zeller's congruence (0 = Sunday): an independent check of weekday(). */
function zeller(y: number, m: number, d: number): number {
  if (m < 3) {
    m += 12;
    y -= 1;
  }
  const k = y % 100;
  const j = Math.floor(y / 100);
  const h =
    (d + Math.floor((13 * (m + 1)) / 5) + k + Math.floor(k / 4) + Math.floor(j / 4) + 5 * j) % 7;
  return (h + 6) % 7; // Zeller: 0 = Saturday
}

Deno.test("weekday() and daysInMonth() follow the Gregorian calendar", () => {
  assert.equal(weekday({ year: 2021, month: 3, day: 5 }), 5); // a Friday
  assert.equal(weekday({ year: 1900, month: 1, day: 1 }), 1); // a Monday
  for (let y = 1900; y < 2100; y += 7) {
    for (let m = 1; m <= 12; m++) {
      for (const d of [1, 13, daysInMonth(y, m)]) {
        assert.equal(weekday({ year: y, month: m, day: d }), zeller(y, m, d));
      }
    }
  }
  assert.equal(daysInMonth(2000, 2), 29);
  assert.equal(daysInMonth(1900, 2), 28);
  assert.equal(daysInMonth(2024, 2), 29);
  assert.equal(daysInMonth(2023, 4), 30);
});

Deno.test("formatDate() writes each style, and isoDate() the ISO form", () => {
  const d = { year: 2021, month: 3, day: 5 };
  assert.equal(isoDate(d), "2021-03-05");
  const expected: Record<string, string> = {
    en_mdy: "March 5, 2021",
    en_mdy_short: "Mar 5, 2021",
    en_dmy: "5 March 2021",
    en_dmy_short: "5 Mar 2021",
    en_mdy_ordinal: "March 5th, 2021",
    en_the_ordinal: "the 5th of March, 2021",
    en_weekday: "Friday, March 5, 2021",
    tr_dmy: "5 Mart 2021",
    tr_dmy_weekday: "5 Mart 2021 Cuma",
    tr_weekday_dmy: "Cuma, 5 Mart 2021",
    tr_numeric: "05.03.2021",
  };
  assert.deepEqual(Object.fromEntries(DATE_STYLES.map((s) => [s, formatDate(d, s)])), expected);
  assert.equal(
    formatDate({ year: 1999, month: 8, day: 31 }, "tr_weekday_dmy"),
    "Salı, 31 Ağustos 1999",
  );
  assert.deepEqual([1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 31].map(englishOrdinal), [
    "1st",
    "2nd",
    "3rd",
    "4th",
    "11th",
    "12th",
    "13th",
    "21st",
    "22nd",
    "23rd",
    "31st",
  ]);
});

const EN = [
  "january",
  "february",
  "march",
  "april",
  "may",
  "june",
  "july",
  "august",
  "september",
  "october",
  "november",
  "december",
];
const TR = [
  "ocak",
  "şubat",
  "mart",
  "nisan",
  "mayıs",
  "haziran",
  "temmuz",
  "ağustos",
  "eylül",
  "ekim",
  "kasım",
  "aralık",
];
const EN_DAYS = ["sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"];
const TR_DAYS = ["pazar", "pazartesi", "salı", "çarşamba", "perşembe", "cuma", "cumartesi"];

/** Reads a generated date back with no help from the generator; checks any weekday named. */
function parseDate(s: string): string {
  const numeric = /^(\d\d)\.(\d\d)\.(\d{4})$/.exec(s);
  if (numeric) return `${numeric[3]}-${numeric[2]}-${numeric[1]}`;
  const words = s.toLocaleLowerCase("tr").replace(/,/g, "").split(" ").filter((w) =>
    w !== "the" && w !== "of"
  );
  let year = 0, month = 0, day = 0, dayName = -1;
  for (const w of words) {
    const k = EN.findIndex((m) => m === w || m.slice(0, 3) === w);
    const t = TR.indexOf(w);
    if (/^\d{4}$/.test(w)) year = Number(w);
    else if (/^\d{1,2}(st|nd|rd|th)?$/.test(w)) day = parseInt(w);
    else if (k >= 0) month = k + 1;
    else if (t >= 0) month = t + 1;
    else if (EN_DAYS.includes(w)) dayName = EN_DAYS.indexOf(w);
    else if (TR_DAYS.includes(w)) dayName = TR_DAYS.indexOf(w);
    else throw new Error(`unknown word "${w}" in "${s}"`);
  }
  if (dayName >= 0) assert.equal(dayName, zeller(year, month, day), `weekday of "${s}"`);
  return `${year}-${String(month).padStart(2, "0")}-${String(day).padStart(2, "0")}`;
}

Deno.test("generateCorpus() makes correct, distinct pairs in three disjoint splits", () => {
  const corpus = generateCorpus({ train: 3000, valid: 200, test: 200, seed: 11 });
  assert.deepEqual([corpus.train.length, corpus.valid.length, corpus.test.length], [
    3000,
    200,
    200,
  ]);
  const all = [...corpus.train, ...corpus.valid, ...corpus.test];
  assert.equal(new Set(all.map((p) => p.source)).size, all.length);
  let dates = 0;
  for (const { source, target } of all) {
    if (/^\d+$/.test(source)) {
      assert.equal(target, turkishNumber(Number(source)));
      assert.ok(Number(source) <= 999999);
    } else {
      dates++;
      assert.match(target, /^(19|20)\d\d-\d\d-\d\d$/);
      assert.equal(parseDate(source), target, source);
    }
  }
  assert.ok(dates > 0.4 * all.length && dates < 0.6 * all.length, `${dates} dates`);
  // Deterministic, and a larger train split keeps valid and test.
  assert.deepEqual(generateCorpus({ train: 3000, valid: 200, test: 200, seed: 11 }), corpus);
  const bigger = generateCorpus({ train: 5000, valid: 200, test: 200, seed: 11 });
  assert.deepEqual([bigger.valid, bigger.test], [corpus.valid, corpus.test]);
  const head = (seed: number) => generateCorpus({ train: 0, valid: 0, test: 50, seed }).test;
  assert.deepEqual(head(11), corpus.test.slice(0, 50));
  assert.notDeepEqual(head(12), corpus.test.slice(0, 50));
  const numbers = generateCorpus({ train: 100, valid: 0, test: 0, tasks: ["numbers"] });
  assert.ok(numbers.train.every((p) => /^\d+$/.test(p.source)));
});

Deno.test("the committed corpus is what the generator makes with seed 1", async () => {
  const corpus = generateCorpus({ train: 4000, valid: 300, test: 300, seed: 1 });
  const dir = new URL("./corpus/", import.meta.url).pathname;
  for (const split of ["train", "valid", "test"] as const) {
    assert.equal(await Deno.readTextFile(`${dir}${split}.tsv`), toTsv(corpus[split]), split);
    const { pairs, skippedEmpty } = await loadPairs(`${dir}${split}.tsv`);
    assert.equal(pairs.length, corpus[split].length);
    assert.equal(skippedEmpty, 0);
  }
});

Deno.test("main() writes the splits and rejects bad options", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const log = console.log;
    const error = console.error;
    const printed: string[] = [];
    console.log = (s: string) => printed.push(s);
    console.error = (s: string) => printed.push(s);
    try {
      assert.equal(
        await main(["--out", dir, "--train", "20", "--valid", "5", "--test", "5", "--seed", "3"]),
        0,
      );
      assert.equal(await main(["--train", "x"]), 2);
      assert.equal(await main(["--tasks", "dates,poems"]), 2);
      assert.equal(await main(["--help"]), 0);
    } finally {
      console.log = log;
      console.error = error;
    }
    const train = (await loadPairs(`${dir}/train.tsv`)).pairs;
    assert.equal(train.length, 20);
    assert.equal(
      await Deno.readTextFile(`${dir}/test.tsv`),
      toTsv(generateCorpus({ train: 20, valid: 5, test: 5, seed: 3 }).test),
    );
    assert.ok(printed.some((s) => s.includes('unknown task "poems"')));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
