/**
 * Tests of the fused GELU-linear beyond the registry's GPU-vs-CPU and
 * finite-difference checks: it equals the unfused
 * `matmulBias(dropout(gelu(u)), W, b, { transB: true })` over `[N, F]` rows as
 * Linear computes it (same mask for the same seed), values and gradients, bit for bit on the CPU in f32 and within
 * rounding on WebGPU; and it keeps fewer tensors alive for the backward.
 */
import assert from "node:assert/strict";
import { CPU } from "../tensor/cpu_backend.ts";
import { makeRng } from "../tensor/rng.ts";
import { apply, noGrad, type Tensor, tensor } from "../tensor/tensor.ts";
import type { Backend, OpInfo } from "../tensor/types.ts";
import { evalStdout } from "../tests/_eval.ts";
import { GELU_GRAD } from "./elementwise.ts";
import {
  GELU_LINEAR,
  GELU_LINEAR_GRAD,
  GELU_WEIGHT_GRAD,
  type GeluLinearParams,
  geluStage,
  useGeluStage,
} from "./gelu_linear.ts";
import { GPU, NO_GPU } from "../tests/_gpu.ts";
import {
  add,
  dropout,
  gelu,
  geluLinear,
  matmul,
  matmulBias,
  matmulF16,
  mul,
  reshape,
  sum,
  useActivations,
} from "./mod.ts";

interface Setup {
  /** u [N, F] (or [B, T, F]), W [C, F]. */
  u: number[];
  C: number;
  bias: boolean;
  p: number;
}

const SETUPS: Setup[] = [
  { u: [2, 5, 24], C: 8, bias: true, p: 0.1 },
  { u: [7, 9], C: 5, bias: false, p: 0.5 },
  { u: [3, 16], C: 12, bias: true, p: 0 },
];

const SEED = 1234;

/** Output and u/W/b gradients of the fused op and of the composition. */
async function both(c: Setup, backend: Backend) {
  const F = c.u[c.u.length - 1], n = c.u.reduce((a, b) => a * b, 1);
  const N = n / F, rng = makeRng(5);
  const data = (k: number, s = 1) => Array.from({ length: k }, () => (rng() * 2 - 1) * s);
  const ud = data(n, 3), wd = data(c.C * F), bd = data(c.C), yd = data(N * c.C);
  const run = async (fused: boolean) => {
    const mk = (d: number[], shape: number[], requiresGrad = true) =>
      tensor(d, shape, { backend, requiresGrad });
    const u = mk(ud, c.u), w = mk(wd, [c.C, F]), b = mk(bd, [c.C]);
    let y: Tensor;
    if (fused) {
      y = geluLinear(u, w, c.bias ? b : null, { dropout: { p: c.p, seed: SEED } });
    } else {
      let g = gelu(u);
      if (c.p > 0) g = dropout(g, c.p, SEED);
      g = reshape(g, [-1, F]); // as nn/layers.ts Linear does
      y = c.bias ? matmulBias(g, w, b, { transB: true }) : matmul(g, w, { transB: true });
      y = reshape(y, [...c.u.slice(0, -1), c.C]);
    }
    assert.deepEqual(y.shape, [...c.u.slice(0, -1), c.C]);
    sum(mul(y, mk(yd, y.shape, false))).backward();
    const out = [y, u.grad!, w.grad!];
    if (c.bias) out.push(b.grad!);
    return await Promise.all(out.map((t) => t.data()));
  };
  return { fused: await run(true), composed: await run(false) };
}

for (const c of SETUPS) {
  const what = JSON.stringify(c);
  Deno.test(`geluLinear() equals matmulBias(dropout(gelu(u))) bit for bit on the CPU (f32): ${what}`, async () => {
    const { fused, composed } = await both(c, CPU);
    fused.forEach((got, j) => assert.deepEqual(got, composed[j], `output ${j}`));
  });
  Deno.test({
    name:
      `geluLinear() equals matmulBias(dropout(gelu(u))) on WebGPU, GELU fused or separate: ${what}`,
    ignore: NO_GPU,
    fn: async () => {
      for (const stage of ["fused", "separate"] as const) {
        useGeluStage(stage);
        try {
          const { fused, composed } = await both(c, GPU!);
          fused.forEach((got, j) => {
            const scale = Math.max(1, ...composed[j].map(Math.abs));
            for (let i = 0; i < got.length; i++) {
              assert.ok(
                Math.abs(got[i] - composed[j][i]) <= 2e-6 * scale,
                `${stage} output ${j}[${i}]: ${got[i]} vs ${composed[j][i]}`,
              );
            }
          });
        } finally {
          useGeluStage(null);
        }
      }
    },
  });
}

for (const acc of ["f32", "f16"] as const) {
  Deno.test(`geluLinear() half ${acc} equals the f16 Linear on dropout(gelu(u)) bit for bit on the CPU`, async () => {
    const [N, F, C] = [7, 24, 6];
    const rng = makeRng(8);
    const data = (k: number, s = 1) => Array.from({ length: k }, () => (rng() * 2 - 1) * s);
    const ud = data(N * F, 3), wd = data(C * F), bd = data(C), yd = data(N * C);
    const run = async (fused: boolean) => {
      const mk = (d: number[], shape: number[], requiresGrad = true) =>
        tensor(d, shape, { requiresGrad });
      const u = mk(ud, [N, F]), w = mk(wd, [C, F]), b = mk(bd, [C]);
      const y = fused
        ? geluLinear(u, w, b, { dropout: { p: 0.2, seed: SEED }, half: acc })
        : add(matmulF16(dropout(gelu(u), 0.2, SEED), w, { transB: true, acc }), b);
      sum(mul(y, mk(yd, [N, C], false))).backward();
      return await Promise.all([y, u.grad!, w.grad!, b.grad!].map((t) => t.data()));
    };
    const [fused, composed] = [await run(true), await run(false)];
    fused.forEach((got, j) => assert.deepEqual(got, composed[j], `output ${j}`));
  });
}

Deno.test("geluLinear() keeps only u for the backward: two F-wide tensors less than the composition", () => {
  const N = 6, F = 32, C = 4;
  const live = (fused: boolean) => {
    const before = CPU.memoryStats().liveBytes;
    const u = tensor(new Float32Array(N * F).fill(0.5), [N, F], { requiresGrad: true });
    const w = tensor(new Float32Array(C * F).fill(0.1), [C, F], { requiresGrad: true });
    const b = tensor(new Float32Array(C), [C], { requiresGrad: true });
    const y = fused
      ? geluLinear(u, w, b, { dropout: { p: 0.1, seed: 1 } })
      : matmulBias(dropout(gelu(u), 0.1, 1), w, b, { transB: true });
    const bytes = CPU.memoryStats().liveBytes - before;
    for (const t of [y, u, w, b]) t.dispose();
    return bytes;
  };
  // the composition also holds gelu(u) and its dropout ([N, F] f32 each) until the backward
  assert.equal(live(false) - live(true), 2 * N * F * 4);
});

Deno.test("geluLinear() rejects a weight of the wrong width and a bad dropout with one-line errors", () => {
  const u = tensor(new Float32Array(6), [2, 3]);
  assert.throws(
    () => geluLinear(u, tensor(new Float32Array(8), [2, 4]), null),
    (e: Error) => e instanceof TypeError && /weight \[2, 4\] must be \[C, 3\]/.test(e.message),
  );
  assert.throws(
    () => geluLinear(u, tensor(new Float32Array(6), [2, 3]), tensor([0, 0, 0], [3])),
    (e: Error) => e instanceof TypeError && /bias \[3\] must be f32 \[2\]/.test(e.message),
  );
  assert.throws(
    () => geluLinear(u, tensor(new Float32Array(6), [2, 3]), null, { dropout: { p: 2, seed: 1 } }),
    (e: Error) => e instanceof RangeError && !e.message.includes("\n"),
  );
});

Deno.test("geluWeightGrad takes the forward's activation only for that array, dropout and state", () => {
  const rng = makeRng(31);
  const N = 40, F = 24, C = 8;
  const f32 = (n: number) => Float32Array.from({ length: n }, () => rng() * 4 - 2);
  const u = f32(N * F), w = f32(C * F), dy = f32(N * C);
  const info = (shapes: number[][], outs: number[][]): OpInfo => ({
    inputs: shapes.map((shape) => ({ shape, dtype: "f32" as const })),
    outputs: outs.map((shape) => ({ shape, dtype: "f32" as const })),
  });
  const forward = (x: Float32Array, p: GeluLinearParams) =>
    GELU_LINEAR.cpu([x, w], [new Float32Array(N * C)], info([[N, F], [C, F]], [[N, C]]), p);
  const weightGrad = (x: Float32Array, p: GeluLinearParams) => {
    const dw = new Float32Array(C * F), db = new Float32Array(C);
    GELU_WEIGHT_GRAD.cpu([dy, x], [dw, db], info([[N, C], [N, F]], [[C, F], [C]]), p);
    return dw;
  };
  const p = { dropoutP: 0.3, dropoutSeed: 7 };
  const fresh = weightGrad(u.slice(), p); // another array: computed
  forward(u, p);
  assert.deepEqual(weightGrad(u, p), fresh, "kept from the forward");
  // another dropout seed than the forward's: computed with its own mask
  forward(u, p);
  const q = { dropoutP: 0.3, dropoutSeed: 8 };
  assert.deepEqual(weightGrad(u, q), weightGrad(u.slice(), q));
  assert.notDeepEqual(weightGrad(u.slice(), q), fresh);
  // u written in place after the forward (a CPU write in between): computed from the new values
  forward(u, p);
  u[0] += 1;
  CPU.copy(
    CPU.upload(new Float32Array(1), { shape: [1], dtype: "f32" }),
    CPU.upload(new Float32Array(1), { shape: [1], dtype: "f32" }),
    4,
  );
  assert.deepEqual(weightGrad(u, p), weightGrad(u.slice(), p));
  assert.notDeepEqual(weightGrad(u, p), fresh);
});

Deno.test("useGeluStage(), useActivations() and WEBSEQ_GELU_STAGE pick the GELU stage (default kept); a bad name is a one-line TypeError", async () => {
  assert.equal(geluStage(), "kept");
  useGeluStage("fused");
  assert.equal(geluStage(), "fused");
  useGeluStage("auto");
  assert.equal(geluStage(), "kept");
  useActivations("recomputed");
  assert.equal(geluStage(), "separate");
  useActivations("kept");
  assert.equal(geluStage(), "kept");
  useActivations(null);
  assert.throws(() => useGeluStage("both" as "fused"), /^TypeError: useGeluStage: expected/);
  const code = `import { geluStage } from "${new URL("./gelu_linear.ts", import.meta.url)}";
    try { console.log(geluStage()); } catch (e) { console.log(String(e)); }`;
  const run = (value: string) => evalStdout(code, { WEBSEQ_GELU_STAGE: value });
  assert.equal(await run("fused"), "fused");
  assert.equal(await run("separate"), "separate");
  assert.equal(await run("auto"), "kept");
  assert.match(
    await run("half"),
    /^TypeError: WEBSEQ_GELU_STAGE: expected fused, separate, kept or auto/,
  );
});

/** y, g (when kept) and the u, W, b gradients of GELU_LINEAR applied with `keep`. */
async function keptRun(backend: Backend, keep: boolean, p: number) {
  const rng = makeRng(9);
  const data = (k: number, s = 1) => Array.from({ length: k }, () => (rng() * 2 - 1) * s);
  const [N, F, C] = [37, 24, 12];
  const mk = (d: number[], shape: number[]) => tensor(d, shape, { backend, requiresGrad: true });
  const u = mk(data(N * F, 3), [N, F]), w = mk(data(C * F), [C, F]), b = mk(data(C), [C]);
  const r = tensor(data(N * C), [N, C], { backend });
  const params: GeluLinearParams = { dropoutP: p, dropoutSeed: SEED, ...(keep ? { keep } : {}) };
  const [y, g] = apply(GELU_LINEAR, [u, w, b], params);
  const gData = g ? await g.data() : null;
  const gpu = backend.kind === "webgpu" ? GPU! : null;
  gpu?.dispatchStats(true);
  sum(mul(y, r)).backward();
  const ops = gpu ? Object.keys(gpu.dispatchStats(true).perOp) : [];
  const grads = await Promise.all([y, u.grad!, w.grad!, b.grad!].map((t) => t.data()));
  return { grads, gData, gFreed: g?.disposed ?? null, ops };
}

for (const be of [{ name: "cpu", get: () => CPU }, { name: "webgpu", get: () => GPU! }]) {
  Deno.test({
    name:
      `the kept GELU stage: the activation as a second output, the separate stage's numbers bit for bit, freed after its backward (${be.name})`,
    ignore: be.name === "webgpu" && NO_GPU,
    fn: async () => {
      for (const p of [0, 0.25]) {
        const plain = await keptRun(be.get(), false, p);
        const kept = await keptRun(be.get(), true, p);
        plain.grads.forEach((want, j) =>
          assert.deepEqual(kept.grads[j], want, `p ${p} array ${j}`)
        );
        assert.equal(kept.gFreed, true);
        if (be.name === "webgpu") {
          // the weight gradient: a Linear's over the kept activation, no GELU pass again
          assert.ok(plain.ops.includes("geluWeightGrad") && !plain.ops.includes("linearGrad"));
          assert.ok(kept.ops.includes("linearGrad") && !kept.ops.includes("geluWeightGrad"));
        }
        // the kept activation is dropout(gelu(u)) as the unfused ops give it
        const rng = makeRng(9);
        const u = Array.from({ length: 37 * 24 }, () => (rng() * 2 - 1) * 3);
        let g = gelu(tensor(u, [37, 24], { backend: be.get() }));
        if (p > 0) g = dropout(g, p, SEED);
        const want = await g.data();
        const scale = Math.max(...Array.from(want, Math.abs));
        kept.gData!.forEach((v, i) =>
          assert.ok(Math.abs(v - want[i]) <= 1e-6 * scale, `p ${p} g[${i}] ${v} vs ${want[i]}`)
        );
      }
    },
  });
}

Deno.test({
  name: "geluLinear() keeps the activation only in the kept stage, on WebGPU, when training",
  ignore: NO_GPU,
  fn: async () => {
    const u = tensor([1, -2, 3, 0.5], [2, 2], { backend: GPU!, requiresGrad: true });
    const w = tensor([0.5, -1, 2, 1], [2, 2], { backend: GPU!, requiresGrad: true });
    const outputs = (y: Tensor) => (y.node?.outputs.length ?? 0);
    try {
      useGeluStage("kept");
      assert.equal(outputs(geluLinear(u, w, null)), 2);
      const frozen = tensor([0.5, -1, 2, 1], [2, 2], { backend: GPU! });
      assert.equal(outputs(geluLinear(u, frozen, null)), 1); // no weight gradient to feed
      const cpu = (d: number[]) => tensor(d, [1, 2], { backend: CPU, requiresGrad: true });
      assert.equal(outputs(geluLinear(cpu([1, 2]), cpu([1, 1]), null)), 1); // WebGPU only
      useGeluStage("separate");
      assert.equal(outputs(geluLinear(u, w, null)), 1);
      useGeluStage("kept");
      const y = noGrad(() => geluLinear(u, w, null));
      assert.equal(y.node, null);
    } finally {
      useGeluStage(null);
    }
    await Promise.resolve();
  },
});

/** erfc(z) for z ≥ 0 in float64, to ~1e-15: the Taylor series below 2, the continued fraction above. */
function erfcExact(z: number): number {
  if (z < 2) {
    let term = z, sum = z;
    for (let n = 1; n < 80; n++) {
      term *= (-z * z) / n;
      sum += term / (2 * n + 1);
    }
    return 1 - (2 / Math.sqrt(Math.PI)) * sum;
  }
  let f = z;
  for (let n = 120; n >= 1; n--) f = z + n / 2 / f;
  return Math.exp(-z * z) / (Math.sqrt(Math.PI) * f);
}

/** GELU'(x) = Φ(x) + x·φ(x) in float64. */
function geluGradExact(x: number): number {
  const c = erfcExact(Math.abs(x) / Math.SQRT2);
  const cdf = x < 0 ? c / 2 : 1 - c / 2;
  return cdf + (x * Math.exp(-x * x / 2)) / Math.sqrt(2 * Math.PI);
}

Deno.test({
  name:
    "gelu' on WebGPU (branch-free gelu_grad_f: GELU_GRAD and the GELU-gradient matmul's epilogue) is within 2.5e-7 of the exact value, relatively 5e-5 on [−8, −1.5]",
  ignore: NO_GPU,
  fn: async () => {
    const xs = Array.from({ length: 2401 }, (_, i) => Math.fround(-12 + i / 100));
    xs.push(0, -0, 1e-30, -1e-30, 5.6568541, -5.6568541, 0.70710677, -0.70710677, 40, -40);
    const n = xs.length;
    const x = tensor(xs, [n], { backend: GPU! }),
      one = tensor(new Array(n).fill(1), [n], {
        backend: GPU!,
      });
    const viaOp = await apply(GELU_GRAD, [x, one], { a: 0 })[0].data();
    // the epilogue: du = gelu'(u) ⊙ (dy·W) with dy·W = 1 everywhere (dy [n, 1] ones, W [1, 1])
    const u = tensor(xs, [n, 1], { backend: GPU! });
    const dy = tensor(new Array(n).fill(1), [n, 1], { backend: GPU! });
    const w = tensor([1], [1, 1], { backend: GPU! });
    const viaMatmul = await apply(GELU_LINEAR_GRAD, [dy, w, u], { dropoutP: 0, dropoutSeed: 0 })[0]
      .data();
    for (const [name, got] of [["geluGrad", viaOp], ["geluLinearGrad", viaMatmul]] as const) {
      for (let i = 0; i < n; i++) {
        const want = geluGradExact(xs[i]);
        const err = Math.abs(got[i] - want);
        assert.ok(err <= 2.5e-7, `${name} x ${xs[i]}: ${got[i]} vs ${want}`);
        // relatively where gelu' is tiny (WGSL's exp may err 3 + 2|x| ulps: 4e-6 at x = −8;
        // the old erf's Φ = 0 from x = −5.66 erred 1e-3 to 2%)
        if (xs[i] < -1.5 && xs[i] >= -8) {
          assert.ok(err <= 5e-5 * Math.abs(want), `${name} x ${xs[i]}: ${got[i]} vs ${want}`);
        }
      }
    }
  },
});
