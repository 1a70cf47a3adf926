import assert from "node:assert/strict";
import { max, sum, sumTo } from "./mod.ts";
import { CPU } from "../tensor/cpu_backend.ts";
import type { Backend } from "../tensor/types.ts";
import { scopeAsync, type Tensor, tensor } from "../tensor/tensor.ts";
import { GPU, NO_GPU } from "../tests/_gpu.ts";
import { makeRng } from "../tensor/rng.ts";

function assertClose(got: ArrayLike<number>, want: ArrayLike<number>, tol: number, what: string) {
  assert.equal(got.length, want.length, `${what}: length`);
  let scale = 1e-30;
  for (let i = 0; i < want.length; i++) scale = Math.max(scale, Math.abs(want[i]));
  for (let i = 0; i < want.length; i++) {
    assert.ok(
      Math.abs(got[i] - want[i]) <= tol * Math.max(1, scale),
      `${what}[${i}]: got ${got[i]}, want ${want[i]}`,
    );
  }
}

/** Runs `f` on the same data on the CPU in float64 and on WebGPU in float32. */
async function both(
  data: number[],
  shape: number[],
  f: (x: Tensor) => Tensor,
): Promise<[number[], number[]]> {
  const on = (backend: Backend, dtype: "f32" | "f64") =>
    scopeAsync(async () => await f(tensor(data, shape, { backend, dtype })).toArray());
  return [await on(CPU, "f64"), await on(GPU!, "f32")];
}

function values(n: number, seed: number, lo = -1, hi = 1): number[] {
  const rng = makeRng(seed);
  return Array.from({ length: n }, () => lo + rng() * (hi - lo));
}

const TALL: [string, number[], (x: Tensor) => Tensor][] = [
  ["sum over 530 rows of [530, 37] (17 chunks)", [530, 37], (x) => sum(x, 0)],
  ["sum over 65 rows of [65, 3] (just past the serial loop)", [65, 3], (x) => sum(x, 0)],
  ["sum over the middle axis of [2, 300, 5]", [2, 300, 5], (x) => sum(x, 1)],
  ["max over the middle axis of [2, 300, 5]", [2, 300, 5], (x) => max(x, 1, { keepdims: true })],
  ["max over 1000 rows of [1000, 3]", [1000, 3], (x) => max(x, 0)],
  ["sumTo [4, 100, 6] → [6] (a bias gradient)", [4, 100, 6], (x) => sumTo(x, [6])],
  ["sum over 140000 rows of [140000, 2] (chunks of 35)", [140000, 2], (x) => sum(x, 0)],
  // few long rows with one element each: chunks spread over many threads, not a workgroup a row
  ["sum of all 196615 values (one long row)", [196615], (x) => sum(x)],
  ["sum over the last axis of [2, 40000]", [2, 40000], (x) => sum(x, 1)],
  ["max of all 196615 values", [196615], (x) => max(x)],
];

for (const [what, shape, f] of TALL) {
  Deno.test({
    name: `reduce on WebGPU equals the CPU: ${what}`,
    ignore: NO_GPU,
    fn: async () => {
      const n = shape.reduce((a, b) => a * b, 1);
      const [want, got] = await both(values(n, n), shape, f);
      assertClose(got, want, 1e-5, what);
    },
  });
}

Deno.test({
  name: "sumTo on WebGPU sums 65536 rows of ≈1.001 to 1e-6 of float64 (no long serial sum)",
  ignore: NO_GPU,
  fn: async () => {
    // one serial f32 sum over 65536 rows of 1.001 drifts by ~5e-4 relative
    const [want, got] = await both(
      values(65536 * 3, 7, 1.001, 1.0011),
      [65536, 3],
      (x) => sumTo(x, [3]),
    );
    assertClose(got, want, 1e-6, "sum");
  },
});

Deno.test({
  name: "sum on WebGPU of 2^24 ones is 2^24 (a whole-tensor sum is not one workgroup's long loop)",
  ignore: NO_GPU,
  fn: async () => {
    // on one workgroup each thread looped 65536 times, and llvmpipe stops loops past 65535:
    // the sum came out 131070
    const n = 1 << 24;
    const got = await scopeAsync(async () =>
      await sum(tensor(new Float32Array(n).fill(1), [n], { backend: GPU! })).item()
    );
    assert.equal(got, n);
  },
});
