/**
 * The registry-driven op test: for every op in ALL_OPS and each of its cases,
 * (1) the WGSL kernels on the WebGPU adapter equal the CPU reference, and
 * (2) the backward rule equals central finite differences in float64 on the CPU.
 */
import assert from "node:assert/strict";
import { ALL_OPS } from "../ops/mod.ts";
import type { OpCase, OpEntry } from "../ops/registry.ts";
import { CPU } from "../tensor/cpu_backend.ts";
import { apply, type Tensor, tensor } from "../tensor/tensor.ts";
import {
  allocArray,
  type CpuArray,
  type OpInfo,
  sizeOf,
  type TensorInfo,
} from "../tensor/types.ts";
import { GPU, NO_GPU } from "./_gpu.ts";
import { caseInputs, makeRng } from "./_random.ts";
import { assertNearReference } from "./_compare.ts";

function caseName(e: OpEntry, c: OpCase, k: number): string {
  return `${e.op.name}[${k}] ${c.label ?? c.inputs.map((i) => `[${i.shape}]`).join(" ")} ${
    JSON.stringify(c.params).slice(0, 60)
  }`;
}

function runCpu(e: OpEntry, c: OpCase, ins: CpuArray[], dtype: "f32" | "f64"): CpuArray[] {
  const infos: TensorInfo[] = c.inputs.map((s) => ({
    shape: s.shape,
    dtype: s.dtype === "i32" ? "i32" : dtype,
  }));
  const outInfo = e.op.outputs(infos, c.params).map((o) => o.dtype === "f32" ? { ...o, dtype } : o);
  const info: OpInfo = { inputs: infos, outputs: outInfo };
  const outs = outInfo.map((o) => allocArray(o.dtype, sizeOf(o.shape)));
  const typed = ins.map((a, k) =>
    infos[k].dtype === "i32" ? a : dtype === "f64" ? Float64Array.from(a) : Float32Array.from(a)
  );
  e.op.cpu(typed, outs, info, c.params);
  return outs;
}

for (const entry of ALL_OPS) {
  entry.cases.forEach((c, k) => {
    const name = caseName(entry, c, k);
    if (entry.op.gpu && !(entry.op.mutates?.length)) {
      Deno.test({
        name: `${name}: WebGPU equals the CPU reference`,
        ignore: NO_GPU,
        fn: async () => {
          const ins = caseInputs(c, 1 + k);
          const ref = runCpu(entry, c, ins, "f32");
          const ts = ins.map((a, j) =>
            tensor(a, c.inputs[j].shape, {
              dtype: c.inputs[j].dtype === "i32" ? "i32" : "f32",
              backend: GPU!,
            })
          );
          const outs = apply(entry.op, ts, c.params);
          for (let o = 0; o < outs.length; o++) {
            const got = await outs[o].data();
            assertNearReference(got, ref[o], c.tol ?? 1e-4, `${entry.op.name} GPU out${o}`);
          }
          for (const t of [...ts, ...outs]) t.dispose();
        },
      });
    }
    if (entry.op.backward && !c.noGradCheck) {
      Deno.test(`${name}: backward equals finite differences (f64)`, async () => {
        const ins = caseInputs(c, 100 + k);
        const gradOuts = c.gradOutputs ?? [0];
        const base = runCpu(entry, c, ins, "f64");
        const rng = makeRng(7 + k);
        const weights = base.map((o) => Float64Array.from(o, () => rng() * 2 - 1));
        const loss = (xs: CpuArray[]): number => {
          const outs = runCpu(entry, c, xs, "f64");
          let s = 0;
          for (const o of gradOuts) {
            for (let i = 0; i < outs[o].length; i++) s += outs[o][i] * weights[o][i];
          }
          return s;
        };
        const ts: Tensor[] = ins.map((a, j) => {
          const isInt = c.inputs[j].dtype === "i32";
          return tensor(isInt ? a : Float64Array.from(a), c.inputs[j].shape, {
            dtype: isInt ? "i32" : "f64",
            backend: CPU,
            requiresGrad: !isInt && !c.inputs[j].noGrad,
          });
        });
        const outs = apply(entry.op, ts, c.params);
        // backprop w through the chosen outputs, one at a time (grads accumulate)
        for (const o of gradOuts) {
          if (!outs[o].requiresGrad) continue;
          const w = tensor(weights[o], outs[o].shape, { dtype: "f64", backend: CPU });
          outs[o].backward(w);
        }
        const h = 1e-6;
        for (let j = 0; j < ts.length; j++) {
          if (!ts[j].requiresGrad) continue;
          const analytic = ts[j].grad ? await ts[j].grad!.data() : new Float64Array(ins[j].length);
          const x = ins[j];
          const picks = x.length <= 40
            ? [...x.keys()]
            : Array.from({ length: 40 }, () => Math.floor(rng() * x.length));
          for (const i of picks) {
            const xp = ins.map((a) => a.slice());
            const xm = ins.map((a) => a.slice());
            xp[j][i] += h;
            xm[j][i] -= h;
            const numeric = (loss(xp) - loss(xm)) / (2 * h);
            const a = analytic[i];
            assert.ok(
              Math.abs(a - numeric) <= 1e-5 + 1e-4 * Math.abs(numeric),
              `${entry.op.name} d/dinput${j}[${i}]: analytic ${a} vs numeric ${numeric}`,
            );
          }
        }
      });
    }
  });
}

Deno.test("ALL_OPS names are unique", () => {
  const names = ALL_OPS.map((e) => e.op.name);
  assert.equal(new Set(names).size, names.length);
});
