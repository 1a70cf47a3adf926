import assert from "node:assert/strict";
import { dropout, dropoutKeeps, mul, sum } from "./mod.ts";
import { CPU } from "../tensor/cpu_backend.ts";
import type { Backend } from "../tensor/types.ts";
import { ones, scopeAsync, tensor } from "../tensor/tensor.ts";
import { hashU32, hashUniform } from "../tensor/rng.ts";
import { GPU, NO_GPU } from "../tests/_gpu.ts";

const N = 100_000;

async function maskOf(backend: Backend, p: number, seed: number, n = N): Promise<Float32Array> {
  return await scopeAsync(async () => {
    return (await dropout(ones([n], { backend }), p, seed).data()) as Float32Array;
  });
}

Deno.test("dropout() keeps exactly the elements where hashUniform(seed, i) >= p, scaled by 1/(1-p)", async () => {
  for (const [p, seed] of [[0.1, 42], [0.5, 7], [0.3, 0xdeadbeef]]) {
    const y = await maskOf(CPU, p, seed);
    const scale = Math.fround(1 / (1 - p));
    let kept = 0;
    for (let i = 0; i < N; i++) {
      const keep = hashUniform(seed, i) >= p;
      assert.equal(y[i], keep ? scale : 0, `p=${p} seed=${seed} element ${i}`);
      assert.equal(dropoutKeeps(p, seed, i), keep);
      if (keep) kept++;
    }
    assert.ok(Math.abs(kept / N - (1 - p)) < 0.01, `kept fraction ${kept / N} for p=${p}`);
  }
});

Deno.test({
  name: "dropout() masks on WebGPU and CPU are identical bit for bit",
  ignore: NO_GPU,
  fn: async () => {
    for (const [p, seed] of [[0.1, 1], [0.5, 123456789], [0.9, 0xffffffff], [1 / 3, 0]]) {
      const cpu = await maskOf(CPU, p, seed);
      const gpu = await maskOf(GPU!, p, seed);
      const a = new Uint32Array(cpu.buffer), b = new Uint32Array(gpu.buffer);
      let diff = 0;
      for (let i = 0; i < N; i++) if ((a[i] === 0) !== (b[i] === 0)) diff++;
      assert.equal(diff, 0, `p=${p} seed=${seed}: ${diff} mask bits differ`);
    }
  },
});

Deno.test("dropout() compares exactly with a p that float32 would round (CPU and WebGPU)", async () => {
  // hashUniform(seed, i) = k/2^24; with p = (k + 0.4)/2^24 and k >= 2^23, f32(p) rounds
  // down to k/2^24, so a float32 comparison would wrongly keep element i
  const seed = 9;
  let i = 0;
  while (hashU32(seed, i) >>> 8 < 1 << 23) i++;
  const k = hashU32(seed, i) >>> 8;
  const p = (k + 0.4) / 16777216;
  assert.notEqual(Math.fround(p), p);
  assert.equal(hashUniform(seed, i) >= p, false);
  for (const backend of [CPU, GPU]) {
    if (!backend) continue;
    const y = await maskOf(backend, p, seed, i + 1);
    assert.equal(y[i], 0, `${backend.kind}: element ${i} (k = ${k}) must be dropped`);
  }
});

Deno.test("dropout() backward applies the same mask and scale to dy (CPU and WebGPU)", async () => {
  for (const backend of [CPU, GPU]) {
    if (!backend) continue;
    await scopeAsync(async () => {
      const n = 1000, p = 0.25, seed = 77;
      const x = tensor(Array.from({ length: n }, (_, i) => i / n - 0.5), [10, 100], {
        backend,
        requiresGrad: true,
      });
      const w = tensor(Array.from({ length: n }, (_, i) => (i % 7) - 3), [10, 100], { backend });
      const y = dropout(x, p, seed);
      sum(mul(y, w)).backward();
      const g = await x.grad!.toArray();
      const wv = await w.toArray();
      for (let i = 0; i < n; i++) {
        const want = dropoutKeeps(p, seed, i) ? Math.fround(wv[i] * Math.fround(1 / (1 - p))) : 0;
        assert.ok(
          Math.abs(g[i] - want) <= 1e-6 * Math.abs(want),
          `${backend.kind} dx[${i}]: ${g[i]} vs ${want}`,
        );
      }
    });
  }
});

Deno.test("dropout() with p = 0 is the identity and with p = 1 gives zeros", async () => {
  const x = tensor([1.5, -2, 3], [3]);
  assert.deepEqual(await dropout(x, 0, 5).toArray(), [1.5, -2, 3]);
  assert.deepEqual(await dropout(x, 1, 5).toArray(), [0, 0, 0]);
  assert.throws(() => dropout(x, 1.5, 5), RangeError);
});
