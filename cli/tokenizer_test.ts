import assert from "node:assert/strict";
import { captureRun } from "../tests/_capture.ts";
import { HELP, run } from "./tokenizer.ts";
import { loadTokenizer } from "../data/tokenizer.ts";

const CORPUS = new URL("../tests/testdata/tokenizer/corpus.tsv", import.meta.url).pathname;
const TRAINED = new URL("../tests/testdata/tokenizer/trained.json", import.meta.url).pathname;

/** Runs the command in-process, capturing stdout and stderr. */
async function capture(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const r = await captureRun(run, args);
  return { code: r.code, stdout: r.out.join("\n"), stderr: r.err.join("\n") };
}

Deno.test("tokenizer train writes a tokenizer.json atomically and reports it", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const out = `${dir}/nested/run/tokenizer.json`;
    const r = await capture([
      "train",
      "--data",
      CORPUS,
      "--vocab-size",
      "400",
      "--out",
      out,
      "--json",
    ]);
    assert.equal(r.code, 0, r.stderr);
    const summary = JSON.parse(r.stdout);
    assert.deepEqual({ ...summary, seconds: 0 }, {
      out,
      vocab_size: 400,
      merges: 297,
      pairs: 60,
      skipped_empty: 0,
      skipped_ids: 0,
      seconds: 0,
    });
    // Same file as the committed fixture that the Rust library was checked on.
    assert.equal(await Deno.readTextFile(out), await Deno.readTextFile(TRAINED));
    assert.deepEqual([...Deno.readDirSync(`${dir}/nested/run`)].map((e) => e.name), [
      "tokenizer.json",
    ]);
    const tok = await loadTokenizer(out);
    assert.equal(tok.tokenToId("<unk>"), 3);

    const text = await capture(["train", "--data", CORPUS, "--vocab-size", "300", "--out", out]);
    assert.equal(text.code, 0);
    assert.match(
      text.stdout,
      /^Wrote .*tokenizer\.json: vocab 300 \(4 special\), 197 merges, from 60 pairs in [\d.]+ s$/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("tokenizer train --out DIR writes DIR/tokenizer.json (an existing folder, or a path ending in /)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const args = ["train", "--data", CORPUS, "--vocab-size", "300", "--json", "--out"];
    const a = await capture([...args, dir]);
    assert.equal(a.code, 0, a.stderr);
    assert.equal(JSON.parse(a.stdout).out, `${dir}/tokenizer.json`);
    const b = await capture([...args, `${dir}/new/`]);
    assert.equal(b.code, 0, b.stderr);
    assert.equal(JSON.parse(b.stdout).out, `${dir}/new/tokenizer.json`);
    assert.equal(
      await Deno.readTextFile(`${dir}/new/tokenizer.json`),
      await Deno.readTextFile(`${dir}/tokenizer.json`),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("tokenizer train reads CSV and JSONL with chosen columns, skipping pre-tokenized rows", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(
      `${dir}/pairs.csv`,
      'id,en,tr\n1,"Hello, world",Merhaba dünya\n2,"She said ""hi""",Selam dedi\n3,,boş\n',
    );
    const r = await capture([
      "train",
      "--data",
      `${dir}/pairs.csv`,
      "--source-col",
      "en",
      "--target-col",
      "2",
      "--vocab-size",
      "60",
      "--min-frequency",
      "1",
      "--out",
      `${dir}/a.json`,
      "--json",
    ]);
    assert.equal(r.code, 0, r.stderr);
    const s = JSON.parse(r.stdout);
    assert.equal(s.pairs, 2);
    assert.equal(s.skipped_empty, 1);
    const tok = await loadTokenizer(`${dir}/a.json`);
    assert.equal(tok.decode(tok.encode('She said "hi"')), 'She said "hi"');

    await Deno.writeTextFile(
      `${dir}/pairs.jsonl`,
      '{"source": "İyi günler", "target": "Good day"}\n{"source_ids": [5, 6], "target_ids": [7]}\n',
    );
    const j = await capture([
      "train",
      "--data",
      `${dir}/pairs.jsonl`,
      "--vocab-size",
      "40",
      "--out",
      `${dir}/b.json`,
      "--json",
    ]);
    assert.equal(j.code, 0, j.stderr);
    assert.equal(JSON.parse(j.stdout).skipped_ids, 1);

    await Deno.writeTextFile(`${dir}/ids.jsonl`, '{"source_ids": [5, 6], "target_ids": [7]}\n');
    const ids = await capture([
      "train",
      "--data",
      `${dir}/ids.jsonl`,
      "--vocab-size",
      "40",
      "--out",
      `${dir}/c.json`,
    ]);
    assert.equal(ids.code, 1);
    assert.equal(
      ids.stderr,
      `webseq tokenizer: error: ${dir}/ids.jsonl: no text pairs to train on (1 pre-tokenized rows)`,
    );
    assert.ok(!(await exists(`${dir}/c.json`)));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("tokenizer exits 2 on usage errors and 1 on bad input, with one-line messages", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/bad.csv`, 'source,target\n"unclosed,x\n');
    await Deno.writeTextFile(`${dir}/bad_tok.json`, '{"model": {"type": "Foo"}}');
    const out = `${dir}/o.json`;
    const cases: [string[], number, RegExp][] = [
      [[], 2, /usage: Missing action: train, encode or decode/],
      [["frobnicate"], 2, /usage: Unknown action "frobnicate"/],
      [["train", "--vocab-size", "100", "--out", out], 2, /usage: Missing required option --data/],
      [["train", "--data", CORPUS, "--out", out], 2, /usage: Missing required option --vocab-size/],
      [
        ["train", "--data", CORPUS, "--vocab-size", "abc", "--out", out],
        2,
        /--vocab-size must be an integer, got "abc"/,
      ],
      [
        ["train", "--data", CORPUS, "--vocab-size", "4", "--out", out],
        2,
        /--vocab-size must be at least 5/,
      ],
      [
        ["train", "--data", CORPUS, "--vocab-size", "100", "--byte-fallback", "--out", out],
        2,
        /--vocab-size must be at least 261/,
      ],
      [
        ["train", "--data", CORPUS, "--vocab-size", "100", "--out", out, "--bogus"],
        2,
        /usage: Unknown option '--bogus'/,
      ],
      [
        ["train", "--data", `${dir}/none.tsv`, "--vocab-size", "100", "--out", out],
        1,
        /error: .*none\.tsv: no such file/,
      ],
      [
        ["train", "--data", `${dir}/bad.csv`, "--vocab-size", "100", "--out", out],
        1,
        /error: .*bad\.csv:2: /,
      ],
      [
        ["encode", "--tokenizer", `${dir}/bad_tok.json`, "--text", "x"],
        1,
        /error: .*bad_tok\.json: unknown model type "Foo"/,
      ],
      [["encode", "--tokenizer", TRAINED], 2, /usage: Missing required option --text/],
      [
        ["decode", "--tokenizer", TRAINED, "--ids", "1,x"],
        2,
        /usage: Option --ids: "x" is not a token id/,
      ],
      [
        ["decode", "--tokenizer", TRAINED, "--ids", "999999"],
        1,
        /error: Token id 999999 is not in the vocab/,
      ],
    ];
    for (const [args, code, message] of cases) {
      const r = await capture(args);
      assert.equal(r.code, code, `${args.join(" ")}: ${r.stderr}`);
      const first = r.stderr.split("\n")[0];
      assert.match(first, /^webseq tokenizer: /, args.join(" "));
      assert.match(first, message, args.join(" "));
      assert.ok(r.stderr.split("\n").length <= 2, r.stderr);
      assert.equal(r.stdout, "");
    }
    assert.ok(!(await exists(out)));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("tokenizer encode and decode print ids and text", async () => {
  const tok = await loadTokenizer(TRAINED);
  const text = "Yarın İstanbul'a gidiyorum 🍕.";
  const enc = await capture(["encode", "--tokenizer", TRAINED, "--text", text]);
  assert.equal(enc.code, 0);
  assert.equal(enc.stdout, tok.encode(text).join(" "));
  const json = await capture(["encode", "--tokenizer", TRAINED, "--text", text, "--json"]);
  assert.deepEqual(JSON.parse(json.stdout), { ids: tok.encode(text), tokens: tok.tokenize(text) });
  const dec = await capture(["decode", "--tokenizer", TRAINED, "--ids", `1 ${enc.stdout} 2`]);
  assert.equal(dec.stdout, text);
  const decJson = await capture([
    "decode",
    "--tokenizer",
    TRAINED,
    "--ids",
    enc.stdout.replaceAll(" ", ","),
    "--json",
  ]);
  assert.deepEqual(JSON.parse(decJson.stdout), { text });
});

Deno.test("tokenizer --help prints the help and exits 0, also as a process", async () => {
  for (const args of [["--help"], ["train", "--help"], ["encode", "-h"]]) {
    const r = await capture(args);
    assert.equal(r.code, 0);
    assert.equal(r.stdout, HELP);
  }
  assert.match(HELP, /^webseq tokenizer: /);
  assert.match(HELP, /Examples:\n {2}webseq tokenizer train .*\n {2}webseq tokenizer encode /);
  assert.match(HELP, /Permissions: /);
  const cli = new URL("./tokenizer.ts", import.meta.url).pathname;
  const p = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-read", cli, "train", "--data", CORPUS],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(p.code, 2);
  assert.equal(
    new TextDecoder().decode(p.stderr),
    "webseq tokenizer: usage: Missing required option --out (webseq tokenizer --help lists the options)\n",
  );
});

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

Deno.test("tokenizer train --split-digits writes the Digits pre-tokenizer and encode splits numbers", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const out = `${dir}/tokenizer.json`;
    const r = await capture([
      "train",
      "--data",
      CORPUS,
      "--vocab-size",
      "400",
      "--split-digits",
      "--out",
      out,
    ]);
    assert.equal(r.code, 0, r.stderr);
    const json = JSON.parse(await Deno.readTextFile(out));
    assert.deepEqual(json.pre_tokenizer.pretokenizers.map((p: { type: string }) => p.type), [
      "Metaspace",
      "Digits",
    ]);
    assert.ok(Object.keys(json.model.vocab).every((t) => !/[0-9]/.test(t) || /^[0-9]$/.test(t)));
    const tok = await loadTokenizer(out);
    assert.ok(tok.fastPath);
    const enc = await capture(["encode", "--tokenizer", out, "--text", "2021", "--json"]);
    assert.equal(enc.code, 0, enc.stderr);
    assert.deepEqual(JSON.parse(enc.stdout).tokens, ["▁", "2", "0", "2", "1"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
