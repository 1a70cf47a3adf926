import assert from "node:assert/strict";
import { type ChrfOptions, corpusChrf, sentenceChrf } from "./chrf.ts";
import sacre from "../tests/testdata/bleu/sacrebleu.json" with { type: "json" };

interface Cfg {
  char_order?: number;
  word_order?: number;
  beta?: number;
  lowercase?: boolean;
  whitespace?: boolean;
  eps_smoothing?: boolean;
}

function options(cfg: Cfg): ChrfOptions {
  return {
    charOrder: cfg.char_order,
    wordOrder: cfg.word_order,
    beta: cfg.beta,
    lowercase: cfg.lowercase,
    whitespace: cfg.whitespace,
    epsSmoothing: cfg.eps_smoothing,
  };
}

function assertClose(actual: number, expected: number, what: string): void {
  const ok = Math.abs(actual - expected) <= 1e-9 * Math.max(1, Math.abs(expected));
  assert.ok(ok, `${what}: got ${actual}, sacreBLEU ${expected}`);
}

Deno.test("corpusChrf() and sentenceChrf() equal sacreBLEU's CHRF (chrF2, chrF++, options)", () => {
  let n = 0;
  for (const c of sacre.cases) {
    for (const r of c.chrf) {
      const o = options(r.config as Cfg);
      const what = `${JSON.stringify(c.hypotheses)} ${JSON.stringify(r.config)}`;
      const s = corpusChrf(c.references, c.hypotheses, o);
      assertClose(s.score, r.score, what);
      assert.equal(s.signature, r.signature, what);
      r.sentence.forEach((v, i) => {
        assertClose(sentenceChrf(c.references[i], c.hypotheses[i], o).score, v, `${what} #${i}`);
      });
      n++;
    }
  }
  assert.ok(n > 100);
});

Deno.test("corpusChrf() defaults to chrF2 over 6 character n-grams", () => {
  const s = corpusChrf([["The cat is on the mat."], ["Hello world!"]], [
    "The cat sat on the mat.",
    "Hello, world!",
  ]);
  assert.equal(s.name, "chrF2");
  assert.equal(s.signature, "nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.x");
  assert.equal(s.score.toFixed(2), "66.05"); // sacreBLEU prints chrF2 = 66.05
  assert.equal(corpusChrf([["a"]], ["a"], { wordOrder: 2 }).name, "chrF2++");
});

Deno.test("sentenceChrf() is 100 for an identical sentence and 0 for a disjoint one", () => {
  assert.equal(sentenceChrf(["naïve café 😀"], "naïve  café😀").score, 100);
  assert.equal(sentenceChrf(["abc"], "xyz").score, 0);
  assert.equal(sentenceChrf(["abc"], "").score, 0);
});

Deno.test("chrF functions reject bad arguments", () => {
  assert.throws(() => corpusChrf([["a"]], []), TypeError);
  assert.throws(() => corpusChrf([[]], ["a"]), TypeError);
  assert.throws(() => sentenceChrf(["a"], "a", { charOrder: -1 }), RangeError);
  assert.throws(() => sentenceChrf(["a"], "a", { charOrder: 0, wordOrder: 0 }), RangeError);
});
