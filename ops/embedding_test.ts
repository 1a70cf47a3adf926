import assert from "node:assert/strict";
import { embedding, mul, sum } from "./mod.ts";
import { CPU } from "../tensor/cpu_backend.ts";
import type { Backend } from "../tensor/types.ts";
import { scopeAsync, tensor } from "../tensor/tensor.ts";
import { GPU, NO_GPU } from "../tests/_gpu.ts";
import { makeRng } from "../tensor/rng.ts";
import fixture from "../tests/testdata/ops/torch_ops.json" with { type: "json" };

function assertClose(got: ArrayLike<number>, want: ArrayLike<number>, tol: number, what: string) {
  assert.equal(got.length, want.length, `${what}: length`);
  for (let i = 0; i < want.length; i++) {
    assert.ok(Math.abs(got[i] - want[i]) <= tol, `${what}[${i}]: got ${got[i]}, want ${want[i]}`);
  }
}

async function run(
  weight: ArrayLike<number>,
  V: number,
  C: number,
  ids: ArrayLike<number>,
  idsShape: number[],
  dy: ArrayLike<number>,
  backend: Backend,
): Promise<{ y: number[]; dw: number[] }> {
  return await scopeAsync(async () => {
    const w = tensor(weight, [V, C], { backend, requiresGrad: true });
    const y = embedding(w, tensor(Int32Array.from(ids), idsShape, { backend }));
    sum(mul(y, tensor(dy, [...idsShape, C], { backend }))).backward();
    return { y: await y.toArray(), dw: await w.grad!.toArray() };
  });
}

for (const backend of [CPU, GPU]) {
  Deno.test({
    name: `embedding() equals torch F.embedding and its scatter-add gradient on ${
      backend?.kind ?? "webgpu"
    }`,
    ignore: backend === null,
    fn: async () => {
      for (const c of fixture.embedding) {
        const r = await run(c.weight, c.V, c.C, c.ids, c.ids_shape, c.dy, backend!);
        assertClose(r.y, c.y, 1e-6, "y");
        assertClose(r.dw, c.dweight, 1e-6, "dweight");
      }
    },
  });
}

Deno.test("embedding() on the CPU throws a RangeError naming an out-of-range id", () => {
  const w = tensor([1, 2, 3, 4], [2, 2]);
  assert.throws(
    () => embedding(w, tensor(new Int32Array([0, 1, 2]), [3])),
    (e: unknown) =>
      e instanceof RangeError && /id 2 at position 2 is outside \[0, 2\)/.test(e.message),
  );
  assert.throws(() => embedding(w, tensor(new Int32Array([-1]), [1])), RangeError);
  assert.throws(() => embedding(w, tensor([0], [1])), /ids must be i32/);
});

Deno.test({
  name: "embedding() on WebGPU gives zero rows for out-of-range ids and no gradient to them",
  ignore: NO_GPU,
  fn: async () => {
    const r = await run([1, 2, 3, 4], 2, 2, [1, 5, -3, 1], [4], [1, 1, 1, 1, 1, 1, 1, 1], GPU!);
    assert.deepEqual(r.y, [3, 4, 0, 0, 0, 0, 3, 4]);
    assert.deepEqual(r.dw, [0, 0, 2, 2]);
  },
});

Deno.test({
  name: "embedding() backward with V=1000, C=64 and 600 positions (many pads): WebGPU equals CPU",
  ignore: NO_GPU,
  fn: async () => {
    const rng = makeRng(11);
    const V = 1000, C = 64, shape = [20, 30];
    const ids = Array.from({ length: 600 }, () => (rng() < 0.4 ? 0 : Math.floor(rng() * V)));
    const w = Array.from({ length: V * C }, () => rng() * 2 - 1);
    const dy = Array.from({ length: 600 * C }, () => rng() * 2 - 1);
    const cpu = await run(w, V, C, ids, shape, dy, CPU);
    const gpu = await run(w, V, C, ids, shape, dy, GPU!);
    assertClose(gpu.y, cpu.y, 0, "y");
    assertClose(gpu.dw, cpu.dw, 1e-4, "dweight");
  },
});

Deno.test({
  name:
    "embedding() backward on WebGPU sums each id's rows in position order (f32, bit for bit), V up to 70000",
  ignore: NO_GPU,
  fn: async () => {
    // V = 70000 needs three radix passes; 40% of 1100 positions (5 blocks) hold id 0
    for (const V of [300, 70000]) {
      const rng = makeRng(V);
      const C = 3, N = 1100;
      const ids = Array.from({ length: N }, () => (rng() < 0.4 ? 0 : Math.floor(rng() * V)));
      ids[7] = V - 1;
      const dy = Float32Array.from({ length: N * C }, () => rng() * 2 - 1);
      const want = new Float32Array(V * C); // f32 sums in increasing position order
      for (let q = 0; q < N; q++) {
        for (let c = 0; c < C; c++) {
          want[ids[q] * C + c] = Math.fround(want[ids[q] * C + c] + dy[q * C + c]);
        }
      }
      const w = new Float32Array(V * C);
      const gpu = await run(w, V, C, ids, [N], Array.from(dy), GPU!);
      for (let i = 0; i < want.length; i++) {
        if (gpu.dw[i] !== want[i]) assert.fail(`V=${V} dweight[${i}]: ${gpu.dw[i]} vs ${want[i]}`);
      }
    }
  },
});
