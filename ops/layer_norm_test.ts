import assert from "node:assert/strict";
import { LAYER_NORM, LAYER_NORM_GRAD, layerNorm, mul, sum } from "./mod.ts";
import { CPU } from "../tensor/cpu_backend.ts";
import type { Backend } from "../tensor/types.ts";
import { apply, noGrad, scopeAsync, tensor } from "../tensor/tensor.ts";
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
    "layerNorm() on [B=4, T=33, C=256] with an offset of 100: WebGPU equals CPU, forward and backward",
  ignore: NO_GPU,
  fn: async () => {
    const rng = makeRng(3);
    const shape = [4, 33, 256];
    const n = 4 * 33 * 256;
    const c = {
      shape,
      eps: 1e-5,
      x: Array.from({ length: n }, () => 100 + rng() * 4 - 2),
      weight: Array.from({ length: 256 }, () => rng() * 2 - 1),
      bias: Array.from({ length: 256 }, () => rng() * 2 - 1),
      dy: Array.from({ length: n }, () => rng() * 2 - 1),
    };
    const cpu = await run(c, CPU, "f64");
    const gpu = await run(c, GPU!, "f32");
    assertClose(gpu.y, cpu.y, 1e-4, "y");
    assertClose(gpu.dx, cpu.dx, 1e-4, "dx");
    assertClose(gpu.dw, cpu.dw, 1e-4, "dweight");
    assertClose(gpu.db, cpu.db, 1e-4, "dbias");
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
