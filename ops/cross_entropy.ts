/**
 * Fused cross-entropy over logits `[..., V]` and i32 targets `[...]`, with
 * torch `CrossEntropyLoss(ignore_index, label_smoothing)` semantics:
 *
 *   loss = Σ_rows [(1 − ε)·(lse − x[t]) + ε·(lse − mean_j x[j])] / count
 *
 * over the rows whose target is not `ignoreIndex` (`count` of them; NaN when
 * there are none, like torch). `lse` is the stable log-sum-exp of the row.
 * Backward: `dlogits = (softmax − (1 − ε)·onehot(t) − ε/V)·dy/count` on
 * counted rows, 0 on ignored ones.
 *
 * {@linkcode crossEntropyStats} returns, without gradient, the four sums a
 * training loop needs per batch (16 bytes to read back instead of logits):
 * `[Σ cross-entropy (no smoothing), count, argmax hits, top-k hits]`. Ties
 * follow metrics/token_metrics.ts (a stable descending sort): a logit ranks
 * above the target's when it is larger, or equal at a lower class index. So
 * the argmax is the first maximum (`torch.argmax`), the target is a top-k hit
 * when fewer than k logits rank above it, and top-1 equals accuracy.
 *
 * Targets outside `[0, V)` that are not `ignoreIndex`: the CPU throws a
 * RangeError (torch raises too); the GPU counts them as ignored.
 *
 * GPU plan: one workgroup per row (max, Σ exp, Σ x in workgroup memory), then
 * one workgroup sums the per-row values in a fixed order (deterministic).
 *
 * @example
 * ```ts
 * import { crossEntropy, tensor } from "@webseq/webseq";
 * const logits = tensor([2, 0, 0, 0, 3, 0], [2, 3]);
 * const loss = crossEntropy(logits, tensor(new Int32Array([0, 1]), [2]), { ignoreIndex: -100 });
 * console.log(await loss.item()); // ≈ 0.1803
 * ```
 *
 * @module
 */
import { apply, type Tensor } from "../tensor/tensor.ts";
import {
  type CpuArray,
  fmtShape,
  type OpDef,
  type OpInfo,
  packUniform,
  type TensorInfo,
} from "../tensor/types.ts";
import { grid1d, LINEAR_INDEX, MAIN_1D } from "./_wgsl.ts";
import type { OpEntry } from "./registry.ts";
import {
  lastAxisRows,
  rowWorkgroupSize,
  WGSL_SOFTMAX_TAKE,
  wgslRowMain,
  wgslRowMerge,
  wgslTreeReduce,
} from "./softmax.ts";
import { crossEntropyGradF32, crossEntropyRowsF32 } from "./_cpu_threads_kernels.ts";
import { cpuWrites } from "../tensor/cpu_backend.ts";
import { expF64 } from "./_exp.ts";

/** Options of {@linkcode crossEntropy}. */
export interface CrossEntropyOptions {
  /** Target id that counts nowhere (torch `ignore_index`; use the pad id). */
  ignoreIndex: number;
  /** Label smoothing ε in [0, 1] (torch `label_smoothing`). Default 0. */
  labelSmoothing?: number;
}

/** Options of {@linkcode crossEntropyStats}. */
export interface CrossEntropyStatsOptions {
  /** Target id that counts nowhere (torch `ignore_index`; use the pad id). */
  ignoreIndex: number;
  /** k of the top-k count. Default 5. */
  k?: number;
}

/** Parameters of {@linkcode CROSS_ENTROPY} and {@linkcode CROSS_ENTROPY_GRAD}. */
export interface CrossEntropyParams {
  /** Ignored target id. */
  ignoreIndex: number;
  /** Label smoothing ε. */
  labelSmoothing: number;
}

/** Parameters of {@linkcode CROSS_ENTROPY_STATS}. */
export interface CrossEntropyStatsParams {
  /** Ignored target id. */
  ignoreIndex: number;
  /** k of the top-k count. */
  k: number;
}

const LOWEST = "-3.4028234663852886e38";
const NAN = "bitcast<f32>(0x7fc00000u)";
/** Threads of the final single-workgroup sum. */
const SUM_WG = 256;

function checkLogits(name: string, logits: TensorInfo, targets: TensorInfo): void {
  if (logits.dtype === "i32" || logits.shape.length === 0) {
    throw new TypeError(
      `Cannot ${name}: logits must be a float [..., V], got ${
        fmtShape(logits.shape)
      } ${logits.dtype}`,
    );
  }
  if (targets.dtype !== "i32" || fmtShape(targets.shape) !== fmtShape(logits.shape.slice(0, -1))) {
    throw new TypeError(
      `Cannot ${name}: targets ${fmtShape(targets.shape)} ${targets.dtype} must be i32 ${
        fmtShape(logits.shape.slice(0, -1))
      } for logits ${fmtShape(logits.shape)}`,
    );
  }
}

/** Whether row `n`'s target counts; RangeError for targets outside [0, V). */
function counted(t: number, n: number, V: number, ignoreIndex: number, name: string): boolean {
  if (t === ignoreIndex) return false;
  if (!(t >= 0 && t < V)) {
    throw new RangeError(`${name}: target ${t} at row ${n} is outside [0, ${V})`);
  }
  return true;
}

/**
 * Max m, log Σ exp(x − m) and Σ x of one row, in float64 (lse = m + logS;
 * differences are formed as (m − x) + logS, which keeps float32 exact-ish).
 */
function rowStats(x: CpuArray, o: number, V: number): { m: number; logS: number; sum: number } {
  let m = -Infinity, sum = 0;
  for (let j = 0; j < V; j++) {
    m = Math.max(m, x[o + j]);
    sum += x[o + j];
  }
  let s = 0;
  for (let j = 0; j < V; j++) s += expF64(x[o + j] - m);
  return { m, logS: Math.log(s), sum };
}

/** rowStats of row n from crossEntropyRowsF32's [N, 4] statistics. */
function rowStatsOf(f: Float64Array, n: number): { m: number; logS: number; sum: number } {
  return { m: f[4 * n], logS: Math.log(f[4 * n + 2]), sum: f[4 * n + 1] };
}

/**
 * The row statistics and ranks of the last f32 `CROSS_ENTROPY.cpu` call, which
 * `CROSS_ENTROPY_STATS.cpu` takes when it gets the same logits array (a
 * training step asks for both; the stats then cost no second pass over the
 * logits). Valid while no CPU storage was written in place since
 * (`cpuWrites()`), and for the same targets.
 */
let lastRows: {
  x: WeakRef<Float32Array>;
  t: Int32Array;
  N: number;
  V: number;
  rows: Float64Array;
  writes: number;
} | null = null;

/** lastRows' statistics when they are those of (x, t), else null; the cache is emptied either way. */
function takeRows(x: Float32Array, t: Int32Array, N: number, V: number): Float64Array | null {
  const c = lastRows;
  lastRows = null;
  if (!c || c.x.deref() !== x || c.N !== N || c.V !== V || c.writes !== cpuWrites()) return null;
  for (let n = 0; n < N; n++) if (c.t[n] !== t[n]) return null;
  return c.rows;
}

/**
 * WGSL: one workgroup sums `part`, N rows of `nvals` values, into `tot[k]`
 * (fixed order), then thread 0 runs `write`; `outs` name the output arrays.
 */
function finalSumKernel(nvals: number, outs: string[], write: string): string {
  const decls = outs.map((name, k) =>
    `@group(0) @binding(${k + 1}) var<storage, read_write> ${name}: array<f32>;`
  ).join("\n");
  return `
@group(0) @binding(0) var<storage, read> part: array<f32>;
${decls}
struct U { N: u32 }
@group(0) @binding(${outs.length + 1}) var<uniform> u: U;
var<workgroup> red: array<f32, ${SUM_WG}>;
${wgslTreeReduce("wg_sum", "f32", SUM_WG, "a + b")}
@compute @workgroup_size(${SUM_WG})
fn main(@builtin(local_invocation_id) lid3: vec3u) {
  let lid = lid3.x;
  var tot: array<f32, ${nvals}>;
  for (var k = 0u; k < ${nvals}u; k++) {
    var acc: f32 = 0.0;
    for (var n = lid; n < u.N; n += ${SUM_WG}u) { acc += part[n * ${nvals}u + k]; }
    tot[k] = wg_sum(acc, lid);
  }
  if (lid == 0u) { ${write} }
}`;
}

// ---------------------------------------------------------------- loss

/**
 * `(1 − ε)·nll + ε·smooth` with a term of weight 0 left out rather than
 * multiplied: a −∞ logit (a masked vocabulary) makes `smooth`, or a −∞ target
 * logit `nll`, +∞, and 0·∞ would make the loss NaN where torch's is finite.
 */
function smoothed(nll: number, smooth: number, eps: number): number {
  return (eps < 1 ? (1 - eps) * nll : 0) + (eps > 0 ? eps * smooth : 0);
}

/**
 * Fused cross-entropy: inputs `[logits [..., V], targets i32 [...]]`, outputs
 * `[loss [], lse [...], count []]` (lse and count are saved for the backward).
 */
export const CROSS_ENTROPY: OpDef<CrossEntropyParams> = {
  name: "crossEntropy",
  overwrites: true,
  outputs([logits, targets], p) {
    checkLogits("crossEntropy", logits, targets);
    if (!(p.labelSmoothing >= 0 && p.labelSmoothing <= 1)) {
      throw new RangeError(
        `crossEntropy: labelSmoothing must be in [0, 1], got ${p.labelSmoothing}`,
      );
    }
    if (!Number.isInteger(p.ignoreIndex)) {
      throw new TypeError(`crossEntropy: ignoreIndex must be an integer, got ${p.ignoreIndex}`);
    }
    return [
      { shape: [], dtype: logits.dtype },
      { shape: targets.shape, dtype: logits.dtype },
      { shape: [], dtype: logits.dtype },
    ];
  },
  cpu([x, t], [loss, lse, count], info, p) {
    const [N, V] = lastAxisRows(info.inputs[0].shape);
    const eps = p.labelSmoothing;
    // f32: the row statistics in WebAssembly on the CPU threads (same bits), with the
    // targets' ranks that crossEntropyStats (called next on the same logits) reuses
    const fast = x instanceof Float32Array && t instanceof Int32Array
      ? crossEntropyRowsF32(x, t, N, V)
      : null;
    if (fast) {
      lastRows = {
        x: new WeakRef(x as Float32Array),
        t: (t as Int32Array).slice(0, N),
        N,
        V,
        rows: fast,
        writes: cpuWrites(),
      };
    }
    let total = 0, cnt = 0;
    for (let n = 0; n < N; n++) {
      const o = n * V;
      const st = fast ? rowStatsOf(fast, n) : rowStats(x, o, V);
      lse[n] = st.m + st.logS;
      if (!counted(t[n], n, V, p.ignoreIndex, "crossEntropy")) continue;
      total += smoothed((st.m - x[o + t[n]]) + st.logS, (st.m - st.sum / V) + st.logS, eps);
      cnt++;
    }
    loss[0] = total / cnt; // NaN when nothing counts, like torch
    count[0] = cnt;
  },
  gpu(info, p) {
    const [N, V] = lastAxisRows(info.inputs[0].shape);
    const wg = rowWorkgroupSize(V);
    return {
      temps: [Math.max(4, 2 * N * 4)],
      kernels: [
        {
          code: `
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> t: array<i32>;
@group(0) @binding(2) var<storage, read_write> lse: array<f32>;
@group(0) @binding(3) var<storage, read_write> part: array<f32>;
struct U { R: u32, V: u32, ignore: i32, eps: f32 }
@group(0) @binding(4) var<uniform> u: U;
${wgslRowMerge(wg)}
${WGSL_SOFTMAX_TAKE}
${wgslRowMain(wg)}
  let o = row * u.V;
  // one pass: a running (max, Σ exp) pair and Σ x per thread, merged over the row
  var sp = vec2f(${LOWEST}, 0.0);
  var px: f32 = 0.0;
  for (var j = lid; j < u.V; j += ${wg}u) {
    let v = x[o + j];
    softmax_take(v, &sp);
    px += v;
  }
  let r = row_merge(sp.x, sp.y, px, 0.0, lid);
  let m = r.x;
  let sx = r.z;
  let ls = log(r.y);
  if (lid == 0u) {
    lse[row] = m + ls;
    let tr = t[row];
    let ok = tr != u.ignore && tr >= 0 && u32(tr) < u.V;
    var loss = 0.0;
    if (ok) {
      // a term of weight 0 is left out, not multiplied: a −∞ logit makes it +∞ (0·∞ = NaN)
      let nll = (m - x[o + u32(tr)]) + ls;
      let uniform_ce = (m - sx / f32(u.V)) + ls;
      loss = select(0.0, (1.0 - u.eps) * nll, u.eps < 1.0) + select(0.0, u.eps * uniform_ce, u.eps > 0.0);
    }
    part[row * 2u] = loss;
    part[row * 2u + 1u] = select(0.0, 1.0, ok);
  }
}`,
          bind: [{ in: 0 }, { in: 1 }, { out: 1 }, { tmp: 0 }],
          uniform: packUniform([N, V, p.ignoreIndex], [p.labelSmoothing]),
          workgroups: grid1d(N, 1),
        },
        {
          code: finalSumKernel(
            2,
            ["loss", "count"],
            `loss[0] = select(${NAN}, tot[0] / tot[1], tot[1] > 0.0); count[0] = tot[1];`,
          ),
          bind: [{ tmp: 0 }, { out: 0 }, { out: 2 }],
          uniform: packUniform([N]),
          workgroups: [1, 1, 1],
        },
      ],
    };
  },
  backward(c, [dy]) {
    const [logits, targets] = c.inputs as Tensor[];
    const [, lse, count] = c.outputs as Tensor[];
    if (!dy) return [null, null];
    return [
      apply(CROSS_ENTROPY_GRAD, [logits, targets, lse, count, dy as Tensor], c.params)[0],
      null,
    ];
  },
};

/**
 * Fused cross-entropy backward: inputs `[logits, targets, lse, count, dy []]`,
 * output `dlogits = (softmax − (1 − ε)·onehot − ε/V)·dy/count` (0 on ignored rows).
 */
export const CROSS_ENTROPY_GRAD: OpDef<CrossEntropyParams> = {
  name: "crossEntropyGrad",
  overwrites: true,
  outputs([logits, targets, lse, count, dy]) {
    checkLogits("crossEntropyGrad", logits, targets);
    if (
      fmtShape(lse.shape) !== fmtShape(targets.shape) || count.shape.length !== 0 ||
      dy.shape.length !== 0
    ) {
      throw new TypeError(
        `Cannot crossEntropyGrad: lse ${fmtShape(lse.shape)}, count ${fmtShape(count.shape)}, dy ${
          fmtShape(dy.shape)
        } do not fit logits ${fmtShape(logits.shape)}`,
      );
    }
    return [{ shape: logits.shape, dtype: logits.dtype }];
  },
  cpu([x, t, lse, count, dy], [dx], info, p) {
    const [N, V] = lastAxisRows(info.inputs[0].shape);
    const eps = p.labelSmoothing;
    const g = dy[0] / count[0];
    // f32: the same arithmetic in WebAssembly on the CPU threads (ops/_cpu_threads_kernels.ts)
    if (
      x instanceof Float32Array && t instanceof Int32Array && lse instanceof Float32Array &&
      dx instanceof Float32Array &&
      crossEntropyGradF32(x, t, lse, dx, { N, V, ignoreIndex: p.ignoreIndex, eps, g })
    ) return;
    for (let n = 0; n < N; n++) {
      const o = n * V;
      const ok = t[n] !== p.ignoreIndex && t[n] >= 0 && t[n] < V;
      for (let j = 0; j < V; j++) {
        dx[o + j] = ok ? (expF64(x[o + j] - lse[n]) - (j === t[n] ? 1 - eps : 0) - eps / V) * g : 0;
      }
    }
  },
  gpu(info, p) {
    const [N, V] = lastAxisRows(info.inputs[0].shape);
    // rows of a multiple of 4: a thread per 4 logits of one row (vec4 loads and stores, one
    // row/column division per 4), the same arithmetic per element
    const W = V % 4 === 0 ? 4 : 1, n = (N * V) / W;
    const T = W === 4 ? "vec4f" : "f32";
    const hot = W === 4
      ? `var hot = vec4f(0.0);
  if (u32(tr) >= j && u32(tr) < j + 4u) { hot[u32(tr) - j] = 1.0 - u.eps; }`
      : "let hot = select(0.0, 1.0 - u.eps, u32(tr) == j);";
    return {
      kernels: [{
        code: `
@group(0) @binding(0) var<storage, read> x: array<${T}>;
@group(0) @binding(1) var<storage, read> t: array<i32>;
@group(0) @binding(2) var<storage, read> lse: array<f32>;
@group(0) @binding(3) var<storage, read> count: array<f32>;
@group(0) @binding(4) var<storage, read> dy: array<f32>;
@group(0) @binding(5) var<storage, read_write> dx: array<${T}>;
struct U { n: u32, V: u32, ignore: i32, eps: f32 }
@group(0) @binding(6) var<uniform> u: U;
${MAIN_1D()} {
  ${LINEAR_INDEX()}
  if (i >= u.n) { return; }
  let row = (i * ${W}u) / u.V;
  let j = (i * ${W}u) % u.V;
  let tr = t[row];
  if (tr == u.ignore || tr < 0 || u32(tr) >= u.V) { dx[i] = ${T}(0.0); return; }
  ${hot}
  dx[i] = (exp(x[i] - ${T}(lse[row])) - hot - ${T}(u.eps / f32(u.V))) * (dy[0] / count[0]);
}`,
        bind: [{ in: 0 }, { in: 1 }, { in: 2 }, { in: 3 }, { in: 4 }, { out: 0 }],
        uniform: packUniform([n, V, p.ignoreIndex], [p.labelSmoothing]),
        workgroups: grid1d(n),
      }],
    };
  },
};

// ---------------------------------------------------------------- stats

/**
 * Token statistics without gradient: inputs `[logits [..., V], targets i32 [...]]`,
 * output f32 `[4]` = `[Σ CE (no smoothing), count, argmax hits, top-k hits]`.
 */
export const CROSS_ENTROPY_STATS: OpDef<CrossEntropyStatsParams> = {
  name: "crossEntropyStats",
  outputs([logits, targets], p) {
    checkLogits("crossEntropyStats", logits, targets);
    if (!Number.isInteger(p.k) || p.k < 1) {
      throw new RangeError(`crossEntropyStats: k must be a positive integer, got ${p.k}`);
    }
    return [{ shape: [4], dtype: logits.dtype }];
  },
  cpu([x, t], [out], info, p) {
    const [N, V] = lastAxisRows(info.inputs[0].shape);
    // f32: the row statistics and ranks in WebAssembly on the CPU threads (same bits)
    const fast = x instanceof Float32Array && t instanceof Int32Array
      ? takeRows(x, t, N, V) ?? crossEntropyRowsF32(x, t, N, V)
      : null;
    let nll = 0, cnt = 0, hit = 0, topk = 0;
    for (let n = 0; n < N; n++) {
      if (!counted(t[n], n, V, p.ignoreIndex, "crossEntropyStats")) continue;
      const o = n * V, tn = t[n], xt = x[o + tn];
      const st = fast ? rowStatsOf(fast, n) : rowStats(x, o, V);
      nll += (st.m - xt) + st.logS;
      cnt++;
      let above = fast ? fast[4 * n + 3] : 0;
      for (let j = 0; !fast && j < V; j++) {
        if (x[o + j] > xt || (x[o + j] === xt && j < tn)) above++;
      }
      if (above === 0) hit++;
      if (above < p.k) topk++;
    }
    out[0] = nll;
    out[1] = cnt;
    out[2] = hit;
    out[3] = topk;
  },
  gpu(info: OpInfo, p) {
    const [N, V] = lastAxisRows(info.inputs[0].shape);
    const wg = rowWorkgroupSize(V);
    return {
      temps: [Math.max(4, 4 * N * 4)],
      kernels: [
        {
          code: `
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> t: array<i32>;
@group(0) @binding(2) var<storage, read_write> part: array<f32>;
struct U { R: u32, V: u32, ignore: i32, k: u32 }
@group(0) @binding(3) var<uniform> u: U;
${wgslRowMerge(wg)}
${WGSL_SOFTMAX_TAKE}
${wgslRowMain(wg)}
  let o = row * u.V;
  let tr = t[row];
  // uniform per workgroup: every thread reads the same target
  if (tr == u.ignore || tr < 0 || u32(tr) >= u.V) {
    if (lid < 4u) { part[row * 4u + lid] = 0.0; }
    return;
  }
  let tu = u32(tr);
  let xt = x[o + tu];
  // one pass: a running (max, Σ exp) pair and the count of logits ranked above the target
  var sp = vec2f(${LOWEST}, 0.0);
  var pa: f32 = 0.0;
  for (var j = lid; j < u.V; j += ${wg}u) {
    let v = x[o + j];
    softmax_take(v, &sp);
    if (v > xt || (v == xt && j < tu)) { pa += 1.0; }
  }
  let r = row_merge(sp.x, sp.y, pa, 0.0, lid);
  let m = r.x;
  let above = r.z;
  let ls = log(r.y);
  if (lid == 0u) {
    part[row * 4u] = (m - xt) + ls;
    part[row * 4u + 1u] = 1.0;
    part[row * 4u + 2u] = select(0.0, 1.0, above == 0.0);
    part[row * 4u + 3u] = select(0.0, 1.0, above < f32(u.k));
  }
}`,
          bind: [{ in: 0 }, { in: 1 }, { tmp: 0 }],
          uniform: packUniform([N, V, p.ignoreIndex, p.k]),
          workgroups: grid1d(N, 1),
        },
        {
          code: finalSumKernel(4, ["out"], "for (var k = 0u; k < 4u; k++) { out[k] = tot[k]; }"),
          bind: [{ tmp: 0 }, { out: 0 }],
          uniform: packUniform([N]),
          workgroups: [1, 1, 1],
        },
      ],
    };
  },
};

// ---------------------------------------------------------------- user functions

/**
 * Mean cross-entropy over rows whose target is not `ignoreIndex`, with
 * optional label smoothing: torch `CrossEntropyLoss(ignore_index,
 * label_smoothing)`. logits `[..., V]`, targets i32 `[...]` → scalar `[]`
 * (NaN when every target is ignored).
 */
export function crossEntropy(logits: Tensor, targets: Tensor, opts: CrossEntropyOptions): Tensor {
  const [loss, lse, count] = apply(CROSS_ENTROPY, [logits, targets], {
    ignoreIndex: opts.ignoreIndex,
    labelSmoothing: opts.labelSmoothing ?? 0,
  });
  if (!loss.node) {
    lse.dispose();
    count.dispose();
  }
  return loss;
}

/**
 * `[Σ per-token CE (no smoothing), count of non-ignored targets, argmax hits,
 * top-k hits]` as f32 `[4]`, without gradient (see the module doc for ties).
 */
export function crossEntropyStats(
  logits: Tensor,
  targets: Tensor,
  opts: CrossEntropyStatsOptions,
): Tensor {
  return apply(CROSS_ENTROPY_STATS, [logits, targets], {
    ignoreIndex: opts.ignoreIndex,
    k: opts.k ?? 5,
  })[0];
}

/** Registry entries of this file (see tests/ops_registry_test.ts). */
export const CROSS_ENTROPY_ENTRIES: OpEntry[] = [
  {
    op: CROSS_ENTROPY,
    cases: [
      {
        inputs: [{ shape: [6, 5], min: -3, max: 3 }, {
          shape: [6],
          dtype: "i32",
          values: [1, 0, 4, 0, 2, 3],
        }],
        params: { ignoreIndex: 0, labelSmoothing: 0 },
      },
      {
        label: "label smoothing 0.1, ignore -100",
        inputs: [{ shape: [2, 3, 7], min: -3, max: 3 }, {
          shape: [2, 3],
          dtype: "i32",
          values: [6, -100, 0, 3, 3, -100],
        }],
        params: { ignoreIndex: -100, labelSmoothing: 0.1 },
      },
      {
        label: "logits ±50, rows of 300",
        inputs: [{ shape: [4, 300], min: -50, max: 50 }, {
          shape: [4],
          dtype: "i32",
          values: [299, 0, 17, 5],
        }],
        params: { ignoreIndex: 0, labelSmoothing: 0.2 },
      },
      {
        inputs: [{ shape: [1, 1] }, { shape: [1], dtype: "i32", values: [0] }],
        params: { ignoreIndex: -100, labelSmoothing: 0 },
      },
      {
        label: "logits ±90, 1000 classes",
        inputs: [{ shape: [3, 1000], min: -90, max: 90 }, {
          shape: [3],
          dtype: "i32",
          values: [999, 1, 500],
        }],
        params: { ignoreIndex: 1, labelSmoothing: 0.05 },
        noGradCheck: true,
      },
      {
        label: "all ignored → NaN",
        inputs: [{ shape: [3, 4] }, { shape: [3], dtype: "i32", values: [2, 2, 2] }],
        params: { ignoreIndex: 2, labelSmoothing: 0.1 },
        noGradCheck: true,
      },
    ],
  },
  {
    op: CROSS_ENTROPY_GRAD,
    cases: [
      {
        inputs: [
          { shape: [4, 5], min: -3, max: 3 },
          { shape: [4], dtype: "i32", values: [1, 0, 4, 2] },
          { shape: [4], min: 3, max: 4 },
          { shape: [], values: [3] },
          { shape: [], values: [0.7] },
        ],
        params: { ignoreIndex: 0, labelSmoothing: 0.1 },
      },
      {
        inputs: [
          { shape: [3, 300], min: -50, max: 50 },
          { shape: [3], dtype: "i32", values: [299, 7, -100] },
          { shape: [3], min: 49, max: 50 },
          { shape: [], values: [2] },
          { shape: [], values: [1] },
        ],
        params: { ignoreIndex: -100, labelSmoothing: 0 },
      },
    ],
  },
  {
    op: CROSS_ENTROPY_STATS,
    cases: [
      {
        inputs: [{ shape: [6, 5], min: -3, max: 3 }, {
          shape: [6],
          dtype: "i32",
          values: [1, 0, 4, 0, 2, 3],
        }],
        params: { ignoreIndex: 0, k: 2 },
      },
      {
        label: "ties: first index wins",
        inputs: [{ shape: [4, 4], values: [1, 1, 0, 0, 1, 1, 0, 0, 2, 2, 2, 2, 0, 3, 3, 3] }, {
          shape: [4],
          dtype: "i32",
          values: [0, 1, 3, 2],
        }],
        params: { ignoreIndex: -100, k: 2 },
      },
      {
        label: "logits ±50, rows of 300, k=5",
        inputs: [{ shape: [5, 300], min: -50, max: 50 }, {
          shape: [5],
          dtype: "i32",
          values: [299, 0, 17, 5, 0],
        }],
        params: { ignoreIndex: 0, k: 5 },
      },
    ],
  },
];
