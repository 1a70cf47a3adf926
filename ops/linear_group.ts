/**
 * Several Linear layers over one input as one op: `y_g = x·W_gᵀ + b_g` for
 * g < n, all `W_g` `[O, I]` — the Q, K and V projections of a self-attention
 * (n = 3) or the K and V projections of a cross-attention (n = 2)
 * (nn/attention.ts). Each output is a tensor of its own (attention reads
 * them as before); what changes is the number of kernels and their size:
 *
 * - forward: one grouped matmul (ops/_matmul_wgsl.ts `group`, role "b":
 *   batch g reads `W_g` and `b_g` and writes `y_g`, each its own binding)
 *   instead of n, with n times the workgroups;
 * - backward: every `dW_g` with its `db_g` from one grouped weight-gradient
 *   kernel ({@linkcode LINEAR_GRAD_GROUP}, role "a", split K like the
 *   ungrouped `linearGrad`) instead of n, and `dx = Σ_g dy_g·W_g` with the
 *   gradient pending for `x` from one more ({@linkcode LINEAR_GROUP_DX},
 *   role "k": K runs over every pair in turn) instead of a chain of n
 *   accumulating products (under f16 autocast the chain stays: each product
 *   is rounded to f16 values on its own).
 *
 * The CPU references run the ungrouped CPU kernels group by group, so on
 * the CPU the numbers are those of n `matmulBias` calls bit for bit. The
 * parameters' gradients are written into AdamW's flat buffer where it offers
 * it (`BackwardContext.gradSink`).
 *
 * @example
 * ```ts
 * import { linearGroup, tensor } from "@webseq/webseq";
 * const x = tensor([1, 2], [1, 2]);
 * const [y0, y1] = linearGroup(x, [tensor([1, 0], [1, 2]), tensor([0, 1], [1, 2])], [
 *   tensor([0.5], [1]),
 *   tensor([-1], [1]),
 * ]);
 * console.log(await y0.toArray(), await y1.toArray()); // [1.5] [1]
 * ```
 *
 * @module
 */
import { apply, applyInto, type Tensor } from "../tensor/tensor.ts";
import {
  type Backend,
  type CpuArray,
  fmtShape,
  type OpDef,
  type OpInfo,
  type TensorInfo,
} from "../tensor/types.ts";
import {
  LINEAR_GRAD,
  MATMUL,
  MATMUL_ADD,
  matmulCpu,
  matmulGeometry,
  matmulKernel,
  matmulPlan,
} from "./matmul.ts";
import { lastAxisRows } from "./softmax.ts";
import {
  accumulateParts,
  checkAccumulate,
  halfF32,
  LINEAR_GRAD_F16,
  MATMUL_F16,
  MATMUL_F16_ADD,
  type MatmulF16Accumulate,
  productF16Cpu,
} from "./matmul_f16.ts";
import { addRows } from "./matmul.ts";
import { sumTo } from "./reduce.ts";
import { reshape } from "./reshape.ts";
import type { OpEntry } from "./registry.ts";

/** Parameters of {@linkcode LINEAR_GROUP} and {@linkcode LINEAR_GRAD_GROUP}. */
export interface LinearGroupParams {
  /** Number of layers (2 or more). */
  n: number;
  /**
   * f16 autocast (nn/layers.ts): the products of ops/matmul_f16.ts `linearF16` —
   * operands rounded to f16 as they load, accumulated per this mode, the weight
   * gradients rounded to f16 values, `dx` rounded per product, the bias gradients
   * summed from the unrounded f32 `dy`. Absent: f32.
   */
  half?: MatmulF16Accumulate;
}

/** `count` inputs: `per` per group and one shared. */
function checkN(p: LinearGroupParams, count: number, per: number, what: string): void {
  if (p.half !== undefined) checkAccumulate(p.half, `${what}: half`);
  if (!Number.isInteger(p.n) || p.n < 2 || count !== p.n * per + 1) {
    throw new TypeError(`${what}: n must be an integer ≥ 2 matching ${count} inputs`);
  }
}

/** `[R, I]`, `O` of the forward's inputs, checked. */
function forwardDims(ins: readonly TensorInfo[], p: LinearGroupParams): [number, number, number] {
  checkN(p, ins.length, 2, "linearGroup");
  const x = ins[0], w = ins[1];
  const I = x.shape[x.shape.length - 1];
  for (let g = 0; g < p.n; g++) {
    const wg = ins[1 + g], bg = ins[1 + p.n + g];
    if (
      wg.shape.length !== 2 || wg.shape[0] !== w.shape[0] || wg.shape[1] !== I ||
      bg.shape.length !== 1 || bg.shape[0] !== w.shape[0]
    ) {
      throw new TypeError(
        `Cannot linearGroup: x ${fmtShape(x.shape)}, weight ${g} ${
          fmtShape(wg.shape)
        } and bias ${g} ${fmtShape(bg.shape)} (need [O, ${I}] and [O] alike for every layer)`,
      );
    }
  }
  for (const t of ins) {
    if (t.dtype === "i32" || t.dtype === "f16") {
      throw new TypeError(`Cannot linearGroup ${t.dtype} tensors`);
    }
  }
  const [R] = lastAxisRows(x.shape);
  return [R, I, w.shape[0]];
}

/** 2-D infos for one group's CPU product. */
function info2(as: number[], bs: number[], dtype: TensorInfo["dtype"]): OpInfo {
  return { inputs: [{ shape: as, dtype }, { shape: bs, dtype }], outputs: [] };
}

/** The grouped forward: inputs `[x, W_0 … W_{n−1}, b_0 … b_{n−1}]`, outputs `y_0 … y_{n−1}`. */
export const LINEAR_GROUP: OpDef<LinearGroupParams> = {
  name: "linearGroup",
  overwrites: true,
  outputs(ins, p) {
    const [, , O] = forwardDims(ins, p);
    const x = ins[0];
    return Array.from({ length: p.n }, () => ({
      shape: [...x.shape.slice(0, -1), O],
      dtype: x.dtype,
    }));
  },
  cpu(ins, outs, info, p) {
    const [R, I, O] = forwardDims(info.inputs, p);
    const mp = { transA: false, transB: true };
    for (let g = 0; g < p.n; g++) {
      if (p.half) {
        // linearF16's reference: the f16 product, then the bias in f32
        productF16Cpu(ins[0], ins[1 + g], outs[g], [[R, I], [O, I], [R, O]], {
          ...mp,
          out: "f32",
          ...accumulateParts(p.half),
        });
        addRows(outs[g], ins[1 + p.n + g]);
        continue;
      }
      const i2 = info2([R, I], [O, I], info.inputs[0].dtype);
      matmulCpu(ins[0], ins[1 + g], outs[g], i2, mp, { bias: ins[1 + p.n + g] });
    }
  },
  gpu(info, p) {
    const [R, I, O] = forwardDims(info.inputs, p);
    const mp = { transA: false, transB: true };
    const g = { ...matmulGeometry([R, I], [O, I], mp, "linearGroup"), P: p.n };
    const half = p.half ? halfF32(p.half, "f32") : undefined;
    return {
      kernels: [matmulKernel(g, mp, { bias: true, group: { n: p.n, role: "b" }, half })],
    };
  },
  backward(c, dys) {
    const ins = c.inputs as Tensor[];
    const n = c.params.n;
    const x = ins[0], ws = ins.slice(1, 1 + n), bs = ins.slice(1 + n);
    const dy = dys as (Tensor | null)[];
    const grads: (Tensor | null)[] = ins.map(() => null);
    if (x.requiresGrad && !c.params.half && dy.every((d) => d !== null)) {
      // dx = Σ_g dy_g·W_g (+ the gradient pending for x) in one kernel
      const pending = (c.takeGrad?.(0) ?? null) as Tensor | null;
      const dxIns = [...(dy as Tensor[]), ...ws, ...(pending ? [pending] : [])];
      grads[0] = apply(LINEAR_GROUP_DX, dxIns, { n, add: pending !== null })[0];
      pending?.dispose();
    } else if (x.requiresGrad) {
      // dx = Σ_g dy_g·W_g, the last group first (the order the ungrouped rules ran in), the
      // gradient pending for x added by the first product
      let acc = (c.takeGrad?.(0) ?? null) as Tensor | null;
      const half = c.params.half;
      for (let g = n - 1; g >= 0; g--) {
        if (!dy[g]) continue;
        const p = { transA: false, transB: false };
        // f16: each product rounded to f16 values (linearF16's dx), the sum in f32
        const hp = { ...p, out: "f32" as const, round: true, ...accumulateParts(half ?? "f32") };
        const next = half
          ? (acc
            ? apply(MATMUL_F16_ADD, [dy[g]!, ws[g], acc], hp)[0]
            : apply(MATMUL_F16, [dy[g]!, ws[g]], hp)[0])
          : acc
          ? apply(MATMUL_ADD, [dy[g]!, ws[g], acc], p)[0]
          : apply(MATMUL, [dy[g]!, ws[g]], p)[0];
        acc?.dispose();
        acc = next;
      }
      grads[0] = acc;
    }
    const all = dy.every((d) => d !== null) && [...ws, ...bs].every((t) => t.requiresGrad);
    if (all) {
      // every dW_g and db_g from one kernel, into the optimizer's flat buffer where it offers it
      const into = Array.from({ length: 2 * n }, (_, i) => c.gradSink?.(1 + i));
      const gp: LinearGroupParams = c.params.half ? { n, half: c.params.half } : { n };
      const out = applyInto(LINEAR_GRAD_GROUP, [...(dy as Tensor[]), x], gp, into);
      out.forEach((t, i) => (grads[1 + i] = t));
      return grads;
    }
    for (let g = 0; g < n; g++) {
      if (!dy[g]) continue;
      if (ws[g].requiresGrad && bs[g].requiresGrad) {
        const [dW, db] = c.params.half
          ? apply(LINEAR_GRAD_F16, [dy[g]!, x], { acc: c.params.half })
          : apply(LINEAR_GRAD, [dy[g]!, x], {});
        grads[1 + g] = dW;
        grads[1 + n + g] = db;
        continue;
      }
      if (ws[g].requiresGrad) {
        const [R, O] = lastAxisRows(dy[g]!.shape), I = x.shape[x.shape.length - 1];
        const [a2, b2] = [reshape(dy[g]!, [R, O]), reshape(x, [R, I])];
        const tp = { transA: true, transB: false };
        grads[1 + g] = c.params.half
          ? apply(MATMUL_F16, [a2, b2], {
            ...tp,
            out: "f32",
            round: true,
            ...accumulateParts(c.params.half),
          })[0]
          : apply(MATMUL, [a2, b2], tp)[0];
      }
      if (bs[g].requiresGrad) grads[1 + n + g] = sumTo(dy[g]!, bs[g].shape);
    }
    return grads;
  },
};

/** Parameters of {@linkcode LINEAR_GROUP_DX}. */
export interface LinearGroupDxParams {
  /** Number of layers (2 or more). */
  n: number;
  /** A last input, the gradient already pending for x, is added. */
  add: boolean;
}

/**
 * The input gradient of n Linear layers over one input: inputs `[dy_0 …
 * dy_{n−1} [..., O], W_0 … W_{n−1} [O, I], pending?]`, output `dx = Σ_g
 * dy_g·W_g (+ pending)` `[..., I]`. The CPU reference is the chain the
 * ungrouped layers' rules ran (the last group first, each product added in
 * f32 to the sum so far: their numbers bit for bit); the GPU runs one
 * grouped kernel (ops/_matmul_wgsl.ts `group`, role "k": the K loop over
 * each pair in turn into one accumulator, the pending gradient added in the
 * epilogue), so its sums round differently, within f32 rounding.
 */
export const LINEAR_GROUP_DX: OpDef<LinearGroupDxParams> = {
  name: "linearGroupDx",
  overwrites: true,
  outputs(ins, p) {
    const count = 2 * p.n + (p.add ? 1 : 0);
    if (!Number.isInteger(p.n) || p.n < 2 || ins.length !== count) {
      throw new TypeError(`linearGroupDx: n must be an integer ≥ 2 matching ${ins.length} inputs`);
    }
    const dy = ins[0], w = ins[p.n];
    const [R, O] = lastAxisRows(dy.shape), I = w.shape[1];
    for (let g = 0; g < p.n; g++) {
      const [Rg, Og] = lastAxisRows(ins[g].shape), wg = ins[p.n + g];
      if (Rg !== R || Og !== O || wg.shape.length !== 2 || wg.shape[0] !== O || wg.shape[1] !== I) {
        throw new TypeError(
          `Cannot linearGroupDx: dy ${fmtShape(ins[g].shape)} and weight ${fmtShape(wg.shape)}`,
        );
      }
    }
    const shape = [...dy.shape.slice(0, -1), I];
    if (p.add && fmtShape(ins[count - 1].shape) !== fmtShape(shape)) {
      throw new TypeError(
        `Cannot linearGroupDx: pending ${fmtShape(ins[count - 1].shape)} must be ${
          fmtShape(shape)
        }`,
      );
    }
    return [{ shape, dtype: dy.dtype }];
  },
  cpu(ins, [out], info, p) {
    const [R, O] = lastAxisRows(info.inputs[0].shape), I = info.inputs[p.n].shape[1];
    const dtype = info.inputs[0].dtype;
    const tmp = new (out.constructor as new (n: number) => CpuArray)(out.length);
    let have = false;
    if (p.add) {
      out.set(ins[2 * p.n]);
      have = true;
    }
    for (let g = p.n - 1; g >= 0; g--) {
      const mp = { transA: false, transB: false };
      matmulCpu(ins[g], ins[p.n + g], have ? tmp : out, info2([R, O], [O, I], dtype), mp);
      if (have) { for (let i = 0; i < out.length; i++) out[i] += tmp[i]; }
      have = true;
    }
  },
  gpu(info, p) {
    const [R, O] = lastAxisRows(info.inputs[0].shape), I = info.inputs[p.n].shape[1];
    const mp = { transA: false, transB: false };
    const g = matmulGeometry([R, O], [O, I], mp, "linearGroupDx");
    return matmulPlan(g, mp, { group: { n: p.n, role: "k" }, add: p.add });
  },
};

/**
 * The grouped weight and bias gradients: inputs `[dy_0 … dy_{n−1}, x]` (the
 * same rows), outputs `[dW_0 … dW_{n−1}, db_0 … db_{n−1}]` with `dW_g =
 * dy_gᵀ·x` `[O, I]` and `db_g = Σ_rows dy_g` `[O]` — `linearGrad` (ops/matmul.ts)
 * per group, in one kernel (and its split-K reduction).
 */
export const LINEAR_GRAD_GROUP: OpDef<LinearGroupParams> = {
  name: "linearGradGroup",
  overwrites: true,
  outputs(ins, p) {
    checkN(p, ins.length, 1, "linearGradGroup");
    const x = ins[p.n];
    const [R, I] = lastAxisRows(x.shape);
    const [, O] = lastAxisRows(ins[0].shape);
    for (const d of ins.slice(0, p.n)) {
      const [Rd, Od] = lastAxisRows(d.shape);
      if (Rd !== R || Od !== O || d.dtype !== x.dtype) {
        throw new TypeError(
          `Cannot linearGradGroup: dy ${fmtShape(d.shape)} and x ${
            fmtShape(x.shape)
          } need the same rows`,
        );
      }
    }
    const dW = { shape: [O, I], dtype: x.dtype }, db = { shape: [O], dtype: x.dtype };
    return [...Array(p.n).fill(dW), ...Array(p.n).fill(db)];
  },
  cpu(ins, outs, info, p) {
    for (let g = 0; g < p.n; g++) {
      const one: OpInfo = { inputs: [info.inputs[g], info.inputs[p.n]], outputs: [] };
      const io: [CpuArray[], CpuArray[]] = [[ins[g], ins[p.n]], [outs[g], outs[p.n + g]]];
      if (p.half) LINEAR_GRAD_F16.cpu(...io, one, { acc: p.half });
      else LINEAR_GRAD.cpu(...io, one, {});
    }
  },
  gpu(info, p) {
    const [R, O] = lastAxisRows(info.inputs[0].shape);
    const [, I] = lastAxisRows(info.inputs[p.n].shape);
    const mp = { transA: true, transB: false };
    const g = { ...matmulGeometry([R, O], [R, I], mp, "linearGradGroup"), P: p.n };
    const half = p.half ? halfF32(p.half, "round") : undefined;
    return matmulPlan(g, mp, { rowSum: true, group: { n: p.n, role: "a" }, half });
  },
};

/**
 * Whether `backend` runs a group of `n` layers: the grouped kernels bind up
 * to `3n + 1` storage buffers (the forward: x, then a weight, a bias and an
 * output per layer), more than WebGPU's default of 8 from n = 3; an adapter
 * whose `maxStorageBuffersPerShaderStage` is lower runs the layers one by
 * one. The CPU always can.
 */
export function linearGroupFits(backend: Backend, n: number): boolean {
  if (backend.kind !== "webgpu") return true;
  const limits = (backend as { device?: { limits?: { maxStorageBuffersPerShaderStage?: number } } })
    .device?.limits;
  return (limits?.maxStorageBuffersPerShaderStage ?? 8) >= 3 * n + 1;
}

/**
 * `x·W_gᵀ + b_g` for every g, as one op (see the module doc); `ws` and `bs`
 * of the same length (2 or more).
 */
export function linearGroup(
  x: Tensor,
  ws: Tensor[],
  bs: Tensor[],
  opts: LinearGroupOptions = {},
): Tensor[] {
  if (ws.length !== bs.length) {
    throw new TypeError(`linearGroup: ${ws.length} weights but ${bs.length} biases`);
  }
  const p: LinearGroupParams = { n: ws.length };
  if (opts.half) p.half = opts.half;
  return apply(LINEAR_GROUP, [x, ...ws, ...bs], p);
}

/** Options of {@linkcode linearGroup}. */
export interface LinearGroupOptions {
  /** f16 autocast's products with this accumulation (see `LinearGroupParams.half`). */
  half?: MatmulF16Accumulate | null;
}

/** Registry cases (tests/ops_registry_test.ts): GPU parity and finite differences. */
export const LINEAR_GROUP_ENTRIES: OpEntry[] = [{
  op: LINEAR_GROUP,
  cases: [
    {
      label: "qkv",
      inputs: [
        { shape: [2, 3, 5] },
        ...Array(3).fill({ shape: [4, 5] }),
        ...Array(3).fill({ shape: [4] }),
      ],
      params: { n: 3 },
      gradOutputs: [0, 1, 2],
    },
    {
      label: "kv, tile remainders",
      inputs: [
        { shape: [37, 20] },
        ...Array(2).fill({ shape: [36, 20] }),
        ...Array(2).fill({ shape: [36] }),
      ],
      params: { n: 2 },
      gradOutputs: [0, 1],
    },
    {
      label: "size 1",
      inputs: [
        { shape: [1, 1] },
        ...Array(2).fill({ shape: [1, 1] }),
        ...Array(2).fill({ shape: [1] }),
      ],
      params: { n: 2 },
      gradOutputs: [0, 1],
    },
  ],
}, {
  op: LINEAR_GROUP_DX,
  cases: [
    {
      inputs: [...Array(3).fill({ shape: [2, 3, 4] }), ...Array(3).fill({ shape: [4, 5] })],
      params: { n: 3, add: false },
      noGradCheck: true,
    },
    {
      inputs: [
        ...Array(2).fill({ shape: [37, 36] }),
        ...Array(2).fill({ shape: [36, 20] }),
        { shape: [37, 20] },
      ],
      params: { n: 2, add: true },
      noGradCheck: true,
    },
  ],
}, {
  op: LINEAR_GRAD_GROUP,
  cases: [
    {
      inputs: [...Array(3).fill({ shape: [2, 3, 4] }), { shape: [2, 3, 5] }],
      params: { n: 3 },
      noGradCheck: true,
    },
    {
      inputs: [...Array(2).fill({ shape: [130, 37] }), { shape: [130, 24] }],
      params: { n: 2 },
      noGradCheck: true,
    },
  ],
}];
