import assert from "node:assert/strict";
import { parse as csvParseSync } from "csv-parse/sync";
import {
  checkPairIds,
  formatFromPath,
  loadPairs,
  type Pair,
  readPairs,
  readPairsFromStream,
  type ReadPairsOptions,
  readTextLines,
} from "./readers.ts";

const DIR = new URL("../tests/testdata/readers/", import.meta.url).pathname;
const at = (file: string) => DIR + file;

function texts(pairs: Pair[]): [string, string][] {
  return pairs.map((p) => {
    assert.equal(p.kind, "text");
    return p.kind === "text" ? [p.source, p.target] : ["", ""];
  });
}

/** Asserts that loading `file` fails with `type` and a one-line message `file:line: ...`. */
async function assertFails(
  file: string,
  type: ErrorConstructor,
  line: number | null,
  pattern: RegExp,
  opts: ReadPairsOptions = {},
): Promise<void> {
  await assert.rejects(loadPairs(at(file), opts), (e: Error) => {
    assert.ok(e instanceof type, `expected ${type.name}, got ${e.name}: ${e.message}`);
    assert.ok(!e.message.includes("\n"), `message is not one line: ${e.message}`);
    const prefix = line === null ? `${at(file)}: ` : `${at(file)}:${line}: `;
    assert.ok(e.message.startsWith(prefix), `"${e.message}" does not start with "${prefix}"`);
    assert.match(e.message, pattern);
    return true;
  });
}

Deno.test("formatFromPath() maps extensions to formats", () => {
  assert.equal(formatFromPath("a/b.CSV"), "csv");
  assert.equal(formatFromPath("x.tsv"), "tsv");
  assert.equal(formatFromPath("x.txt"), "tsv");
  assert.equal(formatFromPath("x.jsonl"), "jsonl");
  assert.equal(formatFromPath("x.json"), "jsonl");
  assert.equal(formatFromPath("x.parquet"), undefined);
});

Deno.test("loadPairs() reads RFC 4180 quoting like csv-parse does", async () => {
  const { pairs, skippedEmpty } = await loadPairs(at("quoted.csv"));
  const reference = csvParseSync(await Deno.readFile(at("quoted.csv")), {
    bom: true,
  }) as string[][];
  assert.deepEqual(texts(pairs), reference.slice(1));
  assert.deepEqual(texts(pairs), [
    ["Hello, world", "Merhaba, dünya"],
    ['She said "hi"', '"Selam" dedi'],
    ["two\nlines", "iki satır"],
    ["plain", "düz"],
  ]);
  assert.deepEqual(pairs.map((p) => p.line), [2, 3, 4, 6]);
  assert.equal(skippedEmpty, 0);
});

Deno.test("loadPairs() drops a UTF-8 BOM and reads CRLF records, keeping a CRLF inside quotes", async () => {
  const { pairs } = await loadPairs(at("bom_crlf.csv"));
  const reference = csvParseSync(await Deno.readFile(at("bom_crlf.csv")), {
    bom: true,
  }) as string[][];
  assert.deepEqual(texts(pairs), reference.slice(1));
  assert.deepEqual(texts(pairs), [["a\r\nb", "c"], ["d", "e,f"]]);
  assert.deepEqual(pairs.map((p) => p.line), [2, 4]);
});

Deno.test("loadPairs() uses columns 0 and 1 without a header, or the columns asked for", async () => {
  assert.deepEqual(texts((await loadPairs(at("no_header.csv"))).pairs), [["one", "bir"], [
    "two",
    "iki",
  ]]);
  const byIndex = await loadPairs(at("no_header.csv"), { sourceCol: 2, targetCol: "0" });
  assert.deepEqual(texts(byIndex.pairs), [["1", "one"], ["2", "two"]]);
  // The header names the columns in another order; the extra "id" column is ignored.
  assert.deepEqual(texts((await loadPairs(at("header.tsv"))).pairs), [["one", "bir"], [
    "two",
    "iki",
  ]]);
  const byName = await loadPairs(at("header.tsv"), { sourceCol: "ID", targetCol: "source" });
  assert.deepEqual(texts(byName.pairs), [["1", "one"], ["2", "two"]]);
});

Deno.test("loadPairs() reads the Tatoeba and Anki TSV exports", async () => {
  const tatoeba = await loadPairs(at("tatoeba.tsv"), { sourceCol: 1, targetCol: 3 });
  assert.deepEqual(texts(tatoeba.pairs), [
    ["Let's try something.", '"Bir şey deneyelim."'],
    ["I have to go to sleep.", "Uyumaya gitmeliyim."],
  ]);
  const anki = await loadPairs(at("anki.txt"));
  assert.deepEqual(texts(anki.pairs), [["cat", "kedi"], ["dog", "köpek"]]);
  assert.deepEqual(anki.pairs.map((p) => p.line), [4, 5]);
});

Deno.test("loadPairs() skips and counts rows with an empty or blank side", async () => {
  const { pairs, skippedEmpty } = await loadPairs(at("empty_rows.csv"));
  assert.deepEqual(texts(pairs), [["a", "b"], ["f", "g"]]);
  assert.deepEqual(pairs.map((p) => p.line), [2, 7]);
  assert.equal(skippedEmpty, 3);
});

Deno.test("readPairs() returns the skip count as the generator's value and honours maxPairs", async () => {
  const it = readPairs(at("empty_rows.csv"));
  const seen: Pair[] = [];
  for (;;) {
    const r = await it.next();
    if (r.done) {
      assert.deepEqual(r.value, { pairs: 2, skippedEmpty: 3 });
      break;
    }
    seen.push(r.value);
  }
  assert.equal(seen.length, 2);
  const first = await loadPairs(at("quoted.csv"), { maxPairs: 2 });
  assert.equal(first.pairs.length, 2);
});

Deno.test("loadPairs() reads JSONL text rows and pre-tokenized ids rows", async () => {
  const text = await loadPairs(at("text.jsonl"));
  assert.deepEqual(text.pairs, [
    { kind: "text", source: 'Hello, "world"', target: "Merhaba\ndunya", line: 1 },
    { kind: "text", source: "İstanbul", target: "istanbul", line: 3 },
  ]);
  assert.equal(text.skippedEmpty, 1);
  const ids = await loadPairs(at("ids.jsonl"));
  assert.deepEqual(ids.pairs, [
    { kind: "ids", sourceIds: [5, 6, 7], targetIds: [8], line: 1 },
    { kind: "ids", sourceIds: [10, 11], targetIds: [12, 13], line: 3 },
  ]);
  assert.equal(ids.skippedEmpty, 1);
});

Deno.test("loadPairs() names file and line of a ragged row", async () => {
  await assertFails("ragged.csv", SyntaxError, 3, /ragged row: 3 fields, expected 2/);
  await assertFails("ragged.tsv", SyntaxError, 3, /ragged row: 1 field, expected 2/);
});

Deno.test("loadPairs() names the line where an unclosed quote opens", async () => {
  await assertFails("unclosed_quote.csv", SyntaxError, 3, /unclosed quote/);
});

Deno.test("loadPairs() rejects stray quotes in CSV", async () => {
  await assertFails("bare_quote.csv", SyntaxError, 3, /quote inside an unquoted field/);
  await assertFails("after_quote.csv", SyntaxError, 3, /unexpected "x" after a closing quote$/);
});

Deno.test("loadPairs() names where a quoted field spanning lines began (a stray opening quote)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const f = `${dir}/stray.csv`;
    await Deno.writeTextFile(f, 'source,target\na,b\n"c,d\ne","f"8\ng,h\n');
    // a record whose real multi-line field ends before the stray quote's line: that line
    const g = `${dir}/stray2.csv`;
    await Deno.writeTextFile(g, 'source,target\n"a\nb","c"\nd,e\n"z,w\nx","y"9\n');
    await assert.rejects(
      loadPairs(g),
      new SyntaxError(
        `${g}:6: unexpected "9" after a closing quote (a quoted field ran from line 5: a stray quote there?)`,
      ),
    );
    await assert.rejects(
      loadPairs(f),
      new SyntaxError(
        `${f}:4: unexpected "8" after a closing quote (a quoted field ran from line 3: a stray quote there?)`,
      ),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loadPairs() names the line of invalid UTF-8", async () => {
  await assertFails("invalid_utf8.csv", SyntaxError, 4, /invalid UTF-8/);
  await assertFails("truncated_utf8.tsv", SyntaxError, 3, /invalid UTF-8/);
  // An encoded surrogate (ED A0 80) is invalid UTF-8 too.
  await assertFails("invalid_utf8.jsonl", SyntaxError, 3, /invalid UTF-8/);
});

Deno.test("loadPairs() reports a missing column by name or index", async () => {
  await assertFails("one_column.csv", TypeError, 1, /missing column 1 \(rows have 1 field/);
  await assertFails("quoted.csv", TypeError, 1, /missing column "foo"/, { sourceCol: "foo" });
  await assertFails("no_header.csv", TypeError, 1, /missing column 5/, { targetCol: 5 });
  await assertFails("missing_field.jsonl", TypeError, 2, /missing column "target"/);
});

Deno.test("loadPairs() reports bad JSON and bad ids", async () => {
  await assertFails("bad_json.jsonl", SyntaxError, 2, /bad JSON/);
  await assertFails("array.json", SyntaxError, 1, /not a JSON array/);
  await assertFails("not_object.jsonl", TypeError, 2, /expected a JSON object, got an array/);
  await assertFails(
    "bad_ids.jsonl",
    TypeError,
    2,
    /"source_ids" should be an array of integers, item 1 is 2.5/,
  );
  await assertFails(
    "ids_not_array.jsonl",
    TypeError,
    1,
    /should be an array of integers, got string/,
  );
  await assertFails("negative_id.jsonl", RangeError, 1, /-4 is not a valid token id/);
});

Deno.test("readPairs() needs a known extension or a format", async () => {
  await assert.rejects(
    readPairs("x.parquet").next(),
    new TypeError(
      "x.parquet: cannot tell the format from the extension: name it .csv, .tsv (.tab, .txt) or .jsonl (.ndjson, .json), gzipped or not, or give the format (--format)",
    ),
  );
  await assert.rejects(readPairs(at("nope.csv")).next(), /nope\.csv: no such file/);
  const dir = await Deno.makeTempDir({ suffix: ".tsv" });
  try {
    await assert.rejects(readPairs(dir).next(), new TypeError(`${dir}: is a folder, not a file`));
    await assert.rejects(
      () => readTextLines(dir),
      new TypeError(`${dir}: is a folder, not a file`),
    );
  } finally {
    await Deno.remove(dir);
  }
});

Deno.test("readPairs() and readTextLines() read .gz files through gzip; a corrupt one names the file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const text = "source\ttarget\n\uFEFFone\tbir\ntwo\tiki\n";
    const gz = async (bytes: Uint8Array<ArrayBuffer>) =>
      new Uint8Array(
        await new Response(
          new Blob([bytes]).stream().pipeThrough(new CompressionStream("gzip")),
        ).arrayBuffer(),
      );
    const plain = `${dir}/p.tsv`, zipped = `${dir}/p.tsv.gz`, noExt = `${dir}/pairs`;
    await Deno.writeTextFile(plain, text);
    await Deno.writeFile(zipped, await gz(new TextEncoder().encode(text)));
    await Deno.writeTextFile(noExt, text);
    assert.equal(formatFromPath(zipped), "tsv");
    assert.equal(formatFromPath(`${dir}/x.JSONL.GZ`), "jsonl");
    const want = (await loadPairs(plain)).pairs.map((p) => [p.line, p.kind === "text" && p.source]);
    const got = (await loadPairs(zipped)).pairs.map((p) => [p.line, p.kind === "text" && p.source]);
    assert.deepEqual(got, want);
    // no extension: the format option says it
    const named = (await loadPairs(noExt, { format: "tsv" })).pairs;
    assert.deepEqual(named.map((p) => p.line), want.map(([l]) => l));
    assert.deepEqual(await readTextLines(zipped), await readTextLines(plain));
    // a multi-member file (cat a.gz b.gz, bgzip) is read whole, as gzip -d reads it
    const [head, tail] = [text.slice(0, 14), text.slice(14)];
    const enc = new TextEncoder();
    const members = `${dir}/m.tsv.gz`;
    await Deno.writeFile(
      members,
      new Uint8Array([...await gz(enc.encode(head)), ...await gz(enc.encode(tail))]),
    );
    assert.deepEqual(await readTextLines(members), await readTextLines(plain));
    const cut = `${dir}/cut.tsv.gz`;
    const whole = await Deno.readFile(zipped);
    await Deno.writeFile(cut, whole.subarray(0, whole.length - 6));
    await assert.rejects(
      () => loadPairs(cut),
      new RegExp(`^TypeError: ${cut}: not a whole gzip file`),
    );
    await Deno.writeTextFile(`${dir}/fake.tsv.gz`, "plain text");
    await assert.rejects(
      () => readTextLines(`${dir}/fake.tsv.gz`),
      /fake\.tsv\.gz: not a whole gzip file/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** A stream of `rows` TSV rows made on demand; `pulled()` tells how many bytes were read. */
function generatedStream(
  rows: number,
): { stream: ReadableStream<Uint8Array>; pulled: () => number } {
  const enc = new TextEncoder();
  let row = 0;
  let bytes = 0;
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (row >= rows) return controller.close();
      let s = "";
      for (let k = 0; k < 1000 && row < rows; k++, row++) {
        s += `sentence ${row} ünïcödé\tcümle ${row}\n`;
      }
      const chunk = enc.encode(s);
      bytes += chunk.length;
      controller.enqueue(chunk);
    },
  }, { highWaterMark: 0 });
  return { stream, pulled: () => bytes };
}

Deno.test("readPairsFromStream() yields the first pair before reading the whole stream", async () => {
  const { stream, pulled } = generatedStream(200_000); // about 8 MB
  const it = readPairsFromStream(stream, "gen.tsv", { format: "tsv" });
  const first = await it.next();
  assert.deepEqual(first.value, {
    kind: "text",
    source: "sentence 0 ünïcödé",
    target: "cümle 0",
    line: 1,
  });
  assert.ok(pulled() < 200_000, `pulled ${pulled()} bytes before the first pair`);
  await it.return({ pairs: 0, skippedEmpty: 0 });
});

/** Runs `code` in a child Deno whose V8 old space is capped at `mib` MiB; returns its output. */
async function runCapped(code: string, mib: number, cwd: string) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", `--v8-flags=--max-old-space-size=${mib}`, code],
    cwd,
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { ok: out.success, stdout: new TextDecoder().decode(out.stdout).trim() };
}

Deno.test("readPairsFromStream() streams a 50 MB file: bounded read-ahead, nothing kept", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/big.csv`;
    const file = await Deno.open(path, { write: true, create: true });
    const block = new TextEncoder().encode(
      Array.from({ length: 1000 }, (_, k) => `"row ${k}, with a comma","satır ""${k}"""\n`).join(
        "",
      ),
    );
    let written = 0;
    while (written < 50 * 1024 * 1024) {
      await file.write(block);
      written += block.length;
    }
    file.close();
    const rows = (written / block.length) * 1000;
    const readers = new URL("./readers.ts", import.meta.url).href;
    // The child counts the bytes pulled from the file; when line L is yielded, the reader may
    // have pulled the block holding L plus a bounded read-ahead, never the rest of the file.
    const prelude = `import { loadPairs, readPairsFromStream } from ${JSON.stringify(readers)};
      const path = ${JSON.stringify(path)};`;
    const streamed = await runCapped(
      `${prelude}
       let pulled = 0, n = 0, last = 0, ahead = 0;
       const counter = new TransformStream({ transform(c, ctl) { pulled += c.length; ctl.enqueue(c); } });
       const f = await Deno.open(path);
       for await (const p of readPairsFromStream(f.readable.pipeThrough(counter), path, { format: "csv" })) {
         n++; last = p.line;
         ahead = Math.max(ahead, pulled - Math.ceil(p.line / 1000) * ${block.length});
       }
       console.log(n, last, ahead < 1 << 20 ? "bounded" : "read " + ahead + " bytes ahead");`,
      24,
      dir,
    );
    assert.ok(streamed.ok, "the streaming reader ran out of memory under a 24 MiB heap");
    assert.equal(streamed.stdout, `${rows} ${rows} bounded`);
    // The control: keeping every pair does not fit under the same cap.
    const kept = await runCapped(
      `${prelude} console.log((await loadPairs(path)).pairs.length);`,
      24,
      dir,
    );
    assert.equal(kept.ok, false, "the 24 MiB cap does not bite; the test proves nothing");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("readTextLines() drops a byte-order mark, takes LF and CRLF, and names a line of invalid UTF-8", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const enc = new TextEncoder();
    const f = `${dir}/a.txt`;
    await Deno.writeFile(
      f,
      new Uint8Array([0xef, 0xbb, 0xbf, ...enc.encode("one\r\n\ntwo\nthree")]),
    );
    assert.deepEqual(await readTextLines(f), ["one", "", "two", "three"]);
    await Deno.writeTextFile(f, "x\n");
    assert.deepEqual(await readTextLines(f), ["x"]);
    await Deno.writeTextFile(f, "");
    assert.deepEqual(await readTextLines(f), []);
    // a BOM only at the start: one later in the file is text
    await Deno.writeFile(f, new Uint8Array([0x61, 0x0a, 0xef, 0xbb, 0xbf, 0x62]));
    assert.deepEqual(await readTextLines(f), ["a", "\ufeffb"]);
    await Deno.writeFile(f, new Uint8Array([0x61, 0x0a, 0x62, 0x0a, 0xff, 0x0a]));
    await assert.rejects(() => readTextLines(f), SyntaxError, `${f}:3: invalid UTF-8`);
    await assert.rejects(() => readTextLines(`${dir}/none.txt`), /none\.txt: no such file/);
    const stream = new Blob([enc.encode("p\nq\n")]).stream();
    assert.deepEqual(await readTextLines(stream), ["p", "q"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("checkPairIds() names the file, line, side and item of an id outside the vocabulary", () => {
  const pairs: Pair[] = [
    { kind: "text", source: "a", target: "b", line: 2 },
    { kind: "ids", sourceIds: [4, 5], targetIds: [6], line: 3 },
    { kind: "ids", sourceIds: [4], targetIds: [6, 10, 11], line: 7 },
  ];
  checkPairIds(pairs, 12, "x.jsonl");
  assert.throws(
    () => checkPairIds(pairs, 10, "x.jsonl"),
    new RangeError("x.jsonl:7: target id item 1 = 10 is outside the vocabulary [0, 10)"),
  );
  // the pad and eos ids are the dataset's to add, not the file's
  assert.throws(
    () => checkPairIds(pairs, 12, "x.jsonl", { pad: 0, eos: 5 }),
    new RangeError(
      "x.jsonl:3: source id item 1 = 5 is the eos id (pre-tokenized ids come without special tokens: eos, the start token and padding are added)",
    ),
  );
  assert.throws(
    () => checkPairIds(pairs, 12, "x.jsonl", { pad: 6 }),
    /x\.jsonl:3: target id item 0 = 6 is the pad id/,
  );
  checkPairIds(pairs, 12, "x.jsonl", { pad: 0, eos: 2 });
});
