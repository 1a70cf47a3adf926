import assert from "node:assert/strict";
import { fmtCompact, ProgressBar } from "./progress.ts";

Deno.test("ProgressBar shows an unknown ETA as ? before the first item, then a time", () => {
  const bar = new ProgressBar({ label: "epoch 1/2", total: 10, quiet: true, tty: false });
  assert.match(bar.render(), /^epoch 1\/2 {3}0%\|\s+\| 0\/10 \[00:00<\?\]$/);
  bar.update(5);
  bar.setPostfix({ loss: 2.3456, lr: 3e-4 });
  assert.match(
    bar.render(),
    /^epoch 1\/2 {2}50%\|█{10} {10}\| 5\/10 \[00:00<00:00, loss=2\.35, lr=3\.0e-4\]$/,
  );
});

Deno.test("fmtCompact() formats like tqdm's postfix", () => {
  assert.equal(fmtCompact(1234), "1.2k");
  assert.equal(fmtCompact(2.5e6), "2.5M");
  assert.equal(fmtCompact(0.001), "1.0e-3");
  assert.equal(fmtCompact(123.4), "123");
  assert.equal(fmtCompact(0.5), "0.500");
});
