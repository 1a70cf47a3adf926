/**
 * Run folders cross between webseq and the PyTorch twin both ways
 * (fixtures: tools/make_webseq_run.ts, tools/make_interop_fixtures.py):
 * a folder the twin wrote loads in webseq with the twin's logits, and a
 * folder webseq wrote gave the twin the logits webseq computes from it.
 */
import assert from "node:assert/strict";
import { loadRun } from "../train/load_model.ts";
import { readSafetensors } from "../train/safetensors.ts";
import { scopeAsync, tensor } from "../tensor/tensor.ts";
import { CPU } from "../tensor/cpu_backend.ts";
import type { Backend } from "../tensor/types.ts";
import { GPU, NO_GPU } from "./_gpu.ts";

const DIR = new URL("./testdata/interop/", import.meta.url).pathname;

async function check(run: string, backend: Backend): Promise<void> {
  const fx = await readSafetensors(`${DIR}${run}_expected.safetensors`);
  const { model } = await loadRun(`${DIR}${run}`, { backend, requireTokenizer: false });
  const get = (n: string, dtype: "i32" | "f32") =>
    tensor(
      dtype === "i32"
        ? Int32Array.from(fx.tensors[n].data as Int32Array)
        : Float32Array.from(fx.tensors[n].data as Int32Array),
      fx.tensors[n].shape,
      { dtype, backend },
    );
  await scopeAsync(async () => {
    const logits = model.forward(
      get("input.src_ids", "i32"),
      get("input.src_mask", "f32"),
      get("input.tgt_ids", "i32"),
      get("input.tgt_mask", "f32"),
    );
    const got = await logits.data();
    const want = fx.tensors["output.logits"].data as Float32Array;
    assert.equal(got.length, want.length);
    let scale = 0, worst = 0;
    for (let i = 0; i < want.length; i++) {
      scale = Math.max(scale, Math.abs(want[i]));
      worst = Math.max(worst, Math.abs(got[i] - want[i]));
    }
    assert.ok(worst <= 1e-4 * scale, `${run}: max diff ${worst} (scale ${scale})`);
  });
  model.dispose();
}

for (const run of ["torch_run", "webseq_run"]) {
  Deno.test(`a run folder ${run === "torch_run" ? "the PyTorch twin wrote loads in webseq" : "webseq wrote loads in the PyTorch twin"} with equal logits (CPU)`, async () => {
    await check(run, CPU);
  });
  Deno.test({
    name: `${run}: equal logits on WebGPU`,
    ignore: NO_GPU,
    fn: () => check(run, GPU!),
  });
}
