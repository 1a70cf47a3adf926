/**
 * Which matmul kernel runs: the registry of named variants, the default
 * heuristic by shape, the variant forced by `WEBSEQ_MATMUL_VARIANT` or
 * {@linkcode useMatmulVariant}, and the choices of the autotuner (kept in
 * memory per adapter, for each measured shape and its power-of-two class).
 *
 * Precedence in {@linkcode selectMatmulVariant}: forced, then tuned for the
 * active adapter, then the heuristic.
 *
 * @module
 */
import {
  checkTile,
  type MatmulHalf,
  type MatmulTile,
  stagesF16,
  tileThreads,
  tileWorkgroupBytes,
} from "./_matmul_wgsl.ts";
import { grantedEnv } from "../tensor/env.ts";

/** A named kernel: a generated tile, or the legacy kernel (`tile: null`). */
export interface MatmulVariant {
  /** Name used by `WEBSEQ_MATMUL_VARIANT`, the bench and the tuner. */
  name: string;
  /** Tile of the generated kernel; null for the legacy kernel. */
  tile: MatmulTile | null;
  /** Whether the heuristic may pick it (the others are for tuning and comparison). */
  heuristic: boolean;
}

/** A tile (`pad`, `flat` only when set, as the generator and the names take them). */
export const matmulTile = (
  BM: number,
  BN: number,
  BK: number,
  TM: number,
  TN: number,
  double: boolean,
  pad = false,
  flat = false,
): MatmulTile => ({
  BM,
  BN,
  BK,
  TM,
  TN,
  double,
  ...(pad ? { pad } : {}),
  ...(flat ? { flat } : {}),
});

/**
 * The registry, largest tiles first. Names read `t<BM>x<BN>k<BK>_<TM>x<TN>`,
 * `d` for double-buffered workgroup memory, `p` for padded slices
 * (conflict-free transposing stores, ops/_matmul_wgsl.ts `MatmulTile.pad`),
 * `f` for flat (1-D) slice arrays (`MatmulTile.flat`).
 */
export const MATMUL_VARIANTS: readonly MatmulVariant[] = [
  // 256 threads, 8×8 each, 16 KiB: the large-matrix kernel
  { name: "t128x128k8_8x8d", tile: matmulTile(128, 128, 8, 8, 8, true), heuristic: true },
  // 256 threads, 8×8 each, 16-deep slices (half the barriers), 16 KiB single-buffered
  { name: "t128x128k16_8x8", tile: matmulTile(128, 128, 16, 8, 8, false), heuristic: false },
  // 256 threads, 8×4 each: twice the workgroups of 128×128 at mid sizes
  { name: "t128x64k8_8x4d", tile: matmulTile(128, 64, 8, 8, 4, true), heuristic: true },
  // 256 threads, 4×4 each
  { name: "t64x64k8_4x4d", tile: matmulTile(64, 64, 8, 4, 4, true), heuristic: true },
  // 64 threads, 8×8 each (fewer, heavier threads)
  { name: "t64x64k16_8x8", tile: matmulTile(64, 64, 16, 8, 8, false), heuristic: false },
  // 64 threads, 4×4 each: small shapes and batched attention products
  { name: "t32x32k16_4x4", tile: matmulTile(32, 32, 16, 4, 4, false), heuristic: true },
  // from a sweep on an NVIDIA H200: 2nd fastest NN at 4096 (37.2 TFLOP/s), 4 rows × 16 columns
  // per thread (that card's tuner never chose t128x128k16_8x8d or t64x256k16_8x8, registered before
  // from slower sweeps, for any of small's and base's 38 shapes: they left the registry, a sweep or
  // --tune-tiles still reaches them)
  { name: "t128x128k16_4x16", tile: matmulTile(128, 128, 16, 4, 16, false), heuristic: false },
  // from a later H200 sweep (2nd NN at 4096, 37.0 TFLOP/s): the tuner's choice for base's
  // [8192, 512]·[512, 512]ᵀ products (72 a step, 28.8 TFLOP/s there)
  { name: "t128x128k8_4x16d", tile: matmulTile(128, 128, 8, 4, 16, true), heuristic: false },
  // the three kernels the H200 tuner chose most for base's products (29–37 TFLOP/s there;
  // 38.6 NN but 28.7 NT at 4096, where both operands transpose into workgroup memory), padded
  { name: "t128x128k16_8x8p", tile: matmulTile(128, 128, 16, 8, 8, false, true), heuristic: false },
  {
    name: "t128x128k16_4x16p",
    tile: matmulTile(128, 128, 16, 4, 16, false, true),
    heuristic: false,
  },
  { name: "t128x128k8_4x16dp", tile: matmulTile(128, 128, 8, 4, 16, true, true), heuristic: false },
  // 32-deep slices: half the barriers and loop trips of k16. Attention's per-head products have
  // K = 64 (scores, dQ, dK) or the key count (P·V, dV): 4 slices of 16 there left each
  // workgroup mostly prologue and epilogue, and these ran at 18–21 TFLOP/s on the H200 against
  // 30–37 for the model's large products. A tuning candidate (32 KiB of workgroup memory)
  { name: "t128x128k32_8x8", tile: matmulTile(128, 128, 32, 8, 8, false), heuristic: false },
  // flat slices (`f`: one 1-D array per buffer, the layout of sessions ≤ 12) against the 2-D
  // default, GPU timestamps at 4096 on an NVIDIA H100 (TFLOP/s, 2-D / flat): NN 40.0/39.1,
  // 39.4/25.1 (4×16), 33.5/37.0 (k8 8×8 d); NT 25.9/31.3, 33.9/35.0, 25.9/28.8. Neither layout
  // wins everywhere: tuning candidates, so each shape gets the faster one
  {
    name: "t128x128k16_8x8f",
    tile: matmulTile(128, 128, 16, 8, 8, false, false, true),
    heuristic: false,
  },
  {
    name: "t128x128k16_4x16f",
    tile: matmulTile(128, 128, 16, 4, 16, false, false, true),
    heuristic: false,
  },
  {
    name: "t128x128k8_8x8df",
    tile: matmulTile(128, 128, 8, 8, 8, true, false, true),
    heuristic: false,
  },
  // the first kernel (64×64, 16×16 threads, scalar), for comparison
  { name: "legacy", tile: null, heuristic: false },
];

const BY_NAME = new Map(MATMUL_VARIANTS.map((v) => [v.name, v]));

/**
 * A tile's name in the registry's spelling: `t<BM>x<BN>k<BK>_<TM>x<TN>`, `d` if
 * double-buffered, `p` if padded, `f` if its slices are flat arrays.
 */
export function tileName(t: MatmulTile): string {
  const flags = `${t.double ? "d" : ""}${t.pad ? "p" : ""}${t.flat ? "f" : ""}`;
  return `t${t.BM}x${t.BN}k${t.BK}_${t.TM}x${t.TN}${flags}`;
}

/**
 * The tile a name in the registry's spelling describes, checked by the
 * generator (so any tile the sweep reports can be named), or null when
 * `name` is not spelled that way.
 */
export function parseTileName(name: string): MatmulTile | null {
  const m = /^t(\d+)x(\d+)k(\d+)_(\d+)x(\d+)(d?)(p?)(f?)$/.exec(name);
  if (!m) return null;
  const [BM, BN, BK, TM, TN] = m.slice(1, 6).map(Number);
  const t = matmulTile(BM, BN, BK, TM, TN, m[6] === "d", m[7] === "p", m[8] === "f");
  checkTile(t);
  return t;
}

/**
 * The variant named `name`: a registry entry, or any generator tile named in
 * the registry's spelling (`t64x128k16_8x8d`; not picked by the heuristic);
 * else a TypeError listing the registry.
 */
export function matmulVariant(name: string): MatmulVariant {
  const v = BY_NAME.get(name);
  if (v) return v;
  let t: MatmulTile | null;
  try {
    t = parseTileName(name);
  } catch (err) {
    throw new TypeError(`Matmul tile "${name}": ${(err as Error).message}`);
  }
  if (!t) {
    throw new TypeError(
      `Unknown matmul variant "${name}" (known: ${
        MATMUL_VARIANTS.map((x) => x.name).join(", ")
      }, or any tile named t<BM>x<BN>k<BK>_<TM>x<TN>[d][p][f])`,
    );
  }
  const made = { name, tile: t, heuristic: false };
  BY_NAME.set(name, made);
  return made;
}

/** What the selection knows about an adapter. */
export interface MatmulTarget {
  /** Adapter description: the key of the tuned choices. */
  description: string;
  /** Software adapter (llvmpipe, SwiftShader): the tuner stays off unless forced. */
  software: boolean;
  /** `maxComputeInvocationsPerWorkgroup`. */
  maxInvocations: number;
  /** `maxComputeWorkgroupStorageSize` in bytes. */
  maxWorkgroupBytes: number;
}

/** WebGPU's guaranteed limits: what the selection assumes until an adapter is configured. */
export const DEFAULT_TARGET: MatmulTarget = {
  description: "",
  software: false,
  maxInvocations: 256,
  maxWorkgroupBytes: 16384,
};

/** The shape class of one call (what selection and tuning key on). */
export interface MatmulShape {
  /** Rows of the output. */
  M: number;
  /** Columns of the output. */
  N: number;
  /** Inner dimension. */
  K: number;
  /** Batch count (default 1). */
  P?: number;
  /** `a` stored `[K, M]`. */
  transA?: boolean;
  /** `b` stored `[N, K]`. */
  transB?: boolean;
  /**
   * The kernel form, when not the f32 product: an f16 one
   * ({@linkcode halfForm}). Tuned apart from the f32 product of the shape,
   * whose choice it falls back to until then.
   */
  form?: string;
}

/** `"MxNxK/P/tAtB"` (and `"/<form>"`): the key of tuned choices. */
export function shapeKey(s: MatmulShape): string {
  const form = s.form ? `/${s.form}` : "";
  return `${s.M}x${s.N}x${s.K}/${s.P ?? 1}/${s.transA ? "T" : "N"}${s.transB ? "T" : "N"}${form}`;
}

/**
 * The form of an f16 kernel (ops/_matmul_wgsl.ts `MatmulHalf`) for
 * {@linkcode MatmulShape}: "h" with f32 accumulation ("hs" staging f16
 * slices), `"h16g<group>"` with f16 accumulation. The f16 kernels share the
 * f32 tiles but not their costs (an H200's f16/64 sweep at 4096: 43.4 TFLOP/s
 * for `t128x128k8_8x8d`, 23.8 for `t128x128k16_4x16`, a tile its f32 tuner
 * chose for several of `base`'s products), so each form is tuned by itself.
 */
export function halfForm(h: MatmulHalf): string {
  if (h.acc === "f16") return `h16g${h.group ?? 16}`;
  return stagesF16(h) ? "hs" : "h";
}

/**
 * What a {@linkcode halfForm} says: the accumulation, its group depth (f16
 * accumulation) and whether f32 accumulation stages f16 slices; null for a
 * string that is no f16 form.
 */
export function parseHalfForm(
  form: string | undefined,
): { acc: "f32" | "f16"; group?: number; stageF16: boolean } | null {
  const m = /^h(?:(s)|16g(16|32|64))?$/.exec(form ?? "");
  if (!m) return null;
  return m[2]
    ? { acc: "f16", group: Number(m[2]), stageF16: true }
    : { acc: "f32", stageF16: !!m[1] };
}

/** Whether `v` runs on `target` (threads and workgroup memory within its limits). */
export function variantFits(v: MatmulVariant, target: MatmulTarget): boolean {
  if (!v.tile) return target.maxInvocations >= 256 && target.maxWorkgroupBytes >= 8192;
  return tileThreads(v.tile) <= target.maxInvocations &&
    tileWorkgroupBytes(v.tile) <= target.maxWorkgroupBytes;
}

/** Workgroups a tile needs for the shape. */
function workgroups(t: MatmulTile, s: MatmulShape): number {
  return Math.ceil(s.M / t.BM) * Math.ceil(s.N / t.BN) * (s.P ?? 1);
}

/** Fraction of the computed outputs that are real (1: the tiles cover M×N exactly). */
function fill(t: MatmulTile, s: MatmulShape): number {
  return (s.M * s.N) / (Math.ceil(s.M / t.BM) * t.BM * Math.ceil(s.N / t.BN) * t.BN);
}

/**
 * Workgroups the heuristic wants before it takes a larger tile: about one
 * wave of 2 workgroups per multiprocessor on a large GPU (H100: 132 SMs).
 */
export const HEURISTIC_MIN_WORKGROUPS = 256;
/** Smallest fill the heuristic accepts for a larger tile. */
export const HEURISTIC_MIN_FILL = 0.75;

/**
 * The default choice: the largest heuristic tile that still gives at least
 * {@linkcode HEURISTIC_MIN_WORKGROUPS} workgroups and wastes at most a
 * quarter of its outputs on padding; else the smallest tile.
 */
export function heuristicVariant(s: MatmulShape, target: MatmulTarget = DEFAULT_TARGET): string {
  const cands = MATMUL_VARIANTS.filter((v) => v.heuristic && v.tile && variantFits(v, target));
  for (const v of cands) {
    const t = v.tile!;
    if (workgroups(t, s) >= HEURISTIC_MIN_WORKGROUPS && fill(t, s) >= HEURISTIC_MIN_FILL) {
      return v.name;
    }
  }
  return cands[cands.length - 1].name;
}

// ---- state: forced variant, active adapter, tuned choices ----

let forced: MatmulVariant | null | undefined; // undefined: not read from the environment yet
let active: MatmulTarget = DEFAULT_TARGET;
/**
 * Tuned choices per adapter description, each under a shape's key and its
 * class's key ({@linkcode shapeClassKey}), the last measured shape of a class
 * speaking for it.
 */
class ShapeChoices<V> {
  #by = new Map<string, Map<string, V>>();
  /** The adapter's table (created empty). */
  of(description: string): Map<string, V> {
    let m = this.#by.get(description);
    if (!m) this.#by.set(description, m = new Map());
    return m;
  }
  set(target: MatmulTarget, s: MatmulShape, v: V): void {
    const m = this.of(target.description);
    m.set(shapeKey(s), v);
    m.set(shapeClassKey(s), v);
    epoch++;
  }
  /** The choice for a shape (else its class) on the active adapter. */
  get(s: MatmulShape): V | undefined {
    const m = this.#by.get(active.description);
    return m?.get(shapeKey(s)) ?? m?.get(shapeClassKey(s));
  }
  entries(description: string): [string, V][] {
    return [...(this.#by.get(description) ?? [])];
  }
  clear(): void {
    this.#by.clear();
  }
}

const tuned = new ShapeChoices<string>();
// tuned K splits (setTunedSplit)
const tunedSplits = new ShapeChoices<number>();

function envVariant(): MatmulVariant | null {
  const name = grantedEnv("WEBSEQ_MATMUL_VARIANT");
  if (!name || name === "auto") return null;
  try {
    return matmulVariant(name);
  } catch (err) {
    throw new TypeError(`WEBSEQ_MATMUL_VARIANT: ${(err as Error).message}`);
  }
}

/**
 * Forces every matmul onto one variant (a registry name or a custom tile;
 * tests and benchmarks use it), or back to automatic selection with
 * `null`/`"auto"`. Overrides `WEBSEQ_MATMUL_VARIANT`.
 */
export function useMatmulVariant(v: string | MatmulTile | null): void {
  epoch++;
  if (v === null || v === "auto") forced = null;
  else if (typeof v === "string") forced = matmulVariant(v);
  else {
    checkTile(v);
    forced = { name: "custom", tile: { ...v }, heuristic: false };
  }
}

/** The forced variant (programmatic or `WEBSEQ_MATMUL_VARIANT`), if any. */
export function forcedMatmulVariant(): MatmulVariant | null {
  if (forced === undefined) forced = envVariant();
  return forced;
}

/** Makes `target` the adapter whose limits and tuned choices the selection uses. */
export function setMatmulTarget(target: MatmulTarget): void {
  const same = target.description === active.description && target.software === active.software &&
    target.maxInvocations === active.maxInvocations &&
    target.maxWorkgroupBytes === active.maxWorkgroupBytes;
  if (!same) epoch++;
  active = target;
}

/** The adapter the selection currently uses. */
export function matmulTarget(): MatmulTarget {
  return active;
}

/**
 * `"~MxNxK/P/tAtB"` with M, N, K and P rounded up to powers of two: the
 * shape class a tuned choice also covers (a training run's batches vary in
 * length, so most shapes are never measured themselves).
 */
export function shapeClassKey(s: MatmulShape): string {
  const up = (x: number) => (x <= 1 ? 1 : 2 ** Math.ceil(Math.log2(x)));
  return "~" + shapeKey({ ...s, M: up(s.M), N: up(s.N), K: up(s.K), P: up(s.P ?? 1) });
}

/**
 * Records the tuner's choice for a shape on an adapter: for the shape and
 * for its class ({@linkcode shapeClassKey}), the last measured shape of a
 * class speaking for it.
 */
export function setTunedVariant(target: MatmulTarget, s: MatmulShape, name: string): void {
  matmulVariant(name);
  tuned.set(target, s, name);
}

/** The tuned choice for a shape on the active adapter, if any. */
export function tunedVariant(s: MatmulShape): string | undefined {
  return tuned.get(s);
}

/**
 * The tuned choices for an adapter (`description`), by shape key and shape
 * class key: what a tuning cache saves (train/tune_cache.ts).
 */
export function tunedTable(description: string): Record<string, string> {
  const splits = tunedSplits.entries(description).map(([k, S]) => [SPLIT_KEY + k, `${S}`]);
  return Object.fromEntries([...tuned.entries(description), ...splits]);
}

/** Prefix of the tuned splits' keys in {@linkcode tunedTable}. */
const SPLIT_KEY = "split|";

/**
 * Adds saved choices for an adapter (a tuning cache); entries whose variant
 * no longer exists or is no tile the generator can build are skipped.
 * Returns how many were taken.
 */
export function loadTunedTable(description: string, table: Record<string, string>): number {
  const m = tuned.of(description), sm = tunedSplits.of(description);
  let n = 0;
  for (const [key, name] of Object.entries(table)) {
    if (typeof name !== "string") continue;
    if (key.startsWith(SPLIT_KEY)) {
      const S = Number(name);
      if (!Number.isInteger(S) || S < 1 || S > SPLIT_MAX) continue;
      sm.set(key.slice(SPLIT_KEY.length), S);
      n++;
      continue;
    }
    try {
      matmulVariant(name);
    } catch {
      continue;
    }
    m.set(key, name);
    n++;
  }
  epoch++;
  return n;
}

/** Forgets every tuned choice (tests). */
export function clearTunedVariants(): void {
  tuned.clear();
  tunedSplits.clear();
  epoch++;
}

/**
 * Records the tuner's split of K for a shape on an adapter (and its class):
 * {@linkcode splitKFor} then divides that shape's K into `S` ranges (or keeps it
 * whole: 1) instead of following its rule.
 */
export function setTunedSplit(target: MatmulTarget, s: MatmulShape, S: number): void {
  if (!Number.isInteger(S) || S < 1 || S > SPLIT_MAX) {
    throw new TypeError(`setTunedSplit: expected an integer in 1..${SPLIT_MAX}, got ${S}`);
  }
  tunedSplits.set(target, s, S);
}

/** The tuned split of K for a shape on the active adapter, if any. */
export function tunedSplit(s: MatmulShape): number | undefined {
  return tunedSplits.get(s);
}

// ---- split K ----

/** Smallest K range one split of a split-K matmul multiplies. */
export const SPLIT_MIN_K = 256;
/** Most K ranges a matmul is split into. */
export const SPLIT_MAX = 32;
/**
 * Threads a matmul should keep busy before it is split: 256 workgroups of
 * 256 (about two per multiprocessor on an H100, a quarter of its threads).
 */
export const SPLIT_MIN_THREADS = HEURISTIC_MIN_WORKGROUPS * 256;

let forcedSplit: number | null = null;

/**
 * Forces every matmul that can split K (plain, accumulating, weight
 * gradients; not the f16 or bias/GELU-epilogue kernels) into `s` K ranges
 * (tests; 1: never split), or back to {@linkcode splitKFor}'s rule with null.
 */
export function useMatmulSplitK(s: number | null): void {
  if (s !== null && (!Number.isInteger(s) || s < 1)) {
    throw new TypeError(`useMatmulSplitK: expected a positive integer or null, got ${s}`);
  }
  forcedSplit = s;
  epoch++;
}

/** The forced number of K ranges ({@linkcode useMatmulSplitK}), or null when the rule decides. */
export function forcedMatmulSplitK(): number | null {
  return forcedSplit;
}

/** How a split-K call divides K: `S` ranges of `kc` (a multiple of BK; the last may be shorter). */
export interface SplitK {
  /** Number of K ranges (1: no split). */
  S: number;
  /** K per range. */
  kc: number;
}

/**
 * The split of K for a call of shape `s` on tile `t`: none on software
 * adapters and before an adapter is configured (ops/matmul.ts
 * `configureMatmul`); on a hardware GPU, when the output tiles keep fewer
 * than {@linkcode SPLIT_MIN_THREADS} threads busy, enough K ranges to reach
 * that many, each at least {@linkcode SPLIT_MIN_K} deep, at most
 * {@linkcode SPLIT_MAX} — or as many as the tuner found fastest for the
 * shape's class on the adapter ({@linkcode setTunedSplit}). Ranges are whole
 * multiples of `unit` (a multiple of BK: the f16-accumulating kernels keep
 * their groups of k) and never empty.
 */
export function splitKFor(
  s: MatmulShape,
  t: MatmulTile,
  target: MatmulTarget = active,
  unit: number = t.BK,
): SplitK {
  const slices = Math.ceil(s.K / unit), P = s.P ?? 1;
  if (slices <= 1) return { S: 1, kc: slices * unit };
  let want: number;
  // an f16 form that runs the f32 product's tile (none tuned for the form) follows its split too
  const chosen = forcedSplit === null && target === active
    ? tunedSplit(s) ??
      (s.form && tunedVariant(s) === undefined ? tunedSplit({ ...s, form: undefined }) : undefined)
    : undefined;
  if (forcedSplit !== null) want = forcedSplit;
  else if (target.software || target.description === "") want = 1;
  else if (chosen !== undefined) want = chosen;
  else {
    const threads = workgroups(t, s) * tileThreads(t);
    want = threads >= SPLIT_MIN_THREADS ? 1 : Math.min(
      SPLIT_MAX,
      Math.ceil(SPLIT_MIN_THREADS / threads),
      Math.floor(s.K / SPLIT_MIN_K),
    );
  }
  want = Math.max(1, Math.min(want, slices, Math.floor(65535 / P)));
  const per = Math.ceil(slices / want);
  return { S: Math.ceil(slices / per), kc: per * unit };
}

/**
 * The K step a split of shape `s` on tile `t` keeps whole: the slice depth, or
 * for an f16-accumulating form (`h16g<group>`) its groups of k too.
 */
export function splitUnit(s: MatmulShape, t: MatmulTile): number {
  const group = parseHalfForm(s.form)?.group;
  return group ? Math.max(t.BK, group) : t.BK;
}

let recorded: Map<string, MatmulShape> | null = null;
let epoch = 0; // bumped whenever a selection could change (forcing, target, tuning)

/**
 * A number that changes whenever {@linkcode selectMatmulVariant} could
 * answer differently for a shape (forcing, adapter, tuning), so callers may
 * memoise per shape under it.
 */
export function selectionEpoch(): number {
  return epoch;
}

/** Whether shapes are being recorded (ops/matmul.ts `matmulKernel` then notes each call's). */
export function isRecordingMatmulShapes(): boolean {
  return recorded !== null;
}

/** Notes a shape a kernel is planned for, while recording. */
export function recordMatmulShape(s: MatmulShape): void {
  if (!recorded) return;
  const key = shapeKey(s);
  if (!recorded.has(key)) recorded.set(key, { ...s });
}

/**
 * Starts collecting the shapes of the matmuls planned (to tune what one
 * training step runs); {@linkcode stopMatmulShapeRecording} returns them.
 */
export function startMatmulShapeRecording(): void {
  recorded = new Map();
}

/** The distinct shapes selected since {@linkcode startMatmulShapeRecording} (then stops). */
export function stopMatmulShapeRecording(): MatmulShape[] {
  const out = [...(recorded?.values() ?? [])];
  recorded = null;
  return out;
}

/**
 * The variant a call of this shape runs: forced, else tuned (an f16 form
 * without a choice of its own takes the f32 product's), else the heuristic.
 */
export function selectMatmulVariant(s: MatmulShape): MatmulVariant {
  const f = forcedMatmulVariant();
  if (f) return f;
  const t = tunedVariant(s) ?? (s.form ? tunedVariant({ ...s, form: undefined }) : undefined);
  return matmulVariant(t ?? heuristicVariant(s, active));
}

/** Runs `fn` with `v` forced (the tuner's measurements), then restores the previous forcing. */
export async function withMatmulVariant<T>(v: MatmulVariant, fn: () => Promise<T>): Promise<T> {
  const prev = forcedMatmulVariant();
  forced = v;
  epoch++;
  try {
    return await fn();
  } finally {
    forced = prev;
    epoch++;
  }
}
