/**
 * Mixed precision (`precision: "f16"`) through the trainer, the CLI and the
 * Linear layer: a tiny CPU run end to end, the one-line error on an adapter
 * without shader-f16, and `autocast` against a float64 reference.
 */
import assert from "node:assert/strict";
import "../ops/mod.ts";
import { train, type TrainSummary } from "../train/trainer.ts";
import { CPU } from "../tensor/cpu_backend.ts";
import { scope, tensor } from "../tensor/tensor.ts";
import { loadTrainerState } from "../train/run_folder.ts";
import { autocast, autocastPrecision, Linear } from "../nn/layers.ts";
import { initContext } from "../nn/module.ts";
import { sum } from "../ops/mod.ts";
import { matmulF64, roundF16 } from "./_f16_reference.ts";
import type { MatmulF16Accumulate } from "../ops/matmul_f16.ts";
import { smallData } from "./_small_run.ts";

const ROOT = new URL("..", import.meta.url).pathname;

async function tinyRun(
  dir: string,
  precision: "f32" | "f16",
  log?: (s: string) => void,
  f16Accumulate: MatmulF16Accumulate = "f32",
) {
  const { train: data, valid, config } = await smallData(dir, { dropout: 0, drop_path: 0 });
  return await train({
    data,
    valid,
    out: `${dir}/run_${precision}_${f16Accumulate.replace("/", "g")}`,
    configFile: config,
    vocabSize: 120,
    maxLength: 32,
    epochs: 2,
    batchSize: 16,
    lr: 3e-3,
    seed: 3,
    bleuLimit: 0,
    sampleInterval: 0,
    quiet: !log,
    log,
    backend: CPU,
    precision,
    f16Accumulate,
  });
}

Deno.test("train() with precision f16 on the CPU ends within 2% of the f32 run and saves its scaler", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const lines: string[] = [];
    const f16: TrainSummary = await tinyRun(dir, "f16", (s) => lines.push(s));
    const f32: TrainSummary = await tinyRun(dir, "f32");
    assert.ok(lines.some((l) => /precision f16 on the CPU: emulates f16 rounding/.test(l)));
    const a = f16.valid!.loss, b = f32.valid!.loss;
    assert.ok(Number.isFinite(a) && Math.abs(a - b) <= 0.02 * b, `valid loss f16 ${a} vs f32 ${b}`);
    const st = await loadTrainerState(f16.out);
    assert.equal((st.options as Record<string, unknown>).precision, "f16");
    const gs = st.grad_scaler as { scale: number; skippedSteps: number };
    // 2^16 at the start, halved once per skipped step, no growth in 12 steps
    assert.equal(gs.scale, 2 ** 16 / 2 ** gs.skippedSteps);
    assert.equal(
      ((await loadTrainerState(f32.out)).options as Record<string, unknown>).precision,
      "f32",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("train() with f16 accumulation (groups of 16 and 64) ends within 2% of the f32 run and records the mode", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const f32: TrainSummary = await tinyRun(dir, "f32");
    const b = f32.valid!.loss;
    for (const mode of ["f16", "f16/64"] as const) {
      const acc: TrainSummary = await tinyRun(dir, "f16", undefined, mode);
      const a = acc.valid!.loss;
      assert.ok(Number.isFinite(a) && Math.abs(a - b) <= 0.02 * b, `${mode} ${a} vs f32 ${b}`);
      const st = await loadTrainerState(acc.out);
      assert.equal((st.options as Record<string, unknown>).f16_accumulate, mode);
    }
    await assert.rejects(
      () => tinyRun(dir, "f32", undefined, "f16"),
      (e: Error) => e instanceof RangeError && /needs precision f16/.test(e.message),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("autocast('f16') makes Linear multiply f16-rounded operands, accumulate in f32, add the bias in f32", async () => {
  const lin = new Linear(initContext(1, CPU), 6, 5);
  const params = new Map(lin.namedParameters());
  const weight = params.get("weight")!;
  const b = tensor([0.1, -0.2, 0.3, 1e-4, 5], [5]);
  params.get("bias")!.shareStorageOf(b);
  const x = tensor(Array.from({ length: 18 }, (_, i) => Math.sin(i) * 3), [3, 6]);
  const y32 = await lin.forward(x).toArray();
  assert.equal(autocastPrecision(), "f32");
  const yh = autocast("f16", () => {
    assert.equal(autocastPrecision(), "f16");
    return lin.forward(x);
  });
  assert.equal(autocastPrecision(), "f32");
  assert.equal(yh.dtype, "f32");
  const xr = (await x.toArray()).map(roundF16);
  const wr = (await weight.toArray()).map(roundF16);
  const ref = matmulF64(xr, wr, 3, 6, 5, false, true);
  const got = await yh.toArray(), bias = await b.toArray();
  ref.forEach((r, i) => {
    const want = r + bias[i % 5];
    assert.ok(Math.abs(got[i] - want) <= 1e-5 * Math.max(1, Math.abs(want)), `y[${i}]`);
  });
  // it differs from the f32 layer (the rounding is real) but only by f16 rounding
  assert.ok(got.some((v, i) => v !== y32[i]));
  got.forEach((v, i) => assert.ok(Math.abs(v - y32[i]) <= 2e-2 * Math.max(1, Math.abs(y32[i]))));
  // gradients reach the f32 master weight as f32
  scope(() => autocast("f16", () => sum(lin.forward(x))).backward());
  assert.equal(weight.grad!.dtype, "f32");
});

async function webseq(args: string[], env: Record<string, string>) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--quiet",
      "--allow-read",
      "--allow-write=/tmp",
      "--allow-env",
      `${ROOT}cli.ts`,
      ...args,
    ],
    cwd: ROOT,
    env: { XDG_RUNTIME_DIR: "/tmp", NO_COLOR: "1", ...env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: out.code, stderr: new TextDecoder().decode(out.stderr) };
}

Deno.test("train --precision f16 on an adapter without shader-f16 fails in one line naming the adapter", async () => {
  // Mesa's GL llvmpipe has no shader-f16
  const r = await webseq(
    ["train", "--device", "webgpu", "--precision", "f16", "--out", "/tmp/webseq_f16_never"],
    { DENO_WEBGPU_BACKEND: "gl" },
  );
  if (/--device webgpu: /.test(r.stderr) && Deno.env.get("CI") !== "true") {
    console.warn(`SKIPPED: no GL WebGPU adapter here (${r.stderr.trim()})`);
    return;
  }
  const lines = r.stderr.trim().split("\n");
  assert.equal(r.code, 1, r.stderr);
  assert.equal(lines.length, 1, r.stderr);
  assert.match(
    lines[0],
    /^webseq train: error: --precision f16 needs the WebGPU feature shader-f16, which the adapter .+ lacks/,
  );
  const bad = await webseq(["train", "--precision", "f8"], {});
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--precision must be f32 or f16/);
});

Deno.test("train() --resume continues with the saved precision, accumulation and batch; a different one is refused", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const { train: data, valid, config } = await smallData(dir, { dropout: 0, drop_path: 0 });
    const base = {
      data,
      valid,
      out: `${dir}/run`,
      configFile: config,
      vocabSize: 120,
      maxLength: 32,
      lr: 3e-3,
      seed: 3,
      bleuLimit: 0,
      sampleInterval: 0,
      quiet: true,
      backend: CPU,
    };
    const first = await train({
      ...base,
      epochs: 1,
      batchSize: 16,
      precision: "f16",
      f16Accumulate: "f16",
    });
    // left out: the run's own settings (not f32 and batch 32, the defaults); the model's
    // config and tokenizer are the run's
    const { configFile: _c, vocabSize: _v, ...again } = base;
    const resumed = await train({ ...again, epochs: 2, resume: true });
    assert.ok(resumed.steps > first.steps, `${resumed.steps} steps after ${first.steps}`);
    const st = await loadTrainerState(`${dir}/run`);
    const options = st.options as Record<string, unknown>;
    assert.deepEqual(
      [options.precision, options.f16_accumulate, options.batch_size],
      ["f16", "f16", 16],
    );
    assert.ok(st.grad_scaler !== undefined);
    // the same value again is fine; a different one is refused before anything changes
    await train({ ...again, epochs: 2, resume: true, precision: "f16", batchSize: 16 });
    await assert.rejects(
      () => train({ ...again, epochs: 3, resume: true, precision: "f32" }),
      /run was trained with --precision f16, not --precision f32: leave --precision out to resume it as it was/,
    );
    await assert.rejects(
      () => train({ ...again, epochs: 3, resume: true, batchSize: 8 }),
      /trained with --batch-size 16, not --batch-size 8/,
    );
    assert.deepEqual(await loadTrainerState(`${dir}/run`), st);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
