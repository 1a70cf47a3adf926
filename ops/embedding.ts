/**
 * `embedding`: gathers rows of a table, `out[..., c] = weight[ids[...], c]`,
 * with a deterministic scatter-add backward
 * (`dweight[v, c] = Σ_{p: ids[p] = v} dy[p, c]`, summed in position order).
 *
 * Out-of-range ids: the CPU throws a RangeError naming the id and its
 * position; the GPU (which cannot throw) gives a zero row for them and they
 * receive no gradient.
 *
 * The GPU backward has no float atomics to rely on, so it sorts the
 * positions by id with a stable least-significant-digit radix sort (8-bit
 * digits: one pass per byte of V; per pass a digit count per block of 256
 * positions, one prefix sum, a stable scatter), which keeps each id's
 * positions in increasing order; one workgroup per table row then finds its
 * run of positions by binary search and adds their dy rows in that order.
 * The work is O(N·C + V·C) and O(N) per pass to sort (it was an O(N²) scan
 * for the next position of the same id: 0.33 s at N = 8192 on llvmpipe).
 *
 * @example
 * ```ts
 * import { embedding, tensor } from "@webseq/webseq";
 * const w = tensor([0, 1, 10, 11, 20, 21], [3, 2]);
 * const y = embedding(w, tensor(new Int32Array([2, 0]), [2]));
 * console.log(await y.toArray()); // [20, 21, 0, 1]
 * ```
 *
 * @module
 */
import { apply, applyInto, type Tensor } from "../tensor/tensor.ts";
import { fmtShape, type GpuKernel, type OpDef, packUniform, sizeOf } from "../tensor/types.ts";
import { grid1d, LINEAR_INDEX, MAIN_1D } from "./_wgsl.ts";
import type { OpEntry } from "./registry.ts";
import { rowWorkgroupSize } from "./softmax.ts";

/**
 * Embedding gather: inputs `[weight [V, C], ids i32 [...]]`, output `[..., C]`.
 */
export const EMBEDDING: OpDef = {
  name: "embedding",
  overwrites: true,
  outputs([w, ids]) {
    if (w.shape.length !== 2 || w.dtype === "i32") {
      throw new TypeError(
        `Cannot embedding: weight must be a float [V, C], got ${fmtShape(w.shape)} ${w.dtype}`,
      );
    }
    if (ids.dtype !== "i32") {
      throw new TypeError(`Cannot embedding: ids must be i32, got ${ids.dtype}`);
    }
    return [{ shape: [...ids.shape, w.shape[1]], dtype: w.dtype }];
  },
  cpu([w, ids], [out], info) {
    const [V, C] = info.inputs[0].shape;
    for (let p = 0; p < ids.length; p++) {
      const v = ids[p];
      if (!(v >= 0 && v < V)) {
        throw new RangeError(`embedding: id ${v} at position ${p} is outside [0, ${V})`);
      }
      for (let c = 0; c < C; c++) out[p * C + c] = w[v * C + c];
    }
  },
  gpu(info) {
    const [V, C] = info.inputs[0].shape;
    const n = sizeOf(info.outputs[0].shape);
    return {
      kernels: [{
        code: `
@group(0) @binding(0) var<storage, read> w: array<f32>;
@group(0) @binding(1) var<storage, read> ids: array<i32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
struct U { n: u32, V: u32, C: u32 }
@group(0) @binding(3) var<uniform> u: U;
${MAIN_1D()} {
  ${LINEAR_INDEX()}
  if (i >= u.n) { return; }
  let v = ids[i / u.C];
  if (v < 0 || u32(v) >= u.V) { out[i] = 0.0; return; }
  out[i] = w[u32(v) * u.C + i % u.C];
}`,
        bind: [{ in: 0 }, { in: 1 }, { out: 0 }],
        uniform: packUniform([n, V, C]),
        workgroups: grid1d(n),
      }],
    };
  },
  backward(c, [dy]) {
    const [w, ids] = c.inputs as Tensor[];
    if (!w.requiresGrad) return [null, null];
    // straight into the optimizer's flat gradient buffer where it offers it
    const into = [c.gradSink?.(0)];
    return [applyInto(EMBEDDING_GRAD, [ids, dy as Tensor], { V: w.shape[0] }, into)[0], null];
  },
};

/** Parameters of {@linkcode EMBEDDING_GRAD}. */
export interface EmbeddingGradParams {
  /** Rows of the table. */
  V: number;
}

/** Positions per block of the GPU backward's radix sort (one workgroup, one per thread). */
const SORT_BLOCK = 256;
/** Buckets of one radix pass (8-bit digits). */
const RADIX = 256;

/** 8-bit passes that sort keys 0..V (V: the key of out-of-range ids). */
function radixPasses(V: number): number {
  return Math.max(1, Math.ceil(Math.ceil(Math.log2(V + 1)) / 8));
}

const RADIX_UNIFORM = `struct U { N: u32, NB: u32, V: u32, shift: u32, M: u32 }`;

/** WGSL: the sort key of position i (pass 0: from ids, out-of-range ids → V; else stored). */
function keyAt(first: boolean): string {
  return first
    ? `fn key_at(i: u32) -> u32 {
  let v = src[i];
  return select(u.V, u32(v), v >= 0 && u32(v) < u.V);
}`
    : "fn key_at(i: u32) -> u32 { return src[i]; }";
}

/**
 * Radix pass, step 1: each block of {@linkcode SORT_BLOCK} positions counts
 * its keys' digits; `hist[d·NB + b]` (digit-major, so one exclusive scan
 * gives every (digit, block) its first output slot).
 */
function radixHistogramWgsl(first: boolean): string {
  return `
@group(0) @binding(0) var<storage, read> src: array<${first ? "i32" : "u32"}>;
@group(0) @binding(1) var<storage, read_write> hist: array<u32>;
${RADIX_UNIFORM}
@group(0) @binding(2) var<uniform> u: U;
var<workgroup> cnt: array<atomic<u32>, ${RADIX}>;
${keyAt(first)}
@compute @workgroup_size(${SORT_BLOCK})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) t: u32) {
  let b = wid.x + wid.y * nwg.x;
  if (b >= u.NB) { return; }
  atomicStore(&cnt[t], 0u);
  workgroupBarrier();
  let i = b * ${SORT_BLOCK}u + t;
  if (i < u.N) { atomicAdd(&cnt[(key_at(i) >> u.shift) & ${RADIX - 1}u], 1u); }
  workgroupBarrier();
  hist[t * u.NB + b] = atomicLoad(&cnt[t]);
}`;
}

/** Radix pass, step 2: the exclusive prefix sum of `hist` (M entries) in one workgroup. */
const RADIX_SCAN_WGSL = `
@group(0) @binding(0) var<storage, read_write> hist: array<u32>;
${RADIX_UNIFORM}
@group(0) @binding(1) var<uniform> u: U;
var<workgroup> part: array<u32, 256>;
@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) t: u32) {
  // each thread a contiguous chunk: its sum, a scan of the 256 sums, then the chunk's prefixes
  let per = (u.M + 255u) / 256u;
  let lo = min(t * per, u.M);
  let hi = min(lo + per, u.M);
  var s = 0u;
  for (var j = lo; j < hi; j++) { s += hist[j]; }
  part[t] = s;
  workgroupBarrier();
  for (var off = 1u; off < 256u; off <<= 1u) {
    var x = 0u;
    if (t >= off) { x = part[t - off]; }
    workgroupBarrier();
    part[t] += x;
    workgroupBarrier();
  }
  var run = 0u;
  if (t > 0u) { run = part[t - 1u]; }
  for (var j = lo; j < hi; j++) {
    let h = hist[j];
    hist[j] = run;
    run += h;
  }
}`;

/**
 * Radix pass, step 3: each position goes to its (digit, block) slot plus
 * the number of earlier positions of its block with the same digit: a
 * stable pass, so positions of one id stay in increasing order.
 */
function radixScatterWgsl(first: boolean): string {
  return `
@group(0) @binding(0) var<storage, read> src: array<${first ? "i32" : "u32"}>;
${
    first
      ? `@group(0) @binding(1) var<storage, read> hist: array<u32>;
@group(0) @binding(2) var<storage, read_write> dkeys: array<u32>;
@group(0) @binding(3) var<storage, read_write> dpos: array<u32>;
${RADIX_UNIFORM}
@group(0) @binding(4) var<uniform> u: U;`
      : `@group(0) @binding(1) var<storage, read> spos: array<u32>;
@group(0) @binding(2) var<storage, read> hist: array<u32>;
@group(0) @binding(3) var<storage, read_write> dkeys: array<u32>;
@group(0) @binding(4) var<storage, read_write> dpos: array<u32>;
${RADIX_UNIFORM}
@group(0) @binding(5) var<uniform> u: U;`
  }
var<workgroup> dig: array<u32, ${SORT_BLOCK}>;
${keyAt(first)}
@compute @workgroup_size(${SORT_BLOCK})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) t: u32) {
  let b = wid.x + wid.y * nwg.x;
  if (b >= u.NB) { return; }
  let i = b * ${SORT_BLOCK}u + t;
  var k = 0u;
  var d = ${RADIX}u; // past the end: matches no digit
  if (i < u.N) {
    k = key_at(i);
    d = (k >> u.shift) & ${RADIX - 1}u;
  }
  dig[t] = d;
  workgroupBarrier();
  if (i < u.N) {
    var rank = 0u;
    for (var j = 0u; j < t; j++) { rank += select(0u, 1u, dig[j] == d); }
    let at = hist[d * u.NB + b] + rank;
    dkeys[at] = k;
    dpos[at] = ${first ? "i" : "spos[i]"};
  }
}`;
}

/**
 * The sum: one workgroup per table row v finds its positions in the sorted
 * keys (two binary searches) and adds their dy rows in position order.
 */
function segmentSumWgsl(wg: number): string {
  return `
@group(0) @binding(0) var<storage, read> keys: array<u32>;
@group(0) @binding(1) var<storage, read> pos: array<u32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> dw: array<f32>;
struct U { N: u32, V: u32, C: u32 }
@group(0) @binding(4) var<uniform> u: U;
var<workgroup> run: vec2u;
// the first sorted slot whose key is at least x
fn lower_bound(x: u32) -> u32 {
  var lo = 0u;
  var hi = u.N;
  while (lo < hi) {
    let mid = (lo + hi) / 2u;
    if (keys[mid] < x) { lo = mid + 1u; } else { hi = mid; }
  }
  return lo;
}
@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let v = wid.x + wid.y * nwg.x;
  if (v >= u.V) { return; }
  // one thread searches, the workgroup shares the run
  if (lid == 0u) { run = vec2u(lower_bound(v), lower_bound(v + 1u)); }
  let r = workgroupUniformLoad(&run);
  for (var c = lid; c < u.C; c += ${wg}u) {
    var acc = 0.0;
    for (var s = r.x; s < r.y; s++) { acc += dy[pos[s] * u.C + c]; }
    dw[v * u.C + c] = acc;
  }
}`;
}

/**
 * Embedding backward (scatter-add): inputs `[ids i32 [...], dy [..., C]]`,
 * output `dweight [V, C]`; out-of-range ids contribute nothing.
 */
export const EMBEDDING_GRAD: OpDef<EmbeddingGradParams> = {
  name: "embeddingGrad",
  overwrites: true,
  outputs([ids, dy], p) {
    const C = dy.shape[dy.shape.length - 1];
    if (
      ids.dtype !== "i32" || dy.shape.length !== ids.shape.length + 1 ||
      fmtShape(dy.shape.slice(0, -1)) !== fmtShape(ids.shape)
    ) {
      throw new TypeError(
        `Cannot embeddingGrad: ids ${fmtShape(ids.shape)} ${ids.dtype} and dy ${
          fmtShape(dy.shape)
        } do not fit`,
      );
    }
    return [{ shape: [p.V, C], dtype: dy.dtype }];
  },
  cpu([ids, dy], [dw], info, p) {
    const dyShape = info.inputs[1].shape;
    const C = dyShape[dyShape.length - 1];
    // float64 sums in position order for the rows that occur (a compact slot per distinct id),
    // every other row zero: O(N·C + V), not a [V, C] float64 accumulator (16 MB at V = 8000)
    const slot = new Int32Array(p.V).fill(-1), rows: number[] = [];
    for (let q = 0; q < ids.length; q++) {
      const v = ids[q];
      if (v >= 0 && v < p.V && slot[v] < 0) {
        slot[v] = rows.length;
        rows.push(v);
      }
    }
    const acc = new Float64Array(rows.length * C);
    for (let q = 0; q < ids.length; q++) {
      const v = ids[q];
      if (!(v >= 0 && v < p.V)) continue;
      const a = slot[v] * C, d = q * C;
      for (let c = 0; c < C; c++) acc[a + c] += dy[d + c];
    }
    dw.fill(0);
    rows.forEach((v, k) => dw.set(acc.subarray(k * C, (k + 1) * C), v * C));
  },
  gpu(info, p) {
    const N = sizeOf(info.inputs[0].shape);
    const dyShape = info.inputs[1].shape;
    const C = dyShape[dyShape.length - 1];
    const V = p.V;
    const NB = Math.ceil(N / SORT_BLOCK); // sort blocks
    const passes = radixPasses(V);
    // tmp 0/1: keys and positions (one ping-pong side), tmp 2/3: the other side,
    // tmp 4: per-(digit, block) counts, then their exclusive prefix sums
    const n4 = Math.max(4, N * 4);
    const temps = [n4, n4, n4, n4, Math.max(4, RADIX * NB * 4)];
    const kernels: GpuKernel[] = [];
    for (let pass = 0; pass < passes; pass++) {
      const first = pass === 0;
      const uniform = packUniform([N, NB, V, 8 * pass, RADIX * NB]);
      // pass 0 reads ids (positions are the thread's); later passes the side the last one wrote
      const from = pass % 2 === 1 ? 0 : 2, to = pass % 2 === 1 ? 2 : 0;
      const srcKeys: GpuKernel["bind"][number] = first ? { in: 0 } : { tmp: from };
      kernels.push(
        {
          code: radixHistogramWgsl(first),
          bind: [srcKeys, { tmp: 4 }],
          uniform,
          workgroups: grid1d(NB, 1),
        },
        { code: RADIX_SCAN_WGSL, bind: [{ tmp: 4 }], uniform, workgroups: [1, 1, 1] },
        {
          code: radixScatterWgsl(first),
          bind: [
            srcKeys,
            ...(first ? [] : [{ tmp: from + 1 }]),
            { tmp: 4 },
            { tmp: to },
            { tmp: to + 1 },
          ],
          uniform,
          workgroups: grid1d(NB, 1),
        },
      );
    }
    const last = (passes - 1) % 2 === 1 ? 2 : 0; // the side the last pass wrote
    const wg = rowWorkgroupSize(C);
    kernels.push({
      code: segmentSumWgsl(wg),
      bind: [{ tmp: last }, { tmp: last + 1 }, { in: 1 }, { out: 0 }],
      uniform: packUniform([N, V, C]),
      workgroups: grid1d(V, 1),
    });
    return { temps, kernels };
  },
};

/**
 * Gathers rows of `weight` [V, C] at `ids` (i32, any shape) → `[...ids.shape, C]`.
 * CPU: RangeError for an id outside [0, V); GPU: a zero row instead.
 */
export function embedding(weight: Tensor, ids: Tensor): Tensor {
  return apply(EMBEDDING, [weight, ids], {})[0];
}

/** Registry entries of this file (see tests/ops_registry_test.ts). */
export const EMBEDDING_ENTRIES: OpEntry[] = [
  {
    op: EMBEDDING,
    cases: [
      { inputs: [{ shape: [5, 3] }, { shape: [4], dtype: "i32", intMax: 5 }], params: {} },
      {
        label: "repeated ids [2, 6] in V=4, C=7",
        inputs: [{ shape: [4, 7] }, {
          shape: [2, 6],
          dtype: "i32",
          values: [0, 3, 3, 1, 0, 0, 2, 3, 0, 0, 1, 3],
        }],
        params: {},
      },
      { inputs: [{ shape: [1, 1] }, { shape: [1], dtype: "i32", intMax: 1 }], params: {} },
      { inputs: [{ shape: [40, 130] }, { shape: [3, 5], dtype: "i32", intMax: 40 }], params: {} },
    ],
  },
  {
    op: EMBEDDING_GRAD,
    cases: [
      {
        label: "repeated ids, V=5 with an unused row",
        inputs: [{ shape: [2, 6], dtype: "i32", values: [0, 3, 3, 1, 0, 0, 2, 3, 0, 0, 1, 3] }, {
          shape: [2, 6, 7],
        }],
        params: { V: 5 },
      },
      {
        inputs: [{ shape: [300], dtype: "i32", intMax: 9 }, { shape: [300, 3] }],
        params: { V: 9 },
      },
      {
        label: "out-of-range ids get no gradient",
        inputs: [{ shape: [5], dtype: "i32", values: [1, 7, -1, 1, 0] }, { shape: [5, 2] }],
        params: { V: 3 },
      },
    ],
  },
];
