// Makes the tokenizer fixtures in tests/testdata/tokenizer/ with the Rust `tokenizers` library
// (its Node binding, npm `tokenizers`), the reference implementation of tokenizer.json.
//
//   mkdir -p /tmp/rusttok && (cd /tmp/rusttok && npm init -y && npm install tokenizers@0.23.2)
//   TOKENIZERS_DIR=/tmp/rusttok/node_modules/tokenizers node tools/tokenizer_fixtures.mjs
//
// It writes:
//   trained.json, trained_byte_fallback.json   webseq's trainer on corpus.tsv (via the CLI)
//   rust_metaspace.json                         Rust's BPE trainer, NFC + Metaspace
//   rust_bytelevel.json                         Rust's BPE trainer, GPT-2 style ByteLevel
//   reference.json                              Rust's ids and decodes of probes.json for each
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";

const require = createRequire(import.meta.url);
const tk = require(process.env.TOKENIZERS_DIR ?? "tokenizers");
const dir = "tests/testdata/tokenizer";

// 1. webseq's trainer, through the CLI.
const train = (out, extra) =>
  execFileSync("deno", [
    "run",
    "--allow-read",
    "--allow-write",
    "--allow-env",
    "cli/tokenizer.ts",
    "train",
    "--data",
    `${dir}/corpus.tsv`,
    "--out",
    `${dir}/${out}`,
    ...extra,
  ], { stdio: "inherit" });
train("trained.json", ["--vocab-size", "400"]);
train("trained_byte_fallback.json", ["--vocab-size", "700", "--byte-fallback"]);

// 2. Rust's own trainer on the same text (both columns, header dropped).
const lines = readFileSync(`${dir}/corpus.tsv`, "utf8").trim().split("\n").slice(1);
const textFile = join(mkdtempSync(join(tmpdir(), "tokfix-")), "corpus.txt");
writeFileSync(textFile, lines.flatMap((l) => l.split("\t")).join("\n") + "\n");

const metaspace = new tk.Tokenizer(tk.BPE.empty());
metaspace.setNormalizer(tk.nfcNormalizer());
metaspace.setPreTokenizer(tk.metaspacePreTokenizer());
metaspace.setDecoder(tk.metaspaceDecoder());
metaspace.train([textFile]);
metaspace.save(`${dir}/rust_metaspace.json`, true);

const bytelevel = new tk.Tokenizer(tk.BPE.empty());
bytelevel.setPreTokenizer(tk.byteLevelPreTokenizer(false, true));
bytelevel.train([textFile]);
bytelevel.save(`${dir}/rust_bytelevel.json`, true);
// The binding has no byteLevelDecoder(): write the decoder into the file, as GPT-2's has it.
const bl = JSON.parse(readFileSync(`${dir}/rust_bytelevel.json`, "utf8"));
bl.decoder = { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true };
writeFileSync(`${dir}/rust_bytelevel.json`, JSON.stringify(bl, null, 2) + "\n");

// 3. Reference ids and decodes of the probes.
const probes = JSON.parse(readFileSync(`${dir}/probes.json`, "utf8"));
const files = [
  "trained.json",
  "trained_byte_fallback.json",
  "rust_metaspace.json",
  "rust_bytelevel.json",
];
const reference = { generator: "tokenizers (npm, Rust) 0.23.2", tokenizers: {} };
for (const file of files) {
  const tok = tk.Tokenizer.fromFile(`${dir}/${file}`);
  const rows = [];
  for (const text of probes) {
    const enc = await tok.encode(text, null, { addSpecialTokens: false });
    const ids = enc.getIds();
    const decoded = ids.length > 0 ? await tok.decode(ids, true) : "";
    rows.push({ text, ids, tokens: enc.getTokens(), decoded });
  }
  reference.tokenizers[file] = rows;
}
writeFileSync(`${dir}/reference.json`, JSON.stringify(reference, null, 1) + "\n");
console.log(`wrote ${dir}/reference.json`);
