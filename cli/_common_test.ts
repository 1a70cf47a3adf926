import assert from "node:assert/strict";
import { GpuOutOfMemoryError } from "../gpu/errors.ts";
import {
  EXIT_FAILURE,
  EXIT_USAGE,
  numberFlag,
  parseFlags,
  reportError,
  UsageError,
} from "./_common.ts";

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
  assert.deepEqual(usage.lines, [
    "webseq train: usage: --epochs must be an integer (webseq train --help lists the options)",
  ]);
});

Deno.test("parseFlags: a negative number or a dash-led text after a string option is its value", () => {
  const spec = { lr: { type: "string" }, quiet: { type: "boolean" } } as const;
  const { flags } = parseFlags(["--lr", "-3", "--quiet"], spec);
  assert.equal(flags.lr, "-3");
  assert.equal(parseFlags(["--lr", "-.5"], spec).flags.lr, "-.5");
  assert.throws(() => numberFlag(flags, "lr", { min: 0 }), /--lr must be at least 0, got -3/);
  // an input text (generate --text "-abc", "- 5") is a value; the number check then speaks
  assert.equal(parseFlags(["--lr", "-x"], spec).flags.lr, "-x");
  assert.equal(parseFlags(["--lr", "- 5"], spec).flags.lr, "- 5");
  // "--word" and "-h" are still flags (the value was forgotten); after "--" nothing is joined
  assert.throws(() => parseFlags(["--lr", "--quiet"], spec), UsageError);
  assert.throws(() => parseFlags(["--lr", "-h"], spec), UsageError);
  assert.throws(() => parseFlags(["--quiet", "-3"], spec), UsageError);
  assert.deepEqual(parseFlags(["--", "--lr", "-3"], spec, { positionals: true }).positionals, [
    "--lr",
    "-3",
  ]);
});

Deno.test("numberFlag: decimal notation only; an integer may be written 1e5", () => {
  const int = (v: string) => numberFlag({ n: v }, "n", { integer: true });
  const num = (v: string) => numberFlag({ n: v }, "n");
  assert.equal(int("16"), 16);
  assert.equal(int("+3"), 3);
  assert.equal(int("1e5"), 100000);
  assert.equal(int("2.0"), 2);
  for (const bad of ["0x10", "1e-2", "2.5", "", " 4", "0b1", "9007199254740993"]) {
    assert.throws(() => int(bad), /--n must be an integer/, bad);
  }
  assert.equal(num("1e-3"), 0.001);
  assert.equal(num(".5"), 0.5);
  assert.equal(num("2."), 2);
  for (const bad of ["0x10", "abc", "Infinity", "NaN", "1e", " 1"]) {
    assert.throws(() => num(bad), /--n must be a number/, bad);
  }
});
