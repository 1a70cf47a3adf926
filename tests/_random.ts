/**
 * Seeded random inputs for tests.
 *
 * @module
 */
import type { InputSpec, OpCase } from "../ops/registry.ts";
import { makeRng } from "../tensor/rng.ts";

/** Host data for an input spec. */
export function randomInput(spec: InputSpec, rng: () => number): Float64Array | Int32Array {
  const n = spec.shape.reduce((a, b) => a * b, 1);
  if (spec.values) {
    if (spec.values.length !== n) throw new Error("values do not fill the shape");
    return spec.dtype === "i32" ? Int32Array.from(spec.values) : Float64Array.from(spec.values);
  }
  if (spec.dtype === "i32") {
    const m = spec.intMax ?? 4;
    return Int32Array.from({ length: n }, () => Math.floor(rng() * m));
  }
  const lo = spec.min ?? -1, hi = spec.max ?? 1;
  return Float64Array.from({ length: n }, () => Math.fround(lo + (hi - lo) * rng()));
}

/** Host inputs of a registry case from `seed`, with the case's derived inputs filled in. */
export function caseInputs(c: OpCase, seed: number): (Float64Array | Int32Array)[] {
  const rng = makeRng(seed);
  const ins = c.inputs.map((s) => randomInput(s, rng));
  c.derive?.(ins);
  return ins;
}

export { makeRng };
