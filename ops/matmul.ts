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
    const acc = new Float64Array(N);
    for (let q = 0; q < P; q++) {
      const ab = q * sa, bb = q * sb, ob = q * M * N;
      for (let m = 0; m < M; m++) {
        acc.fill(0);
        for (let k = 0; k < K; k++) {
          const av = p.transA ? a[ab + k * M + m] : a[ab + m * K + k];
          if (p.transB) {
            for (let n = 0; n < N; n++) acc[n] += av * b[bb + n * K + k];
          } else {
            const row = bb + k * N;
            for (let n = 0; n < N; n++) acc[n] += av * b[row + n];
          }
        }
        for (let n = 0; n < N; n++) out[ob + m * N + n] = acc[n];
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
