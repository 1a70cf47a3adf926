/**
 * Shared pieces for writing kernels: dispatch grids for any element count,
 * WGSL snippets (exact erf, the counter-based hash), and the conventions.
 *
 * Conventions every kernel follows:
 * - bindings 0..k-1 are the storage buffers of `GpuKernel.bind`, in order;
 *   the uniform struct (u32 fields first, then f32) is binding k;
 * - sizes come from the uniform, never from `arrayLength` (pooled buffers are
 *   larger than the tensor);
 * - every declared binding is used (auto layouts drop unused ones);
 * - names mirror the CPU reference: `x`, `w`, `out`, `dy`, `dx`.
 *
 * @module
 */
import { expF64 } from "./_exp.ts";

/** Threads per workgroup of 1-D elementwise kernels. */
export const WG = 256;

/**
 * WGSL: the sum of `terms` (WGSL expressions) as a balanced tree of
 * additions, `((t0 + t1) + (t2 + t3))`: a fixed order, and a shorter
 * dependency chain than left to right (the radix-8 reductions of
 * ops/layer_norm.ts and ops/softmax.ts).
 */
export function wgslPairwiseSum(terms: string[]): string {
  if (terms.length === 1) return terms[0];
  const h = Math.ceil(terms.length / 2);
  return `(${wgslPairwiseSum(terms.slice(0, h))} + ${wgslPairwiseSum(terms.slice(h))})`;
}

/**
 * Workgroup counts covering `n` threads of `WG`, spread over x and y so that
 * no dimension exceeds 65535. Kernels compute the linear index with
 * {@linkcode LINEAR_INDEX}.
 */
export function grid1d(n: number, wg: number = WG): [number, number, number] {
  const groups = Math.ceil(n / wg);
  if (groups <= 65535) return [groups, 1, 1];
  const y = Math.ceil(groups / 65535);
  return [Math.ceil(groups / y), y, 1];
}

/**
 * WGSL: the linear thread index `i` for a {@linkcode grid1d} dispatch; needs
 * `@builtin(global_invocation_id) gid: vec3u` and
 * `@builtin(num_workgroups) nwg: vec3u` parameters.
 */
export const LINEAR_INDEX = (wg: number = WG): string => `let i = gid.x + gid.y * nwg.x * ${wg}u;`;

/** WGSL uniform fields `d0..d5` (the 6-D output shape) for {@linkcode UNRAVEL6}. */
export const DIMS6 = "d0: u32, d1: u32, d2: u32, d3: u32, d4: u32, d5: u32";

/** WGSL uniform fields `<p>0..<p>5` (element strides of one operand). */
export const STRIDES6 = (p: string): string =>
  [0, 1, 2, 3, 4, 5].map((k) => `${p}${k}: u32`).join(", ");

/**
 * WGSL: splits the linear index `i` into coordinates `c0..c5` of the 6-D
 * shape `u.d0..u.d5` (outermost first).
 */
export const UNRAVEL6 = `var rem = i;
  let c5 = rem % u.d5; rem = rem / u.d5;
  let c4 = rem % u.d4; rem = rem / u.d4;
  let c3 = rem % u.d3; rem = rem / u.d3;
  let c2 = rem % u.d2; rem = rem / u.d2;
  let c1 = rem % u.d1; rem = rem / u.d1;
  let c0 = rem;`;

/** WGSL: the element offset of coordinates `c0..c5` with strides `u.<p>0..u.<p>5`. */
export const OFFSET6 = (p: string): string =>
  [0, 1, 2, 3, 4, 5].map((k) => `c${k} * u.${p}${k}`).join(" + ");

/** WGSL entry-point signature for 1-D kernels. */
export const MAIN_1D = (wg: number = WG): string =>
  `@compute @workgroup_size(${wg})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u)`;

/**
 * WGSL exact erf in f32 (Abramowitz–Stegun 7.1.26 is too coarse; this is
 * the W. J. Cody style rational approximation used by many libms, max error
 * about 1e-7 relative), matching `erf()` in ops/unary.ts.
 */
export const WGSL_ERF = `
fn erf_f(x: f32) -> f32 {
  let a = abs(x);
  var r: f32;
  if (a < 0.5) {
    let t = x * x;
    r = a * (1.128379167095512573896 + t * (-0.376126389031837538 + t * (0.112837916709551257 +
      t * (-0.0268661706451312557 + t * (0.00522397762544218794 + t * (-0.000854832702345085 +
      t * 0.000120553329817897))))));
  } else if (a < 4.0) {
    let t = 1.0 / (1.0 + 0.5 * a);
    let y = t * exp(-a * a - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
      t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 +
      t * (-0.82215223 + t * 0.17087277)))))))));
    r = 1.0 - y;
  } else {
    r = 1.0;
  }
  return select(r, -r, x < 0.0);
}
`;

/**
 * WGSL `gelu_grad_f(x)` = GELU'(x) = Φ(x) + x·φ(x) without branches, so the
 * threads of a warp never wait on each other's side of a branch (it runs in
 * the epilogue of the GELU-gradient matmul, once per output): Φ(x) is
 * `1 − erfc(|x|/√2)/2` (`erfc/2` for x < 0) with erfc from the formula of
 * {@linkcode WGSL_ERF}'s middle branch, whose fractional error stays under
 * 1.2e-7 for every argument, so Φ is within about 1e-7 of the exact value
 * everywhere (relatively so for x < 0). WGSL_ERF's own small-argument branch
 * keeps erf accurate relative to its size near 0, which Φ = (1 + erf)/2 does
 * not need.
 */
export const WGSL_GELU_GRAD = `
fn gelu_grad_f(x: f32) -> f32 {
  let a = abs(x) * 0.70710678118654752;
  let t = 1.0 / (1.0 + 0.5 * a);
  let c = t * exp(-a * a - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
    t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 +
    t * (-0.82215223 + t * 0.17087277)))))))));
  let cdf = select(1.0 - 0.5 * c, 0.5 * c, x < 0.0);
  return cdf + x * 0.39894228040143268 * exp(-0.5 * x * x);
}
`;

/** Max errors of the erf approximations are checked against Math-based references in tests. */
export function erfApprox(x: number): number {
  const a = Math.abs(x);
  let r: number;
  if (a < 0.5) {
    const t = x * x;
    r = a * (1.128379167095512573896 + t * (-0.376126389031837538 + t * (0.112837916709551257 +
              t *
                (-0.0268661706451312557 + t * (0.00522397762544218794 + t * (-0.000854832702345085 +
                          t * 0.000120553329817897))))));
  } else if (a < 4) {
    const t = 1 / (1 + 0.5 * a);
    const y = t *
      expF64(
        -a * a - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
                      t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 +
                                      t * (-0.82215223 + t * 0.17087277)))))))),
      );
    r = 1 - y;
  } else {
    r = 1;
  }
  return x < 0 ? -r : r;
}
