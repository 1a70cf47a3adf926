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

Deno.test("train() says when a CSV/TSV has no header row; --header skips one named otherwise", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const rows = ["one\tbir", "two\tiki", "three\tüç", "four\tdört", "one two\tbir iki"];
    const data = `${dir}/d.tsv`, valid = `${dir}/v.tsv`, config = `${dir}/c.json`;
    await Deno.writeTextFile(data, ["input\toutput", ...rows].join("\n") + "\n");
    await Deno.writeTextFile(valid, rows.slice(0, 2).join("\n") + "\n");
    await Deno.writeTextFile(
      config,
      JSON.stringify({
        d_model: 8,
        n_heads: 2,
        d_ff: 16,
        n_encoder_layers: 1,
        n_decoder_layers: 1,
      }),
    );
    const run = async (out: string, header?: boolean, file = data) => {
      const logs: string[] = [];
      await train({
        ...BASE,
        out: `${dir}/${out}`,
        data: file,
        valid,
        configFile: config,
        vocabSize: 60,
        epochs: 1,
        bleuLimit: 0,
        sampleInterval: 0,
        header,
        log: (l) => logs.push(l),
      });
      return logs;
    };
    const plain = await run("a");
    assert.ok(
      plain.includes(
        `${data}: no header row (the first row, "input" → "output", is a pair; --header skips a header, --source-col/--target-col name columns)`,
      ),
      plain.join("\n"),
    );
    assert.ok(plain.some((l) => l.startsWith("data: 6 train / 2 valid pairs")), plain.join("\n"));
    const skipped = await run("b", true);
    assert.ok(
      skipped.some((l) => l.startsWith("data: 5 train / 1 valid pairs")),
      skipped.join("\n"),
    );
    assert.ok(!skipped.some((l) => l.includes("no header row")));
    // JSONL has no header to speak of
    await Deno.writeTextFile(
      data.replace(".tsv", ".jsonl"),
      rows.map((r) => JSON.stringify({ source: r.split("\t")[0], target: r.split("\t")[1] }))
        .join("\n"),
    );
    const logs = await run("c", undefined, data.replace(".tsv", ".jsonl"));
    assert.ok(!logs.some((l) => l.includes("no header row")), logs.join("\n"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
