/**
 * AdamW, the warmup schedule and clipping against torch.optim.AdamW
 * (tests/testdata/optim/adamw.json, from tools/make_optim_fixtures.py): K steps
 * from the same weights and gradients give the same weights within 1e-5
 * relative, on the CPU and on WebGPU. Also checkpoint state round trips and the
 * no-readback property of a step.
 */
import assert from "node:assert/strict";
import "../ops/mod.ts";
import { AdamW, defaultNoDecay } from "./adamw.ts";
import { clipGradNorm } from "./clip.ts";
import { linearWarmupSchedule } from "./schedule.ts";
import { CPU } from "../tensor/cpu_backend.ts";
import { scope, type Tensor, tensor } from "../tensor/tensor.ts";
import type { Backend } from "../tensor/types.ts";
import { GPU, NO_GPU } from "../tests/_gpu.ts";

interface FixtureCase {
  name: string;
  lr: number;
  betas: [number, number];
  eps: number;
  weight_decay: number;
  schedule: null | { num_warmup_steps: number; num_training_steps: number };
  max_grad_norm: number | null;
  steps: number;
  params: { name: string; shape: number[]; group: "decay" | "no_decay"; init: number[] }[];
  grads: number[][][];
  lr_per_step: number[];
  grad_norm: number[];
  after: number[][][];
}

const FIXTURE = JSON.parse(
  await Deno.readTextFile(new URL("../tests/testdata/optim/adamw.json", import.meta.url)),
) as { cases: FixtureCase[] };

function assertRel(got: ArrayLike<number>, want: ArrayLike<number>, rel: number, what: string) {
  assert.equal(got.length, want.length, `${what}: length`);
  for (let i = 0; i < want.length; i++) {
    const tol = rel * Math.max(Math.abs(want[i]), 1e-3);
    assert.ok(Math.abs(got[i] - want[i]) <= tol, `${what}[${i}]: ${got[i]} vs torch ${want[i]}`);
  }
}

async function replay(c: FixtureCase, backend: Backend, flat: boolean): Promise<void> {
  const params = c.params.map((p) => tensor(p.init, p.shape, { backend, requiresGrad: true }));
  const group = new Map(c.params.map((p) => [p.name, p.group]));
  const opt = new AdamW(c.params.map((p, i) => ({ name: p.name, tensor: params[i] })), {
    lr: c.lr,
    betas: c.betas,
    eps: c.eps,
    weightDecay: c.weight_decay,
    noDecay: (name) => group.get(name) === "no_decay",
    flat,
  });
  assert.equal(opt.flat, flat);
  const sched = c.schedule
    ? linearWarmupSchedule(c.schedule.num_warmup_steps, c.schedule.num_training_steps)
    : () => 1;
  for (let k = 0; k < c.steps; k++) {
    const lr = c.lr * sched(k);
    assert.ok(Math.abs(lr - c.lr_per_step[k]) <= 1e-15, `${c.name} step ${k}: lr ${lr}`);
    const norm = scope(() => {
      params.forEach((p, i) => (p.grad = tensor(c.grads[k][i], p.shape, { backend }).keep()));
      const norm = c.max_grad_norm ? clipGradNorm(opt, c.max_grad_norm) : null;
      opt.step(lr);
      opt.zeroGrad();
      return norm;
    });
    if (norm) {
      assertRel([await norm.item()], [c.grad_norm[k]], 1e-6, `${c.name} step ${k} norm`);
      norm.dispose();
    }
    for (let i = 0; i < params.length; i++) {
      assertRel(
        await params[i].data(),
        c.after[k][i],
        1e-5,
        `${c.name} ${backend.kind} step ${k} ${c.params[i].name}`,
      );
    }
  }
  assert.equal(opt.stepCount, c.steps);
  opt.dispose();
  for (const p of params) p.dispose();
}

for (const c of FIXTURE.cases) {
  for (const flat of [true, false]) {
    const path = flat ? "flat" : "per-parameter";
    Deno.test(`AdamW (${path}) equals torch.optim.AdamW on the CPU: ${c.name}`, () =>
      replay(c, CPU, flat));
    Deno.test({
      name: `AdamW (${path}) equals torch.optim.AdamW on WebGPU: ${c.name}`,
      ignore: NO_GPU,
      fn: () => replay(c, GPU!, flat),
    });
  }
}

Deno.test("defaultNoDecay() exempts biases, norm weights and gammas, nothing else", () => {
  const exempt = [
    "encoder.layers.0.norm1.weight",
    "encoder.layers.0.norm1.bias",
    "encoder.norm.weight",
    "decoder.layers.1.gamma3",
    "encoder.layers.0.self_attn.q_proj.bias",
    "encoder.layers.0.ffn.fc1.bias",
  ];
  const decayed = [
    "encoder.embed.weight",
    "encoder.pos.weight",
    "encoder.layers.0.self_attn.q_proj.weight",
    "encoder.layers.0.ffn.w_gate.weight",
    "decoder.lm_head.weight",
  ];
  for (const n of exempt) assert.equal(defaultNoDecay(n), true, n);
  for (const n of decayed) assert.equal(defaultNoDecay(n), false, n);
  const w = tensor([1], [1]), b = tensor([1], [1]);
  const opt = new AdamW(new Map([["fc.weight", w], ["fc.bias", b]]), { lr: 1 });
  assert.deepEqual(opt.params.map((p) => p.decay), [true, false]);
});

function makeModel(backend: Backend): Map<string, Tensor> {
  return new Map([
    ["fc.weight", tensor([0.5, -1, 2, 0.25, 3, -0.75], [2, 3], { backend, requiresGrad: true })],
    ["fc.bias", tensor([0.1, -0.2], [2], { backend, requiresGrad: true })],
  ]);
}

function setGrads(params: Map<string, Tensor>, k: number): void {
  let j = 0;
  for (const p of params.values()) {
    const g = Array.from({ length: p.size }, () => Math.sin(++j * (k + 1)));
    p.grad = tensor(g, p.shape, { backend: p.backend }).keep();
  }
}

Deno.test("AdamW state() and loadState() resume bit for bit on the CPU", async () => {
  const opts = { lr: 0.05, weightDecay: 0.1 };
  const a = makeModel(CPU);
  const optA = new AdamW(a, opts);
  for (let k = 0; k < 3; k++) {
    setGrads(a, k);
    optA.step();
    optA.zeroGrad();
  }
  // b: two steps, checkpoint (weights + state), fresh optimizer, one more step
  const b = makeModel(CPU);
  const optB = new AdamW(b, opts);
  for (let k = 0; k < 2; k++) {
    setGrads(b, k);
    optB.step();
    optB.zeroGrad();
  }
  const state = await optB.state();
  assert.equal(state.step, 2);
  assert.deepEqual(Object.keys(state.expAvg), ["fc.weight", "fc.bias"]);
  assert.deepEqual(state.expAvgSq["fc.weight"].shape, [2, 3]);
  const weights = new Map<string, Tensor>();
  for (const [n, p] of b) {
    weights.set(n, tensor(await p.data(), p.shape, { requiresGrad: true }));
  }
  const optC = new AdamW(weights, opts);
  optC.loadState(state);
  assert.equal(optC.stepCount, 2);
  setGrads(weights, 2);
  optC.step();
  for (const [n, p] of a) assert.deepEqual(await weights.get(n)!.data(), await p.data(), n);
});

Deno.test("AdamW loadState() names the missing or mismatched moment", () => {
  const opt = new AdamW(makeModel(CPU), { lr: 0.1 });
  const m = { shape: [2, 3], data: new Float32Array(6) },
    b = { shape: [2], data: new Float32Array(2) };
  assert.throws(
    () =>
      opt.loadState({
        step: 1,
        expAvg: { "fc.weight": m, "fc.bias": b },
        expAvgSq: { "fc.weight": m },
      }),
    /exp_avg_sq\.fc\.bias is missing/,
  );
  assert.throws(
    () =>
      opt.loadState({
        step: 1,
        expAvg: { "fc.weight": m, "fc.bias": m },
        expAvgSq: { "fc.weight": m, "fc.bias": b },
      }),
    /exp_avg\.fc\.bias has shape \[2, 3\].*parameter has \[2\]/,
  );
  assert.throws(
    () =>
      opt.loadState({
        step: 1,
        expAvg: { "fc.weight": m, "fc.bias": b, "x.weight": m },
        expAvgSq: { "fc.weight": m, "fc.bias": b },
      }),
    /exp_avg\.x\.weight names no parameter/,
  );
  assert.equal(opt.stepCount, 0);
});

Deno.test("AdamW skips parameters without a gradient and rejects bad options", async () => {
  const params = makeModel(CPU);
  const opt = new AdamW(params, { lr: 0.1 });
  params.get("fc.weight")!.grad = tensor([1, 1, 1, 1, 1, 1], [2, 3]);
  opt.step();
  assert.deepEqual(await params.get("fc.bias")!.toArray(), [0.1, -0.2].map(Math.fround));
  assert.throws(() => opt.step(-1), RangeError);
  assert.throws(() => new AdamW(params, { lr: 0.1, betas: [1, 0.9] }), RangeError);
  assert.throws(
    () =>
      new AdamW(
        [{ name: "a", tensor: tensor([1], [1]) }, { name: "a", tensor: tensor([1], [1]) }],
        { lr: 1 },
      ),
    /"a" given twice/,
  );
});

Deno.test("AdamW takes a Map, [name, tensor] pairs (model.namedParameters()) or records alike", () => {
  const params = makeModel(CPU);
  const names = (o: AdamW) => o.params.map((p) => p.name);
  const want = [...params.keys()];
  assert.deepEqual(names(new AdamW(params, { lr: 0.1 })), want);
  assert.deepEqual(names(new AdamW([...params], { lr: 0.1 })), want);
  const records = [...params].map(([name, tensor]) => ({ name, tensor }));
  assert.deepEqual(names(new AdamW(records, { lr: 0.1 })), want);
  assert.throws(
    () => new AdamW([["a", [1, 2]]] as unknown as [string, Tensor][], { lr: 0.1 }),
    new TypeError("AdamW: parameter 0 is not a [name, tensor] pair or a {name, tensor} record"),
  );
});

Deno.test({
  name: "an AdamW step with clipping records on WebGPU without a readback or a submit",
  ignore: NO_GPU,
  fn: async () => {
    const gpu = GPU!;
    for (const flat of [false, true]) {
      const params = makeModel(gpu);
      const opt = new AdamW(params, { lr: 0.1, flat });
      await gpu.sync();
      setGrads(params, 0);
      gpu.dispatchStats(true);
      const norm = scope(() => {
        const norm = clipGradNorm(opt, 0.5);
        opt.step();
        opt.zeroGrad();
        return norm;
      });
      const stats = gpu.dispatchStats(true);
      assert.equal(stats.readbacks, 0);
      assert.equal(stats.submits, 0);
      if (flat) {
        assert.deepEqual(stats.perOp, { sumSquaresFlat: 1, clipCoef: 1, adamwFlat: 1 });
        assert.equal(stats.copies, 2); // the two gradients into the flat buffer
      } else {
        assert.deepEqual(stats.perOp, { sumSquaresPartial: 2, clipCoef: 1, adamw: 2 });
      }
      assert.ok((await norm.item()) > 0.5);
      norm.dispose();
      opt.dispose();
      for (const p of params.values()) p.dispose();
    }
  },
});
