/**
 * The softmax rows of the CPU attention matmul path (ops/attention.ts
 * `attentionFastF32` and its backward): the scores of every head's query rows
 * at once, heads-major.
 *
 * @module
 */
import type { CpuArray } from "../tensor/types.ts";
import { expF64 } from "./_exp.ts";
import { softmaxRowsF32 } from "./_cpu_threads_kernels.ts";

/** Batch rows B, heads H, query rows T and keys S of {@linkcode softmaxRows}. */
export interface RowsGeometry {
  /** Batch rows. */
  B: number;
  /** Heads. */
  H: number;
  /** Query rows per head. */
  T: number;
  /** Keys per row. */
  S: number;
}

/**
 * Fills `prob` (f32 [BH·T·S], heads-major) with softmax(z·scale +
 * mask) and `lse` (row `rows[r]` of heads-major row r; the identity when
 * null); fully masked rows are uniform. With `lseIn`, prob = exp(z·scale −
 * lse) (the backward). z is left scaled, −∞ off the allowed keys, and
 * `allowedAny[r]` says whether row r has an allowed key. f32 runs in
 * WebAssembly on the CPU threads, the same bits as the loop (tested in
 * ops/_cpu_threads_kernels_test.ts).
 */
export function softmaxRows(
  z: Float32Array,
  mask: CpuArray | null,
  lseIn: CpuArray | null,
  lseOut: CpuArray | null,
  g: RowsGeometry,
  p: { causal: boolean; scale: number },
  prob: Float32Array,
  allowedAny: Uint8Array,
  rows: Int32Array | null,
): void {
  const { H, T, S } = g, BH = g.B * H;
  // f32 in WebAssembly on the CPU threads (the same bits as the loop below)
  const stats = new Float64Array(2 * BH * T);
  if (lseIn) { for (let r = 0; r < BH * T; r++) stats[2 * r] = lseIn[rows ? rows[r] : r]; }
  const allowed = mask ? Float32Array.from(mask, (v) => (v !== 0 ? 1 : 0)) : null;
  const o = { T, S, H, causal: p.causal, scale: p.scale, lseIn: lseIn !== null };
  if (softmaxRowsF32(z, prob, allowed, stats, o)) {
    for (let r = 0; r < BH * T; r++) {
      const none = stats[2 * r + (lseIn ? 1 : 0)] === -Infinity;
      allowedAny[r] = none ? 0 : 1;
      if (lseOut) {
        lseOut[rows ? rows[r] : r] = none ? Math.log(S) : stats[2 * r] + Math.log(stats[2 * r + 1]);
      }
    }
    return;
  }
  for (let bh = 0; bh < BH; bh++) {
    const b = Math.floor(bh / H);
    for (let t = 0; t < T; t++) {
      const r = bh * T + t, base = r * S, lim = p.causal ? t + S - T : S - 1;
      const lr = rows ? rows[r] : r;
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
        if (lseOut) lseOut[lr] = Math.log(S);
        continue;
      }
      allowedAny[r] = 1;
      if (lseIn) {
        const l = lseIn[lr];
        for (let s = 0; s < S; s++) prob[base + s] = expF64(z[base + s] - l);
      } else {
        let sum = 0;
        for (let s = 0; s < S; s++) sum += prob[base + s] = expF64(z[base + s] - m);
        for (let s = 0; s < S; s++) prob[base + s] /= sum;
        if (lseOut) lseOut[lr] = m + Math.log(sum);
      }
    }
  }
}
