/**
 * The mixed-precision matmul: f16 operands, f32 accumulation, an f32 (or
 * f16) result. `out[..., M, N] = op(a)[..., M, K] · op(b)[..., K, N]` with
 * the layout rules of `matmul` (ops/matmul.ts): `transA`/`transB` transpose
 * the last two axes, batch axes match or are absent (a 2-D operand is shared).
 *
 * CPU reference: the products of two f16 are exact in f32 and the sum is
 * accumulated in f32, so it widens both operands to f32 and runs the f32
 * matmul (ops/matmul.ts, the WebAssembly kernel when it loads); an f16 result
 * is that f32 result rounded to nearest even (overflow to ±Infinity).
 *
 * WebGPU kernel (needs `shader-f16`): a 64×64 block of `out` per workgroup of
 * 16×16 threads, each thread 4×4 outputs in `vec4<f32>` accumulators; the
 * operands stay f16 in workgroup memory (K-major `vec4<f16>` slices of depth
 * 16: half the bytes of f32 tiles) and are widened to f32 for each FMA.
 * Global loads are `vec4<f16>` along the contiguous axis where it is a
 * multiple of 4, else bounds-checked scalars. Accumulation order differs
 * from the CPU's, so results agree to f32 rounding of the sum.
 *
 * Backward (gradients in the input dtypes, f16): `dy` is rounded to f16 (the
 * loss scale of optim/grad_scaler.ts keeps it clear of underflow; overflow
 * gives ±Infinity, which the scaler detects) and the two gradient products
 * run through this same kernel with an f16 result.
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
  fmtShape,
  type GpuKernel,
  type OpDef,
  packUniform,
  type Shape,
} from "../tensor/types.ts";
import { MATMUL } from "./matmul.ts";
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
}

interface Geometry {
  M: number;
  N: number;
  K: number;
  batch: number[];
  P: number;
  sa: number;
  sb: number;
}

function geometry(as: Shape, bs: Shape, p: MatmulF16Params): Geometry {
  if (as.length < 2 || bs.length < 2) {
    throw new TypeError(`Cannot matmulF16 ${fmtShape(as)} by ${fmtShape(bs)}: need rank ≥ 2`);
  }
  const [a0, a1] = as.slice(-2), [b0, b1] = bs.slice(-2);
  const [M, Ka] = p.transA ? [a1, a0] : [a0, a1];
  const [Kb, N] = p.transB ? [b1, b0] : [b0, b1];
  if (Ka !== Kb) {
    throw new TypeError(
      `Cannot matmulF16 ${fmtShape(as)} by ${
        fmtShape(bs)
      }: inner dimensions differ (${Ka} vs ${Kb})`,
    );
  }
  const ba = as.slice(0, -2), bb = bs.slice(0, -2);
  const pa = ba.reduce((x, y) => x * y, 1), pb = bb.reduce((x, y) => x * y, 1);
  const batch = ba.length >= bb.length ? ba : bb;
  if (ba.length && bb.length && fmtShape(ba) !== fmtShape(bb)) {
    throw new TypeError(
      `Cannot matmulF16 ${fmtShape(as)} by ${fmtShape(bs)}: batch axes must match or be absent`,
    );
  }
  const P = Math.max(pa, pb);
  return { M, N, K: Ka, batch, P, sa: pa === 1 ? 0 : M * Ka, sb: pb === 1 ? 0 : Ka * N };
}

// ---------------------------------------------------------------- WGSL

const BM = 64, BN = 64, BK = 16;

/** Per-call specialisation of the kernel. */
interface F16Spec {
  transA: boolean;
  transB: boolean;
  /** vec4<f16> loads of a (its contiguous axis, K or M, is a multiple of 4). */
  vecA: boolean;
  /** vec4<f16> loads of b (its contiguous axis, N or K, is a multiple of 4). */
  vecB: boolean;
  /** f16 result. */
  outF16: boolean;
}

/**
 * Statements that stage one operand's BK-deep slice in workgroup memory
 * `S` (K-major: `S[k·16 + i/4][i%4]` holds element i of row k). Each of the
 * 256 threads moves 4 elements; `along` is the operand's contiguous axis.
 */
function stage(
  name: "a" | "b",
  S: string,
  contiguousK: boolean,
  vec: boolean,
): string {
  // the element at (i, k) of the slice: i is m (a) or n (b)
  const [I, base, lim] = name === "a" ? ["M", "m0", "u.M"] : ["N", "n0", "u.N"];
  const stride = name === "a" ? "u.sa" : "u.sb";
  const at = (i: string, k: string) =>
    contiguousK
      ? `${stride} * z + (${i}) * u.K + (${k})`
      : `${stride} * z + (${k}) * u.${I} + (${i})`;
  if (contiguousK) {
    // thread reads 4 consecutive k of one row i, scatters them over 4 k-rows of S
    const load = vec
      ? `let v = select(vec4<f16>(), ${name}[(${at("i", "k")}) / 4u], i < ${lim} && k < u.K);`
      : `var v = vec4<f16>();
    for (var j = 0u; j < 4u; j++) {
      if (i < ${lim} && k + j < u.K) { v[j] = ${name}[${at("i", "k + j")}]; }
    }`;
    return `{
    let r = tid / 4u;
    let kq = (tid % 4u) * 4u;
    let i = ${base} + r;
    let k = k0 + kq;
    ${load}
    for (var j = 0u; j < 4u; j++) { ${S}[(kq + j) * 16u + r / 4u][r % 4u] = v[j]; }
  }`;
  }
  // thread reads 4 consecutive i of one k row: one vec4 store
  const load = vec
    ? `let v = select(vec4<f16>(), ${name}[(${at("i", "k")}) / 4u], i < ${lim} && k < u.K);`
    : `var v = vec4<f16>();
    for (var j = 0u; j < 4u; j++) {
      if (i + j < ${lim} && k < u.K) { v[j] = ${name}[${at("i + j", "k")}]; }
    }`;
  return `{
    let kk = tid / 16u;
    let iq = (tid % 16u) * 4u;
    let i = ${base} + iq;
    let k = k0 + kk;
    ${load}
    ${S}[kk * 16u + iq / 4u] = v;
  }`;
}

/** The WGSL of one specialisation. */
export function matmulF16Wgsl(s: F16Spec): string {
  const elA = s.vecA ? "vec4<f16>" : "f16", elB = s.vecB ? "vec4<f16>" : "f16";
  const outT = s.outF16 ? "f16" : "f32";
  const conv = s.outF16 ? "to_f16" : "";
  return `enable f16;
@group(0) @binding(0) var<storage, read> a: array<${elA}>;
@group(0) @binding(1) var<storage, read> b: array<${elB}>;
@group(0) @binding(2) var<storage, read_write> out: array<${outT}>;
struct U { M: u32, N: u32, K: u32, sa: u32, sb: u32 }
@group(0) @binding(3) var<uniform> u: U;
var<workgroup> As: array<vec4<f16>, ${(BK * BM) / 4}>;
var<workgroup> Bs: array<vec4<f16>, ${(BK * BN) / 4}>;
${s.outF16 ? WGSL_TO_F16 : ""}
@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let z = wid.z;
  let m0 = wid.y * ${BM}u;
  let n0 = wid.x * ${BN}u;
  let tx = lid.x;
  let ty = lid.y;
  let tid = ty * 16u + tx;
  var c0 = vec4<f32>();
  var c1 = vec4<f32>();
  var c2 = vec4<f32>();
  var c3 = vec4<f32>();
  for (var k0 = 0u; k0 < u.K; k0 += ${BK}u) {
    ${stage("a", "As", !s.transA, s.vecA)}
    ${stage("b", "Bs", s.transB, s.vecB)}
    workgroupBarrier();
    for (var k = 0u; k < ${BK}u; k++) {
      let av = vec4<f32>(As[k * 16u + ty]);
      let bv = vec4<f32>(Bs[k * 16u + tx]);
      c0 = fma(vec4<f32>(av.x), bv, c0);
      c1 = fma(vec4<f32>(av.y), bv, c1);
      c2 = fma(vec4<f32>(av.z), bv, c2);
      c3 = fma(vec4<f32>(av.w), bv, c3);
    }
    workgroupBarrier();
  }
  var rows = array<vec4<f32>, 4>(c0, c1, c2, c3);
  for (var i = 0u; i < 4u; i++) {
    let m = m0 + ty * 4u + i;
    if (m >= u.M) { break; }
    for (var j = 0u; j < 4u; j++) {
      let n = n0 + tx * 4u + j;
      if (n < u.N) { out[z * u.M * u.N + m * u.N + n] = ${conv}(rows[i][j]); }
    }
  }
}`;
}

const codes = new Map<string, string>();

function planKernel(g: Geometry, p: MatmulF16Params): GpuKernel {
  const { M, N, K, P, sa, sb } = g;
  if (P > 65535) throw new RangeError(`matmulF16 batch ${P} exceeds 65535`);
  const spec: F16Spec = {
    transA: p.transA,
    transB: p.transB,
    vecA: K > 0 && (p.transA ? M : K) % 4 === 0,
    vecB: K > 0 && (p.transB ? K : N) % 4 === 0,
    outF16: p.out === "f16",
  };
  const key = JSON.stringify(spec);
  let code = codes.get(key);
  if (!code) codes.set(key, code = matmulF16Wgsl(spec));
  return {
    code,
    bind: [{ in: 0 }, { in: 1 }, { out: 0 }],
    uniform: packUniform([M, N, K, sa, sb]),
    workgroups: [Math.ceil(N / BN), Math.ceil(M / BM), P],
  };
}

// ---------------------------------------------------------------- op

/** The f16 × f16 → f32 (or f16) matmul op. */
export const MATMUL_F16: OpDef<MatmulF16Params> = {
  name: "matmul_f16",
  f16: true,
  outputs([a, b], p) {
    if (a.dtype !== "f16" || b.dtype !== "f16") {
      throw new TypeError(
        `Cannot matmulF16 ${a.dtype} by ${b.dtype}: both operands must be f16 (use cast())`,
      );
    }
    if (p.out !== "f32" && p.out !== "f16") {
      throw new TypeError(`Cannot matmulF16: out must be "f32" or "f16", got ${p.out}`);
    }
    const g = geometry(a.shape, b.shape, p);
    return [{ shape: [...g.batch, g.M, g.N], dtype: p.out }];
  },
  cpu([a, b], [out], info, p) {
    const f32 = (x: CpuArray) => x instanceof Float32Array ? x : Float32Array.from(x);
    const info32 = {
      inputs: info.inputs.map((t) => ({ shape: t.shape, dtype: "f32" as const })),
      outputs: [{ shape: info.outputs[0].shape, dtype: "f32" as const }],
    };
    const acc = out instanceof Float32Array ? out : new Float32Array(out.length);
    MATMUL.cpu([f32(a), f32(b)], [acc], info32, { transA: p.transA, transB: p.transB });
    if (acc !== out) out.set(acc); // f16: round to nearest even
  },
  gpu(info, p) {
    return { kernels: [planKernel(geometry(info.inputs[0].shape, info.inputs[1].shape, p), p)] };
  },
  backward(c, [dyAny]) {
    const a = c.inputs[0] as Tensor, b = c.inputs[1] as Tensor;
    const { transA: tA, transB: tB } = c.params;
    const dy = cast(dyAny as Tensor, "f16");
    // a gradient that must be summed over broadcast batch axes is summed in f32
    const grad = (x: Tensor, y: Tensor, o: { transA: boolean; transB: boolean }, like: Tensor) => {
      const d = matmulF16(x, y, { ...o, out: "f16" });
      if (d.rank === like.rank && d.shape.every((n, k) => n === like.shape[k])) return d;
      d.dispose();
      const wide = matmulF16(x, y, { ...o, out: "f32" });
      return cast(sumTo(wide, like.shape), "f16");
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
    if (dy !== dyAny) dy.dispose();
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
}

/** `op(a) · op(b)` of two f16 tensors, accumulated in f32; an f32 result by default. */
export function matmulF16(a: Tensor, b: Tensor, opts: MatmulF16Options = {}): Tensor {
  return apply(MATMUL_F16, [a, b], {
    transA: opts.transA ?? false,
    transB: opts.transB ?? false,
    out: opts.out ?? "f32",
  })[0];
}
