/**
 * The "mm" GPU kernels of ops/attention.ts: attention as per-head products
 * through the register-tiled matmul kernels (ops/matmul.ts
 * `stridedMatmulKernel`, reading `[B, T, H, D]` or `[B, H, T, D]` in place)
 * around two row kernels defined here, with the `[B·H, T, S]` scores in
 * scratch memory:
 *
 * - forward: `Z = Q·Kᵀ` → {@linkcode mmSoftmaxWgsl} (P̃ = dropout(softmax(scale·Z
 *   masked)) in place, and lse) → `out = P̃·V`;
 * - backward: Δ (attention.ts's delta kernel) → `Z = Q·Kᵀ`, `dP = dO·Vᵀ` →
 *   {@linkcode mmGradWgsl} (P̃ into Z, `scale·dS` into dP, elementwise) →
 *   `dV = P̃ᵀ·dO`, `dQ = (scale·dS)·K`, `dK = (scale·dS)ᵀ·Q`; without
 *   dropout P and `scale·dS` come from the epilogues of the two products
 *   instead (ops/_matmul_wgsl.ts `scoresProb`, `scoresGrad`), no elementwise
 *   kernel, and where a tile holds whole rows Δ too (`scoresGradRows`), no
 *   delta kernel.
 *
 * With `keepProbs` (attention.ts `useAttentionProbs`) the forward's P̃ is an
 * output instead of scratch, and the backward starts from it: no `Q·Kᵀ`.
 *
 * On a large GPU the products run at the matmul kernels' rate while the row
 * kernels of attention.ts run one dependent dot product per key; the price
 * is the scratch (`4·B·H·T·S` bytes forward, twice that backward), so the
 * path is offered only up to {@linkcode MM_MAX_SCORE_BYTES} per scores
 * buffer. Semantics are attention.ts's (masking, uniform fully-masked rows,
 * dropout by the `[B, H, T, S]` index, lse before dropout).
 *
 * @module
 */
import type { MatmulShape } from "./_matmul_variants.ts";

/** Largest scores buffer (bytes) the "mm" kernels use; larger calls take the row kernels. */
export const MM_MAX_SCORE_BYTES = 512 * 1024 * 1024;

/** Lanes (threads) sharing one row in {@linkcode mmSoftmaxWgsl}. */
export const MM_LANES = 32;
/** Rows per workgroup of {@linkcode mmSoftmaxWgsl}. */
export const MM_ROWS_PER_WG = 8;
/** Rows up to this many keys keep their scores in registers in {@linkcode mmSoftmaxWgsl}. */
export const MM_SOFTMAX_REG_KEYS = 512;
/** Threads per workgroup of {@linkcode mmGradWgsl}. */
export const MM_GRAD_WG = 256;

/**
 * The per-head products an op of this geometry runs (as contiguous batched
 * shapes: what the matmul tuner times for their tiles): forward `Q·Kᵀ`,
 * `P̃·V`; backward `Q·Kᵀ` (and `dO·Vᵀ`), `P̃ᵀ·dO` (and `dSᵀ·Q`), `dS·K`.
 */
export function mmProductShapes(
  s: { op: "fwd" | "bwd"; BH: number; T: number; S: number; D: number },
): MatmulShape[] {
  const { BH: P, T, S, D } = s;
  const scores = { M: T, N: S, K: D, P, transA: false, transB: true };
  const byV = { M: T, N: D, K: S, P, transA: false, transB: false };
  if (s.op === "fwd") return [scores, byV];
  return [scores, { M: S, N: D, K: T, P, transA: true, transB: false }, byV];
}

/** Whether the "mm" kernels take a call of these sizes (scratch and grid limits). */
export function mmFits(BH: number, T: number, S: number): boolean {
  return T > 0 && S > 0 && BH <= 65535 && BH * T * S * 4 <= MM_MAX_SCORE_BYTES;
}

/**
 * The forward row kernel: for each heads-major row `r = (b·H + h)·T + t` of
 * the scores `z [B·H, T, S]` (raw q·k), the softmax of `scale·z` over the
 * allowed keys, times the dropout multiplier, written over z, and
 * `lse[row_of(b, h, t, T)]`. `prelude` declares the buffers `z` (read_write),
 * `mask` (when masked), `lse` (read_write), the uniform `u` and
 * attention.ts's helpers (`coords_of`, `row_of`, `key_on`, `key_end`,
 * `zmul`, `MASKED`). {@linkcode MM_LANES} threads share a row: each keeps a
 * running (max, sum) over its keys, the pairs combine through workgroup
 * memory (a radix-8 tree, two barriers), then each thread writes its keys; up to
 * {@linkcode MM_SOFTMAX_REG_KEYS} keys (S, compile-time) a thread keeps its
 * scaled scores in registers between the two passes, beyond it reads them again.
 */
export function mmSoftmaxWgsl(prelude: string, S: number): string {
  const L = MM_LANES, R = MM_ROWS_PER_WG, W = L * R;
  // rows up to MM_SOFTMAX_REG_KEYS keys keep each thread's scores in registers (one read)
  const J = S <= MM_SOFTMAX_REG_KEYS ? Math.max(1, Math.ceil(S / L)) : 0;
  // the lanes' (max, sum) pairs combine in a radix-8 tree: L / 8 lanes merge 8 pairs each, then
  // every lane merges those L / 8 itself (2 barriers; a binary tree took log2(L) + 1)
  const P8 = L / 8;
  const merge = (n: number, mAt: (q: number) => string, lAt: (q: number) => string) => {
    const qs = Array.from({ length: n }, (_, q) => q);
    const mx = qs.slice(1).reduce((acc, q) => `max(${acc}, ${mAt(q)})`, mAt(0));
    return `let mx = ${mx};
    let sm = ${qs.map((q) => `${lAt(q)} * exp(${mAt(q)} - mx)`).join(" + ")};`;
  };
  const combine = `if (lane < ${P8}u) {
    let p8 = tid - lane + lane * 8u;
    ${merge(8, (q) => `rm[p8 + ${q}u]`, (q) => `rl[p8 + ${q}u]`)}
    rm8[(tid / ${L}u) * ${P8}u + lane] = mx;
    rl8[(tid / ${L}u) * ${P8}u + lane] = sm;
  }
  workgroupBarrier();
  {
    let q8 = (tid / ${L}u) * ${P8}u;
    ${merge(P8, (q) => `rm8[q8 + ${q}u]`, (q) => `rl8[q8 + ${q}u]`)}
    m = mx;
    l = sm;
  }`;
  // x: a score scaled, or MASKED for a disallowed key; the running (max, sum) takes it
  const take = `if (x > m) {
        l *= exp(m - x);
        m = x;
      }
      if (x != MASKED) { l += exp(x - m); }`;
  // the J keys of a thread unrolled, j a constant: xs stays in registers whatever the driver
  // makes of loops
  const perKey = (body: (j: number) => string) =>
    Array.from({ length: J }, (_, j) =>
      `{
    const j = ${j}u;
    ${body(j)}
  }`).join("\n  ");
  const first = J
    ? `var xs: array<f32, ${J}>;
  ${
      perKey((j) =>
        `let s = lane + ${j * L}u;
    var x = MASKED;
    if (live && s < end && key_on(b, s)) { x = u.scale * z[zo + s]; }
    xs[j] = x;
    ${take}`
      )
    }`
    : `if (live) {
    for (var s = lane; s < end; s += ${L}u) {
      if (!key_on(b, s)) { continue; }
      let x = u.scale * z[zo + s];
      ${take}
    }
  }`;
  const write = J
    ? perKey((j) =>
      `let s = lane + ${j * L}u;
    if (s < u.S) {
      let p = select(select(0.0, exp(xs[j] - lse_r), xs[j] != MASKED), inv_s, none);
      z[zo + s] = p * zmul(b, h, t, s);
    }`
    )
    : `for (var s = lane; s < u.S; s += ${L}u) {
    var p = 0.0;
    if (none) {
      p = inv_s;
    } else if (s < end && key_on(b, s)) {
      p = exp(u.scale * z[zo + s] - lse_r);
    }
    z[zo + s] = p * zmul(b, h, t, s);
  }`;
  return `${prelude}
var<workgroup> rm: array<f32, ${W}>;
var<workgroup> rl: array<f32, ${W}>;
var<workgroup> rm8: array<f32, ${W / 8}>;
var<workgroup> rl8: array<f32, ${W / 8}>;
@compute @workgroup_size(${W})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) tid: u32) {
  let r = (wid.x + wid.y * nwg.x) * ${R}u + tid / ${L}u;
  let lane = tid % ${L}u;
  let live = r < u.BH * u.T;
  let c = coords_of(min(r, u.BH * u.T - 1u), u.T);
  let b = c.x;
  let h = c.y;
  let t = c.z;
  let zo = r * u.S;
  let end = key_end(t);
  var m = MASKED;
  var l = 0.0;
  ${first}
  rm[tid] = m;
  rl[tid] = l;
  workgroupBarrier();
  ${combine}
  if (!live) { return; }
  let none = m == MASKED;
  let lse_r = select(m + log(l), log(f32(u.S)), none);
  if (lane == 0u) { lse[row_of(b, h, t, u.T)] = lse_r; }
  let inv_s = 1.0 / f32(u.S);
  ${write}
}
`;
}

/**
 * The backward row kernel, one thread per score (`vec`: per 4 consecutive
 * scores of a row, the buffers `z` and `dp` then `vec4f`, S % 4 == 0): with
 * `P = exp(scale·z − lse)` on allowed keys (`1/S` everywhere in a fully
 * masked row, 0 on other disallowed keys) and the dropout multiplier `zm`,
 * writes `z := P·zm` (what dV multiplies) and `dp := scale·P·(dp·zm − Δ)` on
 * allowed keys, else 0 (what dQ and dK multiply). `prelude` declares `z`,
 * `dp` (read_write), `lse`, `info` (Δ and the fully-masked flag per
 * heads-major row, from the delta kernel), `mask` when masked, the uniform
 * and the helpers.
 */
export function mmGradWgsl(prelude: string, vec = false): string {
  const W = vec ? 4 : 1;
  const one = (q: number, zi: string, di: string) =>
    `{
    let s = s0 + ${q}u;
    let zm = zmul(c.x, c.y, c.z, s);
    if (s < end && key_on(c.x, s)) {
      let p = exp(u.scale * ${zi} - L);
      ${zi} = p * zm;
      ${di} = u.scale * p * (${di} * zm - delta);
    } else {
      ${zi} = select(0.0, zm / f32(u.S), full);
      ${di} = 0.0;
    }
  }`;
  const body = vec
    ? `var zv = z[i];
  var dv = dp[i];
  ${[0, 1, 2, 3].map((q) => one(q, `zv.${"xyzw"[q]}`, `dv.${"xyzw"[q]}`)).join("\n  ")}
  z[i] = zv;
  dp[i] = dv;`
    : one(0, "z[i]", "dp[i]");
  return `${prelude}
@compute @workgroup_size(${MM_GRAD_WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * ${MM_GRAD_WG}u;
  if (i >= u.BH * u.T * (u.S / ${W}u)) { return; }
  let r = i / (u.S / ${W}u);
  let s0 = (i % (u.S / ${W}u)) * ${W}u;
  let c = coords_of(r, u.T);
  let end = key_end(c.z);
  let L = lse[row_of(c.x, c.y, c.z, u.T)];
  let delta = info[2u * r];
  let full = info[2u * r + 1u] != 0.0;
  ${body}
}
`;
}
