/**
 * The mixed-precision matmul: operands rounded to f16, products accumulated
 * in f32, an f32 (or f16) result. `out[..., M, N] = op(a)[..., M, K] ·
 * op(b)[..., K, N]` with the layout rules of `matmul` (ops/matmul.ts):
 * `transA`/`transB` transpose the last two axes, batch axes match or are
 * absent (a 2-D operand is shared).
 *
 * Each operand is f16, or f32 that the kernel rounds to f16 as it loads it
 * (`matmulF16(x, w)` computes exactly `matmulF16(cast(x, "f16"), cast(w,
 * "f16"))` without the two cast passes: that is what nn/layers.ts `autocast`
 * runs). `round` rounds an f32 result to f16 values (the gradient of an f32
 * operand that was rounded to f16, as the cast's backward would produce it).
 *
 * CPU reference: the products of two f16 are exact in f32 and the sum is
 * accumulated in f32, so it rounds both operands to f16, widens them to f32
 * and runs the f32 matmul (ops/matmul.ts, the WebAssembly kernel when it
 * loads); an f16 (or rounded) result is that f32 result rounded to nearest
 * even, overflow to ±Infinity.
 *
 * WebGPU kernel (needs `shader-f16`): a 64×64, 128×64 or 128×128 block of
 * `out` per workgroup of 16×16 threads (4×4 to 8×8 outputs per thread in
 * `vec4<f32>` accumulators; {@linkcode matmulF16Tile} picks the tile); the
 * operands sit as f16 in workgroup memory (K-major `vec4<f16>` slices of
 * depth 16: half the bytes of f32 tiles) and are widened to f32 for each
 * FMA. Global loads are vec4 along the contiguous axis where it is a
 * multiple of 4, else bounds-checked scalars. Accumulation order differs
 * from the CPU's, so results agree to f32 rounding of the sum (and f16
 * results to one f16 ulp, WGSL's f32→f16 conversion may round either way).
 *
 * Backward (gradients in the input dtypes): `dy` is rounded to f16 as it is
 * loaded (the loss scale of optim/grad_scaler.ts keeps it clear of
 * underflow; overflow gives ±Infinity, which the scaler detects), and each
 * gradient is this same kernel with its result rounded to f16.
 *
 * @example
 * ```ts
 * import { tensor } from "../tensor/tensor.ts";
 * import { cast } from "./cast.ts";
 * import { matmulF16 } from "./matmul_f16.ts";
 * const a = cast(tensor([1, 2, 3, 4], [2, 2]), "f16");
 * const y = matmulF16(a, a); // f32 [2, 2]
 * console.log(y.dtype, await y.toArray()); // "f32" [7, 10, 15, 22]
 * ```
 *
 * @module
 */
import { apply, type Tensor } from "../tensor/tensor.ts";
import {
  type CpuArray,
  type GpuKernel,
  type OpDef,
  type OpInfo,
  packUniform,
  type Shape,
} from "../tensor/types.ts";
import { MATMUL, type MatmulGeometry, matmulGeometry } from "./matmul.ts";
import { sumTo } from "./reduce.ts";
import { cast, type CastDType, WGSL_TO_F16 } from "./cast.ts";

/** Parameters of {@linkcode MATMUL_F16}. */
export interface MatmulF16Params {
  /** Read `a` as `[..., K, M]` and transpose it. */
  transA: boolean;
  /** Read `b` as `[..., N, K]` and transpose it. */
  transB: boolean;
  /** Result dtype: f32 (forward) or f16 (the gradients of f16 operands). */
  out: CastDType;
  /** Round an f32 result to f16 values (the gradients of f32 operands). */
  round?: boolean;
  /**
   * "f32" (default): every product accumulated in f32. "f16": the products
   * of each 16-deep K slice are accumulated by f16 FMAs (twice the FMA rate
   * of f32 on GPUs with packed half math) and each slice's sum is added to
   * an f32 total — PyTorch's "reduced precision reduction" for f16 GEMMs.
   */
  acc?: MatmulF16Accumulate;
}

/** How {@linkcode MATMUL_F16} accumulates (see `MatmulF16Params.acc`). */
export type MatmulF16Accumulate = "f32" | "f16";

type Geometry = MatmulGeometry;

function geometry(as: Shape, bs: Shape, p: MatmulF16Params): Geometry {
  return matmulGeometry(as, bs, { transA: p.transA, transB: p.transB }, "matmulF16");
}

// ---------------------------------------------------------------- WGSL

/** Depth of the K slices staged in workgroup memory. */
const BK = 16;

/**
 * A tile of the f16 kernel: 16×16 threads, each `TM×TN` outputs, so a
 * workgroup computes `16·TM × 16·TN` outputs.
 */
export interface MatmulF16Tile {
  /** Output rows per thread (4 or 8). */
  TM: 4 | 8;
  /** Output columns per thread (4 or 8). */
  TN: 4 | 8;
}

/** The tiles by name (`WEBSEQ_MATMUL_F16_TILE=<name>` forces one), largest first. */
export const MATMUL_F16_TILES: Readonly<Record<string, MatmulF16Tile>> = {
  "128x128": { TM: 8, TN: 8 },
  "128x64": { TM: 8, TN: 4 },
  "64x64": { TM: 4, TN: 4 },
};

/** Per-call specialisation of the kernel. */
interface F16Spec extends MatmulF16Tile {
  transA: boolean;
  transB: boolean;
  /** a is f32 (rounded to f16 on load). */
  f32A: boolean;
  /** b is f32 (rounded to f16 on load). */
  f32B: boolean;
  /** Round an f32 result to f16 values. */
  round: boolean;
  /** vec4 loads of a (its contiguous axis, K or M, is a multiple of 4). */
  vecA: boolean;
  /** vec4 loads of b (its contiguous axis, N or K, is a multiple of 4). */
  vecB: boolean;
  /** vec4 stores of out (N is a multiple of 4). */
  vecOut: boolean;
  /** f16 result. */
  outF16: boolean;
  /** f16 FMAs within each K slice, slice sums in f32. */
  acc16: boolean;
}

/**
 * Statements that stage one operand's BK-deep slice of `E` rows (`E` = BM
 * for a, BN for b) in workgroup memory `S`, K-major: `S[k·E/4 + i/4][i%4]`
 * holds row i of depth k. Each of the 256 threads moves 4 elements per 64
 * rows; `contiguousK` says the operand's contiguous axis is K.
 */
function stage(
  name: "a" | "b",
  S: string,
  E: number,
  contiguousK: boolean,
  vec: boolean,
  f32: boolean,
): string {
  // f32 operands load as f32 and round to f16 (to_f16v4) before workgroup memory
  const zero = f32 ? "vec4<f32>()" : "vec4<f16>()";
  const toF16 = f32 ? "to_f16v4" : "";
  const [I, base, lim] = name === "a" ? ["M", "m0", "u.M"] : ["N", "n0", "u.N"];
  const stride = name === "a" ? "u.sa" : "u.sb";
  const at = (i: string, k: string) =>
    contiguousK
      ? `${stride} * z + (${i}) * u.K + (${k})`
      : `${stride} * z + (${k}) * u.${I} + (${i})`;
  const out: string[] = [];
  for (let pass = 0; pass < E / 64; pass++) {
    if (contiguousK) {
      // 4 consecutive k of one row, scattered over 4 k-rows of S
      const load = vec
        ? `let v = ${toF16}(select(${zero}, ${name}[(${
          at("i", "k")
        }) / 4u], i < ${lim} && k < u.K));`
        : `var w = ${zero};
    for (var j = 0u; j < 4u; j++) {
      if (i < ${lim} && k + j < u.K) { w[j] = ${name}[${at("i", "k + j")}]; }
    }
    let v = ${toF16}(w);`;
      out.push(`{
    let r = tid / 4u + ${64 * pass}u;
    let kq = (tid % 4u) * 4u;
    let i = ${base} + r;
    let k = k0 + kq;
    ${load}
    for (var j = 0u; j < 4u; j++) { ${S}[(kq + j) * ${E / 4}u + r / 4u][r % 4u] = v[j]; }
  }`);
    } else {
      // 4 consecutive rows of one k: one vec4 store
      const load = vec
        ? `let v = ${toF16}(select(${zero}, ${name}[(${
          at("i", "k")
        }) / 4u], i < ${lim} && k < u.K));`
        : `var w = ${zero};
    for (var j = 0u; j < 4u; j++) {
      if (i + j < ${lim} && k < u.K) { w[j] = ${name}[${at("i + j", "k")}]; }
    }
    let v = ${toF16}(w);`;
      out.push(`{
    let kk = tid / 16u;
    let iq = (tid % 16u) * 4u + ${64 * pass}u;
    let i = ${base} + iq;
    let k = k0 + kk;
    ${load}
    ${S}[kk * ${E / 4}u + iq / 4u] = v;
  }`);
    }
  }
  return out.join("\n  ");
}

/**
 * The WGSL of one specialisation. Thread (tx, ty) owns the row groups
 * `ty + 16q` (rows ·4..·4+3) and column groups `tx + 16h`, so neighbouring
 * threads read neighbouring `vec4`s of workgroup memory; its accumulators
 * `c<q>_<i>_<h>` are named registers.
 */
export function matmulF16Wgsl(s: F16Spec): string {
  const BM = 16 * s.TM, BN = 16 * s.TN, QM = s.TM / 4, QN = s.TN / 4;
  const ta = s.f32A ? "f32" : "f16", tb = s.f32B ? "f32" : "f16";
  const elA = s.vecA ? `vec4<${ta}>` : ta, elB = s.vecB ? `vec4<${tb}>` : tb;
  const outT = s.outF16 ? "f16" : "f32";
  const outEl = s.vecOut ? `vec4<${outT}>` : outT;
  const conv = (v: string, vec: boolean) =>
    s.outF16
      ? `${vec ? "to_f16v4" : "to_f16"}(${v})`
      : s.round
      ? `${vec ? "vec4<f32>(to_f16v4" : "f32(to_f16"}(${v}))`
      : v;
  const accs: string[] = [], fmas: string[] = [], loads: string[] = [], stores: string[] = [];
  // f32 accumulation widens the staged f16 values; f16 accumulation keeps them (and flushes
  // the f16 partial sums into the f32 totals after each slice)
  const wt = s.acc16 ? "vec4<f16>" : "vec4<f32>";
  const flush: string[] = [];
  for (let q = 0; q < QM; q++) {
    loads.push(`let a${q} = ${wt}(As[k * ${BM / 4}u + ty + ${16 * q}u]);`);
  }
  for (let h = 0; h < QN; h++) {
    loads.push(`let b${h} = ${wt}(Bs[k * ${BN / 4}u + tx + ${16 * h}u]);`);
  }
  for (let q = 0; q < QM; q++) {
    for (let i = 0; i < 4; i++) {
      for (let h = 0; h < QN; h++) {
        const c = `c${q}_${i}_${h}`;
        accs.push(`var ${c} = vec4<f32>();`);
        if (s.acc16) {
          accs.push(`var h${c} = vec4<f16>();`);
          fmas.push(`h${c} = fma(${wt}(a${q}[${i}]), b${h}, h${c});`);
          flush.push(`${c} += vec4<f32>(h${c}); h${c} = vec4<f16>();`);
        } else fmas.push(`${c} = fma(${wt}(a${q}[${i}]), b${h}, ${c});`);
      }
      const row = [`{
    let m = m0 + (ty + ${16 * q}u) * 4u + ${i}u;
    if (m < u.M) {`];
      for (let h = 0; h < QN; h++) {
        const c = `c${q}_${i}_${h}`;
        row.push(
          s.vecOut
            ? `      { let n = n0 + (tx + ${16 * h}u) * 4u;
        if (n < u.N) { out[(z * u.M * u.N + m * u.N + n) / 4u] = ${conv(c, true)}; } }`
            : `      for (var j = 0u; j < 4u; j++) {
        let n = n0 + (tx + ${16 * h}u) * 4u + j;
        if (n < u.N) { out[z * u.M * u.N + m * u.N + n] = ${conv(`${c}[j]`, false)}; }
      }`,
        );
      }
      row.push("    }\n  }");
      stores.push(row.join("\n"));
    }
  }
  return `enable f16;
@group(0) @binding(0) var<storage, read> a: array<${elA}>;
@group(0) @binding(1) var<storage, read> b: array<${elB}>;
@group(0) @binding(2) var<storage, read_write> out: array<${outEl}>;
struct U { M: u32, N: u32, K: u32, sa: u32, sb: u32 }
@group(0) @binding(3) var<uniform> u: U;
var<workgroup> As: array<vec4<f16>, ${(BK * BM) / 4}>;
var<workgroup> Bs: array<vec4<f16>, ${(BK * BN) / 4}>;
${WGSL_TO_F16}
@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let z = wid.z;
  let m0 = wid.y * ${BM}u;
  let n0 = wid.x * ${BN}u;
  let tx = lid.x;
  let ty = lid.y;
  let tid = ty * 16u + tx;
  ${accs.join("\n  ")}
  for (var k0 = 0u; k0 < u.K; k0 += ${BK}u) {
  ${stage("a", "As", BM, !s.transA, s.vecA, s.f32A)}
  ${stage("b", "Bs", BN, s.transB, s.vecB, s.f32B)}
    workgroupBarrier();
    for (var k = 0u; k < ${BK}u; k++) {
      ${loads.join("\n      ")}
      ${fmas.join("\n      ")}
    }
    ${flush.join("\n    ")}
    workgroupBarrier();
  }
  ${stores.join("\n  ")}
}`;
}

/** Workgroups the heuristic wants before it takes a larger tile (as ops/_matmul_variants.ts). */
const MIN_WORKGROUPS = 256;

let forcedTile: string | null | undefined;

function envTile(): string | null {
  let name: string | undefined;
  try {
    const st = Deno.permissions.querySync({ name: "env", variable: "WEBSEQ_MATMUL_F16_TILE" });
    if (st.state === "granted") name = Deno.env.get("WEBSEQ_MATMUL_F16_TILE");
  } catch {
    name = undefined;
  }
  if (!name || name === "auto") return null;
  if (!(name in MATMUL_F16_TILES)) {
    throw new TypeError(
      `WEBSEQ_MATMUL_F16_TILE: unknown tile "${name}" (known: ${
        Object.keys(MATMUL_F16_TILES).join(", ")
      }, auto)`,
    );
  }
  return name;
}

/** Forces every matmulF16 onto one tile (tests, benchmarks); null: back to the heuristic. */
export function useMatmulF16Tile(name: string | null): void {
  if (name !== null && !(name in MATMUL_F16_TILES)) {
    throw new TypeError(
      `Unknown matmulF16 tile "${name}" (known: ${Object.keys(MATMUL_F16_TILES).join(", ")})`,
    );
  }
  forcedTile = name;
}

/**
 * The tile of a call: the one forced by `WEBSEQ_MATMUL_F16_TILE`, else the
 * largest that gives at least 256 workgroups and wastes at most a quarter of
 * its outputs on padding, else 64×64.
 */
export function matmulF16Tile(M: number, N: number, P = 1): string {
  if (forcedTile === undefined) forcedTile = envTile();
  if (forcedTile) return forcedTile;
  for (const [name, t] of Object.entries(MATMUL_F16_TILES)) {
    const BM = 16 * t.TM, BN = 16 * t.TN;
    const wgs = Math.ceil(M / BM) * Math.ceil(N / BN) * P;
    const fill = (M * N) / (Math.ceil(M / BM) * BM * Math.ceil(N / BN) * BN);
    if (wgs >= MIN_WORKGROUPS && fill >= 0.75) return name;
  }
  return "64x64";
}

const codes = new Map<string, string>();

function planKernel(g: Geometry, p: MatmulF16Params, info: OpInfo): GpuKernel {
  const { M, N, K, P, sa, sb } = g;
  if (P > 65535) throw new RangeError(`matmulF16 batch ${P} exceeds 65535`);
  const tile = MATMUL_F16_TILES[matmulF16Tile(M, N, P)];
  const spec: F16Spec = {
    ...tile,
    transA: p.transA,
    transB: p.transB,
    vecA: K > 0 && (p.transA ? M : K) % 4 === 0,
    vecB: K > 0 && (p.transB ? K : N) % 4 === 0,
    vecOut: N % 4 === 0,
    outF16: p.out === "f16",
    f32A: info.inputs[0].dtype !== "f16",
    f32B: info.inputs[1].dtype !== "f16",
    round: p.out === "f32" && Boolean(p.round),
    acc16: p.acc === "f16",
  };
  const key = JSON.stringify(spec);
  let code = codes.get(key);
  if (!code) codes.set(key, code = matmulF16Wgsl(spec));
  return {
    code,
    bind: [{ in: 0 }, { in: 1 }, { out: 0 }],
    uniform: packUniform([M, N, K, sa, sb]),
    workgroups: [Math.ceil(N / (16 * tile.TN)), Math.ceil(M / (16 * tile.TM)), P],
  };
}

/** 2⁴² + 1: Veltkamp's split of a float64 keeps 53 − 42 = 11 significant bits. */
const SPLIT_F16 = 4398046511105;

/**
 * `Math.f16round` (round to nearest even, subnormals, ±Infinity above the
 * f16 range), 3–4× faster: a Veltkamp split for normal values and the
 * add-and-subtract of 1.5·2²⁸ (multiples of 2⁻²⁴) for subnormal ones.
 * Equal to `Math.f16round` on every input (tests/ checks it, ties included).
 */
export function roundToF16(x: number): number {
  const ax = Math.abs(x);
  if (ax < 6.103515625e-5) {
    const r = x + 402653184 - 402653184;
    return r === 0 ? x * 0 : r; // keeps the sign of zero
  }
  if (ax >= 65520) return x !== x ? x : x > 0 ? Infinity : -Infinity;
  const c = x * SPLIT_F16;
  return c - (c - x);
}

/**
 * The `acc: "f16"` reference: for each output, each 16-deep K slice is
 * summed by f16 FMAs in k order (`h = f16(a·b + h)`: the product of two f16
 * is exact in float64, and so is its sum with an f16, so one rounding, as a
 * fused f16 FMA), and each slice's sum is added to an f32 total.
 */
function sliceAccumulate(a: Float32Array, b: Float32Array, g: Geometry, p: MatmulF16Params) {
  const { M, N, K, P, sa, sb } = g;
  const out = new Float32Array(P * M * N);
  const f16 = roundToF16, f32 = Math.fround;
  // rows over k: A [M, K] and B [N, K], so the inner loop reads both contiguously
  const At = new Float64Array(M * K), Bt = new Float64Array(N * K);
  for (let z = 0; z < P; z++) {
    for (let m = 0; m < M; m++) {
      for (let k = 0; k < K; k++) At[m * K + k] = a[z * sa + (p.transA ? k * M + m : m * K + k)];
    }
    for (let n = 0; n < N; n++) {
      for (let k = 0; k < K; k++) Bt[n * K + k] = b[z * sb + (p.transB ? n * K + k : k * N + n)];
    }
    for (let m = 0; m < M; m++) {
      const ar = m * K, orow = z * M * N + m * N;
      let n = 0;
      // four outputs at a time: four independent rounding chains
      for (; n + 3 < N; n += 4) {
        const b0 = n * K, b1 = b0 + K, b2 = b1 + K, b3 = b2 + K;
        let c0 = 0, c1 = 0, c2 = 0, c3 = 0;
        for (let k0 = 0; k0 < K; k0 += BK) {
          let h0 = 0, h1 = 0, h2 = 0, h3 = 0;
          const k1 = Math.min(K, k0 + BK);
          for (let k = k0; k < k1; k++) {
            const av = At[ar + k];
            h0 = f16(av * Bt[b0 + k] + h0);
            h1 = f16(av * Bt[b1 + k] + h1);
            h2 = f16(av * Bt[b2 + k] + h2);
            h3 = f16(av * Bt[b3 + k] + h3);
          }
          c0 = f32(c0 + h0), c1 = f32(c1 + h1), c2 = f32(c2 + h2), c3 = f32(c3 + h3);
        }
        out[orow + n] = c0, out[orow + n + 1] = c1, out[orow + n + 2] = c2, out[orow + n + 3] = c3;
      }
      for (; n < N; n++) {
        const br = n * K;
        let c = 0;
        for (let k0 = 0; k0 < K; k0 += BK) {
          let h = 0;
          const k1 = Math.min(K, k0 + BK);
          for (let k = k0; k < k1; k++) h = f16(At[ar + k] * Bt[br + k] + h);
          c = f32(c + h);
        }
        out[orow + n] = c;
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------- op

/** The f16 × f16 → f32 (or f16) matmul op. */
export const MATMUL_F16: OpDef<MatmulF16Params> = {
  name: "matmul_f16",
  f16: true,
  outputs([a, b], p) {
    if (a.dtype === "i32" || b.dtype === "i32") {
      throw new TypeError(`Cannot matmulF16 ${a.dtype} by ${b.dtype}: operands must be f16 or f32`);
    }
    if (p.out !== "f32" && p.out !== "f16") {
      throw new TypeError(`Cannot matmulF16: out must be "f32" or "f16", got ${p.out}`);
    }
    const g = geometry(a.shape, b.shape, p);
    return [{ shape: g.shape, dtype: p.out }];
  },
  cpu([a, b], [out], info, p) {
    // f16 values widened to f32 (exact); f32 operands rounded to f16 first
    const f32 = (x: CpuArray) =>
      Float32Array.from(x instanceof Float16Array ? x : Float16Array.from(x));
    if (p.acc === "f16") {
      const g = geometry(info.inputs[0].shape, info.inputs[1].shape, p);
      const acc = sliceAccumulate(f32(a), f32(b), g, p);
      if (p.round && out instanceof Float32Array) out.set(Float16Array.from(acc));
      else out.set(acc); // f16 out: rounds to nearest even
      return;
    }
    const info32 = {
      inputs: info.inputs.map((t) => ({ shape: t.shape, dtype: "f32" as const })),
      outputs: [{ shape: info.outputs[0].shape, dtype: "f32" as const }],
    };
    const acc = out instanceof Float32Array ? out : new Float32Array(out.length);
    MATMUL.cpu([f32(a), f32(b)], [acc], info32, { transA: p.transA, transB: p.transB });
    if (p.round && acc === out) out.set(Float16Array.from(acc)); // f16 values in f32
    else if (acc !== out) out.set(acc); // f16: round to nearest even
  },
  gpu(info, p) {
    const g = geometry(info.inputs[0].shape, info.inputs[1].shape, p);
    return { kernels: [planKernel(g, p, info)] };
  },
  backward(c, [dyAny]) {
    const a = c.inputs[0] as Tensor, b = c.inputs[1] as Tensor;
    const dy = dyAny as Tensor; // rounded to f16 as the kernel loads it
    const { transA: tA, transB: tB } = c.params;
    // each gradient in its operand's dtype, rounded to f16 values; one summed over broadcast
    // batch axes is summed in f32 first
    const grad = (x: Tensor, y: Tensor, o: { transA: boolean; transB: boolean }, like: Tensor) => {
      const out = like.dtype === "f16" ? "f16" : "f32";
      const acc = c.params.acc;
      const d = matmulF16(x, y, { ...o, out, round: true, acc });
      if (d.rank === like.rank && d.shape.every((n, k) => n === like.shape[k])) return d;
      d.dispose();
      const summed = cast(sumTo(matmulF16(x, y, { ...o, acc }), like.shape), "f16");
      return out === "f16" ? summed : cast(summed, "f32");
    };
    let da: Tensor | null = null, db: Tensor | null = null;
    if (a.requiresGrad) {
      da = tA
        ? grad(b, dy, { transA: tB, transB: true }, a)
        : grad(dy, b, { transA: false, transB: !tB }, a);
    }
    if (b.requiresGrad) {
      db = tB
        ? grad(dy, a, { transA: true, transB: tA }, b)
        : grad(a, dy, { transA: !tA, transB: false }, b);
    }
    return [da, db];
  },
};

/** Options of {@linkcode matmulF16}. */
export interface MatmulF16Options {
  /** Transpose the last two axes of `a` first. */
  transA?: boolean;
  /** Transpose the last two axes of `b` first. */
  transB?: boolean;
  /** Result dtype (default f32). */
  out?: CastDType;
  /** Round an f32 result to f16 values (default false). */
  round?: boolean;
  /** Accumulation (default "f32"; see `MatmulF16Params.acc`). */
  acc?: MatmulF16Accumulate;
}

/**
 * `op(a) · op(b)` with both operands rounded to f16 (f16 tensors as they
 * are, f32 ones as they load), accumulated in f32; an f32 result by default.
 */
export function matmulF16(a: Tensor, b: Tensor, opts: MatmulF16Options = {}): Tensor {
  return apply(MATMUL_F16, [a, b], {
    transA: opts.transA ?? false,
    transB: opts.transB ?? false,
    out: opts.out ?? "f32",
    round: opts.round ?? false,
    ...(opts.acc === "f16" ? { acc: "f16" as const } : {}),
  })[0];
}
