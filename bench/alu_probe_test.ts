import assert from "node:assert/strict";
import { sharedGpuBackend } from "../gpu/backend.ts";
import { ALU_PROBES, aluProbeReference, aluProbeWgsl, runAluProbe } from "./alu_probe.ts";

const GPU = await sharedGpuBackend();

Deno.test("aluProbeWgsl() writes independent chains of the probe's form, m and a from storage", () => {
  const fma = aluProbeWgsl(ALU_PROBES.find((p) => p.name === "f16_fma_v2")!);
  assert.match(fma, /^enable f16;/);
  assert.equal(fma.match(/x\d = fma\(x\d, m, a\);/g)?.length, 8);
  assert.match(fma, /let m = vec2<f16>\(pv\.m\.xy\);/);
  const splat = aluProbeWgsl(ALU_PROBES.find((p) => p.name === "f32_splat_v4")!);
  assert.doesNotMatch(splat, /enable f16/);
  assert.match(splat, /let ms = vec4<f32>\(m\.x\);/);
  assert.equal(splat.match(/x\d = fma\(x\d, ms, a\);/g)?.length, 8);
  const muladd = aluProbeWgsl(ALU_PROBES.find((p) => p.name === "f16_muladd_v4")!);
  assert.equal(muladd.match(/x\d = x\d \* m \+ a;/g)?.length, 8);
  const cvt = aluProbeWgsl(ALU_PROBES.find((p) => p.name === "f16_cvt_v4")!);
  assert.match(cvt, /h0 = vec4<f16>\(f0\); f0 = fma\(vec4<f32>\(h0\), m32, a32\);/);
  assert.throws(
    () => aluProbeWgsl({ name: "x", type: "f32", width: 4, form: "cvt" }),
    /the cvt probe is f16 vec4/,
  );
});

Deno.test("aluProbeReference() follows x ← x/2 + 1 from r/4 in each chain", () => {
  // chain r after one step: r/8 + 1; summed over r = 0..7: 28/8 + 8
  const p = ALU_PROBES.find((p) => p.name === "f32_fma_s")!;
  assert.deepEqual(aluProbeReference(p, 1), [11.5, 0, 0, 0]);
  assert.deepEqual(aluProbeReference(ALU_PROBES[0], 0), [7, 7, 7, 7]);
  // flush: c sums the chain's values before each step
  const flush = ALU_PROBES.find((p) => p.form === "flush")!;
  assert.deepEqual(aluProbeReference(flush, 1), [7 + 11.5, 7 + 11.5, 7 + 11.5, 7 + 11.5]);
});

Deno.test({
  name: "runAluProbe() f32 probes compute their CPU references on the adapter and are timed",
  ignore: GPU === null,
  fn: async () => {
    for (const p of ALU_PROBES.filter((p) => p.type === "f32")) {
      const r = await runAluProbe(GPU!, p, { iters: 4, workgroups: 1, repeats: 1 });
      assert.deepEqual(r.out, aluProbeReference(p, 4), p.name);
      assert.ok(r.ms >= 0 && Number.isFinite(r.gops), JSON.stringify(r));
      assert.equal(r.gflops, 2 * r.gops);
    }
    await assert.rejects(
      () => runAluProbe(GPU!, ALU_PROBES[0], { workgroups: 1e6 }),
      /workgroups exceed the adapter's/,
    );
  },
});
