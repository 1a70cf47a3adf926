/**
 * Tests of nn/layers.ts: the fused residual update draws the same seeds and
 * masks as the unfused dropout → gamma → DropPath → add it replaced.
 */
import assert from "node:assert/strict";
import { makeRng } from "../tensor/rng.ts";
import { type Tensor, tensor } from "../tensor/tensor.ts";
import { add, mul } from "../ops/mod.ts";
import { addResidual, dropPath, ForwardContext, maybeDropout } from "./layers.ts";

function randomTensor(shape: number[], seed: number): Tensor {
  const rng = makeRng(seed);
  return tensor(
    Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => rng() * 2 - 1),
    shape,
  );
}

/** The composition nn/blocks.ts used before the fused op. */
function unfused(
  x: Tensor,
  branch: Tensor,
  gamma: Tensor | null,
  p: { dropout: number; dropPath: number },
  ctx: ForwardContext,
): Tensor {
  let b = maybeDropout(branch, p.dropout, ctx);
  if (gamma) b = mul(b, gamma);
  return add(x, dropPath(b, p.dropPath, ctx));
}

Deno.test("addResidual() equals maybeDropout → gamma → dropPath → add and leaves the seed stream where they did", async () => {
  const x = randomTensor([4, 6, 16], 1), branch = randomTensor([4, 6, 16], 2);
  const gamma = randomTensor([16], 3);
  const settings = [
    { dropout: 0.1, dropPath: 0.3 },
    { dropout: 0, dropPath: 0.5 },
    { dropout: 0.2, dropPath: 0 },
    { dropout: 0, dropPath: 0 },
  ];
  for (const p of settings) {
    for (const training of [true, false]) {
      for (const g of [gamma, null]) {
        const a = new ForwardContext(training, 99), b = new ForwardContext(training, 99);
        a.nextSeed(); // an earlier dropout site
        b.nextSeed();
        const fused = await addResidual(x, branch, g, p, a).data();
        const ref = await unfused(x, branch, g, p, b).data();
        const what = `${JSON.stringify(p)} training ${training} gamma ${g !== null}`;
        assert.deepEqual(fused, ref, what);
        assert.equal(a.nextSeed(), b.nextSeed(), `${what}: next seed`);
      }
    }
  }
});

Deno.test("addResidual() in training drops some elements and some samples", async () => {
  const x = tensor(new Float32Array(8 * 4 * 8), [8, 4, 8]);
  const branch = tensor(new Float32Array(8 * 4 * 8).fill(1), [8, 4, 8]);
  const out = await addResidual(
    x,
    branch,
    null,
    { dropout: 0.25, dropPath: 0.4 },
    new ForwardContext(true, 7),
  )
    .data();
  const perSample = Array.from({ length: 8 }, (_, s) => out.slice(s * 32, s * 32 + 32));
  const droppedSamples = perSample.filter((v) => v.every((e) => e === 0)).length;
  assert.ok(droppedSamples > 0 && droppedSamples < 8, `${droppedSamples} samples dropped`);
  const scale = Math.fround(1 / 0.6) * Math.fround(1 / 0.75);
  for (const v of perSample) {
    if (v.every((e) => e === 0)) continue;
    for (const e of v) assert.ok(e === 0 || Math.abs(e - scale) < 1e-6, `kept element ${e}`);
    assert.ok(v.some((e) => e === 0), "dropout zeroes some elements of a kept sample");
  }
});
