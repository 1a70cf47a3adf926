import assert from "node:assert/strict";
import "./mod.ts";
import { tensor } from "../tensor/tensor.ts";
import { CPU } from "../tensor/cpu_backend.ts";
import { GPU } from "../tests/_gpu.ts";
import { argmax, logSoftmax } from "../train/generate.ts";
import { greedyPick } from "./greedy_pick.ts";

const ROWS = [
  [1, 3, 3, 0, 2], // a tie: the first
  [0, 0, 0, 0, 0], // picks 0 = eos: done
  [-1, 5, 2, 5, 0], // done already: pad
  [NaN, 1, 2, 3, 4], // NaN first: 0, as the host's argmax
  [-Infinity, -Infinity, -Infinity, -Infinity, -Infinity], // nothing: 0, log-probability −log V
  [2, NaN, 7, 1, 7], // NaN elsewhere is skipped
];
const DONE = [0, 0, 1, 0, 0, 0];

Deno.test("greedyPick() picks as the host's argmax and logSoftmax, on the CPU and the GPU", async () => {
  for (const be of GPU ? [CPU, GPU] : [CPU]) {
    const [ids, picks, done] = greedyPick(
      tensor(ROWS.flat(), [ROWS.length, 5], { backend: be }),
      tensor(DONE, [DONE.length], { backend: be }),
      { eosId: 0, padId: 4 },
    );
    const [i, p, d] = [await ids.toArray(), await picks.toArray(), await done.toArray()];
    assert.deepEqual(i, [1, 0, 4, 0, 0, 2], be.kind);
    assert.deepEqual(d, [0, 1, 1, 1, 1, 0], be.kind);
    ROWS.forEach((row, r) => {
      assert.equal(p[2 * r], i[r]);
      if (DONE[r]) return assert.equal(p[2 * r + 1], 0);
      assert.equal(argmax(row), i[r]);
      const want = logSoftmax(Float32Array.from(row))[i[r]];
      const got = p[2 * r + 1];
      if (Number.isNaN(want)) assert.ok(Number.isNaN(got), `${be.kind} row ${r}: ${got}`);
      else assert.ok(Math.abs(got - want) < 1e-5, `${be.kind} row ${r}: ${got} vs ${want}`);
    });
  }
});

Deno.test("greedyPick() rejects logits that are not [N, V] and mismatched done flags", () => {
  assert.throws(
    () => greedyPick(tensor([1, 2, 3], [3]), tensor([0, 0, 0], [3]), { eosId: 0, padId: 0 }),
    /Cannot greedyPick: logits \[3\] f32 must be float \[N, V\]/,
  );
  assert.throws(
    () => greedyPick(tensor([1, 2, 3, 4], [2, 2]), tensor([0], [1]), { eosId: 0, padId: 0 }),
    /done \[1\] f32 float \[N\]/,
  );
});
