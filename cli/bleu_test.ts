import assert from "node:assert/strict";
import { captureRun } from "../tests/_capture.ts";
import { HELP, run } from "./bleu.ts";
import fixture from "../tests/testdata/bleu/cli_expected.json" with { type: "json" };

const DIR = new URL("../tests/testdata/bleu/", import.meta.url);
const REFS_A = new URL("cli_refs_a.txt", DIR).pathname;
const REFS_B = new URL("cli_refs_b.txt", DIR).pathname;
const HYPS = new URL("cli_hyps.txt", DIR).pathname;
const HYPS_SHORT = new URL("cli_hyps_short.txt", DIR).pathname;

/** Runs the command in-process, capturing stdout and stderr lines. */
const capture = (args: string[]) => captureRun(run, args);

interface Expected {
  sentence: number[];
  sentence_mean: number;
  corpus: number;
}

function assertClose(actual: number, expected: number, what: string): void {
  const ok = expected === 0
    ? actual === 0
    : Math.abs(actual - expected) <= 1e-9 * Math.abs(expected);
  assert.ok(ok, `${what}: got ${actual}, NLTK ${expected}`);
}

function assertMatches(got: Expected, exp: Expected, what: string): void {
  assert.equal(got.sentence.length, exp.sentence.length, what);
  got.sentence.forEach((v, i) => assertClose(v, exp.sentence[i], `${what} line ${i + 1}`));
  assertClose(got.sentence_mean, exp.sentence_mean, `${what} mean`);
  assertClose(got.corpus, exp.corpus, `${what} corpus`);
}

const expected = fixture.expected as Record<string, Expected>;

Deno.test("webseq bleu --json equals NLTK with one and two reference files", async () => {
  for (const m of [0, 1, 4, 7]) {
    const one = await capture([
      "--refs",
      REFS_A,
      "--hyps",
      HYPS,
      "--smoothing",
      String(m),
      "--json",
    ]);
    assert.equal(one.code, 0, one.err.join("\n"));
    assert.equal(one.out.length, 1);
    assertMatches(JSON.parse(one.out[0]), expected[`one_ref_method${m}`], `one ref method${m}`);
    const two = await capture([
      "--refs",
      REFS_A,
      "--refs",
      REFS_B,
      "--hyps",
      HYPS,
      "--smoothing",
      String(m),
      "--json",
    ]);
    assert.equal(two.code, 0, two.err.join("\n"));
    const obj = JSON.parse(two.out[0]);
    assertMatches(obj, expected[`two_refs_method${m}`], `two refs method${m}`);
    assert.equal(obj.references, 2);
  }
});

Deno.test("webseq bleu defaults to smoothing method1", async () => {
  const r = await capture(["--refs", REFS_A, "--hyps", HYPS, "--json"]);
  assert.equal(r.code, 0);
  assertMatches(JSON.parse(r.out[0]), expected.one_ref_method1, "default");
});

Deno.test("webseq bleu --sacrebleu --chrf adds 0-100 scores with signatures", async () => {
  const r = await capture(["--refs", REFS_A, "--hyps", HYPS, "--sacrebleu", "--chrf", "--json"]);
  assert.equal(r.code, 0, r.err.join("\n"));
  const obj = JSON.parse(r.out[0]);
  assert.ok(obj.sacrebleu.score > 0 && obj.sacrebleu.score <= 100);
  assert.match(obj.sacrebleu.signature, /^nrefs:1\|case:mixed\|eff:no\|tok:13a\|smooth:exp\|/);
  assert.ok(obj.chrf.score > 0 && obj.chrf.score <= 100);
  assert.equal(obj.chrf.name, "chrF2");
});

Deno.test("webseq bleu without --json prints a human summary", async () => {
  const r = await capture(["--refs", REFS_A, "--hyps", HYPS, "--sacrebleu", "--chrf"]);
  assert.equal(r.code, 0);
  const corpus = expected.one_ref_method1.corpus.toFixed(4);
  assert.match(r.out[0], new RegExp(`^BLEU \\(NLTK, method1\\): corpus ${corpus} `));
  assert.match(r.out[1], /^sacreBLEU: BLEU = \d+\.\d\d /);
  assert.match(r.out[2], /^chrF2 = \d+\.\d\d /);
});

Deno.test("webseq bleu names both files and counts on a line count mismatch (exit 1)", async () => {
  const r = await capture(["--refs", REFS_A, "--hyps", HYPS_SHORT, "--json"]);
  assert.equal(r.code, 1);
  assert.equal(r.out.length, 0);
  assert.equal(r.err.length, 1);
  assert.ok(r.err[0].includes(REFS_A) && r.err[0].includes(HYPS_SHORT), r.err[0]);
  assert.match(r.err[0], /has 12 lines.*has 10/);
});

Deno.test("webseq bleu names a missing file (exit 1)", async () => {
  const r = await capture(["--refs", "/nonexistent/refs.txt", "--hyps", HYPS]);
  assert.equal(r.code, 1);
  assert.equal(r.err.length, 1);
  assert.match(r.err[0], /--refs file \/nonexistent\/refs\.txt: no such file/);
  const h = await capture(["--refs", REFS_A, "--hyps", "/nonexistent/hyps.txt"]);
  assert.equal(h.code, 1);
  assert.match(h.err[0], /\/nonexistent\/hyps\.txt/);
});

Deno.test("webseq bleu drops a byte-order mark and names a line of invalid UTF-8 (exit 1)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const enc = new TextEncoder();
    await Deno.writeTextFile(`${dir}/r.txt`, "the cat sat on the mat\nhello world\n");
    await Deno.writeTextFile(`${dir}/h.txt`, "the cat sat on a mat\nhello world\n");
    const bom = new Uint8Array([0xef, 0xbb, 0xbf]);
    await Deno.writeFile(
      `${dir}/hb.txt`,
      new Uint8Array([...bom, ...enc.encode("the cat sat on a mat\nhello world\n")]),
    );
    const plain = await capture(["--refs", `${dir}/r.txt`, "--hyps", `${dir}/h.txt`, "--json"]);
    const withBom = await capture(["--refs", `${dir}/r.txt`, "--hyps", `${dir}/hb.txt`, "--json"]);
    assert.equal(withBom.code, 0);
    assert.deepEqual(withBom.out, plain.out);
    await Deno.writeFile(`${dir}/bad.txt`, new Uint8Array([0x61, 0x0a, 0x62, 0xc3, 0x0a]));
    const bad = await capture(["--refs", `${dir}/r.txt`, "--hyps", `${dir}/bad.txt`]);
    assert.equal(bad.code, 1);
    assert.deepEqual(bad.err, [`webseq bleu: error: ${dir}/bad.txt:2: invalid UTF-8`]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("webseq bleu reports usage errors with exit 2", async () => {
  for (
    const args of [
      ["--hyps", HYPS],
      ["--refs", REFS_A],
      ["--refs", REFS_A, "--hyps", HYPS, "--smoothing", "8"],
      ["--refs", REFS_A, "--hyps", HYPS, "--smoothing", "x"],
      ["--refs", REFS_A, "--hyps", HYPS, "--bogus"],
      ["--refs", "-", "--hyps", HYPS],
    ]
  ) {
    const r = await capture(args);
    assert.equal(r.code, 2, args.join(" "));
    assert.match(r.err[0], /^webseq bleu: usage: /);
  }
});

Deno.test("webseq bleu --hyps - reads the hypotheses from stdin", async () => {
  const cmd = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--no-check",
      `--allow-read=${REFS_A}`,
      new URL("../cli.ts", import.meta.url).pathname,
      "bleu",
      "--refs",
      REFS_A,
      "--hyps",
      "-",
      "--json",
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  });
  const child = cmd.spawn();
  const w = child.stdin.getWriter();
  await w.write(await Deno.readFile(HYPS));
  await w.close();
  const res = await child.output();
  assert.equal(res.code, 0, new TextDecoder().decode(res.stderr));
  const fromFile = await capture(["--refs", REFS_A, "--hyps", HYPS, "--json"]);
  assert.deepEqual(JSON.parse(new TextDecoder().decode(res.stdout)), JSON.parse(fromFile.out[0]));
});

Deno.test("webseq bleu --help prints the help with examples and exits 0", async () => {
  const r = await capture(["--help"]);
  assert.equal(r.code, 0);
  assert.equal(r.out.join("\n"), HELP);
  assert.match(HELP, /Examples:/);
  assert.match(HELP, /Permissions: --allow-read/);
});

Deno.test("webseq bleu reports smoothing method 6 failures with the line", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/r.txt`, "a b c d\n");
    await Deno.writeTextFile(`${dir}/h.txt`, "a b x y\n");
    const r = await capture([
      "--refs",
      `${dir}/r.txt`,
      "--hyps",
      `${dir}/h.txt`,
      "--smoothing",
      "6",
    ]);
    assert.equal(r.code, 1);
    assert.match(r.err[0], /h\.txt line 1: BLEU smoothing method 6/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
