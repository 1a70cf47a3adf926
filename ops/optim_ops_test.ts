/**
 * The in-place optimizer kernels: GPU updates equal the CPU reference (the
 * registry test skips mutating ops), partial sums follow the documented
 * partition, and zero-output ops work on both backends.
 */
import assert from "node:assert/strict";
import "./mod.ts";
import {
  ADAMW,
  type AdamWParams,
  adamwUpdate,
  clipCoef,
  sumSquaresGroups,
  sumSquaresInto,
} from "./optim_ops.ts";
import { CPU } from "../tensor/cpu_backend.ts";
import { apply, tensor } from "../tensor/tensor.ts";
import type { Backend } from "../tensor/types.ts";
import { GPU, NO_GPU } from "../tests/_gpu.ts";
import { makeRng } from "../tensor/rng.ts";

function randoms(n: number, seed: number, lo = -1, hi = 1): Float32Array {
  const rng = makeRng(seed);
  return Float32Array.from({ length: n }, () => lo + (hi - lo) * rng());
}

function assertClose(got: ArrayLike<number>, want: ArrayLike<number>, rel: number, what: string) {
  assert.equal(got.length, want.length, `${what}: length`);
  let scale = 1e-12;
  for (let i = 0; i < want.length; i++) scale = Math.max(scale, Math.abs(want[i]));
  for (let i = 0; i < want.length; i++) {
    assert.ok(
      Math.abs(got[i] - want[i]) <= rel * scale,
      `${what}[${i}]: ${got[i]} vs ${want[i]} (tol ${rel * scale})`,
    );
  }
}

/** Runs `steps` AdamW updates on a backend; returns p, m, v. */
async function runAdamW(
  backend: Backend,
  n: number,
  steps: number,
  prm: Omit<AdamWParams, "step">,
) {
  const p = tensor(randoms(n, 1), [n], { backend });
  const m = tensor(new Float32Array(n), [n], { backend });
  const v = tensor(new Float32Array(n), [n], { backend });
  const s = tensor([0.75], [1], { backend });
  for (let t = 1; t <= steps; t++) {
    const g = tensor(randoms(n, 10 + t, -2, 2), [n], { backend });
    adamwUpdate(p, g, m, v, s, { ...prm, step: t });
    g.dispose();
  }
  const out = [await p.data(), await m.data(), await v.data()];
  for (const x of [p, m, v, s]) x.dispose();
  return out;
}

Deno.test("adamw() updates p, m and v in place, equal to a hand-written AdamW step", async () => {
  const p = tensor([1, -2, 0.5], [3], { backend: CPU });
  const g = tensor([0.1, 0, -3], [3], { backend: CPU });
  const m = tensor([0.2, 0, 0], [3], { backend: CPU });
  const v = tensor([0.01, 0, 0], [3], { backend: CPU });
  const s = tensor([0.5], [1], { backend: CPU });
  const prm = { lr: 0.1, beta1: 0.8, beta2: 0.9, eps: 1e-3, weightDecay: 0.2, step: 2 };
  const outs = apply(ADAMW, [p, g, m, v, s], prm);
  assert.equal(outs.length, 0);
  const P = [1, -2, 0.5], G = [0.05, 0, -1.5], M0 = [0.2, 0, 0], V0 = [0.01, 0, 0];
  const want = P.map((pi, i) => {
    const mi = 0.8 * M0[i] + 0.2 * G[i], vi = 0.9 * V0[i] + 0.1 * G[i] * G[i];
    const pd = pi * (1 - 0.1 * 0.2);
    return [
      pd - (0.1 / (1 - 0.8 ** 2)) * mi / (Math.sqrt(vi) / Math.sqrt(1 - 0.9 ** 2) + 1e-3),
      mi,
      vi,
    ];
  });
  assertClose(await p.data(), want.map((w) => w[0]), 1e-6, "p");
  assertClose(await m.data(), want.map((w) => w[1]), 1e-6, "m");
  assertClose(await v.data(), want.map((w) => w[2]), 1e-6, "v");
});

Deno.test({
  name: "adamw() on WebGPU equals the CPU reference over several in-place steps",
  ignore: NO_GPU,
  fn: async () => {
    for (const n of [1, 257, 5000]) {
      const prm = { lr: 3e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1 };
      const cpu = await runAdamW(CPU, n, 4, prm);
      const gpu = await runAdamW(GPU!, n, 4, prm);
      for (let k = 0; k < 3; k++) assertClose(gpu[k], cpu[k], 2e-6, `n=${n} ${"pmv"[k]}`);
    }
  },
});

Deno.test("sumSquaresPartial() writes each slot with its chunks' sum of squares", async () => {
  const n = 1000; // chunks 0..3 of 256 (the last one partial)
  const x = randoms(n, 3);
  for (const backend of NO_GPU ? [CPU] : [CPU, GPU!]) {
    const partials = tensor([9, 9, 9, 9, 9], [5], { backend });
    sumSquaresInto(partials, tensor(x, [n], { backend }), 2, 3);
    const got = await partials.data();
    const want = [9, 9, 0, 0, 0];
    for (let i = 0; i < n; i++) want[2 + (Math.floor(i / 256) % 3)] += x[i] * x[i];
    assertClose(got, want, 1e-6, backend.kind);
  }
});

Deno.test("sumSquaresPartial() rejects slots outside the partials buffer", () => {
  const partials = tensor([0, 0], [2], { backend: CPU });
  assert.throws(() => sumSquaresInto(partials, tensor([1], [1]), 1, 2), RangeError);
});

Deno.test("clipCoef() gives sqrt of the summed partials and torch's clipping factor", async () => {
  for (const backend of NO_GPU ? [CPU] : [CPU, GPU!]) {
    const [norm, coef] = clipCoef(tensor([9, 16], [2], { backend }), 1);
    assertClose(await norm.data(), [5], 1e-7, "norm");
    assertClose(await coef.data(), [1 / (5 + 1e-6)], 1e-7, "coef");
    const [, one] = clipCoef(tensor([0.25], [1], { backend }), 1);
    assert.deepEqual(await one.toArray(), [1]);
  }
});

Deno.test({
  name: "the global sum of squares of a large tensor agrees between WebGPU and the CPU",
  ignore: NO_GPU,
  fn: async () => {
    const n = 256 * 512 * 3 + 17; // more chunks than groups: each group loops
    const x = randoms(n, 5);
    const groups = sumSquaresGroups(n);
    assert.ok(groups < Math.ceil(n / 256) / 4, `groups ${groups}`);
    let want = 0;
    for (const v of x) want += v * v;
    for (const backend of [CPU, GPU!]) {
      const partials = tensor(new Float32Array(groups), [groups], { backend });
      sumSquaresInto(partials, tensor(x, [n], { backend }), 0);
      const [norm] = clipCoef(partials, 0);
      assertClose(await norm.data(), [Math.sqrt(want)], 1e-5, backend.kind);
    }
  },
});
