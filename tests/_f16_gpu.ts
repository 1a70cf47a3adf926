/**
 * The f16 WebGPU kernels against their CPU references. Run by
 * tests/f16_gpu_test.ts in a subprocess with `DENO_WEBGPU_BACKEND=vulkan`
 * (Mesa's lavapipe has shader-f16, the GL llvmpipe of the main suite has
 * not). Without a shader-f16 adapter this module exits with code 3 before
 * registering tests, and the runner reports the skip.
 *
 * @module
 */
import assert from "node:assert/strict";
import "../ops/mod.ts";
import { type GpuBackend, sharedGpuBackend } from "../gpu/backend.ts";
import { isSoftwareAdapter } from "../gpu/adapter.ts";
import { CPU } from "../tensor/cpu_backend.ts";
import { scope, type Tensor, tensor, toBackend } from "../tensor/tensor.ts";
import type { Backend } from "../tensor/types.ts";
import { cast } from "../ops/cast.ts";
import {
  accumulateParts,
  linearF16,
  matmulF16,
  type MatmulF16Accumulate,
  tuneProductF16,
} from "../ops/matmul_f16.ts";
import { linearGroup } from "../ops/linear_group.ts";
import {
  autotuneMatmul,
  autotuneMatmulsOf,
  clearMatmulTuning,
  matmul,
  useMatmulSplitK,
  useMatmulVariant,
} from "../ops/matmul.ts";
import { tunedVariant } from "../ops/_matmul_variants.ts";
import { add, geluLinear, mul, reshape, sum } from "../ops/mod.ts";
import { useGeluStage } from "../ops/gelu_linear.ts";
import { ALU_PROBES, aluProbeReference, runAluProbe } from "../bench/alu_probe.ts";
import {
  PAIR_TILES,
  pairMatmulReference,
  type PairTile,
  pairTileName,
  parsePairTile,
  randomF16,
  runPairMatmul,
} from "../bench/f16_pair_probe.ts";
import { f16ToFloat32 } from "../train/safetensors.ts";

/** Exit code of this module when the adapter has no shader-f16. */
export const NO_F16_EXIT = 3;

const gpu: GpuBackend | null = await sharedGpuBackend();
if (!gpu?.hasF16) {
  console.error(`no shader-f16 adapter (${gpu?.description ?? "no WebGPU adapter"})`);
  Deno.exit(NO_F16_EXIT);
}
const GPU: GpuBackend = gpu;

function values(n: number, seed: number, amp = 1): number[] {
  return Array.from({ length: n }, (_, i) => amp * Math.sin(seed * 12.9898 + i * 78.233));
}

/** f16 values agree within one f16 ulp of the larger magnitude (WGSL may round either way). */
function assertNearF16(got: ArrayLike<number>, ref: ArrayLike<number>, what: string): void {
  assert.equal(got.length, ref.length);
  for (let i = 0; i < ref.length; i++) {
    const r = ref[i], g = got[i];
    if (!Number.isFinite(r)) {
      assert.ok(
        Object.is(r, g) || (Number.isNaN(r) && Number.isNaN(g)),
        `${what}[${i}] ${g} vs ${r}`,
      );
      continue;
    }
    const ulp = 2 ** (Math.max(-14, Math.floor(Math.log2(Math.max(Math.abs(r), 2 ** -24)))) - 10);
    assert.ok(Math.abs(g - r) <= ulp, `${what}[${i}]: ${g} vs ${r}`);
  }
}

Deno.test("f16 GPU: cast() equals the CPU reference (odd lengths, overflow, NaN)", async () => {
  const xs = [
    ...values(37, 1, 100),
    65504,
    65519,
    65520,
    -1e6,
    NaN,
    Infinity,
    -Infinity,
    1e-7,
    3e-5,
  ];
  for (const n of [1, 2, 3, xs.length]) {
    const host = xs.slice(0, n);
    const hc = cast(tensor(host, [n], { backend: CPU }), "f16");
    const hg = cast(tensor(host, [n], { backend: GPU }), "f16");
    assert.equal(hg.dtype, "f16");
    assertNearF16(await hg.data(), await hc.data(), `cast f16 n=${n}`);
    // widening is exact: the GPU's f16 back to f32 is those very values
    const back = await cast(hg, "f32").toArray();
    assert.deepEqual(back, Array.from(await hg.data()));
  }
  // an uploaded Float16Array and its readback round-trip
  const up = tensor(new Float16Array([1.5, -2, 0.25]), [3], { backend: GPU });
  assert.deepEqual(await up.toArray(), [1.5, -2, 0.25]);
});

const SHAPES: [number, number, number, number, boolean, boolean][] = [
  // [batch, M, K, N, transA, transB]: tile remainders, vec4 and scalar loads, K = 1
  [1, 1, 1, 1, false, false],
  [1, 5, 7, 3, false, true],
  [1, 70, 24, 68, false, false],
  [2, 9, 16, 12, true, true],
  [1, 65, 17, 66, true, false],
  [1, 130, 20, 129, false, true],
];

/** `acc: "f16"` on the GPU against the CPU's group-by-group f16 accumulation. */
async function checkAcc16(
  [P, M, K, N, tA, tB]: readonly [number, number, number, number, boolean, boolean],
  group: 16 | 32 | 64 = 16,
): Promise<void> {
  const sa = [...(P > 1 ? [P] : []), ...(tA ? [K, M] : [M, K])];
  const sb = [...(P > 1 ? [P] : []), ...(tB ? [N, K] : [K, N])];
  const av = values(P * M * K, 2, 2), bv = values(P * K * N, 3, 2);
  const run = async (be: Backend) => {
    const a = cast(tensor(av, sa, { backend: be }), "f16");
    const b = cast(tensor(bv, sb, { backend: be }), "f16");
    return await matmulF16(a, b, { transA: tA, transB: tB, acc: "f16", group }).toArray();
  };
  const [ref, got] = [await run(CPU), await run(GPU)];
  // the same f16 FMAs in the same order; a GPU may round an f16 FMA through f32 (twice),
  // so allow a few f16 ulps of the partial sums (|a|, |b| ≤ 2: partial sums ≤ 4·group)
  const tol = Math.ceil(K / group) * 4 * 4 * group * 2 ** -11;
  ref.forEach((r, i) =>
    assert.ok(Math.abs(got[i] - r) <= tol, `${[P, M, K, N, tA, tB]} [${i}] ${got[i]} vs ${r}`)
  );
}

async function checkMatmul(
  [P, M, K, N, tA, tB]: readonly [number, number, number, number, boolean, boolean],
  modes: readonly ("f32" | "f16" | "round")[],
  stages: readonly ("f32" | "f16")[] = ["f32"],
): Promise<void> {
  const sa = [...(P > 1 ? [P] : []), ...(tA ? [K, M] : [M, K])];
  const sb = [...(P > 1 ? [P] : []), ...(tB ? [N, K] : [K, N])];
  const a = values(P * M * K, 2, 2), b = values(P * K * N, 3, 2);
  const what = `${[P, M, K, N, tA, tB]}`;
  // the workgroup staging of f32 accumulation: f16 values widened as they are staged (the
  // default) or f16 slices widened at each product (the benchmark's comparison)
  for (const mode of modes) {
    for (const stage of stages) {
      // f16 operands for f32/f16 results; f32 operands (rounded as they load) for "round"
      const on = (be: Backend) => {
        const x = tensor(a, sa, { backend: be }), y = tensor(b, sb, { backend: be });
        return mode === "round" ? [x, y] : [cast(x, "f16"), cast(y, "f16")];
      };
      const opts = {
        transA: tA,
        transB: tB,
        out: mode === "f16" ? "f16" as const : "f32" as const,
        round: mode === "round",
      };
      const [ac, bc] = on(CPU), [ag, bg] = on(GPU);
      const ref = await matmulF16(ac, bc, opts).data();
      const got = await matmulF16(ag, bg, { ...opts, stage }).data();
      if (mode === "f32") {
        let scale = 1;
        for (const r of ref) scale = Math.max(scale, Math.abs(r));
        ref.forEach((r, i) =>
          assert.ok(
            Math.abs(got[i] - r) <= 1e-5 * scale * K,
            `${what} stage ${stage} [${i}] ${got[i]} vs ${r}`,
          )
        );
      } else assertNearF16(got, ref, `matmulF16 ${mode} stage ${stage} ${what}`);
    }
  }
}

Deno.test("f16 GPU: matmulF16() equals the CPU reference (f32 and f16 results, f32 operands)", async () => {
  for (const shape of SHAPES) await checkMatmul(shape, ["f32", "f16", "round"]);
  // f16-staged slices (each value widened at its product) give the same sums
  await checkMatmul(SHAPES[2], ["f32"], ["f16"]);
  await checkMatmul(SHAPES[5], ["round"], ["f16"]);
});

Deno.test("f16 GPU: every tile shape of the generator equals the CPU reference (f16 accumulation too)", async () => {
  // small tiles compile fast on lavapipe: single and double buffered, BK below, at and above 16,
  // padded
  // (f16 groups of 16 k flushed across slices, at the slice end, and inside a slice)
  const tiles = [
    { BM: 32, BN: 32, BK: 8, TM: 4, TN: 4, double: true },
    { BM: 16, BN: 32, BK: 16, TM: 4, TN: 8, double: false },
    { BM: 32, BN: 16, BK: 32, TM: 8, TN: 4, double: true },
    // padded slices (vec4<f16> rows one longer, two threads to a transposed row)
    { BM: 32, BN: 32, BK: 16, TM: 4, TN: 4, double: true, pad: true },
  ];
  for (const t of tiles) {
    useMatmulVariant(t);
    try {
      await checkMatmul([1, 37, 40, 29, false, true], ["round", "f16"]);
      await checkMatmul([2, 9, 16, 12, true, false], ["f32"], ["f32", "f16"]);
      await checkAcc16([1, 33, 50, 20, true, true]);
      // deeper groups (the benchmark's f16acc32/64): flushes every 2nd to 8th slice
      await checkAcc16([1, 20, 150, 12, false, true], 64);
    } finally {
      useMatmulVariant(null);
    }
  }
});

Deno.test("f16 GPU: matmulF16() acc f16 equals the CPU's slice-by-slice f16 accumulation", async () => {
  // the exact case: 1 + 2⁻¹² rounds back to 1 in f16, so each 16-deep slice sums to 1
  const row = [1, ...Array(15).fill(2 ** -12)];
  const one = async (be: Backend) => {
    const a = cast(tensor([...row, ...row], [1, 32], { backend: be }), "f16");
    const b = cast(tensor(new Float32Array(32).fill(1), [32, 1], { backend: be }), "f16");
    return await matmulF16(a, b, { acc: "f16" }).toArray();
  };
  assert.deepEqual(await one(CPU), [2]);
  const [got] = await one(GPU);
  if (isSoftwareAdapter(GPU.adapterInfo)) assert.equal(got, 2);
  else {
    // a hardware driver may contract or reorder the f16 FMAs of a slice (NVIDIA H200 under
    // Vulkan gave 2.00390625): between every FMA rounded (2) and the f32 sum (2 + 30·2⁻¹²)
    assert.ok(got >= 2 && got <= 2 + 30 * 2 ** -12, `f16-accumulated sum ${got}`);
  }
  for (const shape of SHAPES) await checkAcc16(shape);
  await checkAcc16(SHAPES[4], 32);
  // groups of 32: [1, 2⁻¹² × 31] twice sums to 2 (groups of 16 would give 2 + 2·2⁻⁸)
  const row32 = [1, ...Array(31).fill(2 ** -12)];
  const deep = async (be: Backend, group: 16 | 32) => {
    const a = cast(tensor([...row32, ...row32], [1, 64], { backend: be }), "f16");
    const b = cast(tensor(new Float32Array(64).fill(1), [64, 1], { backend: be }), "f16");
    return (await matmulF16(a, b, { acc: "f16", group }).toArray())[0];
  };
  assert.equal(await deep(CPU, 32), 2);
  assert.equal(await deep(CPU, 16), 2 + 2 * 2 ** -8);
  if (isSoftwareAdapter(GPU.adapterInfo)) {
    assert.equal(await deep(GPU, 32), 2);
    assert.equal(await deep(GPU, 16), 2 + 2 * 2 ** -8);
  }
});

Deno.test("f16 GPU: geluLinear() in f16 form (f32, f16 and f16/64 accumulation) equals the CPU", async () => {
  const [N, F, C] = [10, 36, 12];
  for (const acc of ["f32", "f16", "f16/64"] as const) {
    const grads = (be: Backend) => {
      const u = tensor(values(N * F, 7, 3), [N, F], { backend: be, requiresGrad: true });
      const w = tensor(values(C * F, 8, 0.5), [C, F], { backend: be, requiresGrad: true });
      const b = tensor(values(C, 9), [C], { backend: be, requiresGrad: true });
      const r = tensor(values(N * C, 10), [N, C], { backend: be });
      const y = geluLinear(u, w, b, { dropout: { p: 0.25, seed: 5 }, half: acc });
      sum(mul(y, r)).backward();
      return [y, u.grad!, w.grad!, b.grad!].map((t) => t.toArray());
    };
    const cpu = await Promise.all(grads(CPU)), gpuOut = await Promise.all(grads(GPU));
    cpu.forEach((ref, k) => {
      // f16 operands: a product's rounding differs by an f16 ulp at most per term
      const scale = Math.max(1, ...ref.map(Math.abs));
      ref.forEach((r, i) =>
        assert.ok(
          Math.abs(gpuOut[k][i] - r) <= 4e-3 * scale,
          `${acc} ${["y", "du", "dw", "db"][k]}[${i}] ${gpuOut[k][i]} vs ${r}`,
        )
      );
    });
  }
});

Deno.test("f16 GPU: the kept GELU stage gives the separate stage's f16 gradients bit for bit", async () => {
  const [N, F, C] = [10, 36, 12];
  const grads = async (stage: "separate" | "kept", acc: MatmulF16Accumulate) => {
    useGeluStage(stage);
    try {
      const u = tensor(values(N * F, 7, 3), [N, F], { backend: GPU, requiresGrad: true });
      const w = tensor(values(C * F, 8, 0.5), [C, F], { backend: GPU, requiresGrad: true });
      const b = tensor(values(C, 9), [C], { backend: GPU, requiresGrad: true });
      const r = tensor(values(N * C, 10), [N, C], { backend: GPU });
      const y = geluLinear(u, w, b, { dropout: { p: 0.25, seed: 5 }, half: acc });
      GPU.dispatchStats(true);
      sum(mul(y, r)).backward();
      const ops = Object.keys(GPU.dispatchStats(true).perOp);
      return { ops, data: await Promise.all([y, u.grad!, w.grad!, b.grad!].map((t) => t.data())) };
    } finally {
      useGeluStage(null);
    }
  };
  for (const acc of ["f32", "f16/64"] as const) {
    const [plain, kept] = [await grads("separate", acc), await grads("kept", acc)];
    plain.data.forEach((want, k) => assert.deepEqual(kept.data[k], want, `${acc} array ${k}`));
    assert.ok(kept.ops.includes("linearGradF16") && !kept.ops.includes("geluWeightGrad"));
  }
});

Deno.test("f16 GPU: a Linear-shaped f16 forward and backward equal the CPU", async () => {
  const [N, C, F] = [6, 12, 20];
  const grads = async (be: Backend) => {
    const x = tensor(values(N * C, 4), [N, C], { backend: be, requiresGrad: true });
    const w = tensor(values(F * C, 5, 0.5), [F, C], { backend: be, requiresGrad: true });
    const r = tensor(values(N * F, 6), [N, F], { backend: be });
    const y = matmulF16(x, w, { transB: true }); // the autocast Linear: no cast passes
    sum(mul(y, r)).backward();
    return [await y.toArray(), await x.grad!.toArray(), await w.grad!.toArray()];
  };
  const [cpu, gpuOut] = [await grads(CPU), await grads(GPU)];
  cpu.forEach((ref, k) => assertNearF16(gpuOut[k], ref, ["y", "dx", "dw"][k]));
});

Deno.test("f16 GPU: other ops refuse f16 tensors with a clear error", async () => {
  const h: Tensor = cast(tensor([1, 2], [2], { backend: GPU }), "f16");
  assert.throws(() => mul(h, h), /no f16 WebGPU kernel/);
  const back = await toBackend(h, CPU);
  assert.equal(back.dtype, "f16");
});

Deno.test("f16 GPU: split K (forced) equals the CPU: f32 and rounded results, f16 groups kept whole", async () => {
  try {
    useMatmulVariant({ BM: 32, BN: 32, BK: 8, TM: 4, TN: 4, double: true });
    useMatmulSplitK(3);
    await checkMatmul([1, 37, 70, 29, false, true], ["f32", "round", "f16"]);
    await checkMatmul([2, 9, 50, 12, true, false], ["f32", "round"]);
    await checkAcc16([1, 33, 70, 20, true, true]);
    // 8-deep slices split 6 ways would cut the groups of 16 k in half; the ranges are whole
    // groups instead, so each group still sums 1 + 15·2⁻¹² to 1 in f16
    useMatmulSplitK(6);
    const row = [1, ...Array(15).fill(2 ** -12)];
    const a = cast(tensor([...row, ...row, ...row], [1, 48], { backend: GPU }), "f16");
    const b = cast(tensor(new Float32Array(48).fill(1), [48, 1], { backend: GPU }), "f16");
    const [got] = await matmulF16(a, b, { acc: "f16" }).toArray();
    if (isSoftwareAdapter(GPU.adapterInfo)) assert.equal(got, 3);
    else assert.ok(got >= 3 && got <= 3 + 45 * 2 ** -12, `f16-accumulated sum ${got}`);
  } finally {
    useMatmulSplitK(null);
    useMatmulVariant(null);
  }
});

Deno.test("f16 GPU: linearF16() and its fused gradients equal the CPU and the unfused ops: tile remainders, exact tiles, split K, a pending gradient", async () => {
  const run = async (
    be: Backend,
    [B, T, I, O]: number[],
    acc: MatmulF16Accumulate,
    fused = true,
  ) => {
    const x0 = tensor(values(B * T * I, 31, 2), [B, T, I], { backend: be, requiresGrad: true });
    const s = tensor(values(B * T * I, 32), [B, T, I], { backend: be });
    const w = tensor(values(O * I, 33, 0.5), [O, I], { backend: be, requiresGrad: true });
    const b = tensor(values(O, 34), [O], { backend: be, requiresGrad: true });
    const r = tensor(values(B * T * O, 35, 1e2), [B, T, O], { backend: be });
    const y = scope(() => {
      // x is used twice: the Linear's dx kernel adds the gradient pending from mul(x, x)
      const x = mul(x0, s);
      const y = fused ? linearF16(x, w, b, { acc }) : add(
        reshape(matmulF16(reshape(x, [-1, I]), w, { transB: true, ...accumulateParts(acc) }), [
          B,
          T,
          O,
        ]),
        b,
      );
      add(sum(mul(y, r)), sum(mul(x, x))).backward();
      return y;
    });
    return await Promise.all([y, x0.grad!, w.grad!, b.grad!].map((t) => t.toArray()));
  };
  const near = (got: number[][], ref: number[][], rel: number, what: string) => {
    ref.forEach((want, k) => {
      const scale = Math.max(1, ...want.map(Math.abs));
      want.forEach((v, i) =>
        assert.ok(
          Math.abs(got[k][i] - v) <= rel * scale,
          `${what} ${["y", "dx", "dW", "db"][k]}[${i}] ${got[k][i]} vs ${v}`,
        )
      );
    });
  };
  const check = async (dims: number[], acc: MatmulF16Accumulate, what: string) => {
    const got = await run(GPU, dims, acc);
    // f16 accumulation rounds partial sums far larger than a cancelling result, and a GPU may
    // round an f16 FMA twice: against the unfused ops on the same tiles (the same f16 sums)
    const ref = acc === "f32" ? await run(CPU, dims, acc) : await run(GPU, dims, acc, false);
    // f16 operands: a rounded gradient may differ by an f16 ulp, f32 sums by their order
    near(got, ref, acc === "f32" ? 2e-3 : 1e-5, `${what} ${acc} ${dims}`);
  };
  for (const acc of ["f32", "f16"] as const) await check([2, 3, 12, 20], acc, "heuristic");
  try {
    // double-buffered (row sums of the slice before last) and single-buffered tiles
    useMatmulVariant({ BM: 32, BN: 32, BK: 16, TM: 4, TN: 4, double: true });
    await check([2, 32, 32, 64], "f32", "exact double"); // no bounds checks
    await check([1, 37, 20, 45], "f16", "remainders double");
    useMatmulSplitK(3); // the weight gradient and dx in K ranges, then the reduction
    await check([1, 70, 20, 36], "f32", "split double");
    useMatmulSplitK(null);
    useMatmulVariant({ BM: 32, BN: 32, BK: 16, TM: 4, TN: 4, double: false });
    await check([1, 37, 20, 45], "f32", "remainders single");
    useMatmulSplitK(3);
    await check([2, 32, 32, 32], "f16", "split exact single");
    useMatmulSplitK(null);
    // groups of 64 k (f16/64): K 70 forward, 74 rows for dW
    await check([2, 37, 70, 45], "f16/64", "deep groups single");
  } finally {
    useMatmulSplitK(null);
    useMatmulVariant(null);
  }
});

Deno.test("f16 GPU: the tuner times f16 products as f16 kernels (forced), each form by itself", async () => {
  const [M, K, N] = [40, 72, 20];
  const x = tensor(values(M * K, 71, 2), [M, K], { backend: GPU });
  const w = tensor(values(N * K, 72, 0.5), [N, K], { backend: GPU });
  const h64 = () => matmulF16(x, w, { transB: true, acc: "f16", group: 64 });
  const variants = ["t32x32k16_4x4", "t32x32k8_4x4d"];
  try {
    const { tunings } = await autotuneMatmulsOf(GPU, () => {
      h64().dispose();
      matmul(x, w, { transB: true }).dispose();
    }, { force: true, product: tuneProductF16, variants, minTimeMs: 1 });
    assert.deepEqual(tunings.map((t) => t.shape.form ?? "f32").sort(), ["f32", "h16g64"]);
    for (const t of tunings) {
      assert.ok(t.tuned, `${t.shape.form} tuned`);
      assert.deepEqual(Object.keys(t.ms).sort(), [...variants].sort());
      assert.deepEqual(t.rejected, []);
      assert.equal(tunedVariant(t.shape), t.variant);
    }
    // the f16 form's kernel still gives the group-by-group f16 sums
    const ref = await matmulF16(
      tensor(values(M * K, 71, 2), [M, K], { backend: CPU }),
      tensor(values(N * K, 72, 0.5), [N, K], { backend: CPU }),
      { transB: true, acc: "f16", group: 64 },
    ).toArray();
    const got = await h64().toArray();
    ref.forEach((r, i) => assert.ok(Math.abs(got[i] - r) <= 0.05, `[${i}] ${got[i]} vs ${r}`));
    // a form the product does not give is left to the f32 product's choice
    const [t] = await autotuneMatmul(GPU, [{ M, N, K, transB: true, form: "h8" }], {
      force: true,
      product: tuneProductF16,
      variants,
      minTimeMs: 1,
    });
    assert.equal(t.tuned, false);
    // nor does a workload's tuning without a product time one: nothing to do, every step
    clearMatmulTuning();
    const none = await autotuneMatmulsOf(GPU, () => h64().dispose(), {
      force: true,
      variants,
      minTimeMs: 1,
    });
    assert.deepEqual(none.tunings, []);
  } finally {
    clearMatmulTuning();
    x.dispose();
    w.dispose();
  }
});

Deno.test("f16 GPU: linearGroup() in f16 form equals the CPU (f32 accumulation) and the f16 layers one by one (f16 accumulation), split K too", async () => {
  const run = async (
    be: Backend,
    [B, T, I, O]: number[],
    acc: MatmulF16Accumulate,
    grouped: boolean,
  ) => {
    const x0 = tensor(values(B * T * I, 41, 2), [B, T, I], { backend: be, requiresGrad: true });
    const ws = [0, 1, 2].map((g) =>
      tensor(values(O * I, 42 + g, 0.5), [O, I], { backend: be, requiresGrad: true })
    );
    const bs = [0, 1, 2].map((g) =>
      tensor(values(O, 45 + g), [O], { backend: be, requiresGrad: true })
    );
    const ys = scope(() => {
      const x = mul(x0, x0); // x's gradient pending when the layers' backward runs
      const ys = grouped
        ? linearGroup(x, ws, bs, { half: acc })
        : ws.map((w, g) => linearF16(x, w, bs[g], { acc }));
      let loss = sum(x);
      ys.forEach((y, g) => {
        const r = tensor(values(B * T * O, 50 + g, 1e2), [B, T, O], { backend: be });
        loss = add(loss, sum(mul(y, r)));
      });
      loss.backward();
      return ys;
    });
    const all = [...ys, x0.grad!, ...ws.map((w) => w.grad!), ...bs.map((b) => b.grad!)];
    return await Promise.all(all.map((t) => t.toArray()));
  };
  const check = async (dims: number[], acc: MatmulF16Accumulate, what: string) => {
    const got = await run(GPU, dims, acc, true);
    const ref = acc === "f32" ? await run(CPU, dims, acc, true) : await run(GPU, dims, acc, false);
    ref.forEach((want, k) => {
      const scale = Math.max(1, ...want.map(Math.abs));
      const tol = (acc === "f32" ? 2e-3 : 1e-5) * scale;
      want.forEach((v, i) =>
        assert.ok(
          Math.abs(got[k][i] - v) <= tol,
          `${what} ${acc} array ${k}[${i}] ${got[k][i]} vs ${v}`,
        )
      );
    });
  };
  try {
    // one small tile (fast to compile on lavapipe), with and without split K
    useMatmulVariant({ BM: 32, BN: 32, BK: 16, TM: 4, TN: 4, double: true });
    await check([2, 3, 12, 20], "f32", "remainders");
    useMatmulSplitK(3);
    await check([1, 70, 20, 36], "f32", "split");
    await check([2, 32, 32, 32], "f16", "split exact");
    useMatmulSplitK(null);
    await check([2, 37, 70, 45], "f16/64", "deep groups");
  } finally {
    useMatmulSplitK(null);
    useMatmulVariant(null);
  }
});

Deno.test("f16 GPU: the ALU probes of bench/alu_probe.ts compute their CPU references", async () => {
  for (const p of ALU_PROBES.filter((p) => p.type === "f16")) {
    const r = await runAluProbe(GPU, p, { iters: 4, workgroups: 1, repeats: 1 });
    assert.deepEqual(r.out, aluProbeReference(p, 4), p.name);
  }
});

Deno.test("f16 GPU: the paired f16 matmul probe equals its CPU emulation (even/odd-k f16 sums, f32 totals), NN and NT", async () => {
  const check = async (t: PairTile, M: number, N: number, K: number, seed: number) => {
    for (const transB of [false, true]) {
      const a = randomF16(M * K, seed), b = randomF16(K * N, seed + 1);
      const r = await runPairMatmul(GPU, t, a, b, M, N, K, { repeats: 1, transB });
      const [af, bf] = [f16ToFloat32(a), f16ToFloat32(b)];
      const ref = pairMatmulReference(af, bf, M, N, K, t.group, { transB });
      const what = `${pairTileName(t)} ${M}x${N}x${K}${transB ? " NT" : ""}`;
      if (isSoftwareAdapter(GPU.adapterInfo)) {
        // bit for bit, with the FMA fused or (lavapipe) the product rounded first
        const split = pairMatmulReference(af, bf, M, N, K, t.group, { fused: false, transB });
        const same = (x: Float32Array) => x.every((v, i) => v === r.out[i]);
        assert.ok(same(ref) || same(split), `${what}: neither emulation`);
        assert.ok(!same(ref) || !same(split), `${what}: the emulations cannot tell apart`);
      } else {
        // a driver may keep f16 sums wider than f16 (see the acc f16 test above)
        for (let i = 0; i < ref.length; i++) {
          assert.ok(Math.abs(r.out[i] - ref[i]) <= 2e-2, `${what}[${i}]: ${r.out[i]} vs ${ref[i]}`);
        }
      }
    }
  };
  // small tiles, several workgroups, f16 groups flushed across slices, at K's end only (g0),
  // a row of As per 4 threads (4 × 8) and one per thread (8 × 4)
  await check({ BM: 32, BN: 32, BKP: 4, TM: 8, TN: 8, group: 32 }, 64, 96, 80, 3);
  await check({ BM: 32, BN: 32, BKP: 8, TM: 4, TN: 8, group: 0 }, 64, 64, 48, 5);
  await check({ BM: 16, BN: 32, BKP: 2, TM: 4, TN: 4, group: 8 }, 32, 64, 24, 7);
  // two rows' pairs per vec4<f16>
  await check({ BM: 32, BN: 32, BKP: 4, TM: 8, TN: 8, group: 32, v4: true }, 64, 96, 80, 11);
  await check({ BM: 16, BN: 32, BKP: 2, TM: 4, TN: 4, group: 0, v4: true }, 32, 64, 24, 13);
  // the probe's own 8 × 8 tile, one workgroup
  await check(PAIR_TILES[0], 128, 128, 128, 9);
  assert.equal(pairTileName(PAIR_TILES[0]), "p128x128k16_8x8g64");
  assert.deepEqual(parsePairTile("p128x128k16_8x8g64"), PAIR_TILES[0]);
  assert.throws(() => parsePairTile("p128x128k16_8x8g40"), TypeError);
  assert.deepEqual(parsePairTile("p64x128k16_4x8g64v"), PAIR_TILES[2]);
});
