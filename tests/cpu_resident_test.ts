/**
 * CPU tensors resident in the WebAssembly kernels' memory are read and written
 * there in place; every other array is copied in and out. For every registered
 * op case, running it on the CPU backend with every f32 and i32 tensor resident
 * (each in its own block) must give the same bits as with none, outputs and
 * inputs written in place (the optimizer updates) alike.
 *
 * @module
 */
import assert from "node:assert/strict";
import { ALL_OPS } from "../ops/mod.ts";
import { useResidentArrays } from "../ops/_wasm_matmul.ts";
import { CPU } from "../tensor/cpu_backend.ts";
import { apply, type Tensor, tensor } from "../tensor/tensor.ts";
import type { CpuArray } from "../tensor/types.ts";
import { caseInputs } from "./_random.ts";

/** The case's outputs and its inputs after the op (as host arrays), resident or not. */
async function run(
  resident: boolean,
  e: (typeof ALL_OPS)[number],
  k: number,
): Promise<{ outs: CpuArray[]; ins: CpuArray[]; where: boolean[] }> {
  const c = e.cases[k];
  const was = useResidentArrays(resident, 0);
  try {
    const ts: Tensor[] = caseInputs(c, 300 + k).map((a, j) =>
      tensor(a, c.inputs[j].shape, {
        dtype: c.inputs[j].dtype === "i32" ? "i32" : "f32",
        backend: CPU,
      })
    );
    const outputs = apply(e.op, ts, c.params);
    // empty tensors have no memory to place
    const where = ts.map((t) =>
      t.size === 0 ||
      (t.storage as unknown as { array: CpuArray }).array.buffer instanceof SharedArrayBuffer
    );
    const outs = await Promise.all(outputs.map((t) => t.data()));
    const ins = await Promise.all(ts.map((t) => t.data()));
    for (const t of [...ts, ...outputs]) t.dispose();
    return { outs, ins, where };
  } finally {
    useResidentArrays(was);
  }
}

for (const e of ALL_OPS) {
  Deno.test(`${e.op.name}: the same bits with every CPU tensor resident in the kernels' memory`, async () => {
    for (let k = 0; k < e.cases.length; k++) {
      const off = await run(false, e, k), on = await run(true, e, k);
      assert.ok(off.where.every((r, j) => !r || e.cases[k].inputs[j].shape.includes(0)));
      assert.ok(on.where.every((r) => r), `case ${k}: an input was not resident`);
      for (
        const [what, a, b] of [["output", on.outs, off.outs], ["input", on.ins, off.ins]] as const
      ) {
        a.forEach((got, o) => {
          const at = got.findIndex((v, i) => !Object.is(v, b[o][i]));
          assert.ok(at < 0, `case ${k} ${what} ${o}: ${got[at]} vs ${b[o][at]} at ${at}`);
        });
      }
    }
  });
}
