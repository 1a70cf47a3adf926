/**
 * Tests of nn/attention.ts: heads stay token-major ([B, T, H, D] views, the
 * op's "BTHD" layout) and the module equals the heads-major formulation
 * with permutes, including attention dropout and key-padding masks, values
 * and gradients; incremental decoding with the cache equals a full pass.
 */
import assert from "node:assert/strict";
import { makeRng } from "../tensor/rng.ts";
import { type Tensor, tensor } from "../tensor/tensor.ts";
import { attention, matmul, mul, permute, reshape, slice, sum } from "../ops/mod.ts";
import { initContext } from "./module.ts";
import { autocast, ForwardContext, type Precision } from "./layers.ts";
import { groupedProjections, MultiHeadAttention, useGroupedProjections } from "./attention.ts";
import { evalStdout } from "../tests/_eval.ts";

function randomTensor(shape: number[], seed: number, requiresGrad = false): Tensor {
  const rng = makeRng(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  return tensor(Array.from({ length: n }, () => rng() * 2 - 1), shape, { requiresGrad });
}

function closeTo(got: ArrayLike<number>, want: ArrayLike<number>, what: string): void {
  assert.equal(got.length, want.length, what);
  for (let i = 0; i < want.length; i++) {
    assert.ok(Math.abs(got[i] - want[i]) <= 1e-5, `${what}[${i}]: ${got[i]} vs ${want[i]}`);
  }
}

/** y = x Wᵀ + b of a named Linear of the module. */
function linear(m: MultiHeadAttention, name: string, x: Tensor): Tensor {
  const p = Object.fromEntries(m.namedParameters());
  const [B, T, C] = x.shape;
  const y = matmul(reshape(x, [B * T, C]), p[`${name}.weight`], { transB: true });
  return reshape(y, [B, T, C]); // biases are zero at init
}

Deno.test("MultiHeadAttention equals the heads-major formulation with permutes (cross-attention, mask, dropout)", async () => {
  const B = 2, T = 3, S = 5, C = 12, H = 3, D = 4;
  const mha = new MultiHeadAttention(initContext(1), C, H, 0.3);
  const x = randomTensor([B, T, C], 2, true), src = randomTensor([B, S, C], 3, true);
  const keyMask = tensor([1, 1, 1, 1, 1, 1, 1, 0, 0, 0], [B, S]);
  const w = randomTensor([B, T, C], 4);
  const out = mha.forward(x, src, new ForwardContext(true, 8), { keyMask }).out;
  sum(mul(out, w)).backward();
  const got = [await out.data(), await x.grad!.data(), await src.grad!.data()];
  x.grad = null;
  src.grad = null;

  const heads = (t: Tensor, L: number) => permute(reshape(t, [B, L, H, D]), [0, 2, 1, 3]);
  const seed = new ForwardContext(true, 8).nextSeed();
  const o = attention(
    heads(linear(mha, "q_proj", x), T),
    heads(linear(mha, "k_proj", src), S),
    heads(linear(mha, "v_proj", src), S),
    { keyMask, dropout: { p: 0.3, seed } },
  );
  const ref = linear(mha, "out_proj", reshape(permute(o, [0, 2, 1, 3]), [B, T, C]));
  sum(mul(ref, w)).backward();
  const want = [await ref.data(), await x.grad!.data(), await src.grad!.data()];
  ["out", "dx", "dsource"].forEach((n, j) => closeTo(got[j], want[j], n));
});

Deno.test("MultiHeadAttention with the key/value cache ([B, S, H, D], appended on axis 1) equals the full causal pass", async () => {
  const B = 2, T = 4, C = 8;
  const mha = new MultiHeadAttention(initContext(5), C, 2, 0);
  const x = randomTensor([B, T, C], 6);
  const ctx = new ForwardContext(false);
  const full = await mha.forward(x, x, ctx, { causal: true }).out.data();
  let cache = null;
  for (let t = 0; t < T; t++) {
    const xt = slice(x, 1, t, t + 1);
    const r = mha.forward(xt, xt, ctx, { causal: true, cache });
    cache = r.cache!;
    assert.deepEqual(cache.k.shape, [B, t + 1, 2, 4]);
    const step = await r.out.data();
    for (let b = 0; b < B; b++) {
      closeTo(
        step.slice(b * C, b * C + C),
        full.slice((b * T + t) * C, (b * T + t + 1) * C),
        `t ${t}`,
      );
    }
  }
});

Deno.test("grouped projections (one op for Q, K, V; K, V) give the numbers of the layers one by one, bit for bit on the CPU, f16 autocast too", async () => {
  const B = 2, T = 3, S = 4, C = 8;
  const run = async (on: boolean, precision: Precision) => {
    useGroupedProjections(on);
    try {
      const mha = new MultiHeadAttention(initContext(7), C, 2, 0);
      const x = randomTensor([B, T, C], 8, true), src = randomTensor([B, S, C], 9, true);
      const cross = autocast(precision, () => {
        const self = mha.forward(x, x, new ForwardContext(false), { causal: true }).out;
        return mha.forward(self, src, new ForwardContext(false)).out;
      });
      sum(mul(cross, randomTensor([B, T, C], 10))).backward();
      const grads = mha.namedParameters().map(([, p]) => p.grad!);
      return await Promise.all([cross, x.grad!, src.grad!, ...grads].map((t) => t.toArray()));
    } finally {
      useGroupedProjections(null);
    }
  };
  for (const precision of ["f32", "f16"] as const) {
    const [grouped, single] = [await run(true, precision), await run(false, precision)];
    grouped.forEach((v, i) => assert.deepEqual(v, single[i], `${precision} array ${i}`));
  }
  assert.equal(groupedProjections(), true); // the default
});

Deno.test("WEBSEQ_GROUPED_PROJECTIONS turns grouped projections off; a bad value is a one-line TypeError", async () => {
  const code = `import { groupedProjections } from "${new URL("./attention.ts", import.meta.url)}";
    try { console.log(groupedProjections()); } catch (e) { console.log(String(e)); }`;
  const run = (value: string) => evalStdout(code, { WEBSEQ_GROUPED_PROJECTIONS: value });
  assert.equal(await run("off"), "false");
  assert.equal(await run("on"), "true");
  assert.match(await run("sometimes"), /^TypeError: WEBSEQ_GROUPED_PROJECTIONS must be on or off/);
});
