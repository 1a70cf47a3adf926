/**
 * Fused scaled-dot-product attention, flash-attention style:
 * `out = dropout(softmax(q·kᵀ·scale masked)) · v` over `q [B, H, T, D]`,
 * `k, v [B, H, S, D]`, with an optional key-padding mask `[B, S]`, a causal
 * mask and attention-probability dropout. The T×S score matrix is never
 * stored: the forward kernel walks the keys with an online softmax (running
 * max and sum) and also writes the row logsumexp `lse [B, H, T]`, which the
 * backward uses to recompute the probabilities.
 *
 * Semantics (the CPU reference below is the spec):
 * - key `s` is allowed for query `t` when `mask[b, s] != 0` and, if causal,
 *   `s <= t + (S − T)` (so T = 1 with a KV cache attends all S keys);
 * - allowed scores are `z = scale·q_t·k_s`; disallowed ones are masked out;
 * - a query row with NO allowed key attends uniformly to all S keys (P = 1/S)
 *   and its `lse` is `log(S)`: this equals PyTorch's
 *   `masked_fill(~allowed, finfo.min)` + softmax (interop/torch/webseq_torch.py),
 *   and its q and k get no gradient from that row (v does);
 * - dropout (training): probability `P[b,h,t,s]` is kept where
 *   `hashU32(seed, ((b·H + h)·T + t)·S + s) >>> 8 >= ceil(p·2²⁴)` (the mask of
 *   ops/dropout.ts applied to the `[B, H, T, S]` probabilities) and scaled by
 *   `1/(1 − p)`; `lse` is taken before dropout.
 * - allowed scores must be above −1e29 (the kernels start the running max at
 *   −1e30).
 *
 * Backward (`ATTENTION_BACKWARD`, its own op): `Δ_t = Σ_d dO·O − dlse`, then
 * `P = exp(z − lse)`, `dV = (P∘Z)ᵀ dO`, `dS = P∘(Z∘(dO vᵀ) − Δ)` on allowed
 * entries, `dQ = scale·dS K`, `dK = scale·dSᵀ Q`. On the GPU: one kernel for
 * Δ (and the "row fully masked" flag), one with a thread per key row writing
 * dK and dV, one with a thread per query row writing dQ — no atomics, so the
 * result is deterministic.
 *
 * Kernels: one thread per row, rows in registers (vec4 when D % 4 == 0),
 * the other side streamed from storage as broadcast loads; no workgroup
 * memory (see the WGSL section for why). Any D up to {@linkcode ATTENTION_MAX_D}
 * works on the GPU; registers grow with D (≈ 4·D floats per thread in the
 * dK/dV kernel).
 *
 * @example
 * ```ts
 * import { full } from "../tensor/tensor.ts";
 * import { attention } from "./attention.ts";
 * const q = full([2, 4, 5, 16], 0.1), k = full([2, 4, 7, 16], 0.2), v = full([2, 4, 7, 16], 3);
 * const out = attention(q, k, v, { causal: true }); // [2, 4, 5, 16], all 3
 * ```
 *
 * @module
 */
import { apply, type Tensor, zeros } from "../tensor/tensor.ts";
import { hashU32, WGSL_HASH } from "../tensor/rng.ts";
import {
  type CpuArray,
  fmtShape,
  type GpuKernel,
  type GpuPlan,
  type OpDef,
  packUniform,
  type Shape,
  type TensorInfo,
} from "../tensor/types.ts";
import { grid1d, LINEAR_INDEX, MAIN_1D } from "./_wgsl.ts";
import type { OpCase, OpEntry } from "./registry.ts";
import { wasmMatmulF32 } from "./_wasm_matmul.ts";

/** Parameters of {@linkcode ATTENTION}. */
export interface AttentionParams {
  /** Whether input 3 is a key mask `[B, S]`. */
  hasMask: boolean;
  /** Query t attends keys s ≤ t + (S − T). */
  causal: boolean;
  /** Score scale (usually 1/√D). */
  scale: number;
  /** Attention dropout probability in [0, 1] (0: none). */
  dropoutP: number;
  /** Dropout seed (u32). */
  seed: number;
}

/** Parameters of {@linkcode ATTENTION_BACKWARD}. */
export interface AttentionBackwardParams extends AttentionParams {
  /** Whether the last input is the gradient of `lse` `[B, H, T]`. */
  hasDLse: boolean;
}

/** Options of {@linkcode attention}. */
export interface AttentionOptions {
  /** f32 `[B, S]`: 1 = real key, 0 = padding (masked out). */
  keyMask?: Tensor;
  /** Query t may attend keys s ≤ t + (S − T) (with a KV cache, T = 1 attends all S). */
  causal?: boolean;
  /** Score scale; default 1/√D. */
  scale?: number;
  /** Attention-probability dropout (training only). */
  dropout?: { p: number; seed: number };
}

/** Largest head size the WGSL kernels accept. */
export const ATTENTION_MAX_D = 256;

interface Geometry {
  B: number;
  H: number;
  T: number;
  S: number;
  D: number;
}

function geometry(inputs: TensorInfo[], hasMask: boolean, what: string): Geometry {
  const [q, k, v] = inputs;
  const bad = (why: string): never => {
    throw new TypeError(
      `Cannot ${what} q ${fmtShape(q.shape)}, k ${fmtShape(k.shape)}, v ${
        fmtShape(v.shape)
      }: ${why}`,
    );
  };
  if (q.shape.length !== 4 || k.shape.length !== 4 || v.shape.length !== 4) {
    bad("need rank 4 [B, H, T, D]");
  }
  const [B, H, T, D] = q.shape;
  const S = k.shape[2];
  if (k.shape[0] !== B || k.shape[1] !== H || k.shape[3] !== D) bad("k must be [B, H, S, D]");
  if (v.shape.some((d, i) => d !== k.shape[i])) bad("v must have k's shape");
  if (S < 1) bad("need at least one key");
  for (const t of [q, k, v]) if (t.dtype === "i32") bad("need float tensors");
  if (hasMask) {
    const m = inputs[3];
    if (!m || m.shape.length !== 2 || m.shape[0] !== B || m.shape[1] !== S) {
      bad(`keyMask must be [${B}, ${S}], got ${m ? fmtShape(m.shape) : "none"}`);
    }
  }
  return { B, H, T, S, D };
}

function checkParams(p: AttentionParams, what: string): void {
  if (!(p.dropoutP >= 0 && p.dropoutP <= 1)) {
    throw new RangeError(`${what}: dropout p must be in [0, 1], got ${p.dropoutP}`);
  }
  if (!Number.isInteger(p.seed)) {
    throw new TypeError(`${what}: seed must be an integer, got ${p.seed}`);
  }
  if (!Number.isFinite(p.scale)) {
    throw new RangeError(`${what}: scale must be finite, got ${p.scale}`);
  }
}

/** Keep threshold on the 24-bit hash, as in ops/dropout.ts. */
function threshold(p: number): number {
  return Math.ceil(p * 16777216);
}

function keepScale(p: number): number {
  return p < 1 ? 1 / (1 - p) : 0;
}

// ---------------------------------------------------------------- CPU reference

/** Per-row helper of the CPU reference: scores, allowed flags, dropout multipliers. */
class RowContext {
  readonly z: Float64Array;
  readonly ok: Uint8Array;
  readonly zm: Float64Array;
  constructor(readonly g: Geometry, readonly p: AttentionParams) {
    this.z = new Float64Array(g.S);
    this.ok = new Uint8Array(g.S);
    this.zm = new Float64Array(g.S).fill(1);
  }

  /** Fills z/ok/zm for row (bh, t); returns whether any key is allowed. */
  fill(q: CpuArray, k: CpuArray, mask: CpuArray | null, bh: number, t: number): boolean {
    const { H, T, S, D } = this.g, p = this.p;
    const b = Math.floor(bh / H), lim = p.causal ? t + S - T : S - 1;
    const qo = (bh * T + t) * D;
    let any = false;
    for (let s = 0; s < S; s++) {
      const ok = s <= lim && (mask === null || mask[b * S + s] !== 0);
      this.ok[s] = ok ? 1 : 0;
      if (ok) {
        any = true;
        const ko = (bh * S + s) * D;
        let dot = 0;
        for (let d = 0; d < D; d++) dot += q[qo + d] * k[ko + d];
        this.z[s] = dot * p.scale;
      }
    }
    if (p.dropoutP > 0) {
      const thr = threshold(p.dropoutP), ks = keepScale(p.dropoutP), seed = p.seed >>> 0;
      const row = (bh * T + t) * S;
      for (let s = 0; s < S; s++) this.zm[s] = hashU32(seed, row + s) >>> 8 >= thr ? ks : 0;
    }
    return any;
  }
}

function attentionCpu(
  [q, k, v, maskIn]: CpuArray[],
  [out, lse]: CpuArray[],
  g: Geometry,
  p: AttentionParams,
): void {
  const { H, T, S, D } = g, mask = p.hasMask ? maskIn : null;
  const row = new RowContext(g, p), prob = new Float64Array(S), acc = new Float64Array(D);
  for (let bh = 0; bh < g.B * H; bh++) {
    for (let t = 0; t < T; t++) {
      if (row.fill(q, k, mask, bh, t)) {
        let m = -Infinity;
        for (let s = 0; s < S; s++) if (row.ok[s] && row.z[s] > m) m = row.z[s];
        let sum = 0;
        for (let s = 0; s < S; s++) sum += prob[s] = row.ok[s] ? Math.exp(row.z[s] - m) : 0;
        for (let s = 0; s < S; s++) prob[s] /= sum;
        lse[bh * T + t] = m + Math.log(sum);
      } else {
        prob.fill(1 / S); // fully masked row: uniform over all keys
        lse[bh * T + t] = Math.log(S);
      }
      acc.fill(0);
      for (let s = 0; s < S; s++) {
        const w = prob[s] * row.zm[s];
        if (w === 0) continue;
        const vo = (bh * S + s) * D;
        for (let d = 0; d < D; d++) acc[d] += w * v[vo + d];
      }
      out.set(acc, (bh * T + t) * D);
    }
  }
}

function attentionBackwardCpu(
  ins: CpuArray[],
  [dq, dk, dv]: CpuArray[],
  g: Geometry,
  p: AttentionBackwardParams,
): void {
  const [q, k, v, o, lse, dO] = ins;
  const mask = p.hasMask ? ins[6] : null;
  const dlse = p.hasDLse ? ins[p.hasMask ? 7 : 6] : null;
  const { H, T, S, D } = g;
  const row = new RowContext(g, p), dqRow = new Float64Array(D);
  const dkAcc = new Float64Array(S * D), dvAcc = new Float64Array(S * D);
  for (let bh = 0; bh < g.B * H; bh++) {
    dkAcc.fill(0);
    dvAcc.fill(0);
    for (let t = 0; t < T; t++) {
      const r = bh * T + t, qo = r * D;
      let delta = dlse ? -dlse[r] : 0;
      for (let d = 0; d < D; d++) delta += dO[qo + d] * o[qo + d];
      const any = row.fill(q, k, mask, bh, t);
      dqRow.fill(0);
      for (let s = 0; s < S; s++) {
        const so = (bh * S + s) * D, zm = row.zm[s];
        if (!row.ok[s]) {
          if (!any && zm !== 0) {
            const w = zm / S;
            for (let d = 0; d < D; d++) dvAcc[s * D + d] += w * dO[qo + d];
          }
          continue;
        }
        const prob = Math.exp(row.z[s] - lse[r]);
        let dpv = 0;
        for (let d = 0; d < D; d++) {
          dvAcc[s * D + d] += prob * zm * dO[qo + d];
          dpv += dO[qo + d] * v[so + d];
        }
        const ds = prob * (dpv * zm - delta) * p.scale;
        for (let d = 0; d < D; d++) {
          dqRow[d] += ds * k[so + d];
          dkAcc[s * D + d] += ds * q[qo + d];
        }
      }
      dq.set(dqRow, qo);
    }
    dk.set(dkAcc, bh * S * D);
    dv.set(dvAcc, bh * S * D);
  }
}

// ---------------------------------------------------------------- CPU fast path (f32)

/**
 * The f32 CPU path: the same arithmetic as the reference above, but the four
 * products (Q·Kᵀ, P·V and, backward, dO·Vᵀ, dSᵀ·Q, dS·K, (P∘Z)ᵀ·dO) go through
 * the WebAssembly SIMD matmul over all B·H heads at once, materialising the
 * [T, S] scores per head (fine on a CPU). Returns false when the kernel is
 * unavailable; the caller then runs the reference. Tested against the
 * reference in ops/attention_test.ts.
 */
function isF32(...xs: (CpuArray | undefined | null)[]): boolean {
  return xs.every((x) => x === undefined || x === null || x instanceof Float32Array);
}

/** Fills `prob` (f32 [BH·T·S]) with softmax(z·scale + mask) and `lse`; fully masked rows are uniform. */
function softmaxRows(
  z: Float32Array,
  mask: CpuArray | null,
  lseIn: CpuArray | null,
  lseOut: CpuArray | null,
  g: Geometry,
  p: AttentionParams,
  prob: Float32Array,
  allowedAny: Uint8Array,
): void {
  const { H, T, S } = g, BH = g.B * H;
  for (let bh = 0; bh < BH; bh++) {
    const b = Math.floor(bh / H);
    for (let t = 0; t < T; t++) {
      const r = bh * T + t, base = r * S, lim = p.causal ? t + S - T : S - 1;
      let m = -Infinity;
      for (let s = 0; s < S; s++) {
        if (s <= lim && (mask === null || mask[b * S + s] !== 0)) {
          const x = z[base + s] * p.scale;
          z[base + s] = x;
          if (x > m) m = x;
        } else {
          z[base + s] = -Infinity;
        }
      }
      if (m === -Infinity) {
        allowedAny[r] = 0;
        prob.fill(1 / S, base, base + S);
        if (lseOut) lseOut[r] = Math.log(S);
        continue;
      }
      allowedAny[r] = 1;
      if (lseIn) {
        const l = lseIn[r];
        for (let s = 0; s < S; s++) prob[base + s] = Math.exp(z[base + s] - l);
      } else {
        let sum = 0;
        for (let s = 0; s < S; s++) sum += prob[base + s] = Math.exp(z[base + s] - m);
        for (let s = 0; s < S; s++) prob[base + s] /= sum;
        if (lseOut) lseOut[r] = m + Math.log(sum);
      }
    }
  }
}

/** Multiplies `x` [BH·T·S] by the dropout keep-scale mask (in place). */
function applyDropout(x: Float32Array, p: AttentionParams): void {
  if (!(p.dropoutP > 0)) return;
  const thr = threshold(p.dropoutP), ks = keepScale(p.dropoutP), seed = p.seed >>> 0;
  for (let i = 0; i < x.length; i++) x[i] *= hashU32(seed, i) >>> 8 >= thr ? ks : 0;
}

/** Geometry of one per-head product (batches are the B·H heads). */
interface HeadsGeometry {
  M: number;
  N: number;
  K: number;
  sa: number;
  sb: number;
  transA?: boolean;
  transB?: boolean;
}

/** `out = op(a)·op(b)` over BH heads with the WebAssembly kernel; false when it is unavailable. */
function headsMatmul(
  BH: number,
): (a: Float32Array, b: Float32Array, out: Float32Array, geo: HeadsGeometry) => boolean {
  return (a, b, out, geo) =>
    wasmMatmulF32(a, b, out, { P: BH, transA: false, transB: false, ...geo });
}

function attentionFastF32(
  ins: CpuArray[],
  outs: CpuArray[],
  g: Geometry,
  p: AttentionParams,
): boolean {
  const [q, k, v, maskIn] = ins;
  const [out, lse] = outs;
  const mask = p.hasMask ? maskIn : null;
  if (!isF32(q, k, v, out, lse) || g.T === 0) return false;
  const { T, S, D } = g, BH = g.B * g.H;
  const z = new Float32Array(BH * T * S);
  const mm = headsMatmul(BH);
  const qf = q as Float32Array, kf = k as Float32Array, vf = v as Float32Array;
  if (!mm(qf, kf, z, { M: T, N: S, K: D, sa: T * D, sb: S * D, transB: true })) return false;
  const prob = new Float32Array(BH * T * S);
  softmaxRows(z, mask, null, lse, g, p, prob, new Uint8Array(BH * T));
  applyDropout(prob, p);
  return mm(prob, vf, out as Float32Array, { M: T, N: D, K: S, sa: T * S, sb: S * D });
}

function attentionBackwardFastF32(
  ins: CpuArray[],
  outs: CpuArray[],
  g: Geometry,
  p: AttentionBackwardParams,
): boolean {
  const [q, k, v, o, lse, dO] = ins;
  const mask = p.hasMask ? ins[6] : null;
  const dlse = p.hasDLse ? ins[p.hasMask ? 7 : 6] : null;
  const [dq, dk, dv] = outs;
  if (!isF32(q, k, v, o, dO, dq, dk, dv) || g.T === 0) return false;
  const { T, S, D } = g, BH = g.B * g.H, n = BH * T * S;
  const mm = headsMatmul(BH);
  const qf = q as Float32Array, kf = k as Float32Array, vf = v as Float32Array;
  const dOf = dO as Float32Array;
  const z = new Float32Array(n), prob = new Float32Array(n), any = new Uint8Array(BH * T);
  if (!mm(qf, kf, z, { M: T, N: S, K: D, sa: T * D, sb: S * D, transB: true })) return false;
  softmaxRows(z, mask, lse, null, g, p, prob, any);
  // dP = dO · Vᵀ, then dS = P ∘ (dP ∘ Z − Δ) · scale on allowed keys, 0 elsewhere
  const dP = new Float32Array(n);
  mm(dOf, vf, dP, { M: T, N: S, K: D, sa: T * D, sb: S * D, transB: true });
  const zm = new Float32Array(n).fill(1);
  applyDropout(zm, p);
  const pz = new Float32Array(n);
  for (let r = 0; r < BH * T; r++) {
    let delta = dlse ? -dlse[r] : 0;
    for (let d = 0; d < D; d++) delta += dOf[r * D + d] * o[r * D + d];
    const base = r * S;
    for (let s = 0; s < S; s++) {
      const i = base + s;
      pz[i] = prob[i] * zm[i];
      dP[i] = any[r] && z[i] !== -Infinity ? prob[i] * (dP[i] * zm[i] - delta) * p.scale : 0;
    }
  }
  const dS = dP;
  mm(pz, dOf, dv as Float32Array, { M: S, N: D, K: T, sa: T * S, sb: T * D, transA: true });
  mm(dS, kf, dq as Float32Array, { M: T, N: D, K: S, sa: T * S, sb: S * D });
  mm(dS, qf, dk as Float32Array, { M: S, N: D, K: T, sa: T * S, sb: T * D, transA: true });
  return true;
}

// ---------------------------------------------------------------- WGSL
//
// One thread per query row (forward, Δ, dQ) or per key row (dK, dV), looping
// over the other side's rows read straight from storage. Neighbouring
// threads read the same k/v (or q/dO) row at the same time, so the loads are
// broadcasts that the caches serve; no workgroup memory and no barriers.
// (Mesa llvmpipe's compile time grows about quadratically with a kernel's
// workgroup memory — zero-initialisation code — which made tiled kernels take
// 25–40 s to compile there; these compile in 0.1–3 s.) Rows are read as vec4
// when D % 4 == 0.

/** Threads per workgroup. */
const WG_ROWS = 64;

interface Variant {
  D: number;
  mask: "f32" | "i32" | null;
  causal: boolean;
  dropout: boolean;
}

/** Row layout: W floats per element (4: vec4), NV elements per row. */
function layout(D: number): { W: number; NV: number; VT: string } {
  const W = D % 4 === 0 ? 4 : 1;
  return { W, NV: D / W, VT: W === 4 ? "vec4f" : "f32" };
}

/** `n` lines from `f(j)`. */
function each(n: number, f: (j: number) => string, sep = "\n    "): string {
  return Array.from({ length: n }, (_, j) => f(j)).join(sep);
}

/** `Σ_j a_j·b_j` as WGSL statements accumulating into `acc`. */
function dotInto(
  acc: string,
  n: number,
  w: number,
  a: (j: number) => string,
  b: (j: number) => string,
  sep = "\n    ",
): string {
  return each(
    n,
    (j) => w === 4 ? `${acc} += dot(${a(j)}, ${b(j)});` : `${acc} = fma(${a(j)}, ${b(j)}, ${acc});`,
    sep,
  );
}

const UNIFORM =
  `struct U { BH: u32, H: u32, T: u32, S: u32, seed: u32, thr: u32, scale: f32, keep_scale: f32 }`;

type Buf = [name: string, access: "read" | "read_write", type: string];

function header(bufs: Buf[]): string {
  return bufs.map(([name, access, ty], i) =>
    `@group(0) @binding(${i}) var<storage, ${access}> ${name}: array<${ty}>;`
  ).join("\n") + `\n${UNIFORM}\n@group(0) @binding(${bufs.length}) var<uniform> u: U;\n`;
}

/** Shared helpers: key_on (padding mask), the causal key bound, the dropout multiplier. */
function common(v: Variant): string {
  return `
const MASKED: f32 = -1e30;
fn key_on(b: u32, s: u32) -> bool {
  return ${v.mask ? `mask[b * u.S + s] != ${v.mask === "i32" ? "0" : "0.0"}` : "true"};
}
// keys [0, key_end(t)) may be attended by query t
fn key_end(t: u32) -> u32 {
  return ${v.causal ? "u32(clamp(i32(t) + i32(u.S) - i32(u.T) + 1, 0, i32(u.S)))" : "u.S"};
}
${v.dropout ? WGSL_HASH : ""}
fn zmul(bh: u32, t: u32, s: u32) -> f32 {
  ${
    v.dropout
      ? "return select(0.0, u.keep_scale, (hash_u32(u.seed, (bh * u.T + t) * u.S + s) >> 8u) >= u.thr);"
      : "return 1.0;"
  }
}
`;
}

const ROW_ENTRY = (n: string) =>
  `${MAIN_1D(WG_ROWS)} {
  ${LINEAR_INDEX(WG_ROWS)}
  if (i >= ${n}) { return; }`;

function forwardKernel(v: Variant): string {
  const { W, NV, VT } = layout(v.D);
  const bufs: Buf[] = [["q", "read", VT], ["k", "read", VT], ["v", "read", VT]];
  if (v.mask) bufs.push(["mask", "read", v.mask]);
  bufs.push(["out", "read_write", VT], ["lse", "read_write", "f32"]);
  return header(bufs) + common(v) + `
${ROW_ENTRY("u.BH * u.T")}
  let bh = i / u.T;
  let t = i % u.T;
  let b = bh / u.H;
  let qo = i * ${NV}u;
  let kb = bh * u.S * ${NV}u;
  ${each(NV, (j) => `let q${j} = q[qo + ${j}u] * u.scale;`, "\n  ")}
  ${each(NV, (j) => `var o${j} = ${VT}(0.0);`, "\n  ")}
  var m = MASKED;
  var l = 0.0;
  for (var s = 0u; s < key_end(t); s++) {
    if (!key_on(b, s)) { continue; }
    let ko = kb + s * ${NV}u;
    var z = 0.0;
    ${dotInto("z", NV, W, (j) => `q${j}`, (j) => `k[ko + ${j}u]`)}
    if (z > m) {
      // online softmax: a new running max rescales the sum and the output
      let al = exp(m - z);
      l *= al;
      ${each(NV, (j) => `o${j} *= al;`, "\n      ")}
      m = z;
    }
    let p = exp(z - m);
    l += p;
    let pz = p * zmul(bh, t, s);
    ${each(NV, (j) => `o${j} += pz * v[ko + ${j}u];`)}
  }
  var L = 0.0;
  if (m == MASKED) {
    // no allowed key: uniform attention over all S keys
    for (var s = 0u; s < u.S; s++) {
      let ko = kb + s * ${NV}u;
      let w = zmul(bh, t, s);
      ${each(NV, (j) => `o${j} += w * v[ko + ${j}u];`, "\n      ")}
    }
    l = f32(u.S);
    L = log(l);
  } else {
    L = m + log(l);
  }
  let inv = 1.0 / l;
  ${each(NV, (j) => `out[qo + ${j}u] = o${j} * inv;`, "\n  ")}
  lse[i] = L;
}
`;
}

/** Δ = rowsum(dO∘O) − dlse and the fully-masked flag, per row: info[2r], info[2r + 1]. */
function deltaKernel(v: Variant, hasDLse: boolean): string {
  const { W, NV, VT } = layout(v.D);
  const bufs: Buf[] = [["o", "read", VT], ["dO", "read", VT]];
  if (v.mask) bufs.push(["mask", "read", v.mask]);
  if (hasDLse) bufs.push(["dlse", "read", "f32"]);
  bufs.push(["info", "read_write", "f32"]);
  return header(bufs) + common(v) + `
${ROW_ENTRY("u.BH * u.T")}
  let t = i % u.T;
  let b = (i / u.T) / u.H;
  var acc = 0.0;
  for (var j = 0u; j < ${NV}u; j++) {
    ${
    W === 4
      ? "acc += dot(dO[i * " + NV + "u + j], o[i * " + NV + "u + j]);"
      : `acc = fma(dO[i * ${NV}u + j], o[i * ${NV}u + j], acc);`
  }
  }
  ${hasDLse ? "acc -= dlse[i];" : ""}
  var seen = false;
  for (var s = 0u; s < key_end(t); s++) {
    if (key_on(b, s)) { seen = true; break; }
  }
  info[2u * i] = acc;
  info[2u * i + 1u] = select(1.0, 0.0, seen);
}
`;
}

function backwardBufs(v: Variant): Buf[] {
  const { VT } = layout(v.D);
  const bufs: Buf[] = [
    ["q", "read", VT],
    ["k", "read", VT],
    ["v", "read", VT],
    ["lse", "read", "f32"],
    ["dO", "read", VT],
  ];
  if (v.mask) bufs.push(["mask", "read", v.mask]);
  bufs.push(["info", "read", "f32"]);
  return bufs;
}

/** dQ: one thread per query row. */
function dqKernel(v: Variant): string {
  const { W, NV, VT } = layout(v.D);
  const bufs = backwardBufs(v);
  bufs.push(["dq", "read_write", VT]);
  return header(bufs) + common(v) + `
${ROW_ENTRY("u.BH * u.T")}
  let bh = i / u.T;
  let t = i % u.T;
  let b = bh / u.H;
  let qo = i * ${NV}u;
  let kb = bh * u.S * ${NV}u;
  let L = lse[i];
  let delta = info[2u * i];
  ${each(NV, (j) => `let q${j} = q[qo + ${j}u] * u.scale;`, "\n  ")}
  ${each(NV, (j) => `let g${j} = dO[qo + ${j}u];`, "\n  ")}
  ${each(NV, (j) => `var dq${j} = ${VT}(0.0);`, "\n  ")}
  for (var s = 0u; s < key_end(t); s++) {
    if (!key_on(b, s)) { continue; }
    let ko = kb + s * ${NV}u;
    var z = 0.0;
    ${dotInto("z", NV, W, (j) => `q${j}`, (j) => `k[ko + ${j}u]`)}
    var dp = 0.0;
    ${dotInto("dp", NV, W, (j) => `g${j}`, (j) => `v[ko + ${j}u]`)}
    let ds = exp(z - L) * (dp * zmul(bh, t, s) - delta) * u.scale;
    ${each(NV, (j) => `dq${j} += ds * k[ko + ${j}u];`)}
  }
  ${each(NV, (j) => `dq[qo + ${j}u] = dq${j};`, "\n  ")}
}
`;
}

/** dK and dV: one thread per key row. */
function dkvKernel(v: Variant): string {
  const { W, NV, VT } = layout(v.D);
  const bufs = backwardBufs(v);
  bufs.push(["dk", "read_write", VT], ["dv", "read_write", VT]);
  const anyMasking = v.mask !== null || v.causal;
  return header(bufs) + common(v) + `
${ROW_ENTRY("u.BH * u.S")}
  let bh = i / u.S;
  let s = i % u.S;
  let b = bh / u.H;
  let ko = i * ${NV}u;
  let on = key_on(b, s);
  ${each(NV, (j) => `let k${j} = k[ko + ${j}u] * u.scale;`, "\n  ")}
  ${each(NV, (j) => `let v${j} = v[ko + ${j}u];`, "\n  ")}
  ${each(NV, (j) => `var dk${j} = ${VT}(0.0);`, "\n  ")}
  ${each(NV, (j) => `var dv${j} = ${VT}(0.0);`, "\n  ")}
  for (var t = 0u; t < u.T; t++) {
    let r = bh * u.T + t;
    let qo = r * ${NV}u;
    var pz = 0.0; // P∘Z of (t, s)
    var ds = 0.0; // dS of (t, s)
    if (on && s < key_end(t)) {
      var z = 0.0;
      ${dotInto("z", NV, W, (j) => `k${j}`, (j) => `q[qo + ${j}u]`, "\n      ")}
      var dp = 0.0;
      ${dotInto("dp", NV, W, (j) => `v${j}`, (j) => `dO[qo + ${j}u]`, "\n      ")}
      let p = exp(z - lse[r]);
      let zm = zmul(bh, t, s);
      ds = p * (dp * zm - info[2u * r]) * u.scale;
      pz = p * zm;
    }${
    anyMasking
      ? ` else if (info[2u * r + 1u] != 0.0) {
      pz = zmul(bh, t, s) / f32(u.S); // a fully masked row attends uniformly
    }`
      : ""
  }
    if (pz != 0.0 || ds != 0.0) {
      ${each(NV, (j) => `dv${j} += pz * dO[qo + ${j}u];`, "\n      ")}
      ${each(NV, (j) => `dk${j} += ds * q[qo + ${j}u];`, "\n      ")}
    }
  }
  ${each(NV, (j) => `dk[ko + ${j}u] = dk${j};`, "\n  ")}
  ${each(NV, (j) => `dv[ko + ${j}u] = dv${j};`, "\n  ")}
}
`;
}

function variantOf(inputs: TensorInfo[], g: Geometry, p: AttentionParams, maskAt: number): Variant {
  if (g.D > ATTENTION_MAX_D) {
    throw new RangeError(
      `attention: head size D = ${g.D} exceeds the GPU limit ${ATTENTION_MAX_D}`,
    );
  }
  return {
    D: g.D,
    mask: p.hasMask ? (inputs[maskAt].dtype === "i32" ? "i32" : "f32") : null,
    causal: p.causal,
    dropout: p.dropoutP > 0,
  };
}

function uniform(g: Geometry, p: AttentionParams): ArrayBuffer {
  return packUniform(
    [g.B * g.H, g.H, g.T, g.S, p.seed >>> 0, threshold(p.dropoutP)],
    [p.scale, keepScale(p.dropoutP)],
  );
}

// ---------------------------------------------------------------- ops

/**
 * The attention op: inputs `[q, k, v]` or `[q, k, v, keyMask]`, outputs
 * `[out [B, H, T, D], lse [B, H, T]]`.
 */
export const ATTENTION: OpDef<AttentionParams> = {
  name: "attention",
  outputs(inputs, p) {
    checkParams(p, "attention");
    if (inputs.length !== (p.hasMask ? 4 : 3)) {
      throw new TypeError(`attention: expected ${p.hasMask ? 4 : 3} inputs, got ${inputs.length}`);
    }
    const { B, H, T, D } = geometry(inputs, p.hasMask, "attention");
    const dtype = inputs[0].dtype;
    return [{ shape: [B, H, T, D], dtype }, { shape: [B, H, T], dtype }];
  },
  cpu(ins, outs, info, p) {
    const g = geometry(info.inputs, p.hasMask, "attention");
    if (!attentionFastF32(ins, outs, g, p)) attentionCpu(ins, outs, g, p);
  },
  gpu(info, p): GpuPlan {
    const g = geometry(info.inputs, p.hasMask, "attention");
    const v = variantOf(info.inputs, g, p, 3);
    const bind: GpuKernel["bind"] = [{ in: 0 }, { in: 1 }, { in: 2 }];
    if (p.hasMask) bind.push({ in: 3 });
    bind.push({ out: 0 }, { out: 1 });
    return {
      kernels: [{
        code: forwardKernel(v),
        bind,
        uniform: uniform(g, p),
        workgroups: grid1d(g.B * g.H * g.T, WG_ROWS),
      }],
    };
  },
  backward(ctx, [dOut, dLse]) {
    const p = ctx.params;
    const [q, k, v] = ctx.inputs as Tensor[];
    const mask = p.hasMask ? ctx.inputs[3] as Tensor : null;
    let [o, lse] = ctx.outputs as Tensor[];
    const made: Tensor[] = [];
    if (o.disposed || lse.disposed) {
      // the saved outputs were freed (e.g. by a scope): recompute them
      [o, lse] = apply(ATTENTION, ctx.inputs as Tensor[], p);
      made.push(o, lse);
    }
    let dO = dOut as Tensor | null;
    if (!dO) {
      dO = zeros(o.shape, { dtype: o.dtype, backend: o.backend });
      made.push(dO);
    }
    const ins = [q, k, v, o, lse, dO];
    if (mask) ins.push(mask);
    if (dLse) ins.push(dLse as Tensor);
    const [dq, dk, dv] = apply(ATTENTION_BACKWARD, ins, { ...p, hasDLse: dLse !== null });
    for (const t of made) t.dispose();
    return [dq, dk, dv, null];
  },
};

/**
 * The fused attention backward: inputs `[q, k, v, out, lse, dOut, keyMask?,
 * dLse?]`, outputs `[dq, dk, dv]`.
 */
export const ATTENTION_BACKWARD: OpDef<AttentionBackwardParams> = {
  name: "attention_backward",
  outputs(inputs, p) {
    checkParams(p, "attention_backward");
    const n = 6 + (p.hasMask ? 1 : 0) + (p.hasDLse ? 1 : 0);
    if (inputs.length !== n) {
      throw new TypeError(`attention_backward: expected ${n} inputs, got ${inputs.length}`);
    }
    const base = [inputs[0], inputs[1], inputs[2]];
    if (p.hasMask) base.push(inputs[6]);
    const { B, H, T, D } = geometry(base, p.hasMask, "attention_backward");
    const rowShape: Shape = [B, H, T];
    const same = (t: TensorInfo, s: Shape) =>
      t.shape.length === s.length && t.shape.every((d, i) => d === s[i]);
    if (!same(inputs[3], [B, H, T, D]) || !same(inputs[5], [B, H, T, D])) {
      throw new TypeError(
        `attention_backward: out and dOut must be ${fmtShape([B, H, T, D])}, got ${
          fmtShape(inputs[3].shape)
        } and ${fmtShape(inputs[5].shape)}`,
      );
    }
    if (!same(inputs[4], rowShape) || (p.hasDLse && !same(inputs[n - 1], rowShape))) {
      throw new TypeError(`attention_backward: lse and dLse must be ${fmtShape(rowShape)}`);
    }
    return [0, 1, 2].map((i) => ({ shape: inputs[i].shape, dtype: inputs[i].dtype }));
  },
  cpu(ins, outs, info, p) {
    const base = [info.inputs[0], info.inputs[1], info.inputs[2]];
    if (p.hasMask) base.push(info.inputs[6]);
    const g = geometry(base, p.hasMask, "attention_backward");
    if (!attentionBackwardFastF32(ins, outs, g, p)) attentionBackwardCpu(ins, outs, g, p);
  },
  gpu(info, p): GpuPlan {
    const base = [info.inputs[0], info.inputs[1], info.inputs[2]];
    if (p.hasMask) base.push(info.inputs[6]);
    const g = geometry(base, p.hasMask, "attention_backward");
    const v = variantOf(info.inputs, g, p, 6);
    const u = uniform(g, p);
    const maskBind: GpuKernel["bind"] = p.hasMask ? [{ in: 6 }] : [];
    const deltaBind: GpuKernel["bind"] = [{ in: 3 }, { in: 5 }, ...maskBind];
    if (p.hasDLse) deltaBind.push({ in: p.hasMask ? 7 : 6 });
    deltaBind.push({ tmp: 0 });
    const common: GpuKernel["bind"] = [
      { in: 0 },
      { in: 1 },
      { in: 2 },
      { in: 4 },
      { in: 5 },
      ...maskBind,
      {
        tmp: 0,
      },
    ];
    const BH = g.B * g.H;
    return {
      temps: [BH * g.T * 2 * 4],
      kernels: [
        {
          code: deltaKernel(v, p.hasDLse),
          bind: deltaBind,
          uniform: u,
          workgroups: grid1d(BH * g.T, WG_ROWS),
        },
        {
          code: dkvKernel(v),
          bind: [...common, { out: 1 }, { out: 2 }],
          uniform: u,
          workgroups: grid1d(BH * g.S, WG_ROWS),
        },
        {
          code: dqKernel(v),
          bind: [...common, { out: 0 }],
          uniform: u,
          workgroups: grid1d(BH * g.T, WG_ROWS),
        },
      ],
    };
  },
};

/**
 * Scaled-dot-product attention `softmax(q·kᵀ·scale + mask)·v` (see the module
 * doc for masks, fully masked rows and dropout).
 * q `[B, H, T, D]`, k and v `[B, H, S, D]` → `[B, H, T, D]`.
 */
export function attention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions = {}): Tensor {
  const D = q.shape[q.shape.length - 1] ?? 1;
  const drop = opts.dropout && opts.dropout.p > 0 ? opts.dropout : null;
  const params: AttentionParams = {
    hasMask: opts.keyMask !== undefined,
    causal: opts.causal ?? false,
    scale: opts.scale ?? 1 / Math.sqrt(D),
    dropoutP: drop ? drop.p : 0,
    seed: drop ? drop.seed : 0,
  };
  const inputs = opts.keyMask ? [q, k, v, opts.keyMask] : [q, k, v];
  return apply(ATTENTION, inputs, params)[0];
}

// ---------------------------------------------------------------- registry cases

function maskValues(B: number, S: number, lens: number[]): number[] {
  return Array.from({ length: B * S }, (_, i) => (i % S < lens[Math.floor(i / S)] ? 1 : 0));
}

interface CaseSpec {
  label: string;
  B: number;
  H: number;
  T: number;
  S: number;
  D: number;
  /** Real keys per batch row (a key mask); none: no mask. */
  lens?: number[];
  causal?: boolean;
  dropoutP?: number;
  range?: number;
  gradLse?: boolean;
  /** Pass the key mask as i32. */
  maskI32?: boolean;
  noGradCheck?: boolean;
  tol?: number;
}

function forwardCase(c: CaseSpec): OpCase {
  const r = c.range ?? 1;
  const inputs: OpCase["inputs"] = [
    { shape: [c.B, c.H, c.T, c.D], min: -r, max: r },
    { shape: [c.B, c.H, c.S, c.D], min: -r, max: r },
    { shape: [c.B, c.H, c.S, c.D] },
  ];
  if (c.lens) {
    inputs.push({ shape: [c.B, c.S], values: maskValues(c.B, c.S, c.lens), noGrad: true });
  }
  return {
    label: c.label,
    inputs,
    params: {
      hasMask: c.lens !== undefined,
      causal: c.causal ?? false,
      scale: 1 / Math.sqrt(c.D),
      dropoutP: c.dropoutP ?? 0,
      seed: 1234,
    } satisfies AttentionParams,
    gradOutputs: c.gradLse ? [0, 1] : [0],
    noGradCheck: c.noGradCheck,
    tol: c.tol,
  };
}

function backwardCase(c: CaseSpec): OpCase {
  const f = forwardCase(c);
  const { B, H, T, D } = c;
  const inputs = f.inputs.slice(0, 3);
  inputs.push(
    { shape: [B, H, T, D] },
    { shape: [B, H, T], min: 0, max: 2 },
    { shape: [B, H, T, D] },
  );
  if (c.lens) inputs.push(f.inputs[3]);
  if (c.gradLse) inputs.push({ shape: [B, H, T] });
  return {
    label: c.label,
    inputs,
    params: { ...f.params, hasDLse: c.gradLse ?? false },
    noGradCheck: true,
    tol: c.tol,
  };
}

const CASES: CaseSpec[] = [
  { label: "padding", B: 2, H: 2, T: 5, S: 7, D: 8, lens: [7, 4] },
  { label: "causal+padding", B: 2, H: 1, T: 6, S: 6, D: 4, lens: [6, 3], causal: true },
  { label: "causal T<S", B: 1, H: 2, T: 3, S: 9, D: 5, causal: true, gradLse: true },
  { label: "kv-cache T=1", B: 2, H: 2, T: 1, S: 10, D: 8, lens: [10, 6], causal: true },
  { label: "size-1", B: 1, H: 1, T: 1, S: 1, D: 1 },
  { label: "D=1 heads", B: 1, H: 3, T: 4, S: 3, D: 1, lens: [2] },
  { label: "fully masked rows", B: 2, H: 2, T: 4, S: 5, D: 4, lens: [3, 0] },
  { label: "fully masked causal", B: 2, H: 1, T: 5, S: 5, D: 4, lens: [0, 2], causal: true },
  { label: "causal T>S", B: 1, H: 1, T: 6, S: 4, D: 4, causal: true },
  { label: "large q/k", B: 1, H: 2, T: 6, S: 7, D: 8, lens: [5], range: 10, tol: 1e-3 },
  { label: "dropout", B: 2, H: 2, T: 5, S: 6, D: 4, lens: [6, 3], causal: true, dropoutP: 0.3 },
  { label: "lse grad", B: 1, H: 2, T: 4, S: 6, D: 3, lens: [5], gradLse: true },
  { label: "i32 mask", B: 2, H: 1, T: 3, S: 4, D: 4, lens: [4, 0], causal: true, maskI32: true },
  // multiple tiles and D chunks, sizes that are not tile multiples
  {
    label: "tiles causal",
    B: 1,
    H: 2,
    T: 40,
    S: 37,
    D: 48,
    lens: [33],
    causal: true,
    dropoutP: 0.2,
  },
  {
    label: "tiles fully masked causal",
    B: 2,
    H: 1,
    T: 45,
    S: 45,
    D: 16,
    lens: [45, 0],
    causal: true,
    noGradCheck: true,
  },
  { label: "D=128", B: 1, H: 1, T: 33, S: 35, D: 128, lens: [30], noGradCheck: true },
];

/** Registry entries of the attention ops. */
export const ATTENTION_ENTRIES: OpEntry[] = [
  { op: ATTENTION, cases: CASES.map(forwardCase) },
  { op: ATTENTION_BACKWARD, cases: CASES.map(backwardCase) },
];
