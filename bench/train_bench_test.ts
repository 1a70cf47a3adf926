import assert from "node:assert/strict";
import { GPU, NO_GPU } from "../tests/_gpu.ts";
import { CPU } from "../tensor/cpu_backend.ts";
import { presetConfig } from "../nn/config.ts";
import {
  benchTrain,
  matmulShare,
  matmulTuneTable,
  parityTflops,
  PROFILE_DETAIL_LINES,
} from "./train_bench.ts";
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
    // by default the backward reads the GELU activations kept from the forward: no second GELU
    // pass in the weight gradient (geluWeightGrad), a Linear's (linearGrad) instead
    assert.equal(line.gelu_stage, "kept");
    assert.equal(line.attention_probs, "kept");
    assert.ok(!("geluWeightGrad" in ms) && ms.linearGrad > 0, JSON.stringify(ms));
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
    // the products: TFLOP/s of the listed ones (matmuls, not LayerNorm), and all of them together
    const tf = line.kernel_tflops!;
    assert.ok(Object.keys(tf).some((k) => k.startsWith("matmul_bias#0")), JSON.stringify(tf));
    for (const [k, v] of Object.entries(tf)) assert.ok(k in detail && v > 0, k);
    assert.ok(!Object.keys(tf).some((k) => k.startsWith("residualLayerNorm")));
    const mp = line.matmul_profile!;
    assert.ok(mp.flops > 0 && mp.ms > 0 && mp.other_ms > 0, JSON.stringify(mp));
    const total = Object.values(ms).reduce((x, y) => x + y, 0);
    assert.ok(
      Math.abs(mp.ms + mp.other_ms - total) < 1e-2,
      `${mp.ms} + ${mp.other_ms} vs ${total}`,
    );
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

Deno.test("matmulShare() sums the products of a profile; parityTflops() asks what they need for a target step", () => {
  const entries = [
    { ms: 2, dispatches: 3, flops: 60e9 },
    { ms: 1, dispatches: 1 }, // not a product
    { ms: 4, dispatches: 2, flops: 120e9 },
    { ms: 0.5, dispatches: 1 },
  ];
  const m = matmulShare(entries)!;
  assert.deepEqual(m, { ms: 6, flops: 180e9, tflops: 30, other_ms: 1.5 });
  assert.equal(matmulShare([{ ms: 1, dispatches: 1 }]), undefined);
  // a 6 ms target leaves the products 4.5 ms: 40 TFLOP/s
  assert.deepEqual(parityTflops({ matmul_profile: m }, 6), { parity_matmul_tflops: 40 });
  assert.deepEqual(parityTflops({ matmul_profile: m }, 1.5), { parity_matmul_tflops: null });
  assert.deepEqual(parityTflops({}, 6), {});
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
