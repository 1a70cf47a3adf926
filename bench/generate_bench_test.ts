import assert from "node:assert/strict";
import { benchGenerate } from "./generate_bench.ts";
import { CPU } from "../tensor/cpu_backend.ts";
import { GPU, NO_GPU } from "../tests/_gpu.ts";

const SMALL = { preset: "tiny", vocabSize: 50, rows: 2, tokens: 9, srcLen: 4, repeats: 1 };

Deno.test("benchGenerate() times greedy decoding on the CPU (host choice only)", async () => {
  const l = await benchGenerate({ ...SMALL, backend: CPU });
  assert.equal(l.kind, "generate");
  assert.equal(l.strategy, "greedy");
  assert.match(l.device, /^cpu: /);
  assert.ok(l.host_ms > 0 && l.tokens_per_s > 0);
  assert.equal(l.device_ms, undefined);
});

Deno.test({
  name:
    "benchGenerate() on WebGPU decodes the same ids choosing on the device, greedy and sampling",
  ignore: NO_GPU,
  fn: async () => {
    for (const strategy of ["greedy", "sample"] as const) {
      const l = await benchGenerate({ ...SMALL, backend: GPU!, strategy });
      assert.equal(l.strategy, strategy);
      assert.equal(l.same_ids, true, strategy);
      assert.ok(l.device_ms! > 0 && l.speedup! > 0);
    }
  },
});
