/**
 * The second half of a GELU feed-forward network as one op:
 * `y = dropout(gelu(u)) · Wᵀ + b` with `u [..., F]`, `W [C, F]` (PyTorch's
 * Linear layout), `b [C]` optional, `y [..., C]` — so the `F`-wide
 * activation `dropout(gelu(u))` is never stored. Only `u` is saved for the
 * backward, where the unfused `fc2(dropout(gelu(u)))` keeps three `F`-wide
 * tensors alive per block (u, gelu(u), its dropout); `F` is the widest
 * activation of a transformer (4·C).
 *
 * On WebGPU each op here is one matmul kernel of ops/_matmul_wgsl.ts with a
 * GELU stage: one elementwise pass writing `dropout(gelu(u))`, by default
 * ({@linkcode DEFAULT_GELU_STAGE}, "kept") kept when training for the weight
 * gradient (see {@linkcode GeluStage}), with {@linkcode useGeluStage}("separate")
 * into scratch memory freed when the op ends (so nothing F-wide beyond u is
 * kept for the backward, which runs the pass again), and with
 * {@linkcode useGeluStage}("fused") fused in:
 *
 * - forward: A-operand loads pass through `dropout(gelu(·))` (the mask
 *   of element `i` of `u` is ops/dropout.ts's, by the same seed), bias in
 *   the epilogue;
 * - {@linkcode GELU_LINEAR_GRAD}: `du = gelu'(u) ⊙ dropout(dy · W)`, the
 *   mask and `gelu'` in the epilogue;
 * - {@linkcode GELU_WEIGHT_GRAD}: `dW = dyᵀ · dropout(gelu(u))`, the
 *   activation recomputed as the kernel loads `u`, and `db = Σ_rows dy`
 *   summed by the same kernel (ops/matmul.ts LINEAR_GRAD's row sums).
 *
 * The CPU references compose the unfused ops' CPU kernels (GELU, dropout,
 * matmul, GELU_GRAD), so on the CPU the fused op gives the numbers of
 * `matmulBias(dropout(gelu(u)), W, b, { transB: true })` exactly. With
 * `half` (f16 autocast) the matmuls are those of ops/matmul_f16.ts — the
 * activation rounded to f16 as the kernel loads it — and the numbers are
 * those of `add(matmulF16(dropout(gelu(u)), W, { transB: true }), b)`.
 *
 * @example
 * ```ts
 * import { geluLinear, tensor, zeros } from "@webseq/webseq";
 * const y = geluLinear(tensor([1, -1], [1, 2]), tensor([1, 1], [1, 2]), zeros([1]));
 * console.log(await y.toArray()); // ≈ [0.6827] = gelu(1) + gelu(-1)
 * ```
 *
 * @module
 */
import { apply, applyInto, isGradEnabled, type Tensor } from "../tensor/tensor.ts";
import { cpuWrites } from "../tensor/cpu_backend.ts";
import {
  type BindRef,
  type CpuArray,
  fmtShape,
  type GpuKernel,
  type GpuPlan,
  type OpDef,
  type OpInfo,
  packUniform,
  sizeOf,
  type TensorInfo,
} from "../tensor/types.ts";
import { GELU, GELU_GRAD } from "./elementwise.ts";
import { DROPOUT } from "./dropout.ts";
import {
  addRows,
  LINEAR_GRAD,
  MATMUL,
  matmulCpu,
  matmulGeometry,
  matmulKernel,
  matmulPlan,
  sumRows,
} from "./matmul.ts";
import {
  accumulateParts,
  checkAccumulate,
  halfF32,
  LINEAR_GRAD_F16,
  type MatmulF16Accumulate,
  productF16Cpu,
} from "./matmul_f16.ts";
import { geluStageWgsl, type MatmulHalf } from "./_matmul_wgsl.ts";
import { grid1d } from "./_wgsl.ts";
import { dropoutScale, dropoutThreshold } from "./dropout.ts";
import { sumTo } from "./reduce.ts";
import type { OpEntry } from "./registry.ts";
import { grantedEnv } from "../tensor/env.ts";

/** Parameters of the GELU-linear ops: the dropout after the GELU, and the precision. */
export interface GeluLinearParams {
  /** Dropout probability in [0, 1] (0: none). */
  dropoutP: number;
  /** Dropout seed (u32). */
  dropoutSeed: number;
  /**
   * f16 autocast (nn/layers.ts): the matmuls of ops/matmul_f16.ts — operands
   * rounded to f16 as they load, accumulated per this mode, the gradients of
   * the f32 operands rounded to f16 values; the bias gradient sums the
   * unrounded f32 `dy` (in the weight gradient's kernel). Absent: f32.
   */
  half?: MatmulF16Accumulate;
  /**
   * Also output `dropout(gelu(u))` `[..., F]` ({@linkcode GELU_LINEAR} only),
   * for the weight gradient to read instead of computing it again (the
   * `"kept"` GELU stage: {@linkcode geluLinear} sets it when training on
   * WebGPU).
   */
  keep?: boolean;
}

function checkParams(p: GeluLinearParams, what: string): void {
  if (!(p.dropoutP >= 0 && p.dropoutP <= 1)) {
    throw new RangeError(`${what}: dropoutP must be in [0, 1], got ${p.dropoutP}`);
  }
  if (!Number.isInteger(p.dropoutSeed)) {
    throw new TypeError(`${what}: dropoutSeed must be an integer, got ${p.dropoutSeed}`);
  }
  if (p.half !== undefined) checkAccumulate(p.half, `${what}: half`);
}

/** The f16 kernel form of a GELU-linear matmul (`out`: f32, or f32 holding f16 values). */
function halfOf(p: GeluLinearParams, out: "f32" | "round"): MatmulHalf | undefined {
  return p.half ? halfF32(p.half, out) : undefined;
}

/** Rows N (all axes of u but the last) and widths F, C; checks u, W and (if given) b. */
function dims(
  u: TensorInfo,
  w: TensorInfo,
  b: TensorInfo | null,
  what: string,
): { N: number; F: number; C: number } {
  const F = u.shape[u.shape.length - 1];
  if (u.shape.length < 1 || u.dtype === "i32" || w.dtype === "i32") {
    throw new TypeError(`Cannot ${what}: needs float tensors, u ${fmtShape(u.shape)} ${u.dtype}`);
  }
  if (w.shape.length !== 2 || w.shape[1] !== F) {
    throw new TypeError(
      `Cannot ${what}: weight ${fmtShape(w.shape)} must be [C, ${F}] for u ${fmtShape(u.shape)}`,
    );
  }
  const C = w.shape[0];
  if (b && (b.shape.length !== 1 || b.shape[0] !== C || b.dtype === "i32")) {
    throw new TypeError(`Cannot ${what}: bias ${fmtShape(b.shape)} must be f32 [${C}]`);
  }
  return { N: sizeOf(u.shape.slice(0, -1)), F, C };
}

/** `dropout(gelu(u))` into a new array (the activation the fused kernels recompute). */
function activation(u: CpuArray, p: GeluLinearParams): CpuArray {
  const g = new (u.constructor as new (n: number) => CpuArray)(u.length);
  const none = {} as OpInfo;
  GELU.cpu([u], [g], none, { a: 0 });
  if (p.dropoutP > 0) DROPOUT.cpu([g], [g], none, { p: p.dropoutP, seed: p.dropoutSeed });
  return g;
}

/**
 * The CPU forward's activation per `u` array, for the weight gradient of the
 * same step: there the GPU kernels recompute GELU (no memory for it), but on
 * the CPU the erf pass costs more than keeping the array (one `[N, F]` per
 * block until its backward, as PyTorch keeps it). Taken once, and only with
 * the same dropout and while no CPU storage was written in place since
 * (`cpuWrites()`), as the cross-entropy statistics cache is.
 */
const forwardActivations = new WeakMap<
  CpuArray,
  { g: CpuArray; dropoutP: number; dropoutSeed: number; writes: number }
>();

/** `activation(u, p)` kept from the forward when it is that exact array, else computed. */
function takeActivation(u: CpuArray, p: GeluLinearParams): CpuArray {
  const kept = forwardActivations.get(u);
  forwardActivations.delete(u);
  if (
    kept && kept.dropoutP === p.dropoutP && kept.dropoutSeed === p.dropoutSeed &&
    kept.writes === cpuWrites()
  ) return kept.g;
  return activation(u, p);
}

function info2(a: number[], b: number[]): OpInfo {
  return {
    inputs: [{ shape: a, dtype: "f32" }, { shape: b, dtype: "f32" }],
    outputs: [],
  } as OpInfo;
}

function dropoutOf(p: GeluLinearParams): { p: number; seed: number } | null {
  return p.dropoutP > 0 ? { p: p.dropoutP, seed: p.dropoutSeed } : null;
}

/**
 * How the WebGPU kernels apply the GELU stage: `"fused"` into the matmul's
 * operand loads (the activation never stored; each element's GELU is
 * computed once per output column block that reads it), or `"separate"`:
 * one elementwise pass writes `dropout(gelu(u))` to scratch memory, freed
 * when the op ends, and the matmul reads it plainly (the same numbers), or
 * `"kept"`: that pass writes a second output of {@linkcode GELU_LINEAR} when
 * training, which the weight gradient reads instead of running the pass again
 * (a Linear layer's weight gradient, the same kernel and numbers; one
 * `[..., F]` more per block until its backward, as PyTorch keeps it: 805 MB
 * at `base`'s batch, where the pass took 0.65 ms of a step on an H100).
 */
export type GeluStage = "fused" | "separate" | "kept";

let forcedStage: GeluStage | null | undefined; // undefined: not read from the environment yet

function envStage(): GeluStage | null {
  const v = grantedEnv("WEBSEQ_GELU_STAGE");
  if (!v || v === "auto") return null;
  if (v !== "fused" && v !== "separate" && v !== "kept") {
    throw new TypeError(`WEBSEQ_GELU_STAGE: expected fused, separate, kept or auto, got "${v}"`);
  }
  return v;
}

/**
 * Forces the GELU stage of the WebGPU kernels (`null`/`"auto"`: the
 * default, {@linkcode DEFAULT_GELU_STAGE}); overrides `WEBSEQ_GELU_STAGE`.
 */
export function useGeluStage(stage: GeluStage | "auto" | null): void {
  if (
    stage !== null && stage !== "auto" && stage !== "fused" && stage !== "separate" &&
    stage !== "kept"
  ) {
    throw new TypeError(`useGeluStage: expected fused, separate, kept or auto, got "${stage}"`);
  }
  forcedStage = stage === "auto" ? null : stage;
}

/**
 * The GELU stage when none is forced: "kept" (since session 15; "separate"
 * before). On an NVIDIA H200 (base preset, batch 64 × 128) the fused loads
 * computed each element's GELU once per 128-column block (4 times at C = 512)
 * and ran the products at 25 TFLOP/s against 32 for the plain kernel:
 * geluLinear 8.21 → 7.24 ms and geluWeightGrad 8.01 → 6.46 ms per step
 * separate, the pass included; "kept" drops the weight gradient's pass (0.65
 * ms of an H100 step) for one `[..., F]` per block until its backward, which
 * PyTorch keeps too (`useActivations` in ops/activations.ts switches it with attention's
 * probabilities).
 */
export const DEFAULT_GELU_STAGE: GeluStage = "kept";

/** The GELU stage the WebGPU kernels use now. */
export function geluStage(): GeluStage {
  if (forcedStage === undefined) forcedStage = envStage();
  return forcedStage ?? DEFAULT_GELU_STAGE;
}

/**
 * The "separate" GELU stage: `plan` (a matmul reading the activation from
 * input `from`) reads it from a new scratch buffer instead, which one
 * elementwise kernel run first fills with `dropout(gelu(input from))`
 * (`n` elements).
 */
function withGeluPass(
  plan: GpuPlan,
  from: number,
  n: number,
  p: GeluLinearParams,
  into: BindRef | null = null,
): GpuPlan {
  // the activation in scratch memory, or in output `into` (the "kept" stage)
  const temps = into ? [...(plan.temps ?? [])] : [...(plan.temps ?? []), n * 4];
  const h: BindRef = into ?? { tmp: temps.length - 1 };
  const vec = n % 4 === 0, units = vec ? n / 4 : n;
  const drop = p.dropoutP > 0;
  const key = `${+drop}${+vec}`;
  let code = stageCodes.get(key);
  if (!code) stageCodes.set(key, code = geluStageWgsl(drop, vec));
  const stage: GpuKernel = {
    code,
    bind: [{ in: from }, h],
    uniform: drop
      ? packUniform([units, p.dropoutSeed >>> 0, dropoutThreshold(p.dropoutP)], [
        dropoutScale(p.dropoutP),
      ])
      : packUniform([units]),
    workgroups: grid1d(units),
  };
  const kernels = plan.kernels.map((k) => ({
    ...k,
    bind: k.bind.map((r) => ("in" in r && r.in === from ? h : r)),
  }));
  return { ...(temps.length ? { temps } : {}), kernels: [stage, ...kernels] };
}

const stageCodes = new Map<string, string>();

/**
 * `y = dropout(gelu(u)) · Wᵀ (+ b)`: inputs `[u [..., F], W [C, F], b [C]?]`,
 * output `[..., C]`.
 */
export const GELU_LINEAR: OpDef<GeluLinearParams> = {
  name: "geluLinear",
  overwrites: true,
  outputs([u, w, b], p) {
    checkParams(p, "geluLinear");
    const { C } = dims(u, w, b ?? null, "geluLinear");
    const y = { shape: [...u.shape.slice(0, -1), C], dtype: u.dtype };
    return p.keep ? [y, { shape: u.shape, dtype: u.dtype }] : [y];
  },
  cpu([u, w, b], [out, kept], info, p) {
    const { N, F, C } = dims(info.inputs[0], info.inputs[1], null, "geluLinear");
    const g = activation(u, p);
    // kept as an output, or for the weight gradient of the same step (takeActivation)
    if (kept) kept.set(g);
    else {
      forwardActivations.set(u, {
        g,
        dropoutP: p.dropoutP,
        dropoutSeed: p.dropoutSeed,
        writes: cpuWrites(),
      });
    }
    if (p.half) {
      const mp = { transA: false, transB: true, round: false, ...accumulateParts(p.half) };
      productF16Cpu(g, w, out, [[N, F], [C, F], [N, C]], { ...mp, out: "f32" });
      if (b) addRows(out, b);
    } else {
      const mp = { transA: false, transB: true };
      matmulCpu(g, w, out, info2([N, F], [C, F]), mp, b ? { bias: b } : {});
    }
  },
  gpu(info, p) {
    const { N, F, C } = dims(info.inputs[0], info.inputs[1], null, "geluLinear");
    const mp = { transA: false, transB: true };
    const g = matmulGeometry([N, F], [C, F], mp, "geluLinear");
    const bias = info.inputs.length > 2;
    const half = halfOf(p, "f32");
    if (p.keep || geluStage() !== "fused") {
      const plan = { kernels: [matmulKernel(g, mp, { bias, half })] };
      return withGeluPass(plan, 0, N * F, p, p.keep ? { out: 1 } : null);
    }
    return {
      kernels: [matmulKernel(g, mp, { bias, geluIn: "a", dropout: dropoutOf(p), half })],
    };
  },
  backward(c, [dyAny]) {
    const dy = dyAny as Tensor;
    const [u, w, b] = c.inputs as Tensor[];
    // the "kept" stage's activation, when the forward kept it and it is still alive
    const kept = c.params.keep ? c.outputs[1] as Tensor : null;
    let dw: Tensor | null = null, db: Tensor | null = null;
    if (w.requiresGrad) {
      // the bias gradient from the same kernel (f16: the sums of the unrounded f32 dy); both
      // straight into the optimizer's flat buffer where it offers it
      const into = [c.gradSink?.(1), b ? c.gradSink?.(2) : null];
      // the kept activation: a Linear layer's weight gradient over it (the same kernel and
      // numbers as GELU_WEIGHT_GRAD's after its GELU pass)
      const { half, keep: _, ...rest } = c.params;
      const outs = kept && !kept.disposed
        ? (half
          ? applyInto(LINEAR_GRAD_F16, [dy, kept], { acc: half }, into)
          : applyInto(LINEAR_GRAD, [dy, kept], {}, into))
        : applyInto(GELU_WEIGHT_GRAD, [dy, u], { ...rest, ...(half ? { half } : {}) }, into);
      dw = outs[0];
      if (outs[1] && b?.requiresGrad) db = outs[1];
      else outs[1]?.dispose();
    }
    if (b?.requiresGrad && !db) db = sumTo(dy, b.shape);
    kept?.dispose(); // its only reader is done: freed now, not at the end of the step
    const { keep: _keep, ...gradParams } = c.params;
    return [u.requiresGrad ? apply(GELU_LINEAR_GRAD, [dy, w, u], gradParams)[0] : null, dw, db];
  },
};

/**
 * The input gradient of {@linkcode GELU_LINEAR}: inputs `[dy [..., C], W [C, F],
 * u [..., F]]`, output `du = gelu'(u) ⊙ dropout(dy · W)` `[..., F]` (the
 * dropout backward is the same mask and scale).
 */
export const GELU_LINEAR_GRAD: OpDef<GeluLinearParams> = {
  name: "geluLinearGrad",
  overwrites: true,
  outputs([dy, w, u], p) {
    checkParams(p, "geluLinearGrad");
    const { N, C } = dims(u, w, null, "geluLinearGrad");
    if (dy.shape[dy.shape.length - 1] !== C || sizeOf(dy.shape.slice(0, -1)) !== N) {
      throw new TypeError(
        `Cannot geluLinearGrad: dy ${fmtShape(dy.shape)} must be [..., ${C}] with u's rows`,
      );
    }
    return [{ shape: u.shape, dtype: u.dtype }];
  },
  cpu([dy, w, u], [out], info, p) {
    const { N, F, C } = dims(info.inputs[2], info.inputs[1], null, "geluLinearGrad");
    const dg = new (out.constructor as new (n: number) => CpuArray)(out.length);
    if (p.half) {
      const mp = { transA: false, transB: false, round: true, ...accumulateParts(p.half) };
      productF16Cpu(dy, w, dg, [[N, C], [C, F], [N, F]], { ...mp, out: "f32" });
    } else MATMUL.cpu([dy, w], [dg], info2([N, C], [C, F]), { transA: false, transB: false });
    const none = {} as OpInfo;
    if (p.dropoutP > 0) DROPOUT.cpu([dg], [dg], none, { p: p.dropoutP, seed: p.dropoutSeed });
    GELU_GRAD.cpu([u, dg], [out], none, { a: 0 });
  },
  gpu(info, p) {
    const { N, F, C } = dims(info.inputs[2], info.inputs[1], null, "geluLinearGrad");
    const mp = { transA: false, transB: false };
    const g = matmulGeometry([N, C], [C, F], mp, "geluLinearGrad");
    const half = halfOf(p, "round");
    return { kernels: [matmulKernel(g, mp, { geluGradOut: true, dropout: dropoutOf(p), half })] };
  },
};

/**
 * The weight and bias gradients of {@linkcode GELU_LINEAR}: inputs
 * `[dy [..., C], u [..., F]]`, outputs `dW = dyᵀ · dropout(gelu(u))` `[C, F]`
 * and `db = Σ_rows dy` `[C]` (float64 in row order on the CPU, as `sumTo`).
 */
export const GELU_WEIGHT_GRAD: OpDef<GeluLinearParams> = {
  name: "geluWeightGrad",
  overwrites: true,
  outputs([dy, u], p) {
    checkParams(p, "geluWeightGrad");
    const C = dy.shape[dy.shape.length - 1], F = u.shape[u.shape.length - 1];
    if (
      dy.shape.length < 1 || u.shape.length < 1 ||
      sizeOf(dy.shape.slice(0, -1)) !== sizeOf(u.shape.slice(0, -1))
    ) {
      throw new TypeError(
        `Cannot geluWeightGrad: dy ${fmtShape(dy.shape)} and u ${
          fmtShape(u.shape)
        } must have the same rows`,
      );
    }
    return [{ shape: [C, F], dtype: u.dtype }, { shape: [C], dtype: u.dtype }];
  },
  cpu([dy, u], [out, db], info, p) {
    const [C, F] = info.outputs[0].shape;
    const N = sizeOf(info.inputs[1].shape.slice(0, -1));
    const g = takeActivation(u, p);
    if (p.half) {
      const mp = { transA: true, transB: false, round: true, ...accumulateParts(p.half) };
      productF16Cpu(dy, g, out, [[N, C], [N, F], [C, F]], { ...mp, out: "f32" });
      sumRows(dy, N, C, db);
      return;
    }
    const mp = { transA: true, transB: false };
    matmulCpu(dy, g, out, info2([N, C], [N, F]), mp, { aColumnSums: db });
  },
  gpu(info, p) {
    const [C, F] = info.outputs[0].shape;
    const N = sizeOf(info.inputs[1].shape.slice(0, -1));
    const mp = { transA: true, transB: false };
    const g = matmulGeometry([N, C], [N, F], mp, "geluWeightGrad");
    const half = halfOf(p, "round");
    if (geluStage() !== "fused") {
      return withGeluPass(matmulPlan(g, mp, { rowSum: true, half }), 1, N * F, p);
    }
    return matmulPlan(g, mp, { geluIn: "b", dropout: dropoutOf(p), rowSum: true, half });
  },
};

/** Options of {@linkcode geluLinear}. */
export interface GeluLinearOptions {
  /** Dropout after the GELU (training only; the caller draws the seed). */
  dropout?: { p: number; seed: number } | null;
  /** f16 autocast's matmuls with this accumulation (see `GeluLinearParams.half`). */
  half?: MatmulF16Accumulate | null;
}

/**
 * `dropout(gelu(u)) · Wᵀ + b` without storing the activation (a GELU FFN's
 * `fc2(dropout(gelu(u)))`); `bias` may be null.
 */
export function geluLinear(
  u: Tensor,
  weight: Tensor,
  bias: Tensor | null,
  opts: GeluLinearOptions = {},
): Tensor {
  const d = opts.dropout && opts.dropout.p > 0 ? opts.dropout : null;
  const p: GeluLinearParams = { dropoutP: d?.p ?? 0, dropoutSeed: d ? d.seed >>> 0 : 0 };
  if (opts.half) p.half = opts.half;
  // the "kept" stage: the activation kept for the weight gradient, when there will be one
  if (
    geluStage() === "kept" && u.backend.kind === "webgpu" && weight.requiresGrad &&
    isGradEnabled()
  ) p.keep = true;
  return apply(GELU_LINEAR, bias ? [u, weight, bias] : [u, weight], p)[0];
}

/** Registry cases (tests/ops_registry_test.ts): tile edges, size 1, dropout, no bias. */
export const GELU_LINEAR_ENTRIES: OpEntry[] = [
  {
    op: GELU_LINEAR,
    cases: [
      {
        inputs: [{ shape: [3, 5], min: -3, max: 3 }, { shape: [4, 5] }, { shape: [4] }],
        params: { dropoutP: 0, dropoutSeed: 0 },
      },
      {
        inputs: [{ shape: [2, 3, 6], min: -3, max: 3 }, { shape: [5, 6] }],
        params: { dropoutP: 0.25, dropoutSeed: 77 },
        label: "dropout, no bias",
      },
      {
        inputs: [{ shape: [1, 1] }, { shape: [1, 1] }, { shape: [1] }],
        params: { dropoutP: 0, dropoutSeed: 0 },
      },
      {
        inputs: [{ shape: [37, 20], min: -3, max: 3 }, { shape: [9, 20] }, { shape: [9] }],
        params: { dropoutP: 0.1, dropoutSeed: 0xfffffff0 },
        label: "vec4, partial tiles",
      },
      {
        inputs: [{ shape: [64, 32], min: -3, max: 3 }, { shape: [64, 32] }, { shape: [64] }],
        params: { dropoutP: 0.5, dropoutSeed: 5 },
        noGradCheck: true,
        label: "whole tiles",
      },
    ],
  },
  {
    op: GELU_LINEAR_GRAD,
    cases: [
      {
        inputs: [{ shape: [3, 4] }, { shape: [4, 5] }, { shape: [3, 5], min: -3, max: 3 }],
        params: { dropoutP: 0, dropoutSeed: 0 },
        noGradCheck: true,
      },
      {
        inputs: [{ shape: [2, 3, 5] }, { shape: [5, 6] }, { shape: [2, 3, 6], min: -3, max: 3 }],
        params: { dropoutP: 0.25, dropoutSeed: 77 },
        noGradCheck: true,
      },
      {
        inputs: [{ shape: [37, 12] }, { shape: [12, 20] }, { shape: [37, 20], min: -3, max: 3 }],
        params: { dropoutP: 0.1, dropoutSeed: 9 },
        noGradCheck: true,
      },
      {
        inputs: [{ shape: [64, 32] }, { shape: [32, 64] }, { shape: [64, 64], min: -3, max: 3 }],
        params: { dropoutP: 0.5, dropoutSeed: 5 },
        noGradCheck: true,
      },
    ],
  },
  {
    op: GELU_WEIGHT_GRAD,
    cases: [
      {
        inputs: [{ shape: [3, 4] }, { shape: [3, 5], min: -3, max: 3 }],
        params: { dropoutP: 0, dropoutSeed: 0 },
        noGradCheck: true,
      },
      {
        inputs: [{ shape: [2, 3, 5] }, { shape: [2, 3, 6], min: -3, max: 3 }],
        params: { dropoutP: 0.25, dropoutSeed: 77 },
        noGradCheck: true,
      },
      {
        inputs: [{ shape: [37, 12] }, { shape: [37, 20], min: -3, max: 3 }],
        params: { dropoutP: 0.1, dropoutSeed: 9 },
        noGradCheck: true,
      },
      {
        inputs: [{ shape: [64, 32] }, { shape: [64, 64], min: -3, max: 3 }],
        params: { dropoutP: 0.5, dropoutSeed: 5 },
        noGradCheck: true,
      },
    ],
  },
];
