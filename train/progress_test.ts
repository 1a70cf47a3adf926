import assert from "node:assert/strict";
import { fitLine, fmtCompact, ProgressBar } from "./progress.ts";

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

Deno.test("ProgressBar on a terminal fits its line to the width (a wrapped line would not redraw)", () => {
  const out: string[] = [];
  const bar = new ProgressBar({
    label: "epoch 1/10",
    total: 100,
    tty: true,
    columns: 40,
    write: (s) => out.push(s),
  });
  bar.setPostfix({ loss: 2.3456, acc: 0.5, lr: 3e-4, "tok/s": 12345 });
  bar.close();
  const line = out.at(-1)!.replace("\r\x1b[2K", "").replace("\n", "");
  assert.equal([...line].length, 39);
  assert.ok(line.startsWith("epoch 1/10   0%|") && line.endsWith("…"), line);
  assert.equal(fitLine("short", 40), "short");
  assert.equal(fitLine("x".repeat(50), undefined), "x".repeat(50));
});
