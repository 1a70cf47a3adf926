import assert from "node:assert/strict";
import { DEFAULT_CONFIG, presetConfig } from "../nn/config.ts";
import { parseSafetensors, SafetensorsError, serializeSafetensors } from "./safetensors.ts";
import {
  appendJsonl,
  LM_HEAD_WEIGHT,
  loadConfig,
  loadModelWeights,
  loadOptimizerState,
  loadTrainerState,
  type NamedTensor,
  readJsonl,
  RUN_FILES,
  runPath,
  saveConfig,
  saveModelWeights,
  saveOptimizerState,
  saveTrainerState,
  type TrainerState,
} from "./run_folder.ts";

async function withRun(fn: (dir: string) => Promise<void>): Promise<void> {
  const root = await Deno.makeTempDir();
  try {
    await fn(`${root}/runs/test`);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

function weights(): Record<string, NamedTensor> {
  const t = (shape: number[], k: number): NamedTensor => ({
    shape,
    data: Float32Array.from(
      { length: shape.reduce((a, b) => a * b, 1) },
      (_, i) => Math.sin(i + k),
    ),
  });
  return {
    "encoder.embed.weight": t([10, 4], 1),
    "encoder.layers.0.self_attn.q_proj.weight": t([4, 4], 2),
    "encoder.layers.0.self_attn.q_proj.bias": t([4], 3),
    "decoder.embed.weight": t([10, 4], 4),
    [LM_HEAD_WEIGHT]: t([10, 4], 4),
  };
}

function files(dir: string): string[] {
  return [...Deno.readDirSync(dir)].map((e) => e.name).sort();
}

async function rejectsWith(
  fn: () => Promise<unknown>,
  type: abstract new (...args: never[]) => Error,
  message: string,
) {
  await assert.rejects(fn, (err: unknown) => {
    assert.ok(err instanceof type, `expected ${type.name}, got ${err}`);
    assert.ok(
      (err as Error).message.includes(message),
      `"${(err as Error).message}" lacks "${message}"`,
    );
    assert.ok(!(err as Error).message.includes("\n"), "message must be one line");
    return true;
  });
}

Deno.test("runPath() names the CONTRACTS §7 files", () => {
  assert.equal(runPath("runs/a/", "model"), "runs/a/model.safetensors");
  assert.deepEqual(Object.values(RUN_FILES).sort(), [
    "config.json",
    "metrics.jsonl",
    "model.safetensors",
    "optimizer.safetensors",
    "samples.jsonl",
    "tokenizer.json",
    "trainer_state.json",
  ]);
});

Deno.test("saveConfig() and loadConfig() round-trip a validated config", async () => {
  await withRun(async (dir) => {
    const cfg = presetConfig("tiny", {
      vocab_size: 100,
      tie_embeddings: false,
      layer_scale_init: null,
    });
    await saveConfig(dir, cfg);
    assert.deepEqual(await loadConfig(dir), cfg);
    assert.deepEqual(files(dir), ["config.json"]);
    await assert.rejects(
      () => saveConfig(dir, { ...cfg, n_heads: 3 }),
      /config\.json: field "d_model" \(64\) must be divisible/,
    );
  });
});

Deno.test("loadConfig() names the file when it is missing, not JSON, or invalid", async () => {
  await withRun(async (dir) => {
    const path = `${dir}/config.json`;
    await rejectsWith(() => loadConfig(dir), Deno.errors.NotFound, `${path}: file is missing`);
    await Deno.mkdir(dir, { recursive: true });
    await Deno.writeTextFile(path, '{"d_model": ');
    await rejectsWith(() => loadConfig(dir), SyntaxError, `${path}: invalid JSON`);
    await Deno.writeTextFile(path, JSON.stringify({ ...DEFAULT_CONFIG, ffn_activation: "relu" }));
    await rejectsWith(() => loadConfig(dir), TypeError, `${path}: field "ffn_activation"`);
  });
});

Deno.test("saveModelWeights() omits the LM head when tied and writes F32 that loads back equal", async () => {
  await withRun(async (dir) => {
    const w = weights();
    await saveModelWeights(dir, w, { tieEmbeddings: true });
    const bytes = await Deno.readFile(runPath(dir, "model"));
    const file = parseSafetensors(bytes);
    assert.equal(file.metadata.format, "pt");
    assert.ok(!(LM_HEAD_WEIGHT in file.tensors));
    assert.ok(Object.values(file.tensors).every((t) => t.dtype === "F32"));
    const back = await loadModelWeights(dir);
    assert.deepEqual(
      Object.keys(back).sort(),
      Object.keys(w).filter((k) => k !== LM_HEAD_WEIGHT).sort(),
    );
    for (const [name, t] of Object.entries(back)) {
      assert.deepEqual(t.shape, w[name].shape, name);
      assert.deepEqual(t.data, w[name].data, name);
    }
    await saveModelWeights(dir, w, { tieEmbeddings: false, metadata: { step: "5" } });
    const untied = await loadModelWeights(dir);
    assert.deepEqual(untied[LM_HEAD_WEIGHT].data, w[LM_HEAD_WEIGHT].data);
    assert.deepEqual(files(dir), ["model.safetensors"]);
  });
});

Deno.test("saveModelWeights() refuses non-Float32Array data", async () => {
  await withRun(async (dir) => {
    const bad = { x: { shape: [2], data: new Float64Array(2) as unknown as Float32Array } };
    await assert.rejects(
      () => saveModelWeights(dir, bad, { tieEmbeddings: false }),
      /tensor "x" must hold a Float32Array/,
    );
  });
});

Deno.test("loadModelWeights() converts F16 and BF16 files to Float32Array and refuses integer tensors", async () => {
  await withRun(async (dir) => {
    await Deno.mkdir(dir, { recursive: true });
    const path = runPath(dir, "model");
    await Deno.writeFile(
      path,
      serializeSafetensors({
        a: { dtype: "F16", shape: [2], data: new Float32Array([0.5, -2]) },
        b: { dtype: "BF16", shape: [1], data: new Float32Array([3]) },
      }),
    );
    const w = await loadModelWeights(dir);
    assert.deepEqual(w.a.data, new Float32Array([0.5, -2]));
    assert.deepEqual(w.b.data, new Float32Array([3]));
    await Deno.writeFile(
      path,
      serializeSafetensors({ ids: { dtype: "I32", shape: [1], data: new Int32Array(1) } }),
    );
    await rejectsWith(
      () => loadModelWeights(dir),
      TypeError,
      `${path}: tensor "ids" has dtype I32`,
    );
  });
});

Deno.test("loadModelWeights() names the file when it is missing, truncated or corrupt", async () => {
  await withRun(async (dir) => {
    const path = runPath(dir, "model");
    await rejectsWith(
      () => loadModelWeights(dir),
      Deno.errors.NotFound,
      `${path}: file is missing`,
    );
    await saveModelWeights(dir, weights(), { tieEmbeddings: true });
    const bytes = await Deno.readFile(path);
    await Deno.writeFile(path, bytes.subarray(0, bytes.length - 3));
    await rejectsWith(
      () => loadModelWeights(dir),
      SafetensorsError,
      `${path}: invalid safetensors file: tensors need`,
    );
    await Deno.writeFile(path, new TextEncoder().encode("not a checkpoint at all"));
    await rejectsWith(
      () => loadModelWeights(dir),
      SafetensorsError,
      `${path}: invalid safetensors file: header length`,
    );
  });
});

Deno.test("saveOptimizerState() and loadOptimizerState() round-trip AdamW moments and the step", async () => {
  await withRun(async (dir) => {
    const w = weights();
    const expAvg = Object.fromEntries(
      Object.entries(w).map(([k, t]) => [k, { shape: t.shape, data: t.data.map((x) => x / 10) }]),
    );
    const expAvgSq = Object.fromEntries(
      Object.entries(w).map(([k, t]) => [k, { shape: t.shape, data: t.data.map((x) => x * x) }]),
    );
    await saveOptimizerState(dir, { step: 1234, expAvg, expAvgSq, metadata: { lr: "0.001" } });
    const file = parseSafetensors(await Deno.readFile(runPath(dir, "optimizer")));
    assert.equal(file.metadata.step, "1234");
    assert.ok("exp_avg.encoder.embed.weight" in file.tensors);
    assert.ok("exp_avg_sq.decoder.lm_head.weight" in file.tensors);
    const back = await loadOptimizerState(dir);
    assert.equal(back.step, 1234);
    assert.deepEqual(back.metadata, { lr: "0.001" });
    for (const name of Object.keys(w)) {
      assert.deepEqual(back.expAvg[name], expAvg[name], name);
      assert.deepEqual(back.expAvgSq[name], expAvgSq[name], name);
    }
  });
});

Deno.test("optimizer state: unpaired moments, a bad step or stray tensors are refused with the file named", async () => {
  await withRun(async (dir) => {
    const path = runPath(dir, "optimizer");
    const m = { p: { shape: [2], data: new Float32Array(2) } };
    await assert.rejects(
      () => saveOptimizerState(dir, { step: -1, expAvg: m, expAvgSq: m }),
      RangeError,
    );
    await assert.rejects(
      () => saveOptimizerState(dir, { step: 1, expAvg: m, expAvgSq: {} }),
      /must name the same parameters/,
    );
    await rejectsWith(
      () => loadOptimizerState(dir),
      Deno.errors.NotFound,
      `${path}: file is missing`,
    );
    await Deno.mkdir(dir, { recursive: true });
    const f32 = { dtype: "F32" as const, shape: [2], data: new Float32Array(2) };
    await Deno.writeFile(path, serializeSafetensors({ "exp_avg.p": f32 }, { step: "3" }));
    await rejectsWith(
      () => loadOptimizerState(dir),
      SyntaxError,
      `${path}: exp_avg_sq.p is missing`,
    );
    await Deno.writeFile(
      path,
      serializeSafetensors({ "exp_avg.p": f32, "exp_avg_sq.p": f32 }, { step: "x" }),
    );
    await rejectsWith(
      () => loadOptimizerState(dir),
      SyntaxError,
      `${path}: metadata "step" must be a non-negative integer`,
    );
    await Deno.writeFile(path, serializeSafetensors({ "momentum.p": f32 }, { step: "3" }));
    await rejectsWith(
      () => loadOptimizerState(dir),
      SyntaxError,
      `${path}: unexpected tensor "momentum.p"`,
    );
  });
});

Deno.test("saveTrainerState() and loadTrainerState() round-trip an open record", async () => {
  await withRun(async (dir) => {
    const state: TrainerState = {
      step: 120,
      epoch: 2,
      batch_in_epoch: 17,
      seed: 42,
      rng_states: { shuffle: [1, 2, 3, 4], dropout: [5, 6, 7, 8] },
      best_metric: 1.25,
      best_metric_name: "loss",
      best_step: 100,
      schedule: { warmup_steps: 10, total_steps: 1000 },
      custom: { anything: true },
    };
    await saveTrainerState(dir, state);
    assert.deepEqual(await loadTrainerState(dir), state);
  });
});

Deno.test("trainer state: missing or bad fields are refused with the file named", async () => {
  await withRun(async (dir) => {
    const path = runPath(dir, "trainerState");
    await assert.rejects(
      () => saveTrainerState(dir, { step: 1, epoch: 0, best_metric: NaN }),
      /"best_metric" must be a finite number or null/,
    );
    await rejectsWith(
      () => loadTrainerState(dir),
      Deno.errors.NotFound,
      `${path}: file is missing`,
    );
    await Deno.mkdir(dir, { recursive: true });
    await Deno.writeTextFile(path, '{"step": 1}');
    await rejectsWith(() => loadTrainerState(dir), TypeError, `${path}: field "epoch" is missing`);
    await Deno.writeTextFile(path, '{"step": 1.5, "epoch": 0}');
    await rejectsWith(
      () => loadTrainerState(dir),
      TypeError,
      `${path}: field "step" must be a non-negative integer`,
    );
    await Deno.writeTextFile(path, "[]");
    await rejectsWith(() => loadTrainerState(dir), TypeError, `${path}: expected a JSON object`);
    await Deno.writeTextFile(path, '{"step": 1, "epoch": 0');
    await rejectsWith(() => loadTrainerState(dir), SyntaxError, `${path}: invalid JSON`);
  });
});

Deno.test("appendJsonl() creates the file and appends one line per call; readJsonl() reads them back", async () => {
  await withRun(async (dir) => {
    await Deno.mkdir(dir, { recursive: true });
    const path = runPath(dir, "metrics");
    await appendJsonl(path, { step: 1, loss: 2.5 });
    await appendJsonl(path, { step: 2, loss: 2.25, note: "a\nb" });
    assert.equal(
      await Deno.readTextFile(path),
      '{"step":1,"loss":2.5}\n{"step":2,"loss":2.25,"note":"a\\nb"}\n',
    );
    assert.deepEqual(await readJsonl(path), [{ step: 1, loss: 2.5 }, {
      step: 2,
      loss: 2.25,
      note: "a\nb",
    }]);
    await Deno.writeTextFile(path, "{}\n\n{bad\n", { append: true });
    await rejectsWith(() => readJsonl(path), SyntaxError, `${path}:5: invalid JSON`);
  });
});

Deno.test("a full run folder holds exactly the §7 files and no temporary files", async () => {
  await withRun(async (dir) => {
    const cfg = presetConfig("tiny", { vocab_size: 10 });
    await saveConfig(dir, cfg);
    await Deno.writeTextFile(runPath(dir, "tokenizer"), "{}");
    await saveModelWeights(dir, weights(), { tieEmbeddings: cfg.tie_embeddings });
    const m = { p: { shape: [1], data: new Float32Array(1) } };
    await saveOptimizerState(dir, { step: 1, expAvg: m, expAvgSq: m });
    await saveTrainerState(dir, { step: 1, epoch: 0 });
    await appendJsonl(runPath(dir, "metrics"), { step: 1 });
    await appendJsonl(runPath(dir, "samples"), { step: 1, text: "x" });
    assert.deepEqual(files(dir), Object.values(RUN_FILES).sort());
  });
});
