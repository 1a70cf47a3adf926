/**
 * The workgroup-tiled attention kernels (ops/_attention_tiled.ts) against
 * the CPU reference. Run by tests/attention_tiled_gpu_test.ts in a
 * subprocess with `DENO_WEBGPU_BACKEND=vulkan`: Mesa's GL llvmpipe, which
 * the main suite uses, takes seconds to minutes to compile a kernel with
 * kilobytes of workgroup memory (its zero-initialisation), lavapipe
 * milliseconds. On a hardware GPU every registered tile fits and is
 * checked. Without a WebGPU adapter this module exits with code 3 before
 * registering tests.
 *
 * @module
 */
import assert from "node:assert/strict";
import { sharedGpuBackend } from "../gpu/backend.ts";
import {
  ATTENTION,
  ATTENTION_BACKWARD,
  ATTENTION_ENTRIES,
  type AttentionBackwardParams,
  type AttentionParams,
  attentionTunedTable,
  clearAttentionTuning,
  fittingAttentionTiles,
  useAttentionKernel,
  useAttentionProbs,
} from "../ops/attention.ts";
import { autotuneAttention } from "../ops/autotune.ts";
import { configureMatmul } from "../ops/matmul.ts";
import { mmProductShapes } from "../ops/_attention_mm.ts";
import {
  clearTunedVariants,
  parseTileName,
  tunedVariant,
  useMatmulVariant,
} from "../ops/_matmul_variants.ts";
import { softmaxRowsBytes, tileWorkgroupBytes } from "../ops/_matmul_wgsl.ts";
import type { OpCase } from "../ops/registry.ts";
import { apply, tensor } from "../tensor/tensor.ts";
import { allocArray, type CpuArray, type OpDef, sizeOf, type TensorInfo } from "../tensor/types.ts";
import { caseInputs } from "./_random.ts";
import { assertNearReference } from "./_compare.ts";

/** Exit code of this module when there is no WebGPU adapter. */
export const NO_GPU_EXIT = 3;

const found = await sharedGpuBackend();
if (!found) {
  console.error("no WebGPU adapter");
  Deno.exit(NO_GPU_EXIT);
}
const gpu = found;
const target = configureMatmul(gpu);

/**
 * Runs `op` on the CPU (f32) and on the GPU with the forced kernel; compares
 * every output. Returns the op's dispatches on the GPU.
 */
async function check(
  op: OpDef<AttentionParams>,
  c: OpCase,
  kernel: string,
  seed: number,
): Promise<number> {
  const ins = caseInputs(c, seed);
  const infos: TensorInfo[] = c.inputs.map((s) => ({
    shape: s.shape,
    dtype: s.dtype === "i32" ? "i32" : "f32",
  }));
  const p = c.params as AttentionParams;
  const outInfo = op.outputs(infos, p);
  const ref = outInfo.map((o) => allocArray(o.dtype, sizeOf(o.shape)));
  const typed = ins.map((a, k): CpuArray => infos[k].dtype === "i32" ? a : Float32Array.from(a));
  op.cpu(typed, ref, { inputs: infos, outputs: outInfo }, p);
  useAttentionKernel(kernel);
  try {
    const ts = ins.map((a, k) =>
      tensor(a, c.inputs[k].shape, { dtype: infos[k].dtype, backend: gpu })
    );
    gpu.dispatchStats(true);
    const outs = apply(op, ts, p);
    const dispatches = gpu.dispatchStats(true).perOp[op.name] ?? 0;
    for (let o = 0; o < outs.length; o++) {
      const got = await outs[o].data();
      assertNearReference(got, ref[o], c.tol ?? 1e-4, `${op.name} ${c.label} (${kernel}) out${o}`);
    }
    for (const t of [...ts, ...outs]) t.dispose();
    return dispatches;
  } finally {
    useAttentionKernel(null);
  }
}

/**
 * Registry cases for the tiled kernels: one of each masking situation and
 * layout (each compiles its own kernels, seconds apiece on lavapipe with a
 * cold shader cache; "D=128" with 8×8 tiles alone took 10 s), all with a head
 * size a tile takes (D % 4 == 0).
 */
const PICKED = new Set([
  "padding",
  "kv-cache T=1",
  "fully masked rows",
  "fully masked causal",
  "causal T>S",
  "dropout",
  "i32 mask",
  "tiles causal",
  "tiles fully masked causal",
  "BTHD cross S≠T lse grad",
  "BTHD fully masked causal",
  "BTHD tiles causal",
]);
const TILEABLE = ATTENTION_ENTRIES.flatMap((e) =>
  e.cases.map((c, k) => ({ op: e.op as OpDef<AttentionParams>, c, k }))
).filter(({ c }) => PICKED.has(c.label ?? "") && c.inputs[0].shape[3] % 4 === 0);

Deno.test("tiled attention (8×8 tiles) equals the CPU reference on the registry's masking cases, forward and backward", async () => {
  assert.equal(TILEABLE.length, 2 * PICKED.size, "a picked case is missing or not tileable");
  for (const { op, c, k } of TILEABLE) await check(op, c, "a8x8_2x2", 1 + k);
});

/** Several query blocks and key tiles at D = 64, padding and a fully masked batch row. */
function caseAt(
  op: OpDef<AttentionParams>,
  causal: boolean,
  T: number,
  S: number,
  D = 64,
  dropoutP = 0.1,
): OpCase {
  const B = 2, H = 2, lens = [S - 9, causal ? S : 0];
  const shape = (L: number) => [B, L, H, D];
  const mask = {
    shape: [B, S],
    values: Array.from({ length: B * S }, (_, i) => +(i % S < lens[Math.floor(i / S)])),
  };
  const params = {
    layout: "BTHD" as const,
    hasMask: true,
    causal,
    scale: 0.125,
    dropoutP,
    seed: 5,
  };
  if (op === ATTENTION) {
    return {
      label: `T=${T} S=${S} p=${dropoutP}`,
      inputs: [{ shape: shape(T) }, { shape: shape(S) }, { shape: shape(S) }, mask],
      params,
    };
  }
  const fwd = caseAt(ATTENTION, causal, T, S, D, dropoutP);
  const fwdInfos: TensorInfo[] = fwd.inputs.map((s) => ({ shape: s.shape, dtype: "f64" }));
  return {
    label: `T=${T} S=${S} p=${dropoutP}`,
    inputs: [
      { shape: shape(T) },
      { shape: shape(S) },
      { shape: shape(S) },
      { shape: shape(T) },
      { shape: [B, T, H], min: 0, max: 2 },
      { shape: shape(T) },
      mask,
    ],
    // out and lse as the forward gives them (the backward's contract; the row epilogues
    // take Δ = Σ_s P·dP, which equals dO·O only then)
    derive(ins) {
      const out = new Float64Array(ins[3].length), lse = new Float64Array(ins[4].length);
      const outInfos = ATTENTION.outputs(fwdInfos, params);
      ATTENTION.cpu([ins[0], ins[1], ins[2], ins[6]], [out, lse], {
        inputs: fwdInfos,
        outputs: outInfos,
      }, params);
      ins[3] = out.map(Math.fround);
      ins[4] = lse.map(Math.fround);
    },
    params: { ...params, hasDLse: false },
  };
}

Deno.test("every registered attention tile equals the CPU reference at D = 64, or D = 32 where 64 does not fit", async () => {
  for (const [op, kind] of [[ATTENTION, "fwd"], [ATTENTION_BACKWARD, "bwd"]] as const) {
    const at64 = fittingAttentionTiles(kind, 64, target);
    const at32 = fittingAttentionTiles(kind, 32, target).filter((t) => !at64.includes(t));
    assert.ok(at64.length >= 3, `${kind}: only ${at64.join(", ")} fit`);
    for (const tile of at64) await check(op, caseAt(op, true, 70, 70), tile, 3);
    // the tiles too large for this adapter's workgroup memory at D = 64 (a software adapter's
    // 32 KiB), with half the head size: the same tile geometry
    for (const tile of at32) await check(op, caseAt(op, true, 70, 70, 32), tile, 5);
    // cross attention (S ≠ T, not causal) on the preferred tile
    await check(op, caseAt(op, false, 37, 75), at64[0], 4);
  }
  // on a GPU with 48 KiB of workgroup memory every registered tile runs at D = 64 or 32
  if (target.maxWorkgroupBytes >= 49152) {
    assert.ok(fittingAttentionTiles("fwd", 64, target).includes("a64x32_4x8"));
  }
});

Deno.test('"mm" attention (per-head matmuls, scores in scratch) equals the CPU reference on every registry case and at D = 64', async () => {
  const all = ATTENTION_ENTRIES.flatMap((e) =>
    e.cases.map((c, k) => ({ op: e.op as OpDef<AttentionParams>, c, k }))
  );
  assert.ok(all.length >= 2 * PICKED.size);
  for (const { op, c, k } of all) await check(op, c, "mm", 11 + k);
  for (const op of [ATTENTION, ATTENTION_BACKWARD]) {
    await check(op, caseAt(op, true, 70, 70), "mm", 3);
    await check(op, caseAt(op, false, 37, 75), "mm", 4);
    await check(op, caseAt(op, true, 64, 64), "mm", 6); // whole tiles: vec4, no bounds checks
    await check(op, caseAt(op, false, 9, 530), "mm", 7); // past MM_SOFTMAX_REG_KEYS: two reads
    // without dropout the backward's P and dS come from product epilogues: whole tiles (no
    // bounds checks) and partial ones
    await check(op, caseAt(op, true, 64, 64, 64, 0), "mm", 8);
    await check(op, caseAt(op, false, 37, 75, 64, 0), "mm", 9);
  }
});

Deno.test('"mm" with row epilogues (softmax in Q·Kᵀ, Δ and dS in dO·Vᵀ, where a tile holds whole rows) equals the CPU reference; wider rows take kernels of their own', async () => {
  // the masking cases on a tile of 64 columns, 4×4 per thread (16 threads share a row); D = 64
  // on 128 columns, 8×8 (16 threads, 8 rows each), whose unrolled kernels take lavapipe seconds
  // to compile each
  const picked = ATTENTION_ENTRIES.flatMap((e) =>
    e.cases.filter((c) => PICKED.has(c.label ?? "")).map((c) => ({ op: e.op, c }))
  ) as { op: OpDef<AttentionParams>; c: OpCase }[];
  const wide: [boolean, number, number, number][] = [[true, 70, 70, 0.1], [false, 37, 75, 0]];
  for (const [tile, BN] of [["t64x64k16_4x4", 64], ["t128x128k16_8x8", 128]] as const) {
    useMatmulVariant(tile);
    // row epilogues where a row fits the tile and the tile with the rows' partials the adapter
    const t = parseTileName(tile)!;
    const room = tileWorkgroupBytes(t) + softmaxRowsBytes(t) <= target.maxWorkgroupBytes;
    const want = (op: OpDef<AttentionParams>, c: OpCase) => {
      const p = c.params as AttentionBackwardParams;
      const rows = c.inputs[1].shape[p.layout === "BTHD" ? 1 : 2] <= BN && room;
      if (op === ATTENTION) return rows ? 2 : 3;
      // backward: P, dS (Δ in its epilogue), dV, dQ, dK; else the Δ kernel first, and with
      // dropout the elementwise kernel between the products
      if (p.dropoutP > 0) return 7;
      return rows && !p.hasDLse ? 5 : 6;
    };
    try {
      for (const { op, c } of BN === 64 ? picked : []) {
        const n = await check(op, c, "mm", 21);
        assert.equal(n, want(op, c), `${tile} ${op.name} ${c.label}: ${n} dispatches`);
      }
      for (const op of [ATTENTION, ATTENTION_BACKWARD]) {
        for (const [causal, T, S, p] of BN === 64 ? [...wide, [true, 64, 64, 0] as const] : wide) {
          const c = caseAt(op, causal, T, S, 64, p);
          const n = await check(op, c, "mm", 30);
          assert.equal(n, want(op, c), `${tile} ${op.name} T=${T} S=${S}: ${n} dispatches`);
        }
      }
    } finally {
      useMatmulVariant(null);
    }
  }
});

Deno.test("autotuneAttention() times the candidates and the selection runs the fastest", async () => {
  clearAttentionTuning();
  const shape = {
    op: "fwd" as const,
    BH: 4,
    T: 20,
    S: 20,
    D: 16,
    causal: true,
    mask: true,
    dropout: false,
  };
  const kernels = ["rows", "mm", "a8x8_2x2"], matmulVariants = ["t32x32k16_4x4"];
  const [r] = await autotuneAttention(gpu, [shape], { force: true, kernels, matmulVariants });
  assert.deepEqual(Object.keys(r.ms).sort(), ["a8x8_2x2", "mm", "rows"]);
  assert.ok(Object.values(r.ms).every((ms) => ms > 0 && Number.isFinite(ms)), JSON.stringify(r.ms));
  // the fastest first time, or, among near ties, the fastest of the runoff's medians
  const table = Object.keys(r.runoff).length > 0 ? r.runoff : r.ms;
  const best = Object.keys(table).reduce((x, y) => (table[y] < table[x] ? y : x));
  assert.equal(r.kernel, best);
  for (const k of Object.keys(r.runoff)) {
    assert.ok(r.ms[k] <= 1.15 * Math.min(...Object.values(r.ms)));
  }
  // "mm" tuned its products' tiles first (here among one variant)
  for (const m of mmProductShapes(shape)) assert.equal(tunedVariant(m), "t32x32k16_4x4");
  assert.deepEqual(r.rejected, []); // the tile's result matched the row kernels'
  assert.deepEqual(Object.values(attentionTunedTable(target.description)), [best]);
  // the backward too: the tile's dQ, dK and dV are checked against the row kernels'; "mm" is
  // timed over the probabilities its forward kept (the default), the others without
  const gpuPlan = ATTENTION_BACKWARD.gpu!;
  const kept: boolean[] = [];
  ATTENTION_BACKWARD.gpu = (info, p) => {
    kept.push(p.keepProbs === true);
    return gpuPlan(info, p);
  };
  try {
    const [b] = await autotuneAttention(gpu, [{ ...shape, op: "bwd" }], {
      force: true,
      kernels,
      matmulVariants,
    });
    assert.deepEqual(b.rejected, []);
    assert.ok(
      Object.values(b.ms).every((ms) => ms > 0 && Number.isFinite(ms)),
      JSON.stringify(b.ms),
    );
    assert.ok(kept.includes(true) && kept.includes(false));
    // with recomputed probabilities nothing is kept
    kept.length = 0;
    useAttentionProbs("recomputed");
    await autotuneAttention(gpu, [{ ...shape, op: "bwd" }], {
      force: true,
      kernels,
      matmulVariants,
    });
    assert.ok(kept.length > 0 && !kept.includes(true));
  } finally {
    ATTENTION_BACKWARD.gpu = gpuPlan;
    useAttentionProbs(null);
  }
  clearAttentionTuning();
  clearTunedVariants();
});
