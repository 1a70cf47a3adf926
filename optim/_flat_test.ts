/**
 * AdamW's flat buffers: the flat path equals the per-parameter reference bit
 * for bit (clipping, weight decay, several banks, missing gradients,
 * gradients replaced between clipping and the step) on the CPU and on a
 * software WebGPU adapter, within a few f32 ulps on a hardware GPU (see
 * {@linkcode assertNumbers}); a step is a constant number of dispatches whatever the parameter
 * count; checkpoints keep their format; memory goes back to the baseline.
 */
import assert from "node:assert/strict";
import "../ops/mod.ts";
import { AdamW, type AdamWOptions } from "./adamw.ts";
import { clipGradNorm } from "./clip.ts";
import { CPU } from "../tensor/cpu_backend.ts";
import { scope, type Tensor, tensor } from "../tensor/tensor.ts";
import type { Backend } from "../tensor/types.ts";
import { GPU, NO_GPU } from "../tests/_gpu.ts";
import { isSoftwareAdapter } from "../gpu/adapter.ts";
import {
  embedding,
  geluLinear,
  layerNorm,
  matmul,
  matmulBias,
  mul,
  residual,
  sum,
} from "../ops/mod.ts";
import { residualLayerNorm } from "../ops/residual_layer_norm.ts";

const BACKENDS: Backend[] = NO_GPU ? [CPU] : [CPU, GPU!];

/** Sizes that exercise padding, a scalar, and several sum-of-squares workgroups (> 2048). */
const SHAPES: [string, number[]][] = [
  ["enc.embed.weight", [37, 16]],
  ["enc.fc1.weight", [70, 40]],
  ["enc.fc1.bias", [70]],
  ["enc.norm.weight", [16]],
  ["enc.gamma1", []],
  ["big.weight", [5003]],
  ["dec.head.weight", [3, 5]],
];

function makeParams(backend: Backend, shapes = SHAPES): Map<string, Tensor> {
  let j = 0;
  return new Map(shapes.map(([name, shape]) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const init = Float32Array.from({ length: n }, () => Math.cos(++j * 0.37));
    return [name, tensor(init, shape, { backend, requiresGrad: true })];
  }));
}

function setGrads(params: Map<string, Tensor>, k: number, skip?: string): void {
  let j = 0;
  for (const [name, p] of params) {
    const g = Float32Array.from({ length: p.size }, () => 0.3 * Math.sin(++j * (k + 1.5)));
    if (name !== skip) p.grad = tensor(g, p.shape, { backend: p.backend }).keep();
  }
}

interface RunResult {
  params: Float32Array[][];
  norms: number[];
  state: Awaited<ReturnType<AdamW["state"]>>;
}

/**
 * Six steps with clipping, weight decay and a schedule; step 2 leaves one
 * parameter without a gradient, step 4 replaces a gradient after clipping.
 */
async function run(backend: Backend, opts: Partial<AdamWOptions>): Promise<RunResult> {
  const params = makeParams(backend);
  const opt = new AdamW(params, { lr: 0.02, weightDecay: 0.1, ...opts });
  const out: RunResult = { params: [], norms: [], state: { step: 0, expAvg: {}, expAvgSq: {} } };
  for (let k = 0; k < 6; k++) {
    setGrads(params, k, k === 2 ? "enc.fc1.bias" : undefined);
    const norm = scope(() => {
      const norm = clipGradNorm(opt, 0.8);
      if (k === 4) {
        const p = params.get("big.weight")!;
        p.grad!.dispose();
        p.grad = tensor(new Float32Array(p.size).fill(0.01), p.shape, { backend }).keep();
      }
      opt.step(0.02 * (1 - k / 10));
      opt.zeroGrad();
      return norm;
    });
    out.norms.push(await norm.item());
    norm.dispose();
    const now: Float32Array[] = [];
    for (const p of params.values()) now.push(Float32Array.from(await p.data()));
    out.params.push(now);
  }
  out.state = await opt.state();
  opt.dispose();
  for (const p of params.values()) p.dispose();
  return out;
}

/**
 * Whether two kernels computing the same f32 expression must agree bit for bit on `backend`:
 * on the CPU and a software adapter they do. A hardware GPU's driver compiles each kernel on its
 * own, and Vulkan lets it contract `a·b + c` into an FMA in one kernel and not in the other and
 * approximate `/` and `sqrt` (an H200 put AdamW's flat and per-parameter updates 1 ulp apart).
 */
function bitExact(backend: Backend): boolean {
  return backend.kind === "cpu" || isSoftwareAdapter(GPU!.adapterInfo);
}

/**
 * `got` equals `want` bit for bit where {@linkcode bitExact}, else element by element within
 * 32 f32 ulps of the array's largest magnitude: an update `p − lr·m̂/(√v̂ + ε)` that nearly
 * cancels keeps the rounding of its operands, not of its small result (an H200 put an element
 * of 6.0e-4 7.6e-10 apart: 13 ulps of the result), and over three steps a gradient's last-bit
 * differences pass through `m̂/√v̂` into the parameters and the next gradients (an H100 put a
 * parameter of 0.147 1.8e-7 apart after the sink test's steps: 5 ulps of the array's scale). A
 * wrong decay or bias correction moves elements by about lr·1e-2, hundreds of times more.
 */
function assertNumbers(
  backend: Backend,
  got: ArrayLike<number>,
  want: ArrayLike<number>,
  what: string,
): void {
  if (bitExact(backend)) return assert.deepEqual(got, want, what);
  assert.equal(got.length, want.length, `${what}: length`);
  let scale = 0;
  for (let i = 0; i < want.length; i++) scale = Math.max(scale, Math.abs(want[i]));
  const tol = 32 * 2 ** -23 * scale;
  for (let i = 0; i < got.length; i++) {
    if (!(Math.abs(got[i] - want[i]) <= tol)) {
      assert.fail(`${what}: element ${i} is ${got[i]}, want ${want[i]} (within ${tol})`);
    }
  }
}

function assertSame(backend: Backend, a: RunResult, b: RunResult, what: string): void {
  assertNumbers(backend, a.norms, b.norms, `${what}: norms`);
  a.params.forEach((step, k) =>
    step.forEach((p, i) =>
      assertNumbers(backend, p, b.params[k][i], `${what}: step ${k} ${SHAPES[i][0]}`)
    )
  );
  if (bitExact(backend)) return assert.deepEqual(a.state, b.state, `${what}: state`);
  assert.equal(a.state.step, b.state.step, `${what}: state step`);
  for (const key of ["expAvg", "expAvgSq"] as const) {
    assert.deepEqual(Object.keys(a.state[key]), Object.keys(b.state[key]), `${what}: ${key}`);
    for (const [name, v] of Object.entries(a.state[key])) {
      const w = b.state[key][name];
      assert.deepEqual(v.shape, w.shape, `${what}: ${key} ${name} shape`);
      assertNumbers(backend, v.data, w.data, `${what}: ${key} ${name}`);
    }
  }
}

for (const backend of BACKENDS) {
  Deno.test({
    name:
      `flat AdamW equals the per-parameter path (bit for bit where kernels compile alike) on ${backend.kind}`,
    fn: async () => {
      const ref = await run(backend, { flat: false });
      assertSame(backend, await run(backend, { flat: true }), ref, "one bank");
      // 24 KiB banks: two, the second with decayed and undecayed parameters
      assertSame(
        backend,
        await run(backend, { flat: true, maxBankBytes: 24576 }),
        ref,
        "several banks",
      );
      assert.ok(ref.norms.some((n) => n > 0.8), "some steps clip");
    },
  });
}

Deno.test({
  name: "a flat AdamW step on WebGPU is 3 dispatches whatever the parameter count",
  ignore: NO_GPU,
  fn: async () => {
    const gpu = GPU!;
    for (const count of [2, 40]) {
      const shapes: [string, number[]][] = Array.from(
        { length: count },
        (_, i) => [`l${i}.${i % 2 ? "bias" : "weight"}`, [3 + i]],
      );
      const params = makeParams(gpu, shapes);
      const opt = new AdamW(params, { lr: 0.1 });
      setGrads(params, 0);
      await gpu.sync();
      gpu.dispatchStats(true);
      scope(() => {
        clipGradNorm(opt, 1);
        opt.step();
      });
      const stats = gpu.dispatchStats(true);
      assert.equal(stats.dispatches, 3, `${count} parameters`);
      assert.equal(stats.copies, count);
      assert.equal(stats.submits + stats.readbacks, 0);
      opt.zeroGrad();
      opt.dispose();
      for (const p of params.values()) p.dispose();
    }
  },
});

Deno.test("flat AdamW checkpoints in the per-parameter format and resumes either way", async () => {
  const steps = (opt: AdamW, params: Map<string, Tensor>, from: number, to: number) => {
    for (let k = from; k < to; k++) {
      setGrads(params, k);
      scope(() => {
        clipGradNorm(opt, 0.8);
        opt.step();
      });
      opt.zeroGrad();
    }
  };
  const weights = async (params: Map<string, Tensor>) => {
    const out: number[][] = [];
    for (const p of params.values()) out.push(await p.toArray());
    return out;
  };
  // reference: four per-parameter steps
  const ref = makeParams(CPU);
  const refOpt = new AdamW(ref, { lr: 0.05, flat: false });
  steps(refOpt, ref, 0, 2);
  const refState = await refOpt.state();
  steps(refOpt, ref, 2, 4);
  // flat, two steps: the same state, in the same format
  const a = makeParams(CPU);
  const optA = new AdamW(a, { lr: 0.05 });
  steps(optA, a, 0, 2);
  const stateA = await optA.state();
  assert.deepEqual(stateA, refState);
  // resume a fresh flat optimizer from the per-parameter checkpoint
  const b = new Map<string, Tensor>();
  for (const [n, p] of a) b.set(n, tensor(await p.data(), p.shape, { requiresGrad: true }));
  const optB = new AdamW(b, { lr: 0.05, maxBankBytes: 24576 });
  optB.loadState(refState);
  steps(optB, b, 2, 4);
  assert.deepEqual(await weights(b), await weights(ref));
  for (const o of [refOpt, optA, optB]) o.dispose();
});

Deno.test("flat AdamW frees its buffers: live bytes back to the baseline", async () => {
  for (const backend of BACKENDS) {
    await backend.sync();
    const live = backend.memoryStats().liveBytes;
    const params = makeParams(backend);
    const opt = new AdamW(params, { lr: 0.1, maxBankBytes: 24576 });
    setGrads(params, 0);
    scope(() => {
      clipGradNorm(opt, 1).dispose();
      opt.step();
    });
    opt.zeroGrad();
    await opt.state();
    opt.dispose();
    // the parameters outlive the optimizer (views of the parameter banks)
    const w = params.get("dec.head.weight")!;
    assert.equal((await w.data()).length, 15);
    for (const p of params.values()) p.dispose();
    await backend.sync();
    assert.equal(backend.memoryStats().liveBytes, live, `${backend.kind}: live bytes`);
  }
});

Deno.test("flat AdamW needs one dtype and a bank that holds every parameter", () => {
  const mixed = new Map([
    ["a", tensor([1], [1], { requiresGrad: true })],
    ["b", tensor([1], [1], { dtype: "f64", requiresGrad: true })],
  ]);
  assert.throws(() => new AdamW(mixed, { lr: 1 }), /one dtype.*flat: false/);
  assert.equal(new AdamW(mixed, { lr: 1, flat: false }).flat, false);
  const big = new Map([["w", tensor(new Float32Array(100), [100], { requiresGrad: true })]]);
  assert.throws(() => new AdamW(big, { lr: 1, maxBankBytes: 256 }), /exceeds a flat bank/);
});

/**
 * Every op that writes its parameters' gradients straight into the flat gradient buffer
 * (`BackwardContext.gradSink`): the embedding, Linear (matmulBias), the GELU Linear, LayerNorm, the fused
 * residual + LayerNorm with LayerScale, the residual with LayerScale, a bias-free Linear
 * (matmul); plus a weight used twice, whose gradient is summed and copied as before.
 */
function sinkStep(backend: Backend, params: Map<string, Tensor>, k: number): Tensor {
  const P = (n: string) => params.get(n)!;
  const ids = tensor(Int32Array.from([1, 4, 1, 9, 0]), [5], { backend });
  const x = embedding(P("embed"), ids); // [5, 6]
  const r = tensor(Array.from({ length: 5 * 6 }, (_, i) => Math.cos(2 * i - k)), [5, 6], {
    backend,
  });
  const h = matmulBias(x, P("fc1.weight"), P("fc1.bias"), { transB: true }); // [5, 8]
  const f = geluLinear(h, P("fc2.weight"), P("fc2.bias")); // [5, 6]
  const [s, n] = residualLayerNorm(x, f, {
    gamma: P("gamma1"),
    weight: P("ln1.weight"),
    bias: P("ln1.bias"),
    eps: 1e-5,
  });
  const t = residual(s, matmul(n, P("tied"), { transB: true }), { gamma: P("gamma2") });
  const y = layerNorm(matmul(t, P("tied")), P("ln2.weight"), P("ln2.bias"), 1e-5); // [5, 6]
  return sum(mul(matmul(y, P("head"), { transB: true }), r));
}

const SINK_SHAPES: [string, number[]][] = [
  ["embed", [10, 6]],
  ["fc1.weight", [8, 6]],
  ["fc1.bias", [8]],
  ["fc2.weight", [6, 8]],
  ["fc2.bias", [6]],
  ["gamma1", [6]],
  ["ln1.weight", [6]],
  ["ln1.bias", [6]],
  ["tied", [6, 6]],
  ["gamma2", [6]],
  ["ln2.weight", [6]],
  ["ln2.bias", [6]],
  ["head", [6, 6]],
];

for (const backend of BACKENDS) {
  Deno.test({
    name:
      `backward writes gradients into the flat buffer: the numbers of the per-parameter path on ${backend.kind}`,
    fn: async () => {
      const train = async (flat: boolean) => {
        const params = makeParams(backend, SINK_SHAPES);
        const opt = new AdamW(params, { lr: 0.05, weightDecay: 0.1, flat });
        const seen: number[][] = [];
        for (let k = 0; k < 3; k++) {
          scope(() => {
            sinkStep(backend, params, k).backward();
            clipGradNorm(opt, 0.5);
            opt.step();
          });
          for (const p of params.values()) seen.push(Array.from(await p.grad!.data()));
          opt.zeroGrad();
          for (const p of params.values()) seen.push(Array.from(await p.data()));
        }
        opt.dispose();
        for (const p of params.values()) p.dispose();
        return seen;
      };
      const [flat, plain] = [await train(true), await train(false)];
      flat.forEach((v, i) => assertNumbers(backend, v, plain[i], `array ${i}`));
    },
  });
}

Deno.test({
  name: "backward writes gradients into the flat buffer: only a weight used twice is copied",
  ignore: NO_GPU,
  fn: async () => {
    const gpu = GPU!;
    const params = makeParams(gpu, SINK_SHAPES);
    const opt = new AdamW(params, { lr: 0.05 });
    for (let k = 0; k < 2; k++) {
      await gpu.sync();
      gpu.dispatchStats(true);
      scope(() => {
        sinkStep(gpu, params, k).backward();
        clipGradNorm(opt, 0.5);
        opt.step();
      });
      assert.equal(gpu.dispatchStats(true).copies, 1, `step ${k}`); // "tied"
      opt.zeroGrad();
    }
    // a second backward before the step accumulates (no sink: the gradient exists)
    scope(() => {
      sinkStep(gpu, params, 5).backward();
      sinkStep(gpu, params, 6).backward();
    });
    gpu.dispatchStats(true);
    scope(() => opt.step());
    assert.equal(gpu.dispatchStats(true).copies, SINK_SHAPES.length);
    opt.zeroGrad();
    opt.dispose();
    for (const p of params.values()) p.dispose();
  },
});
