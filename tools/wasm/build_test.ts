/**
 * The WebAssembly modules embedded in ops/_wasm_matmul.ts are what
 * tools/wasm/build.ts assembles from tools/wasm/matmul.wat today.
 *
 * @module
 */
import assert from "node:assert/strict";
import { render, TARGET, unfuse } from "./build.ts";

Deno.test("ops/_wasm_matmul.ts embeds a fresh assembly of tools/wasm/matmul.wat", async () => {
  const ts = await Deno.readTextFile(TARGET);
  assert.ok(ts === await render(ts), "stale: run deno run -A tools/wasm/build.ts");
});

Deno.test("unfuse() rewrites relaxed_madd to a multiply and an add, and rejects other forms", () => {
  assert.equal(
    unfuse("(local.set $c (f32x4.relaxed_madd (local.get $a) (local.get $b) (local.get $c)))"),
    "(local.set $c (f32x4.add (f32x4.mul (local.get $a) (local.get $b)) (local.get $c)))",
  );
  assert.throws(
    () => unfuse("(f32x4.relaxed_madd (local.get $a) (f32x4.splat (local.get $x)) (local.get $c))"),
    SyntaxError,
  );
});
