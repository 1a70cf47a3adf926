/**
 * Workgroup-tiled WGSL kernels of ops/attention.ts (flash-attention style,
 * without subgroups or tensor cores): the forward, dQ and dK/dV kernels as
 * blocked products through workgroup memory, beside the one-row-per-thread
 * kernels of attention.ts. Both compute the spec of attention.ts's CPU
 * reference; which one runs is chosen per shape (see `attentionKernelFor`).
 *
 * A workgroup owns `R` rows of one head (query rows: forward and dQ; key
 * rows: dK/dV) and walks the other side in tiles of `C` rows:
 * - both sides sit in workgroup memory as rows of D/4 vec4 (stride D/4 + 1,
 *   so neighbouring rows fall in different banks);
 * - thread `(ty, tx)` of `(R/RM)·TC` computes the scores of rows
 *   `ty·RM + m` (m < RM) and tile columns `tx + TC·i` (i < C/TC), and owns
 *   the output vec4 columns `tx + TC·j` (j < D/4/TC) of its rows;
 * - scores go through workgroup memory (`Ps`) from the threads that computed
 *   them to the threads that multiply them into the outputs;
 * - the forward keeps a running max per row, agreed across the TC threads
 *   of a row through `red` each tile, and a running sum per thread (added
 *   across the row at the end).
 *
 * Masking follows PyTorch's `masked_fill(min)`: a disallowed key scores
 * MASKED (−1e30), so a row with no allowed key weighs every key exp(0) = 1
 * (uniform, as the spec says) while any allowed key outweighs the masked
 * ones to exactly 0; keys past S score NONE (−3e38) and weigh 0 in every
 * row. Causal blocks stop at the last key their last row may see, unless
 * the block's first row has no allowed key at all (such rows are a prefix
 * of the sequence and attend all S keys).
 *
 * Head sizes: D a multiple of 4·TC (vec4 rows split evenly over TC
 * threads). Workgroup memory grows with R·D and C·D; {@linkcode tileFits}
 * checks an adapter's limits.
 *
 * @module
 */
import { mmFits } from "./_attention_mm.ts";
import { grantedEnv } from "../tensor/env.ts";

/** The masking and layout features of a kernel (attention.ts's `Variant`). */
export interface TiledVariant {
  D: number;
  mask: "f32" | "i32" | null;
  causal: boolean;
  dropout: boolean;
}

/** Storage buffer declaration: name, access, element type. */
export type TiledBuf = [name: string, access: "read" | "read_write", type: string];

/**
 * Geometry of a tiled kernel: `R` rows per workgroup, tiles of `C` rows of
 * the other side, `RM` rows per thread, `TC` threads per row.
 */
export interface AttentionTile {
  /** Rows of one head a workgroup owns (query rows: forward and dQ; key rows: dK/dV). */
  R: number;
  /** Rows of the other side per tile. */
  C: number;
  /** Rows per thread. */
  RM: number;
  /** Threads per row. */
  TC: number;
}

/** The three tiled kernels. */
export type TiledKind = "fwd" | "dq" | "dkv";

/** `a<R>x<C>_<RM>x<TC>`. */
export function attentionTileName(t: AttentionTile): string {
  return `a${t.R}x${t.C}_${t.RM}x${t.TC}`;
}

/** The tile a name of {@linkcode attentionTileName}'s form describes, or null. */
export function parseAttentionTileName(name: string): AttentionTile | null {
  const m = /^a(\d+)x(\d+)_(\d+)x(\d+)$/.exec(name);
  if (!m) return null;
  const [R, C, RM, TC] = m.slice(1).map(Number);
  return { R, C, RM, TC };
}

/** Threads per workgroup of a tile. */
export function tileThreads(t: AttentionTile): number {
  return (t.R / t.RM) * t.TC;
}

/** Bytes of workgroup memory a kernel of this kind, head size and tile declares. */
export function tileWorkgroupBytes(kind: TiledKind, D: number, t: AttentionTile): number {
  const row = (D / 4 + 1) * 16; // one padded vec4 row
  const pw = (t.C + 4) * 4; // one row of Ps
  switch (kind) {
    case "fwd": // Qs, Ks, Vs, Ps, red, key flags
      return t.R * row + 2 * t.C * row + t.R * pw + t.R * t.TC * 4 + t.C * 4;
    case "dq": // Qs, Gs, Ks, Vs, Ps, key flags
      return 2 * t.R * row + 2 * t.C * row + t.R * pw + t.C * 4;
    case "dkv": // Ks, Vs, Qs, Gs, PZs, DSs, per-query lse/Δ/flag, key flags
      return 2 * t.R * row + 2 * t.C * row + 2 * t.R * pw + 3 * t.C * 4 + t.R * 4;
  }
}

/** Why a tile cannot run head size D (divisibility), or null when it can. */
export function tileProblem(D: number, t: AttentionTile): string | null {
  if (D % 4 !== 0 || (D / 4) % t.TC !== 0) return `D = ${D} is not a multiple of 4·${t.TC}`;
  if (t.R % t.RM !== 0) return `${t.R} rows do not split into ${t.RM} per thread`;
  if (t.C % t.TC !== 0 || t.C % 4 !== 0) return `${t.C} columns do not split over ${t.TC} threads`;
  return null;
}

/** Whether a tile runs head size D within an adapter's limits. */
export function tileFits(
  kind: TiledKind,
  D: number,
  t: AttentionTile,
  limits: { maxInvocations: number; maxWorkgroupBytes: number },
): boolean {
  return tileProblem(D, t) === null && tileThreads(t) <= limits.maxInvocations &&
    tileWorkgroupBytes(kind, D, t) <= limits.maxWorkgroupBytes;
}

/** `n` lines from `f(j)`. */
function each(n: number, f: (j: number) => string, sep = "\n  "): string {
  return Array.from({ length: n }, (_, j) => f(j)).join(sep);
}

/**
 * The four steps over the components of a vec4 of scores, unrolled: `f(x, c)`
 * with `x` the step as a WGSL constant (`"2u"`) and `c` the component
 * (`"z"`), so no vector is indexed at run time (a dynamic index into a vec4
 * register can cost a trip through local memory) and no loop is left to the
 * driver to unroll.
 */
function unroll4(f: (x: string, c: string) => string, sep = "\n      "): string {
  return each(4, (q) =>
    `{
        ${f(`${q}u`, "xyzw"[q])}
      }`, sep);
}

/** `n·k` lines from `f(a, b)` over a < n, b < k. */
function each2(n: number, k: number, f: (a: number, b: number) => string, sep = "\n  "): string {
  return each(n, (a) => each(k, (b) => f(a, b), sep), sep);
}

/**
 * WGSL: score-tile products over the D/4 vec4s of a row. For each
 * `[acc, rowsArr, colsArr]`, `acc<m>_<i> = Σ_j rowsArr[row m][j] · colsArr[col i][j]`
 * for this thread's RM rows and CN columns (`col(i)`), accumulators declared here.
 */
function scoreProducts(
  products: [acc: string, rows: string, cols: string][],
  RM: number,
  CN: number,
  col: (i: number) => string,
): string {
  const sep = "\n      ";
  // a loop over the D/4 vec4s of a row (unrolled, the three kernels took lavapipe twice as long
  // to compile); the rows are 2-D arrays, so one clamp of j serves every read of a step
  return `${
    products.map(([acc]) => each2(RM, CN, (m, i) => `var ${acc}${m}_${i} = 0.0;`, "\n    "))
      .join("\n    ")
  }
    for (var j = 0u; j < D4; j++) {
      ${
    products.map(([acc, rows, cols]) =>
      [
        each(RM, (m) => `let ${acc}r${m} = ${rows}[ty * RM + ${m}u][j];`, sep),
        each(CN, (i) => `let ${acc}c${i} = ${cols}[${col(i)}][j];`, sep),
        each2(RM, CN, (m, i) => `${acc}${m}_${i} += dot(${acc}r${m}, ${acc}c${i});`, sep),
      ].join(sep)
    ).join(sep)
  }
    }`;
}

/** Constants and workgroup-memory declarations common to the three kernels. */
function constants(D: number, t: AttentionTile): string {
  return `
const NONE: f32 = -3e38; // a key past S: weight 0 in every row
const D4: u32 = ${D / 4}u;
const QW: u32 = ${D / 4 + 1}u; // vec4 stride of a row in workgroup memory
const R: u32 = ${t.R}u;
const C: u32 = ${t.C}u;
const RM: u32 = ${t.RM}u;
const TC: u32 = ${t.TC}u;
const NT: u32 = ${tileThreads(t)}u;
const PW: u32 = ${t.C / 4 + 1}u; // vec4 stride of a row of scores
`;
}

/**
 * Workgroup-memory rows: `name` holds `rows` rows of D/4 vec4 (padded to QW),
 * indexed `[row][j]`: WGSL compilers clamp every dynamic workgroup-array index,
 * and with the row and the vec4 apart a constant `j` needs none and a row
 * that stays the same over a loop is clamped once.
 */
const rowsDecl = (name: string, rows: string) =>
  `var<workgroup> ${name}: array<array<vec4f, QW>, ${rows}>;`;

/**
 * Statements loading rows `[first, first + n)` of a length-`L` sequence of
 * head (b, h) from `src` into the workgroup rows `dst` (times `mul`),
 * zeros past `L`.
 */
function loadRows(
  dst: string[],
  src: string[],
  first: string,
  n: string,
  L: string,
  mul = "",
): string {
  return `for (var e = tid; e < ${n} * D4; e += NT) {
    let rr = e / D4;
    let jj = e % D4;
    let pos = ${first} + rr;
    ${each(dst.length, (i) => `var x${i} = vec4f(0.0);`, "\n    ")}
    if (pos < ${L}) {
      let o = row_of(b, h, pos, ${L}) * D4 + jj;
      ${each(dst.length, (i) => `x${i} = ${src[i]}[o]${mul};`, "\n      ")}
    }
    ${each(dst.length, (i) => `${dst[i]}[rr][jj] = x${i};`, "\n    ")}
  }`;
}

/** The entry point: workgroup index → (b, h, block), thread → (ty, tx). */
function entry(t: AttentionTile, L: string): string {
  return `@compute @workgroup_size(${tileThreads(t)})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) tid: u32) {
  let nb = (${L} + R - 1u) / R; // blocks per head
  let blk = wid.x + wid.y * nwg.x;
  if (blk >= u.BH * nb) { return; }
  let bh = blk / nb;
  let b = bh / u.H;
  let h = bh % u.H;
  let r0 = (blk % nb) * R; // first row of the block
  let tx = tid % TC;
  let ty = tid / TC;`;
}

/**
 * WGSL: `first_allowed`, the first key of batch row `b` the mask allows (S if
 * none; 0 without a mask). Read-only storage at a uniform index: uniform.
 */
function firstAllowed(v: TiledVariant): string {
  if (!v.mask) return "let first_allowed = 0u;";
  return `var first_allowed = u.S;
  for (var s = 0u; s < u.S; s++) {
    if (key_on(b, s)) { first_allowed = s; break; }
  }`;
}

/**
 * Statements loading the key flags of keys `[c0, c0 + C)`: 2 allowed by the
 * mask, 1 masked out, 0 past S.
 */
const KEY_FLAGS = `for (var c = tid; c < C; c += NT) {
      let s = c0 + c;
      var f = 0u; // past S (select would read the mask there too)
      if (s < u.S) { f = select(1u, 2u, key_on(b, s)); }
      Kf[c] = f;
    }`;

/**
 * The forward: out and lse for a block of R query rows.
 */
export function tiledForwardWgsl(
  v: TiledVariant,
  t: AttentionTile,
  prelude: (bufs: TiledBuf[]) => string,
): string {
  const { RM } = t, CN = t.C / t.TC, DV = v.D / 4 / t.TC;
  const bufs: TiledBuf[] = [["q", "read", "vec4f"], ["k", "read", "vec4f"], ["v", "read", "vec4f"]];
  if (v.mask) bufs.push(["mask", "read", v.mask]);
  bufs.push(["out", "read_write", "vec4f"], ["lse", "read_write", "f32"]);
  const col = (i: number) => `tx + ${t.TC * i}u`; // tile column i of this thread
  const dcol = (j: number) => `tx + ${t.TC * j}u`; // output vec4 column j
  return prelude(bufs) + constants(v.D, t) + `
${rowsDecl("Qs", "R")}
${rowsDecl("Ks", "C")}
${rowsDecl("Vs", "C")}
var<workgroup> Ps: array<array<vec4f, PW>, R>;
var<workgroup> red: array<f32, R * TC>;
var<workgroup> Kf: array<u32, C>;
${entry(t, "u.T")}
  ${loadRows(["Qs"], ["q"], "r0", "R", "u.T", " * u.scale")}
  // the keys this block visits: up to its last row's causal bound, or all S
  // when its first row has no allowed key (uniform weights over all keys)
  var kend = u.S;
  ${
    v.causal
      ? `${firstAllowed(v)}
  if (key_end(r0) > first_allowed) { kend = key_end(min(r0 + R, u.T) - 1u); }`
      : ""
  }
  ${each(RM, (m) => `var m${m} = MASKED;`)}
  ${each(RM, (m) => `var l${m} = 0.0;`)}
  ${each2(RM, DV, (m, j) => `var o${m}_${j} = vec4f(0.0);`)}
  for (var c0 = 0u; c0 < kend; c0 += C) {
    workgroupBarrier(); // the previous tile is used up
    ${loadRows(["Ks", "Vs"], ["k", "v"], "c0", "C", "u.S")}
    ${KEY_FLAGS}
    workgroupBarrier();
    ${scoreProducts([["z", "Qs", "Ks"]], RM, CN, col)}
    ${
    each(RM, (m) =>
      `{
      let t = r0 + ty * RM + ${m}u;
      var mx = MASKED;
      ${
        each(
          CN,
          (i) =>
            `{
        let c = ${col(i)};
        let f = Kf[c];
        z${m}_${i} = select(select(NONE, MASKED, f != 0u), z${m}_${i}, f == 2u && c0 + c < key_end(t));
        mx = max(mx, z${m}_${i});
      }`,
          "\n      ",
        )
      }
      red[(ty * RM + ${m}u) * TC + tx] = mx;
    }`, "\n    ")
  }
    workgroupBarrier();
    ${
    each(RM, (m) =>
      `{
      let rr = ty * RM + ${m}u;
      let t = r0 + rr;
      var mt = m${m};
      for (var x = 0u; x < TC; x++) { mt = max(mt, red[rr * TC + x]); }
      // online softmax: a larger running max rescales the sum and the outputs
      let al = exp(m${m} - mt);
      m${m} = mt;
      l${m} *= al;
      ${each(DV, (j) => `o${m}_${j} *= al;`, "\n      ")}
      ${
        each(
          CN,
          (i) =>
            `{
        let c = ${col(i)};
        let p = exp(z${m}_${i} - mt);
        l${m} += p;
        Ps[rr][c / 4u][c % 4u] = p * zmul(b, h, t, c0 + c);
      }`,
          "\n      ",
        )
      }
    }`, "\n    ")
  }
    workgroupBarrier();
    for (var c = 0u; c < C; c += 4u) {
      ${each(RM, (m) => `let p${m} = Ps[ty * RM + ${m}u][c / 4u];`, "\n      ")}
      ${
    unroll4((x, q) =>
      [
        each(DV, (j) => `let vv${j} = Vs[c + ${x}][${dcol(j)}];`, "\n        "),
        each2(RM, DV, (m, j) => `o${m}_${j} += p${m}.${q} * vv${j};`, "\n        "),
      ].join("\n        ")
    )
  }
    }
  }
  // the running sums of a row's TC threads add up to its softmax denominator
  workgroupBarrier();
  ${each(RM, (m) => `red[(ty * RM + ${m}u) * TC + tx] = l${m};`)}
  workgroupBarrier();
  ${
    each(RM, (m) =>
      `{
    let rr = ty * RM + ${m}u;
    let t = r0 + rr;
    var l = 0.0;
    for (var x = 0u; x < TC; x++) { l += red[rr * TC + x]; }
    if (t < u.T) {
      let qr = row_of(b, h, t, u.T);
      let inv = 1.0 / l;
      ${each(DV, (j) => `out[qr * D4 + ${dcol(j)}] = o${m}_${j} * inv;`, "\n      ")}
      // a row with no allowed key weighed all S keys by 1: lse = log(S)
      if (tx == 0u) { lse[qr] = select(m${m}, 0.0, m${m} == MASKED) + log(l); }
    }
  }`)
  }
}
`;
}

/**
 * dQ for a block of R query rows: `dQ = scale·dS·K` with
 * `dS = P∘(dO·vᵀ∘Z − Δ)`, P recomputed from lse; rows with no allowed key
 * get 0 (their P is exp(MASKED − log S) = 0 everywhere).
 */
export function tiledDqWgsl(
  v: TiledVariant,
  t: AttentionTile,
  prelude: (bufs: TiledBuf[]) => string,
  bufs: TiledBuf[],
): string {
  const { RM } = t, CN = t.C / t.TC, DV = v.D / 4 / t.TC;
  const col = (i: number) => `tx + ${t.TC * i}u`;
  const dcol = (j: number) => `tx + ${t.TC * j}u`;
  return prelude(bufs) + constants(v.D, t) + `
${rowsDecl("Qs", "R")}
${rowsDecl("Gs", "R")}
${rowsDecl("Ks", "C")}
${rowsDecl("Vs", "C")}
var<workgroup> Ps: array<array<vec4f, PW>, R>;
var<workgroup> Kf: array<u32, C>;
${entry(t, "u.T")}
  ${loadRows(["Qs", "Gs"], ["q", "dO"], "r0", "R", "u.T")}
  var kend = u.S;
  ${v.causal ? "kend = key_end(min(r0 + R, u.T) - 1u);" : ""}
  ${
    each(RM, (m) =>
      `let t${m} = r0 + ty * RM + ${m}u;
  var L${m} = 0.0;
  var delta${m} = 0.0;
  if (t${m} < u.T) {
    L${m} = lse[row_of(b, h, t${m}, u.T)];
    delta${m} = info[2u * (bh * u.T + t${m})];
  }`)
  }
  ${each2(RM, DV, (m, j) => `var g${m}_${j} = vec4f(0.0);`)}
  for (var c0 = 0u; c0 < kend; c0 += C) {
    workgroupBarrier();
    ${loadRows(["Ks", "Vs"], ["k", "v"], "c0", "C", "u.S")}
    ${KEY_FLAGS}
    workgroupBarrier();
    ${scoreProducts([["z", "Qs", "Ks"], ["dp", "Gs", "Vs"]], RM, CN, col)}
    ${
    each2(RM, CN, (m, i) =>
      `{
      let c = ${col(i)};
      var ds = 0.0;
      if (Kf[c] == 2u && c0 + c < key_end(t${m})) {
        let p = exp(z${m}_${i} * u.scale - L${m});
        ds = p * (dp${m}_${i} * zmul(b, h, t${m}, c0 + c) - delta${m}) * u.scale;
      }
      Ps[ty * RM + ${m}u][c / 4u][c % 4u] = ds;
    }`, "\n    ")
  }
    workgroupBarrier();
    for (var c = 0u; c < C; c += 4u) {
      ${each(RM, (m) => `let p${m} = Ps[ty * RM + ${m}u][c / 4u];`, "\n      ")}
      ${
    unroll4((x, q) =>
      [
        each(DV, (j) => `let kv${j} = Ks[c + ${x}][${dcol(j)}];`, "\n        "),
        each2(RM, DV, (m, j) => `g${m}_${j} += p${m}.${q} * kv${j};`, "\n        "),
      ].join("\n        ")
    )
  }
    }
  }
  ${
    each(RM, (m) =>
      `if (t${m} < u.T) {
    let qo = row_of(b, h, t${m}, u.T) * D4;
    ${each(DV, (j) => `dq[qo + ${dcol(j)}] = g${m}_${j};`, "\n    ")}
  }`)
  }
}
`;
}

/**
 * dK and dV for a block of R key rows, walking the query rows in tiles of C:
 * `dV = (P∘Z)ᵀ·dO` (a query row with no allowed key weighs every key Z/S),
 * `dK = scale·dSᵀ·Q`.
 */
export function tiledDkvWgsl(
  v: TiledVariant,
  t: AttentionTile,
  prelude: (bufs: TiledBuf[]) => string,
  bufs: TiledBuf[],
): string {
  const { RM } = t, CN = t.C / t.TC, DV = v.D / 4 / t.TC;
  const col = (i: number) => `tx + ${t.TC * i}u`;
  const dcol = (j: number) => `tx + ${t.TC * j}u`;
  // causal: the first query that may see key s is s − (S − T); rows with no allowed key
  // (a prefix: they exist when row 0 has none) see every key, so then all rows are walked
  const start = v.causal
    ? `${firstAllowed(v)}
  var tstart = 0u;
  if (key_end(0u) > first_allowed) {
    tstart = u32(max(i32(r0) - i32(u.S) + i32(u.T), 0)) / C * C;
  }`
    : "let tstart = 0u;";
  return prelude(bufs) + constants(v.D, t) + `
${rowsDecl("Ks", "R")}
${rowsDecl("Vs", "R")}
${rowsDecl("Qs", "C")}
${rowsDecl("Gs", "C")}
var<workgroup> PZs: array<array<vec4f, PW>, R>;
var<workgroup> DSs: array<array<vec4f, PW>, R>;
var<workgroup> Ls: array<f32, C>;
var<workgroup> Ds: array<f32, C>;
var<workgroup> Fs: array<f32, C>;
var<workgroup> Kf: array<u32, R>;
${entry(t, "u.S")}
  ${loadRows(["Ks", "Vs"], ["k", "v"], "r0", "R", "u.S")}
  for (var c = tid; c < R; c += NT) {
    let s = r0 + c;
    var f = 0u; // past S (select would read the mask there too)
    if (s < u.S) { f = select(1u, 2u, key_on(b, s)); }
    Kf[c] = f;
  }
  ${start}
  ${each(RM, (m) => `let s${m} = r0 + ty * RM + ${m}u;`)}
  ${each2(RM, DV, (m, j) => `var dk${m}_${j} = vec4f(0.0);`)}
  ${each2(RM, DV, (m, j) => `var dv${m}_${j} = vec4f(0.0);`)}
  for (var c0 = tstart; c0 < u.T; c0 += C) {
    workgroupBarrier();
    ${loadRows(["Qs", "Gs"], ["q", "dO"], "c0", "C", "u.T")}
    for (var c = tid; c < C; c += NT) {
      let t = c0 + c;
      var L = 0.0;
      var dl = 0.0;
      var fm = 0.0;
      if (t < u.T) {
        L = lse[row_of(b, h, t, u.T)];
        let r = bh * u.T + t;
        dl = info[2u * r];
        fm = info[2u * r + 1u];
      }
      Ls[c] = L;
      Ds[c] = dl;
      Fs[c] = fm;
    }
    workgroupBarrier();
    ${scoreProducts([["z", "Ks", "Qs"], ["dp", "Vs", "Gs"]], RM, CN, col)}
    ${
    each2(RM, CN, (m, i) =>
      `{
      let c = ${col(i)};
      let t = c0 + c;
      let f = Kf[ty * RM + ${m}u];
      var pz = 0.0;
      var ds = 0.0;
      if (t < u.T && f != 0u) {
        if (f == 2u && s${m} < key_end(t)) {
          let p = exp(z${m}_${i} * u.scale - Ls[c]);
          let zm = zmul(b, h, t, s${m});
          pz = p * zm;
          ds = p * (dp${m}_${i} * zm - Ds[c]) * u.scale;
        } else if (Fs[c] != 0.0) {
          pz = zmul(b, h, t, s${m}) / f32(u.S); // a row with no allowed key: uniform
        }
      }
      PZs[ty * RM + ${m}u][c / 4u][c % 4u] = pz;
      DSs[ty * RM + ${m}u][c / 4u][c % 4u] = ds;
    }`, "\n    ")
  }
    workgroupBarrier();
    for (var c = 0u; c < C; c += 4u) {
      ${each(RM, (m) => `let pz${m} = PZs[ty * RM + ${m}u][c / 4u];`, "\n      ")}
      ${each(RM, (m) => `let ds${m} = DSs[ty * RM + ${m}u][c / 4u];`, "\n      ")}
      ${
    unroll4((x, q) =>
      [
        each(DV, (j) => `let gv${j} = Gs[c + ${x}][${dcol(j)}];`, "\n        "),
        each(DV, (j) => `let qv${j} = Qs[c + ${x}][${dcol(j)}];`, "\n        "),
        each2(RM, DV, (m, j) => `dv${m}_${j} += pz${m}.${q} * gv${j};`, "\n        "),
        each2(RM, DV, (m, j) => `dk${m}_${j} += ds${m}.${q} * qv${j};`, "\n        "),
      ].join("\n        ")
    )
  }
    }
  }
  ${
    each(RM, (m) =>
      `if (s${m} < u.S) {
    let ko = row_of(b, h, s${m}, u.S) * D4;
    ${each(DV, (j) => `dk[ko + ${dcol(j)}] = dk${m}_${j};`, "\n    ")}
    ${each(DV, (j) => `dv[ko + ${dcol(j)}] = dv${m}_${j};`, "\n    ")}
  }`)
  }
}
`;
}

// ---------------------------------------------------------------- selection

/**
 * Tiles tried per kernel, preferred first; the first that fits an adapter
 * is the "tiled" default, and the tuner times each one that fits.
 * `a64x32_4x8` (128 threads, 4×4 scores each, 45 KiB at D = 64) needs the
 * 48 KiB of workgroup memory of desktop GPUs; the `x16`/`x8` ones fit
 * WebGPU's guaranteed 16 KiB.
 */
export const ATTENTION_TILES: Readonly<Record<"fwd" | "bwd", readonly string[]>> = {
  fwd: [
    "a64x32_4x8",
    "a32x32_2x8",
    "a32x32_4x4",
    "a16x16_2x4",
    "a16x8_2x4",
    "a8x8_2x2",
    "a8x8_2x1",
  ],
  bwd: [
    "a32x32_2x8",
    "a32x32_2x4",
    "a32x16_2x4",
    "a16x16_2x4",
    "a16x8_2x4",
    "a8x8_2x2",
    "a8x8_2x1",
  ],
};

/**
 * The kernels of one attention op: the row kernels, the per-head matmuls of
 * ops/_attention_mm.ts ("mm"), or tiled ones of this tile.
 */
export type AttentionKernel = "rows" | "mm" | AttentionTile;

/** What the attention selection keys on (the shape class of one call). */
export interface AttentionShape {
  /** "fwd": the attention op; "bwd": its backward. */
  op: "fwd" | "bwd";
  /** Heads times batch rows. */
  BH: number;
  /** Target (query) length. */
  T: number;
  /** Source (key) length. */
  S: number;
  /** Head dim. */
  D: number;
  /** Query t attends keys s ≤ t + (S − T) only. */
  causal: boolean;
  /** Whether a key mask `[B, S]` is given. */
  mask: boolean;
  /** Whether attention dropout is on (p > 0). */
  dropout: boolean;
}

/** Limits of the adapter a choice must fit (and whether it is a hardware GPU). */
export interface AttentionLimits {
  /** `maxComputeInvocationsPerWorkgroup`. */
  maxInvocations: number;
  /** `maxComputeWorkgroupStorageSize` in bytes. */
  maxWorkgroupBytes: number;
  /** A software adapter (llvmpipe, lavapipe); absent: not known to be hardware. */
  software?: boolean;
  /** The adapter's description ("" before an adapter is configured). */
  description?: string;
}

/**
 * The kernels an untuned, unforced call of geometry `s` takes: on a
 * configured hardware GPU, for T and S of at least
 * {@linkcode MM_DEFAULT_MIN_LENGTH}, the per-head matmuls ("mm"; on an NVIDIA
 * H200 they beat the row kernels and every tile on each `base` and `small`
 * training geometry, T = S = 64 and 128, by 1.4–3.5×); elsewhere the row
 * kernels (software adapters, before an adapter is configured, and short
 * sequences such as a decoding step's T = 1, where a product's tiles would be
 * mostly empty and nothing was measured).
 */
export function defaultAttentionKernel(
  s: Pick<AttentionShape, "BH" | "T" | "S">,
  limits: AttentionLimits,
): "rows" | "mm" {
  const hardware = limits.software === false && !!limits.description;
  const long = s.T >= MM_DEFAULT_MIN_LENGTH && s.S >= MM_DEFAULT_MIN_LENGTH;
  return hardware && long && s.BH * s.T * s.S * 4 <= MM_DEFAULT_MAX_SCORE_BYTES ? "mm" : "rows";
}

/** Shortest T and S that {@linkcode defaultAttentionKernel} gives the "mm" kernels. */
export const MM_DEFAULT_MIN_LENGTH = 64;
/**
 * Largest scores buffer {@linkcode defaultAttentionKernel} gives the "mm"
 * kernels (the backward holds two): a GPU with little memory is not handed
 * a gigabyte of scratch untuned; the tuner may still choose "mm" up to
 * `MM_MAX_SCORE_BYTES` where it measured it faster. `base`'s batch needs 32 MiB.
 */
export const MM_DEFAULT_MAX_SCORE_BYTES = 128 * 1024 * 1024;

/** The tiled kinds an op runs: the forward kernel, or dQ and dK/dV. */
function kindsOf(op: "fwd" | "bwd"): TiledKind[] {
  return op === "fwd" ? ["fwd"] : ["dq", "dkv"];
}

/** Whether a tile runs op `op` at head size D within `limits`. */
export function attentionTileFits(
  op: "fwd" | "bwd",
  D: number,
  t: AttentionTile,
  limits: AttentionLimits,
): boolean {
  return kindsOf(op).every((k) => tileFits(k, D, t, limits));
}

/** The registered tiles that fit (names, preferred first). */
export function fittingAttentionTiles(
  op: "fwd" | "bwd",
  D: number,
  limits: AttentionLimits,
): string[] {
  return ATTENTION_TILES[op].filter((n) =>
    attentionTileFits(op, D, parseAttentionTileName(n)!, limits)
  );
}

/**
 * `"attention|fwd|D64|BH~512|T~128|S~128|c1m1d0"`: the key of a tuned
 * choice, with BH, T and S rounded up to powers of two.
 */
export function attentionShapeKey(s: AttentionShape): string {
  const up = (x: number) => (x <= 1 ? 1 : 2 ** Math.ceil(Math.log2(x)));
  return `attention|${s.op}|D${s.D}|BH~${up(s.BH)}|T~${up(s.T)}|S~${up(s.S)}|c${+s.causal}m${+s
    .mask}d${+s.dropout}`;
}

let forcedKernel: string | null | undefined; // undefined: not read from the environment yet
const tunedKernels = new Map<string, Map<string, string>>(); // adapter description → key → choice
let recordedShapes: Map<string, AttentionShape> | null = null;

/** "rows", "mm", "tiled" or a tile name; anything else is a TypeError naming `what`. */
function checkChoice(name: string, what: string): string {
  if (name === "rows" || name === "mm" || name === "tiled") return name;
  const t = parseAttentionTileName(name);
  const why = t ? tileProblem(4 * t.TC, t) : "expected rows, mm, tiled or a<R>x<C>_<RM>x<TC>";
  if (why) throw new TypeError(`${what}: bad attention kernel "${name}" (${why})`);
  return name;
}

function envKernel(): string | null {
  const name = grantedEnv("WEBSEQ_ATTENTION_KERNEL");
  if (!name || name === "auto") return null;
  return checkChoice(name, "WEBSEQ_ATTENTION_KERNEL");
}

/**
 * Forces the attention kernels: `"rows"` (one thread per row), `"mm"`
 * (per-head matmuls with the scores in scratch; the row kernels where the
 * scratch would exceed `MM_MAX_SCORE_BYTES`), `"tiled"`
 * (the first registered tile that fits), a tile name, or `null`/`"auto"`
 * for the tuned or default choice. Overrides `WEBSEQ_ATTENTION_KERNEL`.
 */
export function useAttentionKernel(name: string | null): void {
  forcedKernel = name === null || name === "auto" ? null : checkChoice(name, "useAttentionKernel");
}

/** The forced choice (programmatic or `WEBSEQ_ATTENTION_KERNEL`), if any. */
export function forcedAttentionKernel(): string | null {
  if (forcedKernel === undefined) forcedKernel = envKernel();
  return forcedKernel;
}

/** Runs `fn` with `name` forced (the tuner), then restores the previous forcing. */
export async function withAttentionKernel<T>(name: string, fn: () => Promise<T>): Promise<T> {
  const prev = forcedAttentionKernel();
  forcedKernel = checkChoice(name, "withAttentionKernel");
  try {
    return await fn();
  } finally {
    forcedKernel = prev;
  }
}

/** Records the tuner's choice for a shape class on an adapter. */
export function setTunedAttentionKernel(
  description: string,
  s: AttentionShape,
  name: string,
): void {
  let m = tunedKernels.get(description);
  if (!m) tunedKernels.set(description, m = new Map());
  m.set(attentionShapeKey(s), checkChoice(name, "setTunedAttentionKernel"));
}

/** The tuned choice for a shape class on an adapter, if any. */
export function tunedAttentionKernel(description: string, s: AttentionShape): string | undefined {
  return tunedKernels.get(description)?.get(attentionShapeKey(s));
}

/** The tuned choices of an adapter, by key (what a tuning cache saves). */
export function attentionTunedTable(description: string): Record<string, string> {
  return Object.fromEntries(tunedKernels.get(description) ?? []);
}

/**
 * Adds saved choices for an adapter (the `attention|…` keys of a tuning
 * cache; other keys and unknown names are skipped); returns how many.
 */
export function loadAttentionTunedTable(
  description: string,
  table: Record<string, string>,
): number {
  let n = 0;
  for (const [key, name] of Object.entries(table)) {
    if (!key.startsWith("attention|") || typeof name !== "string") continue;
    try {
      checkChoice(name, key);
    } catch {
      continue;
    }
    let m = tunedKernels.get(description);
    if (!m) tunedKernels.set(description, m = new Map());
    m.set(key, name);
    n++;
  }
  return n;
}

/** Forgets every tuned attention choice (tests). */
export function clearAttentionTuning(): void {
  tunedKernels.clear();
}

/** Starts collecting the attention shapes planned (the tuner records one training step). */
export function startAttentionShapeRecording(): void {
  recordedShapes = new Map();
}

/** The distinct shape classes planned since the start (then stops recording). */
export function stopAttentionShapeRecording(): AttentionShape[] {
  const out = [...(recordedShapes?.values() ?? [])];
  recordedShapes = null;
  return out;
}

/**
 * The kernels an attention call runs: forced, else tuned for the adapter,
 * else {@linkcode defaultAttentionKernel} (the tiled ones are chosen where
 * the tuner measured them faster). "tiled" and tile names that
 * do not fit the head size or the adapter fall back to the first fitting
 * registered tile, or to the row kernels when none fits.
 */
export function selectAttentionKernel(
  s: AttentionShape,
  description: string,
  limits: AttentionLimits,
): AttentionKernel {
  if (recordedShapes) recordedShapes.set(attentionShapeKey(s), { ...s });
  const name = forcedAttentionKernel() ?? tunedAttentionKernel(description, s) ??
    defaultAttentionKernel(s, limits);
  if (name === "rows") return "rows";
  if (name === "mm") return mmFits(s.BH, s.T, s.S) ? "mm" : "rows";
  const t = name === "tiled" ? null : parseAttentionTileName(name);
  if (t && attentionTileFits(s.op, s.D, t, limits)) return t;
  const first = fittingAttentionTiles(s.op, s.D, limits)[0];
  return first ? parseAttentionTileName(first)! : "rows";
}

/** Version of the attention kernels' choices: part of a tuning cache's adapter key. */
export const ATTENTION_CODEGEN_VERSION = 6;
