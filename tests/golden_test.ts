/**
 * Golden parity with the PyTorch twin (interop/torch/webseq_torch.py):
 * fixtures from tools/make_golden_fixtures.py hold weights, a padded batch,
 * the logits, the loss and every parameter's gradient, computed in float64.
 * webseq must reproduce the logits within 1e-4 of max |logit| on the CPU and
 * on the WebGPU adapter, and the gradients on the CPU (f32) and GPU.
 */
import assert from "node:assert/strict";
import { readSafetensors } from "../train/safetensors.ts";
import { validateConfig } from "../nn/config.ts";
import { initContext, type StateDict } from "../nn/module.ts";
import { Seq2Seq } from "../nn/seq2seq.ts";
import { scopeAsync, tensor } from "../tensor/tensor.ts";
import type { Backend } from "../tensor/types.ts";
import { CPU } from "../tensor/cpu_backend.ts";
import { reshape } from "../ops/mod.ts";
import { crossEntropy } from "../ops/cross_entropy.ts";
import { GPU, NO_GPU } from "./_gpu.ts";

const DIR = new URL("./testdata/golden/", import.meta.url);
const FILES = [...Deno.readDirSync(DIR)].map((e) => e.name).filter((n) =>
  n.endsWith(".safetensors")
).sort();

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

function assertClose(
  got: ArrayLike<number>,
  want: ArrayLike<number>,
  rel: number,
  what: string,
  floor = 0,
) {
  assert.equal(got.length, want.length, `${what}: length`);
  const tol = rel * Math.max(maxAbs(want), floor);
  let worst = 0, at = -1;
  for (let i = 0; i < got.length; i++) {
    const d = Math.abs(got[i] - want[i]);
    if (!(d <= worst)) (worst = d), (at = i);
  }
  assert.ok(
    worst <= tol,
    `${what}: max diff ${worst} at ${at} (got ${got[at]}, want ${want[at]}), tol ${tol}`,
  );
}

async function check(file: string, backend: Backend, withGrads: boolean) {
  const fx = await readSafetensors(new URL(file, DIR).pathname);
  const cfg = validateConfig(JSON.parse(fx.metadata.config), file);
  const model = new Seq2Seq(cfg, initContext(0, backend));
  const state: StateDict = {};
  for (const [name, t] of Object.entries(fx.tensors)) {
    if (
      name.includes(".") && !name.startsWith("input.") && !name.startsWith("output.") &&
      !name.startsWith("grad.")
    ) {
      state[name] = { shape: t.shape, data: Float32Array.from(t.data as Float32Array) };
    }
  }
  model.loadStateDict(state, { source: file });
  model.eval();
  const i32 = (n: string) =>
    tensor(Int32Array.from(fx.tensors[n].data as Int32Array), fx.tensors[n].shape, {
      dtype: "i32",
      backend,
    });
  const f32 = (n: string) =>
    tensor(Float32Array.from(fx.tensors[n].data as ArrayLike<number>), fx.tensors[n].shape, {
      backend,
    });
  await scopeAsync(async () => {
    const logits = model.forward(
      i32("input.src_ids"),
      f32("input.src_mask"),
      i32("input.tgt_ids"),
      f32("input.tgt_mask"),
    );
    assertClose(
      await logits.data(),
      fx.tensors["output.logits"].data as Float32Array,
      1e-4,
      `${file} logits`,
    );
    const [B, T, V] = logits.shape;
    const targets = tensor(Int32Array.from(fx.tensors["input.target_ids"].data as Int32Array), [
      B * T,
    ], { dtype: "i32", backend });
    const loss = crossEntropy(reshape(logits, [B * T, V]), targets, {
      ignoreIndex: cfg.pad_token_id,
    });
    const want = (fx.tensors["output.loss"].data as Float32Array)[0];
    assert.ok(
      Math.abs((await loss.item()) - want) <= 1e-4 * Math.max(1, Math.abs(want)),
      `${file} loss`,
    );
    if (!withGrads) return;
    loss.backward();
    for (const [name, p] of model.namedParameters()) {
      const g = fx.tensors[`grad.${name}`];
      assert.ok(g, `${file}: fixture has no grad.${name}`);
      assert.ok(p.grad, `${file}: no gradient for ${name}`);
      // k_proj.bias gradients are mathematically zero (softmax shift invariance): absolute floor
      assertClose(await p.grad!.data(), g.data as Float32Array, 2e-3, `${file} grad ${name}`, 0.1);
    }
  });
  model.dispose();
}

for (const file of FILES) {
  Deno.test(`Seq2Seq on the CPU equals the PyTorch twin on ${file} (logits, loss, gradients)`, async () => {
    await check(file, CPU, true);
  });
  Deno.test({
    name: `Seq2Seq on WebGPU equals the PyTorch twin on ${file} (logits, loss, gradients)`,
    ignore: NO_GPU,
    fn: async () => {
      await check(file, GPU!, true);
    },
  });
}
