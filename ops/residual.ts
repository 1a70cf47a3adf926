/**
 * The fused residual update of a pre-LN block (CONTRACTS.md §2):
 * `out = x + DropPath(gamma · dropout(branch))`, in one pass over `[B, ..., C]`:
 *
 *   out[i] = x[i] + keepPath[b] · gamma[c] · keepDrop[i] · branch[i]
 *
 * with `b` the sample (first axis) and `c` the channel (last axis) of element
 * `i`. The masks are those of the unfused ops, bit for bit: `keepDrop[i]` is
 * ops/dropout.ts on `branch` (`hashU32(dropoutSeed, i) >>> 8 >= ceil(p·2²⁴)`,
 * scaled by `1/(1 − p)`), and `keepPath[b]` is ops/dropout.ts on a `[B, 1, …]`
 * tensor of ones (nn/layers.ts `dropPath`: counter `b`, seed `dropPathSeed`).
 * The products are taken in the unfused order (dropout, then gamma, then
 * DropPath), each rounded to the output's precision, so on the CPU the fused
 * op gives the same f32 numbers as `add(x, mul(mul(dropout(branch), gamma), keep))`.
 *
 * Backward: `dx = dy` (a view, no copy), `dbranch = keepDrop · gamma ·
 * keepPath · dy` and `dgamma[c] = Σ_rows keepPath · dy · keepDrop · branch`
 * — both from {@linkcode RESIDUAL_BACKWARD}, the masks recomputed from the
 * seeds; on the GPU one pass writes dbranch and partial dgamma sums of row
 * blocks, a second adds the partials in order (without gamma: dbranch only).
 *
 * @example
 * ```ts
 * import { full, ones, residual } from "@webseq/webseq";
 * const out = residual(ones([2, 3, 4]), full([2, 3, 4], 2), { gamma: full([4], 0.5) });
 * console.log(await out.toArray()); // all 2
 * ```
 *
 * @module
 */
import { apply, applyInto, type Tensor } from "../tensor/tensor.ts";
import { dropoutScale, dropoutThreshold } from "./dropout.ts";
import { hashU32, WGSL_HASH } from "../tensor/rng.ts";
import {
  type CpuArray,
  fmtShape,
  type GpuKernel,
  type OpDef,
  packUniform,
  sizeOf,
  type TensorInfo,
} from "../tensor/types.ts";
import { grid1d, LINEAR_INDEX, MAIN_1D } from "./_wgsl.ts";
import { splitReduceWgsl } from "./_matmul_wgsl.ts";
import type { OpCase, OpEntry } from "./registry.ts";
import {
  dropoutF32,
  keepMaskU8,
  residualBackwardF32,
  type ResidualF32,
  residualF32,
} from "./_cpu_threads_kernels.ts";

/** Parameters of {@linkcode RESIDUAL} and {@linkcode RESIDUAL_BACKWARD}. */
export interface ResidualParams {
  /** Whether gamma `[C]` (LayerScale) is an input. */
  hasGamma: boolean;
  /** Dropout probability of the branch in [0, 1] (0: none). */
  dropoutP: number;
  /** Dropout seed (u32). */
  dropoutSeed: number;
  /** DropPath probability per sample in [0, 1] (0: none). */
  dropPathP: number;
  /** DropPath seed (u32). */
  dropPathSeed: number;
}

/** Options of {@linkcode residual}. */
export interface ResidualOptions {
  /** LayerScale `[C]` multiplying the branch. */
  gamma?: Tensor | null;
  /** Dropout of the branch elements (training only). */
  dropout?: { p: number; seed: number } | null;
  /** DropPath: drop the whole branch of a sample (training only). */
  dropPath?: { p: number; seed: number } | null;
}

function checkParams(p: ResidualParams, what: string): void {
  for (const [name, v] of [["dropoutP", p.dropoutP], ["dropPathP", p.dropPathP]] as const) {
    if (!(v >= 0 && v <= 1)) throw new RangeError(`${what}: ${name} must be in [0, 1], got ${v}`);
  }
  for (const [name, v] of [["dropoutSeed", p.dropoutSeed], ["dropPathSeed", p.dropPathSeed]]) {
    if (!Number.isInteger(v)) throw new TypeError(`${what}: ${name} must be an integer, got ${v}`);
  }
}

/** `[N, C]` view of a `[B, ..., C]` tensor: samples B, elements per sample, channels C. */
interface Geometry {
  n: number;
  B: number;
  per: number;
  C: number;
}

function geometry(a: TensorInfo, gamma: TensorInfo | null, what: string): Geometry {
  if (a.shape.length < 1) throw new TypeError(`Cannot ${what}: needs rank ≥ 1, got a scalar`);
  if (a.dtype === "i32") throw new TypeError(`Cannot ${what}: needs float tensors, got i32`);
  const n = sizeOf(a.shape), B = a.shape[0], C = a.shape[a.shape.length - 1];
  if (gamma && (gamma.shape.length !== 1 || gamma.shape[0] !== C)) {
    throw new TypeError(`Cannot ${what}: gamma must be [${C}], got ${fmtShape(gamma.shape)}`);
  }
  return { n, B, per: B > 0 ? n / B : 0, C };
}

function sameShape(a: TensorInfo, b: TensorInfo): boolean {
  return a.shape.length === b.shape.length && a.shape.every((d, i) => d === b.shape[i]);
}

// ---------------------------------------------------------------- CPU reference

/**
 * DropPath multipliers per sample (null when off), stored in the tensor's
 * precision as dropout(ones) stored them.
 */
function pathMultipliers(g: Geometry, p: ResidualParams, f32: boolean): Float64Array | null {
  if (!(p.dropPathP > 0)) return null;
  const thr = dropoutThreshold(p.dropPathP), seed = p.dropPathSeed >>> 0;
  const s = f32 ? Math.fround(dropoutScale(p.dropPathP)) : dropoutScale(p.dropPathP);
  return Float64Array.from({ length: g.B }, (_, b) => (hashU32(seed, b) >>> 8 >= thr ? s : 0));
}

/** The dropout multiplier of element `i`: `scale` or 0 (always 1 when p = 0). */
interface DropMask {
  on: boolean;
  thr: number;
  scale: number;
  seed: number;
}

function dropMask(p: ResidualParams): DropMask {
  return {
    on: p.dropoutP > 0,
    thr: dropoutThreshold(p.dropoutP),
    scale: dropoutScale(p.dropoutP),
    seed: p.dropoutSeed >>> 0,
  };
}

/**
 * The dropout mask of n elements: 1 where `hashU32(seed, i) >>> 8 >= thr`
 * (kept), else 0; null when dropout is off. The bytes come from WebAssembly
 * (ops/_cpu_threads_kernels.ts, four hashes per SIMD step; the loop below is
 * its reference): 25k elements in about 25 µs against 160 µs for the loop.
 */
function keepMask(m: DropMask, n: number): Uint8Array | null {
  if (!m.on) return null;
  const fast = keepMaskU8(n, m.seed, m.thr);
  if (fast) return fast;
  const keep = new Uint8Array(n);
  for (let i = 0; i < n; i++) keep[i] = hashU32(m.seed, i) >>> 8 >= m.thr ? 1 : 0;
  return keep;
}

/** The WebAssembly kernels' description of a residual (ops/_cpu_threads_kernels.ts). */
function wasmResidual(g: Geometry, path: Float64Array | null, m: DropMask): ResidualF32 {
  return {
    B: g.B,
    per: g.per,
    C: g.C,
    path,
    dropout: m.on ? { seed: m.seed, thr: m.thr, scale: m.scale } : null,
  };
}

/** `[C]` ones: the LayerScale γ of a residual without one (multiplying by 1 is exact). */
function onesOf(C: number): Float64Array {
  return new Float64Array(C).fill(1);
}

// Each product is rounded to f32 when the tensors are f32, as the unfused ops stored every
// intermediate. The loops are branch-free per element: an absent factor (dropout, γ, DropPath)
// is a multiplication by 1, which is exact and leaves an f32 value as it is, so one loop per
// precision serves every combination (a branch per factor and element was 3× slower).

function residualCpu(
  x: CpuArray,
  branch: CpuArray,
  gamma: CpuArray | null,
  out: CpuArray,
  g: Geometry,
  p: ResidualParams,
): void {
  const f32 = out instanceof Float32Array, path = pathMultipliers(g, p, f32), m = dropMask(p);
  // f32, dropout only: the dropped branch from WebAssembly (ops/_cpu_threads_kernels.ts, same
  // bits as the loop below), then the sum
  if (
    m.on && !gamma && !path && x instanceof Float32Array && branch instanceof Float32Array &&
    out instanceof Float32Array && dropoutF32(branch, out, m.seed, m.thr, m.scale)
  ) {
    for (let i = 0; i < out.length; i++) out[i] = x[i] + out[i];
    return;
  }
  // f32 with γ or DropPath: the loop below in WebAssembly (the same bits)
  if (
    x instanceof Float32Array && branch instanceof Float32Array && out instanceof Float32Array &&
    (gamma === null || gamma instanceof Float32Array) &&
    residualF32(x, branch, gamma, out, wasmResidual(g, path, m))
  ) return;
  const keep = keepMask(m, out.length), scale = m.on ? m.scale : 1;
  const gm = gamma ?? onesOf(g.C);
  for (let b = 0, i = 0; b < g.B; b++) {
    const kp = path ? path[b] : 1;
    if (f32) {
      for (let j = 0, c = 0; j < g.per; j++, i++) {
        // dropout writes 0 (not v·0) where it drops
        let v = keep === null || keep[i] !== 0 ? Math.fround(branch[i] * scale) : 0;
        v = Math.fround(Math.fround(v * gm[c]) * kp);
        out[i] = x[i] + v;
        if (++c === g.C) c = 0;
      }
    } else {
      for (let j = 0, c = 0; j < g.per; j++, i++) {
        const v = keep === null || keep[i] !== 0 ? branch[i] * scale : 0;
        out[i] = x[i] + v * gm[c] * kp;
        if (++c === g.C) c = 0;
      }
    }
  }
}

function residualBackwardCpu(
  dy: CpuArray,
  branch: CpuArray | null,
  gamma: CpuArray | null,
  dbranch: CpuArray,
  dgamma: CpuArray | null,
  g: Geometry,
  p: ResidualParams,
): void {
  const f32 = dbranch instanceof Float32Array, path = pathMultipliers(g, p, f32), m = dropMask(p);
  // f32, dropout only: dbranch is dropout(dy), from WebAssembly (the same bits)
  if (
    m.on && !gamma && !dgamma && !path && dy instanceof Float32Array &&
    dbranch instanceof Float32Array && dropoutF32(dy, dbranch, m.seed, m.thr, m.scale)
  ) return;
  // f32 otherwise: the loops below in WebAssembly (the same bits)
  if (
    dy instanceof Float32Array && dbranch instanceof Float32Array &&
    (branch === null || branch instanceof Float32Array) &&
    (gamma === null || gamma instanceof Float32Array) &&
    (dgamma === null || (dgamma instanceof Float32Array && branch !== null)) &&
    residualBackwardF32(dy, branch, gamma, dbranch, dgamma, wasmResidual(g, path, m))
  ) return;
  const acc = new Float64Array(g.C);
  const keep = keepMask(m, dbranch.length), scale = m.on ? m.scale : 1;
  const gm = gamma ?? onesOf(g.C), br = branch ?? new Float64Array(0);
  for (let b = 0, i = 0; b < g.B; b++) {
    const kp = path ? path[b] : 1;
    // the chain of the unfused backward: DropPath, then gamma, then dropout
    if (f32 && dgamma) {
      for (let j = 0, c = 0; j < g.per; j++, i++) {
        const kd = keep === null || keep[i] !== 0 ? scale : 0;
        const d = Math.fround(dy[i] * kp);
        acc[c] += Math.fround(d * (kd === 0 ? 0 : Math.fround(br[i] * kd)));
        dbranch[i] = kd === 0 ? 0 : Math.fround(d * gm[c]) * kd;
        if (++c === g.C) c = 0;
      }
    } else if (f32) {
      for (let j = 0, c = 0; j < g.per; j++, i++) {
        const kd = keep === null || keep[i] !== 0 ? scale : 0;
        dbranch[i] = kd === 0 ? 0 : Math.fround(Math.fround(dy[i] * kp) * gm[c]) * kd;
        if (++c === g.C) c = 0;
      }
    } else {
      for (let j = 0, c = 0; j < g.per; j++, i++) {
        const kd = keep === null || keep[i] !== 0 ? scale : 0, d = dy[i] * kp;
        if (dgamma) acc[c] += d * (kd === 0 ? 0 : br[i] * kd);
        dbranch[i] = kd === 0 ? 0 : d * gm[c] * kd;
        if (++c === g.C) c = 0;
      }
    }
  }
  if (dgamma) dgamma.set(acc);
}

// ---------------------------------------------------------------- WGSL

/** @internal Which parts of the residual a kernel applies. */
export interface ResidualVariant {
  gamma: boolean;
  drop: boolean;
  path: boolean;
}

const UNIFORM = `struct U { n: u32, per: u32, C: u32, dseed: u32, dthr: u32, pseed: u32, pthr: u32,
  rows: u32,
  dscale: f32, pscale: f32 }`;

function uniform(g: Geometry, p: ResidualParams): ArrayBuffer {
  return packUniform(
    [
      g.n,
      g.per,
      g.C,
      p.dropoutSeed >>> 0,
      dropoutThreshold(p.dropoutP),
      p.dropPathSeed >>> 0,
      dropoutThreshold(p.dropPathP),
      dgammaRows(g),
    ],
    [dropoutScale(p.dropoutP), dropoutScale(p.dropPathP)],
  );
}

function header(bufs: [string, "read" | "read_write"][]): string {
  return bufs.map(([name, access], i) =>
    `@group(0) @binding(${i}) var<storage, ${access}> ${name}: array<f32>;`
  ).join("\n") + `\n${UNIFORM}\n@group(0) @binding(${bufs.length}) var<uniform> u: U;\n`;
}

/**
 * @internal WGSL multipliers of element `i`: `kd(i)` (dropout) and `kp(i)`
 * (DropPath), from uniform fields `dseed, dthr, dscale, pseed, pthr, pscale`
 * and `per` (elements per sample); ops/residual_layer_norm.ts uses them too.
 */
export function residualMaskWgsl(v: ResidualVariant): string {
  return `${v.drop || v.path ? WGSL_HASH : ""}
fn kd(i: u32) -> f32 {
  return ${v.drop ? "select(0.0, u.dscale, (hash_u32(u.dseed, i) >> 8u) >= u.dthr)" : "1.0"};
}
fn kp(i: u32) -> f32 {
  return ${
    v.path ? "select(0.0, u.pscale, (hash_u32(u.pseed, i / u.per) >> 8u) >= u.pthr)" : "1.0"
  };
}
`;
}

function forwardKernel(v: ResidualVariant): string {
  const bufs: [string, "read" | "read_write"][] = [["x", "read"], ["branch", "read"]];
  if (v.gamma) bufs.push(["gamma", "read"]);
  bufs.push(["out", "read_write"]);
  return header(bufs) + residualMaskWgsl(v) + `
${MAIN_1D()} {
  ${LINEAR_INDEX()}
  if (i >= u.n) { return; }
  var b = branch[i];
  ${v.drop ? "b = b * kd(i);" : ""}
  ${v.gamma ? "b = b * gamma[i % u.C];" : ""}
  ${v.path ? "b = b * kp(i);" : ""}
  out[i] = x[i] + b;
}
`;
}

function dbranchKernel(v: ResidualVariant): string {
  const bufs: [string, "read" | "read_write"][] = [["dy", "read"]];
  if (v.gamma) bufs.push(["gamma", "read"]);
  bufs.push(["dbranch", "read_write"]);
  return header(bufs) + residualMaskWgsl(v) + `
${MAIN_1D()} {
  ${LINEAR_INDEX()}
  if (i >= u.n) { return; }
  var d = dy[i];
  ${v.path ? "d = d * kp(i);" : ""}
  ${v.gamma ? "d = d * gamma[i % u.C];" : ""}
  ${v.drop ? "d = d * kd(i);" : ""}
  dbranch[i] = d;
}
`;
}

/** Channels per workgroup and row lanes of the dgamma reduction; rows per workgroup. */
const COLS = 64, LANES = 4, DGAMMA_ROWS = 64;

/** Rows per dgamma workgroup: 64, more when the blocks would exceed the grid's 65535. */
function dgammaRows(g: Geometry): number {
  const rows = g.C > 0 ? g.n / g.C : 0;
  return Math.max(DGAMMA_ROWS, Math.ceil(rows / 65535));
}

/**
 * dgamma, first pass: workgroup (x, y) sums rows `[y·64, y·64 + 64)` of 64
 * channels (4 lanes stride over the rows, then add up) into `part[y·C + c]`;
 * the partials are then added in order by the split-K reduction of
 * ops/_matmul_wgsl.ts. Many workgroups, not one per 64 channels: a `base`
 * block's 8192 rows × 512 channels took 8 workgroups and milliseconds.
 */
function dgammaKernel(v: ResidualVariant): string {
  const bufs: [string, "read" | "read_write"][] = [
    ["dy", "read"],
    ["branch", "read"],
    ["gamma", "read"],
    ["dpart", "read_write"],
    ["dbranch", "read_write"],
  ];
  return header(bufs) + residualMaskWgsl(v) + `
var<workgroup> part: array<f32, ${COLS * LANES}>;
@compute @workgroup_size(${COLS}, ${LANES})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let c = wid.x * ${COLS}u + lid.x;
  let rows = u.n / u.C;
  let r1 = min(rows, (wid.y + 1u) * u.rows);
  var acc = 0.0;
  if (c < u.C) {
    let gc = gamma[c];
    for (var r = wid.y * u.rows + lid.y; r < r1; r += ${LANES}u) {
      let i = r * u.C + c;
      let dp = dy[i] * kp(i);
      let kdi = kd(i);
      acc += dp * (branch[i] * kdi);
      // dbranch of this element too (the dbranch kernel's products, in its order)
      dbranch[i] = (dp * gc) * kdi;
    }
  }
  part[lid.y * ${COLS}u + lid.x] = acc;
  workgroupBarrier();
  if (lid.y == 0u && c < u.C) {
    var s = 0.0;
    for (var l = 0u; l < ${LANES}u; l++) { s += part[l * ${COLS}u + lid.x]; }
    dpart[wid.y * u.C + c] = s;
  }
}
`;
}

const REDUCE_CODE = splitReduceWgsl(false, false);

/** @internal The kernel parts a residual's parameters need. */
export function residualVariant(p: ResidualParams): ResidualVariant {
  return { gamma: p.hasGamma, drop: p.dropoutP > 0, path: p.dropPathP > 0 };
}

// ---------------------------------------------------------------- ops

/**
 * The fused residual: inputs `[x, branch]` or `[x, branch, gamma]` (x and
 * branch `[B, ..., C]` of one shape, gamma `[C]`), output `[B, ..., C]`.
 */
export const RESIDUAL: OpDef<ResidualParams> = {
  name: "residual",
  overwrites: true,
  outputs(inputs, p) {
    checkParams(p, "residual");
    const n = p.hasGamma ? 3 : 2;
    if (inputs.length !== n) {
      throw new TypeError(`residual: expected ${n} inputs, got ${inputs.length}`);
    }
    const [x, branch] = inputs;
    if (!sameShape(x, branch)) {
      throw new TypeError(
        `Cannot residual: x ${fmtShape(x.shape)} and branch ${fmtShape(branch.shape)} differ`,
      );
    }
    geometry(x, p.hasGamma ? inputs[2] : null, "residual");
    return [{ shape: x.shape, dtype: x.dtype }];
  },
  cpu([x, branch, gamma], [out], info, p) {
    const g = geometry(info.inputs[0], p.hasGamma ? info.inputs[2] : null, "residual");
    residualCpu(x, branch, p.hasGamma ? gamma : null, out, g, p);
  },
  gpu(info, p) {
    const g = geometry(info.inputs[0], p.hasGamma ? info.inputs[2] : null, "residual");
    const bind: GpuKernel["bind"] = [{ in: 0 }, { in: 1 }];
    if (p.hasGamma) bind.push({ in: 2 });
    bind.push({ out: 0 });
    return {
      kernels: [{
        code: forwardKernel(residualVariant(p)),
        bind,
        uniform: uniform(g, p),
        workgroups: grid1d(g.n),
      }],
    };
  },
  backward(ctx, [dy]) {
    const p = ctx.params;
    const [, branch, gamma] = ctx.inputs as Tensor[];
    const d = dy as Tensor;
    const wantBranch = branch.requiresGrad || (p.hasGamma && gamma.requiresGrad);
    // dgamma straight into the optimizer's flat buffer where it offers it
    const into = [null, p.hasGamma ? ctx.gradSink?.(2) : null];
    const grads = wantBranch
      ? applyInto(RESIDUAL_BACKWARD, p.hasGamma ? [d, branch, gamma] : [d], p, into)
      : [null, null];
    return [d.detach(), grads[0], p.hasGamma ? grads[1] : null];
  },
};

/**
 * The residual's backward: inputs `[dy]` or `[dy, branch, gamma]`, outputs
 * `[dbranch]` or `[dbranch, dgamma]`.
 */
export const RESIDUAL_BACKWARD: OpDef<ResidualParams> = {
  name: "residualBackward",
  overwrites: true,
  outputs(inputs, p) {
    checkParams(p, "residualBackward");
    const n = p.hasGamma ? 3 : 1;
    if (inputs.length !== n) {
      throw new TypeError(`residualBackward: expected ${n} inputs, got ${inputs.length}`);
    }
    const dy = inputs[0];
    if (p.hasGamma && !sameShape(dy, inputs[1])) {
      throw new TypeError(
        `Cannot residualBackward: dy ${fmtShape(dy.shape)} and branch ${
          fmtShape(inputs[1].shape)
        } differ`,
      );
    }
    const g = geometry(dy, p.hasGamma ? inputs[2] : null, "residualBackward");
    const outs: TensorInfo[] = [{ shape: dy.shape, dtype: dy.dtype }];
    if (p.hasGamma) outs.push({ shape: [g.C], dtype: dy.dtype });
    return outs;
  },
  cpu([dy, branch, gamma], [dbranch, dgamma], info, p) {
    const g = geometry(info.inputs[0], p.hasGamma ? info.inputs[2] : null, "residualBackward");
    if (p.hasGamma) residualBackwardCpu(dy, branch, gamma, dbranch, dgamma, g, p);
    else residualBackwardCpu(dy, null, null, dbranch, null, g, p);
  },
  gpu(info, p) {
    const g = geometry(info.inputs[0], p.hasGamma ? info.inputs[2] : null, "residualBackward");
    const v = residualVariant(p), u = uniform(g, p);
    if (!p.hasGamma) {
      return {
        kernels: [{
          code: dbranchKernel(v),
          bind: [{ in: 0 }, { out: 0 }],
          uniform: u,
          workgroups: grid1d(g.n),
        }],
      };
    }
    // dbranch and the partial dgamma sums of row blocks (scratch) in one pass, then their sum
    const S = Math.max(1, Math.ceil(g.n / Math.max(1, g.C) / dgammaRows(g)));
    const kernels: GpuKernel[] = [{
      code: dgammaKernel(v),
      bind: [{ in: 0 }, { in: 1 }, { in: 2 }, { tmp: 0 }, { out: 0 }],
      uniform: u,
      workgroups: [Math.ceil(g.C / COLS), S, 1],
    }, {
      code: REDUCE_CODE,
      bind: [{ tmp: 0 }, { out: 1 }],
      uniform: packUniform([g.C, S, g.C, 0, g.C]),
      workgroups: grid1d(g.C),
    }];
    return { temps: [Math.max(16, S * g.C * 4)], kernels };
  },
};

/** The op parameters of residual options (a probability of 0 turns its mask off). */
export function residualParamsOf(opts: ResidualOptions): ResidualParams {
  const drop = opts.dropout && opts.dropout.p > 0 ? opts.dropout : null;
  const path = opts.dropPath && opts.dropPath.p > 0 ? opts.dropPath : null;
  return {
    hasGamma: !!opts.gamma,
    dropoutP: drop ? drop.p : 0,
    dropoutSeed: drop ? drop.seed : 0,
    dropPathP: path ? path.p : 0,
    dropPathSeed: path ? path.seed : 0,
  };
}

/**
 * `x + DropPath(gamma · dropout(branch))` in one op (see the module doc);
 * x and branch `[B, ..., C]`, gamma `[C]`.
 */
export function residual(x: Tensor, branch: Tensor, opts: ResidualOptions = {}): Tensor {
  const params = residualParamsOf(opts);
  return apply(RESIDUAL, opts.gamma ? [x, branch, opts.gamma] : [x, branch], params)[0];
}

// ---------------------------------------------------------------- registry cases

interface CaseSpec {
  label: string;
  shape: number[];
  gamma?: boolean;
  dropoutP?: number;
  dropPathP?: number;
}

function paramsOf(c: CaseSpec): ResidualParams {
  return {
    hasGamma: c.gamma ?? false,
    dropoutP: c.dropoutP ?? 0,
    dropoutSeed: 987654321,
    dropPathP: c.dropPathP ?? 0,
    dropPathSeed: 4242,
  };
}

function forwardCase(c: CaseSpec): OpCase {
  const C = c.shape[c.shape.length - 1];
  const inputs: OpCase["inputs"] = [{ shape: c.shape }, { shape: c.shape }];
  if (c.gamma) inputs.push({ shape: [C], min: -2, max: 2 });
  return { label: c.label, inputs, params: paramsOf(c) };
}

function backwardCase(c: CaseSpec): OpCase {
  const C = c.shape[c.shape.length - 1];
  const inputs: OpCase["inputs"] = [{ shape: c.shape }];
  if (c.gamma) inputs.push({ shape: c.shape }, { shape: [C], min: -2, max: 2 });
  return { label: c.label, inputs, params: paramsOf(c), noGradCheck: true };
}

const CASES: CaseSpec[] = [
  { label: "plain add", shape: [2, 3, 5] },
  { label: "gamma", shape: [2, 3, 5], gamma: true },
  { label: "all", shape: [4, 3, 67], gamma: true, dropoutP: 0.3, dropPathP: 0.5 },
  { label: "dropout only", shape: [3, 7, 9], dropoutP: 0.2 },
  { label: "drop path only", shape: [5, 2, 3], dropPathP: 0.4 },
  { label: "size-1", shape: [1, 1, 1], gamma: true, dropoutP: 0.1, dropPathP: 0.1 },
  { label: "rank 2, drop all paths", shape: [3, 4], gamma: true, dropPathP: 1 },
  { label: "many rows, C > 64", shape: [3, 50, 130], gamma: true, dropoutP: 0.1, dropPathP: 0.2 },
];

/** Registry entries of the residual ops. */
export const RESIDUAL_ENTRIES: OpEntry[] = [
  { op: RESIDUAL, cases: CASES.map(forwardCase) },
  { op: RESIDUAL_BACKWARD, cases: CASES.map(backwardCase) },
];
