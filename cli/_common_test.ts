import assert from "node:assert/strict";
import { GpuOutOfMemoryError } from "../gpu/errors.ts";
import { EXIT_FAILURE, EXIT_USAGE, reportError, UsageError } from "./_common.ts";

/** What reportError prints (stderr lines) and returns. */
function report(command: string, err: unknown): { code: number; lines: string[] } {
  const lines: string[] = [];
  const original = console.error;
  console.error = (...args: unknown[]) => lines.push(args.join(" "));
  try {
    return { code: reportError(command, err), lines };
  } finally {
    console.error = original;
  }
}

Deno.test("reportError: one line, exit 1 (2 for usage errors); GPU out of memory in train or bench names what frees memory", () => {
  const oom = new GpuOutOfMemoryError("GPU out of memory: createBuffer of 2147483648 bytes\nmore");
  const train = report("train", oom);
  assert.equal(train.code, EXIT_FAILURE);
  assert.deepEqual(train.lines, [
    "webseq train: error: GPU out of memory: createBuffer of 2147483648 bytes (try a smaller --batch-size with --grad-accum, or --activations recomputed)",
  ]);
  assert.match(
    report("bench", oom).lines[0],
    /\(try a smaller --batch-size, or --activations recomputed\)$/,
  );
  assert.doesNotMatch(report("generate", oom).lines[0], /try/);
  const usage = report("train", new UsageError("--epochs must be an integer"));
  assert.equal(usage.code, EXIT_USAGE);
  assert.equal(usage.lines[0], "webseq train: usage: --epochs must be an integer");
});
