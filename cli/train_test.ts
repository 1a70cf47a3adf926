import assert from "node:assert/strict";
import { interruptHandler } from "./train.ts";

Deno.test("interruptHandler(): the first signal aborts (a checkpoint follows), a second exits 130 at once", () => {
  const controller = new AbortController();
  const exits: number[] = [];
  const lines: string[] = [];
  const original = console.error;
  console.error = (...a: unknown[]) => lines.push(a.join(" "));
  try {
    const onSignal = interruptHandler(controller, (code) => exits.push(code));
    onSignal();
    assert.ok(controller.signal.aborted);
    assert.deepEqual(exits, []);
    onSignal();
    assert.deepEqual(exits, [130]);
  } finally {
    console.error = original;
  }
  assert.deepEqual(lines, [
    "webseq train: interrupted: stopping after this step with a checkpoint (again: exit at once)",
    "webseq train: interrupted again: exiting without a new checkpoint",
  ]);
});
