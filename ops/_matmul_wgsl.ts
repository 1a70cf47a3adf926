/**
 * WGSL code generation for the matmul kernels (ops/matmul.ts).
 *
 * One generator, {@linkcode matmulWgsl}, writes a register-tiled kernel for
 * any tile shape with everything the compiler should not have to discover
 * spelled out as compile-time constants:
 *
 * - a workgroup computes a `BM×BN` block of `out` over `BK`-deep K slices
 *   staged in workgroup memory; each of its `(BM/TM)·(BN/TN)` threads owns
 *   `TM×TN` outputs held in named `vec4<f32>` registers (`c<row>_<colvec>`);
 * - the slices are stored K-major as `vec4` (`As[k][m/4]`, `Bs[k][n/4]`), so
 *   the inner loop reads `TM/4 + TN/4` vec4s per k and issues `TM·TN/4` vec4
 *   FMAs; a thread's rows and column groups are strided by the thread grid
 *   (row `(g·WY + ty)·4 + i`, column group `h·WX + tx`) so neighbouring
 *   threads read neighbouring vec4s (no bank conflicts) and write coalesced;
 * - the K slice loop is fully unrolled into generated statements;
 * - global loads are vec4 where the layout allows it (`vecA`, `vecB`:
 *   the contiguous axis is a multiple of 4), else scalar;
 * - `exact`: M, N, K divide the tiles, so no bounds checks at all;
 * - `double`: two workgroup buffers, the next slice is fetched into
 *   registers while the current one is multiplied (one barrier per slice);
 * - `pad` (a tile option): each slice row one vec4 longer and two threads to
 *   a row for the loads that scatter a vec4 into 4 slice rows, so a warp's
 *   scalar stores hit 32 banks ({@linkcode transposingUnits});
 * - an optional bias row (`bias[n]`) is added in the epilogue;
 * - the fused GELU of ops/gelu_linear.ts: `geluIn` passes one operand's
 *   loads through `dropout(gelu(·))` (so `gelu(u)` is never stored), and
 *   `geluGradOut` multiplies each output by the dropout mask and `gelu'(aux)`
 *   of an extra input `aux` shaped like `out`. Dropout keeps element `i`
 *   (its storage index in that operand, or in `out`) where
 *   `hash_u32(seed, i) >> 8 >= thr`, as ops/dropout.ts does;
 * - `addOut`: an input shaped like `out` is added last (autograd's gradient
 *   accumulation fused into a backward matmul);
 * - `scoresGrad` (strided products only): attention's `dS` from `dP = dO·Vᵀ`
 *   as it is stored, `out = scale·P·(dP − Δ_r)`, 0 in a flagged row and where
 *   P is 0 (a masked key: 0 even for a non-finite dP, as the reference), with `P`
 *   an extra input `aux` shaped like `out` and `info[2r]`, `info[2r + 1]` the
 *   Δ and fully-masked flag of row `r = z·M + m` (ops/attention.ts);
 * - `softmaxRows` (strided products whose one column block holds whole rows):
 *   attention's forward softmax of `Q·Kᵀ` in the epilogue: the rows' max and
 *   sum agreed through workgroup memory, `out = dropout(softmax(scale·z
 *   masked))` and a second output `lse` (see {@linkcode softmaxRowsWgsl});
 * - `scoresProb` (strided products only): attention's probabilities from its
 *   scores `q·kᵀ` as the product gives them, `out = exp(scale·z − lse)` on
 *   allowed keys, 0 on others, `1/S` everywhere in a flagged row (the
 *   backward's recomputation; M = T queries, N = S keys, `zh` = H heads);
 * - `half`: the f16 matmul of ops/matmul_f16.ts — f32 operands rounded to
 *   f16 as they load, f32 accumulation (the slices staged widened to f32 by
 *   default, or as f16 and widened per product) or f16 FMAs over groups of
 *   16 k (or `group`; f16 slices), an f32/f16 result (with
 *   an f32 result, bias, addend and row sums fuse as in f32; the row sums read
 *   `a` as stored, unrounded);
 * - `rowSum`: the workgroups of the first column block also sum each row of
 *   A over k from the staged slices (a Linear's bias gradient next to its
 *   weight gradient: `dW = dyᵀ·x`, `db[m] = Σ_k dyᵀ[m, k]`), k in order;
 * - `splitK`: the grid's z axis is `P·S` and workgroup `z·S + s` multiplies
 *   only K range `[s·kc, min(K, (s+1)·kc))` (`S`, `kc` in the uniform), writing
 *   its partial product (and partial row sums) to slot `z·S + s` of `out`
 *   (and `rsum`); {@linkcode splitReduceWgsl} then adds the S partials in
 *   order (and the addend). For products with few output tiles and a long K
 *   (weight gradients: `M·N` small, `K` = every row of the batch), which
 *   would otherwise leave most of a large GPU idle.
 * - `group`: a grouped product ({@linkcode MatmulGroup}): batch z reads its own
 *   `b` and bias and writes its own `out` (n Linear layers over one input), or
 *   reads its own `a` and writes its own `out` and row sums (their weight and
 *   bias gradients), or runs its K loop over n `(a, b)` pairs in turn into one
 *   `out` (their input gradient) — one binding per group, picked by a `switch`
 *   on the group index, uniform across a workgroup (ops/linear_group.ts);
 * - `strided`: rows of a, b and out lie `lda`, `ldb`, `ldo` elements apart and
 *   batch `z` splits into `(z / zh, z % zh)` with an element offset per level
 *   (uniform fields after the others): the per-head products of attention
 *   read `[B, T, H, D]` projections and write `[B, H, T, S]` scores in place,
 *   without permutes (ops/attention.ts, kernel "mm").
 *
 * A and B element addressing (batch offsets `sa`, `sb` in elements):
 * `A(m, k) = transA ? a[sa·z + k·M + m] : a[sa·z + m·K + k]`,
 * `B(k, n) = transB ? b[sb·z + n·K + k] : b[sb·z + k·N + n]`,
 * `out[z·M·N + m·N + n]`; with `strided`, `sa·z` becomes
 * `sa·(z / zh) + sah·(z % zh)` (b: `sb`, `sbh`; out: `so`, `soh`) and the row
 * strides `K` or `M` (a), `N` or `K` (b) and `N` (out) become `lda`, `ldb`, `ldo`.
 *
 * @module
 */
import { WGSL_HASH } from "../tensor/rng.ts";
import { LINEAR_INDEX, MAIN_1D, WGSL_ERF, WGSL_GELU_GRAD } from "./_wgsl.ts";
import { WGSL_ROUND_F16, WGSL_TO_F16 } from "./cast.ts";

/**
 * Changes when the generated kernels or the split-K rule change enough to
 * make saved tuning choices stale (train/tune_cache.ts keys on it).
 */
export const MATMUL_CODEGEN_VERSION = 9;

/** A tile configuration (what the registry names and the tuner chooses among). */
export interface MatmulTile {
  /** Output rows per workgroup. */
  BM: number;
  /** Output columns per workgroup. */
  BN: number;
  /** K depth of one workgroup-memory slice. */
  BK: number;
  /** Output rows per thread (multiple of 4). */
  TM: number;
  /** Output columns per thread (multiple of 4). */
  TN: number;
  /** Double-buffered workgroup memory with register prefetch. */
  double: boolean;
  /**
   * Padded workgroup memory: each k row of a slice one vec4 longer, and the
   * loads that transpose (an operand read along k, stored along rows) give
   * two threads to a row, so their scalar stores fall in 32 different banks
   * (without: 2-way conflicts at BK 8, 4-way at BK 16, 8-way at BK 32;
   * {@linkcode transposingUnits}).
   */
  pad?: boolean;
  /**
   * The slices in one 1-D array per buffer (`As[k·pitch + col]`), the layout
   * of sessions ≤ 12 (faster than the default on some tiles and layouts on an
   * H100, slower on others: ops/_matmul_variants.ts registers both forms of
   * the tuner's favourite tiles), against the default: a 2-D array per
   * buffer (`As[k][col]`), whose k index is a constant in the multiply, so the
   * bounds clamp WGSL compilers put on every dynamic workgroup-array index
   * (naga: `min(i, len - 1)`) covers only `col` — `g·WY + ty` or `h·WX + tx`,
   * the same for every k and slice, computed once — and each k becomes the
   * load's immediate offset. Flat, each of the `BK·(TM + TN)/4` loads of a
   * slice clamps its own `k·pitch + col` unless the driver proves `ty` and `tx`
   * small enough.
   */
  flat?: boolean;
}

/** Per-call specialisation of a tile kernel (chosen from the shapes). */
export interface MatmulSpec {
  /** `a` is stored `[K, M]`. */
  transA: boolean;
  /** `b` is stored `[N, K]`. */
  transB: boolean;
  /** vec4 loads of `a` (transA ? M : K divisible by 4). */
  vecA: boolean;
  /** vec4 loads of `b` (transB ? K : N divisible by 4). */
  vecB: boolean;
  /** vec4 stores of `out` (N divisible by 4). */
  vecOut: boolean;
  /** M % BM, N % BN and K % BK are all 0: no bounds checks. */
  exact: boolean;
  /** Add `bias[n]` (a third input) to every output row. */
  bias: boolean;
  /** Operand whose loads pass through `dropout(gelu(·))` (default none). */
  geluIn?: "a" | "b" | null;
  /** Multiply each output by `gelu'(aux[i])` (an input after the bias) and the dropout mask. */
  geluGradOut?: boolean;
  /** The GELU prologue/epilogue applies dropout (`seed`, `thr`, `scale` in the uniform). */
  dropout?: boolean;
  /** Add `addend[i]` (an input shaped like `out`, after bias and aux) to each output: `out = product + addend`. */
  addOut?: boolean;
  /**
   * Strided products: `out = scale·aux[i]·(product − info[2r])`, 0 where
   * `info[2r + 1] != 0` or `aux[i]` is 0, row `r = z·M + m` (inputs `aux` then `info` after
   * `b`; `scale` in the uniform): attention's `dS` from `dP`.
   */
  scoresGrad?: boolean;
  /**
   * Strided products `Q·Kᵀ` (M = T, N = S, `zh` = H): `out = exp(scale·z −
   * lse)` where key n is allowed for query m, else 0, and `1/S` in rows
   * flagged fully masked (inputs `lse`, the key mask when `mask`, `info`
   * after `b`; `scale` in the uniform): attention's probabilities.
   */
  scoresProb?: ScoresProb;
  /**
   * Strided `Q·Kᵀ` with N ≤ BN: the softmax of each row in the epilogue
   * (inputs the key mask when `mask`; outputs `out`, then `lse`; `seed`,
   * `thr`, `scale`, `ks` in the uniform): see {@linkcode softmaxRowsWgsl}.
   */
  softmaxRows?: SoftmaxRows;
  /**
   * Strided `dO·Vᵀ` with N ≤ BN: attention's `scale·dS` with Δ from the row
   * itself, `Δ = Σ_n P·dP` (input `aux` = P, then the key mask when `mask`;
   * `scale` in the uniform): see {@linkcode scoresGradRowsWgsl}.
   */
  scoresGradRows?: ScoresGradRows;
  /** Also write `rsum[z·M + m] = Σ_k A(m, k)` (a second output, `[P, M]`). */
  rowSum?: boolean;
  /** The f16 kernel of ops/matmul_f16.ts (needs `shader-f16`); absent: f32 throughout. */
  half?: MatmulHalf;
  /** Split K over the grid's z axis into partial products (see the module doc). */
  splitK?: boolean;
  /** Row strides and two-level batch offsets from the uniform (see the module doc). */
  strided?: boolean;
  /** A grouped product (see {@linkcode MatmulGroup}). */
  group?: MatmulGroup;
}

/** What {@linkcode MatmulSpec.scoresProb} needs to know of the attention. */
export interface ScoresProb {
  /** Query m attends keys n ≤ m + (S − T) only. */
  causal: boolean;
  /** The key mask's element type (`mask[b·S + n] != 0`: allowed), or none. */
  mask: "f32" | "i32" | null;
  /** Where lse of (b, h, t) lies: "BTHD" `(b·T + t)·H + h`, "BHTD" `(b·H + h)·T + t`. */
  layout: "BTHD" | "BHTD";
  /**
   * `scoresProb` only: whether a row has no allowed key comes from scanning the
   * mask up to the row's key end (no `info` input), not from `info[2r + 1]`.
   */
  scan?: boolean;
}

/** What {@linkcode MatmulSpec.scoresGradRows} needs to know of the attention. */
export interface ScoresGradRows {
  /** Query m attends keys n ≤ m + (S − T) only. */
  causal: boolean;
  /** The key mask's element type, or none. */
  mask: "f32" | "i32" | null;
}

/** What {@linkcode MatmulSpec.softmaxRows} needs to know of the attention. */
export interface SoftmaxRows extends ScoresProb {
  /** Attention dropout on the probabilities (`ops/attention.ts` semantics). */
  dropout: boolean;
}

/** Workgroup bytes the softmax epilogue adds to a tile (partials and two per-row values). */
export function softmaxRowsBytes(t: MatmulTile): number {
  return (t.BM * (t.BN / t.TN) + 2 * t.BM) * 4;
}

/**
 * A grouped product: batch z (of `n`) reads its own `b` and bias and writes
 * its own `out` (`role` "b": n Linear layers over one input), or reads its
 * own `a` and writes its own `out` and row sums (`role` "a": their weight
 * and bias gradients), or the K loop runs over n `(a, b)` pairs in turn into
 * one `out` (`role` "k": their input gradient) — each a binding of its own
 * (`b0`, `b1`, …), chosen by a switch on the group index, which is uniform
 * across a workgroup. Split K
 * keeps its partials in one scratch buffer; {@linkcode splitReduceWgsl}
 * writes the groups' outputs. The plan passes `sa` or `sb` 0 for the grouped
 * operand (each binding starts at its own matrix).
 */
export interface MatmulGroup {
  /** Number of groups (2 or more). */
  n: number;
  /**
   * Which operand is per group; "k": both, summed over the groups into one
   * `out` (`Σ_g a_g·b_g`, the K loop run for each pair in turn: the input
   * gradient of n Linear layers over one input), f32 only, with an addend.
   */
  role: "a" | "b" | "k";
}

/**
 * `var<private> zg` and the accessors of grouped bindings: `ld_<name>(i)`
 * reads element `i` of binding `<name><zg>`, `st_<name>(i, v)` writes it.
 */
function groupAccessors(
  n: number,
  loads: { name: string; type: string }[],
  stores: { name: string; type: string }[],
): string {
  const cases = (body: (k: number) => string) =>
    Array.from(
      { length: n },
      (_, k) => (k < n - 1 ? `case ${k}u: ` : "default: ") + `{ ${body(k)} }`,
    )
      .join(" ");
  return [
    "var<private> zg: u32;",
    ...loads.map(({ name, type }) =>
      `fn ld_${name}(i: u32) -> ${type} { switch zg { ${cases((k) => `return ${name}${k}[i];`)} } }`
    ),
    ...stores.map(({ name, type }) =>
      `fn st_${name}(i: u32, v: ${type}) { switch zg { ${cases((k) => `${name}${k}[i] = v;`)} } }`
    ),
  ].join("\n");
}

/**
 * An f16 matmul (ops/matmul_f16.ts): f16 operands (or f32 ones rounded to
 * f16 as they load), f32 or f16 accumulation, an f32 or f16 result.
 */
export interface MatmulHalf {
  /** Storage of `a`: f16, or f32 rounded to f16 as it loads. */
  a: "f16" | "f32";
  /** Storage of `b`: f16, or f32 rounded to f16 as it loads. */
  b: "f16" | "f32";
  /**
   * "f32": each product widened and accumulated in f32. "f16": each group
   * of 16 consecutive k (from k = 0) accumulated by f16 FMAs, the groups'
   * sums added in f32 (the slice depth must divide 16 or be a multiple of it).
   */
  acc: "f32" | "f16";
  /** Result: f32, f16, or f32 holding values rounded to f16. */
  out: "f32" | "f16" | "round";
  /**
   * How the slices wait in workgroup memory. "f32" (the default with f32
   * accumulation): the f16 values widened once as they are staged, so the
   * multiply is the f32 kernel's, with no conversion per product. "f16" (the
   * default with, and required by, f16 accumulation): half the bytes, each
   * value widened where it is multiplied when accumulating in f32. The
   * results are the same. (f16 accumulation over f32 slices, each value
   * narrowed at its product, was measured in session 14: 2.5× slower in the
   * H200's matmul sweep, its base step 17% slower than with f16 slices.)
   */
  stage?: "f32" | "f16";
  /** Depth of the K groups f16 accumulation sums in f16 (default 16). */
  group?: number;
}

/** Whether an f16 kernel stages its slices as f16 ({@linkcode MatmulHalf}'s `stage`). */
export function stagesF16(h: MatmulHalf): boolean {
  return (h.stage ?? (h.acc === "f16" ? "f16" : "f32")) === "f16";
}

/** Threads per workgroup of a tile. */
export function tileThreads(t: MatmulTile): number {
  return (t.BM / t.TM) * (t.BN / t.TN);
}

/** Workgroup memory bytes of a tile. */
export function tileWorkgroupBytes(t: MatmulTile): number {
  return (t.BM + t.BN + (t.pad ? 8 : 0)) * t.BK * 4 * (t.double ? 2 : 1);
}

/** Throws a TypeError when the tile cannot be generated. */
export function checkTile(t: MatmulTile): void {
  const bad = (why: string) => {
    throw new TypeError(`Bad matmul tile ${JSON.stringify(t)}: ${why}`);
  };
  for (const [k, v] of Object.entries({ BM: t.BM, BN: t.BN, BK: t.BK, TM: t.TM, TN: t.TN })) {
    if (!Number.isInteger(v) || v < 4 || v % 4 !== 0) bad(`${k} must be a multiple of 4`);
  }
  if (t.BM % t.TM !== 0 || t.BN % t.TN !== 0) bad("TM and TN must divide BM and BN");
  if (tileThreads(t) > 1024) bad("more than 1024 threads");
}

const V4 = "vec4<f32>";
const COMP = ["x", "y", "z", "w"];

/**
 * Vec4 `col` of slice row `k` in buffer `buf` of workgroup array `arr`: `arr[k][col]`
 * (double-buffered: `arr[buf][k][col]`), or with {@linkcode MatmulTile.flat} the
 * 1-D element `flatIdx` (`arr[flatIdx]`, double-buffered `arr[buf][flatIdx]`).
 */
function sliceRef(
  t: MatmulTile,
  arr: string,
  buf: string,
  flatIdx: string,
  k: string,
  col: string,
): string {
  const b = t.double ? `[${buf}]` : "";
  return t.flat ? `${arr}${b}[${flatIdx}]` : `${arr}${b}[${k}][${col}]`;
}

interface LoadPlan {
  /** Declarations before the K loop (per-thread constants and prefetch registers). */
  setup: string[];
  /** Global → register statements for the slice starting at `kt`. */
  fetch: string[];
  /** Register → workgroup statements into the buffer at offset `off`. */
  store: (off: string) => string[];
}

/**
 * Where the vec4 loads of an operand stored `[R, K]` (read along k, staged
 * k-major: each vec4 is scattered into 4 slice rows) put slice unit `e`: its
 * row `r` and first k, in JavaScript and as WGSL of a `u32` expression.
 * Unpadded, consecutive units walk along k (`BK/4` threads to a row); padded
 * (`pad`, `BK/4` even), two threads to a row (32 bytes: one memory sector),
 * so a warp's 32 threads hold 16 rows × 2 vec4s and, with each slice row
 * `R + 4` floats long, each of its 4 scalar stores hits 32 different banks.
 */
export function transposingUnits(R: number, BK: number, pad: boolean): {
  r: (e: number) => number;
  k: (e: number) => number;
  rWgsl: (e: string) => string;
  kWgsl: (e: string) => string;
} {
  const w = BK / 4;
  if (pad && w % 2 === 0) {
    return {
      r: (e) => Math.floor(e / 2) % R,
      k: (e) => (Math.floor(e / (2 * R)) * 2 + (e % 2)) * 4,
      rWgsl: (e) => `(${e}) / 2u % ${R}u`,
      kWgsl: (e) => `((${e}) / ${2 * R}u * 2u + (${e}) % 2u) * 4u`,
    };
  }
  return {
    r: (e) => Math.floor(e / w),
    k: (e) => (e % w) * 4,
    rWgsl: (e) => `(${e}) / ${w}u`,
    kWgsl: (e) => `(${e}) % ${w}u * 4u`,
  };
}

/**
 * Plans the loads of one operand's slice of tile `t` under spec `s` (`T`
 * threads). The slice is `R` tile rows (m for `a`, n for `b`) by `BK` (k);
 * `kMajor` says the operand is stored with k as its slow axis (`a`
 * transposed, `b` not), `vec` that the contiguous axis is read as vec4.
 */
function planLoad(name: "a" | "b", t: MatmulTile, s: MatmulSpec, T: number): LoadPlan {
  const R = name === "a" ? t.BM : t.BN, BK = t.BK, pad = !!t.pad;
  const kMajor = name === "a" ? s.transA : !s.transB;
  const vec = name === "a" ? s.vecA : s.vecB;
  const { exact } = s, gelu = s.geluIn === name, strided = !!s.strided;
  const half = s.half?.[name] ?? null;
  const stage16 = s.half ? stagesF16(s.half) : false;
  // grouped operand: "a" per group (role a), "b" per group (role b), both (role k)
  const grouped = !!s.group && (s.group.role === "k" || s.group.role === name);
  // staged value: as loaded (f32 kernels, f16 operands staged as f16), an f32 operand rounded
  // to f16, and in f32-staged f16 kernels either of those widened back to f32
  // (an f32 operand staged as f32 is rounded by round_f16: the driver may fold f32(f16(x)))
  const f16Of = (x: string) => (half === "f32" ? `${vec ? "to_f16v4" : "to_f16"}(${x})` : x);
  const wrap = (x: string) =>
    half === null || stage16
      ? f16Of(x)
      : half === "f32"
      ? `${vec ? "round_f16v4" : "round_f16"}(${x})`
      : `${vec ? "vec4<f32>" : "f32"}(${x})`;
  const S = name === "a" ? "As" : "Bs";
  // vec4s per k row of the staged slice (one more when padded)
  const R4 = R / 4 + (pad ? 1 : 0);
  // vec4 `col` of slice row `k` in buffer `off` (sliceRef; flat single buffering offsets its one
  // buffer: "0u + …")
  const slotAt = (off: string, k: string, col: string) =>
    t.flat && !t.double
      ? `${S}[${off} + ${k} * ${R4}u + ${col}]`
      : sliceRef(t, S, off, `${k} * ${R4}u + ${col}`, k, col);
  // runtime names: row origin, row extent, slice-row stride (elements) and batch offset
  const r0 = name === "a" ? "m0" : "n0";
  const rN = name === "a" ? "u.M" : "u.N";
  const base = name === "a" ? "ab" : "bb";
  // elements between consecutive stored rows (k rows when kMajor, else tile rows)
  const ld = strided ? (name === "a" ? "u.lda" : "u.ldb") : kMajor ? rN : "u.K";
  const p = name; // prefix of generated names
  // units: vec4s (or scalars) of the slice; unit e → (row r, k) coordinates
  const perUnit = vec ? 4 : 1;
  const units = (R * BK) / perUnit;
  const slots = Math.ceil(units / T);
  const setup: string[] = [], fetch: string[] = [];
  const stores: ((off: string) => string)[] = [];
  for (let l = 0; l < slots; l++) {
    const e = `tid + ${l * T}u`;
    const partial = (l + 1) * T > units; // the last slot covers fewer units than threads
    let rExpr: string, kExpr: string, idx: string, step: string;
    if (kMajor) {
      // stored [K, R]: consecutive units walk along r
      const w = vec ? R / 4 : R;
      rExpr = vec ? `(${e}) % ${w}u * 4u` : `(${e}) % ${w}u`;
      kExpr = `(${e}) / ${w}u`;
      // element index of (r, k) = base + (kt + k)·R_total + r0 + r
      idx = vec
        ? `(${base} >> 2u) + ${p}K${l} * (${ld} >> 2u) + ((${r0} + ${p}R${l}) >> 2u)`
        : `${base} + ${p}K${l} * ${ld} + ${r0} + ${p}R${l}`;
      step = vec ? `kt * (${ld} >> 2u)` : `kt * ${ld}`;
    } else {
      // stored [R, K]: consecutive units walk along k
      if (vec) {
        const u = transposingUnits(R, BK, pad);
        [rExpr, kExpr] = [u.rWgsl(e), u.kWgsl(e)];
      } else {
        rExpr = `(${e}) / ${BK}u`;
        kExpr = `(${e}) % ${BK}u`;
      }
      idx = vec
        ? `(${base} >> 2u) + (${r0} + ${p}R${l}) * (${ld} >> 2u) + (${p}K${l} >> 2u)`
        : `${base} + (${r0} + ${p}R${l}) * ${ld} + ${p}K${l}`;
      step = vec ? `(kt >> 2u)` : `kt`;
    }
    setup.push(`let ${p}R${l} = ${rExpr};`, `let ${p}K${l} = ${kExpr};`);
    setup.push(`let ${p}I${l} = ${idx};`);
    const conds: string[] = [];
    if (partial) setup.push(`let ${p}U${l} = ${e} < ${units}u;`), conds.push(`${p}U${l}`);
    if (!exact) {
      setup.push(`let ${p}In${l} = ${r0} + ${p}R${l} < ${rN};`);
      conds.push(`${p}In${l}`, `kt + ${p}K${l} < kend`);
    }
    // the fetch only loads (prefetch registers hold the stored type); GELU and the f16
    // rounding apply at the store, after the slice in between is multiplied, so a fetch's
    // latency is hidden behind that work instead of stalling at the first use of the value
    const raw = half === "f16" ? "f16" : "f32", rv = `vec4<${raw}>`;
    const reg = `${p}v${l}`;
    setup.push(`var ${reg}: ${vec ? rv : raw};`);
    const at = `${p}I${l} + ${step}`;
    const load = grouped ? `${reg} = ld_${name}(${at});` : `${reg} = ${name}[${at}];`;
    if (conds.length === 0) fetch.push(load);
    else {fetch.push(
        `if (${conds.join(" && ")}) { ${load} } else { ${reg} = ${vec ? `${rv}()` : `${raw}()`}; }`,
      );}
    const value = wrap(gelu ? `gelu_in${vec ? "4" : ""}(${reg}, ${at})` : reg);
    const plain = value === reg;
    const val = plain ? reg : `${p}s${l}`;
    const guard = (s: string) => {
      const body = plain ? s : `let ${val} = ${value}; ${s}`;
      return partial ? `if (${p}U${l}) { ${body} }` : plain ? body : `{ ${body} }`;
    };
    if (vec && kMajor) {
      // four consecutive r at one k: one vec4 store
      stores.push((off) => guard(`${slotAt(off, `${p}K${l}`, `(${p}R${l} >> 2u)`)} = ${val};`));
    } else if (vec) {
      // four consecutive k at one r: scatter into four slice rows
      stores.push((off) =>
        guard(
          [0, 1, 2, 3].map((c) =>
            `${slotAt(off, `(${p}K${l} + ${c}u)`, `(${p}R${l} >> 2u)`)}[${p}R${l} & 3u] = ${val}.${
              COMP[c]
            };`
          ).join(" "),
        )
      );
    } else {
      stores.push((off) =>
        guard(`${slotAt(off, `${p}K${l}`, `(${p}R${l} >> 2u)`)}[${p}R${l} & 3u] = ${val};`)
      );
    }
  }
  return { setup, fetch, store: (off) => stores.map((s) => s(off)) };
}

/**
 * The GELU prologue/epilogue functions: `gelu_in(x, i)` = `dropout(gelu(x))`
 * at storage index `i`, `gelu_grad_out(d, x, i)` = `dropout(d)·gelu'(x)`, in
 * the arithmetic of ops/elementwise.ts GELU/GELU_GRAD and ops/dropout.ts (vec4
 * forms take the vec4 index). Uses the uniform `u` (seed, thr, scale).
 */
function geluHelpers(dropout: boolean): string {
  const keep = (v: string) =>
    dropout ? `select(0.0, ${v} * u.scale, (hash_u32(u.seed, i) >> 8u) >= u.thr)` : v;
  const v4 = (f: string, args: string) =>
    `${V4}(${COMP.map((c, q) => `${f}(${args.replaceAll("#", c)}, e + ${q}u)`).join(", ")})`;
  return `${dropout ? WGSL_HASH : ""}${WGSL_ERF}${WGSL_GELU_GRAD}
fn gelu_in(x: f32, i: u32) -> f32 {
  let g = 0.5 * x * (1.0 + erf_f(x * 0.70710678118654752));
  return ${keep("g")};
}
fn gelu_in4(v: ${V4}, i4: u32) -> ${V4} {
  let e = i4 * 4u;
  return ${v4("gelu_in", "v.#")};
}
fn gelu_grad_out(d: f32, x: f32, i: u32) -> f32 {
  let dd = ${keep("d")};
  return dd * gelu_grad_f(x);
}
fn gelu_grad_out4(d: ${V4}, x: ${V4}, i4: u32) -> ${V4} {
  let e = i4 * 4u;
  return ${v4("gelu_grad_out", "d.#, x.#")};
}`;
}

/**
 * The GELU stage alone, for products that take it as a separate pass
 * (ops/gelu_linear.ts "separate"): `out[i] = gelu_in(x[i], i)` — the same
 * function and dropout mask the fused loads apply — over `n` elements
 * (`vec`: `n` vec4s, vec4 i4 holding elements 4·i4..4·i4+3). Uniform
 * `{ n, seed, thr, scale }` (the last three with dropout); a
 * {@linkcode grid1d} dispatch of 256-thread workgroups.
 */
export function geluStageWgsl(dropout: boolean, vec: boolean): string {
  const ty = vec ? V4 : "f32";
  return `@group(0) @binding(0) var<storage, read> x: array<${ty}>;
@group(0) @binding(1) var<storage, read_write> out: array<${ty}>;
struct U { n: u32${dropout ? ", seed: u32, thr: u32, scale: f32" : ""} }
@group(0) @binding(2) var<uniform> u: U;
${geluHelpers(dropout)}
${MAIN_1D()} {
  ${LINEAR_INDEX()}
  if (i >= u.n) { return; }
  out[i] = gelu_in${vec ? "4" : ""}(x[i], i);
}`;
}

/** WGSL of one tile kernel specialised for one call shape class. */
export function matmulWgsl(t: MatmulTile, s: MatmulSpec): string {
  checkTile(t);
  const { BM, BN, BK, TM, TN } = t;
  const H = s.half ?? null;
  // f16 kernels fuse what ops/gelu_linear.ts needs: GELU on an f32 operand's loads (then
  // rounded to f16), and on an f32 result the bias and the gelu' epilogue
  if (s.splitK && ((H && H.out !== "f32") || s.bias || s.geluGradOut || s.addOut)) {
    throw new TypeError(
      "matmulWgsl: split K writes f32 partials: no f16 result, bias, gelu' or addend epilogue",
    );
  }
  if (
    H && ((s.geluIn && H[s.geluIn] !== "f32") ||
      ((s.bias || s.geluGradOut || s.addOut) && H.out === "f16"))
  ) {
    throw new TypeError(
      "matmulWgsl: the f16 kernel fuses GELU on f32 operands only, and bias, gelu' and addend on f32 results",
    );
  }
  if (s.strided && (s.splitK || s.rowSum)) {
    throw new TypeError("matmulWgsl: strided products neither split K nor sum rows");
  }
  const SR = s.softmaxRows ?? null, GR = s.scoresGradRows ?? null;
  const scores = s.scoresGrad || s.scoresProb || SR || GR;
  if (scores && (!s.strided || H || s.bias || s.geluGradOut || s.addOut)) {
    throw new TypeError("matmulWgsl: the scores epilogues are for plain f32 strided products");
  }
  if (+!!s.scoresGrad + +!!s.scoresProb + +!!SR + +!!GR > 1) {
    throw new TypeError("matmulWgsl: one scores epilogue at a time");
  }
  const G = s.group ?? null;
  if (
    G && (G.n < 2 || s.strided || s.geluIn || s.geluGradOut ||
      (G.role !== "k" && s.addOut) || (G.role !== "a" && s.rowSum) ||
      (G.role !== "b" && s.bias) || (G.role === "k" && H))
  ) {
    throw new TypeError(
      "matmulWgsl: a grouped product has 2+ groups and fuses only a bias (b per group), row sums (a per group) or an addend (f32 sums over groups)",
    );
  }
  // outputs per group (split K: one scratch buffer; "k": one sum)
  const gOut = G !== null && G.role !== "k" && !s.splitK;
  const gA = G?.role === "a" || G?.role === "k", gB = G?.role === "b" || G?.role === "k";
  const acc16 = H?.acc === "f16";
  const G16 = H?.group ?? 16; // depth of the f16-accumulated K groups
  if (acc16 && G16 % BK !== 0 && BK % G16 !== 0) {
    throw new TypeError(
      `matmulWgsl: f16 accumulation needs BK dividing ${G16} or a multiple of it`,
    );
  }
  const stage16 = H ? stagesF16(H) : false;
  if (acc16 && !stage16) {
    throw new TypeError(`matmulWgsl: f16 accumulation stages its slices as f16`);
  }
  const WX = BN / TN, WY = BM / TM, T = WX * WY;
  // vec4s per k row of a staged slice (the tile's rows, one more when padded)
  const A4 = BM / 4 + (t.pad ? 1 : 0), B4 = BN / 4 + (t.pad ? 1 : 0);
  const AS = BK * A4, BS = BK * B4;
  const strided = !!s.strided;
  const la = planLoad("a", t, s, T), lb = planLoad("b", t, s, T);
  const arr = (v: boolean, el = "f32") => `array<${v ? `vec4<${el}>` : el}>`;
  const outEl = H?.out === "f16" ? "f16" : "f32";
  const SV = stage16 ? "vec4<f16>" : V4; // staged in workgroup memory
  const bind: string[] = [];
  // one binding, or one per group (`name0`, `name1`, …)
  const declare = (name: string, access: string, type: string, perGroup: boolean) => {
    for (const suffix of perGroup ? Array.from({ length: G!.n }, (_, k) => `${k}`) : [""]) {
      bind.push(
        `@group(0) @binding(${bind.length}) var<storage, ${access}> ${name}${suffix}: ${type};`,
      );
    }
  };
  declare("a", "read", arr(s.vecA, H?.a), gA);
  declare("b", "read", arr(s.vecB, H?.b), gB);
  if (s.bias) declare("bias", "read", arr(s.vecOut), G?.role === "b");
  if (s.geluGradOut || s.scoresGrad || GR) {
    bind.push(`@group(0) @binding(${bind.length}) var<storage, read> aux: ${arr(s.vecOut)};`);
  }
  if (GR?.mask) {
    bind.push(`@group(0) @binding(${bind.length}) var<storage, read> kmask: array<${GR.mask}>;`);
  }
  const SP = s.scoresProb ?? null;
  if (SR?.mask) {
    bind.push(`@group(0) @binding(${bind.length}) var<storage, read> kmask: array<${SR.mask}>;`);
  }
  if (SP) {
    bind.push(`@group(0) @binding(${bind.length}) var<storage, read> lse: array<f32>;`);
    if (SP.mask) {
      bind.push(`@group(0) @binding(${bind.length}) var<storage, read> kmask: array<${SP.mask}>;`);
    }
  }
  if (s.scoresGrad || (SP && !SP.scan)) {
    bind.push(`@group(0) @binding(${bind.length}) var<storage, read> info: array<f32>;`);
  }
  if (s.addOut) {
    bind.push(`@group(0) @binding(${bind.length}) var<storage, read> addend: ${arr(s.vecOut)};`);
  }
  declare("out", "read_write", arr(s.vecOut, outEl), gOut);
  if (SR) bind.push(`@group(0) @binding(${bind.length}) var<storage, read_write> lse: array<f32>;`);
  if (s.rowSum) declare("rsum", "read_write", "array<f32>", gOut);
  const ub = bind.length;
  const drop = s.dropout ? ", seed: u32, thr: u32, scale: f32" : "";
  const split = s.splitK ? ", S: u32, kc: u32" : "";
  const strides = strided
    ? ", lda: u32, ldb: u32, ldo: u32, zh: u32, sah: u32, sbh: u32, so: u32, soh: u32" +
      (SR ? ", seed: u32, thr: u32, scale: f32, ks: f32" : scores ? ", scale: f32" : "")
    : "";
  bind.push(`struct U { M: u32, N: u32, K: u32, sa: u32, sb: u32${split}${drop}${strides} }`);
  bind.push(`@group(0) @binding(${ub}) var<uniform> u: U;`);
  if (s.geluIn || s.geluGradOut) bind.push(geluHelpers(!!s.dropout));
  if (SR) bind.push("const SM_MASKED: f32 = -1e30;");
  // whether a row of batch row b with keys [0, ke) has no allowed one (the scanning epilogues)
  const scanMask = (SP?.scan && SP.mask) || GR?.mask;
  if (scanMask) {
    bind.push(`fn none_allowed(b: u32, ke: u32) -> bool {
  for (var n = 0u; n < ke; n++) {
    if (kmask[b * u.N + n] != ${scanMask === "i32" ? "0" : "0.0"}) { return false; }
  }
  return true;
}`);
  }
  if (SR?.dropout) bind.push(WGSL_HASH);
  if (G) {
    const el = (v: boolean, t = "f32") => (v ? `vec4<${t}>` : t);
    const loads = [
      ...(gA ? [{ name: "a", type: el(s.vecA, H?.a) }] : []),
      ...(gB ? [{ name: "b", type: el(s.vecB, H?.b) }] : []),
      ...(s.bias ? [{ name: "bias", type: el(s.vecOut) }] : []),
    ];
    const stores = gOut
      ? [
        { name: "out", type: el(s.vecOut, outEl) },
        ...(s.rowSum ? [{ name: "rsum", type: "f32" }] : []),
      ]
      : [];
    bind.push(groupAccessors(G.n, loads, stores));
  }
  // to_f16 for f16 results and f32 operands staged as f16; round_f16 for f32 operands staged as
  // f32 and rounded results
  const f32In = H !== null && (H.a === "f32" || H.b === "f32");
  if (H && (H.out === "f16" || (stage16 && f32In))) bind.push(WGSL_TO_F16);
  if (H && ((!stage16 && f32In) || H.out === "round")) bind.push(WGSL_ROUND_F16);

  const acc: string[] = [];
  const flushAll: string[] = []; // f16 accumulation: group sums into the f32 totals
  for (let r = 0; r < TM; r++) {
    for (let h = 0; h < TN / 4; h++) {
      acc.push(`var c${r}_${h} = ${V4}();`);
      if (acc16) {
        acc.push(`var h${r}_${h} = vec4<f16>();`);
        flushAll.push(`c${r}_${h} += vec4<f32>(h${r}_${h}); h${r}_${h} = vec4<f16>();`);
      }
    }
  }
  // the multiply reads f32 (widening f16-staged slices when accumulating in f32) or, with f16
  // accumulation, f16
  const rd = (x: string) => (stage16 && !acc16 ? `vec4<f32>(${x})` : x);
  const CV = acc16 ? "vec4<f16>" : V4, cpre = acc16 ? "h" : "c";
  // vec4 `col` of slice row k (a number) in buffer `buf` (`MatmulTile.flat`: element
  // k·pitch + col of a 1-D buffer, the constant folded; double buffering indexes the buffer first,
  // so the index past it is never an offset that alternates at run time)
  const slot = (arr: string, buf: string, k: number, col: number, plus: string) => {
    const pitch = arr === "As" ? A4 : B4;
    return sliceRef(t, arr, buf, `${k * pitch + col}u + ${plus}`, `${k}u`, `${col}u + ${plus}`);
  };
  // the multiply of one slice (buffer `buf`), every k unrolled; `slice` is the slice's index
  // (f16 groups)
  const compute = (buf: string, slice: string): string[] => {
    const lines: string[] = [];
    for (let k = 0; k < BK; k++) {
      const body: string[] = [];
      for (let g = 0; g < TM / 4; g++) {
        body.push(`let a${g} = ${rd(slot("As", buf, k, g * WY, "ty"))};`);
      }
      for (let h = 0; h < TN / 4; h++) {
        body.push(`let b${h} = ${rd(slot("Bs", buf, k, h * WX, "tx"))};`);
      }
      for (let g = 0; g < TM / 4; g++) {
        for (let i = 0; i < 4; i++) {
          const r = g * 4 + i;
          for (let h = 0; h < TN / 4; h++) {
            const c = `${cpre}${r}_${h}`;
            body.push(`${c} = fma(${CV}(a${g}.${COMP[i]}), b${h}, ${c});`);
          }
        }
      }
      lines.push(`{ ${body.join(" ")} }`);
      // a group of G16 k ends inside the slice (BK a multiple of G16)
      if (acc16 && BK >= G16 && (k + 1) % G16 === 0) lines.push(flushAll.join(" "));
    }
    // slices shallower than a group: the group ends with every (G16 / BK)-th slice
    if (acc16 && BK < G16) {
      lines.push(`if (((${slice} + 1u) * ${BK}u) % ${G16}u == 0u) { ${flushAll.join(" ")} }`);
    }
    return lines;
  };

  // row sums of A (rowSum): thread tid owns rows tid + j·T of the tile, summed over the slice
  // at k `kb` in the first column block of workgroups (a uniform condition, no barrier
  // inside), k in order. f32 kernels read the staged slice; f16 kernels stage A rounded to
  // f16, so they read `a` as stored (f32 values, unrounded: the sums f32 kernels give; these
  // rows were just fetched, so the reads hit the cache)
  const RS = s.rowSum ? Math.ceil(BM / T) : 0;
  const rsDecl = Array.from({ length: RS }, (_, j) => `var rs${j} = 0.0;`);
  const aAt = (m: string, k: string): string => {
    const e = s.transA ? `ab + (${k}) * u.M + ${m}` : `ab + (${m}) * u.K + ${k}`; // not strided
    const A = (i: string) => (gA ? `ld_a(${i})` : `a[${i}]`);
    return s.vecA ? `f32(${A(`(${e}) >> 2u`)}[(${e}) & 3u])` : `f32(${A(e)})`;
  };
  const rowSum = (buf: string, kb: string): string[] => {
    if (!RS) return [];
    const body: string[] = [];
    for (let j = 0; j < RS; j++) {
      const r = `(tid + ${j * T}u)`;
      const inTile = (j + 1) * T > BM ? [`${r} < ${BM}u`] : [];
      if (!H) {
        const terms = Array.from(
          { length: BK },
          (_, k) => `rs${j} += ${slot("As", buf, k, 0, `(${r} >> 2u)`)}[${r} & 3u];`,
        );
        body.push(inTile.length ? `if (${inTile[0]}) { ${terms.join(" ")} }` : terms.join(" "));
        continue;
      }
      const m = `m0 + ${r}`;
      const terms = Array.from({ length: BK }, (_, k) => {
        const kk = `${kb} + ${k}u`;
        const add = `rs${j} += ${aAt(m, kk)};`;
        return s.exact ? add : `if (${kk} < kend) { ${add} }`;
      });
      const conds = s.exact ? inTile : [...inTile, `${m} < u.M`];
      body.push(
        conds.length ? `if (${conds.join(" && ")}) { ${terms.join(" ")} }` : terms.join(" "),
      );
    }
    return [`if (wid.x == 0u) { ${body.join(" ")} }`];
  };
  const loop: string[] = [];
  const nt = s.exact ? `(kend - k0) / ${BK}u` : `(kend - k0 + ${BK - 1}u) / ${BK}u`;
  if (t.double) {
    loop.push(
      `let nt = ${nt};`,
      `{ let kt = k0; ${
        [...la.fetch, ...lb.fetch, ...la.store("0u"), ...lb.store("0u")].join(" ")
      } }`,
      "workgroupBarrier();",
      "var cur = 0u;",
      "for (var t = 1u; t <= nt; t++) {",
      `  let kt = k0 + t * ${BK}u;`,
      "  let more = t < nt;",
      `  if (more) { ${[...la.fetch, ...lb.fetch].join(" ")} }`,
      ...rowSum("cur", `(kt - ${BK}u)`).map((l) => "  " + l),
      ...compute("cur", "(t - 1u)").map((l) => "  " + l),
      "  if (more) {",
      ...la.store("cur ^ 1u").map((l) => "    " + l),
      ...lb.store("cur ^ 1u").map((l) => "    " + l),
      "  }",
      "  workgroupBarrier();",
      "  cur ^= 1u;",
      "}",
    );
  } else {
    loop.push(
      `let nt = ${nt};`,
      "for (var t = 0u; t < nt; t++) {",
      `  let kt = k0 + t * ${BK}u;`,
      ...[...la.fetch, ...lb.fetch].map((l) => "  " + l),
      ...la.store("0u").map((l) => "  " + l),
      ...lb.store("0u").map((l) => "  " + l),
      "  workgroupBarrier();",
      ...rowSum("0u", "kt").map((l) => "  " + l),
      ...compute("0u", "t").map((l) => "  " + l),
      "  workgroupBarrier();",
      "}",
    );
  }

  // epilogue: row (g·WY + ty)·4 + i, column group h·WX + tx
  const rsOut = Array.from({ length: RS }, (_, j) => {
    const gm = `m0 + tid + ${j * T}u`;
    const inTile = (j + 1) * T > BM ? `tid + ${j * T}u < ${BM}u && ` : "";
    const st = gOut ? `st_rsum(${gm}, rs${j});` : `rsum[wid.z * u.M + ${gm}] = rs${j};`;
    return `if (wid.x == 0u && ${inTile}${gm} < u.M) { ${st} }`;
  });
  // the result's type: f32, f16, or f32 holding f16-rounded values
  const conv = (v: string, vec: boolean) =>
    H?.out === "f16"
      ? `${vec ? "to_f16v4" : "to_f16"}(${v})`
      : H?.out === "round"
      ? `${vec ? "round_f16v4" : "round_f16"}(${v})`
      : v;
  // the probability of score v of key n in the current row (scoresProb)
  const probOf = (v: string, n: string) => {
    const on = SP?.mask
      ? ` && kmask[(z / u.zh) * u.N + ${n}] != ${SP.mask === "i32" ? "0" : "0.0"}`
      : "";
    return `select(select(0.0, exp(u.scale * ${v} - lr), ${n} < ke${on}), 1.0 / f32(u.N), fl)`;
  };
  const epi: string[] = [
    ...(acc16 ? flushAll : []),
    ...rsOut,
  ];
  // each group's out is a binding of its own
  const oz = strided ? "(z / u.zh) * u.so + (z % u.zh) * u.soh" : gOut ? "0u" : "wid.z * u.M * u.N";
  const BIAS = (i: string) => (G ? `ld_bias(${i})` : `bias[${i}]`);
  const OUT = (i: string, v: string) => (gOut ? `st_out(${i}, ${v});` : `out[${i}] = ${v};`);
  epi.push(s.vecOut ? `let oz = (${oz}) >> 2u;` : `let oz = ${oz};`);
  const ldo = strided ? "u.ldo" : "u.N";
  if (s.vecOut) epi.push(`let n4 = ${ldo} >> 2u;`);
  for (let h = 0; h < TN / 4; h++) {
    epi.push(`let gn${h} = n0 + ${h * WX * 4}u + tx * 4u;`);
    if (s.bias && s.vecOut) {
      epi.push(s.exact ? `let bias${h} = ${BIAS(`gn${h} >> 2u`)};` : `var bias${h} = ${V4}();`);
      if (!s.exact) epi.push(`if (gn${h} < u.N) { bias${h} = ${BIAS(`gn${h} >> 2u`)}; }`);
    }
  }
  if (SR) epi.push(...softmaxRowsWgsl(t, SR, s.vecOut));
  if (GR) epi.push(...scoresGradRowsWgsl(t, GR, s.vecOut));
  for (let g = 0; g < (SR || GR ? 0 : TM / 4); g++) {
    for (let i = 0; i < 4; i++) {
      const r = g * 4 + i;
      const rows: string[] = [`let gm = m0 + ${g * WY * 4 + i}u + ty * 4u;`];
      // the scores gradient: Δ and the fully-masked flag of the row (read once per row)
      if (s.scoresGrad) {
        rows.push(
          "let ri = 2u * (z * u.M + gm);",
          "let dl = info[ri];",
          "let fl = info[ri + 1u] != 0.0;",
        );
      }
      // the probabilities: the row's lse, its flag and its keys' end (b = z / H, h = z % H)
      if (SP) {
        const lseAt = SP.layout === "BTHD"
          ? "((z / u.zh) * u.M + gm) * u.zh + z % u.zh"
          : "z * u.M + gm";
        rows.push(
          `let lr = lse[${lseAt}];`,
          SP.causal
            ? "let ke = u32(clamp(i32(gm) + i32(u.N) - i32(u.M) + 1, 0, i32(u.N)));"
            : "let ke = u.N;",
          SP.scan
            ? `let fl = ${SP.mask ? "none_allowed(z / u.zh, ke)" : "ke == 0u"};`
            : "let fl = info[2u * (z * u.M + gm) + 1u] != 0.0;",
        );
      }
      for (let h = 0; h < TN / 4; h++) {
        const c = `c${r}_${h}`;
        if (s.vecOut) {
          const oi = `oz + gm * n4 + (gn${h} >> 2u)`;
          const cv = H && H.out !== "f16" ? conv(c, true) : c;
          let v = s.bias ? `${cv} + bias${h}` : cv;
          if (s.geluGradOut) v = `gelu_grad_out4(${v}, aux[${oi}], ${oi})`;
          if (s.scoresGrad) {
            v = `select(u.scale * aux[${oi}] * (${v} - ${V4}(dl)), ${V4}(), ` +
              `vec4<bool>(fl) | (aux[${oi}] == ${V4}()))`;
          }
          if (SP) {
            v = `${V4}(${COMP.map((c, q) => probOf(`${v}.${c}`, `gn${h} + ${q}u`)).join(", ")})`;
          }
          if (s.addOut) v = `${v} + addend[${oi}]`;
          const st = OUT(oi, H?.out === "f16" ? conv(v, true) : v);
          rows.push(s.exact ? st : `if (gn${h} < u.N) { ${st} }`);
        } else {
          for (let q = 0; q < 4; q++) {
            const oi = `oz + gm * ${ldo} + gn${h} + ${q}u`;
            const cq = `${c}.${COMP[q]}`, cv = H && H.out !== "f16" ? conv(cq, false) : cq;
            let v = s.bias ? `${cv} + ${BIAS(`gn${h} + ${q}u`)}` : cv;
            if (s.geluGradOut) v = `gelu_grad_out(${v}, aux[${oi}], ${oi})`;
            if (s.scoresGrad) {
              v = `select(u.scale * aux[${oi}] * (${v} - dl), 0.0, fl || aux[${oi}] == 0.0)`;
            }
            if (SP) v = probOf(v, `gn${h} + ${q}u`);
            if (s.addOut) v = `${v} + addend[${oi}]`;
            const st = OUT(oi, H?.out === "f16" ? conv(v, false) : v);
            rows.push(s.exact ? st : `if (gn${h} + ${q}u < u.N) { ${st} }`);
          }
        }
      }
      epi.push(
        s.exact
          ? `{ ${rows.join(" ")} }`
          : `{ ${rows[0]} if (gm < u.M) { ${rows.slice(1).join(" ")} } }`,
      );
    }
  }

  return `${H ? "enable f16;\n" : ""}// matmul tile ${BM}x${BN}x${BK} thread ${TM}x${TN}${
    t.double ? " double" : ""
  }${t.pad ? " padded" : ""}${t.flat ? " flat" : ""} ${JSON.stringify(s)}
${bind.join("\n")}
${
    [["As", AS, BK, A4], ["Bs", BS, BK, B4]].map(([name, n, rows, pitch]) => {
      const one = t.flat ? `array<${SV}, ${n}>` : `array<array<${SV}, ${pitch}>, ${rows}>`;
      return `var<workgroup> ${name}: ${t.double ? `array<${one}, 2>` : one};`;
    }).join("\n")
  }${
    SR || GR
      ? `
var<workgroup> sm_part: array<f32, ${BM * WX}>;
var<workgroup> sm_max: array<f32, ${BM}>;
var<workgroup> sm_sum: array<f32, ${BM}>;`
      : ""
  }
@compute @workgroup_size(${T})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) tid: u32) {
  let tx = tid % ${WX}u;
  let ty = tid / ${WX}u;
  let m0 = wid.y * ${BM}u;
  let n0 = wid.x * ${BN}u;
  ${
    s.splitK
      ? `let z = wid.z / u.S;
  let k0 = (wid.z % u.S) * u.kc;
  let kend = min(u.K, k0 + u.kc);`
      : `let z = wid.z;
  let k0 = 0u;
  let kend = u.K;`
  }
  ${
    strided
      ? `let zo = z / u.zh;
  let zi = z % u.zh;
  let ab = zo * u.sa + zi * u.sah;
  let bb = zo * u.sb + zi * u.sbh;`
      : `let ab = z * u.sa;
  let bb = z * u.sb;`
  }${G ? "\n  zg = z;" : ""}
  ${[...la.setup, ...lb.setup, ...acc, ...rsDecl].join("\n  ")}
  ${
    G?.role === "k"
      // K concatenated over the groups: the same K loop for each group's pair in turn
      ? `for (var gk = 0u; gk < ${G.n}u; gk++) {\n  zg = gk;\n  ${loop.join("\n  ")}\n  }`
      : loop.join("\n  ")
  }
  ${epi.join("\n  ")}
}`;
}
/**
 * The epilogue of a {@linkcode MatmulSpec.softmaxRows} product (`Q·Kᵀ` per
 * head z = b·H + h, M = T, N = S ≤ BN: one column block holds whole rows).
 * Each thread turns its scores into `x = scale·z` on allowed keys (key
 * `s < key end`, the mask; MASKED = −1e30 elsewhere and past the last row),
 * then the rows' max and sum are agreed in two rounds through workgroup memory:
 * each thread writes its partial per row (`sm_part[row·WX + tx]`), one thread
 * per row combines the WX partials in order (`sm_max`, `sm_sum`), every thread
 * reads its rows' values back (4 barriers, outside any branch). Then
 * `lse = m + log(l)` (`log(S)` with no allowed key), written per row by the
 * threads with tx = 0 (index by layout), and each output (the caller's
 * epilogue set-up declares `oz`, and `n4` for vec4 stores)
 * `P·zm` with `P = exp(x − lse)` on allowed keys, 0 elsewhere, `1/S`
 * everywhere in a row with no allowed key, `zm` the dropout multiplier of
 * the `[B, H, T, S]` index (ops/attention.ts semantics).
 */
export function softmaxRowsWgsl(t: MatmulTile, r: SoftmaxRows, vecOut: boolean): string[] {
  const { BM, BN, TM, TN } = t;
  const WX = BN / TN, WY = BM / TM, T = WX * WY;
  const rows = Array.from({ length: TM }, (_, k) => k);
  const cols = Array.from({ length: TN / 4 }, (_, h) => h);
  const at = (k: number, h: number, q: number) => `c${k}_${h}.${COMP[q]}`;
  const each = (f: (k: number, h: number, q: number) => string) =>
    rows.flatMap((k) => cols.flatMap((h) => COMP.map((_, q) => f(k, h, q))));
  const lr = (k: number) => `${Math.floor(k / 4) * WY * 4 + (k % 4)}u + ty * 4u`;
  const key = (h: number, q: number) => `${h * WX * 4}u + tx * 4u + ${q}u`;
  const on = (h: number, q: number) =>
    r.mask ? ` && kmask[sb * u.N + ${key(h, q)}] != ${r.mask === "i32" ? "0" : "0.0"}` : "";
  const lines: string[] = [
    "let sb = z / u.zh;",
    "let sh = z % u.zh;",
    ...rows.flatMap((k) => [
      `let lr${k} = ${lr(k)};`,
      `let gm${k} = m0 + lr${k};`,
      r.causal
        ? `let ke${k} = select(0u, u32(clamp(i32(gm${k}) + i32(u.N) - i32(u.M) + 1, 0, i32(u.N))), gm${k} < u.M);`
        : `let ke${k} = select(0u, u.N, gm${k} < u.M);`,
    ]),
    // the scaled scores, MASKED where not allowed (past N too: ke ≤ N)
    ...each((k, h, q) =>
      `${at(k, h, q)} = select(SM_MASKED, u.scale * ${at(k, h, q)}, ${key(h, q)} < ke${k}${
        on(h, q)
      });`
    ),
    ...rows.map((k) => {
      const xs = cols.flatMap((h) => COMP.map((_, q) => at(k, h, q)));
      return `sm_part[lr${k} * ${WX}u + tx] = ${
        xs.slice(1).reduce((a, x) => `max(${a}, ${x})`, xs[0])
      };`;
    }),
    "workgroupBarrier();",
    `for (var rr = tid; rr < ${BM}u; rr += ${T}u) {`,
    "  var mx = SM_MASKED;",
    `  for (var j = 0u; j < ${WX}u; j++) { mx = max(mx, sm_part[rr * ${WX}u + j]); }`,
    "  sm_max[rr] = mx;",
    "}",
    "workgroupBarrier();",
    ...rows.flatMap((k) => {
      const terms = cols.flatMap((h) =>
        COMP.map((_, q) =>
          `select(0.0, exp(${at(k, h, q)} - rmax${k}), ${at(k, h, q)} != SM_MASKED)`
        )
      );
      return [
        `let rmax${k} = sm_max[lr${k}];`,
        `sm_part[lr${k} * ${WX}u + tx] = ${terms.join(" + ")};`,
      ];
    }),
    "workgroupBarrier();",
    `for (var rr = tid; rr < ${BM}u; rr += ${T}u) {`,
    "  var sm = 0.0;",
    `  for (var j = 0u; j < ${WX}u; j++) { sm += sm_part[rr * ${WX}u + j]; }`,
    "  sm_sum[rr] = sm;",
    "}",
    "workgroupBarrier();",
    "let inv_s = 1.0 / f32(u.N);",
  ];
  const lseAt = (k: number) =>
    r.layout === "BTHD" ? `(sb * u.M + gm${k}) * u.zh + sh` : `z * u.M + gm${k}`;
  const zm = (k: number, h: number, q: number) =>
    r.dropout
      ? ` * select(0.0, u.ks, (hash_u32(u.seed, (z * u.M + gm${k}) * u.N + ${
        key(h, q)
      }) >> 8u) >= u.thr)`
      : "";
  const p = (k: number, h: number, q: number) =>
    `select(select(0.0, exp(${at(k, h, q)} - lse${k}), ${
      at(k, h, q)
    } != SM_MASKED), inv_s, none${k})${zm(k, h, q)}`;
  for (const k of rows) {
    const body: string[] = [
      `let none${k} = rmax${k} == SM_MASKED;`,
      `let lse${k} = select(rmax${k} + log(sm_sum[lr${k}]), log(f32(u.N)), none${k});`,
      `if (tx == 0u) { lse[${lseAt(k)}] = lse${k}; }`,
    ];
    for (const h of cols) {
      if (vecOut) {
        const v = `${V4}(${COMP.map((_, q) => p(k, h, q)).join(", ")})`;
        body.push(
          `if (${key(h, 0)} < u.N) { out[oz + gm${k} * n4 + ((${key(h, 0)}) >> 2u)] = ${v}; }`,
        );
      } else {
        for (const q of [0, 1, 2, 3]) {
          body.push(
            `if (${key(h, q)} < u.N) { out[oz + gm${k} * u.ldo + ${key(h, q)}] = ${p(k, h, q)}; }`,
          );
        }
      }
    }
    lines.push(`if (gm${k} < u.M) { ${body.join(" ")} }`);
  }
  return lines;
}

/**
 * The epilogue of a {@linkcode MatmulSpec.scoresGradRows} product (`dO·Vᵀ`
 * per head z = b·H + h, M = T, N = S ≤ BN: one column block holds whole
 * rows): with `P` the input `aux` laid out as the output, each row's
 * `Δ = Σ_n P·dP` (which equals `dO·O` without attention dropout) is agreed
 * through workgroup memory as {@linkcode softmaxRowsWgsl} agrees its sums (each
 * thread's partial per row, one thread per row adding the WX partials in
 * order), and that thread also finds whether its row has an allowed key (the
 * causal end, then the mask scanned); then `out = scale·P·(dP − Δ)`, 0 in a
 * row with no allowed key and where P is 0 (2 barriers; the caller's
 * epilogue set-up declares `oz`, and `n4` for vec4).
 */
export function scoresGradRowsWgsl(t: MatmulTile, r: ScoresGradRows, vecOut: boolean): string[] {
  const { BM, BN, TM, TN } = t;
  const WX = BN / TN, WY = BM / TM, T = WX * WY;
  const rows = Array.from({ length: TM }, (_, k) => k);
  const cols = Array.from({ length: TN / 4 }, (_, h) => h);
  const lr = (k: number) => `${Math.floor(k / 4) * WY * 4 + (k % 4)}u + ty * 4u`;
  const key = (h: number) => `${h * WX * 4}u + tx * 4u`;
  // P of row k, column group h: vec4 (0 past N or past the last row)
  const pOf = (k: number, h: number) =>
    vecOut
      ? `select(${V4}(), aux[oz + gm${k} * n4 + ((${key(h)}) >> 2u)], gm${k} < u.M && ${
        key(h)
      } < u.N)`
      : `${V4}(${
        COMP.map((_, q) =>
          `select(0.0, aux[oz + gm${k} * u.ldo + ${key(h)} + ${q}u], gm${k} < u.M && ${
            key(h)
          } + ${q}u < u.N)`
        ).join(", ")
      })`;
  const keyEnd = (gm: string) =>
    r.causal ? `u32(clamp(i32(${gm}) + i32(u.N) - i32(u.M) + 1, 0, i32(u.N)))` : "u.N";
  const lines: string[] = [
    ...rows.flatMap((k) => [
      `let lr${k} = ${lr(k)};`,
      `let gm${k} = m0 + lr${k};`,
      ...cols.map((h) => `let p${k}_${h} = ${pOf(k, h)};`),
      `sm_part[lr${k} * ${WX}u + tx] = ${
        cols.map((h) => `dot(p${k}_${h}, c${k}_${h})`).join(" + ")
      };`,
    ]),
    "workgroupBarrier();",
    `for (var rr = tid; rr < ${BM}u; rr += ${T}u) {`,
    "  var sm = 0.0;",
    `  for (var j = 0u; j < ${WX}u; j++) { sm += sm_part[rr * ${WX}u + j]; }`,
    "  sm_sum[rr] = sm;",
    `  let ke = select(0u, ${keyEnd("m0 + rr")}, m0 + rr < u.M);`,
    `  sm_max[rr] = select(0.0, 1.0, ${r.mask ? "none_allowed(z / u.zh, ke)" : "ke == 0u"});`,
    "}",
    "workgroupBarrier();",
  ];
  for (const k of rows) {
    const body: string[] = [
      `let dl${k} = sm_sum[lr${k}];`,
      `let fl${k} = sm_max[lr${k}] != 0.0;`,
    ];
    for (const h of cols) {
      const ds = `select(u.scale * p${k}_${h} * (c${k}_${h} - ${V4}(dl${k})), ${V4}(), ` +
        `vec4<bool>(fl${k}) | (p${k}_${h} == ${V4}()))`;
      if (vecOut) {
        body.push(`if (${key(h)} < u.N) { out[oz + gm${k} * n4 + ((${key(h)}) >> 2u)] = ${ds}; }`);
      } else {
        body.push(`{ let d = ${ds};`);
        for (const q of [0, 1, 2, 3]) {
          body.push(
            `if (${key(h)} + ${q}u < u.N) { out[oz + gm${k} * u.ldo + ${key(h)} + ${q}u] = d.${
              COMP[q]
            }; }`,
          );
        }
        body.push("}");
      }
    }
    lines.push(`if (gm${k} < u.M) { ${body.join(" ")} }`);
  }
  return lines;
}

/** Tile of the legacy kernel (workgroups: ceil(N/64), ceil(M/64), batch). */
export const LEGACY_TILE = 64;

/**
 * The first matmul kernel, kept for comparison (`legacy` variant): 64×64 per
 * workgroup of 16×16 threads, 4×4 scalar outputs each, 16-deep K slices,
 * scalar loads, loops with runtime bounds. Same bindings and uniform as
 * {@linkcode matmulWgsl} without bias.
 */
export function legacyMatmulWgsl(transA: boolean, transB: boolean): string {
  const BM = LEGACY_TILE, BN = LEGACY_TILE, BK = 16;
  // a element (m, k) of batch base: transA ? a[base + k*M + m] : a[base + m*K + k]
  const aIdx = transA ? "ab + gk * u.M + gm" : "ab + gm * u.K + gk";
  const bIdx = transB ? "bb + gn * u.K + gk" : "bb + gk * u.N + gn";
  // tile loads: choose the element order so that consecutive threads read consecutive addresses
  const aLoad = transA
    ? `let kk = e / ${BM}u; let mm = e % ${BM}u;`
    : `let mm = e / ${BK}u; let kk = e % ${BK}u;`;
  const bLoad = transB
    ? `let nn = e / ${BK}u; let kk = e % ${BK}u;`
    : `let kk = e / ${BN}u; let nn = e % ${BN}u;`;
  return `
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
struct U { M: u32, N: u32, K: u32, sa: u32, sb: u32 }
@group(0) @binding(3) var<uniform> u: U;
var<workgroup> As: array<f32, ${BK * BM}>;
var<workgroup> Bs: array<f32, ${BK * BN}>;
@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let ab = wid.z * u.sa;
  let bb = wid.z * u.sb;
  let m0 = wid.y * ${BM}u;
  let n0 = wid.x * ${BN}u;
  let tid = lid.y * 16u + lid.x;
  var acc: array<f32, 16>;
  for (var k0 = 0u; k0 < u.K; k0 += ${BK}u) {
    for (var l = 0u; l < 4u; l++) {
      let e = tid + l * 256u;
      {
        ${aLoad}
        let gm = m0 + mm; let gk = k0 + kk;
        var v = 0.0;
        if (gm < u.M && gk < u.K) { v = a[${aIdx}]; }
        As[kk * ${BM}u + mm] = v;
      }
      {
        ${bLoad}
        let gn = n0 + nn; let gk = k0 + kk;
        var v = 0.0;
        if (gn < u.N && gk < u.K) { v = b[${bIdx}]; }
        Bs[kk * ${BN}u + nn] = v;
      }
    }
    workgroupBarrier();
    for (var kk = 0u; kk < ${BK}u; kk++) {
      var ra: array<f32, 4>;
      var rb: array<f32, 4>;
      for (var i = 0u; i < 4u; i++) { ra[i] = As[kk * ${BM}u + lid.y + i * 16u]; }
      for (var j = 0u; j < 4u; j++) { rb[j] = Bs[kk * ${BN}u + lid.x + j * 16u]; }
      for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) { acc[i * 4u + j] = fma(ra[i], rb[j], acc[i * 4u + j]); }
      }
    }
    workgroupBarrier();
  }
  let ob = wid.z * u.M * u.N;
  for (var i = 0u; i < 4u; i++) {
    let gm = m0 + lid.y + i * 16u;
    if (gm >= u.M) { continue; }
    for (var j = 0u; j < 4u; j++) {
      let gn = n0 + lid.x + j * 16u;
      if (gn < u.N) { out[ob + gm * u.N + gn] = acc[i * 4u + j]; }
    }
  }
}`;
}

/**
 * The reduction after a `splitK` kernel: `out[i] = Σ_s part[slot(i, s)]` (+
 * `addend[i]` when `addOut`), s in order, and with `rowSum` also `rsum[j] =
 * Σ_s rpart[…]`; `round`: the sum rounded to an f16 value (the "round"
 * result of an f16 matmul; needs `shader-f16`) before the addend is added. Bindings: part, [rpart],
 * [addend], out, [rsum], uniform `{ n: P·M·N, S, MN: M·N, rn: P·M (0
 * without rowSum), RM: M }`. One thread per output element
 * ({@linkcode grid1d} over `n + rn`).
 */
export function splitReduceWgsl(
  addOut: boolean,
  rowSum: boolean,
  round = false,
  groups = 0,
): string {
  const bind = ["part", ...(rowSum ? ["rpart"] : []), ...(addOut ? ["addend"] : [])].map(
    (name, i) => `@group(0) @binding(${i}) var<storage, read> ${name}: array<f32>;`,
  );
  // grouped (MatmulGroup): batch z's sums go to out<z> (and rsum<z>), from element 0
  const outs = groups ? Array.from({ length: groups }, (_, k) => `${k}`) : [""];
  for (const name of ["out", ...(rowSum ? ["rsum"] : [])]) {
    for (const k of outs) {
      bind.push(
        `@group(0) @binding(${bind.length}) var<storage, read_write> ${name}${k}: array<f32>;`,
      );
    }
  }
  const ub = bind.length;
  const put = (name: string, i: string, at: string, v: string) =>
    groups ? `st_${name}(${at}, ${v});` : `${name}[${i}] = ${v};`;
  const sum = (src: string, stride: string, at: string) =>
    `var acc = 0.0; var at = ${at}; for (var s = 0u; s < u.S; s++) { acc += ${src}[at]; at += ${stride}; }`;
  const flags = `${addOut ? " +addend" : ""}${rowSum ? " +rowsum" : ""}${round ? " +round" : ""}`;
  const value = `${round ? "round_f16(acc)" : "acc"}${addOut ? " + addend[i]" : ""}`;
  const access = groups
    ? groupAccessors(groups, [], [
      { name: "out", type: "f32" },
      ...(rowSum ? [{ name: "rsum", type: "f32" }] : []),
    ])
    : "";
  return `// matmul split-K reduction${flags}${groups ? ` grouped ${groups}` : ""}
${bind.join("\n")}${round ? WGSL_ROUND_F16 : ""}
struct U { n: u32, S: u32, MN: u32, rn: u32, RM: u32 }
@group(0) @binding(${ub}) var<uniform> u: U;
${access}
${MAIN_1D()} {
  ${LINEAR_INDEX()}
  if (i < u.n) {
    let z = i / u.MN;${groups ? "\n    zg = z;" : ""}
    ${sum("part", "u.MN", "z * u.S * u.MN + (i - z * u.MN)")}
    ${put("out", "i", "i - z * u.MN", value)}
  }${
    rowSum
      ? ` else if (i - u.n < u.rn) {
    let j = i - u.n;
    let z = j / u.RM;${groups ? "\n    zg = z;" : ""}
    ${sum("rpart", "u.RM", "z * u.S * u.RM + (j - z * u.RM)")}
    ${put("rsum", "j", "j - z * u.RM", "acc")}
  }`
      : ""
  }
}`;
}
