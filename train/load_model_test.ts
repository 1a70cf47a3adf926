import assert from "node:assert/strict";
import { loadRun } from "./load_model.ts";
import { runPath, saveConfig, saveModelWeights } from "./run_folder.ts";
import { type ModelConfig, presetConfig } from "../nn/config.ts";
import { Seq2Seq } from "../nn/seq2seq.ts";
import { initContext } from "../nn/module.ts";
import { noGrad, tensor } from "../tensor/tensor.ts";
import { CPU } from "../tensor/cpu_backend.ts";
import { trainBpe } from "../data/bpe_trainer.ts";
import { saveTokenizer } from "../data/tokenizer.ts";
import { GPU, NO_GPU } from "../tests/_gpu.ts";

const SENTENCES = ["the cat sat on the mat", "a dog ran in the park", "the dog sat"];

async function tinyRun(
  dir: string,
  overrides: Partial<ModelConfig>,
  opts: { omitHead?: boolean; tokenizer?: boolean } = {},
): Promise<Seq2Seq> {
  const tok = await trainBpe(SENTENCES, { vocabSize: 40, minFrequency: 1 });
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
    ...overrides,
  });
  const model = new Seq2Seq(cfg, initContext(9, CPU)).eval();
  await saveConfig(dir, cfg);
  await saveModelWeights(dir, await model.stateDict(), {
    tieEmbeddings: opts.omitHead ?? cfg.tie_embeddings,
  });
  if (opts.tokenizer ?? true) await saveTokenizer(tok, runPath(dir, "tokenizer"));
  return model;
}

async function logits(model: Seq2Seq): Promise<number[]> {
  const b = model.parameters()[0].backend;
  const out = noGrad(() =>
    model.forward(
      tensor(new Int32Array([5, 6, 7, 2]), [1, 4], { backend: b }),
      tensor([1, 1, 1, 1], [1, 4], { backend: b }),
      tensor(new Int32Array([1, 8, 9]), [1, 3], { backend: b }),
      tensor([1, 1, 1], [1, 3], { backend: b }),
    )
  );
  return await out.toArray();
}

Deno.test("loadRun() restores tied and untied models exactly, in eval mode", async () => {
  for (const tie of [true, false]) {
    const dir = await Deno.makeTempDir();
    try {
      const original = await tinyRun(dir, { tie_embeddings: tie, layer_scale_init: 0.5 });
      const { model, config, tokenizer } = await loadRun(dir, { backend: CPU });
      assert.equal(config.tie_embeddings, tie);
      assert.equal(model.training, false);
      assert.equal(tokenizer?.vocabSize, config.vocab_size);
      assert.deepEqual(await logits(model), await logits(original));
      assert.equal(
        model.namedParameters().some(([n]) => n === "decoder.lm_head.weight"),
        !tie,
      );
      model.dispose();
      original.dispose();
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }
});

Deno.test("loadRun() ignores an lm_head in a tied file and rejects a missing one in an untied file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // untied weights under a tied config: the extra lm_head is dropped
    const untied = await tinyRun(dir, { tie_embeddings: false });
    const cfg = { ...untied.config, tie_embeddings: true };
    await saveConfig(dir, cfg);
    const { model } = await loadRun(dir, { backend: CPU });
    model.dispose();
    // an untied config whose file omits lm_head
    await tinyRun(dir, { tie_embeddings: false }, { omitHead: true });
    await assert.rejects(
      () => loadRun(dir, { backend: CPU }),
      (err: Error) => {
        assert.match(err.message, /model\.safetensors: missing tensor "decoder\.lm_head\.weight"/);
        assert.ok(!err.message.includes("\n"));
        return true;
      },
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loadRun() names the missing run folder, config or tokenizer", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await assert.rejects(() => loadRun(`${dir}/nope`), /nope: run folder does not exist/);
    await assert.rejects(() => loadRun(dir), /config\.json: file is missing/);
    await tinyRun(dir, {}, { tokenizer: false });
    await assert.rejects(() => loadRun(dir), /tokenizer\.json: file is missing/);
    const run = await loadRun(dir, { requireTokenizer: false });
    assert.equal(run.tokenizer, null);
    run.model.dispose();
    // a tokenizer with more ids than the model
    await tinyRun(dir, {});
    const cfg = JSON.parse(await Deno.readTextFile(runPath(dir, "config")));
    await Deno.writeTextFile(runPath(dir, "config"), JSON.stringify({ ...cfg, vocab_size: 10 }));
    await assert.rejects(() => loadRun(dir), /tokenizer has \d+ ids, more than vocab_size 10/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "loadRun() puts the weights on the backend it is given",
  ignore: NO_GPU,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    try {
      (await tinyRun(dir, {})).dispose();
      const { model } = await loadRun(dir, { backend: GPU! });
      assert.ok(model.parameters().every((p) => p.backend === GPU));
      const cpu = await loadRun(dir, { backend: CPU });
      const [name, first] = model.namedParameters()[3];
      const [, ref] = cpu.model.namedParameters()[3];
      assert.deepEqual(await first.toArray(), await ref.toArray(), name);
      model.dispose();
      cpu.model.dispose();
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
