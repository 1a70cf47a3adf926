import assert from "node:assert/strict";
import "./mod.ts";
import { scope, tensor } from "../tensor/tensor.ts";
import { CPU } from "../tensor/cpu_backend.ts";
import { cast } from "./cast.ts";
import { mul, sum } from "./mod.ts";
import { roundF16 } from "../tests/_f16_reference.ts";

Deno.test("cast() to f16 rounds to nearest even like the binary16 definition", async () => {
  const xs: number[] = [1 / 3, -2 / 3, 1 + 2 ** -11, 1 + 3 * 2 ** -11, 2049, 2051, 65504, 65519.9];
  xs.push(65520, -70000, 6e-8, 2 ** -24 * 0.5, 2 ** -24 * 1.5, 1e-5, 0, -0);
  for (let i = 0; i < 200; i++) xs.push(Math.sin(i * 1.7) * 10 ** ((i % 9) - 4));
  const x = tensor(new Float64Array(xs), [xs.length], { backend: CPU });
  const h = cast(x, "f16");
  assert.equal(h.dtype, "f16");
  const got = await h.toArray();
  xs.forEach((v, i) =>
    assert.ok(Object.is(got[i], roundF16(v)), `${v}: ${got[i]} vs ${roundF16(v)}`)
  );
  // from f32: the f32 value, rounded once
  const x32 = tensor(xs, [xs.length]);
  const got32 = await cast(x32, "f16").toArray();
  const ref32 = Float32Array.from(xs);
  ref32.forEach((v, i) => assert.ok(Object.is(got32[i], roundF16(v)), `${v}`));
});

Deno.test("cast() keeps NaN and infinities and widens f16 back to f32 exactly", async () => {
  const h = cast(tensor([NaN, Infinity, -Infinity, 0.1], [4]), "f16");
  const back = cast(h, "f32");
  assert.equal(back.dtype, "f32");
  const v = await back.toArray();
  assert.ok(Number.isNaN(v[0]));
  assert.deepEqual(v.slice(1), [Infinity, -Infinity, roundF16(0.1)]);
  const same = tensor([1], [1]);
  assert.equal(cast(same, "f32"), same);
});

Deno.test("cast() backward casts the gradient to the input dtype", async () => {
  const x = tensor([0.5, -1.25, 3], [3], { requiresGrad: true });
  const w = tensor([1 / 3, 1e5, -7e-6], [3]);
  scope(() => sum(mul(cast(cast(x, "f16"), "f32"), w)).backward());
  assert.equal(x.grad!.dtype, "f32");
  // d/dh of cast(h, f32)·w is w rounded to f16 (the gradient of an f16 tensor is f16)
  assert.deepEqual(await x.grad!.toArray(), [roundF16(1 / 3), Infinity, roundF16(-7e-6)]);
});

Deno.test("cast() refuses i32 and unknown dtypes", () => {
  assert.throws(() => cast(tensor(new Int32Array([1]), [1]), "f16"), TypeError);
  assert.throws(() => cast(tensor([1], [1]), "bf16" as "f16"), TypeError);
});
