/**
 * Fused scaled-dot-product attention, flash-attention style:
 * `out = dropout(softmax(q·kᵀ·scale masked)) · v` over `q [B, H, T, D]`,
 * `k, v [B, H, S, D]`, with an optional key-padding mask `[B, S]`, a causal
 * mask and attention-probability dropout. The T×S score matrix is never
 * stored: the forward kernel walks the keys with an online softmax (running
 * max and sum) and also writes the row logsumexp `lse [B, H, T]`, which the
 * backward uses to recompute the probabilities.
 *
 * Layout "BTHD" takes `q [B, T, H, D]`, `k, v [B, S, H, D]` (free reshapes of
 * the `[B, T, C]` projections) and gives `out [B, T, H, D]`, `lse [B, T, H]`:
 * the kernels index `((b·T + t)·H + h)·D + d` directly, so a model needs no
 * permutes to split and merge heads. Both layouts compute the same numbers.
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
 *   ops/dropout.ts applied to the `[B, H, T, S]` probabilities, in either
 *   layout) and scaled by `1/(1 − p)`; `lse` is taken before dropout.
 * - allowed scores must be above −1e29 (the kernels start the running max at
 *   −1e30).
 *
 * Backward (`ATTENTION_BACKWARD`, its own op): `Δ_t = Σ_d dO·O − dlse`, then
 * `P = exp(z − lse)`, `dV = (P∘Z)ᵀ dO`, `dS = P∘(Z∘(dO vᵀ) − Δ)` on allowed
 * entries, `dQ = scale·dS K`, `dK = scale·dSᵀ Q`. On the GPU with the row
 * kernels: one kernel for Δ (and the "row fully masked" flag), one with a
 * thread per key row writing dK and dV, one with a thread per query row
 * writing dQ — no atomics, so the result is deterministic.
 *
 * GPU kernel families (`selectAttentionKernel`: forced, tuned per adapter,
 * else `defaultAttentionKernel`):
 * - rows (this file): one thread per row, rows in registers (vec4 when
 *   D % 4 == 0), the other side streamed from storage as broadcast loads; no
 *   workgroup memory (see the WGSL section for why). Any D up to
 *   {@linkcode ATTENTION_MAX_D}; registers grow with D (≈ 4·D floats per
 *   thread in the dK/dV kernel);
 * - "mm" (ops/_attention_mm.ts): the per-head products on the tiled matmul
 *   kernels with the scores in scratch memory, any D; in training with
 *   {@linkcode useAttentionProbs}("kept") the forward's probabilities are a
 *   third output (`keepProbs`) and the backward skips recomputing them;
 * - tiles (ops/_attention_tiled.ts): flash-attention-style workgroup tiles.
 *
 * On the CPU (f32): heads with T·S·D below {@linkcode WASM_ATTENTION_MAX_WORK}
 * and no dropout run the reference's own arithmetic in WebAssembly (the same
 * bits); larger heads and dropout go through the SIMD matmul per head (the
 * "fast path"); f64 runs the reference.
 *
 * @example
 * ```ts
 * import { attention, full } from "@webseq/webseq";
 * const q = full([2, 4, 5, 16], 0.1), k = full([2, 4, 7, 16], 0.2), v = full([2, 4, 7, 16], 3);
 * const out = attention(q, k, v, { causal: true }); // [2, 4, 5, 16], all 3
 * ```
 *
 * @module
 */
import { apply, isGradEnabled, type Tensor, zeros } from "../tensor/tensor.ts";
import { grantedEnv } from "../tensor/env.ts";
import { dropoutScale, dropoutThreshold } from "./dropout.ts";
import { hashU32, WGSL_HASH } from "../tensor/rng.ts";
import {
  type BindRef,
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
import {
  attentionBackwardF32,
  type AttentionF32,
  attentionF32,
  keepMaskU8,
} from "./_cpu_threads_kernels.ts";
import { softmaxRows } from "./_attention_rows.ts";
import { expF64 } from "./_exp.ts";
import {
  type AttentionKernel,
  attentionTileName,
  selectAttentionKernel,
  type TiledBuf,
  tiledDkvWgsl,
  tiledDqWgsl,
  tiledForwardWgsl,
} from "./_attention_tiled.ts";
import { matmulTarget } from "./_matmul_variants.ts";
import {
  type StridedMatmul,
  stridedMatmulKernel,
  type StridedOperand,
  stridedRowsKernel,
} from "./matmul.ts";
import {
  MM_GRAD_WG,
  MM_LANES,
  MM_MAX_SCORE_BYTES,
  MM_ROWS_PER_WG,
  MM_SOFTMAX_REG_KEYS,
  mmFits,
  mmGradWgsl,
  mmSoftmaxWgsl,
} from "./_attention_mm.ts";

/**
 * Memory layout of q, k, v and out (and of the rows of `lse`): heads-major
 * `"BHTD"` (q `[B, H, T, D]`, lse `[B, H, T]`) or token-major `"BTHD"`
 * (q `[B, T, H, D]`, a free reshape of `[B, T, C]`; lse `[B, T, H]`).
 */
export type AttentionLayout = "BHTD" | "BTHD";

/** Parameters of {@linkcode ATTENTION}. */
export interface AttentionParams {
  /** Layout of q/k/v/out; default "BHTD". */
  layout?: AttentionLayout;
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
  /**
   * {@linkcode ATTENTION}: a third output, the probabilities `P [B, H, T, S]`
   * (heads-major in either layout), kept for the backward — the "mm"
   * kernels' scores buffer, written anyway, becomes an output, so
   * {@linkcode ATTENTION_BACKWARD} skips recomputing `Q·Kᵀ`.
   * Needs `dropoutP` 0. The output has no gradient and belongs to the op's
   * backward, which frees it. {@linkcode ATTENTION_BACKWARD}: the last input
   * is that output. Set by {@linkcode attention} under {@linkcode useAttentionProbs}("kept").
   */
  keepProbs?: boolean;
}

/** Parameters of {@linkcode ATTENTION_BACKWARD}. */
export interface AttentionBackwardParams extends AttentionParams {
  /** Whether the input after the mask is the gradient of `lse` `[B, H, T]`. */
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
  /** "BTHD": q `[B, T, H, D]`, k and v `[B, S, H, D]` (default "BHTD": `[B, H, T, D]`). */
  layout?: AttentionLayout;
}

/** Largest head size the WGSL kernels accept. */
export const ATTENTION_MAX_D = 256;

interface Geometry {
  B: number;
  H: number;
  T: number;
  S: number;
  D: number;
  layout: AttentionLayout;
}

/**
 * Row index (rows are D-vectors) of position `t` of a sequence of length `L`
 * in head `h` of batch row `b`; lse and the kernels' per-row scratch use the
 * query's row index too.
 */
function rowOf(g: Geometry, b: number, h: number, t: number, L: number): number {
  return g.layout === "BTHD" ? (b * L + t) * g.H + h : (b * g.H + h) * L + t;
}

/** Shape of a q/k/v/out tensor with `L` positions. */
function headsShape(g: Geometry, L: number): Shape {
  return g.layout === "BTHD" ? [g.B, L, g.H, g.D] : [g.B, g.H, L, g.D];
}

/** Shape of lse (one value per query row). */
function rowsShape(g: Geometry): Shape {
  return g.layout === "BTHD" ? [g.B, g.T, g.H] : [g.B, g.H, g.T];
}

function geometry(inputs: TensorInfo[], p: AttentionParams, what: string): Geometry {
  const [q, k, v] = inputs;
  const layout = p.layout ?? "BHTD", hasMask = p.hasMask;
  const bad = (why: string): never => {
    throw new TypeError(
      `Cannot ${what} q ${fmtShape(q.shape)}, k ${fmtShape(k.shape)}, v ${
        fmtShape(v.shape)
      }: ${why}`,
    );
  };
  if (layout !== "BHTD" && layout !== "BTHD") {
    throw new TypeError(`Cannot ${what}: layout must be "BHTD" or "BTHD", got ${layout}`);
  }
  const tm = layout === "BTHD";
  if (q.shape.length !== 4 || k.shape.length !== 4 || v.shape.length !== 4) {
    bad(`need rank 4 ${tm ? "[B, T, H, D]" : "[B, H, T, D]"}`);
  }
  const [B, H, T, D] = tm ? [q.shape[0], q.shape[2], q.shape[1], q.shape[3]] : q.shape;
  const S = k.shape[tm ? 1 : 2];
  if (k.shape[0] !== B || k.shape[tm ? 2 : 1] !== H || k.shape[3] !== D) {
    bad(`k must be ${tm ? "[B, S, H, D]" : "[B, H, S, D]"}`);
  }
  if (v.shape.some((d, i) => d !== k.shape[i])) bad("v must have k's shape");
  if (S < 1) bad("need at least one key");
  for (const t of [q, k, v]) if (t.dtype === "i32") bad("need float tensors");
  if (hasMask) {
    const m = inputs[3];
    if (!m || m.shape.length !== 2 || m.shape[0] !== B || m.shape[1] !== S) {
      bad(`keyMask must be [${B}, ${S}], got ${m ? fmtShape(m.shape) : "none"}`);
    }
  }
  return { B, H, T, S, D, layout };
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
  if (p.keepProbs && p.dropoutP > 0) {
    throw new RangeError(`${what}: keepProbs needs dropout p 0, got ${p.dropoutP}`);
  }
}

/** Shape of the kept probabilities (heads-major in either layout). */
function probsShape(g: Geometry): Shape {
  return [g.B, g.H, g.T, g.S];
}

/** The kept probabilities are one scores buffer of the "mm" kernels: their grid and scratch limits. */
function checkProbs(g: Geometry, what: string): void {
  if (!mmFits(g.B * g.H, g.T, g.S)) {
    throw new RangeError(
      `${what}: keepProbs needs B·H ≤ 65535 and B·H·T·S·4 ≤ ${MM_MAX_SCORE_BYTES} bytes, got B·H ${
        g.B * g.H
      }, T ${g.T}, S ${g.S}`,
    );
  }
}

// ---------------------------------------------------------------- CPU reference

/**
 * Σ_d x[xo + d]·y[yo + d] in float64 as two running sums, of the even and of
 * the odd d, added at the end, then the last term when D is odd: the order of
 * the WebAssembly kernels' two f64x2 lanes (half the dependent additions of
 * one running sum).
 */
function dotPairs(x: CpuArray, xo: number, y: CpuArray, yo: number, D: number): number {
  let a = 0, b = 0, d = 0;
  for (; d + 1 < D; d += 2) {
    a += x[xo + d] * y[yo + d];
    b += x[xo + d + 1] * y[yo + d + 1];
  }
  return d < D ? a + b + x[xo + d] * y[yo + d] : a + b;
}

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

  /** Fills z/ok/zm for query t of head (b, h); returns whether any key is allowed. */
  fill(q: CpuArray, k: CpuArray, mask: CpuArray | null, b: number, h: number, t: number): boolean {
    const g = this.g, { H, T, S, D } = g, p = this.p;
    const lim = p.causal ? t + S - T : S - 1;
    const qo = rowOf(g, b, h, t, T) * D;
    let any = false;
    for (let s = 0; s < S; s++) {
      const ok = s <= lim && (mask === null || mask[b * S + s] !== 0);
      this.ok[s] = ok ? 1 : 0;
      if (ok) {
        any = true;
        this.z[s] = dotPairs(q, qo, k, rowOf(g, b, h, s, S) * D, D) * p.scale;
      }
    }
    if (p.dropoutP > 0) {
      const thr = dropoutThreshold(p.dropoutP), ks = dropoutScale(p.dropoutP), seed = p.seed >>> 0;
      const row = ((b * H + h) * T + t) * S; // the [B, H, T, S] index in either layout
      for (let s = 0; s < S; s++) this.zm[s] = hashU32(seed, row + s) >>> 8 >= thr ? ks : 0;
    }
    return any;
  }
}

function attentionCpu(
  [q, k, v, maskIn]: CpuArray[],
  [out, lse, probs]: CpuArray[],
  g: Geometry,
  p: AttentionParams,
): void {
  const { H, T, S, D } = g, mask = p.hasMask ? maskIn : null;
  const row = new RowContext(g, p), prob = new Float64Array(S), acc = new Float64Array(D);
  for (let b = 0; b < g.B; b++) {
    for (let h = 0; h < H; h++) {
      for (let t = 0; t < T; t++) {
        const r = rowOf(g, b, h, t, T);
        if (row.fill(q, k, mask, b, h, t)) {
          let m = -Infinity;
          for (let s = 0; s < S; s++) if (row.ok[s] && row.z[s] > m) m = row.z[s];
          let sum = 0;
          for (let s = 0; s < S; s++) sum += prob[s] = row.ok[s] ? expF64(row.z[s] - m) : 0;
          for (let s = 0; s < S; s++) prob[s] /= sum;
          lse[r] = m + Math.log(sum);
        } else {
          prob.fill(1 / S); // fully masked row: uniform over all keys
          lse[r] = Math.log(S);
        }
        if (probs) probs.set(prob, ((b * H + h) * T + t) * S);
        acc.fill(0);
        for (let s = 0; s < S; s++) {
          const w = prob[s] * row.zm[s];
          if (w === 0) continue;
          const vo = rowOf(g, b, h, s, S) * D;
          for (let d = 0; d < D; d++) acc[d] += w * v[vo + d];
        }
        out.set(acc, r * D);
      }
    }
  }
}

/** The backward's inputs by name: q, k, v, out, lse, dOut, then the mask and dLse when present. */
function backwardInputs(ins: CpuArray[], p: AttentionBackwardParams): {
  q: CpuArray;
  k: CpuArray;
  v: CpuArray;
  o: CpuArray;
  lse: CpuArray;
  dO: CpuArray;
  mask: CpuArray | null;
  dlse: CpuArray | null;
} {
  const [q, k, v, o, lse, dO] = ins;
  const mask = p.hasMask ? ins[6] : null;
  const dlse = p.hasDLse ? ins[p.hasMask ? 7 : 6] : null;
  return { q, k, v, o, lse, dO, mask, dlse };
}

function attentionBackwardCpu(
  ins: CpuArray[],
  [dq, dk, dv]: CpuArray[],
  g: Geometry,
  p: AttentionBackwardParams,
): void {
  const { q, k, v, o, lse, dO, mask, dlse } = backwardInputs(ins, p);
  const { H, T, S, D } = g;
  const row = new RowContext(g, p), dqRow = new Float64Array(D);
  const dkAcc = new Float64Array(S * D), dvAcc = new Float64Array(S * D);
  for (let b = 0; b < g.B; b++) {
    for (let h = 0; h < H; h++) {
      dkAcc.fill(0);
      dvAcc.fill(0);
      for (let t = 0; t < T; t++) {
        const r = rowOf(g, b, h, t, T), qo = r * D;
        let delta = dlse ? -dlse[r] : 0;
        for (let d = 0; d < D; d++) delta += dO[qo + d] * o[qo + d];
        const any = row.fill(q, k, mask, b, h, t);
        dqRow.fill(0);
        for (let s = 0; s < S; s++) {
          const so = rowOf(g, b, h, s, S) * D, zm = row.zm[s];
          if (!row.ok[s]) {
            if (!any && zm !== 0) {
              const w = zm / S;
              for (let d = 0; d < D; d++) dvAcc[s * D + d] += w * dO[qo + d];
            }
            continue;
          }
          const prob = expF64(row.z[s] - lse[r]);
          for (let d = 0; d < D; d++) dvAcc[s * D + d] += prob * zm * dO[qo + d];
          const dpv = dotPairs(dO, qo, v, so, D);
          const ds = prob * (dpv * zm - delta) * p.scale;
          for (let d = 0; d < D; d++) {
            dqRow[d] += ds * k[so + d];
            dkAcc[s * D + d] += ds * q[qo + d];
          }
        }
        dq.set(dqRow, qo);
      }
      for (let s = 0; s < S; s++) {
        const so = rowOf(g, b, h, s, S) * D;
        dk.set(dkAcc.subarray(s * D, s * D + D), so);
        dv.set(dvAcc.subarray(s * D, s * D + D), so);
      }
    }
  }
}

// ---------------------------------------------------------------- CPU WebAssembly path (f32)

/**
 * Heads of T·S·D below this take the WebAssembly kernels, larger ones the
 * matmul fast path below. Measured on the 2-core build machine (ms per call,
 * forward/backward; WebAssembly kernels against the fast path, run
 * alternately): [B, T, S, H, D] = [32, 12, 12, 4, 16] (tiny's shape)
 * 0.37–0.58/0.59–0.89 against 1.26/2.48; [16, 32, 32, 4, 64] 2.6–3.3/4.4–6.3
 * against 4.3/8.4; [8, 64, 64, 8, 64] 8.5–12.6/14.9–23.3 against
 * 14.8–15.0/23.3–26.4; [4, 128, 128, 8, 64] 15–20/30–38 against 16–24/27–42
 * (even); [2, 256, 256, 8, 64] 37–42/72–73 against 28–42/52–72 (there the
 * fast path's per-head products get the SIMD matmul's full speed, while the
 * kernels keep the reference's per-element f64 sums).
 */
export const WASM_ATTENTION_MAX_WORK = 128 * 128 * 64;

/** Geometry of the WebAssembly kernels (null when they do not apply: dropout, size, not f32). */
function wasmGeometry(
  xs: (CpuArray | null)[],
  g: Geometry,
  p: AttentionParams,
): AttentionF32 | null {
  if (p.dropoutP > 0 || !isF32(...xs) || g.T === 0 || g.S === 0) return null;
  if (g.T * g.S * g.D >= WASM_ATTENTION_MAX_WORK) return null;
  const { B, H, T, S, D } = g;
  return { B, H, T, S, D, bhtd: g.layout === "BHTD", causal: p.causal, scale: p.scale };
}

/**
 * The reference above, bit for bit, in WebAssembly (ops/_cpu_threads_kernels.ts
 * `attentionF32`): one head per task on the CPU threads, no transposes, f64
 * sums as the reference orders them. Without dropout; false when it does not apply.
 */
function attentionWasmF32(
  ins: CpuArray[],
  outs: CpuArray[],
  g: Geometry,
  p: AttentionParams,
): boolean {
  const [q, k, v, maskIn] = ins;
  const [out, lse] = outs;
  const wg = wasmGeometry([q, k, v, out, lse], g, p);
  const mask = p.hasMask ? maskIn as Float32Array | Int32Array : null;
  return wg !== null && attentionF32(
    q as Float32Array,
    k as Float32Array,
    v as Float32Array,
    mask,
    out as Float32Array,
    lse as Float32Array,
    wg,
  );
}

/** The backward reference, bit for bit, in WebAssembly (`attentionBackwardF32`). */
function attentionBackwardWasmF32(
  ins: CpuArray[],
  outs: CpuArray[],
  g: Geometry,
  p: AttentionBackwardParams,
): boolean {
  const { q, k, v, o, lse, dO, mask, dlse } = backwardInputs(ins, p);
  const [dq, dk, dv] = outs;
  const wg = wasmGeometry([q, k, v, o, lse, dO, dlse, dq, dk, dv], g, p);
  return wg !== null && attentionBackwardF32(
    {
      q: q as Float32Array,
      k: k as Float32Array,
      v: v as Float32Array,
      mask: mask as Float32Array | Int32Array | null,
      o: o as Float32Array,
      lse: lse as Float32Array,
      dO: dO as Float32Array,
      dlse: dlse as Float32Array | null,
    },
    dq as Float32Array,
    dk as Float32Array,
    dv as Float32Array,
    wg,
  );
}

// ---------------------------------------------------------------- CPU fast path (f32)

/**
 * The f32 CPU path: the same arithmetic as the reference above, but the four
 * products (Q·Kᵀ, P·V and, backward, dO·Vᵀ, dSᵀ·Q, dS·K, (P∘Z)ᵀ·dO) go through
 * the WebAssembly SIMD matmul over all B·H heads at once, materialising the
 * [T, S] scores per head (fine on a CPU), and the softmax rows between them
 * run in WebAssembly too (ops/_attention_rows.ts). Returns false when the
 * kernel is unavailable; the caller then runs the reference. Tested against
 * the reference in ops/attention_test.ts.
 */
function isF32(...xs: (CpuArray | undefined | null)[]): boolean {
  return xs.every((x) => x === undefined || x === null || x instanceof Float32Array);
}

/** Row length from which {@linkcode transposeLH} copies a row with `set` instead of a loop. */
const BLOCK_COPY_MIN = 32;

/**
 * Copies rows between token-major `[B, L, H, D]` and heads-major
 * `[B, H, L, D]` (`toHeads`: the first into the second). The fast path runs
 * heads-major, so a "BTHD" call transposes on the way in and out.
 */
function transposeLH(
  src: Float32Array,
  dst: Float32Array,
  [B, L, H, D]: [number, number, number, number],
  toHeads: boolean,
): Float32Array {
  for (let b = 0; b < B; b++) {
    for (let l = 0; l < L; l++) {
      for (let h = 0; h < H; h++) {
        const tm = ((b * L + l) * H + h) * D, hm = ((b * H + h) * L + l) * D;
        const from = toHeads ? tm : hm, to = toHeads ? hm : tm;
        // a row of D contiguous values: `set` for long rows (D = 64: 1.7 ns a value against
        // 2–2.4 for the loop), the loop for short ones (D = 16: 3× faster than making a view)
        if (D >= BLOCK_COPY_MIN) dst.set(src.subarray(from, from + D), to);
        else for (let d = 0; d < D; d++) dst[to + d] = src[from + d];
      }
    }
  }
  return dst;
}

/** Row of each heads-major row `(b·H + h)·T + t` in the layout (null for "BHTD"). */
function rowMap(g: Geometry): Int32Array | null {
  if (g.layout === "BHTD") return null;
  const { B, H, T } = g, rows = new Int32Array(B * H * T);
  for (let b = 0, r = 0; b < B; b++) {
    for (let h = 0; h < H; h++) for (let t = 0; t < T; t++) rows[r++] = rowOf(g, b, h, t, T);
  }
  return rows;
}

/** `x` (L positions) heads-major: itself for "BHTD", a transposed copy for "BTHD". */
function headsMajor(x: CpuArray, g: Geometry, L: number): Float32Array {
  const f = x as Float32Array;
  if (g.layout === "BHTD") return f;
  return transposeLH(f, new Float32Array(g.B * g.H * L * g.D), [g.B, L, g.H, g.D], true);
}

/** Where a heads-major result goes: `out` itself for "BHTD", else scratch to transpose back. */
function headsMajorOut(out: CpuArray, g: Geometry, L: number): Float32Array {
  return g.layout === "BHTD" ? out as Float32Array : new Float32Array(g.B * g.H * L * g.D);
}

/** Copies a heads-major result into `out` when the layout is "BTHD". */
function fromHeadsMajor(x: Float32Array, out: CpuArray, g: Geometry, L: number): void {
  if (g.layout === "BTHD") transposeLH(x, out as Float32Array, [g.B, L, g.H, g.D], false);
}

/** Multiplies `x` [BH·T·S] by the dropout keep-scale mask (in place). */
function applyDropout(x: Float32Array, p: AttentionParams): void {
  if (!(p.dropoutP > 0)) return;
  const thr = dropoutThreshold(p.dropoutP), ks = dropoutScale(p.dropoutP), seed = p.seed >>> 0;
  // the keep mask from WebAssembly (ops/_cpu_threads_kernels.ts), the same multipliers
  const keep = keepMaskU8(x.length, seed, thr);
  if (keep) {
    for (let i = 0; i < x.length; i++) x[i] *= keep[i] !== 0 ? ks : 0;
    return;
  }
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
  const qf = headsMajor(q, g, T), kf = headsMajor(k, g, S), vf = headsMajor(v, g, S);
  if (!mm(qf, kf, z, { M: T, N: S, K: D, sa: T * D, sb: S * D, transB: true })) return false;
  const prob = new Float32Array(BH * T * S);
  softmaxRows(z, mask, null, lse, g, p, prob, new Uint8Array(BH * T), rowMap(g));
  applyDropout(prob, p);
  const of = headsMajorOut(out, g, T);
  if (!mm(prob, vf, of, { M: T, N: D, K: S, sa: T * S, sb: S * D })) return false;
  fromHeadsMajor(of, out, g, T);
  return true;
}

function attentionBackwardFastF32(
  ins: CpuArray[],
  outs: CpuArray[],
  g: Geometry,
  p: AttentionBackwardParams,
): boolean {
  const { q, k, v, o, lse, dO, mask, dlse } = backwardInputs(ins, p);
  const [dq, dk, dv] = outs;
  if (!isF32(q, k, v, o, lse, dO, dlse, dq, dk, dv) || g.T === 0) return false;
  const { T, S, D } = g, BH = g.B * g.H, n = BH * T * S;
  const mm = headsMatmul(BH);
  const qf = headsMajor(q, g, T), kf = headsMajor(k, g, S), vf = headsMajor(v, g, S);
  const dOf = headsMajor(dO, g, T), rows = rowMap(g);
  const z = new Float32Array(n), prob = new Float32Array(n), any = new Uint8Array(BH * T);
  if (!mm(qf, kf, z, { M: T, N: S, K: D, sa: T * D, sb: S * D, transB: true })) return false;
  softmaxRows(z, mask, lse, null, g, p, prob, any, rows);
  // dP = dO · Vᵀ, then dS = P ∘ (dP ∘ Z − Δ) · scale on allowed keys, 0 elsewhere
  const dP = new Float32Array(n);
  mm(dOf, vf, dP, { M: T, N: S, K: D, sa: T * D, sb: S * D, transB: true });
  // Z: the dropout multipliers (without dropout all 1, and P∘Z is P: the same numbers)
  const zm = p.dropoutP > 0 ? new Float32Array(n).fill(1) : null;
  if (zm) applyDropout(zm, p);
  const pz = zm ? new Float32Array(n) : prob;
  for (let r = 0; r < BH * T; r++) {
    const lr = rows ? rows[r] : r; // o, lse and dlse stay in the layout
    let delta = dlse ? -dlse[lr] : 0;
    for (let d = 0; d < D; d++) delta += dOf[r * D + d] * o[lr * D + d];
    const base = r * S;
    if (zm) {
      for (let s = 0; s < S; s++) {
        const i = base + s;
        pz[i] = prob[i] * zm[i];
        dP[i] = any[r] && z[i] !== -Infinity ? prob[i] * (dP[i] * zm[i] - delta) * p.scale : 0;
      }
    } else {
      for (let s = 0; s < S; s++) {
        const i = base + s;
        dP[i] = any[r] && z[i] !== -Infinity ? prob[i] * (dP[i] - delta) * p.scale : 0;
      }
    }
  }
  const dS = dP;
  const dvf = headsMajorOut(dv, g, S), dqf = headsMajorOut(dq, g, T), dkf = headsMajorOut(dk, g, S);
  mm(pz, dOf, dvf, { M: S, N: D, K: T, sa: T * S, sb: T * D, transA: true });
  mm(dS, kf, dqf, { M: T, N: D, K: S, sa: T * S, sb: S * D });
  mm(dS, qf, dkf, { M: S, N: D, K: T, sa: T * S, sb: T * D, transA: true });
  fromHeadsMajor(dvf, dv, g, S);
  fromHeadsMajor(dqf, dq, g, T);
  fromHeadsMajor(dkf, dk, g, S);
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
  layout: AttentionLayout;
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

/** Independent partial sums of a long dot product (see {@linkcode dotInto}). */
const DOT_CHAINS = 4;

/**
 * `Σ_j a_j·b_j` as WGSL statements accumulating into `acc`. Long products
 * (D ≥ 16 with vec4 rows) go through {@linkcode DOT_CHAINS} partial sums
 * added at the end: one chain of D/4 dependent `dot`s per key would stall a
 * thread on each add's latency (the attention kernels run one row per
 * thread, with few threads per multiprocessor at D = 64).
 */
function dotInto(
  acc: string,
  n: number,
  w: number,
  a: (j: number) => string,
  b: (j: number) => string,
  sep = "\n    ",
): string {
  const term = (j: number, into: string) =>
    w === 4 ? `${into} += dot(${a(j)}, ${b(j)});` : `${into} = fma(${a(j)}, ${b(j)}, ${into});`;
  if (n < DOT_CHAINS) return each(n, (j) => term(j, acc), sep);
  const part = (c: number) => `${acc}_${c}`;
  return [
    each(DOT_CHAINS, (c) => `var ${part(c)} = 0.0;`, sep),
    each(n, (j) => term(j, part(j % DOT_CHAINS)), sep),
    `${acc} += (${part(0)} + ${part(1)}) + (${part(2)} + ${part(3)});`,
  ].join(sep);
}

const UNIFORM =
  `struct U { BH: u32, H: u32, T: u32, S: u32, seed: u32, thr: u32, scale: f32, keep_scale: f32 }`;

type Buf = [name: string, access: "read" | "read_write", type: string];

function header(bufs: Buf[]): string {
  return bufs.map(([name, access, ty], i) =>
    `@group(0) @binding(${i}) var<storage, ${access}> ${name}: array<${ty}>;`
  ).join("\n") + `\n${UNIFORM}\n@group(0) @binding(${bufs.length}) var<uniform> u: U;\n`;
}

/**
 * Shared helpers: row indexing of the layout, key_on (padding mask), the
 * causal key bound, the dropout multiplier.
 */
function common(v: Variant): string {
  const tm = v.layout === "BTHD";
  return `
const MASKED: f32 = -1e30;
// row (a D-vector) of position t of a length-L sequence in head h of batch row b
fn row_of(b: u32, h: u32, t: u32, L: u32) -> u32 {
  return ${tm ? "(b * L + t) * u.H + h" : "(b * u.H + h) * L + t"};
}
// (b, h, t) of thread i: threads go heads-major in either layout, so the
// neighbours of a thread share its head and read the same k/v (or q/dO)
// rows at the same time (broadcast loads)
fn coords_of(i: u32, L: u32) -> vec3u {
  return vec3u(i / L / u.H, (i / L) % u.H, i % L);
}
fn key_on(b: u32, s: u32) -> bool {
  return ${v.mask ? `mask[b * u.S + s] != ${v.mask === "i32" ? "0" : "0.0"}` : "true"};
}
// keys [0, key_end(t)) may be attended by query t
fn key_end(t: u32) -> u32 {
  return ${v.causal ? "u32(clamp(i32(t) + i32(u.S) - i32(u.T) + 1, 0, i32(u.S)))" : "u.S"};
}
${v.dropout ? WGSL_HASH : ""}
// the [B, H, T, S] index of (b, h, t, s) seeds the mask in either layout
fn zmul(b: u32, h: u32, t: u32, s: u32) -> f32 {
  ${
    v.dropout
      ? "return select(0.0, u.keep_scale, (hash_u32(u.seed, ((b * u.H + h) * u.T + t) * u.S + s) >> 8u) >= u.thr);"
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
  let c = coords_of(i, u.T);
  let b = c.x;
  let h = c.y;
  let t = c.z;
  let qr = row_of(b, h, t, u.T);
  let qo = qr * ${NV}u;
  ${each(NV, (j) => `let q${j} = q[qo + ${j}u] * u.scale;`, "\n  ")}
  ${each(NV, (j) => `var o${j} = ${VT}(0.0);`, "\n  ")}
  var m = MASKED;
  var l = 0.0;
  for (var s = 0u; s < key_end(t); s++) {
    if (!key_on(b, s)) { continue; }
    let ko = row_of(b, h, s, u.S) * ${NV}u;
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
    let pz = p * zmul(b, h, t, s);
    ${each(NV, (j) => `o${j} += pz * v[ko + ${j}u];`)}
  }
  var L = 0.0;
  if (m == MASKED) {
    // no allowed key: uniform attention over all S keys
    for (var s = 0u; s < u.S; s++) {
      let ko = row_of(b, h, s, u.S) * ${NV}u;
      let w = zmul(b, h, t, s);
      ${each(NV, (j) => `o${j} += w * v[ko + ${j}u];`, "\n      ")}
    }
    l = f32(u.S);
    L = log(l);
  } else {
    L = m + log(l);
  }
  let inv = 1.0 / l;
  ${each(NV, (j) => `out[qo + ${j}u] = o${j} * inv;`, "\n  ")}
  lse[qr] = L;
}
`;
}

/**
 * Δ = rowsum(dO∘O) − dlse and the fully-masked flag, per query row:
 * info[2r], info[2r + 1] with r the heads-major row (the thread index).
 */
function deltaKernel(v: Variant, hasDLse: boolean): string {
  const { W, NV, VT } = layout(v.D);
  const bufs: Buf[] = [["o", "read", VT], ["dO", "read", VT]];
  if (v.mask) bufs.push(["mask", "read", v.mask]);
  if (hasDLse) bufs.push(["dlse", "read", "f32"]);
  bufs.push(["info", "read_write", "f32"]);
  return header(bufs) + common(v) + `
${ROW_ENTRY("u.BH * u.T")}
  let c = coords_of(i, u.T);
  let b = c.x;
  let t = c.z;
  let qr = row_of(b, c.y, t, u.T);
  var acc = 0.0;
  for (var j = 0u; j < ${NV}u; j++) {
    ${
    W === 4
      ? "acc += dot(dO[qr * " + NV + "u + j], o[qr * " + NV + "u + j]);"
      : `acc = fma(dO[qr * ${NV}u + j], o[qr * ${NV}u + j], acc);`
  }
  }
  ${hasDLse ? "acc -= dlse[qr];" : ""}
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

/**
 * Which of {@linkcode backwardBufs} a key-row kernel reads: dV alone needs
 * neither v nor (without masking) the Δ/flag buffer.
 */
function dkvInputs(v: Variant, parts: "dkv" | "dk" | "dv"): number[] {
  const n = backwardBufs(v).length, all = Array.from({ length: n }, (_, i) => i);
  if (parts !== "dv") return all;
  const anyMasking = v.mask !== null || v.causal;
  return all.filter((i) => i !== 2 && (anyMasking || i !== n - 1));
}

/** dQ: one thread per query row. */
function dqKernel(v: Variant): string {
  const { W, NV, VT } = layout(v.D);
  const bufs = backwardBufs(v);
  bufs.push(["dq", "read_write", VT]);
  return header(bufs) + common(v) + `
${ROW_ENTRY("u.BH * u.T")}
  let c = coords_of(i, u.T);
  let b = c.x;
  let h = c.y;
  let t = c.z;
  let qr = row_of(b, h, t, u.T);
  let qo = qr * ${NV}u;
  let L = lse[qr];
  let delta = info[2u * i];
  ${each(NV, (j) => `let q${j} = q[qo + ${j}u] * u.scale;`, "\n  ")}
  ${each(NV, (j) => `let g${j} = dO[qo + ${j}u];`, "\n  ")}
  ${each(NV, (j) => `var dq${j} = ${VT}(0.0);`, "\n  ")}
  for (var s = 0u; s < key_end(t); s++) {
    if (!key_on(b, s)) { continue; }
    let ko = row_of(b, h, s, u.S) * ${NV}u;
    var z = 0.0;
    ${dotInto("z", NV, W, (j) => `q${j}`, (j) => `k[ko + ${j}u]`)}
    var dp = 0.0;
    ${dotInto("dp", NV, W, (j) => `g${j}`, (j) => `v[ko + ${j}u]`)}
    let ds = exp(z - L) * (dp * zmul(b, h, t, s) - delta) * u.scale;
    ${each(NV, (j) => `dq${j} += ds * k[ko + ${j}u];`)}
  }
  ${each(NV, (j) => `dq[qo + ${j}u] = dq${j};`, "\n  ")}
}
`;
}

/**
 * Above this head size the key-row backward runs as two kernels, dV then
 * dK: one thread holding k, v, dK and dV (4·D floats) spills registers at
 * D = 64 on an NVIDIA H200; dV alone needs k and dV, dK needs k, v and dK.
 */
export const ATTENTION_SPLIT_DKV_D = 32;

/** dK and/or dV: one thread per key row (`parts`: which of the two it writes). */
function dkvKernel(v: Variant, parts: "dkv" | "dk" | "dv" = "dkv"): string {
  const { W, NV, VT } = layout(v.D);
  const wantK = parts !== "dv", wantV = parts !== "dk";
  const anyMasking = v.mask !== null || v.causal;
  const used = dkvInputs(v, parts);
  const bufs = backwardBufs(v).filter((_, i) => used.includes(i));
  if (wantK) bufs.push(["dk", "read_write", VT]);
  if (wantV) bufs.push(["dv", "read_write", VT]);
  return header(bufs) + common(v) + `
${ROW_ENTRY("u.BH * u.S")}
  let c = coords_of(i, u.S);
  let b = c.x;
  let h = c.y;
  let s = c.z;
  let ko = row_of(b, h, s, u.S) * ${NV}u;
  let on = key_on(b, s);
  ${each(NV, (j) => `let k${j} = k[ko + ${j}u] * u.scale;`, "\n  ")}
  ${wantK ? each(NV, (j) => `let v${j} = v[ko + ${j}u];`, "\n  ") : ""}
  ${wantK ? each(NV, (j) => `var dk${j} = ${VT}(0.0);`, "\n  ") : ""}
  ${wantV ? each(NV, (j) => `var dv${j} = ${VT}(0.0);`, "\n  ") : ""}
  for (var t = 0u; t < u.T; t++) {
    let qr = row_of(b, h, t, u.T);
    let qo = qr * ${NV}u;
    let r = (b * u.H + h) * u.T + t; // the heads-major row of info
    var pz = 0.0; // P∘Z of (t, s)
    var ds = 0.0; // dS of (t, s)
    if (on && s < key_end(t)) {
      var z = 0.0;
      ${dotInto("z", NV, W, (j) => `k${j}`, (j) => `q[qo + ${j}u]`, "\n      ")}
      let p = exp(z - lse[qr]);
      let zm = zmul(b, h, t, s);
      ${
    wantK
      ? `var dp = 0.0;
      ${dotInto("dp", NV, W, (j) => `v${j}`, (j) => `dO[qo + ${j}u]`, "\n      ")}
      ds = p * (dp * zm - info[2u * r]) * u.scale;`
      : ""
  }
      pz = p * zm;
    }${
    anyMasking && wantV
      ? ` else if (info[2u * r + 1u] != 0.0) {
      pz = zmul(b, h, t, s) / f32(u.S); // a fully masked row attends uniformly
    }`
      : ""
  }
    if (${wantK && wantV ? "pz != 0.0 || ds != 0.0" : wantV ? "pz != 0.0" : "ds != 0.0"}) {
      ${wantV ? each(NV, (j) => `dv${j} += pz * dO[qo + ${j}u];`, "\n      ") : ""}
      ${wantK ? each(NV, (j) => `dk${j} += ds * q[qo + ${j}u];`, "\n      ") : ""}
    }
  }
  ${wantK ? each(NV, (j) => `dk[ko + ${j}u] = dk${j};`, "\n  ") : ""}
  ${wantV ? each(NV, (j) => `dv[ko + ${j}u] = dv${j};`, "\n  ") : ""}
}
`;
}

const codes = new Map<string, string>();

/**
 * The WGSL of one kernel of a variant, generated once: the same string object
 * each call, so the backend's pipeline lookup hashes it once.
 */
function kernelCode(kind: string, v: Variant, gen: () => string): string {
  const key = `${kind}|${v.D}|${v.mask}|${+v.causal}|${+v.dropout}|${v.layout}`;
  let code = codes.get(key);
  if (code === undefined) codes.set(key, code = gen());
  return code;
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
    layout: g.layout,
  };
}

/** Storage declarations, the uniform and the shared helpers of a variant: the tiled kernels' prelude. */
function prelude(v: Variant): (bufs: TiledBuf[]) => string {
  return (bufs) => header(bufs) + common(v);
}

/** The kernels (row or tiled) an attention op of this geometry runs now. */
function kernelFor(op: "fwd" | "bwd", g: Geometry, p: AttentionParams): AttentionKernel {
  const target = matmulTarget();
  return selectAttentionKernel(
    {
      op,
      BH: g.B * g.H,
      T: g.T,
      S: g.S,
      D: g.D,
      causal: p.causal,
      mask: p.hasMask,
      dropout: p.dropoutP > 0,
    },
    target.description,
    target,
  );
}

function uniform(g: Geometry, p: AttentionParams): ArrayBuffer {
  return packUniform(
    [g.B * g.H, g.H, g.T, g.S, p.seed >>> 0, dropoutThreshold(p.dropoutP)],
    [p.scale, dropoutScale(p.dropoutP)],
  );
}

// ---------------------------------------------------------------- "mm" kernels

/** Where the rows of a q/k/v-shaped tensor with `L` positions lie, per head `z = b·H + h`. */
function headsView(g: Geometry, L: number): StridedOperand {
  return g.layout === "BTHD"
    ? { ld: g.H * g.D, s: L * g.H * g.D, sh: g.D }
    : { ld: g.D, s: g.H * L * g.D, sh: L * g.D };
}

/** The scores `[B·H, T, S]` (scratch), per head. */
function scoresView(g: Geometry): StridedOperand {
  return { ld: g.S, s: g.H * g.T * g.S, sh: g.T * g.S };
}

/** A per-head product of the "mm" kernels (ops/_attention_mm.ts). */
function headsProduct(
  g: Geometry,
  dims: [M: number, N: number, K: number],
  trans: [a: boolean, b: boolean],
  views: [a: StridedOperand, b: StridedOperand, out: StridedOperand],
  bind: GpuKernel["bind"],
): GpuKernel {
  const [M, N, K] = dims, [a, b, out] = views;
  const s: StridedMatmul = {
    M,
    N,
    K,
    transA: trans[0],
    transB: trans[1],
    P: g.B * g.H,
    zh: g.H,
    a,
    b,
    out,
  };
  return stridedMatmulKernel(s, bind);
}

/** An epilogue of {@linkcode scoresMatmul}. */
type ScoresEpilogue = Pick<
  StridedMatmul,
  "scoresGrad" | "scoresProb" | "softmaxRows" | "scoresGradRows"
>;

/** The per-head product `a·bᵀ` over D into the `[B·H, T, S]` scores (Q·Kᵀ, dO·Vᵀ). */
function scoresMatmul(
  g: Geometry,
  a: StridedOperand,
  b: StridedOperand,
  epilogue: ScoresEpilogue,
): StridedMatmul {
  return {
    M: g.T,
    N: g.S,
    K: g.D,
    transA: false,
    transB: true,
    P: g.B * g.H,
    zh: g.H,
    a,
    b,
    out: scoresView(g),
    ...epilogue,
  };
}

/**
 * The forward through per-head matmuls: Z = Q·Kᵀ, P̃ and lse, out = P̃·V; the
 * scores in scratch memory, or (`keepProbs`) in output 2. Where the tile
 * selected for Q·Kᵀ holds whole rows (S ≤ BN) the softmax is its epilogue
 * (`StridedMatmul.softmaxRows`: 2 dispatches), else its own kernel (3).
 */
function mmForwardPlan(g: Geometry, p: AttentionParams, v: Variant): GpuPlan {
  const { T, S, D } = g;
  const qv = headsView(g, T), kv = headsView(g, S), zv = scoresView(g);
  const rows = g.B * g.H * T;
  const Z = p.keepProbs ? { out: 2 } : { tmp: 0 };
  const byV = headsProduct(g, [T, D, S], [false, false], [zv, kv, qv], [Z, { in: 2 }, { out: 0 }]);
  // the softmax in the epilogue of Q·Kᵀ where the selected tile holds whole rows
  const fused = attentionEpilogues() && stridedRowsKernel(
    scoresMatmul(g, qv, kv, {
      softmaxRows: {
        scale: p.scale,
        causal: p.causal,
        mask: v.mask,
        layout: g.layout,
        dropout: p.dropoutP > 0
          ? {
            seed: p.seed >>> 0,
            thr: dropoutThreshold(p.dropoutP),
            ks: dropoutScale(p.dropoutP),
          }
          : null,
      },
    }),
    [{ in: 0 }, { in: 1 }, ...(p.hasMask ? [{ in: 3 }] : []), Z, { out: 1 }],
  );
  if (fused) {
    return { ...(p.keepProbs ? {} : { temps: [rows * S * 4] }), kernels: [fused, byV] };
  }
  const bufs: Buf[] = [["z", "read_write", "f32"]];
  if (v.mask) bufs.push(["mask", "read", v.mask]);
  bufs.push(["lse", "read_write", "f32"]);
  return {
    ...(p.keepProbs ? {} : { temps: [rows * S * 4] }),
    kernels: [
      headsProduct(g, [T, S, D], [false, true], [qv, kv, zv], [{ in: 0 }, { in: 1 }, Z]),
      {
        code: kernelCode(
          `mmsoftmax${S <= MM_SOFTMAX_REG_KEYS ? Math.ceil(S / MM_LANES) : 0}`,
          v,
          () => mmSoftmaxWgsl(header(bufs) + common(v), S),
        ),
        bind: [Z, ...(p.hasMask ? [{ in: 3 }] : []), { out: 1 }],
        uniform: uniform(g, p),
        workgroups: grid1d(rows, MM_ROWS_PER_WG),
      },
      byV,
    ],
  };
}

/**
 * The backward through per-head matmuls. With attention dropout: Δ,
 * Z = Q·Kᵀ, dP = dO·Vᵀ, then P̃ and scale·dS in place (one elementwise
 * kernel), dV = P̃ᵀ·dO, dQ = (scale·dS)·K, dK = (scale·dS)ᵀ·Q (7 dispatches).
 * Without (P̃ = P): P from the epilogue of Q·Kᵀ (`StridedMatmul.scoresProb`)
 * and scale·dS from the epilogue of dO·Vᵀ (`scoresGrad`), no elementwise
 * kernel (6); where that product's tile holds whole rows (and no dLse), Δ too
 * (`scoresGradRows`: Δ = Σ_s P·dP, the fully-masked flag scanned from the
 * masks, as `Q·Kᵀ`'s epilogue then does): no Δ kernel (5). With the
 * probabilities the forward kept (`keptAt`, the input holding them) no Q·Kᵀ
 * either (4 or 5).
 */
function mmBackwardPlan(
  g: Geometry,
  p: AttentionBackwardParams,
  v: Variant,
  delta: GpuKernel,
  keptAt: number | null = null,
): GpuPlan {
  const { T, S, D } = g;
  const qv = headsView(g, T), kv = headsView(g, S), zv = scoresView(g);
  const rows = g.B * g.H * T;
  const product = (
    [a, b]: [StridedOperand, StridedOperand],
    epilogue: ScoresEpilogue,
    bind: GpuKernel["bind"],
  ) => stridedMatmulKernel(scoresMatmul(g, a, b, epilogue), bind);
  const mask: GpuKernel["bind"] = p.hasMask ? [{ in: 6 }] : [];
  const tail = (P: BindRef, dS: BindRef): GpuKernel[] => [
    // dV = Pᵀ·dO: P stored [T, S] is op(a)ᵀ
    headsProduct(g, [S, D, T], [true, false], [zv, qv, kv], [P, { in: 5 }, { out: 2 }]),
    headsProduct(g, [T, D, S], [false, false], [zv, kv, qv], [dS, { in: 1 }, { out: 0 }]),
    headsProduct(g, [S, D, T], [true, false], [zv, qv, kv], [dS, { in: 0 }, { out: 1 }]),
  ];
  // P = exp(scale·Q·Kᵀ − lse) into `P`, unless the forward kept it; the fully-masked flag from
  // the Δ kernel's `info`, or (null) scanned from the masks
  const recomputeP = (P: BindRef, info: BindRef | null): GpuKernel[] => {
    if (keptAt !== null) return [];
    const prob = {
      scale: p.scale,
      causal: p.causal,
      mask: v.mask,
      layout: g.layout,
      ...(info ? {} : { scan: true }),
    };
    const bind = [{ in: 0 }, { in: 1 }, { in: 4 }, ...mask, ...(info ? [info] : []), P];
    return [product([qv, kv], { scoresProb: prob }, bind)];
  };
  if ((keptAt !== null || !v.dropout) && attentionEpilogues() && !p.hasDLse) {
    // Δ = Σ_s P·dP from each row in the epilogue of dO·Vᵀ where its tile holds whole rows: no
    // Δ kernel. Scratch: 0 scale·dS, then (recomputed) P
    const dS = { tmp: 0 }, P = keptAt !== null ? { in: keptAt } : { tmp: 1 };
    const grad = stridedRowsKernel(
      scoresMatmul(g, qv, kv, {
        scoresGradRows: { scale: p.scale, causal: p.causal, mask: v.mask },
      }),
      [{ in: 5 }, { in: 2 }, P, ...mask, dS],
    );
    if (grad) {
      return {
        temps: keptAt !== null ? [rows * S * 4] : [rows * S * 4, rows * S * 4],
        kernels: [...recomputeP(P, null), grad, ...tail(P, dS)],
      };
    }
  }
  if (keptAt !== null || (!v.dropout && attentionEpilogues())) {
    // scratch: 0 Δ and flags (the delta kernel's), then scale·dS, then (recomputed) P
    const info = { tmp: 0 }, dS = { tmp: 1 };
    const P = keptAt !== null ? { in: keptAt } : { tmp: 2 };
    return {
      temps: keptAt !== null
        ? [rows * 2 * 4, rows * S * 4]
        : [rows * 2 * 4, rows * S * 4, rows * S * 4],
      kernels: [
        delta,
        ...recomputeP(P, info),
        product([qv, kv], { scoresGrad: { scale: p.scale } }, [{ in: 5 }, { in: 2 }, P, info, dS]),
        ...tail(P, dS),
      ],
    };
  }
  const vec = S % 4 === 0; // the elementwise kernel four scores per thread
  const bufs: Buf[] = [
    ["z", "read_write", vec ? "vec4f" : "f32"],
    ["dp", "read_write", vec ? "vec4f" : "f32"],
    ["lse", "read", "f32"],
    ["info", "read", "f32"],
  ];
  if (v.mask) bufs.push(["mask", "read", v.mask]);
  // scratch: 0 Δ and flags (the delta kernel's), 1 Z then P̃, 2 dP then scale·dS
  const Z = { tmp: 1 }, dP = { tmp: 2 };
  return {
    temps: [rows * 2 * 4, rows * S * 4, rows * S * 4],
    kernels: [
      delta,
      headsProduct(g, [T, S, D], [false, true], [qv, kv, zv], [{ in: 0 }, { in: 1 }, Z]),
      headsProduct(g, [T, S, D], [false, true], [qv, kv, zv], [{ in: 5 }, { in: 2 }, dP]),
      {
        code: kernelCode(`mmgrad${+vec}`, v, () => mmGradWgsl(header(bufs) + common(v), vec)),
        bind: [Z, dP, { in: 4 }, { tmp: 0 }, ...(p.hasMask ? [{ in: 6 }] : [])],
        uniform: uniform(g, p),
        workgroups: grid1d((rows * S) / (vec ? 4 : 1), MM_GRAD_WG),
      },
      // dV = P̃ᵀ·dO: P̃ stored [T, S] is op(a)ᵀ
      headsProduct(g, [S, D, T], [true, false], [zv, qv, kv], [Z, { in: 5 }, { out: 2 }]),
      headsProduct(g, [T, D, S], [false, false], [zv, kv, qv], [dP, { in: 1 }, { out: 0 }]),
      headsProduct(g, [S, D, T], [true, false], [zv, qv, kv], [dP, { in: 0 }, { out: 1 }]),
    ],
  };
}

let forcedEpilogues: boolean | null | undefined; // undefined: not read from the environment yet

/**
 * Whether the "mm" kernels compute the softmax (forward) and Δ, P and dS
 * (backward, without dropout) in the epilogues of their products (the
 * default) or in kernels of their own (`false`, as before session 15: one
 * dispatch more forward, two backward; with kept probabilities the
 * backward's dS stays an epilogue). `WEBSEQ_ATTENTION_EPILOGUES=on|off|auto`; for comparisons on a
 * card.
 */
export function attentionEpilogues(): boolean {
  if (forcedEpilogues === undefined) {
    const v = grantedEnv("WEBSEQ_ATTENTION_EPILOGUES");
    if (v && v !== "on" && v !== "off" && v !== "auto") {
      throw new TypeError(`WEBSEQ_ATTENTION_EPILOGUES: expected on, off or auto, got "${v}"`);
    }
    forcedEpilogues = v === "on" ? true : v === "off" ? false : null;
  }
  return forcedEpilogues ?? true;
}

/** Forces {@linkcode attentionEpilogues} (`null`: the default, on); overrides the environment. */
export function useAttentionEpilogues(on: boolean | null): void {
  forcedEpilogues = on;
}

// ---------------------------------------------------------------- kernel selection

export {
  ATTENTION_CODEGEN_VERSION,
  ATTENTION_TILES,
  type AttentionKernel,
  type AttentionLimits,
  type AttentionShape,
  attentionShapeKey,
  type AttentionTile,
  attentionTileName,
  attentionTunedTable,
  clearAttentionTuning,
  defaultAttentionKernel,
  fittingAttentionTiles,
  forcedAttentionKernel,
  loadAttentionTunedTable,
  parseAttentionTileName,
  selectAttentionKernel,
  setTunedAttentionKernel,
  tileThreads as attentionTileThreads,
  tunedAttentionKernel,
  useAttentionKernel,
} from "./_attention_tiled.ts";

// ---------------------------------------------------------------- ops

/**
 * The attention op: inputs `[q, k, v]` or `[q, k, v, keyMask]`, outputs
 * `[out [B, H, T, D], lse [B, H, T]]` (layout "BTHD": `[B, T, H, D]` and
 * `[B, T, H]`).
 */
export const ATTENTION: OpDef<AttentionParams> = {
  name: "attention",
  outputs(inputs, p) {
    checkParams(p, "attention");
    if (inputs.length !== (p.hasMask ? 4 : 3)) {
      throw new TypeError(`attention: expected ${p.hasMask ? 4 : 3} inputs, got ${inputs.length}`);
    }
    const g = geometry(inputs, p, "attention");
    const dtype = inputs[0].dtype;
    const outs = [{ shape: headsShape(g, g.T), dtype }, { shape: rowsShape(g), dtype }];
    if (p.keepProbs) {
      checkProbs(g, "attention");
      outs.push({ shape: probsShape(g), dtype });
    }
    return outs;
  },
  cpu(ins, outs, info, p) {
    const g = geometry(info.inputs, p, "attention");
    // the kept probabilities (a WebGPU training cache) from the reference, which has them
    if (p.keepProbs) return attentionCpu(ins, outs, g, p);
    if (attentionWasmF32(ins, outs, g, p)) return;
    if (!attentionFastF32(ins, outs, g, p)) attentionCpu(ins, outs, g, p);
  },
  gpu(info, p): GpuPlan {
    const g = geometry(info.inputs, p, "attention");
    const v = variantOf(info.inputs, g, p, 3);
    const bind: GpuKernel["bind"] = [{ in: 0 }, { in: 1 }, { in: 2 }];
    if (p.hasMask) bind.push({ in: 3 });
    bind.push({ out: 0 }, { out: 1 });
    const kernel = kernelFor("fwd", g, p);
    // the kept probabilities are the "mm" kernels' scores
    if (kernel === "mm" || p.keepProbs) return mmForwardPlan(g, p, v);
    if (kernel !== "rows") {
      const name = `tfwd${attentionTileName(kernel)}`;
      return {
        kernels: [{
          code: kernelCode(name, v, () => tiledForwardWgsl(v, kernel, prelude(v))),
          bind,
          uniform: uniform(g, p),
          workgroups: grid1d(g.B * g.H * Math.ceil(g.T / kernel.R), 1),
        }],
      };
    }
    return {
      kernels: [{
        code: kernelCode("fwd", v, () => forwardKernel(v)),
        bind,
        uniform: uniform(g, p),
        workgroups: grid1d(g.B * g.H * g.T, WG_ROWS),
      }],
    };
  },
  backward(ctx, [dOut, dLse, dProbs]) {
    if (dProbs) throw new TypeError("attention: the kept probabilities have no gradient");
    const { keepProbs: _, ...p } = ctx.params;
    const [q, k, v] = ctx.inputs as Tensor[];
    const mask = p.hasMask ? ctx.inputs[3] as Tensor : null;
    let [o, lse] = ctx.outputs as Tensor[];
    const probs = ctx.params.keepProbs ? ctx.outputs[2] as Tensor : null;
    const made: Tensor[] = [];
    // the kept probabilities, unless freed (then with the other outputs, recomputed without)
    const kept = probs !== null && !probs.disposed && !o.disposed && !lse.disposed;
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
    if (kept) ins.push(probs);
    const bp: AttentionBackwardParams = { ...p, hasDLse: dLse !== null };
    if (kept) bp.keepProbs = true;
    const [dq, dk, dv] = apply(ATTENTION_BACKWARD, ins, bp);
    for (const t of made) t.dispose();
    probs?.dispose(); // its only reader is done: freed now, not at the end of the step
    return [dq, dk, dv, null];
  },
};

/**
 * The fused attention backward: inputs `[q, k, v, out, lse, dOut, keyMask?,
 * dLse?, probs?]` (`probs`: {@linkcode ATTENTION}'s kept probabilities, with
 * `keepProbs`), outputs `[dq, dk, dv]`. `out` and `lse` must be what
 * {@linkcode ATTENTION} gives for these q, k, v and mask: where a tile holds
 * whole rows the "mm" kernels take `Δ = Σ_s P·dP` from the rows, which equals
 * `dO·out` only then.
 */
export const ATTENTION_BACKWARD: OpDef<AttentionBackwardParams> = {
  name: "attention_backward",
  outputs(inputs, p) {
    checkParams(p, "attention_backward");
    const n = 6 + (p.hasMask ? 1 : 0) + (p.hasDLse ? 1 : 0) + (p.keepProbs ? 1 : 0);
    if (inputs.length !== n) {
      throw new TypeError(`attention_backward: expected ${n} inputs, got ${inputs.length}`);
    }
    const base = [inputs[0], inputs[1], inputs[2]];
    if (p.hasMask) base.push(inputs[6]);
    const g = geometry(base, p, "attention_backward");
    const outShape = headsShape(g, g.T), rowShape = rowsShape(g);
    const same = (t: TensorInfo, s: Shape) =>
      t.shape.length === s.length && t.shape.every((d, i) => d === s[i]);
    if (!same(inputs[3], outShape) || !same(inputs[5], outShape)) {
      throw new TypeError(
        `attention_backward: out and dOut must be ${fmtShape(outShape)}, got ${
          fmtShape(inputs[3].shape)
        } and ${fmtShape(inputs[5].shape)}`,
      );
    }
    const dLseAt = 6 + (p.hasMask ? 1 : 0);
    if (!same(inputs[4], rowShape) || (p.hasDLse && !same(inputs[dLseAt], rowShape))) {
      throw new TypeError(`attention_backward: lse and dLse must be ${fmtShape(rowShape)}`);
    }
    if (p.keepProbs) {
      checkProbs(g, "attention_backward");
      if (!same(inputs[n - 1], probsShape(g))) {
        throw new TypeError(
          `attention_backward: probs must be ${fmtShape(probsShape(g))}, got ${
            fmtShape(inputs[n - 1].shape)
          }`,
        );
      }
    }
    return [0, 1, 2].map((i) => ({ shape: inputs[i].shape, dtype: inputs[i].dtype }));
  },
  cpu(ins, outs, info, p) {
    const base = [info.inputs[0], info.inputs[1], info.inputs[2]];
    if (p.hasMask) base.push(info.inputs[6]);
    const g = geometry(base, p, "attention_backward");
    if (attentionBackwardWasmF32(ins, outs, g, p)) return;
    if (!attentionBackwardFastF32(ins, outs, g, p)) attentionBackwardCpu(ins, outs, g, p);
  },
  gpu(info, p): GpuPlan {
    const base = [info.inputs[0], info.inputs[1], info.inputs[2]];
    if (p.hasMask) base.push(info.inputs[6]);
    const g = geometry(base, p, "attention_backward");
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
    const delta: GpuKernel = {
      code: kernelCode(`delta${+p.hasDLse}`, v, () => deltaKernel(v, p.hasDLse)),
      bind: deltaBind,
      uniform: u,
      workgroups: grid1d(BH * g.T, WG_ROWS),
    };
    const kernel = kernelFor("bwd", g, p);
    if (p.keepProbs) return mmBackwardPlan(g, p, v, delta, info.inputs.length - 1);
    if (kernel === "mm") return mmBackwardPlan(g, p, v, delta);
    if (kernel !== "rows") {
      const name = attentionTileName(kernel);
      const bufs = backwardBufs(v);
      return {
        temps: [BH * g.T * 2 * 4],
        kernels: [
          delta,
          {
            code: kernelCode(`tdkv${name}`, v, () =>
              tiledDkvWgsl(v, kernel, prelude(v), [
                ...bufs,
                ["dk", "read_write", "vec4f"],
                ["dv", "read_write", "vec4f"],
              ])),
            bind: [...common, { out: 1 }, { out: 2 }],
            uniform: u,
            workgroups: grid1d(BH * Math.ceil(g.S / kernel.R), 1),
          },
          {
            code: kernelCode(
              `tdq${name}`,
              v,
              () => tiledDqWgsl(v, kernel, prelude(v), [...bufs, ["dq", "read_write", "vec4f"]]),
            ),
            bind: [...common, { out: 0 }],
            uniform: u,
            workgroups: grid1d(BH * Math.ceil(g.T / kernel.R), 1),
          },
        ],
      };
    }
    return {
      temps: [BH * g.T * 2 * 4],
      kernels: [
        delta,
        ...(g.D > ATTENTION_SPLIT_DKV_D
          ? (["dv", "dk"] as const).map((part) => ({
            code: kernelCode(part, v, () => dkvKernel(v, part)),
            bind: [
              ...dkvInputs(v, part).map((i) => common[i]),
              { out: part === "dk" ? 1 : 2 },
            ],
            uniform: u,
            workgroups: grid1d(BH * g.S, WG_ROWS),
          }))
          : [{
            code: kernelCode("dkv", v, () => dkvKernel(v)),
            bind: [...common, { out: 1 }, { out: 2 }],
            uniform: u,
            workgroups: grid1d(BH * g.S, WG_ROWS),
          }]),
        {
          code: kernelCode("dq", v, () => dqKernel(v)),
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
 * q `[B, H, T, D]`, k and v `[B, H, S, D]` → `[B, H, T, D]`; with
 * `layout: "BTHD"`, q `[B, T, H, D]`, k and v `[B, S, H, D]` → `[B, T, H, D]`.
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
  if (opts.layout) params.layout = opts.layout;
  const inputs = opts.keyMask ? [q, k, v, opts.keyMask] : [q, k, v];
  if (keepsProbs(inputs, params)) params.keepProbs = true;
  return apply(ATTENTION, inputs, params)[0];
}

/**
 * What the training backward of attention does for the probabilities
 * `softmax(scale·q·kᵀ)`: `"recomputed"` from `q`, `k` and `lse` (no
 * `[B, H, T, S]` array kept), or `"kept"` (the default): where the backward
 * runs the "mm" kernels on WebGPU and attention dropout is 0, the forward's
 * probabilities (the scores buffer it writes anyway) stay alive until the
 * backward, which then skips the `Q·Kᵀ` product — one
 * `4·B·H·T·S` bytes per attention call more, freed by the call's backward (or
 * with the step's other tensors when no gradient reaches it), as PyTorch's eager attention keeps
 * them (603 MB at `base`'s batch, 18 calls of 64·8·128·128).
 */
export type AttentionProbs = "recomputed" | "kept";

let forcedProbs: AttentionProbs | null | undefined; // undefined: not read from the environment yet

function checkProbsMode(v: string, what: string): AttentionProbs | null {
  if (v === "auto") return null;
  if (v !== "recomputed" && v !== "kept") {
    throw new TypeError(`${what}: expected recomputed, kept or auto, got "${v}"`);
  }
  return v;
}

/**
 * Forces what attention's backward does with the probabilities (`null` or
 * `"auto"`: {@linkcode DEFAULT_ATTENTION_PROBS}); overrides
 * `WEBSEQ_ATTENTION_PROBS`.
 */
export function useAttentionProbs(mode: AttentionProbs | "auto" | null): void {
  forcedProbs = mode === null ? null : checkProbsMode(mode, "useAttentionProbs");
}

/**
 * "kept" (since session 15): the backward then skips a product it would
 * recompute (0.919 ms of an H100 `base` step), for memory PyTorch's eager
 * attention spends too (`useActivations` in ops/activations.ts switches it
 * with the GELU activations).
 */
export const DEFAULT_ATTENTION_PROBS: AttentionProbs = "kept";

/** What attention's backward does with the probabilities now. */
export function attentionProbs(): AttentionProbs {
  if (forcedProbs === undefined) {
    const v = grantedEnv("WEBSEQ_ATTENTION_PROBS");
    forcedProbs = v ? checkProbsMode(v, "WEBSEQ_ATTENTION_PROBS") : null;
  }
  return forcedProbs ?? DEFAULT_ATTENTION_PROBS;
}

/**
 * Whether an attention call keeps its probabilities for the backward: in
 * "kept" mode, on WebGPU, when a gradient will flow to q, k or v, without
 * dropout, within the "mm" kernels' limits, and where both the forward's and
 * the backward's kernel are "mm" (forced, tuned or the default; the kept
 * probabilities are the "mm" forward's scores, and a tuned tile is not
 * overridden).
 */
function keepsProbs(inputs: Tensor[], p: AttentionParams): boolean {
  const [q, k, v] = inputs;
  if (
    attentionProbs() !== "kept" || q.backend.kind !== "webgpu" || p.dropoutP > 0 ||
    !isGradEnabled() || !(q.requiresGrad || k.requiresGrad || v.requiresGrad)
  ) return false;
  const g = geometry(inputs, p, "attention");
  return mmFits(g.B * g.H, g.T, g.S) && kernelFor("fwd", g, p) === "mm" &&
    kernelFor("bwd", g, p) === "mm";
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
  /** "BTHD": token-major q/k/v (default heads-major). */
  layout?: AttentionLayout;
  /** The probabilities kept for the backward (`AttentionParams.keepProbs`). */
  keepProbs?: boolean;
}

/** q/k/v shape of a case with L positions. */
function caseShape(c: CaseSpec, L: number): number[] {
  return c.layout === "BTHD" ? [c.B, L, c.H, c.D] : [c.B, c.H, L, c.D];
}

function forwardCase(c: CaseSpec): OpCase {
  const r = c.range ?? 1;
  const inputs: OpCase["inputs"] = [
    { shape: caseShape(c, c.T), min: -r, max: r },
    { shape: caseShape(c, c.S), min: -r, max: r },
    { shape: caseShape(c, c.S) },
  ];
  if (c.lens) {
    inputs.push({
      shape: [c.B, c.S],
      values: maskValues(c.B, c.S, c.lens),
      noGrad: true,
      ...(c.maskI32 ? { dtype: "i32" as const } : {}),
    });
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
      ...(c.layout ? { layout: c.layout } : {}),
      ...(c.keepProbs ? { keepProbs: true } : {}),
    } satisfies AttentionParams,
    gradOutputs: c.gradLse ? [0, 1] : [0],
    noGradCheck: c.noGradCheck,
    tol: c.tol,
  };
}

function backwardCase(c: CaseSpec): OpCase {
  const f = forwardCase(c);
  const { B, H, T } = c;
  const rows = c.layout === "BTHD" ? [B, T, H] : [B, H, T];
  const inputs = f.inputs.slice(0, 3);
  inputs.push(
    { shape: caseShape(c, T) },
    { shape: rows, min: 0, max: 2 },
    { shape: caseShape(c, T) },
  );
  if (c.lens) inputs.push(f.inputs[3]);
  if (c.gradLse) inputs.push({ shape: rows });
  if (c.keepProbs) inputs.push({ shape: [B, H, T, c.S] });
  const fwdInfos: TensorInfo[] = f.inputs.map((s) => ({ shape: s.shape, dtype: s.dtype ?? "f64" }));
  return {
    label: c.label,
    inputs,
    // out and lse as the forward makes them: with random ones, exp(s − lse)
    // of the "large q/k" scores overflows f32 where the f64 reference does not
    derive(ins) {
      const g = geometry(fwdInfos, f.params, "attention_backward case");
      const fwd = [ins[0], ins[1], ins[2]];
      if (c.lens) fwd.push(ins[6]);
      const out = new Float64Array(ins[3].length), lse = new Float64Array(ins[4].length);
      const probs = c.keepProbs ? new Float64Array(B * H * T * c.S) : null;
      attentionCpu(fwd, probs ? [out, lse, probs] : [out, lse], g, f.params);
      ins[3] = out.map(Math.fround);
      ins[4] = lse.map(Math.fround);
      if (probs) ins[ins.length - 1] = probs.map(Math.fround);
    },
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
  // D > ATTENTION_SPLIT_DKV_D: dV and dK from two kernels (dV's without the Δ buffer unmasked)
  { label: "D=48 unmasked", B: 1, H: 2, T: 5, S: 6, D: 48, noGradCheck: true },
  {
    label: "D=34 BTHD causal dropout",
    B: 2,
    H: 1,
    T: 5,
    S: 5,
    D: 34,
    lens: [5, 2],
    causal: true,
    dropoutP: 0.2,
    layout: "BTHD",
    noGradCheck: true,
  },
  // token-major layout [B, T, H, D]: what nn/attention.ts uses
  { label: "BTHD padding", B: 2, H: 3, T: 5, S: 7, D: 4, lens: [7, 4], layout: "BTHD" },
  {
    label: "BTHD causal+padding",
    B: 2,
    H: 2,
    T: 6,
    S: 6,
    D: 3,
    lens: [6, 3],
    causal: true,
    layout: "BTHD",
  },
  {
    label: "BTHD cross S≠T lse grad",
    B: 2,
    H: 2,
    T: 3,
    S: 5,
    D: 4,
    lens: [5, 2],
    gradLse: true,
    layout: "BTHD",
  },
  { label: "BTHD causal T<S", B: 1, H: 2, T: 3, S: 7, D: 5, causal: true, layout: "BTHD" },
  {
    label: "BTHD kv-cache T=1",
    B: 2,
    H: 2,
    T: 1,
    S: 6,
    D: 8,
    lens: [6, 4],
    causal: true,
    layout: "BTHD",
  },
  { label: "BTHD size-1", B: 1, H: 1, T: 1, S: 1, D: 1, layout: "BTHD" },
  { label: "BTHD H=1 B=1", B: 1, H: 1, T: 4, S: 3, D: 2, lens: [2], layout: "BTHD" },
  {
    label: "BTHD fully masked causal",
    B: 2,
    H: 2,
    T: 4,
    S: 4,
    D: 4,
    lens: [0, 3],
    causal: true,
    layout: "BTHD",
  },
  {
    label: "BTHD dropout",
    B: 2,
    H: 2,
    T: 5,
    S: 6,
    D: 4,
    lens: [6, 3],
    causal: true,
    dropoutP: 0.3,
    layout: "BTHD",
  },
  {
    label: "BTHD i32 mask",
    B: 2,
    H: 2,
    T: 3,
    S: 4,
    D: 4,
    lens: [4, 0],
    maskI32: true,
    layout: "BTHD",
  },
  {
    label: "BTHD tiles causal",
    B: 1,
    H: 3,
    T: 37,
    S: 37,
    D: 16,
    lens: [30],
    causal: true,
    dropoutP: 0.2,
    noGradCheck: true,
    layout: "BTHD",
  },
  // the probabilities kept for the backward (the "mm" kernels whatever the selection)
  {
    label: "kept probs BTHD causal+padding, a fully masked row",
    B: 3,
    H: 2,
    T: 6,
    S: 6,
    D: 3,
    lens: [6, 3, 0],
    causal: true,
    layout: "BTHD",
    keepProbs: true,
  },
  {
    label: "kept probs fully masked vec4 lse grad",
    B: 2,
    H: 2,
    T: 5,
    S: 8,
    D: 4,
    lens: [6, 0],
    gradLse: true,
    keepProbs: true,
  },
];

/** Registry entries of the attention ops. */
export const ATTENTION_ENTRIES: OpEntry[] = [
  { op: ATTENTION, cases: CASES.map(forwardCase) },
  { op: ATTENTION_BACKWARD, cases: CASES.map(backwardCase) },
];
