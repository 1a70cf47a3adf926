/**
 * Ops that declare `overwrites` (their CPU function writes every element of
 * every output) get reused memory unzeroed from the CPU backend's pool. For
 * each such op and each of its registry cases, the f32 CPU function must give
 * the same bits into outputs full of NaN as into zeroed ones.
 *
 * @module
 */
import assert from "node:assert/strict";
import { ALL_OPS } from "../ops/mod.ts";
import { allocArray, type CpuArray, type OpInfo } from "../tensor/types.ts";
import { caseInputs } from "./_random.ts";

const flagged = ALL_OPS.filter((e) => e.op.overwrites);

Deno.test("some ops declare that they overwrite their outputs", () => {
  assert.ok(flagged.length >= 7, flagged.map((e) => e.op.name).join(", "));
});

for (const { op, cases } of flagged) {
  Deno.test(`${op.name}: writes every output element (NaN-filled outputs give the zeroed result)`, () => {
    cases.forEach((c, i) => {
      const host = caseInputs(c, 500 + i);
      const ins: CpuArray[] = host.map((a, k) =>
        c.inputs[k].dtype === "i32" ? a as Int32Array : Float32Array.from(a)
      );
      const inputs = c.inputs.map((s) => ({ shape: s.shape, dtype: s.dtype ?? "f32" as const }));
      const outputs = op.outputs(inputs, c.params);
      const info: OpInfo = { inputs, outputs };
      const run = (fill: number) => {
        const outs = outputs.map((o) => {
          const a = allocArray(o.dtype, o.shape.reduce((x, y) => x * y, 1));
          a.fill(fill);
          return a;
        });
        op.cpu(ins.map((a) => a.slice()), outs, info, c.params);
        return outs;
      };
      const zeroed = run(0), dirty = run(NaN);
      zeroed.forEach((z, k) => {
        const at = z.findIndex((v, j) => !Object.is(v, dirty[k][j]));
        assert.ok(
          at < 0,
          `case ${i} (${c.label ?? ""}) output ${k}: element ${at} was not written`,
        );
      });
    });
  });
}
