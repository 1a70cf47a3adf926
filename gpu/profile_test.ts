/**
 * Kernel timing with timestamp queries (software adapters have them too).
 */
import assert from "node:assert/strict";
import { GPU, NO_GPU } from "../tests/_gpu.ts";
import { scopeAsync, tensor } from "../tensor/tensor.ts";
import { matmul, scale, softmax } from "../ops/mod.ts";
import { msPerCall, useMatmulSplitK, useMatmulVariant, warmCalls } from "../ops/matmul.ts";

Deno.test({
  name: "beginProfile()/endProfile() time every dispatch per op name, and results stay correct",
  ignore: NO_GPU || !GPU?.canProfile,
  fn: async () => {
    const g = GPU!;
    await scopeAsync(async () => {
      const a = tensor(Float32Array.from({ length: 64 * 32 }, (_, i) => (i % 7) - 3), [64, 32], {
        backend: g,
      });
      const b = tensor(Float32Array.from({ length: 32 * 16 }, (_, i) => (i % 5) - 2), [32, 16], {
        backend: g,
      });
      const plain = await softmax(scale(matmul(a, b), 0.1)).data();
      assert.ok(g.beginProfile());
      const y = softmax(scale(matmul(a, b), 0.1));
      const z = softmax(scale(matmul(a, b), 0.1));
      const prof = await g.endProfile();
      assert.deepEqual(Object.keys(prof).sort(), ["matmul", "scale", "softmax"]);
      for (const e of Object.values(prof)) {
        assert.equal(e.dispatches, 2);
        assert.ok(e.ms >= 0 && Number.isFinite(e.ms));
      }
      // finer: by op, kernel of the plan, input shapes and matmul tile
      const details = g.profileDetails();
      const mm = Object.keys(details).filter((k) => k.startsWith("matmul#0 [64,32]·[32,16] t"));
      assert.equal(mm.length, 1, JSON.stringify(Object.keys(details)));
      assert.match(mm[0], / t\d+x\d+x\d+ \d+x\d+d?$/);
      assert.equal(details[mm[0]].dispatches, 2);
      assert.equal(details[mm[0]].flops, 2 * (2 * 64 * 16 * 32)); // two products' 2·M·N·K
      assert.equal(details["scale#0 [64,16]"].dispatches, 2);
      assert.equal(details["scale#0 [64,16]"].flops, undefined);
      const total = (r: Record<string, { ms: number }>) =>
        Object.values(r).reduce((x, e) => x + e.ms, 0);
      assert.ok(Math.abs(total(details) - total(prof)) < 1e-9);
      // one by one, in recording order
      const samples = g.profileSamples();
      assert.deepEqual(samples.map((e) => e.name), [
        ...Array(2).fill(["matmul", "scale", "softmax"]).flat(),
      ]);
      assert.ok(Math.abs(samples.reduce((x, e) => x + e.ms, 0) - total(prof)) < 1e-9);
      assert.deepEqual(await y.data(), plain);
      assert.deepEqual(await z.data(), plain);
      await assert.rejects(() => g.endProfile(), /without beginProfile/);
    });
  },
});

Deno.test({
  name:
    "profileDetails() names a padded tile with p after d, a flat one with f, and counts split K's FLOPs once",
  ignore: NO_GPU || !GPU?.canProfile,
  fn: async () => {
    const g = GPU!;
    useMatmulVariant("t16x16k8_4x4dp");
    try {
      await scopeAsync(async () => {
        const a = tensor(new Float32Array(64 * 32).fill(1), [64, 32], { backend: g });
        const b = tensor(new Float32Array(32 * 16).fill(1), [32, 16], { backend: g });
        assert.ok(g.beginProfile());
        matmul(a, b);
        await g.endProfile();
        const keys = Object.keys(g.profileDetails());
        assert.ok(keys.includes("matmul#0 [64,32]·[32,16] t16x16x8 4x4dp"), keys.join(" | "));
        useMatmulVariant("t16x16k8_4x4df");
        useMatmulSplitK(2); // the product in two K ranges, then their sum (no FLOPs of its own)
        assert.ok(g.beginProfile());
        matmul(a, b);
        await g.endProfile();
        const d = g.profileDetails();
        assert.equal(d["matmul#0 [64,32]·[32,16] t16x16x8 4x4df"]?.flops, 2 * 64 * 16 * 32);
        assert.equal(d["matmul#1 [64,32]·[32,16]"]?.flops, undefined, Object.keys(d).join(" | "));
      });
    } finally {
      useMatmulSplitK(null);
      useMatmulVariant(null);
    }
  },
});

Deno.test({
  name:
    "msPerCall() is the median of the calls' GPU times, split-K calls summed, after untimed ones",
  ignore: NO_GPU || !GPU?.canProfile,
  fn: async () => {
    const g = GPU!;
    const a = tensor(new Float32Array(8 * 96).fill(0.5), [8, 96], { backend: g });
    const b = tensor(new Float32Array(96 * 8).fill(0.25), [96, 8], { backend: g });
    let calls = 0;
    const run = () => (calls++, matmul(a, b).dispose());
    try {
      useMatmulSplitK(3); // two dispatches a call: the partial products, their sum
      const r = await msPerCall(g, run, 5, "matmul", 4);
      assert.equal(calls, 9); // 4 untimed, 5 timed
      assert.equal(r.timing, "timestamp");
      const s = g.profileSamples();
      assert.equal(s.length, 10); // only the timed calls
      const per = [0, 1, 2, 3, 4].map((c) => s[2 * c].ms + s[2 * c + 1].ms).sort((x, y) => x - y);
      assert.equal(r.ms, per[2]);
      assert.ok(Number.isNaN((await msPerCall(g, run, 2, "softmax")).ms)); // no such dispatch
    } finally {
      useMatmulSplitK(null);
      a.dispose();
      b.dispose();
    }
    assert.equal(warmCalls(0.5), 50);
    assert.equal(warmCalls(100), 1);
    assert.equal(warmCalls(0), 400);
  },
});
