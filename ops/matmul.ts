/**
 * Batched matrix multiply with optionally transposed operands:
 * `out[..., M, N] = op(a)[..., M, K] · op(b)[..., K, N]`, where `op` transposes
 * the last two axes when `transA`/`transB` is set. Batch axes broadcast (a
 * 2-D operand is shared by every batch). `matmulBias` adds a bias row
 * (`bias[N]`) in the same kernel.
 *
 * On WebGPU each call runs one of the register-tiled kernels that
 * ops/_matmul_wgsl.ts generates (tile, thread block, vec4 loads, bounds
 * checks specialised per call), chosen by ops/_matmul_variants.ts: the
 * variant forced by `WEBSEQ_MATMUL_VARIANT=<name>` or `useMatmulVariant`,
 * else the one {@linkcode autotuneMatmul} measured fastest for the shape on
 * this adapter, else a heuristic by shape. {@linkcode stridedMatmulKernel}
 * gives other ops (attention's per-head products) the same kernels over
 * strided views.
 *
 * @module
 */
import { isSoftwareAdapter } from "../gpu/adapter.ts";
import type { GpuBackend } from "../gpu/backend.ts";
import { makeRng } from "../tensor/rng.ts";
import { apply, applyInto, type Tensor, tensor } from "../tensor/tensor.ts";
import {
  type BindRef,
  type CpuArray,
  fmtShape,
  type GpuKernel,
  type GpuPlan,
  type OpDef,
  type OpInfo,
  packUniform,
  type Shape,
  type TensorLike,
} from "../tensor/types.ts";
import { add, broadcastShapes, div, mul, sub } from "./binary.ts";
import { wasmMatmulF32 } from "./_wasm_matmul.ts";
import { sum, sumTo } from "./reduce.ts";
import { reshape } from "./reshape.ts";
import { lastAxisRows } from "./softmax.ts";
import { dropoutScale, dropoutThreshold } from "./dropout.ts";
import { grid1d } from "./_wgsl.ts";
import {
  LEGACY_TILE,
  legacyMatmulWgsl,
  MATMUL_CODEGEN_VERSION,
  type MatmulGroup,
  type MatmulHalf,
  type MatmulSpec,
  type MatmulTile,
  matmulWgsl,
  type ScoresGradRows,
  type ScoresProb,
  softmaxRowsBytes,
  splitReduceWgsl,
  stagesF16,
  tileWorkgroupBytes,
} from "./_matmul_wgsl.ts";
import {
  clearTunedVariants,
  forcedMatmulSplitK,
  halfForm,
  heuristicVariant,
  isRecordingMatmulShapes,
  loadTunedTable,
  MATMUL_VARIANTS,
  type MatmulShape,
  type MatmulTarget,
  matmulTarget,
  type MatmulVariant,
  matmulVariant,
  parseTileName,
  recordMatmulShape,
  selectionEpoch,
  selectMatmulVariant,
  setMatmulTarget,
  setTunedSplit,
  setTunedVariant,
  SPLIT_MAX,
  type SplitK,
  splitKFor,
  splitUnit,
  startMatmulShapeRecording,
  stopMatmulShapeRecording,
  tileName,
  tunedTable,
  tunedVariant,
  useMatmulSplitK,
  useMatmulVariant,
  variantFits,
  withMatmulVariant,
} from "./_matmul_variants.ts";
import type { OpEntry } from "./registry.ts";
import { errorLine } from "../tensor/errors.ts";

/** Parameters of matmul. */
export interface MatmulParams {
  /** Read `a` as `[..., K, M]` and transpose it. */
  transA: boolean;
  /** Read `b` as `[..., N, K]` and transpose it. */
  transB: boolean;
}

/** What a matmul computes: `out[P, M, N]` from batches of op(a) `[M, K]` and op(b) `[K, N]`. */
export interface MatmulGeometry {
  /** Rows of op(a) and out. */
  M: number;
  /** Columns of op(b) and out. */
  N: number;
  /** Inner dimension. */
  K: number;
  /** Broadcast batch axes of the output. */
  batch: number[];
  /** Batch count. */
  P: number;
  /** Element offset between batches of a (0 when shared). */
  sa: number;
  /** Element offset between batches of b (0 when shared). */
  sb: number;
  /** Output shape `[...batch, rows of op(a), N]`. */
  shape: number[];
}
type Geometry = MatmulGeometry;

/** Shape rule of every matmul op (`name` goes into the one-line TypeError). */
export function matmulGeometry(
  as: Shape,
  bs: Shape,
  p: MatmulParams,
  name = "matmul",
): MatmulGeometry {
  if (as.length < 2 || bs.length < 2) {
    throw new TypeError(`Cannot ${name} ${fmtShape(as)} by ${fmtShape(bs)}: need rank ≥ 2`);
  }
  const [ar, ac] = as.slice(-2), [br, bc] = bs.slice(-2);
  const M = p.transA ? ac : ar, Ka = p.transA ? ar : ac;
  const Kb = p.transB ? bc : br, N = p.transB ? br : bc;
  if (Ka !== Kb) {
    throw new TypeError(
      `Cannot ${name} ${fmtShape(as)} by ${fmtShape(bs)}: inner dimensions differ (${Ka} vs ${Kb})`,
    );
  }
  const ab = as.slice(0, -2), bb = bs.slice(0, -2);
  const batch = broadcastShapes(ab, bb, name);
  const P = batch.reduce((x, y) => x * y, 1);
  const pa = ab.reduce((x, y) => x * y, 1), pb = bb.reduce((x, y) => x * y, 1);
  if ((pa !== 1 && pa !== P) || (pb !== 1 && pb !== P)) {
    throw new TypeError(
      `Cannot ${name} ${fmtShape(as)} by ${fmtShape(bs)}: batch axes must match or be absent`,
    );
  }
  const shape = [...batch, M, N];
  // batches of rows times one shared matrix: one matmul over all the rows (the same memory
  // layout), so a Linear layer needs no reshape and its kernel no batch axis
  if (!p.transA && pb === 1 && pa === P && P > 1) {
    return { M: M * P, N, K: Ka, batch, P: 1, sa: 0, sb: 0, shape };
  }
  return { M, N, K: Ka, batch, P, sa: pa === 1 ? 0 : M * Ka, sb: pb === 1 ? 0 : Ka * N, shape };
}

const codes = new Map<string, string>();

/**
 * What a fused matmul adds around the product (MATMUL_BIAS, ops/gelu_linear.ts):
 * inputs after `a` and `b` are the bias (when `bias`), `aux` (when
 * `geluGradOut`) then the addend (when `add`); see ops/_matmul_wgsl.ts for
 * the semantics.
 */
export interface MatmulFusion {
  /** Add `bias[n]` (input 2). */
  bias?: boolean;
  /** Operand read through `dropout(gelu(·))`. */
  geluIn?: "a" | "b" | null;
  /** Multiply outputs by the dropout mask and `gelu'(aux)` (`aux` shaped like out). */
  geluGradOut?: boolean;
  /** The dropout of the GELU (mask by storage index as ops/dropout.ts). */
  dropout?: { p: number; seed: number } | null;
  /** Add an input shaped like out (after bias and aux) to the product. */
  add?: boolean;
  /** A second output `[P, M]`: the row sums of op(a) over k (see ops/_matmul_wgsl.ts). */
  rowSum?: boolean;
  /** The f16 kernel (ops/matmul_f16.ts): operand storage, accumulation and result types. */
  half?: MatmulHalf;
  /**
   * A grouped product (ops/linear_group.ts; see `MatmulGroup` in ops/_matmul_wgsl.ts): the
   * geometry's `P` is the group count and the grouped operand's batch offset 0. Inputs: role
   * "b": `[a, b_0 … b_{n−1}, bias_0 … bias_{n−1}]`, outputs one per group; role "a": `[a_0 …
   * a_{n−1}, b]`, outputs `[out_0 …, rsum_0 …]`.
   */
  group?: MatmulGroup;
}

/**
 * The single kernel of one call (no split K): the selected variant,
 * specialised for the shape and fusion. Ops that may split K use
 * {@linkcode matmulPlan}.
 */
export function matmulKernel(g: MatmulGeometry, p: MatmulParams, f: MatmulFusion = {}): GpuKernel {
  return matmulPlan(g, p, f, false).kernels[0];
}

/**
 * What one call runs: the selected variant's kernel, specialised for the
 * shape and fusion; with `split` (plain products, the addend and row-sum
 * fusions, GELU prologues) and a shape that gives a large GPU too few
 * output tiles ({@linkcode splitKFor}), the kernel over K ranges into
 * scratch partials, then their reduction.
 */
export function matmulPlan(
  g: MatmulGeometry,
  p: MatmulParams,
  f: MatmulFusion = {},
  split = true,
): GpuPlan {
  const { M, N, K, P, sa, sb } = g;
  if (P > 65535) throw new RangeError(`matmul batch ${P} exceeds 65535`);
  const drop = f.dropout && f.dropout.p > 0 ? f.dropout : null;
  if (isRecordingMatmulShapes()) {
    const form = f.half ? { form: halfForm(f.half) } : {};
    recordMatmulShape({ M, N, K, P, transA: p.transA, transB: p.transB, ...form });
  }
  // the variant, code and grid of a call depend on the shape, the flags and the selection
  // state only: memoised, so a training step's matmuls skip selection and code lookup
  const key = planKey(selectionEpoch(), g, p, f, drop !== null, split);
  let plan = plans.get(key);
  if (!plan) {
    plan = planMatmul(g, p, f, drop !== null, split);
    if (plans.size >= 4096) plans.clear();
    plans.set(key, plan);
  }
  const { S, kc } = plan.split;
  const ints = S > 1 ? [M, N, K, sa, sb, S, kc] : [M, N, K, sa, sb];
  const uniform = drop
    ? packUniform([...ints, drop.seed >>> 0, dropoutThreshold(drop.p)], [dropoutScale(drop.p)])
    : packUniform(ints);
  // the reduction's uniform depends on the geometry alone: it is part of the plan; the product's
  // FLOPs (a grouped "k" product runs its K loop once per group) for profiles
  const flops = 2 * M * N * K * P * (f.group?.role === "k" ? f.group.n : 1);
  const kernels: GpuKernel[] = [{ ...plan.kernels[0], uniform, flops }];
  if (S > 1) kernels.push(plan.kernels[1]);
  return plan.temps ? { temps: plan.temps, kernels } : { kernels };
}

interface Plan {
  /** The product (its uniform is added per call), then with split K the reduction. */
  kernels: Omit<GpuKernel, "uniform">[] | [Omit<GpuKernel, "uniform">, GpuKernel];
  temps?: number[];
  split: SplitK;
}

const plans = new Map<string, Plan>();

/** What a matmul plan depends on: selection state, geometry, transposes and fusion flags. */
function planKey(
  epoch: number,
  g: Geometry,
  p: MatmulParams,
  f: MatmulFusion,
  drop: boolean,
  split: boolean,
) {
  const h = f.half;
  const flags = [f.bias, f.geluGradOut, f.add, f.rowSum, drop, split].map((x) => +!!x).join("");
  const half = h ? `${h.a}${h.b}${h.acc}${h.out}${+stagesF16(h)}g${h.group ?? 16}` : "";
  const group = f.group ? `${f.group.role}${f.group.n}` : "";
  return [epoch, g.M, g.N, g.K, g.P, g.sa, g.sb, +p.transA, +p.transB, flags, f.geluIn, half, group]
    .join("|");
}

/** The uncached part of {@linkcode matmulPlan}: variant, split, specialised code, bindings, grids. */
function planMatmul(
  g: Geometry,
  p: MatmulParams,
  f: MatmulFusion,
  dropout: boolean,
  maySplit: boolean,
): Plan {
  const { M, N, K, P } = g;
  const form = f.half ? { form: halfForm(f.half) } : {};
  const shape = { M, N, K, P, transA: p.transA, transB: p.transB, ...form };
  const fused = !!(f.bias || f.geluIn || f.geluGradOut || f.add || f.rowSum || f.half);
  let v = selectMatmulVariant(shape);
  // the legacy kernel has no prologue/epilogue, and f16 accumulation needs slices that divide
  // or are multiples of its groups of k (16 unless half.group says otherwise): such calls take
  // the heuristic's tile
  const bk = v.tile?.BK ?? 0, g16 = f.half?.group ?? 16;
  const groupsFit = f.half?.acc !== "f16" || g16 % bk === 0 || bk % g16 === 0;
  if ((!v.tile && (fused || f.group)) || !groupsFit) {
    v = matmulVariant(heuristicVariant(shape, matmulTarget()));
  }
  const gr = f.group ?? null;
  // inputs in binding order (a, b, bias, aux, addend), then the outputs (out, rsum); a
  // group per operand binding ("k": a and b per group, one output)
  const nAB = !gr ? 2 : gr.role === "k" ? 2 * gr.n : 1 + gr.n;
  const nOut = gr && gr.role !== "k" ? gr.n : 1;
  const nIn = nAB + (f.bias ? nOut : 0) + (f.geluGradOut ? 1 : 0) + (f.add ? 1 : 0);
  const ins = (n: number, from = 0) => Array.from({ length: n }, (_, i) => ({ in: from + i }));
  const outs = (n: number, from = 0) => Array.from({ length: n }, (_, i) => ({ out: from + i }));
  const bind: BindRef[] = [...ins(nIn), ...outs(nOut)];
  if (f.rowSum) bind.push(...outs(nOut, nOut));
  const t = v.tile;
  const none: SplitK = { S: 1, kc: K };
  if (!t) {
    const key = `legacy${+p.transA}${+p.transB}`;
    let code = codes.get(key);
    if (!code) codes.set(key, code = legacyMatmulWgsl(p.transA, p.transB));
    const workgroups = [Math.ceil(N / LEGACY_TILE), Math.ceil(M / LEGACY_TILE), P] as const;
    return { kernels: [{ code, bind, workgroups }], split: none };
  }
  // split K writes f32 partials: not for f16 results, nor the bias and gelu' epilogues; an
  // f16-accumulating kernel splits at multiples of its groups of k
  const canSplit = maySplit && f.half?.out !== "f16" && !f.bias && !f.geluGradOut;
  const split = canSplit ? splitKFor(shape, t, matmulTarget(), splitUnit(shape, t)) : none;
  const spec: MatmulSpec = {
    transA: p.transA,
    transB: p.transB,
    // vec4 bindings need ≥ 16 bytes: no vec4 reads or writes of empty operands
    vecA: K > 0 && M > 0 && (p.transA ? M : K) % 4 === 0,
    vecB: K > 0 && N > 0 && (p.transB ? K : N) % 4 === 0,
    vecOut: N > 0 && N % 4 === 0,
    exact: K > 0 && M > 0 && N > 0 && M % t.BM === 0 && N % t.BN === 0 && K % t.BK === 0,
    bias: !!f.bias,
  };
  if (f.geluIn) spec.geluIn = f.geluIn;
  if (f.geluGradOut) spec.geluGradOut = true;
  if (f.add) spec.addOut = true;
  if (f.rowSum) spec.rowSum = true;
  if (f.half) spec.half = f.half;
  if (gr) spec.group = gr;
  if (dropout && (f.geluIn || f.geluGradOut)) spec.dropout = true;
  // row sums come from the first column block: one even when there are no columns (a
  // zero-width Linear's bias gradient still sums dy)
  const cols = Math.max(f.rowSum ? 1 : 0, Math.ceil(N / t.BN));
  const grid = (z: number) => [cols, Math.ceil(M / t.BM), z] as const;
  if (split.S === 1) {
    const key = JSON.stringify([t, spec]);
    let code = codes.get(key);
    if (!code) codes.set(key, code = matmulWgsl(t, spec));
    return { kernels: [{ code, bind, workgroups: grid(P) }], split };
  }
  // split K: partial products (and row sums) into scratch, then one reduction adds them up
  // in order, with the addend (or the f16 rounding of a "round" result)
  delete spec.addOut;
  spec.splitK = true;
  if (f.half) spec.half = { ...f.half, out: "f32" };
  const key = JSON.stringify([t, spec]);
  let code = codes.get(key);
  if (!code) codes.set(key, code = matmulWgsl(t, spec));
  const mmBind: BindRef[] = [...ins(nAB), { tmp: 0 }];
  if (f.rowSum) mmBind.push({ tmp: 1 });
  const round = f.half?.out === "round";
  const rGroups = nOut > 1 ? nOut : 0;
  const rKey = `reduce${+!!f.add}${+!!f.rowSum}${+round}${rGroups ? `g${rGroups}` : ""}`;
  let rCode = codes.get(rKey);
  if (!rCode) codes.set(rKey, rCode = splitReduceWgsl(!!f.add, !!f.rowSum, round, rGroups));
  const rBind: BindRef[] = [{ tmp: 0 }];
  if (f.rowSum) rBind.push({ tmp: 1 });
  if (f.add) rBind.push({ in: nAB });
  rBind.push(...outs(nOut));
  if (f.rowSum) rBind.push(...outs(nOut, nOut));
  const temps = [P * split.S * M * N * 4];
  if (f.rowSum) temps.push(P * split.S * M * 4);
  return {
    kernels: [
      { code, bind: mmBind, workgroups: grid(P * split.S) },
      {
        code: rCode,
        bind: rBind,
        uniform: packUniform([P * M * N, split.S, M * N, f.rowSum ? P * M : 0, M]),
        workgroups: grid1d(P * M * N + (f.rowSum ? P * M : 0)),
      },
    ],
    temps,
    split,
  };
}

/** Where one operand (or the output) of a {@linkcode StridedMatmul} lies: elements. */
export interface StridedOperand {
  /** Between consecutive stored rows (`[K, M]` rows for a transposed `a`). */
  ld: number;
  /** Between outer batches (`z / zh`). */
  s: number;
  /** Between inner batches (`z % zh`). */
  sh: number;
}

/**
 * A batched product over strided views (attention's per-head products on
 * `[B, T, H, D]` projections): batch `z < P` is `(z / zh, z % zh)`, and each
 * operand's element `(row r, column c)` of batch z sits at
 * `s·(z / zh) + sh·(z % zh) + r·ld + c` (rows as stored).
 */
export interface StridedMatmul {
  /** Rows of op(a) and out. */
  M: number;
  /** Columns of op(b) and out. */
  N: number;
  /** Inner dimension. */
  K: number;
  /** `a` stored `[K, M]`. */
  transA: boolean;
  /** `b` stored `[N, K]`. */
  transB: boolean;
  /** Batches (at most 65535). */
  P: number;
  /** Inner batch count (P is a multiple of it). */
  zh: number;
  /** Where `a` lies. */
  a: StridedOperand;
  /** Where `b` lies. */
  b: StridedOperand;
  /** Where `out` lies. */
  out: StridedOperand;
  /**
   * Attention's scores gradient in the epilogue (`MatmulSpec.scoresGrad`):
   * `out = scale·P·(product − Δ_r)`, 0 in flagged rows; the bindings are then
   * `a`, `b`, `P` (laid out as `out`), `info` (Δ and flag per row `z·M + m`),
   * `out`.
   */
  scoresGrad?: { scale: number };
  /**
   * Attention's probabilities in the epilogue of `Q·Kᵀ` (`MatmulSpec.scoresProb`:
   * M = T, N = S, `zh` = H): `out = exp(scale·z − lse)` on allowed keys, 0 on
   * others, `1/S` in flagged rows; the bindings are then `a`, `b`, `lse`, the
   * key mask (when `mask`), `info` (flag per row `z·M + m` at `2r + 1`), `out`.
   */
  scoresProb?: ScoresProb & { scale: number };
  /**
   * Attention's forward softmax in the epilogue of `Q·Kᵀ` (`MatmulSpec.softmaxRows`,
   * {@linkcode stridedSoftmaxKernel}): bindings `a`, `b`, the key mask (when
   * `mask`), `out` (the probabilities after dropout), `lse`.
   */
  softmaxRows?: ScoresProb & {
    scale: number;
    /** The dropout's seed, 24-bit threshold and keep scale (ops/dropout.ts), or none. */
    dropout: { seed: number; thr: number; ks: number } | null;
  };
  /**
   * Attention's `scale·dS` in the epilogue of `dO·Vᵀ` with Δ from the row
   * (`MatmulSpec.scoresGradRows`, {@linkcode stridedRowsKernel}): bindings `a`,
   * `b`, `P`, the key mask (when `mask`), `out`.
   */
  scoresGradRows?: ScoresGradRows & { scale: number };
}

/**
 * One dispatch of a {@linkcode StridedMatmul} with the bindings `bind`
 * (`a`, `b`, `out`; see the epilogues for theirs): the tile selected for the
 * shape class `[P, M, K]·[K, N]` (forced, tuned or heuristic, as
 * {@linkcode matmulPlan}), never split; vec4 loads and stores where the
 * strides and offsets allow them. With `softmaxRows`, use
 * {@linkcode stridedSoftmaxKernel}.
 */
export function stridedMatmulKernel(g: StridedMatmul, bind: BindRef[]): GpuKernel {
  if (g.softmaxRows || g.scoresGradRows) {
    throw new TypeError("stridedMatmulKernel: a rows epilogue needs stridedRowsKernel");
  }
  return stridedKernel(g, bind)!;
}

/**
 * {@linkcode stridedMatmulKernel} with an epilogue over whole rows
 * (`g.softmaxRows` or `g.scoresGradRows`), or null where the selected tile
 * cannot hold a whole row (`N > BN`) or the adapter's workgroup memory the
 * rows' partials (then the caller runs kernels of its own).
 */
export function stridedRowsKernel(g: StridedMatmul, bind: BindRef[]): GpuKernel | null {
  if (!g.softmaxRows && !g.scoresGradRows) {
    throw new TypeError("stridedRowsKernel: needs softmaxRows or scoresGradRows");
  }
  return stridedKernel(g, bind);
}

function stridedKernel(g: StridedMatmul, bind: BindRef[]): GpuKernel | null {
  const { M, N, K, P, zh, a, b, out } = g;
  if (P > 65535) throw new RangeError(`matmul batch ${P} exceeds 65535`);
  if (zh < 1 || P % zh !== 0) throw new RangeError(`strided matmul: ${P} batches by ${zh}`);
  const shape = { M, N, K, P, transA: g.transA, transB: g.transB };
  if (isRecordingMatmulShapes()) recordMatmulShape(shape);
  const by4 = (o: StridedOperand) => o.ld % 4 === 0 && o.s % 4 === 0 && o.sh % 4 === 0;
  const vecA = K > 0 && (g.transA ? M : K) % 4 === 0 && by4(a);
  const vecB = K > 0 && (g.transB ? K : N) % 4 === 0 && by4(b);
  const vecOut = N % 4 === 0 && by4(out);
  // the tile and code depend on the shape, the vec4 flags, the epilogue and the selection state
  // only: memoised as matmulPlan's, so attention's products skip selection and code lookup per call
  const sg = g.scoresGrad ?? null, sp = g.scoresProb ?? null, sr = g.softmaxRows ?? null;
  const gr = g.scoresGradRows ?? null;
  // the epilogue's part of the key: a short string (no objects built for a memoised call)
  const epilogue = sg
    ? "g"
    : sp
    ? `p${+sp.causal}${sp.mask}${sp.layout}${+!!sp.scan}`
    : sr
    ? `s${+sr.causal}${sr.mask}${sr.layout}${+(sr.dropout !== null)}`
    : gr
    ? `r${+gr.causal}${gr.mask}`
    : "";
  const key = [
    selectionEpoch(),
    M,
    N,
    K,
    P,
    +g.transA,
    +g.transB,
    +vecA,
    +vecB,
    +vecOut,
    epilogue,
  ].join("|");
  let plan = stridedPlans.get(key);
  if (plan === undefined) {
    const prob = sp
      ? { causal: sp.causal, mask: sp.mask, layout: sp.layout, ...(sp.scan ? { scan: true } : {}) }
      : null;
    const rows = sr
      ? { causal: sr.causal, mask: sr.mask, layout: sr.layout, dropout: sr.dropout !== null }
      : null;
    const gradRows = gr ? { causal: gr.causal, mask: gr.mask } : null;
    let v = selectMatmulVariant(shape);
    if (!v.tile) v = matmulVariant(heuristicVariant(shape, matmulTarget()));
    const t = v.tile!;
    const fits = (!rows && !gradRows) ||
      (N <= t.BN &&
        tileWorkgroupBytes(t) + softmaxRowsBytes(t) <= matmulTarget().maxWorkgroupBytes);
    if (fits) {
      const spec: MatmulSpec = {
        transA: g.transA,
        transB: g.transB,
        vecA,
        vecB,
        vecOut,
        exact: K > 0 && M % t.BM === 0 && N % t.BN === 0 && K % t.BK === 0,
        bias: false,
        strided: true,
      };
      if (sg) spec.scoresGrad = true;
      if (prob) spec.scoresProb = prob;
      if (rows) spec.softmaxRows = rows;
      if (gradRows) spec.scoresGradRows = gradRows;
      const codeKey = JSON.stringify([t, spec]);
      let code = codes.get(codeKey);
      if (!code) codes.set(codeKey, code = matmulWgsl(t, spec));
      plan = { code, workgroups: [Math.ceil(N / t.BN), Math.ceil(M / t.BM), P] };
    } else plan = null;
    if (stridedPlans.size >= 4096) stridedPlans.clear();
    stridedPlans.set(key, plan);
  }
  if (plan === null) return null;
  const ints = [M, N, K, a.s, b.s, a.ld, b.ld, out.ld, zh, a.sh, b.sh, out.s, out.sh];
  const d = sr?.dropout ?? null;
  return {
    code: plan.code,
    bind,
    uniform: sr
      ? packUniform([...ints, d?.seed ?? 0, d?.thr ?? 0], [sr.scale, d?.ks ?? 1])
      : packUniform(ints, sg ? [sg.scale] : sp ? [sp.scale] : gr ? [gr.scale] : []),
    workgroups: plan.workgroups,
    flops: 2 * M * N * K * P,
  };
}

/** Memoised strided plans; null: a softmax epilogue that does not fit the selected tile. */
const stridedPlans = new Map<
  string,
  { code: string; workgroups: [number, number, number] } | null
>();

/**
 * Copies `rows` rows of length K starting at `base` into `dst` ([rows, K]);
 * `transposed` means the source is stored [K, rows].
 */
function rowsOverK(
  src: ArrayLike<number>,
  base: number,
  rows: number,
  K: number,
  transposed: boolean,
  dst: Float64Array,
): void {
  if (!transposed) {
    for (let i = 0; i < rows * K; i++) dst[i] = src[base + i];
    return;
  }
  for (let k = 0; k < K; k++) {
    const srow = base + k * rows;
    for (let r = 0; r < rows; r++) dst[r * K + k] = src[srow + r];
  }
}

/**
 * The gradients of `op(a) · op(b)` for `dy` (null where not wanted). `da`
 * absorbs the gradient pending for `a` (`takeGrad(0)`) into its kernel
 * when no batch axes are summed away.
 */
function matmulGrads(
  a: Tensor,
  b: Tensor,
  dy: Tensor,
  params: MatmulParams,
  takeGrad: ((i: number) => TensorLike | null) | undefined,
  wantA: boolean,
  wantB: boolean,
  sinkB?: () => TensorLike | null,
): [Tensor | null, Tensor | null] {
  const { transA: tA, transB: tB } = params;
  let da: Tensor | null = null, db: Tensor | null = null;
  if (wantA) {
    // da = dy·op(b)ᵀ (or its transpose); a gradient pending for `a` (its other uses) is
    // added by the same kernel when no batch axes are summed away
    const [x, y, p] = tA
      ? [b, dy, { transA: tB, transB: true }]
      : [dy, b, { transA: false, transB: !tB }];
    const g = matmulGeometry(x.shape, y.shape, p);
    const same = g.batch.length + 2 === a.rank &&
      g.batch.every((d, k) => d === a.shape[k]) && a.dtype === "f32";
    const acc = same ? (takeGrad?.(0) as Tensor | null | undefined) : null;
    if (acc) {
      da = apply(MATMUL_ADD, [x, y, acc], p)[0];
      acc.dispose();
    } else {
      da = matmul(x, y, p);
      if (da.rank !== a.rank || da.shape.some((d, k) => d !== a.shape[k])) da = sumTo(da, a.shape);
    }
  }
  if (wantB) {
    // a shared 2-D b: sum over every row of a in one matmul (not per batch, then summed)
    const [a2, dy2] = b.rank === 2 && a.rank > 2 && !tA
      ? [reshape(a, [-1, a.shape[a.rank - 1]]), reshape(dy, [-1, dy.shape[dy.rank - 1]])]
      : [a, dy];
    const [x, y, p] = tB
      ? [dy2, a2, { transA: true, transB: tA }]
      : [a2, dy2, { transA: !tA, transB: false }];
    const shape = matmulGeometry(x.shape, y.shape, p).shape;
    if (shape.length === b.rank && shape.every((d, k) => d === b.shape[k])) {
      // b's gradient in one product: into the optimizer's flat buffer where it offers it
      db = applyInto(MATMUL, [x, y], p, [sinkB?.()])[0];
    } else db = sumTo(matmul(x, y, p), b.shape);
  }
  return [da, db];
}

/**
 * CPU epilogue: adds `row` [N] to every row of `out` [R, N], in place (the
 * bias of a Linear layer; a nested loop: `row[i % N]` costs twice as much).
 */
export function addRows(out: CpuArray, row: CpuArray): void {
  const N = row.length;
  for (let r = 0; r < out.length; r += N) {
    for (let j = 0; j < N; j++) out[r + j] += row[j];
  }
}

/**
 * CPU reference of a bias gradient: `into[o] = Σ_r x[r, o]` over the rows of
 * `x` [R, O], summed in float64 in row order (as `sumTo` does).
 */
export function sumRows(x: CpuArray, R: number, O: number, into: CpuArray): void {
  const acc = new Float64Array(O);
  for (let r = 0; r < R * O; r += O) {
    for (let k = 0; k < O; k++) acc[k] += x[r + k];
  }
  for (let k = 0; k < O; k++) into[k] = acc[k];
}

/** The matmul op. */
export const MATMUL: OpDef<MatmulParams> = {
  name: "matmul",
  overwrites: true,
  outputs([a, b], p) {
    if (a.dtype === "i32" || b.dtype === "i32") throw new TypeError("Cannot matmul i32 tensors");
    return [{ shape: matmulGeometry(a.shape, b.shape, p).shape, dtype: a.dtype }];
  },
  cpu([a, b], [out], info, p) {
    matmulCpu(a, b, out, info, p);
  },
  gpu(info, p) {
    const g = matmulGeometry(info.inputs[0].shape, info.inputs[1].shape, p);
    return matmulPlan(g, p);
  },
  backward(c, [dy]) {
    const [a, b] = c.inputs as Tensor[];
    const sinkB = () => c.gradSink?.(1) ?? null;
    return matmulGrads(
      a,
      b,
      dy as Tensor,
      c.params,
      c.takeGrad,
      a.requiresGrad,
      b.requiresGrad,
      sinkB,
    );
  },
};

/** What {@linkcode matmulCpu} adds to a product. */
export interface MatmulEpilogue {
  /** `[N]` added to every row of the output (`addRows`). */
  bias?: CpuArray;
  /**
   * Receives the float64 sums over the rows of `a` as stored (`sumRows`), one per
   * stored column; one product (P = 1) only.
   */
  aColumnSums?: CpuArray;
}

/**
 * The CPU product of {@linkcode MATMUL} (`info` gives the operands' shapes), then
 * the epilogue: in f32, all of it in the WebAssembly SIMD kernel
 * (ops/_wasm_matmul.ts) when it loads, with the operands still in its memory; the
 * TypeScript below is its reference, with the same bits.
 */
export function matmulCpu(
  a: CpuArray,
  b: CpuArray,
  out: CpuArray,
  info: OpInfo,
  p: MatmulParams,
  epilogue: MatmulEpilogue = {},
): void {
  const { M, N, K, P, sa, sb } = matmulGeometry(info.inputs[0].shape, info.inputs[1].shape, p);
  const { bias, aColumnSums } = epilogue;
  if (
    a instanceof Float32Array && b instanceof Float32Array && out instanceof Float32Array &&
    (bias === undefined || bias instanceof Float32Array) &&
    (aColumnSums === undefined || aColumnSums instanceof Float32Array) &&
    wasmMatmulF32(a, b, out, {
      M,
      N,
      K,
      P,
      sa,
      sb,
      transA: p.transA,
      transB: p.transB,
      bias,
      aColumnSums,
    })
  ) return;
  matmulReference(a, b, out, { M, N, K, P, sa, sb }, p);
  if (bias) addRows(out, bias);
  if (aColumnSums) {
    const cols = aColumnSums.length;
    sumRows(a, cols > 0 ? (P === 1 ? M * K : 0) / cols : 0, cols, aColumnSums);
  }
}

/** The TypeScript product (float64 dot products). */
function matmulReference(
  a: CpuArray,
  b: CpuArray,
  out: CpuArray,
  g: { M: number; N: number; K: number; P: number; sa: number; sb: number },
  p: MatmulParams,
): void {
  const { M, N, K, P, sa, sb } = g;
  // Read both operands as rows over k (A: [M, K], B: [N, K]), transposing a copy when needed,
  // so every inner loop is a contiguous dot product; four outputs share each load of a row of A.
  const At = new Float64Array(M * K), Bt = new Float64Array(N * K);
  for (let q = 0; q < P; q++) {
    const ab = q * sa, bb = q * sb, ob = q * M * N;
    if (q === 0 || sa !== 0) rowsOverK(a, ab, M, K, p.transA, At);
    if (q === 0 || sb !== 0) rowsOverK(b, bb, N, K, !p.transB, Bt);
    for (let m = 0; m < M; m++) {
      const ar = m * K, orow = ob + m * N;
      let n = 0;
      for (; n + 3 < N; n += 4) {
        const b0 = n * K, b1 = b0 + K, b2 = b1 + K, b3 = b2 + K;
        let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        for (let k = 0; k < K; k++) {
          const av = At[ar + k];
          s0 += av * Bt[b0 + k];
          s1 += av * Bt[b1 + k];
          s2 += av * Bt[b2 + k];
          s3 += av * Bt[b3 + k];
        }
        out[orow + n] = s0;
        out[orow + n + 1] = s1;
        out[orow + n + 2] = s2;
        out[orow + n + 3] = s3;
      }
      for (; n < N; n++) {
        const b0 = n * K;
        let s = 0;
        for (let k = 0; k < K; k++) s += At[ar + k] * Bt[b0 + k];
        out[orow + n] = s;
      }
    }
  }
}

/**
 * `op(a) · op(b) + c` with `c` shaped like the product: the input gradient
 * of a matmul added to the gradient already pending for that input
 * (autograd's accumulation in the same kernel, see `BackwardContext.takeGrad`).
 */
export const MATMUL_ADD: OpDef<MatmulParams> = {
  name: "matmulAccumulate",
  overwrites: true,
  outputs([a, b, c], p) {
    const [o] = MATMUL.outputs([a, b], p);
    if (
      c.dtype !== o.dtype || c.shape.length !== o.shape.length ||
      c.shape.some((d, k) => d !== o.shape[k])
    ) {
      throw new TypeError(
        `Cannot matmulAccumulate: addend ${fmtShape(c.shape)} must be ${fmtShape(o.shape)}`,
      );
    }
    return [o];
  },
  cpu([a, b, c], [out], info, p) {
    MATMUL.cpu([a, b], [out], { inputs: info.inputs.slice(0, 2), outputs: info.outputs }, p);
    for (let i = 0; i < out.length; i++) out[i] += c[i];
  },
  gpu(info, p) {
    const g = matmulGeometry(info.inputs[0].shape, info.inputs[1].shape, p);
    return matmulPlan(g, p, { add: true });
  },
};

/** Options of {@linkcode matmul}. */
export interface MatmulOptions {
  /** Transpose the last two axes of `a` first. */
  transA?: boolean;
  /** Transpose the last two axes of `b` first. */
  transB?: boolean;
}

/** `op(a) · op(b)` over the last two axes, batch axes broadcast. */
export function matmul(a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
  return apply(MATMUL, [a, b], { transA: opts.transA ?? false, transB: opts.transB ?? false })[0];
}

/** The bias-fused matmul: `op(a) · op(b) + bias`, bias `[N]` added to every row. */
export const MATMUL_BIAS: OpDef<MatmulParams> = {
  name: "matmul_bias",
  overwrites: true,
  outputs([a, b, bias], p) {
    const [o] = MATMUL.outputs([a, b], p);
    const N = o.shape[o.shape.length - 1];
    if (bias.dtype === "i32" || bias.shape.length !== 1 || bias.shape[0] !== N) {
      throw new TypeError(
        `Cannot matmulBias: bias ${fmtShape(bias.shape)} ${bias.dtype} must be f32 [${N}]`,
      );
    }
    return [o];
  },
  cpu([a, b, bias], [out], info, p) {
    matmulCpu(a, b, out, info, p, { bias });
  },
  gpu(info, p) {
    const g = matmulGeometry(info.inputs[0].shape, info.inputs[1].shape, p);
    return { kernels: [matmulKernel(g, p, { bias: true })] };
  },
  backward(c, [dyAny]) {
    const dy = dyAny as Tensor;
    const [a, w, bias] = c.inputs as Tensor[];
    const { transA: tA, transB: tB } = c.params;
    // a Linear layer (x·Wᵀ + b): the weight and bias gradients from one kernel
    const linear = tB && !tA && w.rank === 2 && w.requiresGrad && bias.requiresGrad &&
      dy.dtype === "f32" && a.dtype === "f32";
    const [da, dw] = matmulGrads(
      a,
      w,
      dy,
      c.params,
      c.takeGrad,
      a.requiresGrad,
      !linear && w.requiresGrad,
    );
    if (linear) {
      // written straight into the optimizer's flat gradient buffer where it offers them
      const [dW, db] = applyInto(LINEAR_GRAD, [dy, a], {}, [c.gradSink?.(1), c.gradSink?.(2)]);
      return [da, dW, db];
    }
    return [da, dw, bias.requiresGrad ? sumTo(dy, bias.shape) : null];
  },
};

/**
 * The weight and bias gradients of a Linear layer `y = x·Wᵀ + b` in one
 * kernel: inputs `[dy [..., O], x [..., I]]` (the same rows), outputs
 * `[dW = dyᵀ·x [O, I], db = Σ_rows dy [O]]`. The matmul's workgroups of the
 * first column block sum the rows of dyᵀ they stage anyway (k in order), so
 * `db` costs no dispatch and no second read of dy. The CPU reference sums in
 * float64 in row order, as `sumTo` does.
 */
export const LINEAR_GRAD: OpDef<Record<string, never>> = {
  name: "linearGrad",
  overwrites: true,
  outputs([dy, x]) {
    const [R, O] = lastAxisRows(dy.shape), [Rx, I] = lastAxisRows(x.shape);
    if (dy.shape.length < 1 || x.shape.length < 1 || R !== Rx || dy.dtype === "i32") {
      throw new TypeError(
        `Cannot linearGrad: dy ${fmtShape(dy.shape)} and x ${fmtShape(x.shape)} need the same rows`,
      );
    }
    return [{ shape: [O, I], dtype: dy.dtype }, { shape: [O], dtype: dy.dtype }];
  },
  cpu([dy, x], [dw, db], info) {
    const [R, O] = lastAxisRows(info.inputs[0].shape), [, I] = lastAxisRows(info.inputs[1].shape);
    const p = { transA: true, transB: false };
    matmulCpu(
      dy,
      x,
      dw,
      {
        inputs: [{ shape: [R, O], dtype: "f32" }, { shape: [R, I], dtype: "f32" }],
        outputs: [],
      },
      p,
      { aColumnSums: db },
    );
  },
  gpu(info) {
    const [R, O] = lastAxisRows(info.inputs[0].shape), [, I] = lastAxisRows(info.inputs[1].shape);
    const p = { transA: true, transB: false };
    const g = matmulGeometry([R, O], [R, I], p, "linearGrad");
    return matmulPlan(g, p, { rowSum: true });
  },
};

/**
 * `op(a) · op(b) + bias` in one kernel (a Linear layer: `matmulBias(x, w,
 * b, { transB: true })`); bias is `[N]`.
 */
export function matmulBias(a: Tensor, b: Tensor, bias: Tensor, opts: MatmulOptions = {}): Tensor {
  const p = { transA: opts.transA ?? false, transB: opts.transB ?? false };
  return apply(MATMUL_BIAS, [a, b, bias], p)[0];
}

/**
 * Registry cases of matmulBias (tests/ops_registry_test.ts): a Linear layer,
 * batched, size 1; and of matmulAccumulate (GPU parity; it is a backward op).
 */
export const MATMUL_BIAS_ENTRIES: OpEntry[] = [{
  op: LINEAR_GRAD,
  cases: [
    { inputs: [{ shape: [3, 4] }, { shape: [3, 5] }], params: {}, noGradCheck: true },
    { inputs: [{ shape: [2, 3, 7] }, { shape: [2, 3, 6] }], params: {}, noGradCheck: true },
    { inputs: [{ shape: [130, 37] }, { shape: [130, 24] }], params: {}, noGradCheck: true },
    { inputs: [{ shape: [64, 64] }, { shape: [64, 32] }], params: {}, noGradCheck: true },
    { inputs: [{ shape: [1, 1] }, { shape: [1, 1] }], params: {}, noGradCheck: true },
  ],
}, {
  op: MATMUL_ADD,
  cases: [
    {
      inputs: [{ shape: [3, 4] }, { shape: [4, 5] }, { shape: [3, 5] }],
      params: { transA: false, transB: false },
      noGradCheck: true,
    },
    {
      inputs: [{ shape: [2, 3, 6] }, { shape: [6, 5] }, { shape: [2, 3, 5] }],
      params: { transA: false, transB: false },
      noGradCheck: true,
    },
    {
      inputs: [{ shape: [40, 37] }, { shape: [40, 24] }, { shape: [37, 24] }],
      params: { transA: true, transB: false },
      noGradCheck: true,
    },
    {
      inputs: [{ shape: [64, 32] }, { shape: [64, 32] }, { shape: [64, 64] }],
      params: { transA: false, transB: true },
      noGradCheck: true,
    },
    {
      inputs: [{ shape: [1, 1] }, { shape: [1, 1] }, { shape: [1, 1] }],
      params: { transA: false, transB: false },
      noGradCheck: true,
    },
  ],
}, {
  op: MATMUL_BIAS,
  cases: [
    {
      inputs: [{ shape: [3, 5] }, { shape: [4, 5] }, { shape: [4] }],
      params: { transA: false, transB: true },
    },
    {
      inputs: [{ shape: [2, 3, 6] }, { shape: [6, 5] }, { shape: [5] }],
      params: { transA: false, transB: false },
    },
    {
      inputs: [{ shape: [1, 1] }, { shape: [1, 1] }, { shape: [1] }],
      params: { transA: false, transB: false },
    },
  ],
}];

// ---- variant selection and tuning (state in ops/_matmul_variants.ts) ----

export {
  loadTunedTable,
  MATMUL_VARIANTS,
  type MatmulShape,
  type MatmulTarget,
  type MatmulVariant,
  parseTileName,
  tileName,
  tileWorkgroupBytes,
  tunedTable,
  useMatmulSplitK,
  useMatmulVariant,
};
export type { MatmulTile };
export { MATMUL_CODEGEN_VERSION };

/** The variant a matmul of this shape runs now (forced, tuned or heuristic). */
export function matmulVariantFor(shape: MatmulShape): string {
  return selectMatmulVariant(shape).name;
}

/** The K ranges a plain matmul of this shape splits into now (1: none; see `splitKFor`). */
export function matmulSplitKFor(shape: MatmulShape): number {
  const t = selectMatmulVariant(shape).tile;
  return t ? splitKFor(shape, t, matmulTarget(), splitUnit(shape, t)).S : 1;
}

/** Whether the named variant fits the target's limits (threads, workgroup memory). */
export function matmulVariantFits(name: string, target: MatmulTarget): boolean {
  return variantFits(matmulVariant(name), target);
}

/**
 * Makes the backend's adapter the one whose limits and tuned choices the
 * selection uses (until another is configured) and returns what was set.
 * Without it the selection assumes WebGPU's guaranteed limits (256
 * invocations, 16 KiB of workgroup memory) and uses no tuned choices.
 */
export function configureMatmul(backend: GpuBackend): MatmulTarget {
  const info = backend.adapterInfo;
  const target: MatmulTarget = {
    description: info.description,
    software: isSoftwareAdapter(info),
    maxInvocations: info.limits.maxComputeInvocationsPerWorkgroup ?? 256,
    maxWorkgroupBytes: info.limits.maxComputeWorkgroupStorageSize ?? 16384,
  };
  setMatmulTarget(target);
  return target;
}

/** Options of {@linkcode autotuneMatmul}. */
export interface AutotuneMatmulOptions {
  /**
   * Variant names to try (default every registered generator tile, not the legacy kernel;
   * those above the adapter's limits are skipped).
   */
  variants?: string[];
  /** Tune on a software adapter too (off by default: it compiles every variant, minutes there). */
  force?: boolean;
  /** Approximate measured time per variant and shape in milliseconds (default 100). */
  minTimeMs?: number;
  /**
   * Tune as for this adapter (its limits, rules and key for the choices; default the
   * backend's): tests give a software adapter a hardware target to reach the split-K tuning.
   */
  target?: MatmulTarget;
  /**
   * Called once before anything is measured, with how many shapes (matmul) or geometries
   * (attention, {@linkcode autotuneStep}) will be: a trainer says why its first step pauses.
   */
  onBegin?: (what: "matmul" | "attention", count: number) => void;
  /**
   * The product a shape with a `form` (an f16 kernel, ops/_matmul_variants.ts
   * `halfForm`) runs: timed and checked in place of the f32 matmul
   * (ops/matmul_f16.ts `tuneProductF16`). A shape whose form it does not give
   * is not tuned (it keeps the f32 product's choice).
   */
  product?: (s: MatmulShape) => TuneProduct | null;
}

/** What {@linkcode autotuneMatmul} times for a shape with a `form`. */
export interface TuneProduct {
  /** The product of `a` and `b` (f32, stored as the shape says). */
  run(a: Tensor, b: Tensor): Tensor;
  /** The op whose dispatches are timed. */
  opName: string;
  /** Largest relative error against the reference kernel (default {@linkcode TUNE_TOLERANCE}). */
  tolerance?: number;
}

/**
 * Milliseconds per call of `run` (which records `opName` dispatches) over
 * `n` calls: with timestamp queries ("timestamp"; NaN if none was recorded)
 * the median of the calls' GPU times, else wall clock around the calls and
 * a queue drain, divided by `n` ("wallclock"). Compile first.
 *
 * `warm` more calls run first, untimed and submitted just before the timed
 * ones (no wait in between). A GPU idle for a while (the tuner compiles and
 * checks between candidates) runs at lower clocks until load brings them
 * up: an H200 sweep timing 3 calls per tile ran its first 12 tiles at
 * 29–38 TFLOP/s and every later one, the same tiles included, at 5–10. With
 * a warm-up and the median, a few slow calls at the start do not decide.
 */
export async function msPerCall(
  backend: GpuBackend,
  run: () => void,
  n: number,
  opName: string,
  warm = 0,
): Promise<{ ms: number; timing: "timestamp" | "wallclock" }> {
  for (let i = 0; i < warm; i++) run();
  if (backend.beginProfile()) {
    for (let i = 0; i < n; i++) run();
    await backend.endProfile();
    // per call, not per dispatch: a split-K call is two (the product over K ranges, the sum)
    const own = backend.profileSamples().filter((e) => e.name === opName);
    if (own.length === 0 || own.length % n !== 0) return { ms: NaN, timing: "timestamp" };
    const per = own.length / n;
    const calls = Array.from({ length: n }, (_, c) => {
      let t = 0;
      for (let j = c * per; j < (c + 1) * per; j++) t += own[j].ms;
      return t;
    });
    return { ms: median(calls), timing: "timestamp" };
  }
  const t0 = performance.now();
  for (let i = 0; i < n; i++) run();
  await backend.sync();
  return { ms: (performance.now() - t0) / n, timing: "wallclock" };
}

/**
 * Untimed calls to run before timing a kernel of about `ms` per call: about
 * `warmMs` (default 25, as Triton's `do_bench`) of back-to-back work, at
 * most 400 calls.
 */
export function warmCalls(ms: number, warmMs = 25): number {
  return Math.max(1, Math.min(400, Math.ceil(warmMs / Math.max(ms, 1e-3))));
}

/** The median of a non-empty list (the mean of the middle two for an even length). */
function median(xs: number[]): number {
  const v = [...xs].sort((x, y) => x - y), h = v.length >> 1;
  return v.length % 2 ? v[h] : (v[h - 1] + v[h]) / 2;
}

/**
 * Largest relative error a tuning candidate may show against the reference
 * kernel's result ({@linkcode relativeError}). Candidates of one op compute the
 * same sums, in the same order except split K and online softmax (f32
 * rounding, about 1e-7); a kernel that skips or repeats a tile is off by 1e-2
 * or more.
 */
export const TUNE_TOLERANCE = 1e-3;

/**
 * ‖got − want‖ / ‖want‖ over pairs of tensors of equal shapes taken together
 * (L2 norms), computed on the tensors' backend with one number read back; NaN
 * when `got` holds NaN or ∞ (or both are all zero).
 */
export async function relativeError(got: Tensor[], want: Tensor[]): Promise<number> {
  if (got.length !== want.length || got.length === 0) {
    throw new TypeError(`relativeError: ${got.length} results against ${want.length}`);
  }
  const made: Tensor[] = [];
  const keep = (t: Tensor) => (made.push(t), t);
  try {
    let num: Tensor | null = null, den: Tensor | null = null;
    for (let i = 0; i < got.length; i++) {
      const d = keep(sub(got[i], want[i]));
      const e = keep(sum(keep(mul(d, d)))), w = keep(sum(keep(mul(want[i], want[i]))));
      num = num ? keep(add(num, e)) : e;
      den = den ? keep(add(den, w)) : w;
    }
    const r = await keep(div(num!, den!)).item();
    return Math.sqrt(r);
  } finally {
    for (const t of made) t.dispose();
  }
}

/** Options of {@linkcode timeCandidate}. */
export interface TimeCandidateOptions {
  /** The op whose dispatches `run` records (timestamp queries are read per op). */
  opName: string;
  /** Approximate measured time in milliseconds. */
  minTimeMs: number;
  /** At most this many timed calls. */
  maxCalls: number;
  /**
   * Runs the candidate once more and says whether its result is right (compared with a
   * reference kernel's, within {@linkcode TUNE_TOLERANCE}); a wrong candidate is not timed.
   */
  check?: () => Promise<boolean>;
}

/**
 * A tuner's measurement of one candidate: compiles it (one untimed call),
 * checks its result (`check`, whose readback also waits for that call),
 * times 3 calls to size the run, then {@linkcode msPerCall} over enough
 * calls for about `minTimeMs` (at most `maxCalls`) after about 25 ms of
 * untimed ones ({@linkcode warmCalls}).
 * Infinity (and no timing) when it fails, is wrong (`rejected`) or nothing
 * was recorded.
 */
export async function timeCandidate(
  backend: GpuBackend,
  run: () => void,
  opts: TimeCandidateOptions,
): Promise<{ ms: number; timing: "timestamp" | "wallclock" | null; rejected?: boolean }> {
  try {
    run(); // compiles
    // the check's readback waits for the compile and that call too: one wait, not two (each
    // costs Deno ~12 ms whatever the kernel, a few seconds over a tuner's few hundred candidates)
    if (opts.check) {
      if (!(await opts.check())) return { ms: Infinity, timing: null, rejected: true };
    } else await backend.sync();
    // a probe of 3 calls sizes the run by the kernel's own time (GPU time where timestamps
    // exist: a wall-clock call costs Deno's ~12 ms readback latency whatever the kernel)
    const probe = await msPerCall(backend, run, 3, opts.opName, 3);
    if (!Number.isFinite(probe.ms)) return { ms: Infinity, timing: null };
    const once = Math.max(1e-3, probe.ms);
    const n = Math.max(1, Math.min(opts.maxCalls, Math.ceil(opts.minTimeMs / once)));
    // after the compile and the check the GPU was idle: ~25 ms of calls bring its clocks up
    const r = await msPerCall(backend, run, n, opts.opName, warmCalls(once));
    return { ms: Number.isFinite(r.ms) ? r.ms : Infinity, timing: r.timing };
  } catch {
    return { ms: Infinity, timing: null };
  }
}

/** Options of {@linkcode runoff}. */
export interface RunoffOptions {
  /** Candidates within this fraction of the fastest first measurement take part (default 0.15). */
  margin?: number;
  /** Interleaved rounds (default 3). */
  rounds?: number;
}

/**
 * The tuners' second look at a near tie. A first pass times each candidate
 * once, one after the other, so clocks, temperature or other work at that
 * moment can decide between kernels a few per cent apart (on an H200 the
 * tuner once kept a weight-gradient tile that ran 16% slower in the training
 * step than the runner-up). The candidates whose first time `ms[name]` lies
 * within `margin` of the fastest are timed again by `time(name)` in `rounds`
 * interleaved rounds, each round starting one candidate later (A B C, B C A,
 * C A B), and each gets the median of its rounds. Returns those medians; an
 * empty record when fewer than two candidates are that close.
 */
export async function runoff(
  ms: Record<string, number>,
  time: (name: string) => Promise<number>,
  opts: RunoffOptions = {},
): Promise<Record<string, number>> {
  const margin = opts.margin ?? 0.15, rounds = Math.max(1, opts.rounds ?? 3);
  const finite = Object.entries(ms).filter(([, t]) => Number.isFinite(t) && t > 0);
  if (finite.length < 2) return {};
  const best = Math.min(...finite.map(([, t]) => t));
  const close = finite.filter(([, t]) => t <= best * (1 + margin)).map(([n]) => n);
  if (close.length < 2) return {};
  const times: Record<string, number[]> = Object.fromEntries(close.map((n) => [n, []]));
  for (let r = 0; r < rounds; r++) {
    for (let i = 0; i < close.length; i++) {
      const name = close[(i + r) % close.length];
      const t = await time(name);
      times[name].push(Number.isFinite(t) ? t : Infinity);
    }
  }
  return Object.fromEntries(close.map((n) => [n, median(times[n])]));
}

/**
 * The fastest name of a tuner's measurements: by the {@linkcode runoff}
 * medians when there was one, else by the first pass; `fallback` when
 * nothing finite was measured.
 */
export function fastestOf(
  ms: Record<string, number>,
  rerun: Record<string, number>,
  fallback: string,
): string {
  const table = Object.keys(rerun).length > 0 ? rerun : ms;
  let best = fallback;
  for (const [name, t] of Object.entries(table)) if (t < (table[best] ?? Infinity)) best = name;
  return best;
}

/**
 * Whether `got` equals the reference `want` within {@linkcode TUNE_TOLERANCE}
 * (relative L2); the results are disposed.
 */
export async function sameResults(
  got: Tensor[],
  want: Tensor[],
  tolerance: number = TUNE_TOLERANCE,
): Promise<boolean> {
  try {
    return (await relativeError(got, want)) <= tolerance; // NaN: false
  } finally {
    for (const t of got) t.dispose();
  }
}

/** What {@linkcode autotuneMatmul} found for one shape. */
export interface MatmulTuning {
  /** The shape. */
  shape: MatmulShape;
  /** The variant calls of this shape now run (fastest measured, else the heuristic's). */
  variant: string;
  /** Whether variants were measured (false on software adapters without `force`). */
  tuned: boolean;
  /** "timestamp" (GPU timestamp queries) or "wallclock" (submit + onSubmittedWorkDone). */
  timing: string;
  /** Milliseconds per call by variant; Infinity where the variant failed. */
  ms: Record<string, number>;
  /**
   * Variants whose result differed from the heuristic variant's (beyond
   * {@linkcode TUNE_TOLERANCE}): not timed and never chosen.
   */
  rejected: string[];
  /**
   * The {@linkcode runoff} between the variants within 15% of the fastest:
   * milliseconds per call, median of interleaved rounds (empty when one
   * variant was clearly fastest). The choice follows these when present.
   */
  runoff: Record<string, number>;
  /**
   * Where the chosen variant splits K (`splitKFor`'s rule gives it more than
   * one range): the rule's number of ranges, the number chosen, ms per call of
   * the chosen variant with each number timed (`S<n>`: the rule's, half and
   * twice as many) and the {@linkcode runoff} of the near ties, if any.
   * Another number is chosen only when at least {@linkcode SPLIT_TUNE_MARGIN}
   * faster than the rule's.
   */
  split?: {
    rule: number;
    chosen: number;
    ms: Record<string, number>;
    runoff?: Record<string, number>;
  };
}

/** How much faster (a fraction) another split of K must be before the tuner leaves the rule's. */
export const SPLIT_TUNE_MARGIN = 0.03;

/**
 * Times every variant on each shape (GPU timestamps when the adapter has
 * `timestamp-query`, else wall clock around submit + queue drain), remembers
 * the fastest per adapter and shape in memory, and returns the table. Off on
 * software adapters unless `force`: then it only reports the heuristic's
 * choice. A forced variant (`WEBSEQ_MATMUL_VARIANT`) still wins over tuning.
 */
export async function autotuneMatmul(
  backend: GpuBackend,
  shapes: MatmulShape[],
  opts: AutotuneMatmulOptions = {},
): Promise<MatmulTuning[]> {
  const target = opts.target ?? configureMatmul(backend);
  if (opts.target) setMatmulTarget(opts.target);
  // the legacy kernel is there for comparison (a hundred times slower on an H200): not timed
  const names = opts.variants ?? MATMUL_VARIANTS.filter((v) => v.tile).map((v) => v.name);
  const variants = names.map(matmulVariant).filter((v) => variantFits(v, target));
  const minTimeMs = opts.minTimeMs ?? 100;
  const out: MatmulTuning[] = [];
  for (const s of shapes) {
    const prod = s.form ? opts.product?.(s) ?? null : null;
    if ((target.software && !opts.force) || (s.form && !prod)) {
      out.push({
        shape: s,
        // an f16 form left untuned runs the f32 product's choice
        variant: s.form && !prod ? selectMatmulVariant(s).name : heuristicVariant(s, target),
        tuned: false,
        timing: "",
        ms: {},
        rejected: [],
        runoff: {},
      });
      continue;
    }
    const P = s.P ?? 1, rng = makeRng(1);
    const rand = (shape: number[]) => {
      const n = shape.reduce((x, y) => x * y, 1);
      return tensor(Float32Array.from({ length: n }, () => rng() * 2 - 1), shape, { backend });
    };
    const batch = P > 1 ? [P] : [];
    const a = rand([...batch, ...(s.transA ? [s.K, s.M] : [s.M, s.K])]);
    const b = rand([...batch, ...(s.transB ? [s.N, s.K] : [s.K, s.N])]);
    const mmOpts = { transA: s.transA, transB: s.transB };
    const mm = () => (prod ? prod.run(a, b) : matmul(a, b, mmOpts));
    const opName = prod?.opName ?? MATMUL.name, tol = prod?.tolerance ?? TUNE_TOLERANCE;
    const run = () => mm().dispose();
    const ms: Record<string, number> = {}, rejected: string[] = [];
    let rerun: Record<string, number> = {};
    let timing = "wallclock";
    const heuristic = heuristicVariant(s, target);
    // the heuristic's kernel gives the reference result every candidate must match
    const want = await withMatmulVariant(matmulVariant(heuristic), () => Promise.resolve(mm()));
    let best: string, split: MatmulTuning["split"];
    try {
      for (const v of variants) {
        const check = () => sameResults([mm()], [want], tol);
        ms[v.name] = await withMatmulVariant(v, async () => {
          const r = await timeCandidate(backend, run, {
            opName,
            minTimeMs,
            maxCalls: 100,
            check: v.name === heuristic ? undefined : check,
          });
          if (r.timing) timing = r.timing;
          if (r.rejected) rejected.push(v.name);
          return r.ms;
        });
      }
      // near ties: timed again, interleaved, about a third as long each round
      rerun = await runoff(ms, (name) =>
        withMatmulVariant(matmulVariant(name), async () => {
          const n = Math.max(1, Math.min(100, Math.ceil(minTimeMs / 3 / ms[name])));
          return (await msPerCall(backend, run, n, opName, warmCalls(ms[name]))).ms;
        }));
      best = fastestOf(ms, rerun, heuristic);
      setTunedVariant(target, s, best);
      split = await tuneSplit(backend, s, matmulVariant(best), {
        run,
        check: () => sameResults([mm()], [want], tol),
        minTimeMs,
        opName,
      });
    } finally {
      a.dispose();
      b.dispose();
      want.dispose();
    }
    out.push({
      shape: s,
      variant: best,
      tuned: true,
      timing,
      ms,
      rejected,
      runoff: rerun,
      ...(split ? { split } : {}),
    });
  }
  return out;
}

/**
 * The split of K for a tuned shape: where variant `v` splits K under
 * `splitKFor`'s rule (into S ranges, or the class's tuned number), it is timed
 * with that split, half and twice as many ranges (same kernel: the split is in
 * its uniform, so nothing compiles; each other split's result checked), near
 * ties again in a {@linkcode runoff}, and the fastest, if at least
 * {@linkcode SPLIT_TUNE_MARGIN} faster than the rule's, becomes the shape's
 * (and its class's) tuned split. Nothing when the rule does not split or a
 * split is forced.
 */
async function tuneSplit(
  backend: GpuBackend,
  s: MatmulShape,
  v: MatmulVariant,
  how: { run: () => void; check: () => Promise<boolean>; minTimeMs: number; opName: string },
): Promise<MatmulTuning["split"]> {
  if (!v.tile || forcedMatmulSplitK() !== null) return undefined;
  const unit = splitUnit(s, v.tile);
  const rule = splitKFor(s, v.tile, matmulTarget(), unit).S;
  if (rule <= 1) return undefined;
  // `fn` with K split into `S` ranges (null: as the rule says), on variant v
  const withSplit = async <T>(S: number | null, fn: () => Promise<T>): Promise<T> => {
    useMatmulSplitK(S);
    try {
      return await withMatmulVariant(v, fn);
    } finally {
      useMatmulSplitK(null);
    }
  };
  const ms: Record<string, number> = {};
  for (const want of [null, Math.floor(rule / 2), Math.min(SPLIT_MAX, rule * 2)]) {
    if (want !== null && want < 1) continue;
    // the ranges are whole slices: a number can round to one already timed
    const S = await withSplit(
      want,
      () => Promise.resolve(splitKFor(s, v.tile!, matmulTarget(), unit).S),
    );
    if (`S${S}` in ms) continue;
    ms[`S${S}`] = await withSplit(want, async () => {
      const r = await timeCandidate(backend, how.run, {
        opName: how.opName,
        minTimeMs: how.minTimeMs,
        maxCalls: 100,
        check: want === null ? undefined : how.check,
      });
      return r.rejected ? Infinity : r.ms;
    });
  }
  const rerun = await runoff(ms, (name) =>
    withSplit(Number(name.slice(1)), async () => {
      const n = Math.max(1, Math.min(100, Math.ceil(how.minTimeMs / 3 / ms[name])));
      return (await msPerCall(backend, how.run, n, how.opName, warmCalls(ms[name]))).ms;
    }));
  const table = Object.keys(rerun).length > 0 ? rerun : ms;
  const ruleMs = table[`S${rule}`] ?? ms[`S${rule}`];
  let chosen = rule;
  for (const [k, t] of Object.entries(table)) {
    if (t < (table[`S${chosen}`] ?? Infinity) && t <= ruleMs * (1 - SPLIT_TUNE_MARGIN)) {
      chosen = Number(k.slice(1));
    }
  }
  if (chosen !== rule) setTunedSplit(matmulTarget(), s, chosen);
  return { rule, chosen, ms, ...(Object.keys(rerun).length > 0 ? { runoff: rerun } : {}) };
}

/** What {@linkcode autotuneMatmulsOf} did. */
export interface WorkloadTuning<T> {
  /** What `fn` returned. */
  value: T;
  /** One entry per shape measured now (shapes tuned before are not measured again). */
  tunings: MatmulTuning[];
  /** Seconds spent tuning (compiles included). */
  seconds: number;
  /** Why tuning stopped early (the shapes keep the heuristic's choice), if it did. */
  error?: string;
}

/**
 * Runs `fn` (one training step, say) while recording the shapes of its
 * matmuls, then tunes those whose power-of-two class has no measured choice
 * on this adapter yet ({@linkcode autotuneMatmul}, default 20 ms per
 * variant and shape): later calls of these shapes and classes run the
 * fastest variant. When every class is known it returns at once, without
 * waiting for the GPU, so a trainer may wrap every step. Every variant
 * computes the same sums in the same order, except that on a hardware GPU
 * a variant may split K (`splitKFor`: partial sums over K ranges, added in
 * order), which moves results by f32 rounding.
 */
export async function autotuneMatmulsOf<T>(
  backend: GpuBackend,
  fn: () => T | Promise<T>,
  opts: AutotuneMatmulOptions = {},
): Promise<WorkloadTuning<T>> {
  const target = configureMatmul(backend);
  // a software adapter is only tuned when forced (autotuneMatmul): nothing to record or wait for
  if (target.software && !opts.force) return { value: await fn(), tunings: [], seconds: 0 };
  startMatmulShapeRecording();
  let value: T, shapes;
  try {
    value = await fn();
  } finally {
    shapes = stopMatmulShapeRecording();
  }
  // only shapes whose power-of-two class has no measured choice yet: a run's later steps
  // (other batch lengths) cost nothing unless they bring a new class
  // (and an f16 form only with a product to time it by: else it keeps the f32 product's choice)
  const todo = shapes.filter((s) =>
    tunedVariant(s) === undefined && (!s.form || opts.product?.(s) != null)
  );
  if (todo.length === 0) return { value, tunings: [], seconds: 0 };
  opts.onBegin?.("matmul", todo.length);
  await backend.sync();
  const t0 = performance.now();
  const seconds = () => (performance.now() - t0) / 1000;
  try {
    const tunings = await autotuneMatmul(backend, todo, { minTimeMs: 20, ...opts });
    return { value, tunings, seconds: seconds() };
  } catch (err) {
    // tuning is an optimisation: a failure leaves the heuristic in charge, never the run
    const error = errorLine(err);
    return { value, tunings: [], seconds: seconds(), error };
  }
}

/** Forgets every tuned choice. */
export function clearMatmulTuning(): void {
  clearTunedVariants();
}
