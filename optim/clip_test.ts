/**
 * Gradient clipping equals torch.nn.utils.clip_grad_norm_ (fixture from
 * tools/make_optim_fixtures.py): the returned norm is the pre-clip total norm,
 * and the gradients are scaled by min(1, max_norm / (norm + 1e-6)).
 */
import assert from "node:assert/strict";
import "../ops/mod.ts";
import { clipGradNorm, globalNorm } from "./clip.ts";
import { CPU } from "../tensor/cpu_backend.ts";
import { tensor } from "../tensor/tensor.ts";
import type { Backend } from "../tensor/types.ts";
import { GPU, NO_GPU } from "../tests/_gpu.ts";

interface FixtureCase {
  name: string;
  max_grad_norm: number | null;
  params: { name: string; shape: number[] }[];
  grads: number[][][];
  grad_norm: number[];
}

const FIXTURE = JSON.parse(
  await Deno.readTextFile(new URL("../tests/testdata/optim/adamw.json", import.meta.url)),
) as { cases: FixtureCase[] };
const CLIPPED = FIXTURE.cases.find((c) => c.max_grad_norm !== null)!;

async function checkClip(backend: Backend): Promise<void> {
  const maxNorm = CLIPPED.max_grad_norm!;
  let clippedSteps = 0;
  for (let k = 0; k < CLIPPED.grads.length; k++) {
    const params = CLIPPED.params.map((p, i) => {
      const t = tensor(new Float32Array(CLIPPED.grads[k][i].length), p.shape, {
        backend,
        requiresGrad: true,
      });
      t.grad = tensor(CLIPPED.grads[k][i], p.shape, { backend });
      return t;
    });
    const norm = await clipGradNorm(params, maxNorm).item();
    const want = CLIPPED.grad_norm[k];
    assert.ok(Math.abs(norm - want) <= 1e-6 * want, `step ${k}: norm ${norm} vs torch ${want}`);
    const coef = Math.min(1, maxNorm / (want + 1e-6));
    if (coef < 1) clippedSteps++;
    for (let i = 0; i < params.length; i++) {
      const got = await params[i].grad!.data();
      CLIPPED.grads[k][i].forEach((g, j) => {
        assert.ok(Math.abs(got[j] - g * coef) <= 1e-6 * Math.max(1, Math.abs(g)), `step ${k}`);
      });
    }
  }
  assert.ok(clippedSteps >= 2 && clippedSteps < CLIPPED.grads.length, "fixture clips some steps");
}

Deno.test("clipGradNorm() equals torch clip_grad_norm_ on the CPU", () => checkClip(CPU));
Deno.test({
  name: "clipGradNorm() equals torch clip_grad_norm_ on WebGPU",
  ignore: NO_GPU,
  fn: () => checkClip(GPU!),
});

Deno.test("globalNorm() covers every tensor, scalars and empty lists included", async () => {
  const a = tensor([3], []), b = tensor([0, 4, 0, 0], [2, 2]);
  assert.equal(await globalNorm([a, b]).item(), 5);
  assert.equal(await globalNorm([]).item(), 0);
  const s = tensor([0], [], { requiresGrad: true });
  s.grad = tensor([10], []);
  assert.ok(Math.abs((await clipGradNorm([s], 2).item()) - 10) < 1e-6);
  assert.deepEqual(s.grad.shape, []);
  assert.ok(Math.abs((await s.grad.item()) - 2) < 1e-5);
});

Deno.test("clipGradNorm() rejects a max norm that is not positive", () => {
  assert.throws(() => clipGradNorm([], 0), RangeError);
  assert.throws(() => clipGradNorm([], NaN), /maxNorm must be a finite number > 0/);
});
