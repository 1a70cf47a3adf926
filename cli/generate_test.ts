import assert from "node:assert/strict";
import { captureRun } from "../tests/_capture.ts";
import { HELP, run } from "./generate.ts";
import { selectBackend } from "./_device.ts";
import { runPath, saveConfig, saveModelWeights } from "../train/run_folder.ts";
import { generateText } from "../train/generate.ts";
import { loadRun } from "../train/load_model.ts";
import { presetConfig } from "../nn/config.ts";
import { Seq2Seq } from "../nn/seq2seq.ts";
import { initContext } from "../nn/module.ts";
import { CPU } from "../tensor/cpu_backend.ts";
import { trainBpe } from "../data/bpe_trainer.ts";
import { saveTokenizer } from "../data/tokenizer.ts";
import { GPU, NO_GPU } from "../tests/_gpu.ts";

/** Runs the command in-process, capturing stdout and stderr lines. */
const capture = (args: string[]) => captureRun(run, args);

/** A tiny random run folder: config, weights, tokenizer. */
async function tinyRun(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "webseq_generate_" });
  const tok = await trainBpe(
    ["the cat sat on the mat", "a dog ran in the park", "the dog sat on a log"],
    { vocabSize: 48, minFrequency: 1 },
  );
  const cfg = presetConfig("tiny", {
    vocab_size: tok.vocabSize,
    d_model: 16,
    n_heads: 2,
    d_ff: 32,
    n_encoder_layers: 1,
    n_decoder_layers: 1,
    max_position: 32,
    dropout: 0,
    drop_path: 0,
  });
  const model = new Seq2Seq(cfg, initContext(4, CPU));
  await saveConfig(dir, cfg);
  // zero the pad/start/unk rows of the tied embedding: their logits are 0, so the random
  // model mostly picks real tokens and outputs are not empty strings
  const state = await model.stateDict();
  const emb = state["decoder.embed.weight"].data;
  for (const id of [0, 1, 3]) emb.fill(0, id * cfg.d_model, (id + 1) * cfg.d_model);
  await saveModelWeights(dir, state, { tieEmbeddings: true });
  await saveTokenizer(tok, runPath(dir, "tokenizer"));
  model.dispose();
  return dir;
}

const DIR = await tinyRun();
const BASE = ["--run", DIR, "--device", "cpu", "--max-new-tokens", "6"];
const TEXTS = ["the cat", "a dog ran", ""];

Deno.test("webseq generate --help shows examples, options and permissions", async () => {
  const r = await capture(["--help"]);
  assert.equal(r.code, 0);
  assert.equal(r.out.join("\n"), HELP);
  for (
    const s of ["Examples:", "Usage:", "--num-beams", "--device", "--allow-read=RUN_DIR,INPUT"]
  ) {
    assert.ok(HELP.includes(s), s);
  }
});

Deno.test("webseq generate prints one line per input, equal to generateText()", async () => {
  const r = await capture([...BASE, ...TEXTS.flatMap((t) => ["--text", t])]);
  assert.equal(r.code, 0, r.err.join("\n"));
  assert.equal(r.out.length, TEXTS.length);
  const { model, tokenizer } = await loadRun(DIR, { backend: CPU });
  const ref = await generateText(model, tokenizer!, TEXTS, { maxNewTokens: 6 });
  model.dispose();
  assert.ok(r.out.every((line) => line.length > 0), r.out.join(" | "));
  assert.deepEqual(r.out, ref.sequences.map((g) => g[0].text!.replace(/[\t\r\n]+/g, " ")));
  // an input that starts with a dash is an input, not a flag
  const dash = await capture([...BASE, "--text", "-the cat", "--text", "- 5"]);
  assert.equal(dash.code, 0, dash.err.join("\n"));
  assert.equal(dash.out.length, 2);
});

Deno.test("webseq generate --min-new-tokens equals generateText() with minNewTokens", async () => {
  const args = [...BASE, ...TEXTS.flatMap((t) => ["--text", t]), "--min-new-tokens", "5", "--json"];
  const r = await capture(args);
  assert.equal(r.code, 0, r.err.join("\n"));
  const { model, tokenizer } = await loadRun(DIR, { backend: CPU });
  const ref = await generateText(model, tokenizer!, TEXTS, { maxNewTokens: 6, minNewTokens: 5 });
  model.dispose();
  assert.deepEqual(
    r.out.map((l) => JSON.parse(l).scores[0]),
    ref.sequences.map((g) => g[0].score),
  );
  assert.ok(ref.sequences.every((g) => g[0].ids.length >= 5));
});

Deno.test("webseq generate --json gives input, outputs and sorted beam scores", async () => {
  const r = await capture([
    ...BASE,
    "--text",
    "the cat",
    "--text",
    "the dog sat",
    "--strategy",
    "beam",
    "--num-beams",
    "3",
    "--num-return-sequences",
    "2",
    "--json",
  ]);
  assert.equal(r.code, 0, r.err.join("\n"));
  assert.equal(r.out.length, 2);
  const rows = r.out.map((l) => JSON.parse(l));
  assert.equal(rows[0].input, "the cat");
  assert.equal(rows[1].input, "the dog sat");
  for (const row of rows) {
    assert.equal(row.outputs.length, 2);
    assert.equal(row.scores.length, 2);
    assert.ok(row.scores[0] >= row.scores[1]);
  }
  // plain mode: the return sequences tab-separated on one line
  const plain = await capture([
    ...BASE,
    "--text",
    "the cat",
    "--num-beams",
    "3",
    "--num-return-sequences",
    "2",
  ]);
  assert.equal(plain.code, 0, plain.err.join("\n"));
  assert.deepEqual(plain.out, [rows[0].outputs.join("\t")]);
});

Deno.test("webseq generate reads --input files; batch size does not change samples", async () => {
  const file = `${DIR}/inputs.txt`;
  await Deno.writeTextFile(file, "the cat\r\n\na dog ran\nthe dog sat on a log\nthe mat\n");
  const args = [...BASE, "--input", file, "--top-k", "5", "--seed", "3", "--json"];
  const one = await capture([...args, "--batch-size", "16"]);
  const two = await capture([...args, "--batch-size", "2"]);
  assert.equal(one.code, 0, one.err.join("\n"));
  assert.equal(one.out.length, 5);
  assert.equal(JSON.parse(one.out[1]).input, "");
  assert.deepEqual(two.out, one.out);
  const other = await capture([...BASE, "--input", file, "--top-k", "5", "--seed", "4", "--json"]);
  assert.notDeepEqual(other.out, one.out);
});

Deno.test("webseq generate --input drops a byte-order mark and names a line of invalid UTF-8", async () => {
  const bom = `${DIR}/bom.txt`, bad = `${DIR}/bad.txt`;
  await Deno.writeFile(
    bom,
    new Uint8Array([0xef, 0xbb, 0xbf, ...new TextEncoder().encode("the cat\n")]),
  );
  const r = await capture([...BASE, "--input", bom, "--json"]);
  assert.equal(r.code, 0, r.err.join("\n"));
  assert.equal(JSON.parse(r.out[0]).input, "the cat");
  const plain = await capture([...BASE, "--text", "the cat", "--json"]);
  assert.deepEqual(r.out, plain.out);
  await Deno.writeFile(bad, new Uint8Array([0x61, 0x0a, 0x63, 0xff, 0x0a]));
  const b = await capture([...BASE, "--input", bad]);
  assert.equal(b.code, 1);
  assert.deepEqual(b.err, [`webseq generate: error: ${bad}:2: invalid UTF-8`]);
  assert.equal(b.out.length, 0);
});

Deno.test("webseq generate reads stdin with --input - under the documented permissions", async () => {
  const script = `${DIR}/main.ts`;
  const mod = new URL("./generate.ts", import.meta.url).href;
  await Deno.writeTextFile(
    script,
    `import { run } from "${mod}";\nDeno.exit(await run(Deno.args));\n`,
  );
  const cmd = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--no-check",
      "--config",
      new URL("../deno.json", import.meta.url).pathname,
      `--allow-read=${DIR}`,
      "--allow-env",
      script,
      ...BASE,
      "--input",
      "-",
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    env: { XDG_RUNTIME_DIR: "/tmp", NO_COLOR: "1" },
  });
  const child = cmd.spawn();
  const w = child.stdin.getWriter();
  await w.write(new TextEncoder().encode("the cat\na dog ran\n"));
  await w.close();
  const res = await child.output();
  const stderr = new TextDecoder().decode(res.stderr);
  assert.equal(res.code, 0, stderr);
  const lines = new TextDecoder().decode(res.stdout).split("\n");
  assert.equal(lines.pop(), "");
  const inProcess = await capture([...BASE, "--text", "the cat", "--text", "a dog ran"]);
  assert.deepEqual(lines, inProcess.out);
});

Deno.test("webseq generate usage errors exit 2 with one line", async () => {
  const cases: [string[], RegExp][] = [
    [["--text", "x"], /Missing required option --run/],
    [[...BASE, "--text", "x", "--bogus"], /bogus/],
    [[...BASE], /Missing input/],
    [[...BASE, "--text", "x", "--input", "f"], /not both/],
    [[...BASE, "--text", "x", "--strategy", "magic"], /--strategy must be/],
    [
      [...BASE, "--text", "x", "--strategy", "greedy", "--top-k", "3"],
      /--top-k needs --strategy sample/,
    ],
    [[...BASE, "--text", "x", "--strategy", "sample", "--num-beams", "2"], /--num-beams needs/],
    [[...BASE, "--text", "x", "--num-return-sequences", "2"], /needs --strategy sample or beam/],
    [[...BASE, "--text", "x", "--num-beams", "2", "--num-return-sequences", "3"], /exceed/],
    [[...BASE, "--text", "x", "--temperature", "0"], /--temperature must be above 0/],
    [[...BASE, "--text", "x", "--top-p", "1.5"], /--top-p must be at most 1/],
    [[...BASE, "--text", "x", "--max-new-tokens", "two"], /--max-new-tokens must be an integer/],
    [[...BASE, "--text", "x", "--top-k", "-1"], /--top-k must be at least 0, got -1/],
    [[...BASE, "--text", "x", "--max-new-tokens", "0"], /--max-new-tokens must be at least 1/],
    [[...BASE, "--text", "x", "--min-new-tokens", "-2"], /--min-new-tokens must be at least 0/],
    [
      ["--run", DIR, "--device", "cpu", "--text", "x", "--max-new-tokens", "33"],
      /--max-new-tokens \(33\) exceeds the model's max_position 32/,
    ],
    [[...BASE, "--text", "x", "--temperature", "1e-7"], /--temperature must be at least 1e-6/],
    [
      [...BASE, "--text", "x", "--num-beams", "3", "--temperature", "0.5"],
      /--temperature \(sampling\) and --num-beams \(beam search\) do not go together/,
    ],
    [["--run", DIR, "--text", "x", "--device", "tpu"], /--device must be auto, webgpu or cpu/],
  ];
  for (const [args, re] of cases) {
    const r = await capture(args);
    assert.equal(r.code, 2, `${args.join(" ")}: ${r.err.join(" | ")}`);
    assert.match(r.err[0], re);
    assert.equal(r.out.length, 0);
  }
});

Deno.test("webseq generate failures exit 1 naming the run folder or file", async () => {
  const missing = `${DIR}/no_such_run`;
  const r = await capture(["--run", missing, "--text", "x", "--device", "cpu"]);
  assert.equal(r.code, 1);
  assert.equal(r.err.length, 1);
  assert.match(r.err[0], /^webseq generate: error: .*no_such_run: run folder does not exist$/);
  const f = await capture([...BASE, "--input", `${DIR}/none.txt`]);
  assert.equal(f.code, 1);
  assert.match(f.err[0], /cannot read --input file .*none\.txt: no such file/);
});

Deno.test("selectBackend() picks the CPU, WebGPU when present, and fails one line without it", async () => {
  assert.equal(await selectBackend("cpu"), CPU);
  if (NO_GPU) {
    await assert.rejects(() => selectBackend("webgpu"), /--device webgpu: .*adapter/);
    const { error } = console;
    const err: string[] = [];
    console.error = (...a: unknown[]) => err.push(a.join(" "));
    try {
      assert.equal(await selectBackend("auto"), CPU);
    } finally {
      console.error = error;
    }
    assert.equal(err.length, 1);
    assert.match(err[0], /running on the CPU/);
  } else {
    assert.equal(await selectBackend("webgpu"), GPU);
    // auto skips software adapters (llvmpipe is slower than the CPU backend)
    const software = Boolean(GPU!.adapterInfo.isFallbackAdapter);
    assert.equal(await selectBackend("auto", { quiet: true }), software ? CPU : GPU);
  }
});

Deno.test({
  name: "webseq generate --device webgpu equals --device cpu",
  ignore: NO_GPU,
  fn: async () => {
    const args = ["--run", DIR, "--max-new-tokens", "4", "--text", "the cat", "--text", "a dog"];
    const gpu = await capture([...args, "--device", "webgpu"]);
    const cpu = await capture([...args, "--device", "cpu"]);
    assert.equal(gpu.code, 0, gpu.err.join("\n"));
    assert.deepEqual(gpu.out, cpu.out);
  },
});

Deno.test("cleanup: remove the tiny run folder", async () => {
  await Deno.remove(DIR, { recursive: true });
});
