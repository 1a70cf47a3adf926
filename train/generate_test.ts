import assert from "node:assert/strict";
import {
  applyNoRepeatNgram,
  applyRepetitionPenalty,
  applyTemperature,
  applyTopK,
  applyTopP,
  argmax,
  bannedNgramTokens,
  createDecodeSession,
  type DecodeSession,
  decodeSteps,
  type DecodeStepsOptions,
  generate,
  generateText,
  GREEDY_READBACK_EVERY,
  greedyOnDevice,
  logSoftmax,
  sampleIndex,
  sampleOnDevice,
  softmax,
  type StepFn,
} from "./generate.ts";
import { hashU32, makeRng } from "../tensor/rng.ts";
import { type ModelConfig, presetConfig } from "../nn/config.ts";
import { Seq2Seq } from "../nn/seq2seq.ts";
import { initContext } from "../nn/module.ts";
import type { Backend } from "../tensor/types.ts";
import { CPU } from "../tensor/cpu_backend.ts";
import { GPU, NO_GPU } from "../tests/_gpu.ts";
import { tensor } from "../tensor/tensor.ts";
import { trainBpe } from "../data/bpe_trainer.ts";

// ---------------------------------------------------------------------------
// logits processors on crafted rows

const f32 = (xs: number[]) => Float32Array.from(xs);

Deno.test("applyRepetitionPenalty() divides positive and multiplies negative logits of seen tokens", () => {
  const row = f32([2, -2, 1, 0.5, 3]);
  applyRepetitionPenalty(row, [0, 1, 1, 4, 4, 4], 2);
  assert.deepEqual([...row], [1, -4, 1, 0.5, 1.5]);
  const same = f32([2, -2]);
  applyRepetitionPenalty(same, [0, 1], 1);
  assert.deepEqual([...same], [2, -2]);
  assert.throws(() => applyRepetitionPenalty(f32([1]), [0], 0), RangeError);
});

Deno.test("bannedNgramTokens() bans what followed earlier occurrences of the last n-1 tokens", () => {
  // bigrams (1,5) (5,6) (6,5): the context ends in 5, which was followed by 6
  assert.deepEqual(bannedNgramTokens([1, 5, 6, 5], 2), [6]);
  // trigrams (1,5,6) (5,6,5) (6,5,6) (5,6,7): ends in (6,7), never seen before
  assert.deepEqual(bannedNgramTokens([1, 5, 6, 5, 6, 7], 3), []);
  // ends in (5,6): followed by 5 and by 7 before
  assert.deepEqual(bannedNgramTokens([5, 6, 5, 6, 7, 5, 6], 3).sort(), [5, 7]);
  // unigrams: every token seen
  assert.deepEqual(bannedNgramTokens([3, 1, 3], 1).sort(), [1, 3]);
  // too short for an n-gram
  assert.deepEqual(bannedNgramTokens([1], 3), []);
  const row = f32([0, 0, 0, 0, 0, 0, 0, 0]);
  applyNoRepeatNgram(row, [5, 6, 5, 6, 7, 5, 6], 3);
  assert.deepEqual([...row], [0, 0, 0, 0, 0, -Infinity, 0, -Infinity]);
});

Deno.test("applyTopK() keeps the k largest logits and applyTemperature() divides", () => {
  const row = f32([1, 5, 3, 4, 2]);
  applyTopK(row, 2);
  assert.deepEqual([...row], [-Infinity, 5, -Infinity, 4, -Infinity]);
  const all = f32([1, 2]);
  applyTopK(all, 0);
  assert.deepEqual([...all], [1, 2]);
  const t = f32([1, -2, 4]);
  applyTemperature(t, 0.5);
  assert.deepEqual([...t], [2, -4, 8]);
});

Deno.test("applyTopP() keeps the smallest set reaching p, at least one token", () => {
  const probs = [0.05, 0.5, 0.15, 0.3];
  const logits = () => f32(probs.map(Math.log));
  const kept = (p: number) => {
    const row = logits();
    applyTopP(row, p);
    return [...row].map((v, i) => (v === -Infinity ? -1 : i)).filter((i) => i >= 0);
  };
  assert.deepEqual(kept(0.7), [1, 3]); // 0.5 + 0.3 >= 0.7
  assert.deepEqual(kept(0.5), [1]); // 0.5 already reaches 0.5
  assert.deepEqual(kept(0.81), [1, 2, 3]);
  assert.deepEqual(kept(1e-9), [1]);
  assert.deepEqual(kept(0), [1]);
  assert.deepEqual(kept(1), [0, 1, 2, 3]);
});

Deno.test("softmax(), logSoftmax() and argmax() agree on a row", () => {
  const row = f32([1, 3, -Infinity, 2]);
  const p = softmax(row);
  const lp = logSoftmax(row);
  const z = Math.exp(1) + Math.exp(3) + Math.exp(2);
  assert.ok(Math.abs(p[1] - Math.exp(3) / z) < 1e-12);
  assert.equal(p[2], 0);
  assert.ok(Math.abs(lp[3] - (2 - Math.log(z))) < 1e-6);
  assert.equal(argmax(row), 1);
  assert.equal(argmax([2, 7, 7]), 1);
});

Deno.test("sampleIndex() draws with the softmax probabilities", () => {
  const rng = makeRng(7);
  const row = f32([Math.log(0.1), Math.log(0.2), Math.log(0.7), -Infinity]);
  const counts = [0, 0, 0, 0];
  const n = 20000;
  for (let i = 0; i < n; i++) counts[sampleIndex(row, rng)]++;
  assert.equal(counts[3], 0);
  [0.1, 0.2, 0.7].forEach((p, i) => {
    assert.ok(Math.abs(counts[i] / n - p) < 0.015, `token ${i}: ${counts[i] / n} vs ${p}`);
  });
});

// ---------------------------------------------------------------------------
// the search over toy language models (host functions of the prefix)

const PAD = 0, START = 1, EOS = 2;

/**
 * A step function over a toy LM: `next(prefix)` gives the next-token
 * log-probabilities of a prefix (start token first). Rows follow `parents`
 * as beam search reorders them. Records the prefixes it saw.
 */
function toyStep(rows: number, next: (prefix: number[]) => number[]): {
  step: StepFn;
  calls: number[][][];
} {
  let prefixes: number[][] = Array.from({ length: rows }, () => []);
  const calls: number[][][] = [];
  const step: StepFn = (tokens, parents) => {
    if (parents) prefixes = Array.from(parents, (p) => prefixes[p]);
    prefixes = prefixes.map((p, r) => [...p, tokens[r]]);
    calls.push(prefixes.map((p) => [...p]));
    return Promise.resolve(Float32Array.from(prefixes.flatMap((p) => next(p))));
  };
  return { step, calls };
}

/** A random LM over V tokens: logits hashed from the prefix. */
function randomLm(V: number, seed: number, eosBias = 0): (prefix: number[]) => number[] {
  return (prefix) => {
    let h = seed;
    for (const t of prefix) h = hashU32(h, t + 1);
    const rng = makeRng(h);
    return Array.from({ length: V }, (_, v) => rng() * 4 + (v === EOS ? eosBias : 0));
  };
}

const SPECIAL = { startTokenId: START, eosTokenId: EOS, padTokenId: PAD };

function opts(V: number, extra: Partial<DecodeStepsOptions>): DecodeStepsOptions {
  return { vocabSize: V, ...SPECIAL, ...extra };
}

Deno.test("decodeSteps() greedy follows the argmax and stops at eos", async () => {
  // after START: 3; after 3: 4; after 4: EOS
  const table: Record<number, number> = { [START]: 3, 3: 4, 4: EOS };
  const lm = (p: number[]) => Array.from({ length: 5 }, (_, v) => (v === table[p.at(-1)!] ? 1 : 0));
  const { step, calls } = toyStep(1, lm);
  const res = await decodeSteps(step, 1, opts(5, { maxNewTokens: 10 }));
  assert.deepEqual(res.sequences[0][0].ids, [3, 4]);
  assert.equal(res.sequences[0][0].finished, true);
  assert.equal(res.steps, 3);
  assert.equal(calls.length, 3);
  // score: mean logprob of 3 tokens, each log(e / (e + 4))
  const lp = 1 - Math.log(Math.E + 4);
  assert.ok(Math.abs(res.sequences[0][0].score - lp) < 1e-6);
  // maxNewTokens cuts it
  const cut = await decodeSteps(toyStep(1, lm).step, 1, opts(5, { maxNewTokens: 1 }));
  assert.deepEqual(cut.sequences[0][0].ids, [3]);
  assert.equal(cut.sequences[0][0].finished, false);
});

Deno.test("decodeSteps() beam search finds the better sequence greedy misses", async () => {
  // START → A (0.6) or B (0.4); A → EOS 0.3 (else C, D spread); B → EOS 0.9
  const [A, B, C, D] = [3, 4, 5, 6];
  const V = 7;
  const lp = (pairs: Record<number, number>) =>
    Array.from({ length: V }, (_, v) => Math.log(pairs[v] ?? 1e-6));
  const lm = (p: number[]) => {
    const last = p.at(-1)!;
    if (last === START) return lp({ [A]: 0.6, [B]: 0.4 });
    if (last === A) return lp({ [EOS]: 0.3, [C]: 0.35, [D]: 0.35 });
    if (last === B) return lp({ [EOS]: 0.9, [C]: 0.1 });
    return lp({ [EOS]: 1 });
  };
  const greedy = await decodeSteps(toyStep(1, lm).step, 1, opts(V, { maxNewTokens: 2 }));
  assert.deepEqual(greedy.sequences[0][0].ids, [A, C]);
  const beam = await decodeSteps(
    toyStep(2, lm).step,
    1,
    opts(V, { strategy: "beam", numBeams: 2, maxNewTokens: 4, numReturnSequences: 2 }),
  );
  const [best, second] = beam.sequences[0];
  assert.deepEqual(best.ids, [B]);
  assert.equal(best.finished, true);
  assert.ok(Math.abs(best.score - Math.log(0.4 * 0.9) / 2) < 1e-4, String(best.score));
  assert.ok(best.score >= second.score);
});

Deno.test("decodeSteps() beam search with numBeams=1 and earlyStopping equals greedy", async () => {
  for (let seed = 0; seed < 20; seed++) {
    const lm = randomLm(6, seed, 1);
    const g = await decodeSteps(toyStep(3, lm).step, 3, opts(6, { maxNewTokens: 8 }));
    const b = await decodeSteps(
      toyStep(3, lm).step,
      3,
      opts(6, { strategy: "beam", numBeams: 1, earlyStopping: true, maxNewTokens: 8 }),
    );
    for (let i = 0; i < 3; i++) {
      assert.deepEqual(b.sequences[i][0].ids, g.sequences[i][0].ids, `seed ${seed} input ${i}`);
      assert.ok(Math.abs(b.sequences[i][0].score - g.sequences[i][0].score) < 1e-9);
    }
  }
});

/** Every sequence of at most T tokens (ended by eos or by T) with its summed logprob. */
function exhaustive(lm: (p: number[]) => number[], V: number, T: number) {
  const out: { ids: number[]; sum: number }[] = [];
  const walk = (prefix: number[], sum: number) => {
    const lp = logSoftmax(Float32Array.from(lm(prefix)));
    for (let v = 0; v < V; v++) {
      const s = sum + lp[v];
      const gen = prefix.length; // tokens generated after this one
      if (v === EOS) out.push({ ids: prefix.slice(1), sum: s });
      else if (gen === T) out.push({ ids: [...prefix.slice(1), v], sum: s });
      else walk([...prefix, v], s);
    }
  };
  walk([START], 0);
  return out.sort((a, b) => b.sum - a.sum);
}

Deno.test("decodeSteps() beam search with enough beams equals exhaustive search", async () => {
  const V = 4, T = 3;
  for (let seed = 0; seed < 5; seed++) {
    const lm = randomLm(V, 100 + seed);
    const ref = exhaustive(lm, V, T);
    const nb = V ** T;
    const res = await decodeSteps(
      toyStep(nb, lm).step,
      1,
      opts(V, {
        strategy: "beam",
        numBeams: nb,
        lengthPenalty: 0,
        maxNewTokens: T,
        numReturnSequences: 5,
      }),
    );
    const got = res.sequences[0];
    for (let i = 0; i < 5; i++) {
      assert.deepEqual(got[i].ids, ref[i].ids, `seed ${seed} rank ${i}`);
      assert.ok(Math.abs(got[i].score - ref[i].sum) < 1e-5);
    }
    for (let i = 1; i < got.length; i++) assert.ok(got[i - 1].score >= got[i].score);
  }
});

Deno.test("decodeSteps() beam length penalty favours longer hypotheses as it grows", async () => {
  const lm = randomLm(6, 3, 0.5);
  const lengths: number[] = [];
  for (const lengthPenalty of [-1, 0, 2]) {
    const res = await decodeSteps(
      toyStep(4, lm).step,
      1,
      opts(6, { strategy: "beam", numBeams: 4, lengthPenalty, maxNewTokens: 10 }),
    );
    lengths.push(res.sequences[0][0].ids.length);
  }
  assert.ok(lengths[0] <= lengths[1] && lengths[1] <= lengths[2], String(lengths));
});

Deno.test("decodeSteps() sampling is seeded, and top-k 1 / tiny top-p equal greedy", async () => {
  const lm = randomLm(8, 11, 0.3);
  const run = (extra: Partial<DecodeStepsOptions>, k = 1) =>
    decodeSteps(toyStep(4 * k, lm).step, 4, opts(8, { maxNewTokens: 12, ...extra }));
  const ids = (r: Awaited<ReturnType<typeof run>>) => r.sequences.map((g) => g.map((s) => s.ids));
  const greedy = ids(await run({}));
  assert.deepEqual(ids(await run({ strategy: "sample", topK: 1, seed: 5 })), greedy);
  assert.deepEqual(ids(await run({ strategy: "sample", topP: 1e-6, seed: 5 })), greedy);
  const a = ids(await run({ strategy: "sample", seed: 1, temperature: 1.5 }));
  const b = ids(await run({ strategy: "sample", seed: 1, temperature: 1.5 }));
  const c = ids(await run({ strategy: "sample", seed: 2, temperature: 1.5 }));
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
  assert.notDeepEqual(a, greedy);
  // several return sequences per input, and batching does not change samples
  const three = await run({ strategy: "sample", seed: 9, numReturnSequences: 3 }, 3);
  assert.equal(three.sequences.length, 4);
  assert.equal(three.sequences[0].length, 3);
  const tail = await decodeSteps(
    toyStep(3 * 3, lm).step,
    3,
    opts(8, {
      maxNewTokens: 12,
      strategy: "sample",
      seed: 9,
      numReturnSequences: 3,
      seedOffset: 1,
    }),
  );
  assert.deepEqual(ids(tail), ids(three).slice(1));
});

Deno.test("decodeSteps() no-repeat-ngram and repetition penalty stop a looping model", async () => {
  // always prefers token 3, then 4, then 5 …
  const lm = () => [0, 0, -5, 4, 3, 2, 1, 0];
  const loop = await decodeSteps(toyStep(1, lm).step, 1, opts(8, { maxNewTokens: 4 }));
  assert.deepEqual(loop.sequences[0][0].ids, [3, 3, 3, 3]);
  const noRepeat = await decodeSteps(
    toyStep(1, lm).step,
    1,
    opts(8, { maxNewTokens: 4, noRepeatNgramSize: 1 }),
  );
  assert.deepEqual(noRepeat.sequences[0][0].ids, [3, 4, 5, 6]);
  const bigram = await decodeSteps(
    toyStep(1, lm).step,
    1,
    opts(8, { maxNewTokens: 5, noRepeatNgramSize: 2 }),
  );
  assert.deepEqual(bigram.sequences[0][0].ids, [3, 3, 4, 3, 5]);
  // penalty 3: 4/3 < 3 so 4 follows 3; then 5 (2 > 4/3 > 3/3); then 3 (4/3 > 1)
  const pen = await decodeSteps(
    toyStep(1, lm).step,
    1,
    opts(8, { maxNewTokens: 4, repetitionPenalty: 3 }),
  );
  assert.deepEqual(pen.sequences[0][0].ids, [3, 4, 5, 3]);
});

Deno.test("decodeSteps() min-new-tokens keeps eos out of the first tokens in every strategy", async () => {
  // eos is always the most likely token, then 3, then 4 …
  const lm = () => [0, 0, 9, 4, 3, 2, 1, 0];
  const run = (extra: Partial<DecodeStepsOptions>, rows = 1) =>
    decodeSteps(toyStep(rows, lm).step, 1, opts(8, { maxNewTokens: 10, ...extra }));
  assert.deepEqual((await run({})).sequences[0][0].ids, []);
  const greedy = (await run({ minNewTokens: 3 })).sequences[0][0];
  assert.deepEqual([greedy.ids, greedy.finished], [[3, 3, 3], true]);
  // its score: the eos-less log-softmax for the first three tokens, then the full one for eos
  const ls = (row: number[]) => {
    const m = Math.log(row.reduce((a, v) => a + Math.exp(v), 0));
    return (v: number) => row[v] - m;
  };
  const noEos = ls([0, 0, -Infinity, 4, 3, 2, 1, 0]), full = ls(lm());
  assert.ok(Math.abs(greedy.score - (3 * noEos(3) + full(EOS)) / 4) < 1e-9, String(greedy.score));
  const sampled = await run({ strategy: "sample", seed: 4, minNewTokens: 5 });
  assert.ok(sampled.sequences[0][0].ids.length >= 5, String(sampled.sequences[0][0].ids));
  const beams = await run(
    { strategy: "beam", numBeams: 2, numReturnSequences: 2, minNewTokens: 2 },
    2,
  );
  for (const s of beams.sequences[0]) assert.ok(s.ids.length >= 2 && s.finished, String(s.ids));
  // it does not outlast maxNewTokens
  assert.deepEqual((await run({ minNewTokens: 6, maxNewTokens: 4 })).sequences[0][0].ids, [
    3,
    3,
    3,
    3,
  ]);
  await assert.rejects(() => run({ minNewTokens: -1 }), /minNewTokens must be at least 0/);
});

Deno.test("decodeSteps() rejects bad options with one-line errors", async () => {
  const { step } = toyStep(1, randomLm(4, 0));
  await assert.rejects(() => decodeSteps(step, 1, opts(4, { temperature: 0 })), RangeError);
  await assert.rejects(() => decodeSteps(step, 1, opts(4, { topP: 1.5 })), RangeError);
  await assert.rejects(
    () => decodeSteps(step, 1, opts(4, { numReturnSequences: 2 })),
    /needs strategy "sample" or "beam"/,
  );
  await assert.rejects(
    () => decodeSteps(step, 1, opts(4, { strategy: "beam", numBeams: 2, numReturnSequences: 3 })),
    /must not exceed numBeams/,
  );
  // below the floor logits / temperature overflows f32 (a uniform pick, not the argmax)
  await assert.rejects(
    () => decodeSteps(step, 1, opts(4, { temperature: 1e-40 })),
    /temperature must be at least 1e-6/,
  );
  // options of one strategy given with another
  await assert.rejects(
    () => decodeSteps(step, 1, opts(4, { strategy: "greedy", topK: 2 })),
    new TypeError('topK needs strategy "sample", not "greedy"'),
  );
  await assert.rejects(
    () => decodeSteps(step, 1, opts(4, { strategy: "sample", numBeams: 3 })),
    new TypeError('numBeams needs strategy "beam", not "sample"'),
  );
  await assert.rejects(
    () => decodeSteps(step, 1, opts(4, { temperature: 0.5, numBeams: 3 })),
    /temperature \(sampling\) and numBeams \(beam search\) do not go together/,
  );
});

Deno.test("decodeSteps() without a strategy: numBeams above 1 searches beams, sampling options sample (as transformers)", async () => {
  const lm = randomLm(6, 3);
  // one input: a row per beam, else one
  const run = async (o: Partial<DecodeStepsOptions>) =>
    await decodeSteps(
      toyStep((o.numBeams ?? 1) > 1 ? o.numBeams! : 1, lm).step,
      1,
      opts(6, { maxNewTokens: 6, seed: 5, ...o }),
    );
  assert.deepEqual(await run({ numBeams: 3 }), await run({ strategy: "beam", numBeams: 3 }));
  assert.deepEqual(await run({ topK: 3 }), await run({ strategy: "sample", topK: 3 }));
  assert.deepEqual(
    await run({ temperature: 0.7 }),
    await run({ strategy: "sample", temperature: 0.7 }),
  );
  // defaults of the other strategies are no request: greedy
  assert.deepEqual(
    await run({ numBeams: 1, temperature: 1, topP: 1, lengthPenalty: 1 }),
    await run({ strategy: "greedy" }),
  );
  // and beam search is not greedy here (the test can tell them apart)
  assert.notDeepEqual(
    (await run({ numBeams: 3 })).sequences,
    (await run({ strategy: "greedy" })).sequences,
  );
});

// ---------------------------------------------------------------------------
// the model: cached and uncached decoding, on the CPU and the GPU

function tinyModel(backend: Backend, seed = 0, overrides: Partial<ModelConfig> = {}): Seq2Seq {
  const cfg = presetConfig("tiny", {
    vocab_size: 23,
    d_model: 16,
    n_heads: 2,
    d_ff: 32,
    n_encoder_layers: 1,
    n_decoder_layers: 1,
    max_position: 32,
    dropout: 0,
    drop_path: 0,
    ...overrides,
  });
  return new Seq2Seq(cfg, initContext(seed, backend)).eval();
}

const SOURCES = [[5, 6, 7, 8, 2], [9, 2], [10, 11, 12, 2]];

const VARIANTS: Partial<ModelConfig>[] = [
  {},
  { positional_encoding: "learned", tie_embeddings: false, ffn_activation: "swiglu" },
];

/** Cached vs uncached decoding; `n` tokens (kept small on the slow software adapter). */
async function checkCacheEqualsNoCache(
  backend: Backend,
  variants: Partial<ModelConfig>[],
  n: number,
): Promise<void> {
  for (const overrides of variants) {
    const model = tinyModel(backend, 3, overrides);
    try {
      await generate(model, SOURCES, { maxNewTokens: 2 }); // builds the lazy position table
      const before = backend.memoryStats().liveBuffers;
      const cached = await generate(model, SOURCES, { maxNewTokens: 2 * n });
      const plain = await generate(model, SOURCES, { maxNewTokens: 2 * n, useCache: false });
      assert.deepEqual(
        cached.sequences.map((g) => g[0].ids),
        plain.sequences.map((g) => g[0].ids),
      );
      assert.equal(backend.memoryStats().liveBuffers, before, "generate() leaked tensors");
      // beam search reorders the cache
      const beamOpts = { strategy: "beam" as const, numBeams: 3, maxNewTokens: n + 1 };
      const bc = await generate(model, SOURCES, beamOpts);
      const bp = await generate(model, SOURCES, { ...beamOpts, useCache: false });
      assert.deepEqual(bc.sequences.map((g) => g[0].ids), bp.sequences.map((g) => g[0].ids));
      assert.equal(backend.memoryStats().liveBuffers, before, "beam search leaked tensors");

      // logits step by step, feeding the same (shuffled-parent) tokens to both
      const a = createDecodeSession(model, SOURCES, { expand: 2 });
      const b = createDecodeSession(model, SOURCES, { expand: 2, useCache: false });
      const rng = makeRng(1);
      let tokens = new Int32Array(6).fill(1);
      let parents: Int32Array | null = null;
      for (let t = 0; t < n; t++) {
        const la = await a.step(tokens, parents);
        const lb = await b.step(tokens, parents);
        let maxDiff = 0;
        for (let i = 0; i < la.length; i++) maxDiff = Math.max(maxDiff, Math.abs(la[i] - lb[i]));
        assert.ok(maxDiff < 1e-4, `step ${t}: cached and uncached logits differ by ${maxDiff}`);
        tokens = Int32Array.from({ length: 6 }, () => 3 + Math.floor(rng() * 20));
        // each input's two rows swap or stay, as beam search would reorder them
        parents = Int32Array.from(
          { length: 6 },
          (_, r) => 2 * Math.floor(r / 2) + (rng() < 0.5 ? 0 : 1),
        );
      }
      a.dispose();
      b.dispose();
      assert.equal(backend.memoryStats().liveBuffers, before, "sessions leaked tensors");
    } finally {
      model.dispose();
    }
  }
}

Deno.test("generate() with the key/value cache equals the uncached decoder on the CPU", async () => {
  await checkCacheEqualsNoCache(CPU, VARIANTS, 8);
});

Deno.test({
  name: "generate() with the key/value cache equals the uncached decoder on WebGPU",
  ignore: NO_GPU,
  fn: async () => {
    await checkCacheEqualsNoCache(GPU!, VARIANTS.slice(0, 1), 4);
  },
});

Deno.test("generate() is deterministic, batch-invariant and costs one decoder step per token", async () => {
  const model = tinyModel(CPU, 5);
  try {
    const a = await generate(model, SOURCES, { maxNewTokens: 9 });
    const b = await generate(model, SOURCES, { maxNewTokens: 9 });
    assert.deepEqual(a, b);
    const longest = Math.max(
      ...a.sequences.map((g) => g[0].ids.length + (g[0].finished ? 1 : 0)),
    );
    assert.equal(a.steps, longest);
    for (let i = 0; i < SOURCES.length; i++) {
      const alone = await generate(model, [SOURCES[i]], { maxNewTokens: 9 });
      assert.deepEqual(alone.sequences[0][0].ids, a.sequences[i][0].ids, `input ${i}`);
    }
    // the CPU and the GPU agree
    if (GPU) {
      const gpuModel = tinyModel(GPU, 5);
      try {
        const g = await generate(gpuModel, SOURCES, { maxNewTokens: 5 });
        const c = await generate(model, SOURCES, { maxNewTokens: 5 });
        assert.deepEqual(g.sequences.map((s) => s[0].ids), c.sequences.map((s) => s[0].ids));
      } finally {
        gpuModel.dispose();
      }
    }
  } finally {
    model.dispose();
  }
});

Deno.test("generate() sampling and beam options on the model", async () => {
  const model = tinyModel(CPU, 7);
  try {
    const greedy = await generate(model, SOURCES, { maxNewTokens: 8 });
    const ids = (r: typeof greedy) => r.sequences.map((g) => g.map((s) => s.ids));
    assert.deepEqual(
      ids(await generate(model, SOURCES, { maxNewTokens: 8, strategy: "sample", topK: 1 })),
      ids(greedy),
    );
    assert.deepEqual(
      ids(await generate(model, SOURCES, { maxNewTokens: 8, strategy: "sample", topP: 1e-6 })),
      ids(greedy),
    );
    const s1 = await generate(model, SOURCES, {
      maxNewTokens: 8,
      strategy: "sample",
      temperature: 2,
      seed: 4,
      numReturnSequences: 2,
    });
    const s2 = await generate(model, SOURCES, {
      maxNewTokens: 8,
      strategy: "sample",
      temperature: 2,
      seed: 4,
      numReturnSequences: 2,
    });
    assert.deepEqual(ids(s1), ids(s2));
    assert.equal(s1.sequences[0].length, 2);
    const beam = await generate(model, SOURCES, {
      maxNewTokens: 8,
      strategy: "beam",
      numBeams: 4,
      numReturnSequences: 3,
    });
    for (const group of beam.sequences) {
      assert.equal(group.length, 3);
      for (let j = 1; j < group.length; j++) assert.ok(group[j - 1].score >= group[j].score);
    }
    const beam1 = await generate(model, SOURCES, {
      maxNewTokens: 8,
      strategy: "beam",
      numBeams: 1,
      earlyStopping: true,
    });
    assert.deepEqual(ids(beam1), ids(greedy));
    assert.equal(model.training, false);
  } finally {
    model.dispose();
  }
});

Deno.test("generateText() appends eos, decodes, and restores training mode", async () => {
  const tok = await trainBpe(["the cat sat on the mat", "a dog ran in the park"], {
    vocabSize: 40,
    minFrequency: 1,
  });
  const model = tinyModel(CPU, 2, { vocab_size: tok.vocabSize });
  try {
    model.train();
    const res = await generateText(model, tok, ["the cat", "a dog ran"], { maxNewTokens: 5 });
    assert.equal(model.training, true);
    const direct = await generate(
      model,
      [[...tok.encode("the cat"), 2], [...tok.encode("a dog ran"), 2]],
      { maxNewTokens: 5 },
    );
    for (let i = 0; i < 2; i++) {
      assert.deepEqual(res.sequences[i][0].ids, direct.sequences[i][0].ids);
      assert.equal(res.sequences[i][0].text, tok.decode(direct.sequences[i][0].ids));
    }
  } finally {
    model.dispose();
  }
});

Deno.test("generate() rejects empty inputs and out-of-range ids", async () => {
  const model = tinyModel(CPU);
  try {
    await assert.rejects(() => generate(model, [[5, 2], []]), /input 1 is empty/);
    await assert.rejects(() => generate(model, [[99, 2]]), /token id 99/);
    await assert.rejects(() => generate(model, []), /no inputs/);
  } finally {
    model.dispose();
  }
});

Deno.test({
  name: "greedyOnDevice() replays the host's greedy search: ends inside and across readback chunks",
  ignore: NO_GPU,
  fn: async () => {
    // a scripted decoder: step t gives the same logits on both paths; each row picks eos at
    // its step in `ends` (-1: never)
    const [N, V, eos] = [3, 6, 2];
    const run = async (ends: number[], max: number) => {
      const rng = makeRng(4);
      const table = Array.from({ length: max + GREEDY_READBACK_EVERY }, (_, t) => {
        const rows = Float32Array.from({ length: N * V }, () => rng() * 4 - 2);
        for (let r = 0; r < N; r++) rows[r * V + eos] = t === ends[r] ? 9 : -5;
        return rows;
      });
      let tHost = 0, tDevice = 0;
      const hostStep: StepFn = (tokens) => {
        assert.equal(tokens.length, N);
        return Promise.resolve(table[tHost++]);
      };
      const session: DecodeSession = {
        rows: N,
        vocabSize: V,
        step: hostStep,
        stepOnDevice: (ids) => {
          assert.deepEqual([ids.dtype, ...ids.shape], ["i32", N, 1]);
          return tensor(table[tDevice++], [N, V], { backend: GPU! });
        },
        dispose() {},
      };
      const opts: DecodeStepsOptions = {
        maxNewTokens: max,
        vocabSize: V,
        startTokenId: 1,
        eosTokenId: eos,
        padTokenId: 0,
      };
      const before = GPU!.memoryStats().liveBuffers;
      const device = await greedyOnDevice(session, GPU!, opts);
      const host = await decodeSteps(hostStep, N, opts);
      // (earlier tests' garbage may be finalized meanwhile: fewer is fine, more is a leak)
      assert.ok(GPU!.memoryStats().liveBuffers <= before, "greedyOnDevice() leaked tensors");
      assert.equal(device.steps, host.steps);
      device.sequences.forEach((g, r) => {
        const [d, h] = [g[0], host.sequences[r][0]];
        assert.deepEqual([d.ids, d.finished], [h.ids, h.finished], `row ${r}`);
        assert.ok(Math.abs(d.score - h.score) < 1e-5, `row ${r}: ${d.score} vs ${h.score}`);
      });
      return { device, tDevice };
    };
    // row 0 ends in the first chunk, row 1 in the second, row 2 runs to 19 (not a multiple of 8)
    let r = await run([3, 10, -1], 19);
    assert.deepEqual(r.device.sequences.map((g) => g[0].ids.length), [3, 10, 19]);
    assert.deepEqual([r.device.steps, r.tDevice], [19, 19]);
    // every row ends at step 12: 13 steps count, the second chunk's last 3 are dropped
    r = await run([5, 12, 12], 30);
    assert.deepEqual([r.device.steps, r.tDevice], [13, 2 * GREEDY_READBACK_EVERY]);
    assert.ok(r.device.sequences.every((g) => g[0].finished));
    // nothing to do: no step
    r = await run([-1, -1, -1], 0);
    assert.deepEqual([r.device.steps, r.tDevice, r.device.sequences[0][0].ids], [0, 0, []]);
  },
});

Deno.test("sampleOnDevice() and greedyOnDevice() reject penalties and sessions without a device step", async () => {
  const session: DecodeSession = {
    rows: 2,
    vocabSize: 5,
    step: () => Promise.resolve(new Float32Array(10)),
    stepOnDevice: () => {
      throw new Error("not reached");
    },
    dispose() {},
  };
  const o = opts(5, { strategy: "sample" });
  for (const run of [sampleOnDevice, greedyOnDevice]) {
    await assert.rejects(
      () => run(session, CPU, { ...o, repetitionPenalty: 1.2 }),
      /OnDevice: repetitionPenalty 1.2 needs decodeSteps/,
    );
    await assert.rejects(
      () => run(session, CPU, { ...o, noRepeatNgramSize: 2 }),
      /OnDevice: noRepeatNgramSize 2 needs decodeSteps/,
    );
    await assert.rejects(
      () => run(session, CPU, { ...o, minNewTokens: 2 }),
      /OnDevice: minNewTokens 2 needs decodeSteps/,
    );
    await assert.rejects(
      () => run({ ...session, stepOnDevice: undefined }, CPU, o),
      /OnDevice: the session has no device step/,
    );
  }
  await assert.rejects(
    () => sampleOnDevice(session, CPU, { ...o, numReturnSequences: 3 }),
    /sampleOnDevice: 2 rows are not a multiple of numReturnSequences 3/,
  );
});

Deno.test({
  name: "sampleOnDevice() replays the host's sampling: its draws, ends inside and across chunks",
  ignore: NO_GPU,
  fn: async () => {
    // a scripted decoder: step t gives the same logits on both paths; row r picks eos at its step
    // in `ends` (-1: never; eos is −∞ at the other steps, so only the draws decide the rest)
    const V = 9;
    const run = async (ends: number[], max: number, extra: Partial<DecodeStepsOptions>) => {
      const N = ends.length;
      const rng = makeRng(8);
      const table = Array.from({ length: max + GREEDY_READBACK_EVERY }, (_, t) => {
        const rows = Float32Array.from({ length: N * V }, () => rng() * 3 - 1.5);
        for (let r = 0; r < N; r++) rows[r * V + EOS] = t === ends[r] ? 40 : -Infinity;
        return rows;
      });
      let tHost = 0, tDevice = 0;
      const hostStep: StepFn = () => Promise.resolve(table[tHost++]);
      const session: DecodeSession = {
        rows: N,
        vocabSize: V,
        step: hostStep,
        stepOnDevice: (ids) => {
          assert.deepEqual([ids.dtype, ...ids.shape], ["i32", N, 1]);
          return tensor(table[tDevice++], [N, V], { backend: GPU! });
        },
        dispose() {},
      };
      const o = opts(V, { maxNewTokens: max, strategy: "sample", seed: 3, ...extra });
      const before = GPU!.memoryStats().liveBuffers;
      const device = await sampleOnDevice(session, GPU!, o);
      const k = extra.numReturnSequences ?? 1;
      const host = await decodeSteps(hostStep, N / k, o);
      assert.ok(GPU!.memoryStats().liveBuffers <= before, "sampleOnDevice() leaked tensors");
      assert.equal(device.steps, host.steps);
      assert.equal(device.sequences.length, N / k);
      device.sequences.forEach((g, i) => {
        assert.equal(g.length, k);
        g.forEach((d, j) => {
          const h = host.sequences[i][j];
          const at = `${JSON.stringify(extra)} input ${i} sequence ${j}`;
          assert.deepEqual([d.ids, d.finished], [h.ids, h.finished], at);
          assert.ok(Math.abs(d.score - h.score) < 1e-5, `${at}: ${d.score} vs ${h.score}`);
        });
      });
      return { device, tDevice };
    };
    for (
      const extra of [
        { temperature: 0.7 },
        { topK: 3 },
        { topP: 0.8, temperature: 1.3 },
        { numReturnSequences: 2, seedOffset: 5, topK: 5, topP: 0.9 },
      ]
    ) {
      // rows end in the first chunk, in the second, at a chunk's last step, or run to 19
      let r = await run([3, 10, -1, 7], 19, extra);
      assert.deepEqual(r.device.sequences.flat().map((s) => s.ids.length), [3, 10, 19, 7]);
      assert.deepEqual([r.device.steps, r.tDevice], [19, 19]);
      // every row ends by step 12: 13 steps count, the second chunk's last 3 are dropped
      r = await run([5, 12, 12, 0], 30, extra);
      assert.deepEqual([r.device.steps, r.tDevice], [13, 2 * GREEDY_READBACK_EVERY]);
      assert.ok(r.device.sequences.flat().every((s) => s.finished));
    }
    // the draws matter: another seed samples other ids
    const a = await run([-1, -1], 10, {});
    const b = await run([-1, -1], 10, { seed: 4 });
    assert.notDeepEqual(a.device.sequences, b.device.sequences);
  },
});

Deno.test({
  name: "generate() samples on the device on WebGPU: the host's ids, a readback per 8 steps",
  ignore: NO_GPU,
  fn: async () => {
    const model = tinyModel(GPU!, 5);
    const ends: number[] = []; // steps at which rows picked eos
    try {
      const cfg = model.config;
      for (
        const extra of [
          { temperature: 0.7 },
          { topK: 5 },
          { topP: 0.9 },
          { numReturnSequences: 2, seedOffset: 3, temperature: 1.5, topK: 8, topP: 0.95 },
        ]
      ) {
        const o = { maxNewTokens: 14, strategy: "sample" as const, seed: 2, ...extra };
        GPU!.dispatchStats(true);
        const device = await generate(model, SOURCES, o);
        const stats = GPU!.dispatchStats(true);
        assert.ok((stats.perOp["samplePick"] ?? 0) >= device.steps, JSON.stringify(stats.perOp));
        assert.ok(stats.readbacks <= Math.ceil(device.steps / GREEDY_READBACK_EVERY) + 1);
        const session = createDecodeSession(model, SOURCES, { expand: o.numReturnSequences ?? 1 });
        let host;
        try {
          host = await decodeSteps(session.step, SOURCES.length, {
            ...o,
            vocabSize: cfg.vocab_size,
            startTokenId: cfg.decoder_start_token_id,
            eosTokenId: cfg.eos_token_id,
            padTokenId: cfg.pad_token_id,
          });
        } finally {
          session.dispose();
        }
        const at = JSON.stringify(extra);
        assert.equal(device.steps, host.steps, at);
        assert.deepEqual(
          device.sequences.map((g) => g.map((s) => [s.ids, s.finished])),
          host.sequences.map((g) => g.map((s) => [s.ids, s.finished])),
          at,
        );
        device.sequences.flat().forEach((s, i) => {
          const h = host.sequences.flat()[i];
          assert.ok(Math.abs(s.score - h.score) < 1e-4, `${at}: ${s.score} vs ${h.score}`);
          if (s.finished) ends.push(s.ids.length);
        });
      }
      // some rows ended in the first readback chunk, some in the second
      assert.ok(ends.some((t) => t < GREEDY_READBACK_EVERY), String(ends));
      assert.ok(ends.some((t) => t >= GREEDY_READBACK_EVERY), String(ends));
    } finally {
      model.dispose();
    }
  },
});
