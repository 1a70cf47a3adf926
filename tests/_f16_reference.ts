/**
 * Float64 references for the f16 tests: round-to-nearest-even to binary16
 * written from the format's definition (not with Float16Array or
 * Math.f16round, which the code under test uses), and a plain matmul.
 *
 * @module
 */

/** `x` rounded to the nearest binary16 value, ties to even; ≥ 65520 in magnitude → ±Infinity. */
export function roundF16(x: number): number {
  if (!Number.isFinite(x) || x === 0) return x;
  const s = Math.sign(x), a = Math.abs(x);
  if (a >= 65520) return s * Infinity;
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e--;
  if (2 ** (e + 1) <= a) e++;
  e = Math.max(e, -14); // subnormals share the exponent of the smallest normal
  const ulp = 2 ** (e - 10);
  const q = a / ulp, fl = Math.floor(q), d = q - fl;
  const r = d > 0.5 ? fl + 1 : d < 0.5 ? fl : fl % 2 === 0 ? fl : fl + 1;
  return s * r * ulp;
}

/** `op(a) · op(b)` in float64 for 2-D row-major operands. */
export function matmulF64(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  M: number,
  K: number,
  N: number,
  transA = false,
  transB = false,
): Float64Array {
  const out = new Float64Array(M * N);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) {
        s += (transA ? a[k * M + m] : a[m * K + k]) * (transB ? b[n * K + k] : b[k * N + n]);
      }
      out[m * N + n] = s;
    }
  }
  return out;
}
