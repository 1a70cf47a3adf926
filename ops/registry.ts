/**
 * The registry format: each op with the cases the registry-driven test runs
 * (tests/ops_registry_test.ts): GPU output equals the CPU reference, and the
 * backward rule equals finite differences in float64.
 *
 * @module
 */
import type { OpDef } from "../tensor/types.ts";

/** How to generate one input of a case. */
export interface InputSpec {
  /** Shape. */
  shape: number[];
  /** i32 inputs hold integers in [0, intMax). */
  dtype?: "f32" | "i32";
  /** Exclusive upper bound of i32 values (default 4). */
  intMax?: number;
  /** Lower bound of float values (default -1). */
  min?: number;
  /** Upper bound of float values (default 1). */
  max?: number;
  /** Fill with these exact values instead (e.g. masks). */
  values?: number[];
  /** Skip the gradient check of this input. */
  noGrad?: boolean;
}

/** One test case of an op. */
export interface OpCase {
  /** Inputs. */
  inputs: InputSpec[];
  /** Op parameters. */
  // deno-lint-ignore no-explicit-any
  params: any;
  /** Outputs whose gradient flows in the check (default [0]). */
  gradOutputs?: number[];
  /** Skip the gradient check (ops without backward, or non-smooth ones). */
  noGradCheck?: boolean;
  /** Relative tolerance of GPU vs CPU (default 1e-4 of max |ref|). */
  tol?: number;
  /** Short label for the test name. */
  label?: string;
  /**
   * Recomputes, in place, inputs that must agree with the others (the
   * attention backward's `out` and `lse` come from its forward on the same
   * q/k/v); runs on the host inputs (f32 values in f64 arrays) before every check.
   */
  derive?: (ins: (Float64Array | Int32Array)[]) => void;
}

/** One registry entry. */
export interface OpEntry {
  /** The op. */
  // deno-lint-ignore no-explicit-any
  op: OpDef<any>;
  /** Cases: include size-1 dims and sizes that are not tile multiples. */
  cases: OpCase[];
}
