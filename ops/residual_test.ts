/**
 * Tests of the fused residual beyond the registry's GPU-vs-CPU and
 * finite-difference checks: it equals the unfused composition
 * `add(x, mul(mul(dropout(branch), gamma), dropout(ones [B, 1, 1])))` that
 * nn/blocks.ts used (same masks for the same seeds), values and gradients,
 * bit for bit on the CPU in f32, and within rounding on WebGPU.
 */
import assert from "node:assert/strict";
import { CPU } from "../tensor/cpu_backend.ts";
import { makeRng } from "../tensor/rng.ts";
import { type Tensor, tensor } from "../tensor/tensor.ts";
import type { Backend } from "../tensor/types.ts";
import { GPU, NO_GPU } from "../tests/_gpu.ts";
import { add, dropout, mul, residual, sum } from "./mod.ts";

interface Setup {
  shape: [number, number, number];
  gamma: boolean;
  dropoutP: number;
  dropPathP: number;
}

const SETUPS: Setup[] = [
  { shape: [4, 5, 24], gamma: true, dropoutP: 0.1, dropPathP: 0.25 },
  { shape: [3, 2, 7], gamma: false, dropoutP: 0.5, dropPathP: 0 },
  { shape: [6, 1, 9], gamma: true, dropoutP: 0, dropPathP: 0.5 },
  { shape: [1, 3, 3], gamma: true, dropoutP: 0, dropPathP: 0 },
];

/** Values and x/branch/gamma gradients of the fused op and of the composition. */
async function both(c: Setup, backend: Backend, dtype: "f32" | "f64") {
  const [B, T, C] = c.shape, n = B * T * C;
  const rng = makeRng(3);
  const data = (k: number) => Array.from({ length: k }, () => rng() * 2 - 1);
  const xd = data(n), bd = data(n), gd = data(C), wd = data(n);
  const run = (fused: boolean) => {
    const mk = (d: number[], shape: number[], grad = true) =>
      tensor(d, shape, { backend, dtype, requiresGrad: grad });
    const x = mk(xd, c.shape), branch = mk(bd, c.shape), gamma = mk(gd, [C]);
    let out: Tensor;
    if (fused) {
      out = residual(x, branch, {
        gamma: c.gamma ? gamma : null,
        dropout: { p: c.dropoutP, seed: 11 },
        dropPath: { p: c.dropPathP, seed: 22 },
      });
    } else {
      let b = c.dropoutP > 0 ? dropout(branch, c.dropoutP, 11) : branch;
      if (c.gamma) b = mul(b, gamma);
      if (c.dropPathP > 0) {
        const ones = tensor(new Float32Array(B).fill(1), [B, 1, 1], { backend });
        b = mul(b, dropout(ones, c.dropPathP, 22));
      }
      out = add(x, b);
    }
    sum(mul(out, mk(wd, c.shape, false))).backward();
    const grads = [x.grad!, branch.grad!];
    if (c.gamma) grads.push(gamma.grad!);
    return Promise.all([out, ...grads].map((t) => t.data()));
  };
  return { fused: await run(true), composed: await run(false) };
}

for (const c of SETUPS) {
  const what = JSON.stringify(c);
  Deno.test(`residual() equals dropout → gamma → DropPath → add bit for bit on the CPU (f32): ${what}`, async () => {
    const { fused, composed } = await both(c, CPU, "f32");
    fused.forEach((got, j) => assert.deepEqual(got, composed[j], `output ${j}`));
  });
  Deno.test({
    name: `residual() equals dropout → gamma → DropPath → add on WebGPU: ${what}`,
    ignore: NO_GPU,
    fn: async () => {
      const { fused, composed } = await both(c, GPU!, "f32");
      fused.forEach((got, j) => {
        for (let i = 0; i < got.length; i++) {
          assert.ok(
            Math.abs(got[i] - composed[j][i]) <= 1e-6 * Math.max(1, Math.abs(composed[j][i])),
            `output ${j}[${i}]: ${got[i]} vs ${composed[j][i]}`,
          );
        }
      });
    },
  });
}

Deno.test("residual() drops a whole sample's branch and keeps the others scaled", async () => {
  // p = 0.5 over 64 samples: some are dropped (out = x) and the rest get 2·branch
  const B = 64, x = tensor(new Float32Array(B * 2).fill(1), [B, 2]);
  const out = await residual(x, tensor(new Float32Array(B * 2).fill(3), [B, 2]), {
    dropPath: { p: 0.5, seed: 5 },
  }).data();
  let dropped = 0;
  for (let b = 0; b < B; b++) {
    assert.equal(out[2 * b], out[2 * b + 1], `sample ${b} is all kept or all dropped`);
    assert.ok(out[2 * b] === 1 || out[2 * b] === 7, `sample ${b}: ${out[2 * b]}`);
    if (out[2 * b] === 1) dropped++;
  }
  assert.ok(dropped > 10 && dropped < 54, `${dropped} of ${B} dropped`);
});

Deno.test("residual() rejects mismatched shapes and bad probabilities with one-line errors", () => {
  const x = tensor(new Float32Array(6), [2, 3]);
  assert.throws(
    () => residual(x, tensor(new Float32Array(6), [3, 2])),
    (e: Error) => e instanceof TypeError && /\[2, 3\].*\[3, 2\]/.test(e.message),
  );
  assert.throws(
    () => residual(x, x, { gamma: tensor([1, 2], [2]) }),
    (e: Error) => e instanceof TypeError && /gamma must be \[3\]/.test(e.message),
  );
  assert.throws(
    () => residual(x, x, { dropout: { p: 1.5, seed: 1 } }),
    (e: Error) => e instanceof RangeError && !e.message.includes("\n"),
  );
});
