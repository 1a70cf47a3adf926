/**
 * The mixed-precision matmul: operands rounded to f16, products accumulated
 * in f32, an f32 (or f16) result. `out[..., M, N] = op(a)[..., M, K] ·
 * op(b)[..., K, N]` with the layout rules of `matmul` (ops/matmul.ts):
 * `transA`/`transB` transpose the last two axes, batch axes match or are
 * absent (a 2-D operand is shared).
 *
 * Each operand is f16, or f32 that the kernel rounds to f16 as it loads it
 * (`matmulF16(x, w)` computes exactly `matmulF16(cast(x, "f16"), cast(w,
 * "f16"))` without the two cast passes: that is what nn/layers.ts `autocast`
 * runs). `round` rounds an f32 result to f16 values (the gradient of an f32
 * operand that was rounded to f16, as the cast's backward would produce it).
 *
 * CPU reference: the products of two f16 are exact in f32 and the sum is
 * accumulated in f32, so it rounds both operands to f16, widens them to f32
 * and runs the f32 matmul (ops/matmul.ts, the WebAssembly kernel when it
 * loads); an f16 (or rounded) result is that f32 result rounded to nearest
 * even, overflow to ±Infinity.
 *
 * WebGPU kernel (needs `shader-f16`): the register-tiled kernels of
 * ops/_matmul_wgsl.ts in their f16 form, on the tile the f32 matmul of the
 * shape runs (so tuning covers both), f32 operands rounded as they load.
 * With `acc: "f32"` the rounded values are widened back to f32 as they are
 * staged in workgroup memory, so the multiply is the f32 kernel's, products
 * accumulated in f32 in k order (session 11 staged `vec4<f16>` slices and
 * widened each value at every product: 16 conversions per 64 FMAs, and the
 * f16 step ran 1.19× slower than f32 on an H200; `stage: "f16"` keeps that
 * form for the benchmark). With `acc: "f16"` the slices are staged as f16
 * and groups of 16 k are summed by f16 FMAs. Results agree with the CPU's to f32 rounding of the
 * sum (f16 results to one f16 ulp: WGSL's f32→f16 conversion may round
 * either way; f16 FMAs may round twice).
 *
 * The autocast Linear layer is one op, {@linkcode LINEAR_F16} (the bias in
 * the epilogue; backward `dx` with the pending gradient added in its kernel,
 * `dW` and `db` from one kernel), as the f32 Linear is (ops/matmul.ts).
 *
 * Backward (gradients in the input dtypes): `dy` is rounded to f16 as it is
 * loaded (the loss scale of optim/grad_scaler.ts keeps it clear of
 * underflow; overflow gives ±Infinity, which the scaler detects), and each
 * gradient is this same kernel with its result rounded to f16.
 *
 * @example
 * ```ts
 * import { cast, matmulF16, tensor } from "@webseq/webseq";
 * const a = cast(tensor([1, 2, 3, 4], [2, 2]), "f16");
 * const y = matmulF16(a, a); // f32 [2, 2]
 * console.log(y.dtype, await y.toArray()); // "f32" [7, 10, 15, 22]
 * ```
 *
 * @module
 */
import { apply, applyInto, type Tensor } from "../tensor/tensor.ts";
import type { CpuArray, GpuPlan, OpDef, OpInfo, Shape } from "../tensor/types.ts";
import { fmtShape } from "../tensor/types.ts";
import {
  addRows,
  MATMUL,
  type MatmulGeometry,
  matmulGeometry,
  matmulKernel,
  matmulPlan,
  type MatmulShape,
  sumRows,
  type TuneProduct,
} from "./matmul.ts";
import type { MatmulHalf } from "./_matmul_wgsl.ts";
import { parseHalfForm } from "./_matmul_variants.ts";
import { sumTo } from "./reduce.ts";
import { reshape } from "./reshape.ts";
import { lastAxisRows } from "./softmax.ts";
import { cast, type CastDType } from "./cast.ts";

/** Parameters of {@linkcode MATMUL_F16}. */
export interface MatmulF16Params {
  /** Read `a` as `[..., K, M]` and transpose it. */
  transA: boolean;
  /** Read `b` as `[..., N, K]` and transpose it. */
  transB: boolean;
  /** Result dtype: f32 (forward) or f16 (the gradients of f16 operands). */
  out: CastDType;
  /** Round an f32 result to f16 values (the gradients of f32 operands). */
  round?: boolean;
  /**
   * "f32" (default): every product accumulated in f32. "f16": the products
   * of each 16-deep K slice (or `group`) are accumulated by f16 FMAs (twice
   * the FMA rate of f32 on GPUs with packed half math) and each slice's sum
   * is added to an f32 total — PyTorch's "reduced precision reduction" for
   * f16 GEMMs.
   */
  acc?: "f32" | "f16";
  /**
   * WebGPU only: how f32 accumulation stages the operands in workgroup
   * memory — "f32" (default: widened once as they load) or "f16" (half the
   * bytes, widened at each product; the form before, kept for the
   * benchmark's comparison). Same results either way.
   */
  stage?: "f32" | "f16";
  /**
   * Depth of the K groups `acc: "f16"` sums in f16 before adding each
   * group's sum to the f32 total: 16 (default; what training uses), 32 or
   * 64 (fewer f16 → f32 conversions, less exact; for the benchmark).
   */
  group?: F16Group;
}

/** Depths of the f16-accumulated K groups (see `MatmulF16Params.group`). */
export type F16Group = 16 | 32 | 64;

/**
 * How the f16 products of a layer accumulate (autocast, the f16 Linear ops,
 * training's `--f16-accumulate`): "f32", or f16 FMAs over K groups of 16
 * ("f16"), 32 ("f16/32") or 64 ("f16/64"), each group's sum added to an f32
 * total ({@linkcode accumulateParts}: the `acc` and `group` of
 * {@linkcode MatmulF16Params}).
 */
export type MatmulF16Accumulate = (typeof F16_ACCUMULATE)[number];

/** Every {@linkcode MatmulF16Accumulate}, in the order help texts list them. */
export const F16_ACCUMULATE = ["f32", "f16", "f16/32", "f16/64"] as const;

/** Whether `x` is a {@linkcode MatmulF16Accumulate}. */
export function isF16Accumulate(x: unknown): x is MatmulF16Accumulate {
  return (F16_ACCUMULATE as readonly unknown[]).includes(x);
}

/**
 * The `acc` and `group` of {@linkcode MatmulF16Params} for a layer's
 * accumulation (`group` only when deeper than the default 16, so the
 * default's parameters, and the kernels they key, stay as they were).
 */
export function accumulateParts(
  acc: MatmulF16Accumulate,
): { acc: "f32" | "f16"; group?: F16Group } {
  if (acc === "f16/32") return { acc: "f16", group: 32 };
  if (acc === "f16/64") return { acc: "f16", group: 64 };
  return { acc };
}

type Geometry = MatmulGeometry;

function geometry(as: Shape, bs: Shape, p: MatmulF16Params): Geometry {
  return matmulGeometry(as, bs, { transA: p.transA, transB: p.transB }, "matmulF16");
}

// ---------------------------------------------------------------- WGSL

/** Default depth of the K groups that `acc: "f16"` sums in f16 (the CPU reference and the kernels). */
const F16_GROUP: F16Group = 16;

function checkGroup(g: number | undefined): F16Group {
  if (g === undefined) return F16_GROUP;
  if (g !== 16 && g !== 32 && g !== 64) {
    throw new RangeError(`Cannot matmulF16: group must be 16, 32 or 64, got ${g}`);
  }
  return g;
}

/**
 * One call's kernel: the register-tiled generator of ops/_matmul_wgsl.ts in
 * its f16 form (f32 operands rounded as they load; slices staged widened to
 * f32 with f32 accumulation, as f16 with f16 accumulation or `stage: "f16"`),
 * on the tile the f32 matmul of the same shape would run (heuristic,
 * tuned or forced: ops/_matmul_variants.ts).
 */
function planKernel(g: Geometry, p: MatmulF16Params, info: OpInfo): GpuPlan {
  const half: MatmulHalf = {
    a: info.inputs[0].dtype === "f16" ? "f16" : "f32",
    b: info.inputs[1].dtype === "f16" ? "f16" : "f32",
    acc: p.acc === "f16" ? "f16" : "f32",
    out: p.out === "f16" ? "f16" : p.round ? "round" : "f32",
    ...(p.stage === "f16" ? { stage: "f16" as const } : {}),
    ...(p.acc === "f16" && checkGroup(p.group) !== F16_GROUP ? { group: p.group } : {}),
  };
  return matmulPlan(g, { transA: p.transA, transB: p.transB }, { half });
}

/** 2⁴² + 1: Veltkamp's split of a float64 keeps 53 − 42 = 11 significant bits. */
const SPLIT_F16 = 4398046511105;

/**
 * `Math.f16round` (round to nearest even, subnormals, ±Infinity above the
 * f16 range), 3–4× faster: a Veltkamp split for normal values and the
 * add-and-subtract of 1.5·2²⁸ (multiples of 2⁻²⁴) for subnormal ones.
 * Equal to `Math.f16round` on every input (tests/ checks it, ties included).
 */
export function roundToF16(x: number): number {
  const ax = Math.abs(x);
  if (ax < 6.103515625e-5) {
    const r = x + 402653184 - 402653184;
    return r === 0 ? x * 0 : r; // keeps the sign of zero
  }
  if (ax >= 65520) return x !== x ? x : x > 0 ? Infinity : -Infinity;
  const c = x * SPLIT_F16;
  return c - (c - x);
}

/**
 * The `acc: "f16"` reference: for each output, each K group (16 deep unless
 * `p.group` says otherwise) is
 * summed by f16 FMAs in k order (`h = f16(a·b + h)`: the product of two f16
 * is exact in float64, and so is its sum with an f16, so one rounding, as a
 * fused f16 FMA), and each slice's sum is added to an f32 total.
 */
function sliceAccumulate(a: Float32Array, b: Float32Array, g: Geometry, p: MatmulF16Params) {
  const { M, N, K, P, sa, sb } = g;
  const out = new Float32Array(P * M * N);
  const f16 = roundToF16, f32 = Math.fround;
  const BK = checkGroup(p.group);
  // rows over k: A [M, K] and B [N, K], so the inner loop reads both contiguously
  const At = new Float64Array(M * K), Bt = new Float64Array(N * K);
  for (let z = 0; z < P; z++) {
    for (let m = 0; m < M; m++) {
      for (let k = 0; k < K; k++) At[m * K + k] = a[z * sa + (p.transA ? k * M + m : m * K + k)];
    }
    for (let n = 0; n < N; n++) {
      for (let k = 0; k < K; k++) Bt[n * K + k] = b[z * sb + (p.transB ? n * K + k : k * N + n)];
    }
    for (let m = 0; m < M; m++) {
      const ar = m * K, orow = z * M * N + m * N;
      let n = 0;
      // four outputs at a time: four independent rounding chains
      for (; n + 3 < N; n += 4) {
        const b0 = n * K, b1 = b0 + K, b2 = b1 + K, b3 = b2 + K;
        let c0 = 0, c1 = 0, c2 = 0, c3 = 0;
        for (let k0 = 0; k0 < K; k0 += BK) {
          let h0 = 0, h1 = 0, h2 = 0, h3 = 0;
          const k1 = Math.min(K, k0 + BK);
          for (let k = k0; k < k1; k++) {
            const av = At[ar + k];
            h0 = f16(av * Bt[b0 + k] + h0);
            h1 = f16(av * Bt[b1 + k] + h1);
            h2 = f16(av * Bt[b2 + k] + h2);
            h3 = f16(av * Bt[b3 + k] + h3);
          }
          c0 = f32(c0 + h0), c1 = f32(c1 + h1), c2 = f32(c2 + h2), c3 = f32(c3 + h3);
        }
        out[orow + n] = c0, out[orow + n + 1] = c1, out[orow + n + 2] = c2, out[orow + n + 3] = c3;
      }
      for (; n < N; n++) {
        const br = n * K;
        let c = 0;
        for (let k0 = 0; k0 < K; k0 += BK) {
          let h = 0;
          const k1 = Math.min(K, k0 + BK);
          for (let k = k0; k < k1; k++) h = f16(At[ar + k] * Bt[br + k] + h);
          c = f32(c + h);
        }
        out[orow + n] = c;
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------- op

/** The f16 × f16 → f32 (or f16) matmul op. */
export const MATMUL_F16: OpDef<MatmulF16Params> = {
  name: "matmul_f16",
  f16: true,
  outputs([a, b], p) {
    if (a.dtype === "i32" || b.dtype === "i32") {
      throw new TypeError(`Cannot matmulF16 ${a.dtype} by ${b.dtype}: operands must be f16 or f32`);
    }
    if (p.out !== "f32" && p.out !== "f16") {
      throw new TypeError(`Cannot matmulF16: out must be "f32" or "f16", got ${p.out}`);
    }
    const g = geometry(a.shape, b.shape, p);
    return [{ shape: g.shape, dtype: p.out }];
  },
  cpu([a, b], [out], info, p) {
    // f16 values widened to f32 (exact); f32 operands rounded to f16 first
    const f32 = (x: CpuArray) =>
      Float32Array.from(x instanceof Float16Array ? x : Float16Array.from(x));
    if (p.acc === "f16") {
      const g = geometry(info.inputs[0].shape, info.inputs[1].shape, p);
      const acc = sliceAccumulate(f32(a), f32(b), g, p);
      if (p.round && out instanceof Float32Array) out.set(Float16Array.from(acc));
      else out.set(acc); // f16 out: rounds to nearest even
      return;
    }
    const info32 = {
      inputs: info.inputs.map((t) => ({ shape: t.shape, dtype: "f32" as const })),
      outputs: [{ shape: info.outputs[0].shape, dtype: "f32" as const }],
    };
    const acc = out instanceof Float32Array ? out : new Float32Array(out.length);
    MATMUL.cpu([f32(a), f32(b)], [acc], info32, { transA: p.transA, transB: p.transB });
    if (p.round && acc === out) out.set(Float16Array.from(acc)); // f16 values in f32
    else if (acc !== out) out.set(acc); // f16: round to nearest even
  },
  gpu(info, p) {
    const g = geometry(info.inputs[0].shape, info.inputs[1].shape, p);
    return planKernel(g, p, info);
  },
  backward(c, [dyAny]) {
    const a = c.inputs[0] as Tensor, b = c.inputs[1] as Tensor;
    const dy = dyAny as Tensor; // rounded to f16 as the kernel loads it
    const { transA: tA, transB: tB } = c.params;
    // each gradient in its operand's dtype, rounded to f16 values; one summed over broadcast
    // batch axes is summed in f32 first
    const grad = (x: Tensor, y: Tensor, o: { transA: boolean; transB: boolean }, like: Tensor) => {
      const out = like.dtype === "f16" ? "f16" : "f32";
      const { acc, group } = c.params;
      const d = matmulF16(x, y, { ...o, out, round: true, acc, group });
      if (d.rank === like.rank && d.shape.every((n, k) => n === like.shape[k])) return d;
      d.dispose();
      const summed = cast(sumTo(matmulF16(x, y, { ...o, acc, group }), like.shape), "f16");
      return out === "f16" ? summed : cast(summed, "f32");
    };
    let da: Tensor | null = null, db: Tensor | null = null;
    if (a.requiresGrad) {
      da = tA
        ? grad(b, dy, { transA: tB, transB: true }, a)
        : grad(dy, b, { transA: false, transB: !tB }, a);
    }
    if (b.requiresGrad) {
      db = tB
        ? grad(dy, a, { transA: true, transB: tA }, b)
        : grad(a, dy, { transA: !tA, transB: false }, b);
    }
    return [da, db];
  },
};

/** Options of {@linkcode matmulF16}. */
export interface MatmulF16Options {
  /** Transpose the last two axes of `a` first. */
  transA?: boolean;
  /** Transpose the last two axes of `b` first. */
  transB?: boolean;
  /** Result dtype (default f32). */
  out?: CastDType;
  /** Round an f32 result to f16 values (default false). */
  round?: boolean;
  /** Accumulation (default "f32"; see `MatmulF16Params.acc`). */
  acc?: "f32" | "f16";
  /** Workgroup staging of f32 accumulation (see `MatmulF16Params.stage`). */
  stage?: "f32" | "f16";
  /** Depth of the f16-accumulated K groups (see `MatmulF16Params.group`). */
  group?: F16Group;
}

/**
 * `op(a) · op(b)` with both operands rounded to f16 (f16 tensors as they
 * are, f32 ones as they load), accumulated in f32; an f32 result by default.
 */
export function matmulF16(a: Tensor, b: Tensor, opts: MatmulF16Options = {}): Tensor {
  return apply(MATMUL_F16, [a, b], {
    transA: opts.transA ?? false,
    transB: opts.transB ?? false,
    out: opts.out ?? "f32",
    round: opts.round ?? false,
    ...(opts.acc === "f16" ? { acc: "f16" as const } : {}),
    ...(opts.stage === "f16" && opts.acc !== "f16" ? { stage: "f16" as const } : {}),
    ...(opts.acc === "f16" && opts.group !== undefined ? { group: checkGroup(opts.group) } : {}),
  })[0];
}

/**
 * The product {@linkcode autotuneMatmul} times for a shape whose `form` is an
 * f16 kernel's (ops/_matmul_variants.ts `halfForm`): `matmulF16` of its f32
 * operands (rounded to f16 as they load, as in training) with that form's
 * accumulation and staging; null for any other form. With f16 accumulation a
 * candidate's check allows 1e-2 (a driver may contract the f16 FMAs
 * differently per kernel; a skipped slice or tile is off by far more).
 */
export function tuneProductF16(s: MatmulShape): TuneProduct | null {
  const form = parseHalfForm(s.form);
  if (!form) return null;
  const acc16 = form.acc === "f16";
  const opts: MatmulF16Options = {
    transA: s.transA ?? false,
    transB: s.transB ?? false,
    ...(!acc16 && form.stageF16 ? { stage: "f16" as const } : {}),
    ...(acc16 ? { acc: "f16" as const, group: form.group as F16Group } : {}),
  };
  return {
    run: (a, b) => matmulF16(a, b, opts),
    opName: MATMUL_F16.name,
    ...(acc16 ? { tolerance: 1e-2 } : {}),
  };
}

// ---------------------------------------------------------------- the f16 Linear layer

/** Parameters of the f16 Linear ops ({@linkcode LINEAR_F16}, {@linkcode LINEAR_GRAD_F16}). */
export interface LinearF16Params {
  /** How the products accumulate (see {@linkcode MatmulF16Accumulate}). */
  acc: MatmulF16Accumulate;
}

/**
 * The f16 kernel form of an f32-operand product with an `out` result,
 * accumulating per a layer's mode (or `MatmulF16Params`' `acc` and `group`).
 */
export function halfF32(
  acc: MatmulF16Accumulate,
  out: MatmulHalf["out"],
  group?: F16Group,
): MatmulHalf {
  const parts = accumulateParts(acc), g = group ?? parts.group;
  return {
    a: "f32",
    b: "f32",
    acc: parts.acc,
    out,
    ...(parts.acc === "f16" && g !== undefined && g !== F16_GROUP ? { group: g } : {}),
  };
}

/** Throws a TypeError naming `what` unless `acc` is a {@linkcode MatmulF16Accumulate}. */
export function checkAccumulate(acc: unknown, what: string): void {
  if (!isF16Accumulate(acc)) {
    throw new TypeError(
      `${what}: accumulation must be ${F16_ACCUMULATE.map((a) => `"${a}"`).join(", ")}, got ${
        JSON.stringify(acc)
      }`,
    );
  }
}

/** `MATMUL_F16.cpu` of f32 operands `a` (`as`) and `b` (`bs`) into f32 `out`. */
export function productF16Cpu(
  a: CpuArray,
  b: CpuArray,
  out: CpuArray,
  [as, bs, os]: [Shape, Shape, Shape],
  p: MatmulF16Params,
): void {
  MATMUL_F16.cpu([a, b], [out], {
    inputs: [{ shape: as, dtype: "f32" }, { shape: bs, dtype: "f32" }],
    outputs: [{ shape: os, dtype: "f32" }],
  }, p);
}

function requireF32(what: string, ts: { dtype: string; shape: Shape }[], names: string[]): void {
  ts.forEach((t, i) => {
    if (t.dtype !== "f32") {
      throw new TypeError(`Cannot ${what}: ${names[i]} is ${t.dtype}, must be f32`);
    }
  });
}

/**
 * The autocast Linear layer in one kernel: `y = f16(x)·f16(W)ᵀ + b` for
 * f32 `x [..., I]`, `W [O, I]`, `b [O]` — the f16 product of
 * {@linkcode matmulF16} (operands rounded as they load, accumulated per
 * `acc`), its f32 result plus the bias in f32: the numbers of
 * `add(matmulF16(x, W, { transB: true }), b)` in one dispatch.
 *
 * Backward: `dx = f16(dy)·f16(W)` rounded to f16 values (with a gradient
 * pending for `x` added in the same kernel: {@linkcode MATMUL_F16_ADD}),
 * `dW` and `db` from one kernel ({@linkcode LINEAR_GRAD_F16}): the numbers
 * of the unfused composition's rules.
 */
export const LINEAR_F16: OpDef<LinearF16Params> = {
  name: "linear_f16",
  overwrites: true,
  outputs([x, w, b], p) {
    checkAccumulate(p.acc, "Cannot linearF16");
    requireF32("linearF16", [x, w, b], ["x", "weight", "bias"]);
    const I = x.shape[x.shape.length - 1];
    if (x.shape.length < 1 || w.shape.length !== 2 || w.shape[1] !== I) {
      throw new TypeError(
        `Cannot linearF16: x ${fmtShape(x.shape)} and weight ${fmtShape(w.shape)} (need [O, ${I}])`,
      );
    }
    if (b.shape.length !== 1 || b.shape[0] !== w.shape[0]) {
      throw new TypeError(`Cannot linearF16: bias ${fmtShape(b.shape)} must be [${w.shape[0]}]`);
    }
    return [{ shape: [...x.shape.slice(0, -1), w.shape[0]], dtype: "f32" }];
  },
  cpu([x, w, b], [out], info, p) {
    const [R, I] = lastAxisRows(info.inputs[0].shape), O = info.inputs[1].shape[0];
    productF16Cpu(x, w, out, [[R, I], [O, I], [R, O]], {
      transA: false,
      transB: true,
      out: "f32",
      ...accumulateParts(p.acc),
    });
    addRows(out, b);
  },
  gpu(info, p) {
    const [R, I] = lastAxisRows(info.inputs[0].shape), O = info.inputs[1].shape[0];
    const mp = { transA: false, transB: true };
    const g = matmulGeometry([R, I], [O, I], mp, "linearF16");
    return { kernels: [matmulKernel(g, mp, { bias: true, half: halfF32(p.acc, "f32") })] };
  },
  backward(c, [dyAny]) {
    const dy = dyAny as Tensor;
    const [x, w, b] = c.inputs as Tensor[];
    const acc = c.params.acc;
    let dx: Tensor | null = null;
    if (x.requiresGrad) {
      // dx = dy·W rounded to f16 values, plus the gradient pending for x (its other uses)
      const pending = c.takeGrad?.(0) as Tensor | null | undefined;
      if (pending) {
        dx = apply(MATMUL_F16_ADD, [dy, w, pending], {
          transA: false,
          transB: false,
          out: "f32",
          round: true,
          ...accumulateParts(acc),
        })[0];
        pending.dispose();
      } else dx = matmulF16(dy, w, { round: true, ...accumulateParts(acc) });
    }
    let dw: Tensor | null = null, db: Tensor | null = null;
    if (w.requiresGrad && b.requiresGrad) {
      // straight into the optimizer's flat gradient buffer where it offers it
      [dw, db] = applyInto(LINEAR_GRAD_F16, [dy, x], { acc }, [c.gradSink?.(1), c.gradSink?.(2)]);
    } else if (w.requiresGrad) {
      const [R, O] = lastAxisRows(dy.shape), I = x.shape[x.shape.length - 1];
      dw = matmulF16(reshape(dy, [R, O]), reshape(x, [R, I]), {
        transA: true,
        round: true,
        ...accumulateParts(acc),
      });
    } else if (b.requiresGrad) db = sumTo(dy, b.shape);
    return [dx, dw, db];
  },
};

/**
 * `round(f16(a)·f16(b)) + c`: an f32-operand gradient of the f16 matmul
 * (rounded to f16 values, as `matmulF16(…, { round: true })`) added in f32
 * to the gradient pending for the same input (`c`, f32, shaped like the
 * product) — autograd's accumulation inside the product's kernel, as
 * ops/matmul.ts `matmulAccumulate` does for f32. A backward op.
 */
export const MATMUL_F16_ADD: OpDef<MatmulF16Params> = {
  name: "matmulF16Accumulate",
  overwrites: true,
  outputs([a, b, c], p) {
    requireF32("matmulF16Accumulate", [a, b, c], ["a", "b", "addend"]);
    if (p.out !== "f32" || !p.round) {
      throw new TypeError(`Cannot matmulF16Accumulate: the result is f32 rounded to f16 values`);
    }
    const g = geometry(a.shape, b.shape, p);
    if (c.shape.length !== g.shape.length || c.shape.some((d, k) => d !== g.shape[k])) {
      throw new TypeError(
        `Cannot matmulF16Accumulate: addend ${fmtShape(c.shape)} must be ${fmtShape(g.shape)}`,
      );
    }
    return [{ shape: g.shape, dtype: "f32" }];
  },
  cpu([a, b, c], [out], info, p) {
    MATMUL_F16.cpu([a, b], [out], { inputs: info.inputs.slice(0, 2), outputs: info.outputs }, p);
    for (let i = 0; i < out.length; i++) out[i] += c[i];
  },
  gpu(info, p) {
    const g = geometry(info.inputs[0].shape, info.inputs[1].shape, p);
    const mp = { transA: p.transA, transB: p.transB };
    return matmulPlan(g, mp, { add: true, half: halfF32(p.acc ?? "f32", "round", p.group) });
  },
};

/**
 * The weight and bias gradients of the f16 Linear layer in one kernel:
 * inputs `[dy [..., O], x [..., I]]` (f32, the same rows), outputs
 * `[dW = round(f16(dy)ᵀ·f16(x)) [O, I], db = Σ_rows dy [O]]`: `dW` is
 * the f16 product of `matmulF16(dy, x, { transA: true, round: true })`,
 * `db` sums the f32 `dy` (unrounded, as the bias's f32 add passes it back),
 * float64 in row order on the CPU (as `sumTo`), f32 in row order on the GPU:
 * the workgroups of the first column block add up the rows of `dy` they have
 * just fetched (ops/_matmul_wgsl.ts `rowSum`).
 */
export const LINEAR_GRAD_F16: OpDef<LinearF16Params> = {
  name: "linearGradF16",
  overwrites: true,
  outputs([dy, x], p) {
    checkAccumulate(p.acc, "Cannot linearGradF16");
    requireF32("linearGradF16", [dy, x], ["dy", "x"]);
    const [R, O] = lastAxisRows(dy.shape), [Rx, I] = lastAxisRows(x.shape);
    if (dy.shape.length < 1 || x.shape.length < 1 || R !== Rx) {
      throw new TypeError(
        `Cannot linearGradF16: dy ${fmtShape(dy.shape)} and x ${
          fmtShape(x.shape)
        } need the same rows`,
      );
    }
    return [{ shape: [O, I], dtype: "f32" }, { shape: [O], dtype: "f32" }];
  },
  cpu([dy, x], [dw, db], info, p) {
    const [R, O] = lastAxisRows(info.inputs[0].shape), [, I] = lastAxisRows(info.inputs[1].shape);
    productF16Cpu(dy, x, dw, [[R, O], [R, I], [O, I]], {
      transA: true,
      transB: false,
      out: "f32",
      round: true,
      ...accumulateParts(p.acc),
    });
    sumRows(dy, R, O, db);
  },
  gpu(info, p) {
    const [R, O] = lastAxisRows(info.inputs[0].shape), [, I] = lastAxisRows(info.inputs[1].shape);
    const mp = { transA: true, transB: false };
    const g = matmulGeometry([R, O], [R, I], mp, "linearGradF16");
    return matmulPlan(g, mp, { rowSum: true, half: halfF32(p.acc, "round") });
  },
};

/** Options of {@linkcode linearF16}. */
export interface LinearF16Options {
  /** Accumulation (default "f32"; see `MatmulF16Params.acc`). */
  acc?: MatmulF16Accumulate;
  /** Workgroup staging of f32 accumulation (see `MatmulF16Params.stage`). */
  stage?: "f32" | "f16";
}

/**
 * `f16(x)·f16(W)ᵀ + b` in one kernel, f32 in and out: what a Linear layer
 * with a bias computes under `autocast("f16", …)` (nn/layers.ts).
 */
export function linearF16(
  x: Tensor,
  w: Tensor,
  b: Tensor,
  opts: LinearF16Options = {},
): Tensor {
  return apply(LINEAR_F16, [x, w, b], { acc: opts.acc ?? "f32" })[0];
}
