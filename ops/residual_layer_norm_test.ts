/**
 * Tests of the fused residual + LayerNorm beyond the registry's checks (which
 * backpropagate one output at a time): the stream `out` and the normalised
 * `y` feeding one loss, as in a pre-LN block, against `residual()` then
 * `layerNorm()` — values and every gradient, on the CPU (f64, f32) and on
 * WebGPU — and the recompute after a scope freed the saved statistics.
 */
import assert from "node:assert/strict";
import { CPU } from "../tensor/cpu_backend.ts";
import { makeRng } from "../tensor/rng.ts";
import { scope, type Tensor, tensor } from "../tensor/tensor.ts";
import type { Backend } from "../tensor/types.ts";
import { GPU, NO_GPU } from "../tests/_gpu.ts";
import { add, layerNorm, mul, residual, residualLayerNorm, sum } from "./mod.ts";

const SHAPE = [3, 4, 70];
const C = SHAPE[2];

/** Leaves (x, branch, gamma, weight, bias) and the loss weights, seeded. */
function leaves(backend: Backend, dtype: "f32" | "f64") {
  const rng = makeRng(21);
  const mk = (shape: number[], lo = -1, hi = 1, grad = true) =>
    tensor(
      Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => lo + rng() * (hi - lo)),
      shape,
      { backend, dtype, requiresGrad: grad },
    );
  return {
    x: mk(SHAPE),
    branch: mk(SHAPE),
    gamma: mk([C], -2, 2),
    weight: mk([C], 0.5, 1.5),
    bias: mk([C]),
    w1: mk(SHAPE, -1, 1, false),
    w2: mk(SHAPE, -1, 1, false),
  };
}

const OPTS = { dropout: { p: 0.2, seed: 7 }, dropPath: { p: 0.3, seed: 11 }, eps: 1e-5 };

/** `Σ w1·out + Σ w2·y`, backpropagated once; the values and gradients. */
async function run(backend: Backend, dtype: "f32" | "f64", fused: boolean) {
  const l = leaves(backend, dtype);
  let out: Tensor, y: Tensor;
  if (fused) {
    [out, y] = residualLayerNorm(l.x, l.branch, {
      gamma: l.gamma,
      weight: l.weight,
      bias: l.bias,
      ...OPTS,
    });
  } else {
    out = residual(l.x, l.branch, {
      gamma: l.gamma,
      dropout: OPTS.dropout,
      dropPath: OPTS.dropPath,
    });
    y = layerNorm(out, l.weight, l.bias, OPTS.eps);
  }
  add(sum(mul(out, l.w1)), sum(mul(y, l.w2))).backward();
  const grads: Record<string, number[]> = {};
  for (const k of ["x", "branch", "gamma", "weight", "bias"] as const) {
    grads[k] = Array.from(await l[k].grad!.data());
  }
  return { out: Array.from(await out.data()), y: Array.from(await y.data()), grads };
}

function close(a: number[], b: number[], tol: number, what: string): void {
  assert.equal(a.length, b.length, what);
  for (let i = 0; i < a.length; i++) {
    if (!(Math.abs(a[i] - b[i]) <= tol * Math.max(1, Math.abs(b[i])))) {
      assert.fail(`${what}[${i}]: ${a[i]} vs ${b[i]}`);
    }
  }
}

for (const [name, dtype, tol] of [["f64", "f64", 0], ["f32", "f32", 0]] as const) {
  Deno.test(`residualLayerNorm() equals residual() then layerNorm() on the CPU (${name}), values and gradients, bit for bit`, async () => {
    const f = await run(CPU, dtype, true), u = await run(CPU, dtype, false);
    close(f.out, u.out, tol, "out");
    close(f.y, u.y, tol, "y");
    for (const k of Object.keys(u.grads)) close(f.grads[k], u.grads[k], tol, `d${k}`);
  });
}

Deno.test({
  name:
    "residualLayerNorm() on WebGPU equals residual() then layerNorm() on the CPU, values and gradients",
  ignore: NO_GPU,
  fn: async () => {
    const f = await run(GPU!, "f32", true), u = await run(CPU, "f32", false);
    close(f.out, u.out, 1e-6, "out");
    close(f.y, u.y, 1e-4, "y");
    for (const k of Object.keys(u.grads)) close(f.grads[k], u.grads[k], 1e-4, `d${k}`);
  },
});

Deno.test("residualLayerNorm() backward recomputes the saved statistics when a scope freed them", async () => {
  const a = leaves(CPU, "f64"), r = leaves(CPU, "f64");
  const opts = (l: typeof a) => ({ gamma: l.gamma, weight: l.weight, bias: l.bias, ...OPTS });
  // mean and rstd (outputs 3 and 4) are created and freed inside the scope
  const [ao, ay] = scope(() => residualLayerNorm(a.x, a.branch, opts(a)));
  add(sum(mul(ao, a.w1)), sum(mul(ay, a.w2))).backward();
  const [ro, ry] = residualLayerNorm(r.x, r.branch, opts(r));
  add(sum(mul(ro, r.w1)), sum(mul(ry, r.w2))).backward();
  for (const k of ["x", "branch", "gamma", "weight", "bias"] as const) {
    close(Array.from(await a[k].grad!.data()), Array.from(await r[k].grad!.data()), 0, `d${k}`);
  }
});

Deno.test("residualLayerNorm() with only the stream in the loss gives the residual's gradients", async () => {
  for (const backend of NO_GPU ? [CPU] : [CPU, GPU!]) {
    const dtype = backend === CPU ? "f64" : "f32";
    const a = leaves(backend, dtype), r = leaves(CPU, dtype);
    const [out] = residualLayerNorm(a.x, a.branch, {
      gamma: a.gamma,
      weight: a.weight,
      bias: a.bias,
      ...OPTS,
    });
    sum(mul(out, a.w1)).backward();
    const ro = residual(r.x, r.branch, {
      gamma: r.gamma,
      dropout: OPTS.dropout,
      dropPath: OPTS.dropPath,
    });
    sum(mul(ro, r.w1)).backward();
    for (const k of ["x", "branch", "gamma"] as const) {
      const tol = backend === CPU ? 0 : 1e-5;
      close(Array.from(await a[k].grad!.data()), Array.from(await r[k].grad!.data()), tol, `d${k}`);
    }
    assert.equal(a.weight.grad, null);
  }
});
