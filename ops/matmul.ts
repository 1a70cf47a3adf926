/**
 * Batched matrix multiply with optionally transposed operands:
 * `out[..., M, N] = op(a)[..., M, K] · op(b)[..., K, N]`, where `op` transposes
 * the last two axes when `transA`/`transB` is set. Batch axes broadcast (a
 * 2-D operand is shared by every batch).
 *
 * The WGSL kernel tiles 64×64 outputs per workgroup of 16×16 threads, each
 * thread accumulating a 4×4 block in registers over 16-wide K slices staged
 * in workgroup memory.
 *
 * @module
 */
import { apply, type Tensor } from "../tensor/tensor.ts";
import { fmtShape, type OpDef, packUniform, type Shape } from "../tensor/types.ts";
import { broadcastShapes } from "./binary.ts";
import { wasmMatmulF32 } from "./_wasm_matmul.ts";
import { sumTo } from "./reduce.ts";

/** Parameters of matmul. */
export interface MatmulParams {
  /** Read `a` as `[..., K, M]` and transpose it. */
  transA: boolean;
  /** Read `b` as `[..., N, K]` and transpose it. */
  transB: boolean;
}

interface Geometry {
  M: number;
  N: number;
  K: number;
  batch: number[];
  /** Batch count. */
  P: number;
  /** Element offset between batches of a (0 when shared). */
  sa: number;
  sb: number;
}

function geometry(as: Shape, bs: Shape, p: MatmulParams): Geometry {
  if (as.length < 2 || bs.length < 2) {
    throw new TypeError(`Cannot matmul ${fmtShape(as)} by ${fmtShape(bs)}: need rank ≥ 2`);
  }
  const [ar, ac] = as.slice(-2), [br, bc] = bs.slice(-2);
  const M = p.transA ? ac : ar, Ka = p.transA ? ar : ac;
  const Kb = p.transB ? bc : br, N = p.transB ? br : bc;
  if (Ka !== Kb) {
    throw new TypeError(
      `Cannot matmul ${fmtShape(as)} by ${fmtShape(bs)}: inner dimensions differ (${Ka} vs ${Kb})`,
    );
  }
  const ab = as.slice(0, -2), bb = bs.slice(0, -2);
  const batch = broadcastShapes(ab, bb, "matmul");
  const P = batch.reduce((x, y) => x * y, 1);
  const pa = ab.reduce((x, y) => x * y, 1), pb = bb.reduce((x, y) => x * y, 1);
  if ((pa !== 1 && pa !== P) || (pb !== 1 && pb !== P)) {
    throw new TypeError(
      `Cannot matmul ${fmtShape(as)} by ${fmtShape(bs)}: batch axes must match or be absent`,
    );
  }
  return { M, N, K: Ka, batch, P, sa: pa === 1 ? 0 : M * Ka, sb: pb === 1 ? 0 : Ka * N };
}

const BM = 64, BN = 64, BK = 16;

function kernel(transA: boolean, transB: boolean): string {
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

/** The matmul op. */
export const MATMUL: OpDef<MatmulParams> = {
  name: "matmul",
  outputs([a, b], p) {
    if (a.dtype === "i32" || b.dtype === "i32") throw new TypeError("Cannot matmul i32 tensors");
    const g = geometry(a.shape, b.shape, p);
    return [{ shape: [...g.batch, g.M, g.N], dtype: a.dtype }];
  },
  cpu([a, b], [out], info, p) {
    const { M, N, K, P, sa, sb } = geometry(info.inputs[0].shape, info.inputs[1].shape, p);
    // f32 runs the WebAssembly SIMD kernel (ops/_wasm_matmul.ts) when it loads; this code is its reference.
    if (
      a instanceof Float32Array && b instanceof Float32Array && out instanceof Float32Array &&
      wasmMatmulF32(a, b, out, { M, N, K, P, sa, sb, transA: p.transA, transB: p.transB })
    ) return;
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
  },
  gpu(info, p) {
    const { M, N, K, P, sa, sb } = geometry(info.inputs[0].shape, info.inputs[1].shape, p);
    if (P > 65535) throw new RangeError(`matmul batch ${P} exceeds 65535`);
    return {
      kernels: [{
        code: kernel(p.transA, p.transB),
        bind: [{ in: 0 }, { in: 1 }, { out: 0 }],
        uniform: packUniform([M, N, K, sa, sb]),
        workgroups: [Math.ceil(N / BN), Math.ceil(M / BM), P],
      }],
    };
  },
  backward(c, [dyAny]) {
    const dy = dyAny as Tensor;
    const a = c.inputs[0] as Tensor, b = c.inputs[1] as Tensor;
    const { transA: tA, transB: tB } = c.params;
    let da: Tensor | null = null, db: Tensor | null = null;
    if (a.requiresGrad) {
      da = tA ? matmul(b, dy, { transA: tB, transB: true }) : matmul(dy, b, { transB: !tB });
      if (da.rank !== a.rank || da.shape.some((d, k) => d !== a.shape[k])) da = sumTo(da, a.shape);
    }
    if (b.requiresGrad) {
      db = tB ? matmul(dy, a, { transA: true, transB: tA }) : matmul(a, dy, { transA: !tA });
      if (db.rank !== b.rank || db.shape.some((d, k) => d !== b.shape[k])) db = sumTo(db, b.shape);
    }
    return [da, db];
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
