import assert from "node:assert/strict";
import { interruptHandler } from "./train.ts";

/** The handler's exits and lines for a sequence of events. */
function run(events: ("signal" | "write" | "written")[]): { exits: number[]; lines: string[] } {
  const controller = new AbortController();
  const exits: number[] = [];
  const lines: string[] = [];
  const original = console.error;
  console.error = (...a: unknown[]) => lines.push(a.join(" "));
  try {
    const h = interruptHandler(controller, (code) => exits.push(code));
    for (const e of events) {
      if (e === "signal") h.onSignal();
      else h.onCheckpointWrite(e === "write");
    }
    assert.equal(controller.signal.aborted, events.includes("signal"));
  } finally {
    console.error = original;
  }
  return { exits, lines: lines.map((l) => l.replace("webseq train: ", "")) };
}

Deno.test("interruptHandler(): the first signal aborts (a checkpoint follows), a second exits 130 at once", () => {
  assert.deepEqual(run(["signal"]), {
    exits: [],
    lines: ["interrupted: stopping after this step with a checkpoint (again: exit at once)"],
  });
  const twice = run(["signal", "signal"]);
  assert.deepEqual(twice.exits, [130]);
  assert.equal(twice.lines[1], "interrupted again: exiting without a new checkpoint");
});

Deno.test("interruptHandler(): a second signal while a checkpoint is written exits once it is whole", () => {
  const r = run(["signal", "write", "signal"]);
  assert.deepEqual(r.exits, []);
  assert.equal(r.lines[1], "interrupted again: exiting once the checkpoint is written");
  assert.deepEqual(run(["signal", "write", "signal", "written"]).exits, [130]);
  // a write that ends with no second signal: nothing
  assert.deepEqual(run(["signal", "write", "written"]).exits, []);
});
