import assert from "node:assert/strict";
import {
  maskedCrossEntropy,
  perplexity,
  tokenAccuracy,
  tokenMetricCounts,
  topKAccuracy,
} from "./token_metrics.ts";
import fixture from "../tests/testdata/bleu/token_metrics.json" with { type: "json" };

interface Case {
  N: number;
  V: number;
  ignore_index: number;
  label_smoothing: number;
  dtype: string;
  logits: number[];
  targets: number[];
  loss: number;
  loss_sum: number;
  loss_no_smoothing: number;
  count: number;
  correct: number;
  topk_correct: Record<string, number>;
  perplexity: number | null;
}

function close(actual: number, expected: number, rel: number, what: string): void {
  if (Number.isNaN(expected)) {
    assert.ok(Number.isNaN(actual), `${what}: got ${actual}, torch nan`);
    return;
  }
  const ok = Math.abs(actual - expected) <= rel * Math.max(1e-12, Math.abs(expected));
  assert.ok(ok, `${what}: got ${actual}, torch ${expected}`);
}

const cases = fixture.cases as Case[];

Deno.test("maskedCrossEntropy() equals torch CrossEntropyLoss(ignore_index, label_smoothing)", () => {
  for (const [i, c] of cases.entries()) {
    const logits = c.dtype === "float32" ? new Float32Array(c.logits) : new Float64Array(c.logits);
    const targets = new Int32Array(c.targets);
    const opts = { ignoreIndex: c.ignore_index, labelSmoothing: c.label_smoothing };
    // torch computes float32 cases in float32; ours is float64 throughout
    const rel = c.dtype === "float32" ? 1e-5 : 1e-12;
    const what = `case ${i} (V=${c.V}, ls=${c.label_smoothing}, ${c.dtype})`;
    close(maskedCrossEntropy(logits, targets, c.V, opts), c.loss ?? NaN, rel, what);
    const counts = tokenMetricCounts(logits, targets, c.V, opts);
    assert.equal(counts.count, c.count, what);
    if (c.count > 0) close(counts.lossSum, c.loss_sum, rel, `${what} sum`);
    close(
      maskedCrossEntropy(logits, targets, c.V, { ignoreIndex: c.ignore_index }),
      c.loss_no_smoothing ?? NaN,
      rel,
      `${what} no smoothing`,
    );
  }
});

Deno.test("tokenAccuracy() and topKAccuracy() equal torch argmax/topk counts", () => {
  for (const [i, c] of cases.entries()) {
    if (c.count === 0) continue;
    const logits = new Float64Array(c.logits);
    const targets = new Int32Array(c.targets);
    const o = { ignoreIndex: c.ignore_index };
    assert.equal(tokenAccuracy(logits, targets, c.V, o), c.correct / c.count, `case ${i}`);
    for (const [k, hits] of Object.entries(c.topk_correct)) {
      const acc = topKAccuracy(logits, targets, c.V, { ...o, k: Number(k) });
      assert.equal(acc, hits / c.count, `case ${i} top-${k}`);
    }
  }
});

Deno.test("perplexity() is exp of the unsmoothed mean cross-entropy", () => {
  for (const c of cases) {
    const logits = new Float64Array(c.logits);
    const p = perplexity(logits, new Int32Array(c.targets), c.V, {
      ignoreIndex: c.ignore_index,
      labelSmoothing: c.label_smoothing,
    });
    if (c.perplexity === null) assert.ok(Number.isNaN(p));
    else close(p, c.perplexity, c.dtype === "float32" ? 1e-5 : 1e-12, "perplexity");
  }
});

Deno.test("token metrics break ties like argmax (first maximum) and count all-ignored as NaN", () => {
  const logits = new Float64Array([1, 1, 0, /**/ 0, 2, 2]); // [N=2, V=3]
  const targets = new Int32Array([1, 2]);
  assert.equal(tokenAccuracy(logits, targets, 3), 0);
  assert.equal(topKAccuracy(logits, targets, 3, { k: 1 }), 0);
  assert.equal(topKAccuracy(logits, targets, 3, { k: 2 }), 1);
  assert.ok(
    Number.isNaN(maskedCrossEntropy(logits, new Int32Array([0, 0]), 3, { ignoreIndex: 0 })),
  );
  // uniform logits: CE = log V with or without smoothing
  const u = new Float32Array(8);
  close(
    maskedCrossEntropy(u, new Int32Array([1, 3]), 4, { labelSmoothing: 0.3 }),
    Math.log(4),
    1e-15,
    "uniform",
  );
});

Deno.test("token metrics reject bad shapes, targets and options", () => {
  const l = new Float32Array(6);
  assert.throws(() => maskedCrossEntropy(l, new Int32Array([0]), 3), TypeError);
  assert.throws(() => maskedCrossEntropy(l, new Int32Array([0, 3]), 3), RangeError);
  assert.throws(() => maskedCrossEntropy(l, new Int32Array([0, -1]), 3), RangeError);
  assert.throws(
    () => maskedCrossEntropy(l, new Int32Array([0, 1]), 3, { labelSmoothing: 1.5 }),
    RangeError,
  );
  assert.throws(() => topKAccuracy(l, new Int32Array([0, 1]), 3, { k: 0 }), RangeError);
  assert.throws(() => maskedCrossEntropy(l, new Int32Array([0, 1]), 0), TypeError);
});
