import assert from "node:assert/strict";
import { dropLaterLines, resumedOption, samePairs, TrainOptionError } from "./resume.ts";

Deno.test("resumedOption(): the recorded value unless another is given; without a record, the given or the fallback", () => {
  const o = (given: unknown, saved: unknown) =>
    resumedOption("runs/a", { flag: "--lr", given, saved, fallback: 1 });
  assert.equal(o(undefined, 0.5), 0.5);
  assert.equal(o(0.5, 0.5), 0.5);
  assert.equal(o(2, undefined), 2);
  assert.equal(o(undefined, undefined), 1);
  assert.throws(
    () => o(2, 0.5),
    new TrainOptionError(
      "runs/a was trained with --lr 0.5, not --lr 2: leave --lr out to resume it as it was",
    ),
  );
  assert.throws(
    () => resumedOption("r", { flag: "--valid", given: "v.tsv", saved: null, fallback: null }),
    /was trained with no --valid, not --valid v\.tsv/,
  );
});

Deno.test("samePairs(): the recorded file, or one with as many pairs; another is refused", () => {
  samePairs("r", "--data", "/x/a.tsv", 10, "/x/a.tsv", 10);
  samePairs("r", "--data", "/y/moved.tsv", 10, "/x/a.tsv", 10);
  samePairs("r", "--data", "/y/b.tsv", 3, undefined, undefined); // nothing recorded
  assert.throws(
    () => samePairs("r", "--data", "/y/b.tsv", 3, "/x/a.tsv", 10),
    new TrainOptionError(
      "/y/b.tsv holds 3 pairs, but r was trained on the 10 of /x/a.tsv: leave --data out to resume it as it was",
    ),
  );
});

Deno.test("dropLaterLines(): drops the rejected records atomically, keeps lines it cannot judge, leaves a clean file alone", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const f = `${dir}/metrics.jsonl`;
    await Deno.writeTextFile(f, '{"step":6}\n{"step":12}\nnot json\n{"note":1}\n{"step":18}\n');
    await dropLaterLines(f, (r) => !(Number(r.step) > 12));
    assert.equal(await Deno.readTextFile(f), '{"step":6}\n{"step":12}\nnot json\n{"note":1}\n');
    const before = (await Deno.stat(f)).mtime;
    await dropLaterLines(f, () => true);
    assert.deepEqual((await Deno.stat(f)).mtime, before);
    await dropLaterLines(`${dir}/none.jsonl`, () => false); // no file: nothing to do
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
