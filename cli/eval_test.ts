import assert from "node:assert/strict";
import { captureRun } from "../tests/_capture.ts";
import { recordedReading, run } from "./eval.ts";
import { runPath, saveConfig, saveModelWeights, saveTrainerState } from "../train/run_folder.ts";
import { presetConfig } from "../nn/config.ts";
import { Seq2Seq } from "../nn/seq2seq.ts";
import { initContext } from "../nn/module.ts";
import { CPU } from "../tensor/cpu_backend.ts";
import { trainBpe } from "../data/bpe_trainer.ts";
import { saveTokenizer } from "../data/tokenizer.ts";

Deno.test("recordedReading(): a run's recorded length, columns, header, format and files (best/ from the run beside it)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    assert.deepEqual(await recordedReading(dir), {});
    const options = {
      max_length: 24,
      source_col: "de",
      target_col: 1,
      header: true,
      format: "tsv",
      data: "/x/train.tsv",
      valid: null,
    };
    await saveTrainerState(dir, { step: 3, epoch: 1, options });
    const want = {
      max_length: 24,
      source_col: "de",
      target_col: 1,
      header: true,
      format: "tsv",
      files: ["/x/train.tsv"],
    };
    assert.deepEqual(await recordedReading(dir), want);
    await Deno.mkdir(`${dir}/best`);
    assert.deepEqual(await recordedReading(`${dir}/best/`), want);
    await saveTrainerState(dir, { step: 3, epoch: 1, options: { max_length: 2.5, format: "xml" } });
    assert.deepEqual(await recordedReading(dir), {});
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Runs the command in-process, capturing stdout and stderr lines. */
const capture = (args: string[]) => captureRun(run, args);

/** A random tiny model, its config and tokenizer in `dir` (config fields overridable). */
async function tinyRun(dir: string, overrides: Record<string, number> = {}): Promise<void> {
  const tok = await trainBpe(["eins zwei drei", "one two three"], {
    vocabSize: 40,
    minFrequency: 1,
  });
  const cfg = presetConfig("tiny", {
    vocab_size: tok.vocabSize,
    d_model: 16,
    n_heads: 2,
    d_ff: 32,
    n_encoder_layers: 1,
    n_decoder_layers: 1,
    max_position: 32,
    ...overrides,
  });
  const model = new Seq2Seq(cfg, initContext(1, CPU));
  await saveConfig(dir, cfg);
  await saveModelWeights(dir, await model.stateDict(), { tieEmbeddings: true });
  model.dispose();
  await saveTokenizer(tok, runPath(dir, "tokenizer"));
}

Deno.test("webseq eval reads the run's own file with its recorded columns, and another file by its own header", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await tinyRun(dir);
    const own = `${dir}/own.tsv`, other = `${dir}/other.tsv`;
    await Deno.writeTextFile(own, "id\tde\ten\n1\teins\tone\n2\tzwei\ttwo\n3\tdrei\tthree\n");
    await Deno.writeTextFile(other, "source\ttarget\neins\tone\nzwei\ttwo\n");
    await saveTrainerState(dir, {
      step: 1,
      epoch: 1,
      options: { data: own, valid: null, source_col: "de", target_col: "en", max_length: 8 },
    });
    const base = ["--run", dir, "--device", "cpu", "--json"];
    const a = await capture([...base, "--data", own]);
    assert.equal(a.code, 0, a.err.join("\n"));
    assert.deepEqual([JSON.parse(a.out[0]).pairs, JSON.parse(a.out[0]).max_length], [3, 8]);
    const b = await capture([...base, "--data", other]);
    assert.equal(b.code, 0, b.err.join("\n"));
    assert.deepEqual([JSON.parse(b.out[0]).pairs, JSON.parse(b.out[0]).max_length], [2, 8]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("webseq eval of a pad = eos model is refused naming its config (its loss would not count eos)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await tinyRun(dir, { pad_token_id: 2 });
    await Deno.writeTextFile(`${dir}/d.tsv`, "source\ttarget\neins\tone\n");
    const r = await capture(["--run", dir, "--data", `${dir}/d.tsv`, "--device", "cpu"]);
    assert.equal(r.code, 1);
    assert.match(
      r.err[0],
      /config\.json: pad_token_id equals eos_token_id \(2\).*generate can run it/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
