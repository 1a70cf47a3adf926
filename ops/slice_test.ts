import assert from "node:assert/strict";
import { concat, mul, slice, sum } from "./mod.ts";
import { CPU } from "../tensor/cpu_backend.ts";
import { scopeAsync, tensor } from "../tensor/tensor.ts";
import { GPU } from "../tests/_gpu.ts";

const backends = [CPU, GPU].filter((b) => b !== null);
const iota = (n: number) => Array.from({ length: n }, (_, i) => i);

Deno.test("slice() takes [start, end) along an axis, with negative axis and indices", async () => {
  for (const backend of backends) {
    await scopeAsync(async () => {
      const x = tensor(iota(24), [2, 3, 4], { backend });
      const a = slice(x, 1, 1, 3);
      assert.deepEqual(a.shape, [2, 2, 4]);
      assert.deepEqual(await a.toArray(), [
        4,
        5,
        6,
        7,
        8,
        9,
        10,
        11,
        16,
        17,
        18,
        19,
        20,
        21,
        22,
        23,
      ]);
      const b = slice(x, -1, -2, 4);
      assert.deepEqual(await b.toArray(), [2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23]);
      assert.deepEqual(slice(x, 0, 1, 1).shape, [0, 3, 4]);
    });
  }
});

Deno.test("slice() and concat() work on i32 token buffers (CPU and WebGPU)", async () => {
  for (const backend of backends) {
    await scopeAsync(async () => {
      const ids = tensor(new Int32Array([1, 5, 9, 2, 1, 7, 8, 2]), [2, 4], { backend });
      const s = slice(ids, 1, 1, 3);
      assert.equal(s.dtype, "i32");
      assert.deepEqual(await s.toArray(), [5, 9, 7, 8]);
      const next = tensor(new Int32Array([2147483647, -5]), [2, 1], { backend });
      const c = concat([ids, next], 1);
      assert.equal(c.dtype, "i32");
      assert.deepEqual(await c.toArray(), [1, 5, 9, 2, 2147483647, 1, 7, 8, 2, -5]);
    });
  }
});

Deno.test("concat() grows a KV cache [B, H, T, D] along T and its backward slices dy", async () => {
  for (const backend of backends) {
    await scopeAsync(async () => {
      const old = tensor(iota(2 * 2 * 3), [1, 2, 3, 2], { backend, requiresGrad: true });
      const step = tensor([100, 101, 102, 103], [1, 2, 1, 2], { backend, requiresGrad: true });
      const kv = concat([old, step], 2);
      assert.deepEqual(kv.shape, [1, 2, 4, 2]);
      assert.deepEqual(await kv.toArray(), [
        0,
        1,
        2,
        3,
        4,
        5,
        100,
        101,
        6,
        7,
        8,
        9,
        10,
        11,
        102,
        103,
      ]);
      sum(mul(kv, tensor(iota(16), [1, 2, 4, 2], { backend }))).backward();
      assert.deepEqual(await old.grad!.toArray(), [0, 1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 13]);
      assert.deepEqual(await step.grad!.toArray(), [6, 7, 14, 15]);
    });
  }
});

Deno.test("slice() backward pads dy with zeros into x's shape", async () => {
  for (const backend of backends) {
    await scopeAsync(async () => {
      const table = tensor(iota(12), [6, 2], { backend, requiresGrad: true });
      const y = slice(table, 0, 2, 4); // positions 2..3 of a position table
      sum(mul(y, tensor([1, 2, 3, 4], [2, 2], { backend }))).backward();
      assert.deepEqual(await table.grad!.toArray(), [0, 0, 0, 0, 1, 2, 3, 4, 0, 0, 0, 0]);
    });
  }
});

Deno.test("slice() and concat() reject bad ranges and shapes with one-line errors", () => {
  const x = tensor(iota(6), [2, 3]);
  assert.throws(() => slice(x, 1, 2, 5), /\[2, 5\) is outside axis 1 of length 3/);
  assert.throws(() => slice(x, 2, 0, 1), RangeError);
  assert.throws(
    () => concat([x, tensor(iota(4), [2, 2])], 0),
    /Cannot concat on axis 0: \[2, 3\] f32, \[2, 2\] f32/,
  );
  assert.throws(() => concat([x, tensor(new Int32Array(6), [2, 3])], 0), TypeError);
  assert.throws(() => concat([], 0), TypeError);
});
