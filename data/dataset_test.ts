import assert from "node:assert/strict";
import {
  type Batch,
  collate,
  DataLoader,
  encodePrefix,
  type Example,
  TokenizerDataset,
} from "./dataset.ts";
import { trainBpe } from "./bpe_trainer.ts";
import type { TextTokenizer } from "./tokenizer_types.ts";

/** A character tokenizer: "a" → 4, "b" → 5, ...; other characters are dropped. */
const charTokenizer: TextTokenizer = {
  vocabSize: 30,
  encode: (text) => [...text].filter((c) => c >= "a" && c <= "z").map((c) => c.charCodeAt(0) - 93),
  decode: (ids) => ids.map((id) => String.fromCharCode(id + 93)).join(""),
  tokenToId: (t) => (t.length === 1 && t >= "a" && t <= "z" ? t.charCodeAt(0) - 93 : undefined),
  toJson: () => "{}",
};

const ints = (a: Int32Array) => Array.from(a);

function fields(e: Example): Record<string, number[]> {
  return {
    encoderInputIds: ints(e.encoderInputIds),
    encoderAttentionMask: ints(e.encoderAttentionMask),
    decoderInputIds: ints(e.decoderInputIds),
    decoderAttentionMask: ints(e.decoderAttentionMask),
    decoderTargetIds: ints(e.decoderTargetIds),
  };
}

/** CONTRACTS.md §4 written out literally on plain arrays: the reference for get(). */
function reference(
  src: number[],
  tgt: number[],
  L: number,
  start: number,
  eos: number,
  pad: number,
): Record<string, number[]> {
  const keepEos = (ids: number[]) => ids.length <= L ? ids : [...ids.slice(0, L - 1), eos];
  const padTo = (ids: number[], v: number) => [...ids, ...Array(L - ids.length).fill(v)];
  const mask = (ids: number[]) => padTo(ids.map(() => 1), 0);
  const enc = keepEos([...src, eos]);
  const decIn = [start, ...tgt].slice(0, L);
  const decTgt = keepEos([...tgt, eos]);
  return {
    encoderInputIds: padTo(enc, pad),
    encoderAttentionMask: mask(enc),
    decoderInputIds: padTo(decIn, pad),
    decoderAttentionMask: mask(decIn),
    decoderTargetIds: padTo(decTgt, pad),
  };
}

Deno.test("TokenizerDataset.get() builds the five fields with eos, start token, masks and padding", () => {
  const ds = new TokenizerDataset(["ab"], ["cde"], charTokenizer, { maxLength: 6 });
  assert.deepEqual(fields(ds.get(0)), {
    encoderInputIds: [4, 5, 2, 0, 0, 0],
    encoderAttentionMask: [1, 1, 1, 0, 0, 0],
    decoderInputIds: [1, 6, 7, 8, 0, 0],
    decoderAttentionMask: [1, 1, 1, 1, 0, 0],
    decoderTargetIds: [6, 7, 8, 2, 0, 0],
  });
  assert.equal(ds.truncatedCount, 0);
});

Deno.test("TokenizerDataset.get() truncates keeping eos and counts the pairs cut", () => {
  const ds = new TokenizerDataset(
    ["abcdefgh", "abcde", "a", "abcdef"],
    ["abcdefgh", "abcde", "abcdef", "b"],
    charTokenizer,
    { maxLength: 6 },
  );
  assert.deepEqual(fields(ds.get(0)), {
    encoderInputIds: [4, 5, 6, 7, 8, 2],
    encoderAttentionMask: [1, 1, 1, 1, 1, 1],
    decoderInputIds: [1, 4, 5, 6, 7, 8],
    decoderAttentionMask: [1, 1, 1, 1, 1, 1],
    decoderTargetIds: [4, 5, 6, 7, 8, 2],
  });
  // Five tokens + eos fit exactly: nothing is cut.
  assert.deepEqual(ints(ds.get(1).encoderInputIds), [4, 5, 6, 7, 8, 2]);
  assert.deepEqual(ints(ds.get(1).decoderTargetIds), [4, 5, 6, 7, 8, 2]);
  assert.equal(ds.truncatedCount, 3); // pairs 0, 2 and 3
  assert.equal(ds.truncatedSourceCount, 2);
  assert.equal(ds.truncatedTargetCount, 2);
  assert.equal(ds.sourceLength(0), 6);
  assert.equal(ds.targetLength(3), 2);
});

Deno.test("TokenizerDataset.get() equals the contract's reference on random pairs and ids", () => {
  let state = 12345;
  const rand = (n: number) => {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    return state % n;
  };
  for (let trial = 0; trial < 300; trial++) {
    const L = 1 + rand(9);
    const [start, eos, pad] = [rand(5) + 40, rand(5) + 50, rand(2) === 0 ? 0 : 60 + rand(5)];
    const src = Array.from({ length: rand(12) }, () => 4 + rand(26));
    const tgt = Array.from({ length: rand(12) }, () => 4 + rand(26));
    const ds = new TokenizerDataset([src], [tgt], null, {
      maxLength: L,
      decoderStartTokenId: start,
      eosTokenId: eos,
      padTokenId: pad,
    });
    assert.deepEqual(fields(ds.get(0)), reference(src, tgt, L, start, eos, pad), `trial ${trial}`);
    assert.equal(ds.truncatedCount, src.length >= L || tgt.length >= L ? 1 : 0);
  }
});

Deno.test("TokenizerDataset.fromPairs() takes text and pre-tokenized pairs", () => {
  const ds = TokenizerDataset.fromPairs(
    [
      { kind: "text", source: "ab", target: "c" },
      { kind: "ids", sourceIds: [100, 101], targetIds: [102] },
    ],
    charTokenizer,
    { maxLength: 4 },
  );
  assert.equal(ds.length, 2);
  assert.deepEqual(ints(ds.get(1).encoderInputIds), [100, 101, 2, 0]);
  assert.deepEqual(ints(ds.get(1).decoderInputIds), [1, 102, 0, 0]);
  assert.deepEqual(ints(ds.get(1).decoderTargetIds), [102, 2, 0, 0]);
  const idsOnly = TokenizerDataset.fromPairs(
    [{ kind: "ids", sourceIds: [7], targetIds: [8] }],
    null,
    {
      maxLength: 3,
    },
  );
  assert.deepEqual(ints(idsOnly.get(0).encoderInputIds), [7, 2, 0]);
  assert.throws(
    () =>
      TokenizerDataset.fromPairs([{ kind: "text", source: "a", target: "b" }], null, {
        maxLength: 3,
      }),
    /source 0 is text but no tokenizer was given/,
  );
  assert.throws(() => new TokenizerDataset([[1.5]], [[1]], null, { maxLength: 3 }), TypeError);
  assert.throws(() => new TokenizerDataset(["a"], [], charTokenizer, { maxLength: 3 }), TypeError);
  assert.throws(() => new TokenizerDataset([], [], null, { maxLength: 0 }), RangeError);
  assert.throws(
    () => new TokenizerDataset([[3]], [[4]], null, { maxLength: 3, padTokenId: 2 }),
    /padTokenId \(2\) must differ from eosTokenId/,
  );
  assert.throws(() => ds.get(2), RangeError);
});

function batchFields(b: Batch): Record<string, number[] | number> {
  return {
    B: b.B,
    S: b.S,
    T: b.T,
    targetTokens: b.targetTokens,
    ...fields(b),
  };
}

Deno.test("collate() trims to the batch's longest sequences and equals dataset.batch()", () => {
  const ds = new TokenizerDataset(["ab", "abcd", "a"], ["a", "abc", "ab"], charTokenizer, {
    maxLength: 8,
  });
  const batch = collate([ds.get(0), ds.get(2)]);
  assert.deepEqual(batchFields(batch), {
    B: 2,
    S: 3,
    T: 3,
    targetTokens: 5,
    encoderInputIds: [4, 5, 2, 4, 2, 0],
    encoderAttentionMask: [1, 1, 1, 1, 1, 0],
    decoderInputIds: [1, 4, 0, 1, 4, 5],
    decoderAttentionMask: [1, 1, 0, 1, 1, 1],
    decoderTargetIds: [4, 2, 0, 4, 5, 2],
  });
  assert.deepEqual(batchFields(ds.batch([0, 2])), batchFields(batch));
  const all = [0, 1, 2];
  assert.deepEqual(batchFields(ds.batch(all)), batchFields(collate(all.map((i) => ds.get(i)))));
  const rounded = collate(all.map((i) => ds.get(i)), { padToMultipleOf: 4 });
  assert.deepEqual([rounded.S, rounded.T], [8, 4]);
  assert.deepEqual(batchFields(ds.batch(all, { padToMultipleOf: 4 })), batchFields(rounded));
  const full = collate([ds.get(0)], { padToMaxLength: true });
  assert.deepEqual([full.S, full.T], [8, 8]);
  assert.deepEqual(ints(full.encoderInputIds), ints(ds.get(0).encoderInputIds));
});

function letters(n: number, seed: number): string {
  return Array.from({ length: n }, (_, k) => String.fromCharCode(97 + ((seed + k) % 26))).join("");
}

function makeDataset(n: number): TokenizerDataset {
  const sources = Array.from({ length: n }, (_, i) => letters(1 + ((i * 7) % 23), i));
  // Target lengths follow source lengths, as in translation.
  const targets = Array.from({ length: n }, (_, i) => letters(1 + ((i * 7) % 23) + (i % 4), i + 3));
  return new TokenizerDataset(sources, targets, charTokenizer, { maxLength: 32 });
}

/** Each batch row's source ids, as a string (identifies the example). */
function rowsOf(batch: Batch): string[] {
  const rows: string[] = [];
  for (let b = 0; b < batch.B; b++) {
    rows.push(ints(batch.encoderInputIds.subarray(b * batch.S, (b + 1) * batch.S)).join(","));
  }
  return rows;
}

Deno.test("DataLoader shuffles each epoch into a seeded permutation", () => {
  const ds = makeDataset(103);
  const loader = new DataLoader(ds, { batchSize: 10, seed: 7 });
  assert.equal(loader.length, 11);
  const e0 = loader.epochBatches(0);
  const e1 = loader.epochBatches(1);
  for (const plan of [e0, e1]) {
    assert.deepEqual(plan.flat().sort((a, b) => a - b), Array.from({ length: 103 }, (_, i) => i));
    assert.deepEqual(plan.map((b) => b.length), [...Array(10).fill(10), 3]);
  }
  assert.notDeepEqual(e0, e1);
  assert.deepEqual(new DataLoader(ds, { batchSize: 10, seed: 7 }).epochBatches(1), e1);
  assert.notDeepEqual(new DataLoader(ds, { batchSize: 10, seed: 8 }).epochBatches(0), e0);
  const ordered = new DataLoader(ds, { batchSize: 10, shuffle: false, dropLast: true });
  assert.equal(ordered.length, 10);
  assert.deepEqual(ordered.epochBatches(3).flat(), Array.from({ length: 100 }, (_, i) => i));
  // Iteration gives the planned batches.
  const got = [...loader].map((b) => rowsOf(b));
  assert.deepEqual(got, e0.map((idx) => rowsOf(ds.batch(idx))));
  assert.deepEqual(loader.state(), { epoch: 1, position: 0, seed: 7 });
});

Deno.test("DataLoader dropLast with length buckets drops other examples each epoch, not the longest", () => {
  // sources of lengths 1..10: a sorted chunk would always cut the two longest
  const srcs = Array.from({ length: 10 }, (_, i) => Array(i + 1).fill(5));
  const ds = new TokenizerDataset(srcs, srcs.map(() => [6]), null, { maxLength: 16 });
  const dl = new DataLoader(ds, { batchSize: 4, dropLast: true, bucketByLength: true, seed: 1 });
  const seen = new Set<number>();
  for (let e = 0; e < 20; e++) {
    const plan = dl.epochBatches(e);
    assert.deepEqual(plan.map((b) => b.length), [4, 4]);
    for (const i of plan.flat()) seen.add(i);
  }
  assert.equal(
    seen.size,
    10,
    `examples never used: ${[...Array(10).keys()].filter((i) => !seen.has(i))}`,
  );
});

Deno.test("DataLoader resumes mid-epoch from state() exactly", () => {
  const ds = makeDataset(57);
  const opts = { batchSize: 4, seed: 3, bucketByLength: true, bucketSize: 3 };
  const straight = new DataLoader(ds, opts);
  const all: string[][] = [];
  for (let e = 0; e < 3; e++) for (const b of straight) all.push(rowsOf(b));
  assert.equal(all.length, 3 * 15);

  const first = new DataLoader(ds, opts);
  const seen: string[][] = [];
  for (const b of first) seen.push(rowsOf(b));
  for (const b of first) {
    seen.push(rowsOf(b));
    if (seen.length === 15 + 6) break;
  }
  const saved = first.state();
  assert.deepEqual(saved, { epoch: 1, position: 6, seed: 3 });
  const resumed = new DataLoader(ds, { ...opts, seed: 999 });
  resumed.restore(JSON.parse(JSON.stringify(saved)));
  for (const b of resumed) seen.push(rowsOf(b));
  for (const b of resumed) seen.push(rowsOf(b));
  assert.deepEqual(seen, all);
  assert.throws(() => resumed.restore({ epoch: 0, position: 16, seed: 3 }), RangeError);
  assert.throws(() => resumed.restore({ epoch: -1, position: 0, seed: 3 }), RangeError);
});

Deno.test("DataLoader length bucketing keeps batches random but padding small", () => {
  const ds = makeDataset(2000);
  const padding = (loader: DataLoader) => {
    let pad = 0;
    for (const b of loader) {
      pad += b.B * (b.S + b.T) - b.encoderAttentionMask.reduce((s, v) => s + v, 0) - b.targetTokens;
    }
    return pad;
  };
  const plain = new DataLoader(ds, { batchSize: 16, seed: 1 });
  const bucketed = new DataLoader(ds, { batchSize: 16, seed: 1, bucketByLength: true });
  const plan = bucketed.epochBatches(0);
  assert.deepEqual(plan.flat().sort((a, b) => a - b), Array.from({ length: 2000 }, (_, i) => i));
  assert.equal(plan.length, 125);
  assert.ok(plan.slice(0, -1).every((b) => b.length === 16));
  // Batch order is shuffled: batch lengths do not just rise through each chunk.
  const keys = plan.map((b) => ds.sourceLength(b[0]));
  assert.ok(keys.some((k, i) => i > 0 && k < keys[i - 1]));
  assert.notDeepEqual(
    plan,
    new DataLoader(ds, { batchSize: 16, seed: 2, bucketByLength: true }).epochBatches(0),
  );
  const [p, q] = [padding(plain), padding(bucketed)];
  assert.ok(q * 4 < p, `bucketed padding ${q} vs plain ${p}`);
});

Deno.test("encodePrefix() cuts a text past what maxTokens can reach: the kept ids are the whole text's, and a long unbroken word stays fast", async () => {
  const tok = await trainBpe(
    Array(20).fill("the quick brown fox jumps over the lazy dog again and again"),
    { vocabSize: 120 },
  );
  const words = Array.from({ length: 3000 }, (_, i) => ["the", "quick", "fox", "dog"][i % 4]);
  const long = words.join(" ");
  const full = tok.encode(long);
  const r = encodePrefix(tok, long, 64);
  assert.ok(r.cut && r.ids.length >= 64 && r.ids.length < full.length);
  assert.deepEqual(r.ids.slice(0, 64), full.slice(0, 64));
  // short texts are encoded whole
  assert.deepEqual(encodePrefix(tok, "the lazy dog", 64), {
    ids: tok.encode("the lazy dog"),
    cut: false,
  });
  // 2 million characters without a space (whole, quadratic BPE would take days: this test would
  // not end)
  const word = encodePrefix(tok, "thequickbrownfox".repeat(125_000), 16);
  assert.ok(word.cut && word.ids.length >= 15);
  // a prefix short of tokens (a normalizer drops the spaces it holds) is cut longer, up to the
  // whole text: nothing lost
  const dropping: TextTokenizer = {
    vocabSize: tok.vocabSize,
    encode: (t) => tok.encode(t.replace(/ +/g, " ").trim()),
    decode: (ids) => tok.decode(ids),
    tokenToId: (t) => tok.tokenToId(t),
    toJson: () => tok.toJson(),
  };
  const spaced = " ".repeat(3000) + long;
  const p = encodePrefix(dropping, spaced, 16);
  assert.ok(p.cut && p.ids.length >= 24);
  assert.deepEqual(p.ids.slice(0, 16), dropping.encode(spaced).slice(0, 16));
  const few = " ".repeat(3000) + "the lazy dog";
  assert.deepEqual(encodePrefix(dropping, few, 16), { ids: dropping.encode(few), cut: false });
  // the dataset reports such a text truncated and keeps maxLength - 1 tokens
  const ds = new TokenizerDataset(["thequickbrownfox".repeat(125_000)], ["dog"], tok, {
    maxLength: 16,
  });
  assert.equal(ds.truncatedCount, 1);
  assert.equal(ds.sourceLength(0), 16);
});
