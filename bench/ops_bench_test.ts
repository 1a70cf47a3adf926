/** The ops benchmark yields well-formed lines naming the device (tiny CPU run). */
import assert from "node:assert/strict";
import { runOpsBench } from "./ops_bench.ts";
import { CPU } from "../tensor/cpu_backend.ts";

Deno.test("runOpsBench() yields matmul, dispatch and attention lines naming the device", async () => {
  const lines = [];
  for await (
    const l of runOpsBench({ backend: CPU, sizes: [48, 4096], tokens: 2, minTimeMs: 5 })
  ) lines.push(l);
  for (const l of lines) {
    assert.equal(l.device, CPU.description);
    assert.equal(l.backend, "cpu");
  }
  const square = lines.filter((l) => l.kind === "matmul" && l.label === "square");
  assert.equal(square.length, 2);
  assert.ok((square[0].gflops as number) > 0 && square[0].m === 48);
  assert.match(String(square[1].skipped), /software backend/);
  const model = lines.filter((l) => l.kind === "matmul" && String(l.label).startsWith("small."));
  assert.equal(model.length, 6);
  assert.ok(model.every((l) => (l.gflops as number) > 0 && l.m !== undefined));
  const dispatch = lines.find((l) => l.kind === "dispatch");
  assert.ok((dispatch!.us_per_dispatch as number) > 0);
  const attention = lines.filter((l) => l.kind === "attention");
  assert.ok(attention.length >= 1);
  for (const l of attention) assert.ok(l.ms !== undefined || l.skipped !== undefined);
});
