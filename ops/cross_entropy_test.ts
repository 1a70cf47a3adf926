import assert from "node:assert/strict";
import { crossEntropy, crossEntropyStats } from "./mod.ts";
import { CPU } from "../tensor/cpu_backend.ts";
import type { Backend } from "../tensor/types.ts";
import { copyInto, scopeAsync, tensor } from "../tensor/tensor.ts";
import { GPU, NO_GPU } from "../tests/_gpu.ts";
import { makeRng } from "../tensor/rng.ts";
import { tokenMetricCounts } from "../metrics/token_metrics.ts";
import metrics from "../tests/testdata/bleu/token_metrics.json" with { type: "json" };
import ops from "../tests/testdata/ops/torch_ops.json" with { type: "json" };

function close(got: number, want: number | null, rel: number, what: string): void {
  if (want === null || Number.isNaN(want)) {
    assert.ok(Number.isNaN(got), `${what}: got ${got}, torch nan`);
    return;
  }
  assert.ok(
    Math.abs(got - want) <= rel * Math.max(1, Math.abs(want)),
    `${what}: got ${got}, want ${want}`,
  );
}

const backends: [string, Backend | null, "f32" | "f64", number][] = [
  ["CPU f64", CPU, "f64", 1e-12],
  ["CPU f32", CPU, "f32", 1e-5],
  ["WebGPU", GPU, "f32", 1e-5],
];

for (const [name, backend, dtype, tol] of backends) {
  Deno.test({
    name: `crossEntropy() and crossEntropyStats() equal torch CrossEntropyLoss fixtures on ${name}`,
    ignore: backend === null,
    fn: async () => {
      for (const [i, c] of metrics.cases.entries()) {
        // float32 fixtures carry torch's float32 rounding
        const rel = c.dtype === "float32" ? Math.max(tol, 1e-6) : tol;
        await scopeAsync(async () => {
          const logits = tensor(c.logits, [c.N, c.V], { backend: backend!, dtype });
          const targets = tensor(Int32Array.from(c.targets), [c.N], { backend: backend! });
          const opts = { ignoreIndex: c.ignore_index, labelSmoothing: c.label_smoothing };
          close(await crossEntropy(logits, targets, opts).item(), c.loss, rel, `case ${i} loss`);
          for (const k of [1, 2, 3, 5]) {
            const s = await crossEntropyStats(logits, targets, { ignoreIndex: c.ignore_index, k })
              .toArray();
            const nllSum = c.count === 0 ? 0 : c.loss_no_smoothing! * c.count;
            close(s[0], nllSum, rel, `case ${i} Σ CE`);
            assert.equal(s[1], c.count, `case ${i} count`);
            assert.equal(s[2], c.correct, `case ${i} correct`);
            assert.equal(s[3], (c.topk_correct as Record<string, number>)[k], `case ${i} top-${k}`);
          }
        });
      }
    },
  });

  Deno.test({
    name:
      `crossEntropy() gradients equal torch (ignore_index, label smoothing, logits ±80) on ${name}`,
    ignore: backend === null,
    fn: async () => {
      for (const c of ops.cross_entropy) {
        await scopeAsync(async () => {
          const logits = tensor(c.logits, [c.N, c.V], {
            backend: backend!,
            dtype,
            requiresGrad: true,
          });
          const targets = tensor(Int32Array.from(c.targets), [c.N], { backend: backend! });
          const loss = crossEntropy(logits, targets, {
            ignoreIndex: c.ignore_index,
            labelSmoothing: c.label_smoothing,
          });
          close(await loss.item(), c.loss, tol, `loss V=${c.V}`);
          loss.backward();
          const g = await logits.grad!.toArray();
          g.forEach((v, j) => close(v, c.dlogits[j], tol, `dlogits V=${c.V} [${j}]`));
        });
      }
    },
  });
}

Deno.test("crossEntropyStats() equals tokenMetricCounts() on logits full of ties (CPU and WebGPU)", async () => {
  const rng = makeRng(21);
  const N = 40, V = 300;
  // small integer logits: many ties, including ties with the target's logit
  const logits = Float32Array.from({ length: N * V }, () => Math.floor(rng() * 4));
  const targets = Int32Array.from({ length: N }, () => (rng() < 0.2 ? 0 : Math.floor(rng() * V)));
  for (const k of [1, 5, 60]) {
    const ref = tokenMetricCounts(logits, targets, V, { ignoreIndex: 0, k });
    for (const backend of [CPU, GPU]) {
      if (!backend) continue;
      await scopeAsync(async () => {
        const s = await crossEntropyStats(
          tensor(logits, [N, V], { backend }),
          tensor(targets, [N], { backend }),
          { ignoreIndex: 0, k },
        ).toArray();
        const what = `${backend.kind} k=${k}`;
        close(s[0], ref.nllSum, 1e-5, `${what} Σ CE`);
        assert.deepEqual(s.slice(1), [ref.count, ref.correct, ref.topKCorrect], what);
      });
    }
  }
});

Deno.test("crossEntropy() stays finite and exact for logits of ±1000", async () => {
  for (const backend of [CPU, GPU]) {
    if (!backend) continue;
    await scopeAsync(async () => {
      const logits = tensor([1000, -1000, 0, -1000, 1000, 999], [2, 3], {
        backend,
        requiresGrad: true,
      });
      const loss = crossEntropy(logits, tensor(new Int32Array([0, 2]), [2], { backend }), {
        ignoreIndex: -100,
      });
      // row 0: lse − 1000 ≈ 0; row 1: lse − 999 = 1 + log(1 + e^−1)
      const want = (1 + Math.log(1 + Math.exp(-1))) / 2;
      close(await loss.item(), want, 1e-6, backend.kind);
      loss.backward();
      const g = await logits.grad!.toArray();
      assert.ok(g.every(Number.isFinite), `${backend.kind} gradient ${g}`);
    });
  }
});

Deno.test("crossEntropy() with −∞ logits (a masked vocabulary) is finite without smoothing, as torch's", async () => {
  // torch: F.cross_entropy([[0, -inf, 1], [2, -inf, -inf]], [2, 0]) = 0.15663 (label_smoothing 0);
  // with label_smoothing 0.1 the smoothing term is +inf, and so is torch's loss
  const L = [0, -Infinity, 1, 2, -Infinity, -Infinity], T = new Int32Array([2, 0]);
  const want = Math.log(1 + Math.E) - 1; // row 0: lse − 1; row 1: 0
  for (const [backend, dtype] of [[CPU, "f64"], [CPU, "f32"], [GPU, "f32"]] as const) {
    if (!backend) continue;
    await scopeAsync(async () => {
      const x = tensor(L, [2, 3], { backend, dtype, requiresGrad: true });
      const t = tensor(T, [2], { backend });
      const loss = crossEntropy(x, t, { ignoreIndex: -100 });
      close(await loss.item(), want / 2, 1e-6, `${backend.kind} ${dtype}`);
      loss.backward();
      assert.ok((await x.grad!.toArray()).every(Number.isFinite), `${backend.kind} ${dtype} grad`);
      const smoothedLoss = await crossEntropy(x, t, { ignoreIndex: -100, labelSmoothing: 0.1 })
        .item();
      assert.equal(smoothedLoss, Infinity, `${backend.kind} ${dtype} smoothed`);
    });
  }
  const ref = tokenMetricCounts(new Float32Array(L), T, 3, { ignoreIndex: -100 });
  close(ref.lossSum, want, 1e-12, "tokenMetricCounts");
});

Deno.test("crossEntropy() on the CPU throws a RangeError for a target outside [0, V)", () => {
  const logits = tensor([1, 2, 3, 4], [2, 2]);
  assert.throws(
    () => crossEntropy(logits, tensor(new Int32Array([0, 5]), [2]), { ignoreIndex: -100 }),
    /target 5 at row 1 is outside \[0, 2\)/,
  );
  assert.throws(
    () => crossEntropy(logits, tensor(new Int32Array([0]), [1]), { ignoreIndex: -100 }),
    /targets \[1\] i32 must be i32 \[2\]/,
  );
  assert.throws(
    () =>
      crossEntropy(logits, tensor(new Int32Array([0, 1]), [2]), {
        ignoreIndex: 0,
        labelSmoothing: 2,
      }),
    RangeError,
  );
});

Deno.test({
  name: "crossEntropy() on WebGPU counts out-of-range targets as ignored",
  ignore: NO_GPU,
  fn: async () => {
    const logits = tensor([1, 2, 3, 4, 5, 6], [3, 2], { backend: GPU! });
    const loss = await crossEntropy(
      logits,
      tensor(new Int32Array([0, 7, -2]), [3], { backend: GPU! }),
      {
        ignoreIndex: -100,
      },
    ).item();
    close(loss, Math.log(1 + Math.exp(1)), 1e-6, "loss");
  },
});

Deno.test("crossEntropyStats() on the CPU reuses the loss's row statistics only for the same, unwritten logits", async () => {
  const rng = makeRng(7);
  const N = 37, V = 301;
  const x = Float32Array.from({ length: N * V }, () => (rng() - 0.5) * 20);
  const t = Int32Array.from({ length: N }, () => Math.floor(rng() * V));
  x[5 * V + 9] = x[5 * V + t[5]] = 3; // a tie with the target
  t[3] = 0; // an ignored row
  const alone = await (async () => {
    const logits = tensor(x, [N, V], { backend: CPU });
    const s = await crossEntropyStats(logits, tensor(t, [N], { backend: CPU }), {
      ignoreIndex: 0,
    }).toArray();
    logits.dispose();
    return s;
  })();
  const logits = tensor(x, [N, V], { backend: CPU });
  const targets = tensor(t, [N], { backend: CPU });
  crossEntropy(logits, targets, { ignoreIndex: 0 }).dispose();
  assert.deepEqual(await crossEntropyStats(logits, targets, { ignoreIndex: 0 }).toArray(), alone);
  // other targets after the loss: the stats are computed afresh
  const t2 = t.map((v) => (v + 1) % V);
  const other = await crossEntropyStats(logits, tensor(t, [N], { backend: CPU }), {
    ignoreIndex: 0,
  })
    .toArray();
  crossEntropy(logits, targets, { ignoreIndex: 0 }).dispose();
  const moved = await crossEntropyStats(logits, tensor(t2, [N], { backend: CPU }), {
    ignoreIndex: 0,
  }).toArray();
  assert.deepEqual(other, alone);
  assert.notDeepEqual(moved, alone);
  // logits written in place after the loss: recomputed too
  crossEntropy(logits, targets, { ignoreIndex: 0 }).dispose();
  copyInto(logits, tensor(x.map((v) => -v), [N, V], { backend: CPU }));
  const negated = await crossEntropyStats(logits, targets, { ignoreIndex: 0 }).toArray();
  const fresh = tensor(x.map((v) => -v), [N, V], { backend: CPU });
  assert.deepEqual(negated, await crossEntropyStats(fresh, targets, { ignoreIndex: 0 }).toArray());
  assert.notDeepEqual(negated, alone);
});
