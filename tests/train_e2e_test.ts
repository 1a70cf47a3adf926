/**
 * End to end through the library: train a very small model on part of the
 * built-in corpus, interrupt it, resume it, and check that the final weights
 * equal an uninterrupted run's bit for bit (CPU backend); then evaluate and
 * generate from the run folder.
 */
import assert from "node:assert/strict";
import { train } from "../train/trainer.ts";
import { CPU } from "../tensor/cpu_backend.ts";
import { readSafetensors } from "../train/safetensors.ts";
import { readJsonl, runPath } from "../train/run_folder.ts";
import { loadRun } from "../train/load_model.ts";
import { generateText } from "../train/generate.ts";
import { GPU, NO_GPU } from "./_gpu.ts";
import { smallData } from "./_small_run.ts";
import { clearMatmulTuning } from "../ops/matmul.ts";

function baseOptions(d: { train: string; valid: string; config: string }, out: string) {
  return {
    data: d.train,
    valid: d.valid,
    out,
    configFile: d.config,
    vocabSize: 120,
    maxLength: 32,
    epochs: 2,
    batchSize: 16,
    lr: 3e-3,
    seed: 3,
    bleuLimit: 8,
    sampleCount: 2,
    quiet: true,
    backend: CPU,
  };
}

Deno.test("train() resumed after an interruption ends with the same weights as an uninterrupted run", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const d = await smallData(dir);
    const full = await train(baseOptions(d, `${dir}/full`));
    assert.equal(full.stopped, "completed");
    assert.equal(full.steps, 12);

    const ctl = new AbortController();
    const part = await train({
      ...baseOptions(d, `${dir}/part`),
      signal: ctl.signal,
      onStep: (s) => {
        if (s === 4) ctl.abort();
      },
    });
    assert.equal(part.stopped, "interrupted");
    assert.equal(part.steps, 4);
    const resumed = await train({ ...baseOptions(d, `${dir}/part`), resume: true });
    assert.equal(resumed.steps, 12);

    const a = await readSafetensors(runPath(`${dir}/full`, "model"));
    const b = await readSafetensors(runPath(`${dir}/part`, "model"));
    assert.deepEqual(Object.keys(a.tensors).sort(), Object.keys(b.tensors).sort());
    for (const [name, t] of Object.entries(a.tensors)) {
      assert.deepEqual(b.tensors[name].data, t.data, `${name} differs after resume`);
    }
    const oa = await readSafetensors(runPath(`${dir}/full`, "optimizer"));
    const ob = await readSafetensors(runPath(`${dir}/part`, "optimizer"));
    for (const [name, t] of Object.entries(oa.tensors)) {
      assert.deepEqual(ob.tensors[name].data, t.data, name);
    }

    // the run folder holds what CONTRACTS §7 lists, plus the report and the best model
    for (
      const f of [
        "config.json",
        "tokenizer.json",
        "model.safetensors",
        "optimizer.safetensors",
        "trainer_state.json",
        "metrics.jsonl",
        "samples.jsonl",
        "report.html",
        "best/model.safetensors",
      ]
    ) {
      await Deno.stat(`${dir}/full/${f}`);
    }
    const metrics = (await readJsonl(runPath(`${dir}/full`, "metrics"))) as Record<
      string,
      number
    >[];
    assert.equal(metrics.length, 2);
    for (const m of metrics) {
      for (
        const k of [
          "train_loss",
          "valid_loss",
          "valid_accuracy",
          "valid_top5_accuracy",
          "valid_perplexity",
        ]
      ) {
        assert.ok(Number.isFinite(m[k]), `${k} is finite`);
      }
      assert.ok(m.valid_bleu_corpus >= 0 && m.valid_bleu_corpus <= 1);
    }
    assert.ok(metrics[1].train_loss < metrics[0].train_loss, "training loss decreases");
    const report = await Deno.readTextFile(`${dir}/full/report.html`);
    assert.match(report, /<svg/);

    // the run folder loads and generates
    const run = await loadRun(`${dir}/full`, { backend: CPU });
    const res = await generateText(run.model, run.tokenizer!, ["12 Mart 2020"], {
      maxNewTokens: 8,
    });
    assert.equal(res.sequences.length, 1);
    assert.equal(typeof res.sequences[0][0].text, "string");
    run.model.dispose();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("train() refuses to overwrite a run and to resume nothing", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const d = await smallData(dir);
    await assert.rejects(
      () => train({ ...baseOptions(d, `${dir}/none`), resume: true }),
      /nothing to resume/,
    );
    await train({ ...baseOptions(d, `${dir}/r`), epochs: 1, bleuLimit: 0 });
    await assert.rejects(
      () => train({ ...baseOptions(d, `${dir}/r`), epochs: 1 }),
      /already holds a run/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a non-finite loss stops training with a clear error and leaves the last checkpoint intact", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const d = await smallData(dir);
    await train({ ...baseOptions(d, `${dir}/r`), epochs: 3, maxSteps: 6, bleuLimit: 0 });
    const before = await Deno.readFile(runPath(`${dir}/r`, "model"));
    const state = await Deno.readTextFile(runPath(`${dir}/r`, "trainerState"));
    await assert.rejects(
      () =>
        train({ ...baseOptions(d, `${dir}/r`), epochs: 3, lr: 1e30, resume: true, logEvery: 1 }),
      (err: Error) =>
        err.name === "NonFiniteLossError" && /non-finite at step \d+/.test(err.message),
    );
    assert.deepEqual(await Deno.readFile(runPath(`${dir}/r`, "model")), before);
    assert.equal(await Deno.readTextFile(runPath(`${dir}/r`, "trainerState")), state);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("--init-from starts from a run's weights; early stopping ends a run that stops improving", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const d = await smallData(dir);
    await train({ ...baseOptions(d, `${dir}/a`), epochs: 1, bleuLimit: 0 });
    // lr 0: the weights never change, so validation never improves after the first epoch
    const s = await train({
      ...baseOptions(d, `${dir}/b`),
      initFrom: `${dir}/a`,
      lr: 0,
      epochs: 6,
      patience: 2,
      bleuLimit: 0,
    });
    assert.equal(s.stopped, "early_stopping");
    assert.equal(s.epochs, 3);
    const a = await readSafetensors(runPath(`${dir}/a`, "model"));
    const b = await readSafetensors(runPath(`${dir}/b`, "model"));
    for (const [name, t] of Object.entries(a.tensors)) {
      assert.deepEqual(b.tensors[name].data, t.data, name);
    }
    assert.equal(
      await Deno.readTextFile(runPath(`${dir}/b`, "tokenizer")),
      await Deno.readTextFile(runPath(`${dir}/a`, "tokenizer")),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("gradient accumulation over 2 micro-batches of 8 equals one batch of 16 (no dropout)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const d = await smallData(dir);
    const common = { epochs: 1, bleuLimit: 0, dropout: 0, shuffle: false, sampleInterval: 0 };
    await train({ ...baseOptions(d, `${dir}/big`), ...common, batchSize: 16 });
    await train({ ...baseOptions(d, `${dir}/acc`), ...common, batchSize: 8, gradAccum: 2 });
    const a = await readSafetensors(runPath(`${dir}/big`, "model"));
    const b = await readSafetensors(runPath(`${dir}/acc`, "model"));
    for (const [name, t] of Object.entries(a.tensors)) {
      // k_proj biases have a mathematically zero gradient (softmax shift invariance); AdamW
      // normalises their round-off, so they move by ±lr either way: nothing to compare
      if (name.endsWith("k_proj.bias")) continue;
      const x = t.data as Float32Array, y = b.tensors[name].data as Float32Array;
      let worst = 0, scale = 1e-6;
      for (let i = 0; i < x.length; i++) {
        worst = Math.max(worst, Math.abs(x[i] - y[i]));
        scale = Math.max(scale, Math.abs(x[i]));
      }
      assert.ok(worst <= 2e-4 * scale, `${name}: ${worst}`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name:
    "train() on WebGPU learns, resumes after an interruption to the same weights, and evaluates",
  ignore: NO_GPU,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    try {
      const d = await smallData(dir);
      const gpuOpts = (out: string) => ({
        ...baseOptions(d, out),
        backend: GPU!,
        epochs: 1,
        maxSteps: 4,
        bleuLimit: 4,
        sampleCount: 1,
      });
      const full = await train(gpuOpts(`${dir}/full`));
      assert.equal(full.steps, 4);
      assert.ok(Number.isFinite(full.valid!.loss));
      const ctl = new AbortController();
      await train({
        ...gpuOpts(`${dir}/part`),
        signal: ctl.signal,
        onStep: (s) => s === 2 && ctl.abort(),
      });
      await train({ ...gpuOpts(`${dir}/part`), resume: true });
      const a = await readSafetensors(runPath(`${dir}/full`, "model"));
      const b = await readSafetensors(runPath(`${dir}/part`, "model"));
      for (const [name, t] of Object.entries(a.tensors)) {
        assert.deepEqual(b.tensors[name].data, t.data, `${name} differs after resume on WebGPU`);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "train() with --tune on logs the tuning and ends with the same weights as --tune off",
  ignore: NO_GPU,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    try {
      const d = await smallData(dir);
      const logs: string[] = [];
      const cache = `${dir}/tuning.json`;
      const run = (out: string, tune: "on" | "off") =>
        train({
          ...baseOptions(d, `${dir}/${out}`),
          backend: GPU!,
          epochs: 1,
          maxSteps: 3,
          bleuLimit: 0,
          sampleInterval: 0,
          quiet: false,
          log: (s: string) => logs.push(s),
          tune,
          tuneVariants: ["t32x32k16_4x4", "t64x64k8_4x4d"],
          // the row kernels only: tiled ones take minutes to compile on GL llvmpipe, and their
          // sums differ by rounding (the weights are compared below)
          tuneAttentionKernels: ["rows"],
          tuneCache: cache,
        });
      await run("off", "off");
      assert.ok(!logs.some((l) => l.startsWith("kernels: tuned")), "tune off tuned");
      await assert.rejects(() => Deno.stat(cache), Deno.errors.NotFound);
      await run("on", "on");
      // the pause is announced before it starts, then summed up
      const begin = logs.findIndex((l) =>
        /^kernels: timing the candidate kernels of [1-9]\d* matmul shapes on this adapter \(once: the choices are cached; --tune off skips this\)$/
          .test(l)
      );
      const attention = logs.findIndex((l) =>
        /^kernels: timing the attention kernels of [1-9]\d* geometries$/.test(l)
      );
      const done = logs.findIndex((l) => l.startsWith("kernels: tuned "));
      assert.ok(begin >= 0 && begin < attention && attention < done, logs.join("\n"));
      assert.ok(
        logs.some((l) =>
          /^kernels: tuned [1-9]\d* matmul shapes and [1-9]\d* attention geometries in [\d.]+ s/
            .test(l)
        ),
        logs.join("\n"),
      );
      assert.ok(logs.includes(`kernels: tuned choices saved to ${cache}`), logs.join("\n"));
      // the cache keeps the attention choices beside the matmul ones
      const saved = JSON.parse(await Deno.readTextFile(cache));
      const keys = Object.values(saved.adapters as Record<string, Record<string, string>>)
        .flatMap((t) => Object.keys(t));
      assert.ok(keys.some((k) => k.startsWith("attention|fwd|")), keys.join(", "));
      assert.ok(keys.some((k) => k.startsWith("attention|bwd|")), keys.join(", "));
      // a later run on the same adapter takes the saved choices and measures nothing
      clearMatmulTuning();
      const before = logs.length;
      await run("again", "on");
      const later = logs.slice(before);
      assert.ok(
        later.some((l) => /^kernels: [1-9]\d* tuned choices for this adapter from /.test(l)),
        later.join("\n"),
      );
      assert.ok(!later.some((l) => l.startsWith("kernels: tuned ")), later.join("\n"));
      assert.ok(!later.some((l) => l.startsWith("kernels: timing ")), later.join("\n"));
      const a = await readSafetensors(runPath(`${dir}/off`, "model"));
      const b = await readSafetensors(runPath(`${dir}/on`, "model"));
      for (const [name, t] of Object.entries(a.tensors)) {
        assert.deepEqual(b.tensors[name].data, t.data, `${name} differs with tuning`);
      }
    } finally {
      clearMatmulTuning();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("train() fetches a Hub tokenizer (local server on 127.0.0.1) when the network is allowed", async () => {
  const dir = await Deno.makeTempDir();
  const tokJson = await Deno.readTextFile(
    new URL("./testdata/tokenizer/trained.json", import.meta.url),
  );
  const seen: string[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    const path = new URL(req.url).pathname;
    seen.push(path);
    return path === "/acme/tok/resolve/main/tokenizer.json"
      ? new Response(tokJson)
      : new Response("not found", { status: 404 });
  });
  try {
    const d = await smallData(dir);
    const endpoint = `http://127.0.0.1:${server.addr.port}`;
    const s = await train({
      ...baseOptions(d, `${dir}/r`),
      tokenizer: "acme/tok",
      hub: { endpoint, cacheDir: `${dir}/cache` },
      maxSteps: 1,
      epochs: 1,
      bleuLimit: 0,
    });
    assert.equal(s.steps, 1);
    assert.ok(seen.includes("/acme/tok/resolve/main/tokenizer.json"));
    assert.equal(
      JSON.parse(await Deno.readTextFile(runPath(`${dir}/r`, "tokenizer"))).model.type,
      JSON.parse(tokJson).model.type,
    );
    await assert.rejects(
      () =>
        train({
          ...baseOptions(d, `${dir}/r2`),
          tokenizer: "acme/missing",
          hub: { endpoint, cacheDir: `${dir}/cache` },
        }),
      /acme\/missing/,
    );
  } finally {
    await server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});
