import assert from "node:assert/strict";
import { recordedReading } from "./eval.ts";
import { saveTrainerState } from "../train/run_folder.ts";

Deno.test("recordedReading(): a run's recorded length, columns, header and format (best/ from the run beside it)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    assert.deepEqual(await recordedReading(dir), {});
    await saveTrainerState(dir, {
      step: 3,
      epoch: 1,
      options: { max_length: 24, source_col: "de", target_col: 1, header: true, format: "tsv" },
    });
    const want = { max_length: 24, source_col: "de", target_col: 1, header: true, format: "tsv" };
    assert.deepEqual(await recordedReading(dir), want);
    await Deno.mkdir(`${dir}/best`);
    assert.deepEqual(await recordedReading(`${dir}/best/`), want);
    await saveTrainerState(dir, { step: 3, epoch: 1, options: { max_length: 2.5, format: "xml" } });
    assert.deepEqual(await recordedReading(dir), {});
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
