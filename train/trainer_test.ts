import assert from "node:assert/strict";
import { checkTrainOptions, train, type TrainOptions } from "./trainer.ts";
import { CPU } from "../tensor/cpu_backend.ts";

const BASE: TrainOptions = { out: "runs/x", backend: CPU };

Deno.test("checkTrainOptions(): each numeric option's range, named in a one-line error", () => {
  checkTrainOptions({ ...BASE, epochs: 3, gradAccum: 2, lr: 1e-3, labelSmoothing: 1, dropout: 0 });
  const cases: [Partial<TrainOptions>, string][] = [
    [{ gradAccum: 0 }, "train: gradAccum must be an integer ≥ 1, got 0"],
    [{ gradAccum: 1.5 }, "train: gradAccum must be an integer ≥ 1, got 1.5"],
    [{ epochs: -1 }, "train: epochs must be an integer ≥ 1, got -1"],
    [{ maxSteps: 2.5 }, "train: maxSteps must be an integer ≥ 1, got 2.5"],
    [{ maxGradNorm: -1 }, "train: maxGradNorm must be a number ≥ 0, got -1"],
    [{ logEvery: 0 }, "train: logEvery must be an integer ≥ 1, got 0"],
    [{ bleuLimit: -1 }, "train: bleuLimit must be an integer ≥ 0, got -1"],
    [{ patience: -1 }, "train: patience must be an integer ≥ 0, got -1"],
    [{ labelSmoothing: 2 }, "train: labelSmoothing must be a number in [0, 1], got 2"],
    [{ dropout: 1 }, "train: dropout must be a number in [0, 1), got 1"],
    [{ lr: NaN }, "train: lr must be a number ≥ 0, got NaN"],
    [{ seed: 2 ** 32 }, "train: seed must be an integer in [0, 4294967295], got 4294967296"],
    [{ batchSize: "8" as unknown as number }, 'train: batchSize must be an integer ≥ 1, got "8"'],
  ];
  for (const [extra, message] of cases) {
    assert.throws(() => checkTrainOptions({ ...BASE, ...extra }), new RangeError(message));
  }
});

Deno.test("train() refuses bad options before writing anything, and an empty --valid file up front", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await assert.rejects(
      () => train({ ...BASE, out: `${dir}/r`, labelSmoothing: 2 }),
      /labelSmoothing must be/,
    );
    await assert.rejects(() => Deno.stat(`${dir}/r`), Deno.errors.NotFound);
    const data = `${dir}/train.tsv`, valid = `${dir}/valid.tsv`;
    await Deno.writeTextFile(data, "source\ttarget\na b\tc d\ne f\tg h\n");
    await Deno.writeTextFile(valid, "source\ttarget\n");
    await assert.rejects(
      () => train({ ...BASE, out: `${dir}/r`, data, valid, quiet: true }),
      new RangeError(`${valid}: no usable pairs`),
    );
    await assert.rejects(() => Deno.stat(`${dir}/r`), Deno.errors.NotFound);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
