/**
 * A pre-LN block's residual update and the LayerNorm of its result, in one
 * op: `out = x + DropPath(gamma · dropout(branch))` (ops/residual.ts, the
 * same masks and products) and `y = LayerNorm(out)` (ops/layer_norm.ts).
 * The block keeps `out` as its running stream and feeds `y` to the next
 * sublayer.
 *
 * The CPU reference runs the two ops' CPU functions, so it gives their
 * numbers bit for bit. On the GPU one kernel per row computes `out`, writes
 * it, and normalises the row from registers: one dispatch instead of two, and
 * `out` is never read back. The backward is the unfused pair's: the
 * LayerNorm gradient with `out`'s own gradient added (the residual stream's),
 * then the residual's backward of that sum — on the GPU one pass over the
 * rows ({@linkcode RESIDUAL_LAYER_NORM_GRAD}) instead of four dispatches.
 *
 * @example
 * ```ts
 * import { full, ones, residualLayerNorm, zeros } from "@webseq/webseq";
 * const x = ones([2, 4]), branch = full([2, 4], 2);
 * const [out, y] = residualLayerNorm(x, branch, { weight: ones([4]), bias: zeros([4]), eps: 1e-5 });
 * console.log(await out.toArray(), await y.toArray()); // all 3, all 0
 * ```
 *
 * @module
 */
import { apply, applyInto, type Tensor } from "../tensor/tensor.ts";
import { dropoutScale, dropoutThreshold } from "./dropout.ts";
import { type OpDef, packUniform, type TensorInfo } from "../tensor/types.ts";
import {
  LAYER_NORM,
  LAYER_NORM_GRAD,
  layerNormForwardGrid,
  layerNormForwardWgsl,
  layerNormGradPlan,
} from "./layer_norm.ts";
import {
  RESIDUAL,
  RESIDUAL_BACKWARD,
  residualMaskWgsl,
  type ResidualOptions,
  type ResidualParams,
  residualParamsOf,
  residualVariant,
} from "./residual.ts";
import { lastAxisRows } from "./softmax.ts";
import type { OpCase, OpEntry } from "./registry.ts";

/** Parameters of {@linkcode RESIDUAL_LAYER_NORM}: the residual's and LayerNorm's epsilon. */
export interface ResidualLayerNormParams extends ResidualParams {
  /** LayerNorm epsilon. */
  eps: number;
}

/** Options of {@linkcode residualLayerNorm}: the residual's and the LayerNorm's parameters. */
export interface ResidualLayerNormOptions extends ResidualOptions {
  /** LayerNorm weight `[C]`. */
  weight: Tensor;
  /** LayerNorm bias `[C]`. */
  bias: Tensor;
  /** LayerNorm epsilon. */
  eps: number;
}

/** The residual's own parameters (without eps). */
function residualParams(p: ResidualLayerNormParams): ResidualParams {
  const { hasGamma, dropoutP, dropoutSeed, dropPathP, dropPathSeed } = p;
  return { hasGamma, dropoutP, dropoutSeed, dropPathP, dropPathSeed };
}

/** Inputs of the residual part: `[x, branch]` or `[x, branch, gamma]`. */
function residualInputs(p: ResidualParams): number {
  return p.hasGamma ? 3 : 2;
}

/**
 * Inputs `[x, branch, gamma?, weight, bias]` (x and branch `[B, ..., C]` of
 * one shape, gamma, weight and bias `[C]`), outputs `[out [B, ..., C],
 * y [B, ..., C], mean [B, ...], rstd [B, ...]]`.
 */
export const RESIDUAL_LAYER_NORM: OpDef<ResidualLayerNormParams> = {
  name: "residualLayerNorm",
  overwrites: true,
  outputs(inputs, p) {
    const nr = residualInputs(p);
    if (inputs.length !== nr + 2) {
      throw new TypeError(`residualLayerNorm: expected ${nr + 2} inputs, got ${inputs.length}`);
    }
    const [out] = RESIDUAL.outputs(inputs.slice(0, nr), residualParams(p));
    return [out, ...LAYER_NORM.outputs([out, inputs[nr], inputs[nr + 1]], { eps: p.eps })];
  },
  cpu(ins, [out, y, mean, rstd], info, p) {
    const nr = residualInputs(p);
    const o: TensorInfo = info.outputs[0];
    RESIDUAL.cpu(ins.slice(0, nr), [out], {
      inputs: info.inputs.slice(0, nr),
      outputs: [o],
    }, residualParams(p));
    LAYER_NORM.cpu([out, ins[nr], ins[nr + 1]], [y, mean, rstd], {
      inputs: [o, info.inputs[nr], info.inputs[nr + 1]],
      outputs: info.outputs.slice(1),
    }, { eps: p.eps });
  },
  gpu(info, p) {
    const nr = residualInputs(p);
    const [R, C] = lastAxisRows(info.inputs[0].shape);
    const B = info.inputs[0].shape[0] ?? 1;
    const v = residualVariant(p);
    const inputs = ["x", "branch", ...(v.gamma ? ["gamma"] : [])].map((name, i) =>
      `@group(0) @binding(${i}) var<storage, read> ${name}: array<f32>;`
    );
    const key = `residual${+v.gamma}${+v.drop}${+v.path}`;
    const code = layerNormForwardWgsl(C, {
      key,
      inputs: inputs.join("\n"),
      first: nr,
      outputs: ["out"],
      uniform: `struct U { R: u32, C: u32, per: u32, dseed: u32, dthr: u32, pseed: u32,
  pthr: u32, eps: f32, dscale: f32, pscale: f32 }`,
      helpers: residualMaskWgsl(v),
      // the residual's products in its order (dropout, gamma, DropPath), then the sum
      read: `let i = o + j;
    var bv = branch[i];
    ${v.drop ? "bv = bv * kd(i);" : ""}
    ${v.gamma ? "bv = bv * gamma[j];" : ""}
    ${v.path ? "bv = bv * kp(i);" : ""}
    let v = x[i] + bv;
    out[i] = v;`,
    });
    return {
      kernels: [{
        code,
        bind: [
          ...Array.from({ length: nr + 2 }, (_, i) => ({ in: i })),
          { out: 1 },
          { out: 2 },
          { out: 3 },
          { out: 0 },
        ],
        uniform: packUniform(
          [
            R,
            C,
            B > 0 ? (R * C) / B : 0,
            p.dropoutSeed >>> 0,
            dropoutThreshold(p.dropoutP),
            p.dropPathSeed >>> 0,
            dropoutThreshold(p.dropPathP),
          ],
          [p.eps, dropoutScale(p.dropoutP), dropoutScale(p.dropPathP)],
        ),
        workgroups: layerNormForwardGrid(R, C),
      }],
    };
  },
  backward(ctx, [dOut, dY]) {
    const p = ctx.params;
    const nr = residualInputs(p);
    const ins = ctx.inputs as Tensor[];
    const [branch, gamma] = [ins[1], p.hasGamma ? ins[2] : null];
    const [w] = [ins[nr]];
    let [out, , mean, rstd] = ctx.outputs as Tensor[];
    const made: Tensor[] = [];
    if (out.disposed || mean.disposed || rstd.disposed) {
      // the saved outputs were freed (e.g. by a scope): recompute them (same seeds, same values)
      const again = apply(RESIDUAL_LAYER_NORM, ins, p);
      [out, , mean, rstd] = again;
      made.push(...again);
    }
    const wantBranch = branch.requiresGrad || (gamma !== null && gamma.requiresGrad);
    if (!dY) {
      // only the stream's gradient: the residual's backward of it
      for (const t of made) t.dispose();
      if (!dOut) return ins.map(() => null);
      const d = dOut as Tensor;
      const into = [null, gamma ? ctx.gradSink?.(2) : null];
      const grads = wantBranch
        ? applyInto(RESIDUAL_BACKWARD, gamma ? [d, branch, gamma] : [d], residualParams(p), into)
        : [null, null];
      return [d.detach(), grads[0], ...(gamma ? [grads[1]] : []), null, null];
    }
    // the stream's gradient (out's own plus the LayerNorm's) and the residual's backward of it
    const gIns = [out, w, mean, rstd, dY as Tensor];
    if (dOut) gIns.push(dOut as Tensor);
    if (gamma) gIns.push(branch, gamma);
    // the parameters' gradients straight into the optimizer's flat buffer where it offers it
    const sink = (i: number) => ctx.gradSink?.(i);
    const into = [null, null, sink(nr), sink(nr + 1), ...(gamma && wantBranch ? [sink(2)] : [])];
    const grads = applyInto(RESIDUAL_LAYER_NORM_GRAD, gIns, { ...p, hasAcc: dOut !== null }, into);
    for (const t of made) t.dispose();
    const [dTotal, dbranch, dw, db, dgamma] = grads;
    if (!wantBranch) {
      dbranch.dispose();
      dgamma?.dispose();
    }
    return [
      dTotal,
      wantBranch ? dbranch : null,
      ...(gamma ? [wantBranch ? dgamma : null] : []),
      dw,
      db,
    ];
  },
};

/** Parameters of {@linkcode RESIDUAL_LAYER_NORM_GRAD}. */
export interface ResidualLayerNormGradParams extends ResidualLayerNormParams {
  /** Whether the stream's own gradient (`dOut`) is an input, added to the LayerNorm's. */
  hasAcc: boolean;
}

/**
 * The fused backward: inputs `[out, weight, mean, rstd, dY, dOut?, branch?,
 * gamma?]` (branch and gamma with LayerScale), outputs `[dTotal, dbranch,
 * dweight, dbias, dgamma?]` — LAYER_NORM_GRAD's dx (plus dOut) as `dTotal`,
 * then RESIDUAL_BACKWARD of it, in one pass over the rows on the GPU: each
 * element's dx is turned into its branch gradient where it is computed, and
 * the γ gradient's column sums join dweight's and dbias's (two dispatches
 * instead of four).
 */
export const RESIDUAL_LAYER_NORM_GRAD: OpDef<ResidualLayerNormGradParams> = {
  name: "residualLayerNormGrad",
  overwrites: true,
  outputs(inputs, p) {
    const n = 5 + (p.hasAcc ? 1 : 0) + (p.hasGamma ? 2 : 0);
    if (inputs.length !== n) {
      throw new TypeError(`residualLayerNormGrad: expected ${n} inputs, got ${inputs.length}`);
    }
    const ln = LAYER_NORM_GRAD.outputs(inputs.slice(0, p.hasAcc ? 6 : 5), { eps: p.eps });
    const res = RESIDUAL_BACKWARD.outputs(
      p.hasGamma ? [ln[0], ...inputs.slice(n - 2)] : [ln[0]],
      residualParams(p),
    );
    return [ln[0], res[0], ln[1], ln[2], ...res.slice(1)];
  },
  cpu(ins, [dTotal, dbranch, dw, db, dgamma], info, p) {
    const nl = p.hasAcc ? 6 : 5;
    const lnOut = info.outputs[0];
    LAYER_NORM_GRAD.cpu(ins.slice(0, nl), [dTotal, dw, db], {
      inputs: info.inputs.slice(0, nl),
      outputs: [lnOut, info.outputs[2], info.outputs[3]],
    }, { eps: p.eps });
    const rIns = p.hasGamma ? [dTotal, ins[nl], ins[nl + 1]] : [dTotal];
    const rInfo = p.hasGamma ? [lnOut, info.inputs[nl], info.inputs[nl + 1]] : [lnOut];
    RESIDUAL_BACKWARD.cpu(rIns, p.hasGamma ? [dbranch, dgamma] : [dbranch], {
      inputs: rInfo,
      outputs: p.hasGamma ? [info.outputs[1], info.outputs[4]] : [info.outputs[1]],
    }, residualParams(p));
  },
  gpu(info, p) {
    const [R, C] = lastAxisRows(info.inputs[0].shape);
    const B = info.inputs[0].shape[0] ?? 1;
    const v = residualVariant(p);
    // the residual backward of v (this element's dx): its products in RESIDUAL_BACKWARD's order
    const element = v.gamma
      ? `let dp = v * kp(i);
      let kdi = kd(i);
      es[t] += dp * (branch[i] * kdi);
      dbranch[i] = (dp * gamma[j]) * kdi;`
      : `var d = v;
      ${v.path ? "d = d * kp(i);" : ""}
      ${v.drop ? "d = d * kd(i);" : ""}
      dbranch[i] = d;`;
    return layerNormGradPlan(R, C, p.hasAcc, {
      key: `residual${+v.gamma}${+v.drop}${+v.path}`,
      inputs: v.gamma ? ["branch", "gamma"] : [],
      outputs: ["dbranch"],
      u32: [
        ["per", B > 0 ? (R * C) / B : 0],
        ["dseed", p.dropoutSeed >>> 0],
        ["dthr", dropoutThreshold(p.dropoutP)],
        ["pseed", p.dropPathSeed >>> 0],
        ["pthr", dropoutThreshold(p.dropPathP)],
      ],
      f32: [["dscale", dropoutScale(p.dropoutP)], ["pscale", dropoutScale(p.dropPathP)]],
      helpers: residualMaskWgsl(v),
      element,
      sum: v.gamma,
    });
  },
};

/**
 * `out = x + DropPath(gamma · dropout(branch))` and `y = LayerNorm(out)` in one
 * op (see the module doc); returns `[out, y]`.
 */
export function residualLayerNorm(
  x: Tensor,
  branch: Tensor,
  opts: ResidualLayerNormOptions,
): [Tensor, Tensor] {
  const params: ResidualLayerNormParams = { ...residualParamsOf(opts), eps: opts.eps };
  const ins = opts.gamma ? [x, branch, opts.gamma] : [x, branch];
  const [out, y, mean, rstd] = apply(RESIDUAL_LAYER_NORM, [...ins, opts.weight, opts.bias], params);
  if (!y.node) {
    // no tape: the saved statistics are not needed
    mean.dispose();
    rstd.dispose();
  }
  return [out, y];
}

// ---------------------------------------------------------------- registry cases

function caseOf(
  label: string,
  shape: number[],
  o: { gamma?: boolean; dropoutP?: number; dropPathP?: number } = {},
): OpCase {
  const C = shape[shape.length - 1];
  const inputs: OpCase["inputs"] = [{ shape }, { shape }];
  if (o.gamma) inputs.push({ shape: [C], min: -2, max: 2 });
  inputs.push({ shape: [C], min: 0.5, max: 1.5 }, { shape: [C] });
  return {
    label,
    inputs,
    params: {
      hasGamma: o.gamma ?? false,
      dropoutP: o.dropoutP ?? 0,
      dropoutSeed: 987654321,
      dropPathP: o.dropPathP ?? 0,
      dropPathSeed: 4242,
      eps: 1e-5,
    } satisfies ResidualLayerNormParams,
    gradOutputs: [0, 1],
  };
}

function gradCaseOf(
  label: string,
  shape: number[],
  o: { gamma?: boolean; dropoutP?: number; dropPathP?: number; acc?: boolean } = {},
): OpCase {
  const f = caseOf(label, shape, o);
  const C = shape[shape.length - 1], rows = shape.slice(0, -1);
  const inputs: OpCase["inputs"] = [
    { shape },
    { shape: [C], min: 0.5, max: 1.5 },
    { shape: rows, min: -0.1, max: 0.1 },
    { shape: rows, min: 0.5, max: 2 },
    { shape },
  ];
  if (o.acc) inputs.push({ shape, min: -3, max: 3 });
  if (o.gamma) inputs.push({ shape }, { shape: [C], min: -2, max: 2 });
  return {
    label,
    inputs,
    params: { ...(f.params as ResidualLayerNormParams), hasAcc: o.acc ?? false },
    noGradCheck: true,
  };
}

/** Registry entries of this file (see tests/ops_registry_test.ts). */
export const RESIDUAL_LAYER_NORM_ENTRIES: OpEntry[] = [{
  op: RESIDUAL_LAYER_NORM,
  cases: [
    caseOf("plain add", [2, 3, 5]),
    caseOf("gamma", [2, 3, 5], { gamma: true }),
    caseOf("all", [4, 3, 67], { gamma: true, dropoutP: 0.3, dropPathP: 0.5 }),
    caseOf("dropout only", [3, 7, 9], { dropoutP: 0.2 }),
    caseOf("size-1", [1, 1, 1], { gamma: true, dropoutP: 0.1, dropPathP: 0.1 }),
    caseOf("C = 600 (128 lanes, 5 columns per thread)", [2, 3, 600], {
      gamma: true,
      dropPathP: 0.3,
    }),
  ],
}, {
  op: RESIDUAL_LAYER_NORM_GRAD,
  cases: [
    gradCaseOf("plain add", [2, 3, 5]),
    gradCaseOf("plain add, stream gradient", [2, 3, 5], { acc: true }),
    gradCaseOf("gamma, stream gradient", [2, 3, 5], { gamma: true, acc: true }),
    gradCaseOf("all", [4, 3, 67], { gamma: true, dropoutP: 0.3, dropPathP: 0.5, acc: true }),
    gradCaseOf("dropout, drop path, no gamma", [3, 7, 9], { dropoutP: 0.2, dropPathP: 0.4 }),
    gradCaseOf("size-1", [1, 1, 1], { gamma: true, dropoutP: 0.1, dropPathP: 0.1, acc: true }),
    // more rows than one workgroup takes: partial sums of three columns, then their sum
    gradCaseOf("520 rows × 70", [8, 65, 70], {
      gamma: true,
      dropoutP: 0.1,
      dropPathP: 0.2,
      acc: true,
    }),
    gradCaseOf("C = 600, 40 rows", [4, 10, 600], { gamma: true, dropPathP: 0.3 }),
  ],
}];
