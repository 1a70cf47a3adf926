/**
 * `dropout` with the counter-based hash of tensor/rng.ts: element `i` is kept
 * where `hashUniform(seed, i) >= p` and kept values are scaled by `1/(1 − p)`.
 * CPU and GPU evaluate the same hash (`hashU32` / `WGSL_HASH`), so the masks
 * are identical bit for bit. The comparison is done on the 24-bit integer
 * `hashU32(seed, i) >>> 8 >= ceil(p·2²⁴)`, which is `hashUniform(seed, i) >= p`
 * exactly, with no float32 rounding of `p` on either side.
 *
 * The backward applies the same mask (recomputed from the seed, never stored)
 * to `dy`. `p = 0` keeps everything (scale 1); `p = 1` drops everything.
 *
 * @example
 * ```ts
 * import { dropout, ones } from "@webseq/webseq";
 * const y = dropout(ones([8]), 0.5, 1234);
 * console.log(await y.toArray()); // each entry 0 or 2
 * ```
 *
 * @module
 */
import { apply, type Tensor } from "../tensor/tensor.ts";
import { hashU32, WGSL_HASH } from "../tensor/rng.ts";
import { type OpDef, packUniform, sizeOf } from "../tensor/types.ts";
import { grid1d, LINEAR_INDEX, MAIN_1D } from "./_wgsl.ts";
import type { OpEntry } from "./registry.ts";
import { dropoutF32 } from "./_cpu_threads_kernels.ts";

/** Parameters of {@linkcode DROPOUT}. */
export interface DropoutParams {
  /** Probability of dropping an element, in [0, 1]. */
  p: number;
  /** Mask seed (used as u32). */
  seed: number;
}

/** Keep threshold on the 24-bit hash: keep iff `hashU32(seed, i) >>> 8 >= threshold`. */
export function dropoutThreshold(p: number): number {
  return Math.ceil(p * 16777216);
}

/** The scale of kept elements, `1/(1 − p)` (0 at p = 1). */
export function dropoutScale(p: number): number {
  return p < 1 ? 1 / (1 - p) : 0;
}

/** Whether dropout keeps element `i` (the mask the CPU and GPU share). */
export function dropoutKeeps(p: number, seed: number, i: number): boolean {
  return hashU32(seed >>> 0, i) >>> 8 >= dropoutThreshold(p);
}

/** Dropout (the mask is a function of seed and element index only). */
export const DROPOUT: OpDef<DropoutParams> = {
  name: "dropout",
  overwrites: true,
  outputs([x], p) {
    if (x.dtype === "i32") throw new TypeError("Cannot dropout: needs a float tensor, got i32");
    if (!(p.p >= 0 && p.p <= 1)) throw new RangeError(`dropout: p must be in [0, 1], got ${p.p}`);
    if (!Number.isInteger(p.seed)) {
      throw new TypeError(`dropout: seed must be an integer, got ${p.seed}`);
    }
    return [{ shape: x.shape, dtype: x.dtype }];
  },
  cpu([x], [out], _info, p) {
    const thr = dropoutThreshold(p.p), s = dropoutScale(p.p), seed = p.seed >>> 0;
    // f32: the same arithmetic in WebAssembly on the CPU threads (ops/_cpu_threads_kernels.ts)
    if (
      x instanceof Float32Array && out instanceof Float32Array && dropoutF32(x, out, seed, thr, s)
    ) return;
    for (let i = 0; i < out.length; i++) {
      out[i] = hashU32(seed, i) >>> 8 >= thr ? x[i] * s : 0;
    }
  },
  gpu(info, p) {
    const n = sizeOf(info.inputs[0].shape);
    return {
      kernels: [{
        code: `${WGSL_HASH}
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
struct U { n: u32, seed: u32, thr: u32, scale: f32 }
@group(0) @binding(2) var<uniform> u: U;
${MAIN_1D()} {
  ${LINEAR_INDEX()}
  if (i >= u.n) { return; }
  out[i] = select(0.0, x[i] * u.scale, (hash_u32(u.seed, i) >> 8u) >= u.thr);
}`,
        bind: [{ in: 0 }, { out: 0 }],
        uniform: packUniform([n, p.seed >>> 0, dropoutThreshold(p.p)], [dropoutScale(p.p)]),
        workgroups: grid1d(n),
      }],
    };
  },
  backward(c, [dy]) {
    // the same mask and scale, recomputed from the seed
    return [apply(DROPOUT, [dy as Tensor], c.params)[0]];
  },
};

/**
 * Zeroes each element with probability `p` (where `hashUniform(seed, i) < p`)
 * and scales the rest by `1/(1 − p)`. Same mask on CPU and GPU.
 */
export function dropout(x: Tensor, p: number, seed: number): Tensor {
  return apply(DROPOUT, [x], { p, seed })[0];
}

/** Registry entries of this file (see tests/ops_registry_test.ts). */
export const DROPOUT_ENTRIES: OpEntry[] = [{
  op: DROPOUT,
  cases: [
    { inputs: [{ shape: [3, 5] }], params: { p: 0.1, seed: 7 } },
    { inputs: [{ shape: [2, 1, 67] }], params: { p: 0.5, seed: 123456789 } },
    { inputs: [{ shape: [1] }], params: { p: 0, seed: 1 } },
    { inputs: [{ shape: [300] }], params: { p: 1, seed: 3 } },
    { inputs: [{ shape: [1000] }], params: { p: 0.3, seed: 0xfffffff0 } },
  ],
}];
