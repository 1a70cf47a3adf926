import assert from "node:assert/strict";
import {
  fetchTokenizerFromHub,
  type HfTokenizer,
  loadTokenizer,
  resolveTokenizer,
  saveTokenizer,
  specialTokenIds,
  tokenizerFromJson,
} from "./tokenizer.ts";
import { wordPieceJson } from "../tests/_hf_tokenizers.ts";

const DIR = new URL("../tests/testdata/tokenizer/", import.meta.url).pathname;
const TRAINED = await Deno.readTextFile(`${DIR}trained.json`);

interface RefRow {
  text: string;
  ids: number[];
  tokens: string[];
  decoded: string;
}
/** Ids and decodes of probes.json by the Rust `tokenizers` (tools/tokenizer_fixtures.mjs). */
const REFERENCE: Record<string, RefRow[]> =
  JSON.parse(await Deno.readTextFile(`${DIR}reference.json`)).tokenizers;

async function both(file: string): Promise<[string, HfTokenizer][]> {
  const json = await Deno.readTextFile(DIR + file);
  return [
    ["fast path", await loadTokenizer(DIR + file)],
    ["library", tokenizerFromJson(json, file, { fastPath: false })],
  ];
}

for (const file of ["trained.json", "trained_byte_fallback.json"]) {
  Deno.test(`loadTokenizer() gives the Rust tokenizers' ids and decodes for ${file}`, async () => {
    for (const [path, tok] of await both(file)) {
      assert.equal(tok.fastPath, path === "fast path");
      for (const row of REFERENCE[file]) {
        const ids = tok.encode(row.text);
        assert.deepEqual(ids, row.ids, `${path}: ids of ${JSON.stringify(row.text)}`);
        assert.equal(
          tok.decode(ids),
          row.decoded,
          `${path}: decode of ${JSON.stringify(row.text)}`,
        );
      }
    }
  });
}

Deno.test("loadTokenizer() gives the Rust tokenizers' ids for a GPT-2 style ByteLevel BPE", async () => {
  const [[, tok]] = await both("rust_bytelevel.json");
  assert.equal(tok.fastPath, false);
  for (const row of REFERENCE["rust_bytelevel.json"]) {
    const ids = tok.encode(row.text);
    assert.deepEqual(ids, row.ids, `ids of ${JSON.stringify(row.text)}`);
    assert.equal(tok.decode(ids), row.decoded);
  }
});

Deno.test("loadTokenizer() gives the Rust tokenizers' ids for a Rust-trained Metaspace BPE", async () => {
  // This file has no unknown token. For characters outside its vocab, @huggingface/tokenizers
  // drops them after merging while Rust drops them before, so only in-vocab texts compare.
  const pairs = await both("rust_metaspace.json");
  let compared = 0;
  for (const row of REFERENCE["rust_metaspace.json"]) {
    const known = [...row.text.normalize("NFC").replaceAll(" ", "▁")]
      .every((c) => pairs[0][1].tokenToId(c) !== undefined);
    if (!known) continue;
    compared++;
    for (const [path, tok] of pairs) {
      assert.deepEqual(tok.encode(row.text), row.ids, `${path}: ${JSON.stringify(row.text)}`);
      assert.equal(tok.decode(row.ids), row.decoded);
    }
  }
  assert.ok(compared >= 8, `only ${compared} probes compared`);
});

Deno.test("encode() adds no special tokens even when the file has a post-processor", () => {
  const obj = JSON.parse(TRAINED);
  obj.post_processor = {
    type: "TemplateProcessing",
    single: [
      { SpecialToken: { id: "<s>", type_id: 0 } },
      { Sequence: { id: "A", type_id: 0 } },
      { SpecialToken: { id: "</s>", type_id: 0 } },
    ],
    pair: [{ Sequence: { id: "A", type_id: 0 } }, { Sequence: { id: "B", type_id: 1 } }],
    special_tokens: {
      "<s>": { id: "<s>", ids: [1], tokens: ["<s>"] },
      "</s>": { id: "</s>", ids: [2], tokens: ["</s>"] },
    },
  };
  const tok = tokenizerFromJson(JSON.stringify(obj), "template.json");
  assert.equal(tok.fastPath, false);
  const plain = tokenizerFromJson(TRAINED, "trained.json");
  const ids = tok.encode("Bugün hava güzel.");
  assert.deepEqual(ids, plain.encode("Bugün hava güzel."));
  assert.ok(!ids.includes(1) && !ids.includes(2));
});

Deno.test("decode() skips special tokens and checks ids", () => {
  for (
    const tok of [tokenizerFromJson(TRAINED), tokenizerFromJson(TRAINED, "t", { fastPath: false })]
  ) {
    const ids = tok.encode("Yarın İstanbul'a gidiyorum.");
    assert.equal(tok.decode([1, ...ids, 2, 0, 0]), "Yarın İstanbul'a gidiyorum.");
    assert.equal(tok.decode([]), "");
    assert.equal(tok.decode([0, 1, 2]), "");
    assert.deepEqual(tok.encode(""), []);
    assert.throws(() => tok.decode([tok.vocabSize]), RangeError);
    assert.throws(() => tok.decode([-1]), RangeError);
    assert.throws(() => tok.decode([1.5]), TypeError);
  }
});

Deno.test("an HfTokenizer reports vocab size, specials and its JSON", () => {
  const tok = tokenizerFromJson(TRAINED, "trained.json");
  assert.equal(tok.vocabSize, Object.keys(JSON.parse(TRAINED).model.vocab).length);
  assert.deepEqual(
    [...tok.specialTokens],
    [["<pad>", 0], ["<s>", 1], ["</s>", 2], ["<unk>", 3]],
  );
  assert.equal(tok.tokenToId("<unk>"), 3);
  assert.equal(tok.idToToken(2), "</s>");
  assert.equal(tok.tokenToId("no such token"), undefined);
  assert.equal(tok.toJson(), TRAINED);
  assert.deepEqual(tok.tokenize("Bu dağ"), ["▁Bu", "▁d", "ağ"]);
});

/** [case, file text, expected message after "<file>: ", error class] */
const MALFORMED: [string, string, RegExp, ErrorConstructor][] = [
  ["empty file", "", /^invalid JSON at line 1, column 1: unexpected end of input$/, SyntaxError],
  [
    "trailing comma",
    '{\n  "model": {"type": "BPE"},\n}',
    /^invalid JSON at line 3, column 1: expected a double-quoted property name$/,
    SyntaxError,
  ],
  [
    "truncated",
    '{"model": {"type": "BPE", "vocab"',
    /^invalid JSON at line 1, column 34: unexpected end of input$/,
    SyntaxError,
  ],
  [
    "bare word",
    '{"model": nope}',
    /^invalid JSON at line 1, column 11: unexpected character "n"$/,
    SyntaxError,
  ],
  [
    "raw newline in a string",
    '{"a": "x\ny"}',
    /^invalid JSON at line 1, column 9: control character/,
    SyntaxError,
  ],
  ["not an object", "[1, 2]", /^expected a JSON object at the top level, got an array$/, TypeError],
  ["no model", '{"version": "1.0"}', /^missing "model"$/, TypeError],
  ["model not an object", '{"model": 3}', /^"model" must be an object, got a number$/, TypeError],
  [
    "unknown model type",
    '{"model": {"type": "Foo"}}',
    /^unknown model type "Foo" \(supported: BPE, WordPiece, Unigram\)$/,
    TypeError,
  ],
  ["model without type or vocab", '{"model": {}}', /^"model" has no "type"$/, TypeError],
  [
    "BPE vocab not an object",
    '{"model": {"type": "BPE", "vocab": [], "merges": []}}',
    /^"model.vocab" of a BPE model must be an object$/,
    TypeError,
  ],
  [
    "vocab id not an integer",
    '{"model": {"type": "BPE", "vocab": {"a": "x"}, "merges": []}}',
    /^"model.vocab" maps "a" to "x", not an id$/,
    TypeError,
  ],
  [
    "merges missing",
    '{"model": {"type": "BPE", "vocab": {"a": 0}}}',
    /^"model.merges" of a BPE model must be an array$/,
    TypeError,
  ],
  [
    "merge out of vocab",
    '{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [["a", "b"]]}}',
    /^"model.merges\[0\]" uses "b", which is not in the vocab$/,
    TypeError,
  ],
  [
    "bad merge",
    '{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [3]}}',
    /^"model.merges\[0\]" must be "a b" or \["a", "b"\], got 3$/,
    TypeError,
  ],
  [
    "added_tokens not an array",
    '{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "added_tokens": {}}',
    /^"added_tokens" must be an array, got a object$/,
    TypeError,
  ],
  [
    "added token without id",
    '{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "added_tokens": [{"content": "x"}]}',
    /^"added_tokens\[0\]" needs a string "content" and an integer "id"$/,
    TypeError,
  ],
  [
    "normalizer without type",
    '{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "normalizer": {}}',
    /^"normalizer" must be null or an object with a "type"$/,
    TypeError,
  ],
  [
    "unknown normalizer",
    '{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "normalizer": {"type": "Bogus"}}',
    /^Unknown Normalizer type: Bogus$/,
    TypeError,
  ],
  [
    "Unigram vocab entry",
    '{"model": {"type": "Unigram", "vocab": [["a"]]}}',
    /^"model.vocab\[0\]" must be a \[token, score\] pair$/,
    TypeError,
  ],
];

Deno.test("tokenizerFromJson() rejects malformed files with one-line messages naming the file", () => {
  for (const [name, text, message, cls] of MALFORMED) {
    assert.throws(
      () => tokenizerFromJson(text, "bad.json"),
      (e: unknown) => {
        assert.ok(e instanceof cls, `${name}: ${e}`);
        const msg = (e as Error).message;
        assert.ok(!msg.includes("\n"), `${name}: multi-line message`);
        assert.ok(msg.startsWith("bad.json: "), `${name}: ${msg}`);
        assert.match(msg.slice("bad.json: ".length), message, name);
        return true;
      },
    );
  }
});

Deno.test("loadTokenizer() names the path of a malformed file, and reads the config beside it", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/tokenizer.json`, '{"model": {"type": "Foo"}}');
    await assert.rejects(
      () => loadTokenizer(dir),
      new TypeError(
        `${dir}/tokenizer.json: unknown model type "Foo" (supported: BPE, WordPiece, Unigram)`,
      ),
    );
    await assert.rejects(() => loadTokenizer(`${dir}/missing.json`), Deno.errors.NotFound);

    await Deno.writeTextFile(`${dir}/tokenizer.json`, TRAINED);
    await Deno.writeTextFile(
      `${dir}/tokenizer_config.json`,
      '{"clean_up_tokenization_spaces": true,}',
    );
    await assert.rejects(
      () => loadTokenizer(`${dir}/tokenizer.json`),
      new SyntaxError(
        `${dir}/tokenizer_config.json: invalid JSON at line 1, column 39: expected a double-quoted property name`,
      ),
    );
    // A config asking for the legacy clean-up is honoured (by the library, not the fast path).
    await Deno.writeTextFile(
      `${dir}/tokenizer_config.json`,
      '{"clean_up_tokenization_spaces": true}',
    );
    const tok = await loadTokenizer(dir);
    assert.equal(tok.fastPath, false);
    assert.equal(tok.config.clean_up_tokenization_spaces, true);
    assert.equal(tok.decode(tok.encode("Bu ne kadar ?")), "Bu ne kadar?");
    const plain = tokenizerFromJson(TRAINED);
    assert.equal(plain.decode(plain.encode("Bu ne kadar ?")), "Bu ne kadar ?");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("saveTokenizer() writes atomically and the file loads back", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const tok = tokenizerFromJson(TRAINED);
    await saveTokenizer(tok, `${dir}/tokenizer.json`);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["tokenizer.json"]);
    assert.equal(await Deno.readTextFile(`${dir}/tokenizer.json`), TRAINED);
    assert.deepEqual((await resolveTokenizer(dir)).encode("Kedi"), tok.encode("Kedi"));
    await assert.rejects(() => resolveTokenizer("owner/not-a-file"), Deno.errors.NotFound);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** A fake Hub on 127.0.0.1 serving a few models; records each request's path and headers. */
function fakeHub() {
  const requests: { path: string; auth: string | null }[] = [];
  const files: Record<string, string> = {
    "/acme/tiny/resolve/main/tokenizer.json": TRAINED,
    "/acme/tiny/resolve/v1.0/tokenizer.json": TRAINED,
    "/acme/tiny/resolve/v1.0/tokenizer_config.json": '{"model_max_length": 128}',
    "/acme/broken/resolve/main/tokenizer.json": '{"model": {"type": "BPE", "vocab": {}',
  };
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    const path = new URL(req.url).pathname;
    requests.push({ path, auth: req.headers.get("authorization") });
    if (path.startsWith("/acme/private/")) return new Response("no", { status: 401 });
    if (path.startsWith("/acme/flaky/")) return new Response("oops", { status: 500 });
    const body = files[path];
    return body === undefined ? new Response("not found", { status: 404 }) : new Response(body);
  });
  const endpoint = `http://127.0.0.1:${server.addr.port}`;
  return { server, endpoint, requests };
}

async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string, prefix: string) => {
    for await (const e of Deno.readDir(d)) {
      if (e.isDirectory) await walk(`${d}/${e.name}`, `${prefix}${e.name}/`);
      else out.push(prefix + e.name);
    }
  };
  await walk(dir, "");
  return out.sort();
}

Deno.test("fetchTokenizerFromHub() downloads into the cache and then works offline", async () => {
  const { server, endpoint, requests } = fakeHub();
  const cacheDir = await Deno.makeTempDir();
  try {
    const tok = await fetchTokenizerFromHub("acme/tiny", { endpoint, cacheDir, token: "secret" });
    assert.deepEqual(
      tok.encode("Bugün hava güzel."),
      tokenizerFromJson(TRAINED).encode("Bugün hava güzel."),
    );
    assert.deepEqual(requests.map((r) => r.path), [
      "/acme/tiny/resolve/main/tokenizer.json",
      "/acme/tiny/resolve/main/tokenizer_config.json",
    ]);
    assert.equal(requests[0].auth, "Bearer secret");
    assert.deepEqual(await listFiles(cacheDir), ["models--acme--tiny/main/tokenizer.json"]);
    assert.equal(tok.source, `${cacheDir}/models--acme--tiny/main/tokenizer.json`);

    // Cached: no request, even with a fetch that would fail.
    const failing = () => Promise.reject(new Error("offline"));
    const again = await fetchTokenizerFromHub("acme/tiny", { endpoint, cacheDir, fetch: failing });
    assert.equal(again.toJson(), TRAINED);
    assert.equal(requests.length, 2);
    // a redirect to a host --allow-net does not name (the Hub's large-file hosts): named, with the flag
    const denied = () =>
      Promise.reject(new Deno.errors.NotCapable('Requires net access to "cdn-lfs.hf.co:443"'));
    await assert.rejects(
      () => fetchTokenizerFromHub("acme/big", { endpoint, cacheDir, fetch: denied }),
      new RegExp(
        `Cannot download ${endpoint}/acme/big/resolve/main/tokenizer\\.json: it redirects to cdn-lfs\\.hf\\.co:443, which --allow-net does not name \\(add it: --allow-net=${
          new URL(endpoint).host
        },cdn-lfs\\.hf\\.co:443\\)`,
      ),
    );
    // and resolveTokenizer takes the cached copy without the network
    const offline = await resolveTokenizer("acme/tiny", { cacheDir, allowNetwork: false });
    assert.equal(offline.toJson(), TRAINED);
    await assert.rejects(
      () => resolveTokenizer("acme/other", { cacheDir, allowNetwork: false }),
      /acme\/other: no such tokenizer file \(to fetch a Hub model's tokenizer, allow the network\)/,
    );
    assert.equal(requests.length, 2);

    // A revision with a config; force downloads again.
    const v1 = await fetchTokenizerFromHub("acme/tiny", { endpoint, cacheDir, revision: "v1.0" });
    assert.equal(v1.config.model_max_length, 128);
    await fetchTokenizerFromHub("acme/tiny", { endpoint, cacheDir, revision: "v1.0", force: true });
    assert.equal(requests.length, 6);
    assert.deepEqual(await listFiles(cacheDir), [
      "models--acme--tiny/main/tokenizer.json",
      "models--acme--tiny/v1.0/tokenizer.json",
      "models--acme--tiny/v1.0/tokenizer_config.json",
    ]);
  } finally {
    await server.shutdown();
    await Deno.remove(cacheDir, { recursive: true });
  }
});

Deno.test("fetchTokenizerFromHub() reports 404s, HTTP errors and bad files, caching nothing", async () => {
  const { server, endpoint } = fakeHub();
  const cacheDir = await Deno.makeTempDir();
  const opts = { endpoint, cacheDir, token: "" };
  try {
    await assert.rejects(
      () => fetchTokenizerFromHub("acme/missing", opts),
      new Deno.errors.NotFound(
        `Hub model "acme/missing" has no tokenizer.json at revision "main" (HTTP 404 from ${endpoint}/acme/missing/resolve/main/tokenizer.json)`,
      ),
    );
    await assert.rejects(
      () => fetchTokenizerFromHub("acme/tiny", { ...opts, revision: "nope" }),
      /has no tokenizer.json at revision "nope"/,
    );
    await assert.rejects(
      () => fetchTokenizerFromHub("acme/private", opts),
      new Error(
        `Cannot download ${endpoint}/acme/private/resolve/main/tokenizer.json: HTTP 401 Unauthorized (private or gated model: set HF_TOKEN or pass a token)`,
      ),
    );
    await assert.rejects(() => fetchTokenizerFromHub("acme/flaky", opts), /HTTP 500/);
    await assert.rejects(
      () => fetchTokenizerFromHub("acme/broken", opts),
      new SyntaxError(
        `${endpoint}/acme/broken/resolve/main/tokenizer.json: invalid JSON at line 1, column 38: unexpected end of input`,
      ),
    );
    await assert.rejects(() => fetchTokenizerFromHub("../etc", opts), TypeError);
    await assert.rejects(() => fetchTokenizerFromHub("a/b/c", opts), TypeError);
    assert.deepEqual(await listFiles(cacheDir), []);
  } finally {
    await server.shutdown();
  }
  // The server is gone: a refused connection is one line naming the URL.
  await assert.rejects(
    () => fetchTokenizerFromHub("acme/tiny", opts),
    (e: unknown) => {
      const msg = (e as Error).message;
      assert.ok(
        msg.startsWith(`Cannot download ${endpoint}/acme/tiny/resolve/main/tokenizer.json: `),
      );
      assert.ok(!msg.includes("\n"));
      return true;
    },
  );
  await Deno.remove(cacheDir, { recursive: true });
});

const BERT = ["[PAD]", "[unused0]", "[UNK]", "[CLS]", "[SEP]", "the", "cat", "sat"];
const BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"];

Deno.test("specialTokenIds(): pad, start and end of BERT, T5 and GPT-2 style tokenizers, special tokens only", () => {
  const ids = (vocab: string[], specials: string[], configJson?: string) =>
    specialTokenIds(tokenizerFromJson(wordPieceJson(vocab, specials), "t.json", { configJson }));
  assert.deepEqual(ids(BERT, BERT_SPECIALS), { pad: 0, bos: 3, eos: 4 });
  // T5: <pad> 0, </s> 1, <unk> 2, no start token
  assert.deepEqual(ids(["<pad>", "</s>", "<unk>", "the"], ["<pad>", "</s>", "<unk>"]), {
    pad: 0,
    eos: 1,
  });
  // GPT-2: only <|endoftext|>; "<pad>" in the vocabulary but not a special token is text
  assert.deepEqual(
    ids(["!", "<pad>", "the", "[UNK]", "<|endoftext|>"], ["[UNK]", "<|endoftext|>"]),
    { eos: 4 },
  );
  // webseq's own trained tokenizer: the contract's 0, 1, 2
  assert.deepEqual(specialTokenIds(tokenizerFromJson(TRAINED)), { pad: 0, bos: 1, eos: 2 });
  // a config names them (a string, or an added-token object), before the usual names
  assert.deepEqual(
    ids(
      BERT,
      BERT_SPECIALS,
      JSON.stringify({ pad_token: "[unused0]", eos_token: { content: "[CLS]" } }),
    ),
    { pad: 1, bos: 3, eos: 3 },
  );
  assert.throws(
    () => ids(BERT, BERT_SPECIALS, JSON.stringify({ pad_token: "<nope>" })),
    new TypeError('t.json: pad_token "<nope>" of its config is not in the vocabulary'),
  );
});

Deno.test("loadTokenizer() reads special_tokens_map.json beside it (its config first); saveTokenizer() keeps the config", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/tokenizer.json`, wordPieceJson(BERT, BERT_SPECIALS));
    await Deno.writeTextFile(
      `${dir}/special_tokens_map.json`,
      JSON.stringify({ pad_token: "[unused0]", eos_token: "[CLS]" }),
    );
    assert.deepEqual(specialTokenIds(await loadTokenizer(dir)), { pad: 1, bos: 3, eos: 3 });
    await Deno.writeTextFile(
      `${dir}/tokenizer_config.json`,
      JSON.stringify({ pad_token: "[PAD]", clean_up_tokenization_spaces: true }),
    );
    const tok = await loadTokenizer(dir);
    assert.deepEqual(specialTokenIds(tok), { pad: 0, bos: 3, eos: 3 });
    // the copy carries the merged config, so it decodes and names its tokens as the original
    await Deno.mkdir(`${dir}/copy`);
    await saveTokenizer(tok, `${dir}/copy/tokenizer.json`);
    const saved = JSON.parse(await Deno.readTextFile(`${dir}/copy/tokenizer_config.json`));
    assert.deepEqual(saved, {
      pad_token: "[PAD]",
      eos_token: "[CLS]",
      clean_up_tokenization_spaces: true,
    });
    const back = await loadTokenizer(`${dir}/copy`);
    assert.deepEqual(specialTokenIds(back), specialTokenIds(tok));
    assert.equal(back.decode(back.encode("the cat sat")), tok.decode(tok.encode("the cat sat")));
    // a tokenizer without a config writes none
    await Deno.mkdir(`${dir}/plain`);
    await saveTokenizer(tokenizerFromJson(TRAINED), `${dir}/plain/tokenizer.json`);
    assert.deepEqual([...Deno.readDirSync(`${dir}/plain`)].map((e) => e.name), ["tokenizer.json"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("resolveTokenizer() names a local path that is not there, even with the network allowed", async () => {
  for (const spec of ["./nope/tokenizer.json", "/tmp/no/such/dir", "tok.json", "a/b/c"]) {
    await assert.rejects(
      () => resolveTokenizer(spec, { allowNetwork: true, fetch: () => Promise.reject("no") }),
      (e: Error) =>
        e instanceof Deno.errors.NotFound && e.message === `${spec}: no such tokenizer file`,
      spec,
    );
  }
});
