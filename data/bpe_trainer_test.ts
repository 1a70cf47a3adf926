import assert from "node:assert/strict";
import {
  DEFAULT_SPECIAL_TOKENS,
  trainBpe,
  TrainedTokenizer,
  trainedTokenizerFromObject,
} from "./bpe_trainer.ts";
import { tokenizerFromJson } from "./tokenizer.ts";

const DIR = new URL("../tests/testdata/tokenizer/", import.meta.url).pathname;
/** Both sides of tests/testdata/tokenizer/corpus.tsv, in file order. */
const CORPUS: string[] = (await Deno.readTextFile(`${DIR}corpus.tsv`)).trim().split("\n").slice(1)
  .flatMap((line) => line.split("\t"));
const PROBES: string[] = JSON.parse(await Deno.readTextFile(`${DIR}probes.json`));

const MULTILINGUAL = [
  "The quick brown fox jumps over the lazy dog.",
  "Yarın İstanbul'a gidiyorum; ılık bir gün, şarkı söyleyen çocuklar, ağaç.",
  "IĞDIR ığdır İzmir izmir ISPARTA ıspanak",
  "Café crème brûlée, naïve résumé, déjà vu — Straße, São Paulo, Øresund",
  "Pizza 🍕, kahve ☕, bravo 👍🏽, aile 👨‍👩‍👧, parti 🎉🎉",
  "東京 你好 ありがとう 한국어",
  "numbers 1998 2024 3,14 10:30",
];

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

Deno.test("trainBpe() reproduces the committed trained.json (checked against Rust) on corpus.tsv", async () => {
  // tools/tokenizer_fixtures.mjs made trained.json with `webseq tokenizer train --vocab-size 400`
  // and recorded the Rust library's ids for it (data/tokenizer_test.ts checks those).
  const tok = await trainBpe(CORPUS, { vocabSize: 400 });
  assert.equal(tok.toJson(), await Deno.readTextFile(`${DIR}trained.json`));
  const fb = await trainBpe(CORPUS, { vocabSize: 700, byteFallback: true });
  assert.equal(fb.toJson(), await Deno.readTextFile(`${DIR}trained_byte_fallback.json`));
});

Deno.test("trainBpe() puts <pad>, <s>, </s>, <unk> at ids 0-3 and respects vocabSize", async () => {
  const tok = await trainBpe(CORPUS, { vocabSize: 300 });
  assert.deepEqual(DEFAULT_SPECIAL_TOKENS, ["<pad>", "<s>", "</s>", "<unk>"]);
  DEFAULT_SPECIAL_TOKENS.forEach((t, id) => assert.equal(tok.tokenToId(t), id));
  assert.equal(tok.vocabSize, 300);
  const json = JSON.parse(tok.toJson());
  assert.deepEqual(
    json.added_tokens.map((
      t: { id: number; content: string; special: boolean },
    ) => [t.id, t.content, t.special]),
    [[0, "<pad>", true], [1, "<s>", true], [2, "</s>", true], [3, "<unk>", true]],
  );
  assert.equal(json.model.unk_token, "<unk>");
  assert.equal(Object.keys(json.model.vocab).length, 300);
  // Every token is whole code points: no lone UTF-16 surrogate (emoji are never split in two).
  for (let id = 0; id < tok.vocabSize; id++) {
    assert.ok(tok.idToToken(id)!.isWellFormed(), `id ${id}`);
  }
  const fb = await trainBpe(CORPUS, { vocabSize: 600, byteFallback: true });
  assert.equal(fb.tokenToId("<0x00>"), 4);
  assert.equal(fb.tokenToId("<0xFF>"), 259);
});

Deno.test("trainBpe() rejects bad options", async () => {
  await assert.rejects(() => trainBpe(CORPUS, { vocabSize: 4 }), RangeError);
  await assert.rejects(() => trainBpe(CORPUS, { vocabSize: 200, byteFallback: true }), RangeError);
  await assert.rejects(() => trainBpe(CORPUS, { vocabSize: 100, minFrequency: 0 }), RangeError);
  await assert.rejects(() => trainBpe(CORPUS, { vocabSize: 100, unkToken: "[UNK]" }), TypeError);
  await assert.rejects(() => trainBpe([3 as unknown as string], { vocabSize: 100 }), TypeError);
});

Deno.test("encode() then decode() gives back multilingual text", async () => {
  const tok = await trainBpe([...CORPUS, ...MULTILINGUAL], { vocabSize: 500 });
  for (const text of [...MULTILINGUAL, "a  b   c", "trailing ", "x"]) {
    assert.equal(tok.decode(tok.encode(text)), text, JSON.stringify(text));
  }
  // Unknown characters become <unk> (3), which decode skips; byte fallback keeps them.
  assert.deepEqual(tok.tokenize("Ω"), ["▁", "<unk>"]);
  const fb = await trainBpe([...CORPUS, ...MULTILINGUAL], { vocabSize: 800, byteFallback: true });
  for (const text of [...MULTILINGUAL, "Unseen: Ω ж ש ∑ 🚀 𝔘𝔫𝔦𝔠𝔬𝔡𝔢"]) {
    assert.equal(fb.decode(fb.encode(text)), text, JSON.stringify(text));
  }
  assert.deepEqual(fb.tokenize("🚀"), ["▁", "<0xF0>", "<0x9F>", "<0x9A>", "<0x80>"]);
});

Deno.test("encode() normalizes to NFC, so decomposed Turkish and accents give the same ids", async () => {
  const tok = await trainBpe(CORPUS, { vocabSize: 400 });
  for (const text of ["İstanbul Ağustos", "crème brûlée déjà", "Işıl Çağrı Öğretmen"]) {
    const nfd = text.normalize("NFD");
    assert.notEqual(nfd, text);
    assert.deepEqual(tok.encode(nfd), tok.encode(text));
    assert.equal(tok.decode(tok.encode(nfd)), text);
  }
  // Turkish dotted/dotless i are four distinct characters, never case-folded together.
  const ids = ["i", "ı", "I", "İ"].map((c) => tok.tokenToId(c));
  assert.equal(new Set(ids).size, 4);
  assert.ok(ids.every((id) => id !== undefined && id > 3));
});

Deno.test("@huggingface/tokenizers loads a trained tokenizer and gives identical ids", async () => {
  for (const byteFallback of [false, true]) {
    const tok = await trainBpe([...CORPUS, ...MULTILINGUAL], {
      vocabSize: byteFallback ? 700 : 450,
      byteFallback,
    });
    const lib = tokenizerFromJson(tok.toJson(), "trained", { fastPath: false });
    assert.equal(lib.vocabSize, tok.vocabSize);
    for (const text of [...PROBES, ...MULTILINGUAL]) {
      const ids = tok.encode(text);
      assert.deepEqual(lib.encode(text), ids, JSON.stringify(text));
      assert.equal(lib.decode(ids), tok.decode(ids), JSON.stringify(text));
    }
  }
});

Deno.test("encode() equals @huggingface/tokenizers on random text", async () => {
  const tok = await trainBpe([...CORPUS, ...MULTILINGUAL], { vocabSize: 450 });
  const lib = tokenizerFromJson(tok.toJson(), "trained", { fastPath: false });
  const pieces = [
    ..."abcdeiklmnorstuyzçğıİöşü ".split(""),
    "the ",
    "ing",
    "ler",
    " ",
    "  ",
    "\t",
    "\n",
    "▁",
    "<s>",
    "</s>",
    "<pad>",
    "<",
    ">",
    "🍕",
    "👍🏽",
    "👨‍👩‍👧",
    "東京",
    "Ω",
    "e\u0301",
    "I\u0307",
    "g\u0306",
  ];
  const rand = mulberry32(7);
  for (let n = 0; n < 400; n++) {
    let text = "";
    const len = Math.floor(rand() * 12);
    for (let i = 0; i < len; i++) text += pieces[Math.floor(rand() * pieces.length)];
    const ids = tok.encode(text);
    assert.deepEqual(lib.encode(text), ids, JSON.stringify(text));
    assert.equal(lib.decode(ids), tok.decode(ids), JSON.stringify(text));
  }
});

/** The obvious trainer: recount every pair from scratch before each merge. */
function naiveMerges(texts: string[], vocabSize: number, minFrequency: number): string[][] {
  const counts = new Map<string, number>();
  for (const t of texts) {
    for (const w of t.replaceAll(" ", "▁").replace(/^(?!▁)/, "▁").split(/(?=▁)/)) {
      counts.set(w, (counts.get(w) ?? 0) + 1);
    }
  }
  const vocab: string[] = [...DEFAULT_SPECIAL_TOKENS];
  const chars = new Set<string>();
  for (const w of counts.keys()) for (const c of w) chars.add(c);
  vocab.push(...[...chars].sort((a, b) => a.codePointAt(0)! - b.codePointAt(0)!));
  const words = [...counts].map(([w, c]) => ({
    syms: Array.from(w, (ch) => vocab.indexOf(ch)),
    c,
  }));
  const merges: string[][] = [];
  while (vocab.length < vocabSize) {
    const pairs = new Map<string, number>();
    for (const { syms, c } of words) {
      for (let i = 0; i + 1 < syms.length; i++) {
        const k = `${syms[i]},${syms[i + 1]}`;
        pairs.set(k, (pairs.get(k) ?? 0) + c);
      }
    }
    let best: [number, number] | null = null;
    let bestCount = 0;
    for (const [k, c] of pairs) {
      const [a, b] = k.split(",").map(Number);
      if (
        c > bestCount ||
        (c === bestCount && best && (a < best[0] || (a === best[0] && b < best[1])))
      ) {
        best = [a, b];
        bestCount = c;
      }
    }
    if (best === null || bestCount < minFrequency) break;
    const [a, b] = best;
    const merged = vocab[a] + vocab[b];
    let n = vocab.indexOf(merged);
    if (n < 0) n = vocab.push(merged) - 1;
    merges.push([vocab[a], vocab[b]]);
    for (const w of words) {
      const out: number[] = [];
      for (let i = 0; i < w.syms.length; i++) {
        if (w.syms[i] === a && w.syms[i + 1] === b) {
          out.push(n);
          i++;
        } else out.push(w.syms[i]);
      }
      w.syms = out;
    }
  }
  return merges;
}

Deno.test("trainBpe() learns the same merges as a trainer that recounts every pair", async () => {
  const rand = mulberry32(3);
  const syllables = ["a", "aa", "ab", "ba", "ı", "ış", "İs", "ta", "n", "bul", "😀", "ğ"];
  const texts: string[] = [];
  for (let i = 0; i < 300; i++) {
    const words: string[] = [];
    for (let j = 0; j < 1 + Math.floor(rand() * 6); j++) {
      let w = "";
      for (let k = 0; k < 1 + Math.floor(rand() * 4); k++) {
        w += syllables[Math.floor(rand() * syllables.length)];
      }
      words.push(w);
    }
    texts.push(words.join(" "));
  }
  for (const minFrequency of [1, 3]) {
    const tok = await trainBpe(texts, { vocabSize: 120, minFrequency });
    assert.deepEqual(
      tok.merges,
      naiveMerges(texts, 120, minFrequency),
      `minFrequency ${minFrequency}`,
    );
    assert.ok(tok.merges.length > 40);
  }
});

Deno.test("trainBpe() accepts async iterables and reports progress", async () => {
  async function* gen() {
    for (const t of CORPUS) yield t;
  }
  const phases: string[] = [];
  const tok = await trainBpe(gen(), { vocabSize: 400, onProgress: (p) => phases.push(p.phase) });
  assert.equal(tok.toJson(), (await trainBpe(CORPUS, { vocabSize: 400 })).toJson());
  assert.ok(phases.includes("merge"));
});

Deno.test("trainBpe() with a huge minFrequency learns no merges, and an empty corpus still works", async () => {
  const tok = await trainBpe(CORPUS, { vocabSize: 1000, minFrequency: 1e9 });
  assert.equal(tok.merges.length, 0);
  assert.equal(tok.decode(tok.encode("Bugün hava güzel.")), "Bugün hava güzel.");
  const empty = await trainBpe([], { vocabSize: 10 });
  assert.equal(empty.vocabSize, 4);
  assert.deepEqual(empty.encode("hi"), [3, 3, 3]);
});

Deno.test("trainedTokenizerFromObject() takes only files it can encode exactly", async () => {
  const tok = await trainBpe(CORPUS, { vocabSize: 400 });
  const obj = JSON.parse(tok.toJson());
  assert.ok(trainedTokenizerFromObject(obj) instanceof TrainedTokenizer);
  // deno-lint-ignore no-explicit-any
  const variants: ((o: Record<string, any>) => void)[] = [
    (o) => (o.normalizer = { type: "NFKC" }),
    (o) => (o.pre_tokenizer.prepend_scheme = "first"),
    (o) => (o.decoder = null),
    (o) => (o.model.fuse_unk = true),
    (o) => (o.model.continuing_subword_prefix = "##"),
    (o) => (o.added_tokens[0].normalized = true),
    (o) => (o.model.merges = [["a", "▁b"], ...o.model.merges]),
    (o) => (o.post_processor = { type: "ByteLevel" }),
  ];
  for (const change of variants) {
    const o = structuredClone(obj);
    change(o);
    assert.equal(trainedTokenizerFromObject(o), null, change.toString());
  }
});

const DIGIT_TEXTS = [
  "Tarih: 12 Mart 2021, saat 09:45",
  "48321 67",
  "₁₂ ٣٤ 1.5e10",
  "a1b a1b2c3 x9 9x 007 -3,14 +90 %50 5🍕 🍕5 👍🏽12",
  "Sipariş no. 2024-000123, tutar 1.250,75 TL; tel: (0212) 555 44 33",
  "  12  34 ",
  "ＡＢ１２ ①② Ⅻ ¹²³ ٠١٢ ०१२",
  "٣٤ ٣٤ ٣٤ ०१२ ०१२ १२",
];

Deno.test("trainBpe() with splitDigits writes Sequence[Metaspace, Digits] and never joins a digit to anything", async () => {
  const texts = [...CORPUS, ...MULTILINGUAL, ...DIGIT_TEXTS, ...Array(20).fill("a1b 2021 2021 ٣٤")];
  const tok = await trainBpe(texts, { vocabSize: 450, splitDigits: true });
  assert.equal(tok.splitDigits, true);
  const json = JSON.parse(tok.toJson());
  assert.deepEqual(json.pre_tokenizer, {
    type: "Sequence",
    pretokenizers: [
      { type: "Metaspace", replacement: "▁", prepend_scheme: "always", split: true },
      { type: "Digits", individual_digits: true },
    ],
  });
  assert.deepEqual(json.decoder.type, "Metaspace");
  for (const d of "0123456789") assert.ok(tok.tokenToId(d) !== undefined, d);
  for (let id = 0; id < tok.vocabSize; id++) {
    const t = tok.idToToken(id)!;
    assert.ok(!/[0-9]/.test(t) || /^[0-9]$/.test(t), `token ${JSON.stringify(t)}`);
  }
  for (const [a, b] of tok.merges) assert.ok(!/[0-9]/.test(a + b), `merge ${a} ${b}`);
  // Without the option the same corpus learns digit merges (so the test above can fail).
  const plain = await trainBpe(texts, { vocabSize: 450 });
  assert.ok(plain.merges.some(([a, b]) => /[0-9]/.test(a + b)));
  assert.equal(JSON.parse(plain.toJson()).pre_tokenizer.type, "Metaspace");
  // The library splits "▁48321" into ▁ 4 8 3 2 1 and "▁a1b" into ▁a 1 b; so does encode().
  const lib = tokenizerFromJson(tok.toJson(), "trained", { fastPath: false });
  for (
    const [text, tokens] of [
      ["48321", ["▁", "4", "8", "3", "2", "1"]],
      ["a1b", ["▁a", "1", "b"]],
    ] as const
  ) {
    assert.deepEqual(tok.tokenize(text), tokens, text);
    assert.deepEqual(lib.tokenize(text), tokens, text);
  }
  // Only ASCII 0-9 are split, as `\d` in the library's `[^\d]+|\d`: Arabic-Indic ٣٤ may merge.
  assert.ok(tok.merges.some(([a, b]) => a + b === "▁٣٤" || a + b === "٣٤"));
});

Deno.test("trainBpe() with splitDigits has every digit 0-9, seen in the texts or not, even when room is short", async () => {
  // no 7, 8 or 9 in the texts: they still encode as themselves, not <unk>
  const texts = Array(5).fill("room 101 and 2345 or 6 abc");
  const tok = await trainBpe(texts, { vocabSize: 60, splitDigits: true });
  for (const d of "0123456789") assert.ok(tok.tokenToId(d) !== undefined, d);
  assert.deepEqual(tok.tokenize("987"), ["▁", "9", "8", "7"]);
  // 4 specials + 10 digits leave 2 places: the alphabet is kept whole all the same (as Hugging
  // Face's BpeTrainer keeps it), the vocab larger than asked, and nothing merges
  const short = await trainBpe(texts, { vocabSize: 16, splitDigits: true });
  const alphabet = new Set("▁roomandbc0123456789");
  assert.equal(short.vocabSize, 4 + alphabet.size);
  assert.equal(short.merges.length, 0);
  for (const ch of alphabet) assert.ok(short.tokenToId(ch) !== undefined, ch);
  // limitAlphabet keeps the digits and the most frequent others
  const limited = await trainBpe(texts, { vocabSize: 16, splitDigits: true, limitAlphabet: 12 });
  assert.equal(limited.vocabSize, 16);
  for (const d of "0123456789") assert.ok(limited.tokenToId(d) !== undefined, d);
  // no room for the ten digits: refused
  await assert.rejects(
    () => trainBpe(texts, { vocabSize: 14, splitDigits: true }),
    new RangeError("vocabSize must be an integer above 14 (the special and digit tokens), got 14"),
  );
  // without the option only the digits seen are tokens
  const plain = await trainBpe(texts, { vocabSize: 60 });
  assert.equal(plain.tokenToId("9"), undefined);
});

Deno.test("encode() with splitDigits equals @huggingface/tokenizers and round-trips", async () => {
  for (const byteFallback of [false, true]) {
    const tok = await trainBpe([...CORPUS, ...MULTILINGUAL, ...DIGIT_TEXTS], {
      vocabSize: byteFallback ? 700 : 450,
      byteFallback,
      splitDigits: true,
    });
    const lib = tokenizerFromJson(tok.toJson(), "trained", { fastPath: false });
    const fast = tokenizerFromJson(tok.toJson(), "trained");
    assert.equal(fast.fastPath, true);
    for (const text of [...PROBES, ...MULTILINGUAL, ...DIGIT_TEXTS]) {
      const ids = tok.encode(text);
      assert.deepEqual(lib.encode(text), ids, JSON.stringify(text));
      assert.deepEqual(fast.encode(text), ids, JSON.stringify(text));
      assert.equal(lib.decode(ids), tok.decode(ids), JSON.stringify(text));
    }
    // decode(encode(text)) gives back the text (characters outside the alphabet aside).
    for (const text of [...MULTILINGUAL, ...DIGIT_TEXTS]) {
      const nfc = text.normalize("NFC");
      const known = byteFallback || [...nfc].every((c) => c === " " || tok.tokenToId(c));
      if (known && !text.startsWith(" ")) {
        assert.equal(tok.decode(tok.encode(text)), nfc, JSON.stringify(text));
      }
    }
    const pieces = [
      ..."0123456789abcçğıİ .,:-+%",
      "12",
      "▁",
      "<s>",
      "🍕",
      "٣",
      "₁",
      "１",
      "e\u0301",
    ];
    const rand = mulberry32(11);
    for (let n = 0; n < 400; n++) {
      let text = "";
      const len = Math.floor(rand() * 14);
      for (let i = 0; i < len; i++) text += pieces[Math.floor(rand() * pieces.length)];
      const ids = tok.encode(text);
      assert.deepEqual(lib.encode(text), ids, JSON.stringify(text));
      assert.equal(lib.decode(ids), tok.decode(ids), JSON.stringify(text));
    }
  }
});

Deno.test("trainedTokenizerFromObject() takes the splitDigits shape and only that Sequence", async () => {
  const tok = await trainBpe([...CORPUS, ...DIGIT_TEXTS], { vocabSize: 400, splitDigits: true });
  const obj = JSON.parse(tok.toJson());
  const back = trainedTokenizerFromObject(obj);
  assert.ok(back instanceof TrainedTokenizer && back.splitDigits);
  assert.equal(back.toJson(), tok.toJson());
  // A file with digit merges (not made by trainBpe): the Digits split still wins, as in the library.
  const merged = structuredClone(obj);
  for (const t of ["12", "a1"]) merged.model.vocab[t] = Object.keys(merged.model.vocab).length;
  merged.model.merges.unshift(["1", "2"], ["a", "1"]);
  const fast = tokenizerFromJson(JSON.stringify(merged), "merged");
  const lib = tokenizerFromJson(JSON.stringify(merged), "merged", { fastPath: false });
  assert.equal(fast.fastPath, true);
  for (const text of [...DIGIT_TEXTS, "12 a12 1212"]) {
    assert.deepEqual(fast.encode(text), lib.encode(text), text);
  }
  assert.deepEqual(fast.tokenize("a12"), ["▁a", "1", "2"]);
  // deno-lint-ignore no-explicit-any
  const variants: ((o: Record<string, any>) => void)[] = [
    (o) => (o.pre_tokenizer.pretokenizers[1].individual_digits = false),
    (o) => o.pre_tokenizer.pretokenizers.reverse(),
    (o) => o.pre_tokenizer.pretokenizers.push({ type: "Punctuation" }),
    (o) => (o.pre_tokenizer.pretokenizers[0].prepend_scheme = "first"),
    (o) => (o.pre_tokenizer = { type: "Digits", individual_digits: true }),
  ];
  for (const change of variants) {
    const o = structuredClone(obj);
    change(o);
    assert.equal(trainedTokenizerFromObject(o), null, change.toString());
  }
});

Deno.test("encode() of long unbroken words (merged through a heap) equals @huggingface/tokenizers", async () => {
  const tok = await trainBpe(CORPUS, { vocabSize: 400 });
  const lib = tokenizerFromJson(tok.toJson(), "trained", { fastPath: false });
  const letters = "abcdeilmnorstuy";
  let s = 7;
  const rand = () => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  for (const len of [65, 300, 3000]) {
    const word = Array.from({ length: len }, () => letters[Math.floor(rand() * letters.length)])
      .join("");
    // repeated pieces too (ties between equal pairs: the leftmost first)
    for (const w of [word, "aaaa".repeat(len / 4 | 0), "ab".repeat(len)]) {
      assert.deepEqual(tok.encode(w), lib.encode(w), `${w.slice(0, 20)}… (${w.length})`);
      assert.deepEqual(tok.encode(`x ${w} y`), lib.encode(`x ${w} y`));
    }
  }
});
