import assert from "node:assert/strict";
import { logSoftmax, mul, softmax, sum } from "./mod.ts";
import { CPU } from "../tensor/cpu_backend.ts";
import type { Backend } from "../tensor/types.ts";
import { scopeAsync, type Tensor, tensor } from "../tensor/tensor.ts";
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

/** y = f(x) and dx for the loss Σ y·dy, on a backend. */
async function forwardBackward(
  f: (x: Tensor) => Tensor,
  x: ArrayLike<number>,
  dy: ArrayLike<number>,
  shape: number[],
  backend: Backend,
  dtype: "f32" | "f64" = "f32",
): Promise<{ y: number[]; dx: number[] }> {
  return await scopeAsync(async () => {
    const xt = tensor(x, shape, { backend, dtype, requiresGrad: true });
    const y = f(xt);
    sum(mul(y, tensor(dy, shape, { backend, dtype }))).backward();
    return { y: await y.toArray(), dx: await xt.grad!.toArray() };
  });
}

const backends: [string, Backend | null, "f32" | "f64", number][] = [
  ["CPU f64", CPU, "f64", 1e-12],
  ["CPU f32", CPU, "f32", 1e-5],
  ["WebGPU", GPU, "f32", 1e-5],
];

for (const [name, backend, dtype, tol] of backends) {
  Deno.test({
    name: `softmax() and logSoftmax() equal torch values and gradients on ${name}`,
    ignore: backend === null,
    fn: async () => {
      for (const c of fixture.softmax) {
        const s = await forwardBackward(softmax, c.x, c.dy, c.shape, backend!, dtype);
        assertClose(s.y, c.softmax, tol, `softmax ${c.shape}`);
        assertClose(s.dx, c.softmax_dx, tol, `softmax dx ${c.shape}`);
        const l = await forwardBackward(logSoftmax, c.x, c.dy, c.shape, backend!, dtype);
        assertClose(l.y, c.log_softmax, tol, `logSoftmax ${c.shape}`);
        assertClose(l.dx, c.log_softmax_dx, tol, `logSoftmax dx ${c.shape}`);
      }
    },
  });
}

Deno.test("softmax() is stable for logits of ±1000 and rows sum to one", async () => {
  const x = tensor([1000, 999, -1000, 0, -1000, -999], [2, 3], { dtype: "f64", backend: CPU });
  const y = await softmax(x).toArray();
  const e = Math.exp(-1);
  assertClose(y, [1 / (1 + e), e / (1 + e), 0, 1, 0, 0], 1e-12, "softmax");
  const ly = await logSoftmax(x).toArray();
  assert.ok(Math.abs(ly[2] - (-2000 - Math.log(1 + e))) < 1e-9, `logSoftmax ${ly[2]}`);
});

Deno.test("softmax() of a fully −∞ row gives zeros and logSoftmax() gives −∞, never NaN", async () => {
  for (const backend of [CPU, GPU]) {
    if (!backend) continue;
    const x = tensor([-Infinity, -Infinity, -Infinity, 0, -Infinity, 1], [2, 3], { backend });
    const y = await softmax(x).toArray();
    const e = Math.exp(1);
    assertClose(y, [0, 0, 0, 1 / (1 + e), 0, e / (1 + e)], 1e-6, `softmax ${backend.kind}`);
    const ly = await logSoftmax(x).toArray();
    assert.deepEqual(ly.slice(0, 3), [-Infinity, -Infinity, -Infinity], backend.kind);
    assert.equal(ly[4], -Infinity);
    assert.ok(Math.abs(ly[5] - (1 - Math.log(1 + e))) < 1e-6);
  }
});

Deno.test({
  name: "softmax() on rows of V=8000 with logits ±60: WebGPU equals CPU, forward and backward",
  ignore: NO_GPU,
  fn: async () => {
    const rng = makeRng(5);
    const shape = [3, 8000];
    const x = Float32Array.from({ length: 24000 }, () => (rng() * 2 - 1) * 60);
    const dy = Float32Array.from({ length: 24000 }, () => rng() * 2 - 1);
    for (const f of [softmax, logSoftmax]) {
      const cpu = await forwardBackward(f, x, dy, shape, CPU, "f64");
      const gpu = await forwardBackward(f, x, dy, shape, GPU!);
      assertClose(gpu.y, cpu.y, 1e-5, "y");
      assertClose(gpu.dx, cpu.dx, 1e-5, "dx");
    }
  },
});

Deno.test("softmax() rejects i32 and scalar inputs with a TypeError naming the problem", () => {
  assert.throws(() => softmax(tensor(new Int32Array([1, 2]), [2])), TypeError);
  assert.throws(() => softmax(tensor([1], [])), /at least one axis/);
});
