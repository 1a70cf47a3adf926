import assert from "node:assert/strict";
import { maskedFill, mul, softmax, sum } from "./mod.ts";
import { CPU } from "../tensor/cpu_backend.ts";
import { scopeAsync, tensor } from "../tensor/tensor.ts";
import { GPU } from "../tests/_gpu.ts";

const backends = [CPU, GPU].filter((b) => b !== null);

Deno.test("maskedFill() puts the value where a broadcast key-padding mask is set (f32 and i32 masks)", async () => {
  for (const backend of backends) {
    await scopeAsync(async () => {
      // scores [B=2, Tq=2, S=3], mask [B, 1, S]: batch 1 pads its last key
      const x = tensor([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], [2, 2, 3], { backend });
      const want = [1, 2, 3, 4, 5, 6, 7, 8, -9, 10, 11, -9];
      for (const dtype of ["f32", "i32"] as const) {
        const mask = tensor([0, 0, 0, 0, 0, 1], [2, 1, 3], { backend, dtype });
        assert.deepEqual(await maskedFill(x, mask, -9).toArray(), want, `${backend.kind} ${dtype}`);
      }
    });
  }
});

Deno.test("maskedFill() with a causal mask and -Infinity feeds softmax without NaN", async () => {
  for (const backend of backends) {
    await scopeAsync(async () => {
      const causal = tensor(new Int32Array([0, 1, 1, 0, 0, 1, 0, 0, 0]), [3, 3], { backend });
      const p = await softmax(
        maskedFill(tensor([0, 0, 0, 0, 0, 0, 0, 0, 0], [3, 3], { backend }), causal, -Infinity),
      ).toArray();
      const want = [1, 0, 0, 0.5, 0.5, 0, 1 / 3, 1 / 3, 1 / 3];
      p.forEach((v, i) =>
        assert.ok(Math.abs(v - want[i]) < 1e-6, `${backend.kind} p[${i}] = ${v}`)
      );
      // a fully padded row
      const all = tensor(new Int32Array([1, 1]), [1, 2], { backend });
      assert.deepEqual(
        await softmax(maskedFill(tensor([3, 4], [1, 2], { backend }), all, -Infinity)).toArray(),
        [0, 0],
      );
    });
  }
});

Deno.test("maskedFill() backward passes dy through unmasked positions and zeros masked ones", async () => {
  for (const backend of backends) {
    await scopeAsync(async () => {
      const x = tensor([1, 2, 3, 4, 5, 6], [2, 3], { backend, requiresGrad: true });
      const mask = tensor([1, 0, 1], [3], { backend, requiresGrad: true });
      const y = maskedFill(x, mask, 100);
      sum(mul(y, tensor([1, 2, 3, 4, 5, 6], [2, 3], { backend }))).backward();
      assert.deepEqual(await x.grad!.toArray(), [0, 2, 0, 0, 5, 0], backend.kind);
      assert.equal(mask.grad, null);
    });
  }
});

Deno.test("maskedFill() rejects a mask that does not broadcast to x, naming both shapes", () => {
  assert.throws(
    () => maskedFill(tensor([1, 2, 3, 4, 5, 6], [2, 3]), tensor([1, 0], [2]), 0),
    (e: unknown) =>
      e instanceof TypeError && /mask \[2\] does not broadcast to x \[2, 3\]/.test(e.message),
  );
  // the mask may not enlarge x either
  assert.throws(
    () => maskedFill(tensor([1, 2, 3], [3]), tensor([1, 0, 1, 0, 1, 0], [2, 3]), 0),
    TypeError,
  );
});
