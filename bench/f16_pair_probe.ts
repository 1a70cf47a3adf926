/**
 * A probe of an f16 matmul built for packed half FMAs: each thread keeps one
 * `vec2<f16>` sum per output whose two lanes hold the even-k and odd-k
 * products, so every `fma(vec2<f16>, vec2<f16>, vec2<f16>)` (one packed
 * instruction, two FMAs) multiplies two k at once with no splat of a scalar
 * operand, and an f32 total per output takes the lanes every `group` k. The
 * slices are staged in workgroup memory as those pairs (`mat4x2<f16>`: the
 * pairs of 4 rows of `a`, or of 4 columns of `b`, at one k pair), so the
 * multiply reads four pairs per 16-byte load. `mat4x2<f16>` is 4-byte
 * aligned, so a compiler may split that load; the `v4` tiles stage two rows'
 * pairs per `vec4<f16>` instead (8-byte loads, two per four pairs, that are
 * surely whole). (u32 words would give aligned 16-byte loads, but naga in
 * Deno 2.9.6 mistypes the bitcasts between u32 words and f16 vectors:
 * `bitcast<u32>(vec2<f16>)` is refused and `bitcast<vec4<f16>>` of a
 * `vec2<u32>` comes out with two lanes.)
 *
 * Why: `--precision f16` runs the generator's f16 kernels (ops/_matmul_wgsl.ts
 * `MatmulHalf`), which splat each `a` value into a `vec4<f16>` and keep an f16
 * sum beside an f32 total for every output (96 accumulator registers for an
 * 8 × 8 thread tile against f32's 64); on an H100 they ran the step's products
 * at 26–33 TFLOP/s against f32's 35–40, although its ALU runs `vec4<f16>` FMA
 * chains at 2.4 × the f32 rate (bench/alu_probe.ts). The f16 target (1.5 × the
 * f32 step) needs the f16 products near twice the f32 rate. This probe tells,
 * on a card, whether the paired form gets there, before the generator takes it.
 *
 *   deno run -A bench/f16_pair_probe.ts [--size N] [--tiles T,T] [--layouts NN,NT] [--json]
 *
 * prints one JSON line per kernel and layout at N³ (default 4096 on hardware,
 * 128 on a software adapter; NN, and NT: a Linear layer's forward `x·Wᵀ`,
 * whose `W` rows hold the k pairs contiguous): the paired tiles, then the same product by the
 * generator's f32 kernel and its f16 kernel with f16 FMAs over 64-deep groups
 * (`f16acc64`), each with GPU timestamps where the adapter has them.
 * {@linkcode pairMatmulReference} is the exact CPU emulation the test
 * (tests/_f16_gpu.ts) compares with.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { type GpuBackend, sharedGpuBackend } from "../gpu/backend.ts";
import { roundToF16 } from "../ops/matmul_f16.ts";
import { f16ToFloat32, float32ToF16 } from "../train/safetensors.ts";
import { matmul, msPerCall, useMatmulVariant, warmCalls } from "../ops/matmul.ts";
import * as OPS from "../ops/mod.ts";
import { tensor } from "../tensor/tensor.ts";
import { timeKernel } from "./_kernel_timing.ts";
import type { Tensor } from "../tensor/tensor.ts";

/** A paired tile: `BM × BN` outputs per workgroup, `TM × TN` per thread, `2·BKP` k per slice. */
export interface PairTile {
  /** Output rows per workgroup. */
  BM: number;
  /** Output columns per workgroup. */
  BN: number;
  /** k pairs per workgroup-memory slice (the slice is 2·BKP deep). */
  BKP: number;
  /** Output rows per thread (a multiple of 4). */
  TM: number;
  /** Output columns per thread (a multiple of 4). */
  TN: number;
  /** k summed in f16 before the f32 totals take the sums (a multiple of 2·BKP); 0: all of K. */
  group: number;
  /**
   * Stage two rows' pairs per `vec4<f16>` (8-byte aligned: the loads are sure to be whole, two
   * per four pairs, and every staging store is 8 bytes) instead of four per `mat4x2<f16>`
   * (4-byte aligned: a compiler may split its 16-byte load in four).
   */
  v4?: boolean;
}

/** `p<BM>x<BN>k<2·BKP>_<TM>x<TN>g<group>`, `v` for two-row `vec4<f16>` staging. */
export function pairTileName(t: PairTile): string {
  return `p${t.BM}x${t.BN}k${2 * t.BKP}_${t.TM}x${t.TN}g${t.group}${t.v4 ? "v" : ""}`;
}

/** The tile a {@linkcode pairTileName} names (checked), or a TypeError. */
export function parsePairTile(name: string): PairTile {
  const m = /^p(\d+)x(\d+)k(\d+)_(\d+)x(\d+)g(\d+)(v?)$/.exec(name);
  if (!m) throw new TypeError(`"${name}" is not a paired tile name like p128x128k16_8x8g64`);
  const [BM, BN, BK, TM, TN, group] = m.slice(1, 7).map(Number);
  const t: PairTile = { BM, BN, BKP: BK / 2, TM, TN, group, ...(m[7] ? { v4: true } : {}) };
  checkPairTile(t);
  return t;
}

/** Threads of a tile's workgroup. */
export function pairThreads(t: PairTile): number {
  return (t.BM / t.TM) * (t.BN / t.TN);
}

function checkPairTile(t: PairTile): void {
  const { BM, BN, BKP, TM, TN, group } = t;
  const ok = [BM, BN, BKP, TM, TN].every((v) => Number.isInteger(v) && v > 0) &&
    TM % 4 === 0 && TN % 4 === 0 && BM % TM === 0 && BN % TN === 0 && BM % 4 === 0 &&
    (2 * BKP) % 4 === 0 && Number.isInteger(group) && group >= 0 && group % (2 * BKP) === 0;
  if (!ok) throw new TypeError(`pair tile ${JSON.stringify(t)} is not valid`);
}

/**
 * The tiles the probe times: the classic 8 × 8 thread tile (also with two-row
 * `vec4<f16>` staging, as its 4 × 8 twin), its 64-deep and whole-K f16 sums
 * (what the f32 totals cost), 32-deep slices, and the register-lighter 4 × 8
 * and 8 × 4 thread tiles.
 */
export const PAIR_TILES: readonly PairTile[] = [
  { BM: 128, BN: 128, BKP: 8, TM: 8, TN: 8, group: 64 },
  { BM: 128, BN: 128, BKP: 8, TM: 8, TN: 8, group: 64, v4: true },
  { BM: 64, BN: 128, BKP: 8, TM: 4, TN: 8, group: 64, v4: true },
  { BM: 128, BN: 128, BKP: 8, TM: 8, TN: 8, group: 0 },
  { BM: 128, BN: 128, BKP: 16, TM: 8, TN: 8, group: 64 },
  { BM: 128, BN: 128, BKP: 8, TM: 8, TN: 8, group: 128 },
  { BM: 64, BN: 128, BKP: 8, TM: 4, TN: 8, group: 64 },
  { BM: 128, BN: 64, BKP: 8, TM: 8, TN: 4, group: 64 },
  { BM: 128, BN: 128, BKP: 8, TM: 4, TN: 8, group: 64 },
  { BM: 64, BN: 64, BKP: 8, TM: 4, TN: 4, group: 64 },
];

const C = ["x", "y", "z", "w"];

/**
 * The WGSL of a paired tile: `c[M, N] = a[M, K] · b[K, N]`, f16 operands
 * (`vec4<f16>` arrays), f32 result (`vec4<f32>`), M, N, K multiples of BM,
 * BN and 2·BKP (and of 4). Uniform `{ M, N, K }`; workgroups `(N / BN, M / BM)`.
 */
export function pairMatmulWgsl(t: PairTile, transB = false): string {
  checkPairTile(t);
  const { BM, BN, BKP, TM, TN, group } = t;
  const BK = 2 * BKP, T = pairThreads(t), WX = BN / TN, WY = BM / TM;
  // 16-byte groups per k-pair row of a slice; one more where 4 threads store into the same
  // row group (an operand with k contiguous), so their stores fall in different banks
  // (v4: 8-byte elements of two rows, one pair each; two more per k-pair row where the stores
  // of 4 threads of a row pair meet)
  const V4 = t.v4 ?? false;
  const PA = V4 ? BM / 2 + 2 : BM / 4 + 1;
  const PB = V4 ? BN / 2 + (transB ? 2 : 0) : BN / 4 + (transB ? 1 : 0);
  const SLOT = V4 ? "vec4<f16>" : "mat4x2<f16>";
  const slots = (units: number) => Math.ceil(units / T);
  const setup: string[] = [], fetch: string[] = [], store: string[] = [];
  // an operand stored with k contiguous (`a`; `b` when transB): a vec4<f16> along k holds the
  // pairs of two k pairs of one row
  const kRows = (x: "a" | "b", rows: number, pitch: number, r0: string) => {
    const S = x === "a" ? "As" : "Bs";
    if (V4) return kRowPairs(x, S, rows, pitch, r0);
    const units = (rows * BK) / 4;
    for (let l = 0; l < slots(units); l++) {
      const e = `(tid + ${l * T}u)`, part = (l + 1) * T > units, v = `${x}v${l}`;
      setup.push(
        `let ${x}q${l} = ${e} % ${BK / 4}u; let ${x}r${l} = ${e} / ${BK / 4}u;`,
        `let ${x}i${l} = (${r0} + ${x}r${l}) * K4 + ${x}q${l};`,
        `var ${v} = vec4<f16>();`,
      );
      const ld = `${v} = ${x}[${x}i${l} + kt / 4u];`;
      fetch.push(part ? `if (${e} < ${units}u) { ${ld} }` : ld);
      const st = `{ let i0 = 2u * ${x}q${l} * ${pitch}u + ${x}r${l} / 4u; ` +
        `${S}[i0][${x}r${l} % 4u] = ${v}.xy; ${S}[i0 + ${pitch}u][${x}r${l} % 4u] = ${v}.zw; }`;
      store.push(part ? `if (${e} < ${units}u) ${st}` : st);
    }
  };
  // v4: a unit is two rows' vec4<f16> along k (4 k): element (2q, row pair) takes the first two k
  // of both rows, (2q + 1, row pair) the last two; every store 8 bytes
  const kRowPairs = (x: "a" | "b", S: string, rows: number, pitch: number, r0: string) => {
    const units = (rows / 2) * (BK / 4);
    for (let l = 0; l < slots(units); l++) {
      const e = `(tid + ${l * T}u)`, part = (l + 1) * T > units, v = `${x}v${l}`;
      setup.push(
        `let ${x}q${l} = ${e} % ${BK / 4}u; let ${x}r${l} = ${e} / ${BK / 4}u;`,
        `let ${x}i${l} = (${r0} + 2u * ${x}r${l}) * K4 + ${x}q${l};`,
        `var ${v} = vec4<f16>(); var ${v}n = vec4<f16>();`,
      );
      const ld = `${v} = ${x}[${x}i${l} + kt / 4u]; ${v}n = ${x}[${x}i${l} + K4 + kt / 4u];`;
      fetch.push(part ? `if (${e} < ${units}u) { ${ld} }` : ld);
      const st = `{ let i0 = 2u * ${x}q${l} * ${pitch}u + ${x}r${l}; ` +
        `${S}[i0] = vec4<f16>(${v}.xy, ${v}n.xy); ${S}[i0 + ${pitch}u] = vec4<f16>(${v}.zw, ${v}n.zw); }`;
      store.push(part ? `if (${e} < ${units}u) ${st}` : st);
    }
  };
  kRows("a", BM, PA, "m0");
  if (transB) kRows("b", BN, PB, "n0");
  const unitsB = transB ? 0 : (BKP * BN) / 4;
  for (let l = 0; l < slots(unitsB); l++) {
    const e = `(tid + ${l * T}u)`, part = (l + 1) * T > unitsB;
    setup.push(
      `let bk${l} = ${e} / ${BN / 4}u; let bn${l} = ${e} % ${BN / 4}u;`,
      `let bi${l} = 2u * bk${l} * N4 + n0 / 4u + bn${l};`,
      `var b0v${l} = vec4<f16>(); var b1v${l} = vec4<f16>();`,
    );
    const ld = `b0v${l} = b[bi${l} + kt * N4]; b1v${l} = b[bi${l} + kt * N4 + N4];`;
    fetch.push(part ? `if (${e} < ${unitsB}u) { ${ld} }` : ld);
    const pair = (c: string) => `vec2<f16>(b0v${l}.${c}, b1v${l}.${c})`;
    // v4: columns 4·bn, 4·bn + 1 in one element, 4·bn + 2, 4·bn + 3 in the next
    const st = V4
      ? `Bs[bk${l} * ${PB}u + 2u * bn${l}] = vec4<f16>(${pair("x")}, ${pair("y")}); ` +
        `Bs[bk${l} * ${PB}u + 2u * bn${l} + 1u] = vec4<f16>(${pair("z")}, ${pair("w")});`
      : `Bs[bk${l} * ${PB}u + bn${l}] = mat4x2<f16>(${C.map(pair).join(", ")});`;
    store.push(part ? `if (${e} < ${unitsB}u) { ${st} }` : st);
  }
  const decl: string[] = [];
  for (let r = 0; r < TM; r++) {
    for (let c = 0; c < TN; c++) decl.push(`var p${r}_${c} = vec2<f16>();`);
    for (let h = 0; h < TN / 4; h++) decl.push(`var t${r}_${h} = vec4<f32>();`);
  }
  // the f32 totals take each sum's two lanes; the sums start again
  const flush: string[] = [];
  for (let r = 0; r < TM; r++) {
    for (let h = 0; h < TN / 4; h++) {
      const p = (j: number) => `p${r}_${4 * h + j}`;
      flush.push(
        `t${r}_${h} += vec4<f32>(${
          [0, 1, 2, 3].map((j) => `f32(${p(j)}.x) + f32(${p(j)}.y)`).join(", ")
        });`,
        ...[0, 1, 2, 3].map((j) => `${p(j)} = vec2<f16>();`),
      );
    }
  }
  const compute: string[] = [];
  for (let kp = 0; kp < BKP; kp++) {
    const body: string[] = [];
    // the 4 pairs of thread row group g (rows (g·WY + ty)·4 + i) and column group h: a
    // mat4x2's columns, or (v4) the halves of two vec4<f16> elements
    const groupOf = (S: string, pitch: number, at: string, v: string, name: string, f: number) => {
      if (!V4) {
        body.push(`let ${v} = ${S}[${kp * pitch}u + ${at}];`);
        for (let i = 0; i < 4; i++) body.push(`let ${name}${f + i} = ${v}[${i}];`);
        return;
      }
      body.push(
        `let ${v}0 = ${S}[${kp * pitch}u + 2u * (${at})]; let ${v}1 = ${S}[${
          kp * pitch
        }u + 2u * (${at}) + 1u];`,
        `let ${name}${f} = ${v}0.xy; let ${name}${f + 1} = ${v}0.zw;`,
        `let ${name}${f + 2} = ${v}1.xy; let ${name}${f + 3} = ${v}1.zw;`,
      );
    };
    for (let g = 0; g < TM / 4; g++) groupOf("As", PA, `${g * WY}u + ty`, `av_${g}`, "a", 4 * g);
    for (let h = 0; h < TN / 4; h++) groupOf("Bs", PB, `${h * WX}u + tx`, `bv_${h}`, "b", 4 * h);
    for (let r = 0; r < TM; r++) {
      for (let c = 0; c < TN; c++) body.push(`p${r}_${c} = fma(a${r}, b${c}, p${r}_${c});`);
    }
    compute.push(`{ ${body.join(" ")} }`);
  }
  // thread row r = g·4 + i is output row (g·WY + ty)·4 + i; column group h is h·WX + tx
  const write: string[] = [];
  for (let r = 0; r < TM; r++) {
    const row = `(m0 + (${Math.floor(r / 4) * WY}u + ty) * 4u + ${r % 4}u)`;
    for (let h = 0; h < TN / 4; h++) {
      write.push(`c[${row} * N4 + n0 / 4u + ${h * WX}u + tx] = t${r}_${h};`);
    }
  }
  const groupEnd = group > 0 ? `if ((kt + ${BK}u) % ${group}u == 0u) { ${flush.join(" ")} }` : "";
  return `enable f16;
// paired f16 matmul ${pairTileName(t)}${transB ? " NT" : ""}
struct U { M: u32, N: u32, K: u32 }
@group(0) @binding(0) var<storage, read> a: array<vec4<f16>>;
@group(0) @binding(1) var<storage, read> b: array<vec4<f16>>; // [K, N], or [N, K] when transB
@group(0) @binding(2) var<storage, read_write> c: array<vec4<f32>>;
@group(0) @binding(3) var<uniform> u: U;
var<workgroup> As: array<${SLOT}, ${BKP * PA}>;
var<workgroup> Bs: array<${SLOT}, ${BKP * PB}>;
@compute @workgroup_size(${T})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) tid: u32) {
  let tx = tid % ${WX}u;
  let ty = tid / ${WX}u;
  let m0 = wid.y * ${BM}u;
  let n0 = wid.x * ${BN}u;
  let K4 = u.K / 4u;
  let N4 = u.N / 4u;
  ${setup.join("\n  ")}
  ${decl.join("\n  ")}
  var kt = 0u;
  ${fetch.join("\n  ")}
  for (; kt < u.K; kt += ${BK}u) {
    ${store.join("\n    ")}
    workgroupBarrier();
    if (kt + ${BK}u < u.K) {
      let cur = kt;
      kt += ${BK}u;
      ${fetch.join("\n      ")}
      kt = cur;
    }
    ${compute.join("\n    ")}
    workgroupBarrier();
    ${groupEnd}
  }
  ${flush.join(" ")}
  ${write.join("\n  ")}
}`;
}

/**
 * What the paired kernel computes, on the CPU: per output an even-k and an
 * odd-k f16 sum, each step one f16 FMA — correctly rounded once (`fused`,
 * the default), or as WGSL also allows (`e1 * e2 + e3`) and Mesa's lavapipe
 * does, the product rounded to f16 and then the sum — the f32 total taking
 * `f32(even) + f32(odd)` (rounded to f32, then added and rounded) at the end
 * of every `group` k and of K. `a` `[M, K]`, `b` `[K, N]` (`[N, K]` with
 * `transB`) hold f16 values.
 */
export function pairMatmulReference(
  a: Float32Array,
  b: Float32Array,
  M: number,
  N: number,
  K: number,
  group: number,
  opts: { fused?: boolean; transB?: boolean } = {},
): Float32Array {
  const out = new Float32Array(M * N);
  const f = Math.fround;
  const prod = (opts.fused ?? true) ? (x: number) => x : roundToF16;
  const at = opts.transB
    ? (k: number, n: number) => n * K + k
    : (k: number, n: number) => k * N + n;
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let even = 0, odd = 0, total = 0;
      for (let k = 0; k < K; k += 2) {
        even = roundToF16(even + prod(a[m * K + k] * b[at(k, n)]));
        odd = roundToF16(odd + prod(a[m * K + k + 1] * b[at(k + 1, n)]));
        if ((group > 0 && (k + 2) % group === 0) || k + 2 === K) {
          total = f(total + f(even + odd));
          even = odd = 0;
        }
      }
      out[m * N + n] = total;
    }
  }
  return out;
}

/** One paired kernel's run. */
export interface PairRun {
  /** The product `[M, N]`. */
  out: Float32Array;
  /** Milliseconds per dispatch (median of the timed ones). */
  ms: number;
  /** "timestamp" (GPU timestamps) or "wallclock". */
  timing: "timestamp" | "wallclock";
}

/**
 * Runs tile `t` on `gpu` for `a` `[M, K]` and `b` `[K, N]` (`[N, K]` with
 * `transB`; f16 bit patterns), `repeats` (default 5) timed dispatches after
 * an untimed one.
 */
export async function runPairMatmul(
  gpu: GpuBackend,
  t: PairTile,
  a: Uint16Array<ArrayBuffer>,
  b: Uint16Array<ArrayBuffer>,
  M: number,
  N: number,
  K: number,
  opts: { repeats?: number; transB?: boolean } = {},
): Promise<PairRun> {
  const repeats = opts.repeats ?? 5, transB = opts.transB ?? false;
  if (!gpu.hasF16) throw new TypeError(`${pairTileName(t)}: the adapter has no shader-f16`);
  if (M % t.BM || N % t.BN || K % (2 * t.BKP) || K % 4 || N % 4) {
    throw new RangeError(`${pairTileName(t)}: ${M}×${N}×${K} is not a multiple of the tile`);
  }
  if (pairThreads(t) > gpu.device.limits.maxComputeInvocationsPerWorkgroup) {
    throw new RangeError(`${pairTileName(t)}: more threads than the adapter allows`);
  }
  const dev = gpu.device;
  const module = dev.createShaderModule({ code: pairMatmulWgsl(t, transB) });
  const pipeline = dev.createComputePipeline({
    layout: "auto",
    compute: { module, entryPoint: "main" },
  });
  const upload = (data: Uint16Array<ArrayBuffer>) => {
    const buf = dev.createBuffer({
      size: data.byteLength,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
    });
    dev.queue.writeBuffer(buf, 0, data);
    return buf;
  };
  const ab = upload(a), bb = upload(b);
  const cb = dev.createBuffer({
    size: M * N * 4,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC,
  });
  const uni = dev.createBuffer({
    size: 16,
    usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
  });
  dev.queue.writeBuffer(uni, 0, new Uint32Array([M, N, K, 0]));
  const group = dev.createBindGroup({
    layout: pipeline.getBindGroupLayout(0),
    entries: [ab, bb, cb, uni].map((buffer, binding) => ({ binding, resource: { buffer } })),
  });
  try {
    const r = await timeKernel(dev, pipeline, group, [N / t.BN, M / t.BM], cb, M * N * 4, repeats);
    return { out: new Float32Array(r.first), ms: r.ms, timing: r.timing };
  } finally {
    for (const buf of [ab, bb, cb, uni]) buf.destroy();
  }
}

/** Random f16 bit patterns of values in [-1, 1), seeded. */
export function randomF16(n: number, seed: number): Uint16Array<ArrayBuffer> {
  let s = seed >>> 0 || 1;
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s ^= s << 13, s ^= s >>> 17, s ^= s << 5;
    v[i] = ((s >>> 0) / 2 ** 32) * 2 - 1;
  }
  return new Uint16Array(float32ToF16(v));
}

/** One JSON line of the probe. */
export interface PairProbeLine {
  kind: "f16_pair_probe";
  device: string;
  kernel: string;
  /** NN (`b` `[K, N]`) or NT (`b` `[N, K]`: a Linear layer's forward). */
  layout: "NN" | "NT";
  size: number;
  timing: "timestamp" | "wallclock";
  ms: number;
  gflops: number;
  /** Largest |GPU − f64 product| over the first rows (a sanity check, not a test). */
  max_abs_err: number;
}

/**
 * The probe: every tile of `tiles` at `size`³, then the generator's f32
 * kernel and f16/64 kernel (the 128 × 128 × 16, 8 × 8 tile) on the same
 * operands.
 */
export async function* runPairProbe(
  gpu: GpuBackend,
  opts: { size?: number; tiles?: readonly PairTile[]; layouts?: readonly ("NN" | "NT")[] } = {},
): AsyncGenerator<PairProbeLine> {
  const software = /llvmpipe|lavapipe|swiftshader|software/i.test(gpu.description);
  const S = opts.size ?? (software ? 128 : 4096);
  const flops = 2 * S ** 3;
  const a = randomF16(S * S, 1), b = randomF16(S * S, 2);
  const [af, bf] = [f16ToFloat32(a), f16ToFloat32(b)];
  const a32 = tensor(af, [S, S], { backend: gpu }), b32 = tensor(bf, [S, S], { backend: gpu });
  const [a16, b16] = [OPS.cast(a32, "f16"), OPS.cast(b32, "f16")];
  try {
    for (const layout of opts.layouts ?? ["NN", "NT"]) {
      const transB = layout === "NT";
      // the f64 product of the first 2 rows, to check each kernel roughly
      const rows = 2;
      const exact = new Float64Array(rows * S);
      for (let m = 0; m < rows; m++) {
        for (let k = 0; k < S; k++) {
          const x = af[m * S + k];
          for (let n = 0; n < S; n++) exact[m * S + n] += x * bf[transB ? n * S + k : k * S + n];
        }
      }
      const err = (out: ArrayLike<number>) => {
        let e = 0;
        for (let i = 0; i < rows * S; i++) e = Math.max(e, Math.abs(out[i] - exact[i]));
        return Number(e.toPrecision(3));
      };
      const line = (kernel: string, ms: number, timing: PairProbeLine["timing"], e: number) => ({
        kind: "f16_pair_probe" as const,
        device: gpu.description,
        kernel,
        layout,
        size: S,
        timing,
        ms: Number(ms.toFixed(4)),
        gflops: Number((flops / (ms * 1e6)).toFixed(1)),
        max_abs_err: e,
      });
      for (const t of opts.tiles ?? PAIR_TILES) {
        const limit = gpu.device.limits.maxComputeInvocationsPerWorkgroup;
        if (S % t.BM || S % t.BN || pairThreads(t) > limit) continue;
        const r = await runPairMatmul(gpu, t, a, b, S, S, S, { transB });
        yield line(pairTileName(t), r.ms, r.timing, err(r.out));
      }
      // the generator's kernels on the same operands (f32 copies for the f32 product)
      const forms: [string, () => Tensor][] = [
        ["f32 t128x128k16_8x8", () => matmul(a32, b32, { transB })],
        [
          "f16acc64 t128x128k16_8x8",
          () => OPS.matmulF16(a16, b16, { transB, acc: "f16", group: 64 }),
        ],
      ];
      useMatmulVariant("t128x128k16_8x8");
      try {
        for (const [name, run] of forms) {
          const op = name.startsWith("f32") ? "matmul" : "matmul_f16";
          const first = run();
          const out = await first.toArray() as number[];
          first.dispose();
          const probe = await msPerCall(gpu, () => run().dispose(), 1, op);
          const warm = warmCalls(probe.ms);
          const { ms, timing } = await msPerCall(gpu, () => run().dispose(), 5, op, warm);
          yield line(name, ms, timing, err(out));
        }
      } finally {
        useMatmulVariant(null);
      }
    }
  } finally {
    for (const x of [a32, b32, a16, b16]) x.dispose();
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      size: { type: "string" },
      tiles: { type: "string" },
      layouts: { type: "string" },
      json: { type: "boolean" },
    },
  });
  const gpu = await sharedGpuBackend();
  if (!gpu) {
    console.error("f16_pair_probe: no WebGPU adapter");
    Deno.exit(1);
  }
  if (!gpu.hasF16) {
    console.error(`f16_pair_probe: ${gpu.description} has no shader-f16`);
    Deno.exit(1);
  }
  const tiles = values.tiles?.split(",").map((n) => parsePairTile(n.trim()));
  const size = values.size ? Number(values.size) : undefined;
  const layouts = values.layouts?.split(",").map((x) => {
    if (x !== "NN" && x !== "NT") throw new TypeError(`--layouts takes NN and NT, got "${x}"`);
    return x;
  });
  for await (const l of runPairProbe(gpu, { size, tiles, layouts })) {
    console.log(
      values.json
        ? JSON.stringify(l)
        : `${l.layout} ${l.kernel.padEnd(28)} ${l.ms.toFixed(3).padStart(9)} ms  ${
          l.gflops.toFixed(1).padStart(9)
        } GFLOP/s  err ${l.max_abs_err}`,
    );
  }
}
