/**
 * `expF64`: the exponential of the CPU backend's float64 kernels (GELU and its
 * gradient through erf, the cross-entropy rows and gradient). It is written so
 * that WebAssembly SIMD can compute the same bits two lanes at a time
 * (`$exp2` in tools/wasm/matmul.wat mirrors it operation for operation):
 * before, those kernels called `Math.exp` once per element (about 20 ns).
 *
 * Algorithm (table-driven, as in Tang 1989 and most libm's):
 * - clamp x to [−746, 710] (exp is 0 below, +∞ above; NaN stays NaN);
 * - k = round-to-even(x·64/ln 2) by adding and subtracting 1.5·2⁵²;
 * - r = (x − k·L_hi) − k·L_lo with L = ln 2 / 64 split so that k·L_hi is exact,
 *   so |r| ≤ ln 2 / 128 (plus rounding);
 * - p = 1 + r + r²/2! + … + r⁵/5! by Horner (the next term, r⁶/6!, is below
 *   3.5·10⁻¹⁷: under half an ulp);
 * - exp(x) = T[k mod 64] · p · 2^⌊e/2⌋ · 2^(e − ⌊e/2⌋) with e = ⌊k / 64⌋ and
 *   T[j] = 2^(j/64) ({@linkcode EXP_TABLE}); two power-of-two factors keep
 *   each one a normal number over the whole range (subnormal results round
 *   once, in the last product).
 *
 * Error against `Math.exp`: a few ulp (tests bound it at 4 over the range).
 *
 * @module
 */

/** 2^(j/64) for j = 0 … 63 (the WebAssembly kernels read a copy of these bits). */
export const EXP_TABLE: Float64Array = Float64Array.from({ length: 64 }, (_, j) => 2 ** (j / 64));

/** x + SHIFT − SHIFT rounds |x| < 2⁵¹ to an integer, ties to even. */
export const EXP_SHIFT = 6755399441055744;
/** 64 / ln 2. */
export const EXP_INV_L = 64 / Math.LN2;
/** ln 2 / 64, high part: 32 significant bits (fdlibm's ln2_hi / 64), so k·EXP_L_HI is exact. */
export const EXP_L_HI = 6.93147180369123816490e-01 / 64;
/** ln 2 / 64, low part (fdlibm's ln2_lo / 64). */
export const EXP_L_LO = 1.90821492927058770002e-10 / 64;
/** The clamp of x. */
export const EXP_MIN = -746, EXP_MAX = 710;

/** 2^e for the e that {@linkcode expF64} forms: −539 … 513 (exact powers of two). */
const POW2_MIN = -540,
  POW2 = (() => {
    const t = new Float64Array(1055);
    let v = 1;
    for (let e = 0; e - POW2_MIN < t.length; e++, v *= 2) t[e - POW2_MIN] = v;
    v = 1;
    for (let e = 0; e >= POW2_MIN; e--, v /= 2) t[e - POW2_MIN] = v;
    return t;
  })();

/** e^x in float64 (see the module doc); the same bits as the WebAssembly kernels' exp. */
export function expF64(x: number): number {
  const c = Math.min(Math.max(x, EXP_MIN), EXP_MAX);
  const k = (c * EXP_INV_L + EXP_SHIFT) - EXP_SHIFT;
  const r = (c - k * EXP_L_HI) - k * EXP_L_LO;
  const p = 1 + r * (1 + r * (0.5 + r * (1 / 6 + r * (1 / 24 + r * (1 / 120)))));
  const ki = k | 0; // NaN: 0 (the result is NaN anyway)
  const e = ki >> 6, eh = e >> 1;
  return EXP_TABLE[ki & 63] * p * POW2[eh - POW2_MIN] * POW2[e - eh - POW2_MIN];
}
