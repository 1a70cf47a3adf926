/**
 * Fused optimizer kernels: the pieces of the global gradient norm and the
 * AdamW update. They write their inputs in place (`mutates`), have no
 * outputs or backward, and are recorded like any other op, so an optimizer
 * step needs no host sync.
 *
 * - `sumSquaresPartial` writes `groups` partial sums of `x²` into a slice of a
 *   shared partials buffer (one dispatch per tensor, no atomics);
 * - `clipCoef` reduces all partials to the norm and torch's clipping factor
 *   `min(1, maxNorm / (norm + 1e-6))`;
 * - `adamw` is `torch.optim.AdamW` for one parameter, with the gradient first
 *   multiplied by a device scalar (the clipping factor).
 *
 * - `gradScalerUpdate` is the device half of torch's `GradScaler`
 *   (optim/grad_scaler.ts): from the norm of the scaled gradients it finds
 *   overflow, gives AdamW its gradient factor (clip / scale) and updates the
 *   scale and the good-step counter, all in one single-thread kernel.
 *
 * `adamw` and `adamwFlat` take an optional sixth input, the scaler state
 * [scale, goodSteps, skippedSteps, foundInf]: they then leave everything
 * untouched when `foundInf` is set (torch skips `optimizer.step()`), and
 * bias-correct with `t = step − skippedSteps` (torch counts only the steps
 * taken).
 *
 * The flat variants serve optim/adamw.ts's flat buffers (every parameter a
 * padded segment of one buffer): `sumSquaresFlat` writes the very partials
 * `sumSquaresPartial` would write for each segment, in one dispatch, and
 * `adamwFlat` updates every segment in one dispatch, weight decay on the
 * leading `decayEnd` elements. Both compute exactly what the per-parameter
 * kernels compute, element for element.
 *
 * @module
 */
import { apply, type Tensor } from "../tensor/tensor.ts";
import {
  type CpuArray,
  fmtShape,
  type OpDef,
  packUniform,
  sizeOf,
  type TensorInfo,
} from "../tensor/types.ts";
import type { OpEntry } from "./registry.ts";
import { grid1d, LINEAR_INDEX, MAIN_1D } from "./_wgsl.ts";
import { adamwF32 } from "./_cpu_threads_kernels.ts";

const WG = 256;

function needFloat(op: string, what: string, t: TensorInfo): void {
  if (t.dtype === "i32") throw new TypeError(`Cannot ${op}: ${what} must be a float tensor`);
}

function sameShape(op: string, what: string, a: TensorInfo, b: TensorInfo): void {
  if (fmtShape(a.shape) !== fmtShape(b.shape)) {
    throw new TypeError(
      `Cannot ${op}: ${what} shape ${fmtShape(b.shape)} differs from ${fmtShape(a.shape)}`,
    );
  }
}

// ---------------------------------------------------------------- sum of squares

/** Parameters of {@linkcode SUM_SQUARES_PARTIAL}. */
export interface SumSquaresParams {
  /** First slot of the partials buffer this tensor writes. */
  offset: number;
  /** Number of slots (workgroups) it writes; at least 1. */
  groups: number;
}

/**
 * Workgroups worth using for a tensor of `n` elements (1..512): about eight
 * 256-element chunks per workgroup.
 */
export function sumSquaresGroups(n: number): number {
  return Math.max(1, Math.min(512, Math.ceil(n / (WG * 8))));
}

/**
 * partials[offset + k] = Σ x[i]² over the 256-element chunks c ≡ k (mod
 * groups), for k < groups. Inputs: partials [P] (written), x (any shape).
 */
export const SUM_SQUARES_PARTIAL: OpDef<SumSquaresParams> = {
  name: "sumSquaresPartial",
  mutates: [0],
  outputs([partials, x], p) {
    needFloat("sumSquaresPartial", "x", x);
    needFloat("sumSquaresPartial", "partials", partials);
    if (partials.shape.length !== 1) {
      throw new TypeError(
        `Cannot sumSquaresPartial: partials must be 1-D, got ${fmtShape(partials.shape)}`,
      );
    }
    if (
      !Number.isInteger(p.groups) || p.groups < 1 || !Number.isInteger(p.offset) || p.offset < 0 ||
      p.offset + p.groups > partials.shape[0]
    ) {
      throw new RangeError(
        `Cannot sumSquaresPartial: slots ${p.offset}..${p.offset + p.groups - 1} outside partials ${
          fmtShape(partials.shape)
        }`,
      );
    }
    return [];
  },
  cpu([partials, x], _outs, _info, p) {
    const chunks = Math.ceil(x.length / WG);
    for (let k = 0; k < p.groups; k++) {
      let acc = 0;
      for (let c = k; c < chunks; c += p.groups) {
        const end = Math.min(x.length, (c + 1) * WG);
        for (let i = c * WG; i < end; i++) acc += x[i] * x[i];
      }
      partials[p.offset + k] = acc;
    }
  },
  gpu(info, p) {
    const n = sizeOf(info.inputs[1].shape);
    return {
      kernels: [{
        code: `
@group(0) @binding(0) var<storage, read_write> partials: array<f32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
struct U { n: u32, offset: u32, groups: u32 }
@group(0) @binding(2) var<uniform> u: U;
var<workgroup> part: array<f32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let k = wid.x;
  var acc = 0.0;
  for (var c = k; c * ${WG}u < u.n; c += u.groups) {
    let i = c * ${WG}u + lid.x;
    if (i < u.n) { let v = x[i]; acc = fma(v, v, acc); }
  }
  part[lid.x] = acc;
  workgroupBarrier();
  for (var s = ${WG / 2}u; s > 0u; s >>= 1u) {
    if (lid.x < s) { part[lid.x] += part[lid.x + s]; }
    workgroupBarrier();
  }
  if (lid.x == 0u) { partials[u.offset + k] = part[0]; }
}`,
        bind: [{ in: 0 }, { in: 1 }],
        uniform: packUniform([n, p.offset, p.groups]),
        workgroups: [p.groups, 1, 1],
      }],
    };
  },
};

/** A segment of a flat buffer, for {@linkcode sumSquaresTable}. */
export interface FlatSegment {
  /** First element in the flat buffer. */
  offset: number;
  /** Elements. */
  n: number;
  /** First partials slot (the slots of one tensor's `sumSquaresPartial`). */
  partialOffset: number;
}

/** Parameters of {@linkcode SUM_SQUARES_FLAT} (from {@linkcode sumSquaresTable}). */
export interface SumSquaresFlatParams {
  /** Segments described by the table. */
  segments: number;
  /** Workgroups (partials written): Σ sumSquaresGroups(n) over the segments. */
  workgroups: number;
}

/**
 * The i32 table of {@linkcode SUM_SQUARES_FLAT}: per segment
 * `[offset, n, partialOffset, groups]`, then per workgroup `[segment, k]`
 * (workgroup k of its segment, as in `sumSquaresPartial`).
 */
export function sumSquaresTable(
  segments: readonly FlatSegment[],
): { table: Int32Array; params: SumSquaresFlatParams } {
  const groups = segments.map((s) => sumSquaresGroups(s.n));
  const workgroups = groups.reduce((a, b) => a + b, 0);
  const S = segments.length;
  const table = new Int32Array(4 * S + 2 * workgroups);
  let w = 4 * S;
  segments.forEach((s, j) => {
    table.set([s.offset, s.n, s.partialOffset, groups[j]], 4 * j);
    for (let k = 0; k < groups[j]; k++, w += 2) table.set([j, k], w);
  });
  return { table, params: { segments: S, workgroups } };
}

/**
 * `sumSquaresPartial` of every segment of a flat buffer in one dispatch.
 * Inputs: partials [P] (written), x (flat, 1-D), table (i32, from
 * {@linkcode sumSquaresTable}).
 */
export const SUM_SQUARES_FLAT: OpDef<SumSquaresFlatParams> = {
  name: "sumSquaresFlat",
  mutates: [0],
  outputs([partials, x, table], p) {
    needFloat("sumSquaresFlat", "x", x);
    needFloat("sumSquaresFlat", "partials", partials);
    if (table.dtype !== "i32" || sizeOf(table.shape) < 4 * p.segments + 2 * p.workgroups) {
      throw new TypeError(
        `Cannot sumSquaresFlat: table must be i32 with ${
          4 * p.segments + 2 * p.workgroups
        } entries, got ${table.dtype} ${fmtShape(table.shape)}`,
      );
    }
    return [];
  },
  cpu([partials, x, table], _outs, _info, p) {
    const S = p.segments;
    for (let w = 0; w < p.workgroups; w++) {
      const s = 4 * table[4 * S + 2 * w], k = table[4 * S + 2 * w + 1];
      const base = table[s], n = table[s + 1], groups = table[s + 3];
      const chunks = Math.ceil(n / WG);
      let acc = 0;
      for (let c = k; c < chunks; c += groups) {
        const end = base + Math.min(n, (c + 1) * WG);
        for (let i = base + c * WG; i < end; i++) acc += x[i] * x[i];
      }
      partials[table[s + 2] + k] = acc;
    }
  },
  gpu(_info, p) {
    const [nx, ny] = p.workgroups <= 65535
      ? [p.workgroups, 1]
      : [65535, Math.ceil(p.workgroups / 65535)];
    return {
      kernels: [{
        code: `
@group(0) @binding(0) var<storage, read_write> partials: array<f32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> table: array<u32>;
struct U { segments: u32, workgroups: u32 }
@group(0) @binding(3) var<uniform> u: U;
var<workgroup> part: array<f32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
    @builtin(local_invocation_id) lid: vec3u) {
  let w = wid.x + wid.y * nwg.x;
  if (w >= u.workgroups) { return; }
  let at = 4u * u.segments + 2u * w;
  let s = 4u * table[at];
  let k = table[at + 1u];
  let base = table[s];
  let n = table[s + 1u];
  let groups = table[s + 3u];
  var acc = 0.0;
  for (var c = k; c * ${WG}u < n; c += groups) {
    let i = c * ${WG}u + lid.x;
    if (i < n) { let v = x[base + i]; acc = fma(v, v, acc); }
  }
  part[lid.x] = acc;
  workgroupBarrier();
  for (var h = ${WG / 2}u; h > 0u; h >>= 1u) {
    if (lid.x < h) { part[lid.x] += part[lid.x + h]; }
    workgroupBarrier();
  }
  if (lid.x == 0u) { partials[table[s + 2u] + k] = part[0]; }
}`,
        bind: [{ in: 0 }, { in: 1 }, { in: 2 }],
        uniform: packUniform([p.segments, p.workgroups]),
        workgroups: [nx, ny, 1],
      }],
    };
  },
};

/** Parameters of {@linkcode CLIP_COEF}. */
export interface ClipCoefParams {
  /** Largest allowed norm; 0 means no clipping (the factor is 1). */
  maxNorm: number;
}

/**
 * From partial sums of squares [P]: norm = sqrt(Σ partials) [1] and the
 * clipping factor [1] = min(1, maxNorm / (norm + 1e-6)) (torch
 * `clip_grad_norm_`), or 1 when maxNorm is 0.
 */
export const CLIP_COEF: OpDef<ClipCoefParams> = {
  name: "clipCoef",
  outputs([partials], p) {
    needFloat("clipCoef", "partials", partials);
    if (!(p.maxNorm >= 0) || !Number.isFinite(p.maxNorm)) {
      throw new RangeError(`Cannot clipCoef: maxNorm must be finite and ≥ 0, got ${p.maxNorm}`);
    }
    return [{ shape: [1], dtype: partials.dtype }, { shape: [1], dtype: partials.dtype }];
  },
  cpu([partials], [norm, coef], _info, p) {
    let acc = 0;
    for (let i = 0; i < partials.length; i++) acc += partials[i];
    norm[0] = Math.sqrt(acc);
    coef[0] = p.maxNorm > 0 ? Math.min(1, p.maxNorm / (norm[0] + 1e-6)) : 1;
  },
  gpu(info, p) {
    const n = sizeOf(info.inputs[0].shape);
    return {
      kernels: [{
        code: `
@group(0) @binding(0) var<storage, read> partials: array<f32>;
@group(0) @binding(1) var<storage, read_write> norm: array<f32>;
@group(0) @binding(2) var<storage, read_write> coef: array<f32>;
struct U { n: u32, maxNorm: f32 }
@group(0) @binding(3) var<uniform> u: U;
var<workgroup> part: array<f32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_id) lid: vec3u) {
  var acc = 0.0;
  for (var i = lid.x; i < u.n; i += ${WG}u) { acc += partials[i]; }
  part[lid.x] = acc;
  workgroupBarrier();
  for (var s = ${WG / 2}u; s > 0u; s >>= 1u) {
    if (lid.x < s) { part[lid.x] += part[lid.x + s]; }
    workgroupBarrier();
  }
  if (lid.x == 0u) {
    let nrm = sqrt(part[0]);
    norm[0] = nrm;
    coef[0] = select(1.0, min(1.0, u.maxNorm / (nrm + 1e-6)), u.maxNorm > 0.0);
  }
}`,
        bind: [{ in: 0 }, { out: 0 }, { out: 1 }],
        uniform: packUniform([n], [p.maxNorm]),
        workgroups: [1, 1, 1],
      }],
    };
  },
};

/**
 * Writes `groups` partial sums of squares of `x` into `partials` starting at
 * `offset` (in place; see {@linkcode sumSquaresGroups}).
 */
export function sumSquaresInto(
  partials: Tensor,
  x: Tensor,
  offset: number,
  groups: number = sumSquaresGroups(x.size),
): void {
  apply(SUM_SQUARES_PARTIAL, [partials, x], { offset, groups });
}

/** Norm and clipping factor from partial sums of squares: `[norm, coef]`, each [1]. */
export function clipCoef(partials: Tensor, maxNorm: number): [Tensor, Tensor] {
  const [norm, coef] = apply(CLIP_COEF, [partials], { maxNorm });
  return [norm, coef];
}

// ---------------------------------------------------------------- AdamW

/** Hyperparameters of one AdamW update. */
export interface AdamWParams {
  /** Learning rate of this step. */
  lr: number;
  /** Decay of the first moment. */
  beta1: number;
  /** Decay of the second moment. */
  beta2: number;
  /** Added to the bias-corrected root of the second moment. */
  eps: number;
  /** Decoupled weight decay (0 for biases, norms, gammas). */
  weightDecay: number;
  /** 1-based step number t, for bias correction. */
  step: number;
}

/** The scalars the update uses, computed in float64 on the host (as torch does). */
function adamwScalars(p: AdamWParams): number[] {
  const bc1 = 1 - p.beta1 ** p.step;
  const bc2 = 1 - p.beta2 ** p.step;
  return [
    1 - p.lr * p.weightDecay, // decay factor
    p.beta1,
    1 - p.beta1,
    p.beta2,
    1 - p.beta2,
    p.lr / bc1, // step size
    Math.sqrt(bc2),
    p.eps,
  ];
}

/**
 * Number of elements of the scaler state (optim/grad_scaler.ts):
 * `[scale, goodSteps, skippedSteps, foundInf]`.
 */
export const SCALER_STATE_SIZE = 4;

function checkScalerState(op: string, inputs: TensorInfo[]): void {
  if (inputs.length < 6) return;
  const st = inputs[5];
  if (st.dtype === "i32" || sizeOf(st.shape) !== SCALER_STATE_SIZE) {
    throw new TypeError(
      `Cannot ${op}: scaler state must be float [${SCALER_STATE_SIZE}], got ${st.dtype} ${
        fmtShape(st.shape)
      }`,
    );
  }
}

/**
 * With a scaler state: whether to skip, and the step size and √(1−β2ᵗ) for
 * t = step − skippedSteps (the host's float64 values when nothing was skipped).
 */
function scalerStep(
  state: ArrayLike<number> | undefined,
  prm: AdamWParams,
  stepSize: number,
  bc2Sqrt: number,
): { skip: boolean; stepSize: number; bc2Sqrt: number } {
  if (!state) return { skip: false, stepSize, bc2Sqrt };
  if (state[3] !== 0) return { skip: true, stepSize, bc2Sqrt };
  const skipped = state[2];
  if (skipped <= 0) return { skip: false, stepSize, bc2Sqrt };
  const t = prm.step - skipped;
  return {
    skip: false,
    stepSize: prm.lr / (1 - prm.beta1 ** t),
    bc2Sqrt: Math.sqrt(1 - prm.beta2 ** t),
  };
}

/**
 * WGSL of the scaler-state prologue (binding 5 `state`; uniform fields `lr`,
 * `t`, `lnB1`, `lnB2`, the logs computed on the host in float64). 1 − βᵗ is
 * −expm1(t·ln β), with a series where the plain difference would cancel:
 * relative error about 1e-7, as the host's float64 value rounded to f32.
 */
const SCALER_PROLOGUE = `
  if (state[3] != 0.0) { return; }
  var stepSize = u.stepSize;
  var bc2Sqrt = u.bc2Sqrt;
  if (state[2] > 0.0) {
    let t = u.t - state[2];
    stepSize = u.lr / one_minus_pow(u.lnB1, t);
    bc2Sqrt = sqrt(one_minus_pow(u.lnB2, t));
  }`;

/** WGSL: 1 − exp(t·lnB) for lnB < 0, accurate near 0 (see SCALER_PROLOGUE). */
const WGSL_ONE_MINUS_POW = `
fn one_minus_pow(lnB: f32, t: f32) -> f32 {
  let x = t * lnB;
  if (x > -0.1) {
    return -(x + x * x * (0.5 + x * (1.0 / 6.0 + x * (1.0 / 24.0 + x * (1.0 / 120.0)))));
  }
  return 1.0 - exp(x);
}`;

/** The uniform tail of the scaler path: lr, t, ln β1, ln β2. */
function scalerUniform(prm: AdamWParams): number[] {
  return [prm.lr, prm.step, Math.log(prm.beta1), Math.log(prm.beta2)];
}

/**
 * WGSL of the in-place AdamW update (ADAMW and ADAMW_FLAT). `flat` decays the
 * elements before `u.decayEnd` by `u.decay` and the rest by `u.noDecay`;
 * `scaler` reads the loss scaler's state and skips a non-finite step.
 */
function adamwKernel(flat: boolean, scaler: boolean): string {
  const decayFields = flat ? "decayEnd: u32, decay: f32, noDecay: f32" : "decay: f32";
  const decay = flat ? "select(u.noDecay, u.decay, i < u.decayEnd)" : "u.decay";
  return `
@group(0) @binding(0) var<storage, read_write> p: array<f32>;
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read_write> m: array<f32>;
@group(0) @binding(3) var<storage, read_write> v: array<f32>;
@group(0) @binding(4) var<storage, read> gradScale: array<f32>;
${scaler ? "@group(0) @binding(5) var<storage, read> state: array<f32>;" : ""}
struct U { n: u32, ${decayFields}, b1: f32, c1: f32, b2: f32, c2: f32, stepSize: f32,
  bc2Sqrt: f32, eps: f32${scaler ? ", lr: f32, t: f32, lnB1: f32, lnB2: f32" : ""} }
${scaler ? WGSL_ONE_MINUS_POW : ""}
@group(0) @binding(${scaler ? 6 : 5}) var<uniform> u: U;
${MAIN_1D()} {
  ${LINEAR_INDEX()}
  if (i >= u.n) { return; }
  ${scaler ? SCALER_PROLOGUE : "let stepSize = u.stepSize;\n  let bc2Sqrt = u.bc2Sqrt;"}
  let gi = g[i] * gradScale[0];
  let pd = p[i] * ${decay};
  let mi = u.b1 * m[i] + u.c1 * gi;
  let vi = u.b2 * v[i] + u.c2 * gi * gi;
  m[i] = mi;
  v[i] = vi;
  p[i] = pd - stepSize * mi / (sqrt(vi) / bc2Sqrt + u.eps);
}`;
}

/**
 * The CPU update of ADAMW and ADAMW_FLAT: elements below `decayEnd` decay
 * with `prm.weightDecay`, the rest with 0; f32 runs in WebAssembly on the CPU
 * threads (the same bits as the loop).
 */
function adamwCpu(
  [p, g, m, v, s, state]: CpuArray[],
  prm: AdamWParams,
  decayEnd: number,
): void {
  const [decay, b1, c1, b2, c2, hostStepSize, hostBc2Sqrt, eps] = adamwScalars(prm);
  const { skip, stepSize, bc2Sqrt } = scalerStep(state, prm, hostStepSize, hostBc2Sqrt);
  if (skip) return;
  const noDecay = adamwScalars({ ...prm, weightDecay: 0 })[0];
  const scale = s[0];
  // f32: the same arithmetic in WebAssembly on the CPU threads (ops/_cpu_threads_kernels.ts)
  if (
    p instanceof Float32Array && g instanceof Float32Array && m instanceof Float32Array &&
    v instanceof Float32Array && adamwF32(p, g, m, v, {
      decay,
      noDecay,
      decayEnd,
      b1,
      c1,
      b2,
      c2,
      stepSize,
      bc2Sqrt,
      eps,
      scale,
    })
  ) return;
  for (let i = 0; i < p.length; i++) {
    const gi = g[i] * scale;
    p[i] = p[i] * (i < decayEnd ? decay : noDecay);
    m[i] = b1 * m[i] + c1 * gi;
    v[i] = b2 * v[i] + c2 * gi * gi;
    p[i] = p[i] - stepSize * m[i] / (Math.sqrt(v[i]) / bc2Sqrt + eps);
  }
}

/**
 * `torch.optim.AdamW` for one parameter, in place. Inputs p, g, m, v (same
 * shape) and gradScale [1]; p, m and v are written. With g' = g·gradScale:
 * p ← p·(1 − lr·wd); m ← β1·m + (1−β1)·g'; v ← β2·v + (1−β2)·g'²;
 * p ← p − (lr / (1−β1ᵗ)) · m / (√v / √(1−β2ᵗ) + eps).
 */
export const ADAMW: OpDef<AdamWParams> = {
  name: "adamw",
  mutates: [0, 2, 3],
  outputs([p, g, m, v, s, ...rest], prm) {
    needFloat("adamw", "p", p);
    sameShape("adamw", "gradient", p, g);
    sameShape("adamw", "exp_avg", p, m);
    sameShape("adamw", "exp_avg_sq", p, v);
    if (sizeOf(s.shape) !== 1) {
      throw new TypeError(
        `Cannot adamw: gradScale must have one element, got ${fmtShape(s.shape)}`,
      );
    }
    if (!Number.isInteger(prm.step) || prm.step < 1) {
      throw new RangeError(`Cannot adamw: step must be an integer ≥ 1, got ${prm.step}`);
    }
    checkScalerState("adamw", [p, g, m, v, s, ...rest]);
    return [];
  },
  cpu(inputs, _outs, _info, prm) {
    adamwCpu(inputs, prm, inputs[0].length);
  },
  gpu(info, prm) {
    const n = sizeOf(info.inputs[0].shape);
    const scaler = info.inputs.length > 5;
    return {
      kernels: [{
        code: adamwKernel(false, scaler),
        bind: [
          { in: 0 },
          { in: 1 },
          { in: 2 },
          { in: 3 },
          { in: 4 },
          ...(scaler ? [{ in: 5 }] : []),
        ],
        uniform: packUniform([n], [...adamwScalars(prm), ...(scaler ? scalerUniform(prm) : [])]),
        workgroups: grid1d(n),
      }],
    };
  },
};

/**
 * One AdamW update of parameter `p` (in place, with its moments `m`, `v`),
 * using gradient `g` multiplied by the device scalar `gradScale` [1].
 */
export function adamwUpdate(
  p: Tensor,
  g: Tensor,
  m: Tensor,
  v: Tensor,
  gradScale: Tensor,
  params: AdamWParams,
  scalerState?: Tensor,
): void {
  apply(ADAMW, [p, g, m, v, gradScale, ...(scalerState ? [scalerState] : [])], params);
}

/** Hyperparameters of one flat AdamW update. */
export interface AdamWFlatParams extends AdamWParams {
  /** Elements [0, decayEnd) get `weightDecay`; the rest none. */
  decayEnd: number;
}

/**
 * {@linkcode ADAMW} over a whole flat buffer in one dispatch: inputs p, g,
 * m, v (1-D, same length) and gradScale [1]; elements below `decayEnd` are
 * decayed with `weightDecay`, the others with 0 (the parameters are laid
 * out decayed first).
 */
export const ADAMW_FLAT: OpDef<AdamWFlatParams> = {
  name: "adamwFlat",
  mutates: [0, 2, 3],
  outputs(inputs, prm) {
    ADAMW.outputs(inputs, prm);
    const n = sizeOf(inputs[0].shape);
    if (!Number.isInteger(prm.decayEnd) || prm.decayEnd < 0 || prm.decayEnd > n) {
      throw new RangeError(`Cannot adamwFlat: decayEnd ${prm.decayEnd} outside 0..${n}`);
    }
    return [];
  },
  cpu(inputs, _outs, _info, prm) {
    adamwCpu(inputs, prm, prm.decayEnd);
  },
  gpu(info, prm) {
    const n = sizeOf(info.inputs[0].shape);
    const [decay, ...rest] = adamwScalars(prm);
    const noDecay = adamwScalars({ ...prm, weightDecay: 0 })[0];
    const scaler = info.inputs.length > 5;
    return {
      kernels: [{
        code: adamwKernel(true, scaler),
        bind: [
          { in: 0 },
          { in: 1 },
          { in: 2 },
          { in: 3 },
          { in: 4 },
          ...(scaler ? [{ in: 5 }] : []),
        ],
        uniform: packUniform(
          [n, prm.decayEnd],
          [decay, noDecay, ...rest, ...(scaler ? scalerUniform(prm) : [])],
        ),
        workgroups: grid1d(n),
      }],
    };
  },
};

// ---------------------------------------------------------------- loss scaling

/** Parameters of {@linkcode GRAD_SCALER_UPDATE} (torch `GradScaler` defaults in optim/grad_scaler.ts). */
export interface GradScalerParams {
  /** Clip the unscaled gradient norm to this (0: no clipping). */
  maxNorm: number;
  /** Scale factor after `growthInterval` finite steps in a row. */
  growthFactor: number;
  /** Scale factor after a step with non-finite gradients. */
  backoffFactor: number;
  /** Finite steps in a row before the scale grows. */
  growthInterval: number;
}

/**
 * One step of torch's `GradScaler` on the device. Inputs: `norm` [1], the
 * global L2 norm of the *scaled* gradients, and `state` [4] = [scale,
 * goodSteps, skippedSteps, foundInf] (written). Outputs: `factor` [1], what
 * AdamW multiplies the gradients by (torch's `clip_grad_norm_` factor for
 * the unscaled norm, divided by the scale; 0 when skipping), and the
 * unscaled norm [1].
 *
 * foundInf = the norm is not finite (an inf or NaN gradient makes it so;
 * torch checks elements, which differs only when finite gradients' squares
 * overflow f32, above 1.8e19). Then scale ← scale·backoff, goodSteps ← 0,
 * skippedSteps += 1; else goodSteps += 1 and, at `growthInterval`,
 * scale ← scale·growth (kept only if finite) and goodSteps ← 0
 * (`torch._amp_update_scale_`).
 */
export const GRAD_SCALER_UPDATE: OpDef<GradScalerParams> = {
  name: "gradScalerUpdate",
  mutates: [1],
  outputs([norm, state], p) {
    needFloat("gradScalerUpdate", "norm", norm);
    checkScalerState("gradScalerUpdate", [norm, norm, norm, norm, norm, state]);
    if (sizeOf(norm.shape) !== 1) {
      throw new TypeError(
        `Cannot gradScalerUpdate: norm must have one element, got ${fmtShape(norm.shape)}`,
      );
    }
    if (
      !(p.maxNorm >= 0) || !Number.isFinite(p.maxNorm) || !(p.growthFactor > 1) ||
      !(p.backoffFactor > 0 && p.backoffFactor < 1) || !Number.isInteger(p.growthInterval) ||
      p.growthInterval < 1
    ) {
      throw new RangeError(
        `Cannot gradScalerUpdate: need maxNorm ≥ 0, growthFactor > 1, 0 < backoffFactor < 1, ` +
          `integer growthInterval ≥ 1; got ${JSON.stringify(p)}`,
      );
    }
    return [{ shape: [1], dtype: norm.dtype }, { shape: [1], dtype: norm.dtype }];
  },
  cpu([norm, state], [factor, unscaled], _info, p) {
    const scale = state[0], n = norm[0];
    const found = !Number.isFinite(n);
    unscaled[0] = n / scale;
    const clip = p.maxNorm > 0 ? Math.min(1, p.maxNorm / (unscaled[0] + 1e-6)) : 1;
    factor[0] = found ? 0 : clip / scale;
    state[3] = found ? 1 : 0;
    if (found) {
      state[0] = scale * p.backoffFactor;
      state[1] = 0;
      state[2] += 1;
      return;
    }
    state[1] += 1;
    if (state[1] >= p.growthInterval) {
      const grown = Math.fround(scale * p.growthFactor);
      if (Number.isFinite(grown)) state[0] = grown;
      state[1] = 0;
    }
  },
  gpu(_info, p) {
    return {
      kernels: [{
        code: `
@group(0) @binding(0) var<storage, read> norm: array<f32>;
@group(0) @binding(1) var<storage, read_write> state: array<f32>;
@group(0) @binding(2) var<storage, read_write> factor: array<f32>;
@group(0) @binding(3) var<storage, read_write> unscaled: array<f32>;
struct U { maxNorm: f32, growthFactor: f32, backoffFactor: f32, growthInterval: f32 }
@group(0) @binding(4) var<uniform> u: U;
fn finite(x: f32) -> bool { return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u; }
@compute @workgroup_size(1)
fn main() {
  let scale = state[0];
  let n = norm[0];
  let found = !finite(n);
  let un = n / scale;
  unscaled[0] = un;
  let clip = select(1.0, min(1.0, u.maxNorm / (un + 1e-6)), u.maxNorm > 0.0);
  factor[0] = select(clip / scale, 0.0, found);
  state[3] = select(0.0, 1.0, found);
  if (found) {
    state[0] = scale * u.backoffFactor;
    state[1] = 0.0;
    state[2] = state[2] + 1.0;
    return;
  }
  let good = state[1] + 1.0;
  state[1] = good;
  if (good >= u.growthInterval) {
    let grown = scale * u.growthFactor;
    if (finite(grown)) { state[0] = grown; }
    state[1] = 0.0;
  }
}`,
        bind: [{ in: 0 }, { in: 1 }, { out: 0 }, { out: 1 }],
        uniform: packUniform([], [p.maxNorm, p.growthFactor, p.backoffFactor, p.growthInterval]),
        workgroups: [1, 1, 1],
      }],
    };
  },
};

/**
 * Registry entries. The in-place ops are skipped by the registry's GPU check
 * (see ops/optim_ops_test.ts for theirs); `clipCoef` is checked there.
 */
export const OPTIM_ENTRIES: OpEntry[] = [
  {
    op: CLIP_COEF,
    cases: [
      { inputs: [{ shape: [1], min: 0, max: 3 }], params: { maxNorm: 1 }, noGradCheck: true },
      { inputs: [{ shape: [700], min: 0, max: 2 }], params: { maxNorm: 5 }, noGradCheck: true },
      { inputs: [{ shape: [37], min: 0, max: 0.001 }], params: { maxNorm: 1 }, noGradCheck: true },
      { inputs: [{ shape: [5], min: 0, max: 3 }], params: { maxNorm: 0 }, noGradCheck: true },
    ],
  },
  {
    op: SUM_SQUARES_PARTIAL,
    cases: [{ inputs: [{ shape: [4] }, { shape: [300] }], params: { offset: 1, groups: 2 } }],
  },
  {
    op: SUM_SQUARES_FLAT,
    cases: [{
      // one segment: elements 0..299, partial slot 1, one workgroup
      inputs: [{ shape: [4] }, { shape: [300] }, {
        shape: [6],
        dtype: "i32",
        values: [0, 300, 1, 1, 0, 0],
      }],
      params: { segments: 1, workgroups: 1 },
    }],
  },
  {
    op: ADAMW_FLAT,
    cases: [{
      inputs: [{ shape: [40] }, { shape: [40] }, { shape: [40] }, { shape: [40], min: 0 }, {
        shape: [1],
        min: 0.5,
      }],
      params: {
        lr: 1e-2,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weightDecay: 0.1,
        step: 3,
        decayEnd: 24,
      },
    }],
  },
  {
    op: ADAMW,
    cases: [{
      inputs: [{ shape: [3, 5] }, { shape: [3, 5] }, { shape: [3, 5] }, {
        shape: [3, 5],
        min: 0,
      }, { shape: [1], min: 0.5 }],
      params: { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1, step: 3 },
    }],
  },
];
