import assert from "node:assert/strict";
import "./mod.ts";
import { scope, type Tensor, tensor } from "../tensor/tensor.ts";
import { cast } from "./cast.ts";
import {
  accumulateParts,
  F16_ACCUMULATE,
  halfF32,
  linearF16,
  matmulF16,
  type MatmulF16Accumulate,
  roundToF16,
} from "./matmul_f16.ts";
import { add, mul, reshape, sum } from "./mod.ts";
import { matmulF64, roundF16 } from "../tests/_f16_reference.ts";

function values(n: number, seed: number, amp = 1): number[] {
  return Array.from({ length: n }, (_, i) => amp * Math.sin(seed * 12.9898 + i * 78.233));
}

const SHAPES: [number, number, number, boolean, boolean][] = [
  [1, 1, 1, false, false],
  [5, 7, 3, false, true],
  [9, 16, 13, true, false],
  [4, 33, 6, true, true],
];

Deno.test("matmulF16() equals the float64 product of the f16 operands to f32 accumulation", async () => {
  for (const [M, K, N, tA, tB] of SHAPES) {
    const a = values(M * K, 1, 3).map(roundF16), b = values(K * N, 2, 2).map(roundF16);
    const ah = cast(tensor(a, tA ? [K, M] : [M, K]), "f16");
    const bh = cast(tensor(b, tB ? [N, K] : [K, N]), "f16");
    const y = matmulF16(ah, bh, { transA: tA, transB: tB });
    assert.equal(y.dtype, "f32");
    assert.deepEqual(y.shape, [M, N]);
    const ref = matmulF64(a, b, M, K, N, tA, tB);
    const got = await y.toArray();
    // f32 accumulation: each partial sum rounds by ≤ 2⁻²⁴ of the running magnitude ≤ Σ|a||b| ≤ 6K
    const tol = K * 6 * 2 ** -23;
    ref.forEach((r, i) =>
      assert.ok(Math.abs(got[i] - r) <= tol, `[${M},${K},${N}] ${got[i]} vs ${r}`)
    );
    const yh = await matmulF16(ah, bh, { transA: tA, transB: tB, out: "f16" }).toArray();
    ref.forEach((r, i) => {
      const ulp = 2 ** (Math.max(-14, Math.floor(Math.log2(Math.abs(r) || 1))) - 10);
      assert.ok(Math.abs(yh[i] - roundF16(r)) <= ulp, `f16 out ${yh[i]} vs ${roundF16(r)}`);
    });
  }
});

Deno.test("matmulF16() backward gives f16 gradients equal to the float64 rule", async () => {
  const [M, K, N] = [3, 5, 4];
  const x = tensor(values(M * K, 3), [M, K], { requiresGrad: true });
  const w = tensor(values(N * K, 4), [N, K], { requiresGrad: true });
  const r = values(M * N, 5);
  let gx: Tensor | null = null;
  scope(() => {
    const xh = cast(x, "f16"), wh = cast(w, "f16");
    const y = matmulF16(xh, wh, { transB: true });
    sum(mul(y, tensor(r, [M, N]))).backward();
    gx = x.grad;
  });
  assert.equal(gx!.dtype, "f32");
  // dx = dy · W (dy = r rounded to f16), dW = dyᵀ · x, each rounded to f16
  const dy = r.map(roundF16);
  const xr = (await x.toArray()).map(roundF16), wr = (await w.toArray()).map(roundF16);
  const dx = matmulF64(dy, wr, M, N, K).map(roundF16);
  const dw = matmulF64(dy, xr, N, M, K, true, false).map(roundF16);
  const near = (got: number[], ref: Float64Array, what: string) =>
    ref.forEach((v, i) =>
      assert.ok(Math.abs(got[i] - v) <= 2 ** -10 * Math.max(Math.abs(v), 2 ** -14), `${what}[${i}]`)
    );
  near(await x.grad!.toArray(), dx, "dx");
  near(await w.grad!.toArray(), dw, "dw");
});

Deno.test("matmulF16() sums the gradient of a shared 2-D operand over the batch", async () => {
  const a = tensor(values(2 * 3 * 4, 6), [2, 3, 4]);
  const w = tensor(values(4 * 5, 7), [4, 5], { requiresGrad: true });
  scope(() => sum(matmulF16(cast(a, "f16"), cast(w, "f16"))).backward());
  assert.deepEqual(w.grad!.shape, [4, 5]);
  const ar = (await a.toArray()).map(roundF16);
  const ref = new Float64Array(20);
  for (let p = 0; p < 2; p++) {
    for (let m = 0; m < 3; m++) {
      for (let k = 0; k < 4; k++) {
        for (let n = 0; n < 5; n++) ref[k * 5 + n] += ar[p * 12 + m * 4 + k];
      }
    }
  }
  const got = await w.grad!.toArray();
  ref.forEach((v, i) => assert.ok(Math.abs(got[i] - roundF16(v)) <= 2 ** -10 * Math.abs(v)));
});

Deno.test("matmulF16() of f32 operands equals the product of their f16 casts, gradients included", async () => {
  const [M, K, N] = [4, 6, 3];
  const run = async (castFirst: boolean) => {
    const x = tensor(values(M * K, 8, 4), [M, K], { requiresGrad: true });
    const w = tensor(values(N * K, 9, 2), [N, K], { requiresGrad: true });
    const r = tensor(values(M * N, 10, 1e3), [M, N]);
    const y = scope(() => {
      const y = castFirst
        ? matmulF16(cast(x, "f16"), cast(w, "f16"), { transB: true })
        : matmulF16(x, w, { transB: true });
      sum(mul(y, r)).backward();
      return y;
    });
    return [await y.toArray(), await x.grad!.toArray(), await w.grad!.toArray()];
  };
  const [fused, chained] = [await run(false), await run(true)];
  assert.deepEqual(fused, chained);
});

Deno.test("matmulF16() round: an f32 result holds f16 values", async () => {
  const a = tensor(values(12, 11, 3), [3, 4]), b = tensor(values(8, 12, 3), [4, 2]);
  const y = await matmulF16(a, b, { round: true }).toArray();
  const h = await matmulF16(a, b, { out: "f16" }).toArray();
  assert.deepEqual(y, h);
  y.forEach((v) => assert.equal(v, roundF16(v)));
});

Deno.test("matmulF16() refuses i32 operands and mismatched inner dimensions", () => {
  const h = cast(tensor([1, 2, 3, 4], [2, 2]), "f16");
  assert.throws(
    () => matmulF16(tensor(new Int32Array(4), [2, 2]), h),
    /operands must be f16 or f32/,
  );
  assert.throws(() => matmulF16(h, cast(tensor([1, 2, 3], [3, 1]), "f16")), /inner dimensions/);
});

Deno.test("matmulF16() acc f16 sums each 16-deep K slice in f16, the slices in f32", async () => {
  // a row of [1, 2⁻¹² × 15] twice, times ones: in f16, 1 + 2⁻¹² rounds back to 1 (half an ulp
  // of 1 is 2⁻¹¹), so each slice sums to 1 and the total is 2; f32 accumulation keeps them all
  const row = [1, ...Array(15).fill(2 ** -12)];
  const a = cast(tensor([...row, ...row], [1, 32]), "f16");
  const b = cast(tensor(new Float32Array(32).fill(1), [32, 1]), "f16");
  assert.deepEqual(await matmulF16(a, b, { acc: "f16" }).toArray(), [2]);
  assert.deepEqual(await matmulF16(a, b).toArray(), [Math.fround(2 + 30 * 2 ** -12)]);
});

Deno.test("matmulF16() acc f16 group 32 and 64: deeper K groups summed in f16", async () => {
  // [1, 2⁻¹² × 31] twice: groups of 16 see the 16 small values of each second half whole
  // (2⁻⁸, exact), groups of 32 start each at 1 and lose them all, one group of 64 too
  const row = [1, ...Array(31).fill(2 ** -12)];
  const a = cast(tensor([...row, ...row], [1, 64]), "f16");
  const b = cast(tensor(new Float32Array(64).fill(1), [64, 1]), "f16");
  const sum16 = await matmulF16(a, b, { acc: "f16" }).toArray();
  assert.deepEqual(sum16, [2 + 2 * 2 ** -8]);
  assert.deepEqual(await matmulF16(a, b, { acc: "f16", group: 16 }).toArray(), sum16);
  assert.deepEqual(await matmulF16(a, b, { acc: "f16", group: 32 }).toArray(), [2]);
  // one group of 64: 1 + 31 lost, then 1 + 1 = 2 and 2 + 2⁻¹² lost again
  assert.deepEqual(await matmulF16(a, b, { acc: "f16", group: 64 }).toArray(), [2]);
  // the group passes to the gradients (dx sums over 48 outputs: groups of 16 and 64 differ)
  const x = tensor(values(12, 3), [3, 4], { requiresGrad: true });
  const w = tensor(values(192, 4, 8), [48, 4], { requiresGrad: true });
  const r = tensor(values(144, 5, 8), [3, 48]);
  sum(mul(matmulF16(x, w, { transB: true, acc: "f16", group: 64 }), r)).backward();
  const dx = (g: 16 | 64) => matmulF16(r, w, { out: "f32", round: true, acc: "f16", group: g });
  assert.deepEqual(await x.grad!.toArray(), await dx(64).toArray());
  assert.notDeepEqual(await dx(16).toArray(), await dx(64).toArray());
  assert.throws(
    // @ts-expect-error: 48 is not a group depth
    () => matmulF16(a, b, { acc: "f16", group: 48 }),
    /group must be 16, 32 or 64, got 48/,
  );
});

Deno.test("matmulF16() acc f16 stays within the f16 rounding bound of the exact product, gradients too", async () => {
  for (const [M, K, N, tA, tB] of SHAPES) {
    const a = values(M * K, 1, 3).map(roundF16), b = values(K * N, 2, 2).map(roundF16);
    const ah = cast(tensor(a, tA ? [K, M] : [M, K]), "f16");
    const bh = cast(tensor(b, tB ? [N, K] : [K, N]), "f16");
    const got = await matmulF16(ah, bh, { transA: tA, transB: tB, acc: "f16" }).toArray();
    const ref = matmulF64(a, b, M, K, N, tA, tB);
    // each of ≤ 16 f16 roundings per slice errs by ≤ 2⁻¹¹ of a partial sum ≤ Σ|a||b| ≤ 6·16
    const tol = Math.ceil(K / 16) * 16 * 6 * 16 * 2 ** -11;
    ref.forEach((r, i) => assert.ok(Math.abs(got[i] - r) <= tol, `${got[i]} vs ${r}`));
  }
  // the backward rule keeps the accumulation mode: gradients equal acc-f16 products of dy
  const x = tensor(values(12, 3), [3, 4], { requiresGrad: true });
  const w = tensor(values(20, 4), [5, 4], { requiresGrad: true });
  const r = tensor(values(15, 5), [3, 5]);
  sum(mul(matmulF16(x, w, { transB: true, acc: "f16" }), r)).backward();
  const dx = await matmulF16(r, w, { out: "f32", round: true, acc: "f16" }).toArray();
  assert.deepEqual(await x.grad!.toArray(), dx);
});

Deno.test("roundToF16() equals Math.f16round: normals, ties to even, subnormals, overflow", () => {
  const xs: number[] = [0, -0, 65504, 65519.99, 65520, -65520, 1e9, NaN, Infinity, 2 ** -25];
  for (let e = -14; e < 16; e++) {
    for (let m = 1024; m < 2048; m += 7) {
      const v = m * 2 ** (e - 10);
      xs.push(v, -v, v + 2 ** (e - 11), v - 2 ** (e - 12), (m + 0.5) * 2 ** (e - 10));
    }
  }
  for (let m = 0; m < 1024; m += 3) xs.push((m + 0.5) * 2 ** -24, m * 2 ** -24 + 2 ** -27);
  for (let i = 0; i < 2000; i++) xs.push(Math.sin(i * 12.9898) * 2 ** ((i % 40) - 20));
  for (const x of xs) assert.ok(Object.is(roundToF16(x), Math.f16round(x)), `${x}`);
});

Deno.test("linearF16() equals add(matmulF16(x, W), b) bit for bit, gradients and a pending one included", async () => {
  for (const acc of ["f32", "f16"] as const) {
    const run = (fused: boolean) => {
      const x0 = tensor(values(2 * 5 * 6, 21, 3), [2, 5, 6], { requiresGrad: true });
      const w = tensor(values(7 * 6, 22), [7, 6], { requiresGrad: true });
      const b = tensor(values(7, 23), [7], { requiresGrad: true });
      const r = tensor(values(2 * 5 * 7, 24, 1e3), [2, 5, 7]);
      const s = tensor(values(2 * 5 * 6, 25), [2, 5, 6]);
      const y = scope(() => {
        // x is used twice, so its gradient is pending when the Linear's backward runs
        const x = mul(x0, s);
        const y = fused
          ? linearF16(x, w, b, { acc })
          : add(reshape(matmulF16(reshape(x, [10, 6]), w, { transB: true, acc }), [2, 5, 7]), b);
        add(sum(mul(y, r)), sum(mul(x, x))).backward();
        return y;
      });
      return Promise.all([y, x0.grad!, w.grad!, b.grad!].map((t) => t.toArray()));
    };
    const [fused, unfused] = [await run(true), await run(false)];
    ["y", "dx", "dW", "db"].forEach((what, k) => assert.deepEqual(fused[k], unfused[k], what));
  }
});

Deno.test("linearF16() accumulation modes: f16/32 and f16/64 sum 32- and 64-deep K groups in f16, forward and backward", async () => {
  // 1 and 63 terms of 2⁻¹² (a quarter of an f16 ulp at 1): lost in a group that starts at 1,
  // kept exactly in a group of their own
  const K = 64, small = 2 ** -12;
  const row = [1, ...new Array(K - 1).fill(small)], ones = new Array(K).fill(1);
  const want: Record<MatmulF16Accumulate, number> = {
    f32: 1 + 63 * small,
    f16: 1 + 3 * 2 ** -8, // 1, then three groups of 16 small terms
    "f16/32": 1 + 2 ** -7, // 1, then one group of 32
    "f16/64": 1,
  };
  for (const acc of F16_ACCUMULATE) {
    // forward: 64 inputs into one output, the bias added in f32
    const y = linearF16(tensor(row, [1, K]), tensor(ones, [1, K]), tensor([0.5], [1]), { acc });
    assert.equal((await y.toArray())[0], want[acc] + 0.5, `y ${acc}`);
    // dx sums 64 outputs (dy·W), rounded to f16 values
    const x = tensor([1], [1, 1], { requiresGrad: true });
    const w = tensor(ones, [K, 1], { requiresGrad: true });
    scope(() =>
      sum(mul(linearF16(x, w, tensor(new Array(K).fill(0), [K]), { acc }), tensor(row, [1, K])))
        .backward()
    );
    assert.equal((await x.grad!.toArray())[0], roundToF16(want[acc]), `dx ${acc}`);
    // dW sums 64 rows (dyᵀ·x), rounded; db sums the unrounded dy in f32
    const x2 = tensor(ones, [K, 1]);
    const w2 = tensor([1], [1, 1], { requiresGrad: true });
    const b2 = tensor([0], [1], { requiresGrad: true });
    scope(() => sum(mul(linearF16(x2, w2, b2, { acc }), tensor(row, [K, 1]))).backward());
    assert.equal((await w2.grad!.toArray())[0], roundToF16(want[acc]), `dW ${acc}`);
    assert.equal((await b2.grad!.toArray())[0], 1 + 63 * small, `db ${acc}`);
  }
  // the modes as matmulF16's acc and group, and the kernel form (the default group left out)
  assert.deepEqual(accumulateParts("f16/64"), { acc: "f16", group: 64 });
  assert.deepEqual(accumulateParts("f16"), { acc: "f16" });
  assert.deepEqual(halfF32("f16/32", "round"), {
    a: "f32",
    b: "f32",
    acc: "f16",
    out: "round",
    group: 32,
  });
  assert.deepEqual(halfF32("f16", "f32"), { a: "f32", b: "f32", acc: "f16", out: "f32" });
  assert.throws(
    () =>
      linearF16(tensor(row, [1, K]), tensor(ones, [1, K]), tensor([0], [1]), {
        acc: "f16/48" as MatmulF16Accumulate,
      }),
    /Cannot linearF16: accumulation must be "f32", "f16", "f16\/32", "f16\/64", got "f16\/48"/,
  );
});

Deno.test("linearF16() without weight or bias gradients, and its errors", async () => {
  const x = tensor(values(12, 26), [3, 4], { requiresGrad: true });
  const w = tensor(values(8, 27), [2, 4]), b = tensor([0.5, -1], [2], { requiresGrad: true });
  sum(linearF16(x, w, b)).backward();
  assert.deepEqual(await b.grad!.toArray(), [3, 3]);
  assert.equal(w.grad, null);
  const wg = tensor(values(8, 28), [2, 4], { requiresGrad: true });
  sum(linearF16(x, wg, tensor([0, 0], [2]))).backward();
  const want = await matmulF16(tensor(new Float32Array(6).fill(1), [3, 2]), x, {
    transA: true,
    round: true,
  }).toArray();
  assert.deepEqual(await wg.grad!.toArray(), want);
  assert.throws(() => linearF16(x, tensor(values(6, 1), [2, 3]), b), /weight \[2, 3\]/);
  assert.throws(() => linearF16(x, w, tensor([1, 2, 3], [3])), /bias \[3\] must be \[2\]/);
  assert.throws(() => linearF16(cast(x, "f16"), w, b), /x is f16, must be f32/);
});
