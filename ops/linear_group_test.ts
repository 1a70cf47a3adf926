import assert from "node:assert/strict";
import "./mod.ts";
import { GPU, NO_GPU } from "../tests/_gpu.ts";
import { CPU } from "../tensor/cpu_backend.ts";
import { scope, type Tensor, tensor } from "../tensor/tensor.ts";
import type { Backend } from "../tensor/types.ts";
import { add, matmulBias, mul, sum } from "./mod.ts";
import { linearGroup, linearGroupFits } from "./linear_group.ts";
import { linearF16, type MatmulF16Accumulate } from "./matmul_f16.ts";
import { useMatmulSplitK, useMatmulVariant } from "./matmul.ts";
import { matmulWgsl, splitReduceWgsl } from "./_matmul_wgsl.ts";

function values(n: number, seed: number, amp = 1): number[] {
  return Array.from({ length: n }, (_, i) => amp * Math.sin(seed * 12.9898 + i * 78.233));
}

/**
 * n Linear layers over one input x (used twice, so its gradient is pending when the layers'
 * backward runs): the outputs and every gradient, grouped or as n `matmulBias` calls.
 */
async function run(
  be: Backend,
  [B, T, I, O]: number[],
  n: number,
  grouped: boolean,
  half?: MatmulF16Accumulate,
): Promise<number[][]> {
  const x0 = tensor(values(B * T * I, 1), [B, T, I], { backend: be, requiresGrad: true });
  const s = tensor(values(B * T * I, 2), [B, T, I], { backend: be });
  const ws = Array.from(
    { length: n },
    (_, g) => tensor(values(O * I, 3 + g, 0.5), [O, I], { backend: be, requiresGrad: true }),
  );
  const bs = Array.from(
    { length: n },
    (_, g) => tensor(values(O, 9 + g), [O], { backend: be, requiresGrad: true }),
  );
  const ys = scope(() => {
    const x = mul(x0, s);
    const ys = grouped
      ? linearGroup(x, ws, bs, { half })
      : half
      ? ws.map((w, g) => linearF16(x, w, bs[g], { acc: half }))
      : ws.map((w, g) => matmulBias(x, w, bs[g], { transB: true }));
    let loss: Tensor = sum(mul(x, x));
    ys.forEach((y, g) => {
      const r = tensor(values(B * T * O, 20 + g), [B, T, O], { backend: be });
      loss = add(loss, sum(mul(y, r)));
    });
    loss.backward();
    return ys;
  });
  const all = [...ys, x0.grad!, ...ws.map((w) => w.grad!), ...bs.map((b) => b.grad!)];
  return await Promise.all(all.map((t) => t.toArray()));
}

Deno.test("linearGroup() equals n matmulBias layers bit for bit on the CPU, gradients and a pending one included", async () => {
  for (const n of [2, 3]) {
    const [grouped, plain] = [
      await run(CPU, [2, 5, 6, 7], n, true),
      await run(CPU, [2, 5, 6, 7], n, false),
    ];
    grouped.forEach((v, i) => assert.deepEqual(v, plain[i], `n=${n} array ${i}`));
  }
});

Deno.test("linearGroup() in f16 form equals linearF16 layers bit for bit on the CPU (both accumulations)", async () => {
  for (const acc of ["f32", "f16"] as const) {
    const dims = [2, 5, 6, 7];
    const [grouped, plain] = [
      await run(CPU, dims, 3, true, acc),
      await run(CPU, dims, 3, false, acc),
    ];
    grouped.forEach((v, i) => assert.deepEqual(v, plain[i], `${acc} array ${i}`));
  }
});

Deno.test({
  name:
    "linearGroup() on WebGPU equals the CPU: tile remainders, exact tiles, single and double buffering, split K",
  ignore: NO_GPU,
  fn: async () => {
    const check = async (dims: number[], n: number, what: string) => {
      const [ref, got] = [await run(CPU, dims, n, true), await run(GPU!, dims, n, true)];
      ref.forEach((want, k) => {
        const scale = Math.max(1, ...want.map(Math.abs));
        want.forEach((v, i) =>
          assert.ok(
            Math.abs(got[k][i] - v) <= 1e-5 * scale,
            `${what} n=${n} array ${k}[${i}]: ${got[k][i]} vs ${v}`,
          )
        );
      });
    };
    await check([2, 3, 5, 4], 3, "heuristic");
    try {
      useMatmulVariant({ BM: 32, BN: 32, BK: 8, TM: 4, TN: 4, double: true });
      await check([2, 32, 32, 32], 3, "exact double");
      await check([1, 37, 20, 36], 2, "remainders double");
      useMatmulSplitK(3); // the grouped weight gradients in K ranges, then the grouped reduction
      await check([1, 70, 20, 36], 3, "split double");
      useMatmulSplitK(null);
      useMatmulVariant({ BM: 32, BN: 32, BK: 8, TM: 4, TN: 4, double: false });
      await check([1, 37, 20, 36], 3, "remainders single");
      useMatmulSplitK(3);
      await check([2, 32, 32, 32], 2, "split exact single");
      useMatmulSplitK(null);
      useMatmulVariant({ BM: 32, BN: 32, BK: 8, TM: 4, TN: 4, double: false, pad: true });
      await check([1, 37, 20, 36], 2, "remainders padded");
    } finally {
      useMatmulSplitK(null);
      useMatmulVariant(null);
    }
  },
});

Deno.test("matmulWgsl() grouped: one binding per group, chosen by a switch on the group index", () => {
  const t = { BM: 32, BN: 32, BK: 8, TM: 4, TN: 4, double: false };
  const spec = {
    transA: false,
    transB: true,
    vecA: true,
    vecB: true,
    vecOut: true,
    exact: false,
    bias: true,
  };
  const b = matmulWgsl(t, { ...spec, group: { n: 3, role: "b" } });
  for (const name of ["b0", "b1", "b2", "bias0", "bias2", "out0", "out2"]) {
    assert.match(b, new RegExp(`var<storage, read(_write)?> ${name}:`));
  }
  assert.match(b, /fn ld_b\(i: u32\) -> vec4<f32> \{ switch zg \{ case 0u: \{ return b0\[i\]; \}/);
  assert.match(b, /fn st_out\(i: u32, v: vec4<f32>\)/);
  assert.match(b, /zg = z;/);
  assert.doesNotMatch(b, /var<storage, read> b:/);
  const a = matmulWgsl(t, {
    ...spec,
    transA: true,
    transB: false,
    bias: false,
    rowSum: true,
    group: { n: 2, role: "a" },
  });
  assert.match(a, /fn st_rsum\(i: u32, v: f32\)/);
  assert.match(a, /st_rsum\(m0 \+ tid/);
  // split K: one scratch buffer of partials; the reduction writes the groups' outputs
  const split = matmulWgsl(t, {
    ...spec,
    transA: true,
    transB: false,
    bias: false,
    rowSum: true,
    splitK: true,
    group: { n: 2, role: "a" },
  });
  assert.doesNotMatch(split, /st_out|out1/);
  const reduce = splitReduceWgsl(false, true, false, 2);
  assert.match(reduce, /var<storage, read_write> out1: array<f32>;/);
  assert.match(reduce, /st_rsum\(j - z \* u\.RM, acc\);/);
  // "k": a and b per group, the K loop run for each pair in turn into one output and addend
  const k = matmulWgsl(t, { ...spec, bias: false, addOut: true, group: { n: 3, role: "k" } });
  assert.match(k, /for \(var gk = 0u; gk < 3u; gk\+\+\) \{\n {2}zg = gk;/);
  assert.match(k, /fn ld_a\(/);
  assert.match(k, /fn ld_b\(/);
  assert.match(k, /var<storage, read> addend:/);
  assert.doesNotMatch(k, /out1|st_out/);
  // only a bias (b per group), row sums (a per group) or an addend (k)
  assert.throws(() => matmulWgsl(t, { ...spec, group: { n: 2, role: "a" } }), TypeError);
  assert.throws(() => matmulWgsl(t, { ...spec, addOut: true, group: { n: 2, role: "b" } }));
  assert.throws(() => matmulWgsl(t, { ...spec, group: { n: 1, role: "b" } }));
});

Deno.test("linearGroup() refuses mismatched layers with one-line errors", () => {
  const x = tensor(values(6, 1), [2, 3]);
  const w = tensor(values(12, 2), [4, 3]), b = tensor(values(4, 3), [4]);
  assert.throws(() => linearGroup(x, [w, w], [b]), /2 weights but 1 biases/);
  assert.throws(() => linearGroup(x, [w], [b]), /n must be an integer ≥ 2/);
  assert.throws(
    () => linearGroup(x, [w, tensor(values(15, 4), [5, 3])], [b, b]),
    /weight 1 \[5, 3\] and bias 1 \[4\]/,
  );
});

Deno.test("linearGroupFits(): the grouped kernels' storage buffers within the adapter's limit", () => {
  const gpu = (limit: number) =>
    ({
      kind: "webgpu",
      device: { limits: { maxStorageBuffersPerShaderStage: limit } },
    }) as unknown as Backend;
  assert.equal(linearGroupFits(gpu(8), 2), true); // 7 bindings
  assert.equal(linearGroupFits(gpu(8), 3), false); // 10
  assert.equal(linearGroupFits(gpu(16), 3), true);
  assert.equal(linearGroupFits(CPU, 12), true);
});
