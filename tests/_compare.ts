/**
 * The comparison of a kernel's result with its CPU reference used by the
 * registry tests (tests/ops_registry_test.ts, the lavapipe subprocess of
 * tests/_attention_tiled_gpu.ts).
 *
 * @module
 */
import assert from "node:assert/strict";

/**
 * Asserts `got` equals the reference `want` element by element within
 * `tol` times the largest finite |want| (at least 1); where `want` is NaN or
 * ±∞, `got` must be the same. `what` names the output in failure messages.
 */
export function assertNearReference(
  got: ArrayLike<number>,
  want: ArrayLike<number>,
  tol: number,
  what: string,
): void {
  assert.equal(got.length, want.length, `${what}: length`);
  let scale = 1e-6;
  for (let i = 0; i < want.length; i++) {
    if (Number.isFinite(want[i])) scale = Math.max(scale, Math.abs(want[i]));
  }
  const bound = tol * Math.max(1, scale);
  for (let i = 0; i < got.length; i++) {
    const r = want[i], g = got[i];
    if (!Number.isFinite(r)) {
      assert.ok(
        Object.is(r, g) || (Number.isNaN(r) && Number.isNaN(g)),
        `${what}[${i}]: ${g} vs ${r}`,
      );
      continue;
    }
    assert.ok(Math.abs(g - r) <= bound, `${what}[${i}]: got ${g}, reference ${r}`);
  }
}
