import assert from "node:assert/strict";
import {
  add,
  gelu,
  LAYER_NORM,
  LAYER_NORM_GRAD,
  layerNorm,
  mul,
  reshape,
  residual,
  scale,
  sum,
} from "./mod.ts";
import { CPU } from "../tensor/cpu_backend.ts";
import type { Backend } from "../tensor/types.ts";
import { apply, noGrad, scope, scopeAsync, type Tensor, tensor } from "../tensor/tensor.ts";
import { presetConfig } from "../nn/config.ts";
import { initContext } from "../nn/module.ts";
import { Seq2Seq } from "../nn/seq2seq.ts";
import { batchLoss } from "../train/batch_tensors.ts";
import { GPU, NO_GPU } from "../tests/_gpu.ts";
import { makeRng } from "../tensor/rng.ts";
import fixture from "../tests/testdata/ops/torch_ops.json" with { type: "json" };

function assertClose(got: ArrayLike<number>, want: ArrayLike<number>, tol: number, what: string) {
  assert.equal(got.length, want.length, `${what}: length`);
  let scale = 1e-30;
  for (let i = 0; i < want.length; i++) scale = Math.max(scale, Math.abs(want[i]));
  for (let i = 0; i < want.length; i++) {
    assert.ok(
      Math.abs(got[i] - want[i]) <= tol * Math.max(1, scale),
      `${what}[${i}]: got ${got[i]}, want ${want[i]}`,
    );
  }
}

interface LnRun {
  y: number[];
  dx: number[];
  dw: number[];
  db: number[];
}

async function run(
  c: { shape: number[]; eps: number; x: number[]; weight: number[]; bias: number[]; dy: number[] },
  backend: Backend,
  dtype: "f32" | "f64",
): Promise<LnRun> {
  return await scopeAsync(async () => {
    const C = c.shape[c.shape.length - 1];
    const o = { backend, dtype, requiresGrad: true };
    const x = tensor(c.x, c.shape, o), w = tensor(c.weight, [C], o), b = tensor(c.bias, [C], o);
    const y = layerNorm(x, w, b, c.eps);
    sum(mul(y, tensor(c.dy, c.shape, { backend, dtype }))).backward();
    return {
      y: await y.toArray(),
      dx: await x.grad!.toArray(),
      dw: await w.grad!.toArray(),
      db: await b.grad!.toArray(),
    };
  });
}

type Case = Parameters<typeof run>[0];

/** x uniform in [offset − 2, offset + 2), weight, bias and dy in [−1, 1), drawn in that order. */
function randomCase(shape: number[], rng: () => number, offset = 0): Case {
  const C = shape[shape.length - 1], n = shape.reduce((a, b) => a * b, 1);
  return {
    shape,
    eps: 1e-5,
    x: Array.from({ length: n }, () => offset + rng() * 4 - 2),
    weight: Array.from({ length: C }, () => rng() * 2 - 1),
    bias: Array.from({ length: C }, () => rng() * 2 - 1),
    dy: Array.from({ length: n }, () => rng() * 2 - 1),
  };
}

/** The f32 WebGPU forward and backward of `c` within `tol` of the float64 CPU's. */
async function assertGpuMatchesCpu(c: Case, tol: number, what: string): Promise<void> {
  const cpu = await run(c, CPU, "f64");
  const gpu = await run(c, GPU!, "f32");
  assertClose(gpu.y, cpu.y, tol, `y${what}`);
  assertClose(gpu.dx, cpu.dx, tol, `dx${what}`);
  assertClose(gpu.dw, cpu.dw, tol, `dweight${what}`);
  assertClose(gpu.db, cpu.db, tol, `dbias${what}`);
}

const backends: [string, Backend | null, "f32" | "f64", number][] = [
  ["CPU f64", CPU, "f64", 1e-10],
  ["CPU f32", CPU, "f32", 2e-5],
  ["WebGPU", GPU, "f32", 2e-5],
];

for (const [name, backend, dtype, tol] of backends) {
  Deno.test({
    name: `layerNorm() equals torch layer_norm values and gradients on ${name}`,
    ignore: backend === null,
    fn: async () => {
      for (const c of fixture.layer_norm) {
        const r = await run(c, backend!, dtype);
        assertClose(r.y, c.y, tol, `y ${c.shape}`);
        assertClose(r.dx, c.dx, tol, `dx ${c.shape}`);
        assertClose(r.dw, c.dweight, tol, `dweight ${c.shape}`);
        assertClose(r.db, c.dbias, tol, `dbias ${c.shape}`);
      }
    },
  });
}

Deno.test("layerNorm() normalizes each row to zero mean and unit (biased) variance", async () => {
  const x = tensor([1, 2, 3, 4, 10, 10, 10, 14], [2, 4], { dtype: "f64" });
  const [y, mean, rstd] = apply(LAYER_NORM, [
    x,
    tensor([1, 1, 1, 1], [4]),
    tensor([0, 0, 0, 0], [4]),
  ], {
    eps: 0,
  });
  assert.deepEqual(await mean.toArray(), [2.5, 11]);
  assertClose(await rstd.toArray(), [1 / Math.sqrt(1.25), 1 / Math.sqrt(3)], 1e-12, "rstd");
  const v = await y.toArray();
  for (const r of [0, 1]) {
    const row = v.slice(r * 4, r * 4 + 4);
    const m = row.reduce((a, b) => a + b) / 4;
    const s = row.reduce((a, b) => a + (b - m) ** 2, 0) / 4;
    assert.ok(Math.abs(m) < 1e-12 && Math.abs(s - 1) < 1e-12, `row ${r}: mean ${m} var ${s}`);
  }
});

Deno.test({
  name:
    "layerNorm() row sums of every lane count (32 to 256 per row, radix-8 trees): WebGPU equals CPU",
  ignore: NO_GPU,
  fn: async () => {
    // forward lanes per row: C 200 → 32, 500 → 64, 1000 → 128, 2000 → 256; the backward's
    // rows: 256 lanes (C ≤ 128: 64, the tests above); 3 rows: a workgroup's segments past the last row
    const rng = makeRng(5);
    for (const C of [200, 500, 1000, 2000]) {
      await assertGpuMatchesCpu(randomCase([3, C], rng), 1e-5, ` C=${C}`);
    }
  },
});

Deno.test({
  name:
    "layerNorm() on [B=4, T=33, C=256] with an offset of 100: WebGPU equals CPU, forward and backward",
  ignore: NO_GPU,
  fn: async () => {
    await assertGpuMatchesCpu(randomCase([4, 33, 256], makeRng(3), 100), 1e-4, "");
  },
});

for (const [R, C] of [[65536, 2], [20, 40]]) {
  Deno.test({
    name: `layerNormGrad on WebGPU sums dweight and dbias over ${R} rows to 1e-6 of float64`,
    ignore: NO_GPU,
    fn: async () => {
      // dy ≈ 1.001: one serial f32 sum over 65536 rows drifts by ~5e-4 relative
      const rng = makeRng(5);
      const n = R * C;
      const data = {
        x: Array.from({ length: n }, () => rng() * 2 - 1),
        w: Array.from({ length: C }, () => rng() * 2 - 1),
        mean: Array.from({ length: R }, () => rng() * 0.2 - 0.1),
        rstd: Array.from({ length: R }, () => 1 + rng()),
        dy: Array.from({ length: n }, () => 1.001 + rng() * 1e-4),
      };
      const grads = (backend: Backend, dtype: "f32" | "f64") =>
        scopeAsync(async () => {
          const o = { backend, dtype };
          const ins = [
            tensor(data.x, [R, C], o),
            tensor(data.w, [C], o),
            tensor(data.mean, [R], o),
            tensor(data.rstd, [R], o),
            tensor(data.dy, [R, C], o),
          ];
          const [dx, dw, db] = apply(LAYER_NORM_GRAD, ins, { eps: 1e-5 });
          return [await dx.toArray(), await dw.toArray(), await db.toArray()];
        });
      const [cdx, cdw, cdb] = await grads(CPU, "f64");
      const [gdx, gdw, gdb] = await grads(GPU!, "f32");
      assertClose(gdx, cdx, 1e-5, "dx");
      assertClose(gdw, cdw, 1e-6, "dweight");
      assertClose(gdb, cdb, 1e-6, "dbias");
    },
  });
}

Deno.test("LayerNorm kernels index their per-thread column arrays by constants: no loop over columns", () => {
  const f32 = (shape: number[]) => ({ shape, dtype: "f32" as const });
  const [R, C] = [8192, 512];
  const fwd = LAYER_NORM.gpu!(
    { inputs: [f32([R, C]), f32([C]), f32([C])], outputs: [f32([R, C]), f32([R]), f32([R])] },
    { eps: 1e-5 },
  ).kernels[0].code;
  const bwd = LAYER_NORM_GRAD.gpu!(
    {
      inputs: [f32([R, C]), f32([C]), f32([R]), f32([R]), f32([R, C])],
      outputs: [f32([R, C]), f32([C]), f32([C])],
    },
    { eps: 1e-5 },
  ).kernels[0].code;
  // forward: 64 lanes a row, 8 columns a thread; backward: 256 lanes, 2 columns
  for (const [code, cols] of [[fwd, 8], [bwd, 2]] as const) {
    assert.doesNotMatch(code, /for \(var t = /);
    assert.match(code, new RegExp(`const t = ${cols - 1}u;`));
    assert.doesNotMatch(code, new RegExp(`const t = ${cols}u;`));
  }
});

Deno.test("layerNorm() without the tape frees the saved mean and rstd at once", () => {
  const before = CPU.memoryStats().liveBuffers;
  const x = tensor([1, 2, 3, 4], [2, 2]);
  const y = noGrad(() => layerNorm(x, tensor([1, 1], [2]), tensor([0, 0], [2]), 1e-5));
  assert.equal(CPU.memoryStats().liveBuffers - before, 4); // x, weight, bias, y
  y.dispose();
});

Deno.test("layerNorm() rejects a weight of the wrong width with a TypeError naming both shapes", () => {
  assert.throws(
    () =>
      layerNorm(tensor([1, 2, 3, 4], [2, 2]), tensor([1, 1, 1], [3]), tensor([0, 0], [2]), 1e-5),
    /weight \[3\] must be \[2\] for x \[2, 2\]/,
  );
});

// ------------------------------------------------ absorbing the pending gradient

interface BlockRun {
  /** Gradients of x0, then of each LayerNorm's weight and bias. */
  grads: number[][];
  /** `accumulate` dispatches of the backward (WebGPU with profiling), else -1. */
  accumulates: number;
}

/**
 * Gradients of a pre-LN block `y = x + f(LN1(x))`, or with `decoder` of
 * `h = x + f(LN1(x)); y = (h + f(LN2(h))) + x` (x feeds LN1 and two
 * residuals, h feeds LN2 and one), `f(u) = gelu(u)·k`, loss `Σ y·k2`. With `wrap`
 * each LayerNorm reads its input through an identity reshape: the reshape
 * then owns the input's use, the LayerNorm finds no pending gradient to take,
 * and autograd sums the gradients with its `accumulate` adds as without the
 * hook.
 */
async function blockRun(
  backend: Backend,
  dtype: "f32" | "f64",
  decoder: boolean,
  wrap: boolean,
): Promise<BlockRun> {
  const rng = makeRng(decoder ? 11 : 7);
  const [B, T, C] = [2, 3, 37];
  const vals = (n: number, lo: number, hi: number) =>
    Array.from({ length: n }, () => lo + rng() * (hi - lo));
  const o = { backend, dtype };
  const p = { ...o, requiresGrad: true };
  const x0 = tensor(vals(B * T * C, -2, 2), [B, T, C], p);
  const k = tensor(vals(B * T * C, -1, 1), [B, T, C], o);
  const k2 = tensor(vals(B * T * C, -1, 1), [B, T, C], o);
  const norms = (decoder ? [1, 2] : [1]).map(() => ({
    w: tensor(vals(C, 0.5, 1.5), [C], p),
    b: tensor(vals(C, -0.5, 0.5), [C], p),
  }));
  const gpu = backend === GPU && GPU.canProfile ? GPU : null;
  return await scopeAsync(async () => {
    const ln = (t: Tensor, i: number) =>
      layerNorm(wrap ? reshape(t, t.shape) : t, norms[i].w, norms[i].b, 1e-5);
    const f = (u: Tensor) => mul(gelu(u), k);
    const x = scale(x0, 1); // not a leaf: a leaf's .grad is never taken
    const h = residual(x, f(ln(x, 0)));
    const y = decoder ? add(residual(h, f(ln(h, 1))), x) : h;
    const loss = sum(mul(y, k2));
    gpu?.beginProfile();
    loss.backward();
    const accumulates = gpu ? (await gpu.endProfile()).accumulate?.dispatches ?? 0 : -1;
    const grads = [await x0.grad!.toArray()];
    for (const n of norms) grads.push(await n.w.grad!.toArray(), await n.b.grad!.toArray());
    return { grads, accumulates };
  });
}

Deno.test("layerNorm() absorbing the pending gradient gives the unfused f32 gradients bit for bit on the CPU", async () => {
  for (const decoder of [false, true]) {
    const unfused = await blockRun(CPU, "f32", decoder, true);
    const fused = await blockRun(CPU, "f32", decoder, false);
    fused.grads.forEach((g, i) => assert.deepEqual(g, unfused.grads[i], `grad ${i}`));
  }
});

for (const decoder of [false, true]) {
  const graph = decoder ? "x feeding LayerNorm and two residuals" : "y = x + f(layerNorm(x))";
  for (const [name, backend, dtype, tol] of backends) {
    Deno.test({
      name: `layerNorm() absorbing x's pending gradient gives the gradients of ${graph} on ${name}`,
      ignore: backend === null,
      fn: async () => {
        const ref = await blockRun(CPU, "f64", decoder, true);
        const got = await blockRun(backend!, dtype, decoder, false);
        const what = ["dx", "dweight1", "dbias1", "dweight2", "dbias2"];
        got.grads.forEach((g, i) => assertClose(g, ref.grads[i], tol, what[i]));
        if (got.accumulates >= 0) {
          // wrapped, every extra use of x or h costs an accumulate (block: x 1;
          // decoder: x 2, h 1); absorbed, only x's two residual gradients are summed
          const wrapped = await blockRun(backend!, dtype, decoder, true);
          assert.equal(wrapped.accumulates, decoder ? 3 : 1);
          assert.equal(got.accumulates, decoder ? 1 : 0);
        }
      },
    });
  }
}

Deno.test({
  name: "a tiny Seq2Seq training step on WebGPU sums gradients with 1 accumulate dispatch (was 22)",
  ignore: NO_GPU || !GPU?.canProfile,
  fn: async () => {
    const g = GPU!;
    const cfg = presetConfig("tiny", { vocab_size: 64 });
    const model = new Seq2Seq(cfg, initContext(0, g));
    const [B, S, T] = [4, 8, 8];
    const rng = makeRng(1);
    const ids = (n: number) => Int32Array.from({ length: n }, () => 4 + Math.floor(rng() * 60));
    await scopeAsync(async () => {
      const batch = {
        src: tensor(ids(B * S), [B, S], { dtype: "i32", backend: g }),
        srcMask: tensor(new Float32Array(B * S).fill(1), [B, S], { backend: g }),
        tgt: tensor(ids(B * T), [B, T], { dtype: "i32", backend: g }),
        tgtMask: tensor(new Float32Array(B * T).fill(1), [B, T], { backend: g }),
        targets: tensor(ids(B * T), [B * T], { dtype: "i32", backend: g }),
      };
      assert.ok(g.beginProfile());
      scope(() => batchLoss(model, batch, { seed: 0 }).loss.backward());
      const prof = await g.endProfile();
      // 2 encoder blocks × 2 LayerNorms + 2 decoder blocks × 3, and the 2 final norms: 12.
      // Each but the stacks' first norm1 is fused with the residual before it
      // (ops/residual_layer_norm.ts), and every LayerNorm absorbs the gradient of its
      // input's other use, the residual stream's, in its kernel (22 → 12).
      // The input of the 4 self-attentions feeds q, k and v, and the encoder output
      // the 4 cross-attention k/v projections: each group's dx is one kernel that sums
      // its projections' and absorbs the gradient pending for its input
      // (ops/linear_group.ts linearGroupDx: 4 self, 2 cross; 12 → 1). The one left: the
      // tied embedding weight (a leaf) gets the embedding's and lm_head's gradients.
      assert.equal(prof.accumulate?.dispatches, 1);
      assert.equal(prof.linearGroupDx?.dispatches, 6);
      assert.equal(prof.matmulAccumulate, undefined);
      // 12 LayerNorms, one dispatch each: 2 alone, 10 with the residual's backward
      assert.equal(prof.layerNormGrad?.dispatches, 2);
      assert.equal(prof.residualLayerNormGrad?.dispatches, 10);
    });
    model.dispose();
  },
});
