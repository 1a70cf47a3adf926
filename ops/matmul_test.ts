/**
 * Matmul kernels and their selection: the generated kernels equal a plain
 * triple loop for every specialisation (on small tiles, which compile in
 * well under a second on llvmpipe, and on every registered variant when the
 * adapter is a hardware GPU or WEBSEQ_MATMUL_TEST_ALL=1), the heuristic and
 * the forced/tuned precedence, and the autotuner.
 */
import assert from "node:assert/strict";
import "./mod.ts";
import { GPU, NO_GPU } from "../tests/_gpu.ts";
import { evalStdout } from "../tests/_eval.ts";
import { isSoftwareAdapter } from "../gpu/adapter.ts";
import { makeRng } from "../tensor/rng.ts";
import { apply, tensor } from "../tensor/tensor.ts";
import { CPU } from "../tensor/cpu_backend.ts";
import type { GpuBackend } from "../gpu/backend.ts";
import { GELU_WEIGHT_GRAD, geluLinear } from "./gelu_linear.ts";
import {
  autotuneMatmul,
  autotuneMatmulsOf,
  configureMatmul,
  fastestOf,
  LINEAR_GRAD,
  MATMUL,
  matmul,
  MATMUL_ADD,
  MATMUL_VARIANTS,
  matmulBias,
  matmulGeometry,
  matmulKernel,
  matmulPlan,
  matmulSplitKFor,
  type MatmulTile,
  matmulVariantFor,
  parseTileName,
  relativeError,
  runoff,
  sameResults,
  stridedMatmulKernel,
  tileName,
  timeCandidate,
  TUNE_TOLERANCE,
  useMatmulSplitK,
  useMatmulVariant,
} from "./matmul.ts";
import {
  clearTunedVariants,
  DEFAULT_TARGET,
  halfForm,
  heuristicVariant,
  loadTunedTable,
  type MatmulTarget,
  matmulTarget,
  matmulTile,
  matmulVariant,
  parseHalfForm,
  selectMatmulVariant,
  setMatmulTarget,
  setTunedSplit,
  setTunedVariant,
  shapeClassKey,
  shapeKey,
  splitKFor,
  splitUnit,
  tunedTable,
  tunedVariant,
  variantFits,
} from "./_matmul_variants.ts";
import { matmulWgsl, transposingUnits } from "./_matmul_wgsl.ts";
import type { Backend, OpDef } from "../tensor/types.ts";

/** One call: sizes, batch, which operand is shared (2-D), transposes, bias. */
interface Case {
  M: number;
  N: number;
  K: number;
  P?: number;
  shared?: "a" | "b";
  transA?: boolean;
  transB?: boolean;
  bias?: boolean;
}

/** The plain reference: float64 triple loop over the stored layouts. */
function reference(c: Case, a: Float32Array, b: Float32Array, bias: Float32Array): Float64Array {
  const { M, N, K } = c, P = c.P ?? 1;
  const out = new Float64Array(P * M * N);
  for (let z = 0; z < P; z++) {
    const ab = c.shared === "a" ? 0 : z * M * K, bb = c.shared === "b" ? 0 : z * K * N;
    for (let m = 0; m < M; m++) {
      for (let n = 0; n < N; n++) {
        let s = c.bias ? bias[n] : 0;
        for (let k = 0; k < K; k++) {
          const av = c.transA ? a[ab + k * M + m] : a[ab + m * K + k];
          const bv = c.transB ? b[bb + n * K + k] : b[bb + k * N + n];
          s += av * bv;
        }
        out[z * M * N + m * N + n] = s;
      }
    }
  }
  return out;
}

/** Runs the case on the GPU with the current variant selection; returns the max abs error. */
async function gpuError(c: Case, seed: number): Promise<number> {
  const { M, N, K } = c, P = c.P ?? 1;
  const rng = makeRng(seed);
  const rand = (n: number) => Float32Array.from({ length: n }, () => rng() * 2 - 1);
  const aShape = [...(P > 1 && c.shared !== "a" ? [P] : []), ...(c.transA ? [K, M] : [M, K])];
  const bShape = [...(P > 1 && c.shared !== "b" ? [P] : []), ...(c.transB ? [N, K] : [K, N])];
  const ad = rand(aShape.reduce((x, y) => x * y, 1)), bd = rand(bShape.reduce((x, y) => x * y, 1));
  const biasd = rand(N);
  const a = tensor(ad, aShape, { backend: GPU! }), b = tensor(bd, bShape, { backend: GPU! });
  const bias = tensor(biasd, [N], { backend: GPU! });
  const opts = { transA: c.transA, transB: c.transB };
  const y = c.bias ? matmulBias(a, b, bias, opts) : matmul(a, b, opts);
  assert.deepEqual(y.shape, [...(P > 1 ? [P] : []), M, N]);
  const got = await y.data();
  for (const t of [a, b, bias, y]) t.dispose();
  const ref = reference(c, ad, bd, biasd);
  let err = 0;
  for (let i = 0; i < ref.length; i++) err = Math.max(err, Math.abs(got[i] - ref[i]));
  return err;
}

const tile = (BM: number, BN: number, BK: number, TM: number, TN: number, double: boolean) =>
  matmulTile(BM, BN, BK, TM, TN, double);

/**
 * Small tiles of the same generator and the cases that reach each
 * specialisation: transposes, vec4/scalar loads and stores, exact/general,
 * batch with a shared operand, bias, size 1, partial load slots (12×8: 6
 * threads for 8 vec4s of B), 8-wide thread blocks.
 */
const SMALL: [MatmulTile, Case[]][] = [
  [tile(8, 8, 4, 4, 4, false), [
    { M: 13, N: 11, K: 7 }, // scalar everything, general
    { M: 12, N: 12, K: 8, P: 2, shared: "a", transA: true, transB: true }, // vec, general
    { M: 16, N: 16, K: 8, P: 2, shared: "b", transB: true }, // exact
    { M: 1, N: 1, K: 1, transA: true },
    { M: 9, N: 8, K: 12, transA: true, bias: true }, // scalar a, vec4 b and out
  ]],
  [tile(12, 8, 4, 4, 4, true), [
    { M: 24, N: 16, K: 8, P: 3, bias: true }, // exact, double-buffered, partial slots
    { M: 13, N: 10, K: 9, transB: true, bias: true }, // scalar bias
    { M: 12, N: 20, K: 12, transA: true }, // vec4, general in N
  ]],
  [tile(8, 16, 8, 4, 8, true), [{ M: 20, N: 20, K: 12, transA: true, transB: true, bias: true }]],
  [tile(16, 8, 4, 8, 4, false), [{ M: 32, N: 16, K: 16, P: 2, shared: "a" }]],
  // flat slice arrays (MatmulTile.flat), single and double buffered
  [{ ...tile(8, 8, 4, 4, 4, false), flat: true }, [
    { M: 13, N: 11, K: 7, transB: true, bias: true },
    { M: 12, N: 12, K: 8, P: 2, shared: "b", transA: true },
  ]],
  [{ ...tile(12, 8, 4, 4, 4, true), flat: true }, [{ M: 24, N: 16, K: 8, P: 3, bias: true }]],
];

Deno.test({
  name: "matmulWgsl() kernels on small tiles equal the reference in every specialisation",
  ignore: NO_GPU,
  fn: () => assertTilesMatch(SMALL, 1),
});

/**
 * Each tile forced in turn on its cases, every result within 1e-5 of the
 * reference; seeds count up from `seed`.
 */
async function assertTilesMatch(list: [MatmulTile, Case[]][], seed: number): Promise<void> {
  try {
    for (const [t, cases] of list) {
      useMatmulVariant(t);
      for (const c of cases) {
        const err = await gpuError(c, seed++);
        assert.ok(err < 1e-5, `${tileName(t)} ${JSON.stringify(c)}: max error ${err}`);
      }
    }
  } finally {
    useMatmulVariant(null);
  }
}

/** The padded form of a tile (`MatmulTile.pad`). */
const padded = (t: MatmulTile): MatmulTile => ({ ...t, pad: true });

Deno.test("padded slices: each transposing store of a warp hits 32 banks; unpadded, BK/4 threads share one", () => {
  // the largest number of a warp's 32 threads whose scalar store at k + j shares a bank
  const worst = (R: number, BK: number, pad: boolean) => {
    const u = transposingUnits(R, BK, pad), pitch = R + (pad ? 4 : 0);
    let most = 0;
    for (let w0 = 0; w0 < (R * BK) / 4; w0 += 32) {
      for (let j = 0; j < 4; j++) {
        const banks = new Map<number, number>();
        for (let e = w0; e < w0 + 32; e++) {
          const bank = ((u.k(e) + j) * pitch + u.r(e)) % 32;
          banks.set(bank, (banks.get(bank) ?? 0) + 1);
        }
        most = Math.max(most, ...banks.values());
      }
    }
    return most;
  };
  for (const R of [8, 12, 16, 32, 64, 128, 256]) {
    for (const BK of [8, 16, 32]) {
      if (R % 32 === 0) {
        assert.equal(worst(R, BK, true), 1, `R ${R} BK ${BK} padded`);
        assert.equal(worst(R, BK, false), Math.min(BK / 4, 8), `R ${R} BK ${BK}`);
      }
      // every (row, vec4 of k) exactly once, small tiles too
      for (const pad of [false, true]) {
        const u = transposingUnits(R, BK, pad), seen = new Set<number>();
        for (let e = 0; e < (R * BK) / 4; e++) seen.add(u.r(e) * BK + u.k(e));
        assert.equal(seen.size, (R * BK) / 4, `R ${R} BK ${BK} pad ${pad}: a bijection`);
      }
    }
  }
  // the generated kernel declares the longer rows and reads them at the padded pitch
  const code = matmulWgsl(padded(tile(128, 128, 16, 8, 8, false)), EXACT_NT);
  assert.match(code, /var<workgroup> As: array<array<vec4<f32>, 33>, 16>/); // 16 × (32 + 1)
  assert.match(code, /let a0 = As\[1u\]\[0u \+ ty\]/); // k = 1
  const flat = matmulWgsl({ ...padded(tile(128, 128, 16, 8, 8, false)), flat: true }, EXACT_NT);
  assert.match(flat, /var<workgroup> As: array<vec4<f32>, 528>/);
  assert.match(flat, /let a0 = As\[33u \+ ty\]/); // k = 1 at the padded pitch
  assert.match(code, /let aR0 = \(tid \+ 0u\) \/ 2u % 128u;/);
});

Deno.test({
  name: "padded tiles (matmulWgsl pad) equal the reference in every specialisation",
  ignore: NO_GPU,
  fn: async () => {
    // BK 8 and 16 (one and two pairs of vec4s per row; the bank test above covers 32), partial
    // load slots (12 rows), double buffering, every layout, general and exact, bias, batches
    const cases: [MatmulTile, Case[]][] = [
      [padded(tile(16, 16, 8, 4, 4, false)), [
        { M: 32, N: 32, K: 16, P: 2, shared: "a" },
        { M: 20, N: 20, K: 24, transA: true, transB: true, bias: true },
      ]],
      [padded(tile(12, 8, 8, 4, 4, true)), [{ M: 25, N: 17, K: 40, transB: true }]],
      [padded(tile(16, 32, 16, 4, 8, true)), [{ M: 32, N: 64, K: 48, transB: true, bias: true }]],
    ];
    await assertTilesMatch(cases, 100);
  },
});

Deno.test({
  name:
    "linearGrad() row sums are right when a tile has fewer threads than rows (several per thread)",
  ignore: NO_GPU,
  fn: async () => {
    const rng = makeRng(9);
    const [R, O, I] = [37, 23, 11];
    const dyd = Float32Array.from({ length: R * O }, () => rng() * 2 - 1);
    const xd = Float32Array.from({ length: R * I }, () => rng() * 2 - 1);
    const run = async (backend: typeof CPU | GpuBackend) => {
      const [dw, db] = apply(LINEAR_GRAD, [
        tensor(dyd, [R, O], { backend }),
        tensor(xd, [R, I], { backend }),
      ], {});
      return [await dw.toArray(), await db.toArray()];
    };
    const [rw, rb] = await run(CPU);
    // 15 threads for 20 rows (a partial second row per thread), 8 threads for 32 rows, 8 for 16
    // rows of a padded slice
    for (
      const t of [
        tile(20, 12, 8, 4, 4, false),
        tile(32, 16, 8, 8, 8, true),
        padded(tile(16, 8, 16, 4, 4, false)),
      ]
    ) {
      useMatmulVariant(t);
      try {
        const [gw, gb] = await run(GPU!);
        for (let i = 0; i < O; i++) assert.ok(Math.abs(gb[i] - rb[i]) < 1e-5, `db[${i}]`);
        for (let i = 0; i < O * I; i++) assert.ok(Math.abs(gw[i] - rw[i]) < 1e-5, `dW[${i}]`);
      } finally {
        useMatmulVariant(null);
      }
    }
  },
});

const SOFTWARE = !NO_GPU &&
  isSoftwareAdapter(GPU!.adapterInfo);
const ALL = !NO_GPU && (!SOFTWARE || Deno.env.get("WEBSEQ_MATMUL_TEST_ALL") === "1");

Deno.test({
  name:
    "every registered variant equals the reference (exact, general vec4, general scalar + bias)",
  // on llvmpipe each large variant compiles for 10–60 s: run with WEBSEQ_MATMUL_TEST_ALL=1
  ignore: !ALL,
  fn: async () => {
    const target = configureMatmul(GPU!);
    try {
      for (const v of MATMUL_VARIANTS) {
        if (!variantFits(v, target)) continue;
        const t = v.tile ?? tile(64, 64, 16, 4, 4, false);
        useMatmulVariant(v.name);
        const cases: Case[] = [
          { M: t.BM, N: 2 * t.BN, K: 2 * t.BK, P: 2, transB: true },
          { M: t.BM + 4, N: t.BN - 4, K: t.BK + 4, P: 2, shared: "b", transA: true },
          { M: t.BM + 3, N: t.BN + 5, K: 2 * t.BK + 3, transA: true, transB: true, bias: true },
        ];
        for (const c of cases) {
          const err = await gpuError(c, 7);
          assert.ok(err < 1e-4, `${v.name} ${JSON.stringify(c)}: max error ${err}`);
        }
      }
    } finally {
      useMatmulVariant(null);
      setMatmulTarget(DEFAULT_TARGET);
    }
  },
});

Deno.test("heuristicVariant() takes the largest tile that fills the GPU, within the limits", () => {
  const sq = (n: number) => ({ M: n, N: n, K: n });
  assert.equal(heuristicVariant(sq(4096)), "t128x128k8_8x8d");
  assert.equal(heuristicVariant(sq(2048)), "t128x128k8_8x8d");
  assert.equal(heuristicVariant({ M: 2048, N: 1024, K: 64 }), "t128x64k8_8x4d");
  assert.equal(heuristicVariant(sq(1024)), "t64x64k8_4x4d");
  assert.equal(heuristicVariant(sq(256)), "t32x32k16_4x4");
  assert.equal(heuristicVariant({ M: 3, N: 5, K: 4 }), "t32x32k16_4x4");
  // batches count as workgroups
  assert.equal(heuristicVariant({ M: 128, N: 128, K: 64, P: 256 }), "t128x128k8_8x8d");
  // a tile three quarters padding is not taken: M = 16 tokens against a large vocabulary
  assert.equal(heuristicVariant({ M: 16, N: 32000, K: 512 }), "t32x32k16_4x4");
  // an adapter with 64 invocations per workgroup gets only 64-thread tiles
  const small: MatmulTarget = { ...DEFAULT_TARGET, maxInvocations: 64 };
  assert.equal(heuristicVariant(sq(4096), small), "t32x32k16_4x4");
  for (const v of MATMUL_VARIANTS) {
    if (!v.heuristic) continue;
    const t = v.tile!;
    // every heuristic variant fits WebGPU's guaranteed limits
    assert.ok((t.BM / t.TM) * (t.BN / t.TN) <= 256 && (t.BM + t.BN) * t.BK * 4 * 2 <= 16384);
  }
});

Deno.test("f16 kernel forms are tuned apart from the f32 product and fall back to its choice", () => {
  assert.equal(halfForm({ a: "f32", b: "f32", acc: "f32", out: "round" }), "h");
  assert.equal(halfForm({ a: "f16", b: "f16", acc: "f32", out: "f32", stage: "f16" }), "hs");
  assert.equal(halfForm({ a: "f32", b: "f16", acc: "f16", out: "f32" }), "h16g16");
  assert.equal(halfForm({ a: "f32", b: "f32", acc: "f16", out: "f32", group: 64 }), "h16g64");
  assert.deepEqual(parseHalfForm("h16g64"), { acc: "f16", group: 64, stageF16: true });
  assert.deepEqual(parseHalfForm("hs"), { acc: "f32", stageF16: true });
  assert.deepEqual(parseHalfForm("h"), { acc: "f32", stageF16: false });
  assert.equal(parseHalfForm("h8"), null);
  assert.equal(parseHalfForm(undefined), null);
  const f32 = { M: 8192, N: 512, K: 2048, transB: true };
  const h64 = { ...f32, form: "h16g64" };
  assert.equal(shapeKey(h64), "8192x512x2048/1/NT/h16g64");
  assert.equal(shapeClassKey({ ...h64, M: 8000 }), "~8192x512x2048/1/NT/h16g64");
  const hw: MatmulTarget = { ...DEFAULT_TARGET, description: "adapter H" };
  const before = matmulTarget();
  try {
    setMatmulTarget(hw);
    const heuristic = heuristicVariant(f32, hw);
    assert.equal(selectMatmulVariant(h64).name, heuristic);
    // the f32 product's choice until the form has its own
    setTunedVariant(hw, f32, "t64x64k16_8x8");
    assert.equal(selectMatmulVariant(h64).name, "t64x64k16_8x8");
    assert.equal(tunedVariant(h64), undefined);
    setTunedVariant(hw, h64, "t128x128k8_8x8d");
    assert.equal(selectMatmulVariant(h64).name, "t128x128k8_8x8d");
    assert.equal(selectMatmulVariant(f32).name, "t64x64k16_8x8");
    assert.equal(selectMatmulVariant({ ...f32, form: "h" }).name, "t64x64k16_8x8");
    // splits likewise: the form's own, else the f32 product's
    const t = matmulVariant("t128x128k8_8x8d").tile!;
    const wide = { M: 512, N: 512, K: 8192, transA: true };
    const rule = splitKFor({ ...wide, form: "h" }, t).S;
    assert.ok(rule > 1);
    setTunedSplit(hw, wide, 2);
    assert.equal(splitKFor({ ...wide, form: "h" }, t).S, 2);
    // a form with a tile of its own keeps its own split, or the rule's: not the f32 product's
    setTunedVariant(hw, { ...wide, form: "h" }, "t128x128k8_8x8d");
    assert.equal(splitKFor({ ...wide, form: "h" }, t).S, rule);
    setTunedSplit(hw, { ...wide, form: "h" }, 4);
    assert.equal(splitKFor({ ...wide, form: "h" }, t).S, 4);
    assert.equal(splitKFor(wide, t).S, 2);
    // an f16-accumulating form splits at whole groups of k
    assert.equal(splitUnit({ ...wide, form: "h16g64" }, t), 64);
    assert.equal(splitUnit({ ...wide, form: "h" }, t), 8);
    assert.equal(splitUnit(wide, matmulVariant("t128x128k32_8x8").tile!), 32);
    // a cache keeps the forms' keys
    assert.equal(tunedTable("adapter H")["8192x512x2048/1/NT/h16g64"], "t128x128k8_8x8d");
  } finally {
    clearTunedVariants();
    setMatmulTarget(before);
  }
});

Deno.test("useMatmulVariant() forces a variant over tuned choices; tuned choices are per adapter", () => {
  const shape = { M: 4096, N: 4096, K: 4096 };
  const a: MatmulTarget = { ...DEFAULT_TARGET, description: "adapter A" };
  const b: MatmulTarget = { ...DEFAULT_TARGET, description: "adapter B" };
  const before = matmulTarget();
  try {
    setTunedVariant(a, shape, "t64x64k16_8x8");
    setMatmulTarget(a);
    assert.equal(tunedVariant(shape), "t64x64k16_8x8");
    assert.equal(matmulVariantFor(shape), "t64x64k16_8x8");
    assert.equal(matmulVariantFor({ ...shape, transB: true }), "t128x128k8_8x8d");
    setMatmulTarget(b);
    assert.equal(matmulVariantFor(shape), "t128x128k8_8x8d");
    useMatmulVariant("legacy");
    assert.equal(matmulVariantFor(shape), "legacy");
    useMatmulVariant({ BM: 8, BN: 8, BK: 4, TM: 4, TN: 4, double: false });
    assert.equal(matmulVariantFor(shape), "custom");
    useMatmulVariant(null);
    assert.equal(matmulVariantFor(shape), "t128x128k8_8x8d");
    assert.throws(() => useMatmulVariant("t1x1"), /Unknown matmul variant "t1x1" \(known: t128/);
    // any generator tile can be named in the registry's spelling (the sweep's output)
    useMatmulVariant("t64x128k16_8x8d");
    assert.equal(matmulVariantFor(shape), "t64x128k16_8x8d");
    assert.deepEqual(parseTileName("t64x128k16_8x8d"), {
      BM: 64,
      BN: 128,
      BK: 16,
      TM: 8,
      TN: 8,
      double: true,
    });
    assert.equal(tileName(parseTileName("t32x64k8_4x8")!), "t32x64k8_4x8");
    assert.deepEqual(parseTileName("t128x128k8_4x16dp"), {
      BM: 128,
      BN: 128,
      BK: 8,
      TM: 4,
      TN: 16,
      double: true,
      pad: true,
    });
    assert.equal(tileName(parseTileName("t64x64k16_8x8p")!), "t64x64k16_8x8p");
    assert.deepEqual(parseTileName("t128x128k16_8x8f"), {
      ...tile(128, 128, 16, 8, 8, false),
      flat: true,
    });
    assert.equal(tileName(parseTileName("t128x128k8_4x16dpf")!), "t128x128k8_4x16dpf");
    assert.equal(parseTileName("legacy"), null);
    assert.throws(() => useMatmulVariant("t64x64k8_6x4"), /Matmul tile "t64x64k8_6x4": .*TM must/);
    setTunedVariant(a, shape, "t256x64k8_16x4");
    setMatmulTarget(a);
    useMatmulVariant(null);
    assert.equal(matmulVariantFor(shape), "t256x64k8_16x4");
    setMatmulTarget(b);
    assert.throws(() => setTunedVariant(a, shape, "nope"), TypeError);
    assert.throws(
      () => useMatmulVariant({ BM: 8, BN: 8, BK: 4, TM: 3, TN: 4, double: false }),
      /TM must be a multiple of 4/,
    );
  } finally {
    useMatmulVariant(null);
    clearTunedVariants();
    setMatmulTarget(before);
  }
});

Deno.test("WEBSEQ_MATMUL_VARIANT forces a variant; an unknown name is a one-line TypeError", async () => {
  const code = `import { matmulVariantFor } from "${new URL("./matmul.ts", import.meta.url).href}";
try { console.log(matmulVariantFor({ M: 4096, N: 4096, K: 4096 })); }
catch (e) { console.log(e.name + ": " + e.message); }`;
  const run = (value: string) => evalStdout(code, { WEBSEQ_MATMUL_VARIANT: value });
  assert.equal(await run("t64x64k8_4x4d"), "t64x64k8_4x4d");
  assert.equal(await run("t128x32k16_8x4"), "t128x32k16_8x4"); // not registered: a generator tile
  assert.equal(await run("auto"), "t128x128k8_8x8d");
  assert.match(
    await run("fast"),
    /^TypeError: WEBSEQ_MATMUL_VARIANT: Unknown matmul variant "fast"/,
  );
});

Deno.test("matmulBias() rejects a bias that is not [N]", () => {
  const a = tensor(new Float32Array(6), [2, 3]), b = tensor(new Float32Array(12), [3, 4]);
  assert.throws(
    () => matmulBias(a, b, tensor(new Float32Array(3), [3])),
    /Cannot matmulBias: bias \[3\] f32 must be f32 \[4\]/,
  );
  assert.throws(() => matmulBias(a, b, tensor(new Float32Array(4), [1, 4])), TypeError);
});

Deno.test({
  name: "autotuneMatmul() is off on software adapters unless forced, then remembers the fastest",
  ignore: NO_GPU,
  fn: async () => {
    const shape = { M: 8, N: 8, K: 8, transB: true };
    try {
      const target = configureMatmul(GPU!);
      const [r] = await autotuneMatmul(GPU!, [shape], { variants: ["t32x32k16_4x4"] });
      if (target.software) {
        assert.equal(r.tuned, false);
        assert.equal(r.variant, heuristicVariant(shape, target));
        assert.equal(tunedVariant(shape), undefined);
      }
      const [f] = await autotuneMatmul(GPU!, [shape], {
        variants: ["t32x32k16_4x4"],
        force: true,
        minTimeMs: 5,
      });
      assert.equal(f.tuned, true);
      assert.equal(f.variant, "t32x32k16_4x4");
      assert.deepEqual(f.rejected, []); // its result matched the heuristic kernel's
      assert.deepEqual(f.runoff, {}); // one candidate: nothing to decide
      assert.ok(f.ms["t32x32k16_4x4"] > 0 && Number.isFinite(f.ms["t32x32k16_4x4"]));
      assert.equal(f.timing, GPU!.canProfile ? "timestamp" : "wallclock");
      assert.equal(tunedVariant(shape), "t32x32k16_4x4");
      assert.ok((await gpuError({ ...shape }, 3)) < 1e-5);
    } finally {
      clearTunedVariants();
      setMatmulTarget(DEFAULT_TARGET);
    }
  },
});

Deno.test({
  name: "autotuneMatmul() times half and twice the rule's K split and keeps a faster one per class",
  ignore: NO_GPU,
  fn: async () => {
    // a hardware target on this adapter: 32×32 outputs (one 64-thread workgroup) over K 2048,
    // which the rule splits into 8 ranges of 256
    const target = { ...configureMatmul(GPU!), description: "split-test", software: false };
    const shape = { M: 32, N: 32, K: 2048 };
    const tile = "t32x32k16_4x4";
    try {
      setMatmulTarget(target);
      assert.equal(matmulSplitKFor(shape), 8);
      const [r] = await autotuneMatmul(GPU!, [shape], { target, variants: [tile], minTimeMs: 5 });
      assert.equal(r.variant, tile);
      const split = r.split!;
      assert.equal(split.rule, 8);
      assert.deepEqual(Object.keys(split.ms).sort(), ["S16", "S4", "S8"]);
      for (const ms of Object.values(split.ms)) assert.ok(ms > 0 && Number.isFinite(ms));
      // another split only when 3% faster than the rule's (by the runoff's medians where near
      // ties were timed again); then it holds for the shape's class
      const table = split.runoff ?? split.ms, ruleMs = table.S8 ?? split.ms.S8;
      let want = 8;
      for (const [k, ms] of Object.entries(table)) {
        if (ms < (table[`S${want}`] ?? Infinity) && ms <= ruleMs * 0.97) want = Number(k.slice(1));
      }
      assert.equal(split.chosen, want);
      assert.equal(matmulSplitKFor(shape), want);
      // K 1500 is in the class (~2048): the tuned split, else the rule's 5 (1500 / 256)
      assert.equal(matmulSplitKFor({ ...shape, K: 1500 }), want === 8 ? 5 : want);
      assert.equal(
        tunedTable("split-test")[`split|${shapeKey(shape)}`],
        want === 8 ? undefined : `${want}`,
      );
      assert.ok((await gpuError(shape, 4)) < 1e-4);
      // a forced split is not tuned
      useMatmulSplitK(2);
      const [f] = await autotuneMatmul(GPU!, [shape], { target, variants: [tile], minTimeMs: 5 });
      assert.equal(f.split, undefined);
    } finally {
      useMatmulSplitK(null);
      clearTunedVariants();
      setMatmulTarget(DEFAULT_TARGET);
    }
  },
});

Deno.test("tuned K splits: splitKFor() follows them on their adapter, the tuning table keeps them", () => {
  const hw = { ...DEFAULT_TARGET, description: "hw-a" };
  const other = { ...DEFAULT_TARGET, description: "hw-b" };
  const shape = { M: 512, N: 512, K: 8192, transA: true };
  const t = matmulVariant("t128x128k16_8x8").tile!;
  try {
    setMatmulTarget(hw);
    assert.equal(splitKFor(shape, t).S, 16); // 16 workgroups of 256 threads: 16 ranges of 512
    setTunedSplit(hw, shape, 4);
    assert.deepEqual(splitKFor(shape, t), { S: 4, kc: 2048 });
    assert.equal(splitKFor({ ...shape, K: 6000 }, t).S, 4); // same class (~8192)
    assert.equal(splitKFor({ ...shape, K: 8192 }, t, other).S, 16); // not the active adapter
    useMatmulSplitK(2);
    assert.equal(splitKFor(shape, t).S, 2); // forcing wins
    useMatmulSplitK(null);
    setMatmulTarget(other);
    assert.equal(splitKFor(shape, t).S, 16);
    // the table round trip, next to a variant choice; bad numbers are skipped
    const table = tunedTable("hw-a");
    assert.equal(table[`split|${shapeKey(shape)}`], "4");
    assert.equal(table[`split|${shapeClassKey(shape)}`], "4");
    clearTunedVariants();
    const n = loadTunedTable("hw-b", {
      ...table,
      [`split|${shapeKey({ ...shape, M: 256 })}`]: "0",
      [`split|${shapeKey({ ...shape, M: 128 })}`]: "33",
      [`split|${shapeKey({ ...shape, M: 64 })}`]: "two",
    });
    assert.equal(n, 2);
    assert.equal(splitKFor(shape, t).S, 4);
    assert.equal(splitKFor({ ...shape, M: 256 }, t).S, 32); // rule: 8 workgroups
    assert.throws(
      () => setTunedSplit(hw, shape, 0),
      /setTunedSplit: expected an integer in 1\.\.32/,
    );
    clearTunedVariants();
    assert.equal(splitKFor(shape, t).S, 16);
  } finally {
    useMatmulSplitK(null);
    clearTunedVariants();
    setMatmulTarget(DEFAULT_TARGET);
  }
});

Deno.test("runoff() re-times the near ties interleaved and fastestOf() follows its medians", async () => {
  const calls: string[] = [];
  const again: Record<string, number[]> = { a: [1.3, 1.2, 9], b: [1.0, 1.1, 1.0], d: [2, 2, 2] };
  const time = (name: string) => {
    calls.push(name);
    return Promise.resolve(again[name].shift()!);
  };
  // c is 50% slower than a at first and e failed: a, b and d (within 15%) run again
  const ms = { a: 1.0, b: 1.05, c: 1.5, d: 1.12, e: Infinity };
  const rerun = await runoff(ms, time);
  assert.deepEqual(calls, ["a", "b", "d", "b", "d", "a", "d", "a", "b"]);
  assert.deepEqual(rerun, { a: 1.3, b: 1.0, d: 2 }); // medians of three rounds
  assert.equal(fastestOf(ms, rerun, "c"), "b"); // the runoff overturns the first pass
  assert.equal(fastestOf(ms, {}, "c"), "a");
  assert.equal(fastestOf({ x: Infinity }, {}, "h"), "h"); // nothing measured: the fallback
  // one clear winner, or a single finite time: no runoff at all
  calls.length = 0;
  assert.deepEqual(await runoff({ a: 1, b: 2 }, time), {});
  assert.deepEqual(await runoff({ a: 1, b: Infinity }, time), {});
  assert.deepEqual(calls, []);
  assert.deepEqual(
    await runoff({ a: 1, b: 1.01 }, () => Promise.resolve(5), { rounds: 2 }),
    { a: 5, b: 5 },
  );
});

Deno.test("relativeError() is 0 for equal results, sees one wrong tile of 16, and is NaN with NaN", async () => {
  for (const backend of NO_GPU ? [CPU] : [CPU, GPU!]) {
    const rng = makeRng(3);
    const data = Float32Array.from({ length: 64 * 64 }, () => rng() * 2 - 1);
    const want = tensor(data, [64, 64], { backend });
    const same = tensor(data.slice(), [64, 64], { backend });
    const wrong = data.slice();
    for (let r = 0; r < 16; r++) wrong.fill(0, r * 64, r * 64 + 16); // a 16×16 block left at 0
    const bad = tensor(wrong, [64, 64], { backend });
    const nan = data.slice();
    nan[100] = NaN;
    const withNaN = tensor(nan, [64, 64], { backend });
    assert.equal(await relativeError([same], [want]), 0);
    const e = await relativeError([same, bad], [want, want]);
    assert.ok(e > 0.1 && e < 0.3, `${e}`); // √(1/32) of the two together
    assert.ok(Number.isNaN(await relativeError([withNaN], [want])));
    assert.equal(await sameResults([bad], [want]), false);
    assert.equal(await sameResults([same], [want]), true);
    assert.ok(bad.disposed && same.disposed, "sameResults() disposes the results it checked");
    want.dispose();
    withNaN.dispose();
  }
  await assert.rejects(() => relativeError([], []), TypeError);
  assert.ok(TUNE_TOLERANCE < 1e-2);
});

Deno.test({
  name: "timeCandidate() does not time a candidate whose check fails, and times one that passes",
  ignore: NO_GPU,
  fn: async () => {
    const a = tensor(new Float32Array(64).fill(1), [8, 8], { backend: GPU! });
    const run = () => matmul(a, a).dispose();
    let checks = 0;
    const opts = { opName: MATMUL.name, minTimeMs: 1, maxCalls: 2 };
    const no = await timeCandidate(GPU!, run, {
      ...opts,
      check: () => (checks++, Promise.resolve(false)),
    });
    assert.deepEqual(no, { ms: Infinity, timing: null, rejected: true });
    const yes = await timeCandidate(GPU!, run, {
      ...opts,
      check: () => (checks++, Promise.resolve(true)),
    });
    assert.ok(Number.isFinite(yes.ms) && yes.ms > 0 && !yes.rejected);
    assert.equal(checks, 2);
    a.dispose();
  },
});

Deno.test({
  name: "autotuneMatmulsOf() tunes the shapes its workload ran (fused ones too), once per shape",
  ignore: NO_GPU,
  fn: async () => {
    const v = ["t32x32k16_4x4"];
    const rand = (shape: number[]) =>
      tensor(Float32Array.from({ length: shape[0] * shape[1] }, (_, i) => i % 7), shape, {
        backend: GPU!,
      });
    const x = rand([6, 12]), w = rand([16, 12]), u = rand([6, 20]), w2 = rand([5, 20]);
    const work = () => {
      matmul(x, w, { transB: true }).dispose(); // 6×16×12, NT
      geluLinear(u, w2, null).dispose(); // 6×5×20, NT (the fused GELU kernel selects too)
      matmul(x, w, { transB: true }).dispose(); // the same shape again
      return 42;
    };
    try {
      const r = await autotuneMatmulsOf(GPU!, work, { variants: v, force: true, minTimeMs: 2 });
      assert.equal(r.value, 42);
      assert.deepEqual(
        r.tunings.map((t) => [t.shape.M, t.shape.N, t.shape.K, t.tuned]),
        [[6, 16, 12, true], [6, 5, 20, true]],
      );
      assert.ok(r.seconds > 0);
      assert.equal(tunedVariant({ M: 6, N: 16, K: 12, P: 1, transA: false, transB: true }), v[0]);
      // the power-of-two class: M 7 and K 9..16 round to the measured 8×16×16
      assert.equal(tunedVariant({ M: 7, N: 16, K: 9, P: 1, transA: false, transB: true }), v[0]);
      assert.equal(
        tunedVariant({ M: 7, N: 16, K: 9, P: 1, transA: true, transB: true }),
        undefined,
      );
      // measured shapes are not measured again, nor new shapes of a measured class
      const again = await autotuneMatmulsOf(GPU!, work, { variants: v, force: true });
      assert.equal(again.tunings.length, 0);
      const x7 = rand([7, 12]);
      const sameClass = await autotuneMatmulsOf(
        GPU!,
        () => matmul(x7, w, { transB: true }).dispose(), // 7×16×12: the class of 6×16×12
        { variants: v, force: true },
      );
      x7.dispose();
      assert.deepEqual(sameClass.tunings, []);
      assert.equal(sameClass.seconds, 0);
      // a failing tuner leaves the heuristic in charge and still returns the workload's value
      clearTunedVariants();
      const bad = await autotuneMatmulsOf(GPU!, work, { variants: ["nope"], force: true });
      assert.equal(bad.value, 42);
      assert.deepEqual(bad.tunings, []);
      assert.match(bad.error ?? "", /Unknown matmul variant "nope"/);
    } finally {
      for (const t of [x, w, u, w2]) t.dispose();
      clearTunedVariants();
      setMatmulTarget(DEFAULT_TARGET);
    }
  },
});

/** A·Bᵀ with vec4 loads and stores and whole tiles: the specialisation the codegen tests read. */
const EXACT_NT = {
  transA: false,
  transB: true,
  vecA: true,
  vecB: true,
  vecOut: true,
  exact: true,
  bias: false,
};

Deno.test("matmulWgsl() spells the tile as constants: unrolled FMAs, vec4 slices, no loops over k", () => {
  const code = matmulWgsl(tile(128, 128, 8, 8, 8, true), EXACT_NT);
  assert.match(code, /@workgroup_size\(256\)/);
  // double buffered: two slices of 8 k rows × 128 / 4 vec4s, indexed buffer, k, column: k is a
  // constant in the multiply and the column a constant plus tx or ty, the same for every k
  assert.match(code, /var<workgroup> As: array<array<array<vec4<f32>, 32>, 8>, 2>;/);
  assert.match(
    code,
    /let a0 = As\[cur\]\[0u\]\[0u \+ ty\]; let a1 = As\[cur\]\[0u\]\[16u \+ ty\];/,
  );
  assert.match(code, /let b1 = Bs\[cur\]\[7u\]\[16u \+ tx\];/); // k = 7
  assert.match(code, /As\[cur \^ 1u\]\[/); // the next slice into the other buffer
  assert.doesNotMatch(code, /cur \* /);
  // every read of the multiply: a constant k, a constant column offset plus tx or ty
  const reads = code.match(/= [AB]s\[[^;]*;/g) ?? [];
  assert.equal(reads.length, 8 * (2 + 2));
  for (const r of reads) assert.match(r, /^= [AB]s\[cur\]\[\d+u\]\[\d+u \+ t[xy]\];$/);
  assert.equal(code.match(/= fma\(/g)?.length, 8 * 2 * 8); // TM · TN/4 · BK
  const single = matmulWgsl(tile(128, 128, 8, 8, 8, false), EXACT_NT);
  assert.match(single, /var<workgroup> As: array<array<vec4<f32>, 32>, 8>;/);
  assert.match(single, /let a0 = As\[0u\]\[0u \+ ty\];/);
  // flat (MatmulTile.flat, sessions ≤ 12): one 1-D array per buffer, k folded into the index
  const flat = matmulWgsl({ ...tile(128, 128, 8, 8, 8, true), flat: true }, EXACT_NT);
  assert.match(flat, /var<workgroup> As: array<array<vec4<f32>, 256>, 2>;/);
  assert.match(flat, /let a1 = As\[cur\]\[16u \+ ty\];/);
  assert.match(flat, /let b1 = Bs\[cur\]\[240u \+ tx\];/); // k = 7: 7 × 32 + 16
  const flat1 = matmulWgsl({ ...tile(128, 128, 8, 8, 8, false), flat: true }, EXACT_NT);
  assert.match(flat1, /var<workgroup> As: array<vec4<f32>, 256>;/);
  assert.match(flat1, /let a0 = As\[0u \+ ty\];/);
  assert.equal(code.match(/for \(/g)?.length, 1); // only the loop over K slices
  assert.doesNotMatch(code, /< u\.[MNK]/); // exact: no bounds checks
});

Deno.test("matmulWgsl() f16 form: f16 slices, f16 FMAs with a flush per 16 k, the fusions it allows", () => {
  const spec = EXACT_NT;
  const half = { a: "f32", b: "f16", acc: "f16", out: "f32" } as const;
  const code = matmulWgsl(tile(128, 128, 8, 8, 8, true), { ...spec, half });
  const t8 = tile(32, 32, 8, 4, 4, false);
  assert.match(code, /^enable f16;/);
  assert.match(code, /var<workgroup> As: array<array<array<vec4<f16>, 32>, 8>, 2>;/);
  assert.match(code, /var<storage, read> a: array<vec4<f32>>/); // f32 rounded when staged
  assert.match(code, /var av0: vec4<f32>;/); // prefetched as stored
  assert.match(code, /let as0 = to_f16v4\(av0\);/); // rounded at the store, after the slice
  assert.doesNotMatch(code, /to_f16v4\(a\[/);
  assert.equal(code.match(/= fma\(vec4<f16>/g)?.length, 8 * 2 * 8);
  assert.match(code, /if \(\(\(\(t - 1u\) \+ 1u\) \* 8u\) % 16u == 0u\)/); // BK 8: every 2nd slice
  const deep = matmulWgsl(tile(64, 64, 32, 4, 4, false), { ...spec, half });
  // BK 32: two flushes inside each slice, one more after the loop
  assert.equal(deep.match(/c0_0 \+= vec4<f32>\(h0_0\)/g)?.length, 3);
  // groups of 64 k: BK 32 flushes every second slice, BK 16 every fourth
  const g64 = { ...half, group: 64 };
  const t32 = matmulWgsl(tile(64, 64, 32, 4, 4, false), { ...spec, half: g64 });
  assert.match(t32, /if \(\(\(t \+ 1u\) \* 32u\) % 64u == 0u\)/);
  assert.match(
    matmulWgsl(tile(64, 64, 16, 4, 4, true), { ...spec, half: g64 }),
    /if \(\(\(\(t - 1u\) \+ 1u\) \* 16u\) % 64u == 0u\)/,
  );
  assert.throws(
    () => matmulWgsl(tile(64, 64, 16, 4, 4, false), { ...spec, half: { ...half, group: 24 } }),
    /BK dividing 24 or a multiple of it/,
  );
  const f32acc = matmulWgsl(tile(64, 64, 16, 4, 4, false), {
    ...spec,
    half: { ...half, acc: "f32", out: "round" },
  });
  assert.doesNotMatch(f32acc, /vec4<f16>\(\);/); // no f16 accumulators
  // results rounded to f16 values by integer arithmetic (a driver may fold f32(f16(x)) away)
  assert.match(f32acc, /round_f16v4\(c0_0\)/);
  assert.doesNotMatch(f32acc, /f32>\(to_f16/);
  // f32 accumulation stages f32 slices (rounded to f16 and widened once, at the store): the
  // multiply is the f32 kernel's, no conversion per product
  assert.match(f32acc, /var<workgroup> As: array<array<vec4<f32>, 16>, 16>;/);
  assert.match(f32acc, /let as0 = round_f16v4\(av0\);/); // f32 a: rounded, still f32
  assert.match(f32acc, /let bs0 = vec4<f32>\(bv0\);/); // f16 b: widened
  assert.doesNotMatch(f32acc, /vec4<f32>\(As\[/);
  assert.equal(f32acc.match(/= fma\(vec4<f32>\(a\d\.[xyzw]\), b\d, c/g)?.length, 16 * 4 * 1);
  // stage "f16": half the workgroup bytes, each value widened where it is multiplied
  const staged16 = matmulWgsl(tile(64, 64, 16, 4, 4, false), {
    ...spec,
    half: { ...half, acc: "f32", out: "round", stage: "f16" },
  });
  assert.match(staged16, /var<workgroup> As: array<array<vec4<f16>, 16>, 16>;/);
  assert.match(staged16, /let as0 = to_f16v4\(av0\);/);
  assert.match(staged16, /let a0 = vec4<f32>\(As\[/);
  // f16 accumulation needs f16 slices
  assert.throws(
    () => matmulWgsl(t8, { ...spec, half: { ...half, stage: "f32" } }),
    /f16 accumulation stages its slices as f16/,
  );
  assert.throws(() => matmulWgsl(tile(64, 64, 12, 4, 4, false), { ...spec, half }), TypeError);
  // GELU only on an f32 operand; bias, addend only on an f32 result
  assert.throws(() => matmulWgsl(t8, { ...spec, geluIn: "b", half }), TypeError); // b is f16
  assert.throws(() => matmulWgsl(t8, { ...spec, bias: true, half: { ...half, out: "f16" } }));
  assert.throws(() => matmulWgsl(t8, { ...spec, addOut: true, half: { ...half, out: "f16" } }));
  // the addend is added to the rounded product
  assert.match(
    matmulWgsl(t8, { ...spec, addOut: true, half: { ...half, out: "round" } }),
    /= round_f16v4\(c0_0\) \+ addend\[/,
  );
  // row sums: an f32 kernel adds up the staged slice, an f16 one the unrounded operand as stored
  const rs = { ...spec, transA: true, vecA: true, exact: false, rowSum: true };
  assert.match(matmulWgsl(t8, rs), /rs0 \+= As\[/);
  const rs16 = matmulWgsl(t8, { ...rs, half: { ...half, acc: "f32", out: "round" } });
  assert.doesNotMatch(rs16, /rs0 \+= As\[/);
  assert.match(
    rs16,
    /if \(kt \+ 0u < kend\) \{ rs0 \+= f32\(a\[\(ab \+ \(kt \+ 0u\) \* u\.M \+ m0 \+ \(tid \+ 0u\)\) >> 2u\]/,
  );
  assert.match(
    matmulWgsl(t8, { ...spec, geluIn: "a", half }),
    /let as0 = to_f16v4\(gelu_in4\(av0, aI0 \+ \(kt >> 2u\)\)\);/,
  );
});

Deno.test("matmulKernel() memoises per shape but follows forcing and tuning at once", () => {
  const g = matmulGeometry([64, 64], [64, 64], { transA: false, transB: false });
  const p = { transA: false, transB: false };
  const tileOf = () => matmulKernel(g, p).code.match(/matmul tile (\S+)/)![1];
  try {
    useMatmulVariant("t32x32k16_4x4");
    assert.equal(tileOf(), "32x32x16");
    assert.equal(tileOf(), "32x32x16"); // memoised
    useMatmulVariant("t64x64k8_4x4d");
    assert.equal(tileOf(), "64x64x8");
    useMatmulVariant(null);
    const target = { ...DEFAULT_TARGET, description: "memo test" };
    setMatmulTarget(target);
    setTunedVariant(
      target,
      { M: 64, N: 64, K: 64, P: 1, transA: false, transB: false },
      "t32x32k16_4x4",
    );
    assert.equal(tileOf(), "32x32x16");
    // the uniform is per call (dropout seeds differ), the plan is shared
    const a = matmulKernel(g, p), b = matmulKernel(g, p);
    assert.equal(a.code, b.code);
    assert.notEqual(a.uniform, b.uniform);
  } finally {
    useMatmulVariant(null);
    clearTunedVariants();
    setMatmulTarget(DEFAULT_TARGET);
  }
});

Deno.test({
  name:
    "linearGrad() of a zero-width input on WebGPU still sums dy into the bias gradient (split K too)",
  ignore: NO_GPU,
  fn: async () => {
    for (const split of [null, 3]) {
      useMatmulSplitK(split);
      try {
        for (const R of [3, 70]) {
          const dyv = Array.from({ length: R * 5 }, (_, i) => ((i * 7) % 11) - 5 + 0.25);
          const run = async (backend: Backend) => {
            const dy = tensor(dyv, [R, 5], { backend });
            const [dw, db] = apply(LINEAR_GRAD, [dy, tensor([], [R, 0], { backend })], {});
            assert.deepEqual(dw.shape, [5, 0]);
            return await db.toArray();
          };
          const [want, got] = [await run(CPU), await run(GPU!)];
          want.forEach((v, i) =>
            assert.ok(Math.abs(got[i] - v) <= 1e-5 * R, `split ${split} R ${R} db[${i}]`)
          );
        }
      } finally {
        useMatmulSplitK(null);
      }
    }
  },
});

Deno.test("linearGrad() and geluLinear() handle zero-width layers; f16 accumulation falls back from slices that do not fit its groups", async () => {
  const [dw, db] = apply(
    LINEAR_GRAD,
    [tensor([], [3, 0]), tensor(new Float32Array(15), [3, 5])],
    {},
  );
  assert.deepEqual([dw.shape, db.shape], [[0, 5], [0]]);
  const u = tensor(new Float32Array(18), [3, 6], { requiresGrad: true });
  const w = tensor([], [0, 6], { requiresGrad: true });
  const y = geluLinear(u, w, tensor([], [0], { requiresGrad: true }));
  assert.deepEqual(y.shape, [3, 0]);
  y.backward(tensor([], [3, 0]));
  assert.deepEqual(await u.grad!.toArray(), new Array(18).fill(0));
  // a forced 12-deep slice cannot hold f16 groups of 16 k: the f16-accumulating kernel takes the
  // heuristic's tile, the f32-accumulating one the forced tile
  const g = matmulGeometry([64, 64], [64, 64], { transA: false, transB: false });
  const p = { transA: false, transB: false };
  const half = { a: "f16", b: "f16", out: "f32" } as const;
  try {
    useMatmulVariant(tile(32, 32, 12, 4, 4, false));
    assert.match(
      matmulKernel(g, p, { half: { ...half, acc: "f32" } }).code,
      /matmul tile 32x32x12/,
    );
    assert.doesNotMatch(matmulKernel(g, p, { half: { ...half, acc: "f16" } }).code, /x12 /);
  } finally {
    useMatmulVariant(null);
  }
});

Deno.test({
  name:
    "autotuneMatmulsOf() on a software adapter without force runs the workload and measures nothing",
  ignore: NO_GPU || !SOFTWARE,
  fn: async () => {
    const x = tensor(new Float32Array(64), [8, 8], { backend: GPU! });
    const r = await autotuneMatmulsOf(GPU!, () => {
      matmul(x, x).dispose();
      return 7;
    });
    x.dispose();
    assert.deepEqual([r.value, r.tunings, r.seconds], [7, [], 0]);
  },
});

Deno.test("splitKFor() splits long-K products with few output tiles, only on configured hardware", () => {
  const hw: MatmulTarget = { ...DEFAULT_TARGET, description: "big GPU" };
  const sw: MatmulTarget = { ...hw, software: true };
  const t = tile(128, 128, 8, 8, 8, true);
  // a base weight gradient: 16 output tiles over K = 8192 → 16 ranges of 512
  const dW = { M: 512, N: 512, K: 8192, transA: true };
  assert.deepEqual(splitKFor(dW, t, hw), { S: 16, kc: 512 });
  assert.deepEqual(splitKFor(dW, t, sw), { S: 1, kc: 1024 * 8 });
  assert.deepEqual(splitKFor(dW, t, DEFAULT_TARGET), { S: 1, kc: 8192 });
  // enough tiles already, or K too short to give each range 256
  assert.equal(splitKFor({ M: 4096, N: 4096, K: 4096 }, t, hw).S, 1);
  assert.equal(splitKFor({ M: 64, N: 64, K: 500 }, t, hw).S, 1);
  // K not a multiple of the ranges: whole slices, no empty range
  assert.deepEqual(splitKFor({ M: 64, N: 64, K: 1000 }, t, hw), { S: 3, kc: 42 * 8 });
  // the plan on a configured hardware target: the K-range kernel into scratch, then the sum
  const before = matmulTarget();
  try {
    setMatmulTarget(hw);
    const p = { transA: true, transB: false };
    const plan = matmulPlan(matmulGeometry([8192, 512], [8192, 512], p), p, { rowSum: true });
    const S = matmulSplitKFor({ M: 512, N: 512, K: 8192, transA: true });
    assert.ok(S > 1);
    assert.equal(plan.kernels.length, 2);
    assert.deepEqual(plan.temps, [S * 512 * 512 * 4, S * 512 * 4]);
    assert.equal(plan.kernels[0].workgroups[2], S);
    assert.match(plan.kernels[1].code, /split-K reduction \+rowsum/);
    // the bias epilogue never splits
    const biased = matmulPlan(matmulGeometry([8192, 512], [8192, 512], p), p, { bias: true });
    assert.equal(biased.kernels.length, 1);
  } finally {
    setMatmulTarget(before);
  }
  try {
    useMatmulSplitK(5);
    assert.deepEqual(splitKFor({ M: 64, N: 64, K: 1000 }, t, sw), { S: 5, kc: 25 * 8 });
    useMatmulSplitK(1000);
    assert.deepEqual(splitKFor({ M: 64, N: 64, K: 1000 }, t, sw), { S: 125, kc: 8 });
    assert.throws(() => useMatmulSplitK(0), /positive integer/);
  } finally {
    useMatmulSplitK(null);
  }
});

Deno.test({
  name:
    "split K: plain, accumulating, weight-gradient and GELU weight-gradient products equal the CPU",
  ignore: NO_GPU,
  fn: async () => {
    const rng = makeRng(11);
    const make = (shape: number[], be: typeof CPU | GpuBackend, data: Float32Array) =>
      tensor(data, shape, { backend: be });
    const rand = (n: number) => Float32Array.from({ length: n }, () => rng() * 2 - 1);
    type Run = { op: typeof MATMUL; shapes: number[][]; params: Record<string, unknown> };
    const runs: Run[] = [
      { op: MATMUL, shapes: [[13, 37], [37, 11]], params: { transA: false, transB: false } },
      { op: MATMUL, shapes: [[2, 32, 16], [2, 12, 32]], params: { transA: true, transB: true } },
      {
        op: MATMUL_ADD,
        shapes: [[29, 9], [29, 10], [9, 10]],
        params: { transA: true, transB: false },
      },
      { op: LINEAR_GRAD as unknown as typeof MATMUL, shapes: [[45, 9], [45, 7]], params: {} },
      { op: LINEAR_GRAD as unknown as typeof MATMUL, shapes: [[32, 16], [32, 8]], params: {} },
      {
        op: GELU_WEIGHT_GRAD as unknown as typeof MATMUL,
        shapes: [[41, 6], [41, 13]],
        params: { dropoutP: 0.25, dropoutSeed: 9 },
      },
    ];
    const tiles = [
      tile(8, 8, 4, 4, 4, false),
      tile(8, 8, 4, 4, 4, true),
      padded(tile(8, 8, 8, 4, 4, true)),
    ];
    try {
      for (const t of tiles) {
        useMatmulVariant(t);
        for (const S of [2, 3, 7]) {
          useMatmulSplitK(S);
          for (const r of runs) {
            const data = r.shapes.map((s) => rand(s.reduce((x, y) => x * y, 1)));
            const cpu = apply(
              r.op,
              r.shapes.map((s, i) => make(s, CPU, data[i])),
              r.params as never,
            );
            const gpu = apply(
              r.op,
              r.shapes.map((s, i) => make(s, GPU!, data[i])),
              r.params as never,
            );
            for (let o = 0; o < cpu.length; o++) {
              const [want, got] = [await cpu[o].toArray(), await gpu[o].toArray()];
              want.forEach((w, i) =>
                assert.ok(
                  Math.abs(got[i] - w) <= 1e-5 * Math.max(1, Math.abs(w)) * 10,
                  `${r.op.name} ${tileName(t)} S=${S} out ${o} [${i}]: ${got[i]} vs ${w}`,
                )
              );
            }
            gpu.forEach((x) => x.dispose());
          }
        }
      }
    } finally {
      useMatmulSplitK(null);
      useMatmulVariant(null);
    }
  },
});

Deno.test({
  name:
    "stridedMatmulKernel() multiplies per-head views of [B, T, H, D] in place (vec4 and scalar, exact and general, transposed a or b)",
  ignore: NO_GPU,
  fn: async () => {
    const rng = makeRng(21);
    const B = 2, H = 3;
    // per head z = b·H + h: x's row r at ((b·L + r)·H + h)·D, the result [B, H, rows, cols]
    const heads = (L: number, D: number) => ({ ld: H * D, s: L * H * D, sh: D });
    const cases = [
      { T: 16, S: 8, D: 8, transA: false, transB: true, tile: tile(8, 8, 4, 4, 4, false) },
      { T: 13, S: 11, D: 6, transA: false, transB: true, tile: tile(8, 8, 4, 4, 4, false) },
      { T: 12, S: 9, D: 8, transA: true, transB: false, tile: tile(12, 8, 4, 4, 4, true) },
    ];
    for (const c of cases) {
      const { T, S, D } = c;
      // x [B, T, H, D], y [B, S, H, D], per head h of batch row b:
      // transB: out = x·yᵀ [T, S] (M = T, N = S, K = D);
      // transA: out = xᵀ·y [D, D] over the first min(T, S) rows (a = x stored [K, M])
      const x = Float32Array.from({ length: B * T * H * D }, () => rng() * 2 - 1);
      const y = Float32Array.from({ length: B * S * H * D }, () => rng() * 2 - 1);
      const [M, N, K] = c.transB ? [T, S, D] : [D, D, Math.min(T, S)];
      const at = (buf: Float32Array, L: number, b: number, h: number, r: number, d: number) =>
        buf[((b * L + r) * H + h) * D + d];
      const want = new Float64Array(B * H * M * N);
      for (let b = 0; b < B; b++) {
        for (let h = 0; h < H; h++) {
          for (let m = 0; m < M; m++) {
            for (let n = 0; n < N; n++) {
              let acc = 0;
              for (let k = 0; k < K; k++) {
                acc += c.transB
                  ? at(x, T, b, h, m, k) * at(y, S, b, h, n, k)
                  : at(x, T, b, h, k, m) * at(y, S, b, h, k, n);
              }
              want[((b * H + h) * M + m) * N + n] = acc;
            }
          }
        }
      }
      const op: OpDef<Record<string, never>> = {
        name: "strided_test",
        outputs: () => [{ shape: [B, H, M, N], dtype: "f32" }],
        cpu: () => {
          throw new Error("GPU only");
        },
        gpu: () => ({
          kernels: [stridedMatmulKernel({
            M,
            N,
            K,
            transA: c.transA,
            transB: c.transB,
            P: B * H,
            zh: H,
            a: heads(T, D),
            b: heads(S, D),
            out: { ld: N, s: H * M * N, sh: M * N },
          }, [{ in: 0 }, { in: 1 }, { out: 0 }])],
        }),
      };
      useMatmulVariant(c.tile);
      try {
        const [out] = apply(op, [
          tensor(x, [B, T, H, D], { backend: GPU! }),
          tensor(y, [B, S, H, D], { backend: GPU! }),
        ], {});
        const got = await out.toArray();
        for (let i = 0; i < want.length; i++) {
          assert.ok(Math.abs(got[i] - want[i]) < 1e-5, `${JSON.stringify(c)} [${i}]`);
        }
      } finally {
        useMatmulVariant(null);
      }
    }
  },
});
