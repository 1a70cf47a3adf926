import assert from "node:assert/strict";
import { GPU, NO_GPU } from "../tests/_gpu.ts";
import { CPU } from "../tensor/cpu_backend.ts";
import { presetConfig } from "../nn/config.ts";
import { benchTrain, matmulTuneTable, PROFILE_DETAIL_LINES } from "./train_bench.ts";
import { shapeKey } from "../ops/_matmul_variants.ts";

Deno.test({
  name:
    "benchTrain() with profile on WebGPU splits a step's GPU time per op and per kernel, shape and tile",
  ignore: NO_GPU || !GPU?.canProfile,
  fn: async () => {
    const line = await benchTrain(GPU!, {
      config: presetConfig("tiny", { vocab_size: 64 }),
      preset: "tiny",
      batchSize: 2,
      srcLen: 8,
      tgtLen: 8,
      steps: 1,
      warmup: 1,
      tune: "off",
      tuneCache: null,
      profile: true,
      stepTimes: true,
    });
    // one extra step with a wait after it per timed step
    assert.equal(line.step_times_ms?.length, 1);
    assert.ok(line.step_times_ms![0] > 0);
    const ms = line.kernel_ms!, detail = line.kernel_detail!;
    assert.ok(ms.matmul_bias > 0 && ms.attention > 0, JSON.stringify(ms));
    const keys = Object.keys(detail);
    assert.ok(keys.length > 0 && keys.length <= PROFILE_DETAIL_LINES);
    // the costliest first, each [ms, dispatches], named op#kernel [shapes]…
    const vals = Object.values(detail);
    for (let i = 1; i < vals.length; i++) assert.ok(vals[i - 1][0] >= vals[i][0]);
    for (const k of keys) assert.match(k, /^\w+#\d+ \[[\d,]*\]/);
    assert.ok(keys.some((k) => / t\d+x\d+x\d+ \d+x\d+d?$/.test(k)), keys.join("\n"));
    // the per-kernel split never exceeds the op's total
    for (const [k, [t]] of Object.entries(detail)) {
      assert.ok(t <= ms[k.slice(0, k.indexOf("#"))] + 1e-3, k);
    }
  },
});

Deno.test("matmulTuneTable() lists each measured shape's candidates (null where they failed) and choice", () => {
  const shape = { M: 64, N: 32, K: 16, transA: false, transB: true };
  const table = matmulTuneTable([
    {
      shape,
      variant: "t32x32k16_4x4p",
      tuned: true,
      timing: "timestamp",
      ms: { t32x32k16_4x4: 0.123456, t32x32k16_4x4p: 0.1, t64x64k8_4x4d: Infinity },
      rejected: ["t64x64k8_4x4d"],
      runoff: {},
    },
    // a weight gradient whose K the chosen variant splits: the split tuning comes along
    {
      shape: { M: 512, N: 512, K: 8192, transA: true },
      variant: "t128x128k16_8x8",
      tuned: true,
      timing: "timestamp",
      ms: { t128x128k16_8x8: 0.15 },
      rejected: [],
      runoff: {},
      split: { rule: 16, chosen: 8, ms: { S16: 0.15, S8: 0.131234567, S32: Infinity } },
    },
    // not measured (a software adapter's heuristic choice): no line
    {
      ...{ shape, variant: "t32x32k16_4x4", tuned: false, timing: "", ms: {} },
      rejected: [],
      runoff: {},
    },
  ]);
  assert.deepEqual(table, [{
    shape: shapeKey(shape),
    chosen: "t32x32k16_4x4p",
    ms: { t32x32k16_4x4: 0.1235, t32x32k16_4x4p: 0.1, t64x64k8_4x4d: null },
  }, {
    shape: "512x512x8192/1/TN",
    chosen: "t128x128k16_8x8",
    ms: { t128x128k16_8x8: 0.15 },
    split: { rule: 16, chosen: 8, ms: { S16: 0.15, S8: 0.1312, S32: null } },
  }]);
});

/** A tiny CPU benchmark: 1 warm-up step, `steps` timed ones. */
function tinyCpu(steps: number) {
  const config = presetConfig("tiny", { vocab_size: 64 });
  return { config, batchSize: 2, srcLen: 6, tgtLen: 6, steps, warmup: 1 };
}

Deno.test("benchTrain() with stepTimes times each extra step on its own (CPU); without, no list", async () => {
  const opts = tinyCpu(3);
  const line = await benchTrain(CPU, { ...opts, stepTimes: true });
  assert.equal(line.step_times_ms?.length, 3);
  assert.ok(line.step_times_ms!.every((t) => t > 0 && Number.isFinite(t)));
  assert.equal((await benchTrain(CPU, opts)).step_times_ms, undefined);
});

Deno.test("benchTrain() warms up for warmupMs after its fixed steps; by default not on the CPU", async () => {
  const opts = tinyCpu(1);
  const plain = await benchTrain(CPU, opts);
  assert.equal(plain.warmup_steps, 1);
  assert.equal(plain.warmup_ms, 0);
  const t0 = performance.now();
  const warm = await benchTrain(CPU, { ...opts, warmupMs: 150 });
  assert.ok(performance.now() - t0 >= 150);
  assert.equal(warm.warmup_ms, 150);
  assert.ok(warm.warmup_steps > 1, `${warm.warmup_steps}`);
});
