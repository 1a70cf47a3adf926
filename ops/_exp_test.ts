import assert from "node:assert/strict";
import { EXP_MAX, EXP_MIN, EXP_TABLE, expF64 } from "./_exp.ts";
import { makeRng } from "../tensor/rng.ts";

const bits = new Float64Array(2), ints = new BigInt64Array(bits.buffer);
/** Distance in units in the last place between two finite positive doubles. */
function ulps(a: number, b: number): number {
  bits[0] = a;
  bits[1] = b;
  return Math.abs(Number(ints[0] - ints[1]));
}

Deno.test("expF64() is within 4 ulp of Math.exp over the whole range", () => {
  const rng = makeRng(7);
  let worst = 0;
  for (let i = 0; i < 200_000; i++) {
    // uniform over [−745, 709.7] and, as often, over the softmax range [−40, 40]
    const x = i % 2 ? rng() * 1454.7 - 745 : rng() * 80 - 40;
    worst = Math.max(worst, ulps(expF64(x), Math.exp(x)));
  }
  assert.ok(worst <= 4, `worst error ${worst} ulp`);
});

Deno.test("expF64() gives exact results and IEEE edges where Math.exp does", () => {
  for (const x of [0, -0, 1, -1, 0.5, 1e-300, -1e-300, 88.7, -87.3, 709.78, -708.4, -745]) {
    assert.ok(ulps(expF64(x), Math.exp(x)) <= 4, `exp(${x})`);
  }
  assert.equal(expF64(0), 1);
  assert.equal(expF64(710), Infinity);
  assert.equal(expF64(1e308), Infinity);
  assert.equal(expF64(Infinity), Infinity);
  assert.equal(expF64(-746), 0);
  assert.equal(expF64(-1e308), 0);
  assert.equal(expF64(-Infinity), 0);
  assert.ok(Number.isNaN(expF64(NaN)));
  assert.ok(expF64(-745) > 0, "the smallest subnormal is reached");
  assert.ok(EXP_MIN < Math.log(Number.MIN_VALUE) && EXP_MAX > Math.log(Number.MAX_VALUE));
});

Deno.test("EXP_TABLE holds 2^(j/64), its first entry exactly 1 and each ratio 2^(1/64)", () => {
  assert.equal(EXP_TABLE.length, 64);
  assert.equal(EXP_TABLE[0], 1);
  for (let j = 1; j < 64; j++) {
    assert.ok(Math.abs(EXP_TABLE[j] / EXP_TABLE[j - 1] - 2 ** (1 / 64)) < 1e-15);
  }
});
