import assert from "node:assert/strict";
import {
  bf16ToFloat32,
  f16ToFloat32,
  float32ToBf16,
  float32ToF16,
  type LoadedTensor,
  parseSafetensors,
  readSafetensors,
  readSafetensorsHeader,
  SafetensorsError,
  type SafetensorsFile,
  serializeSafetensors,
  type TensorToWrite,
  writeSafetensors,
} from "./safetensors.ts";

const TESTDATA = new URL("../tests/testdata/safetensors/", import.meta.url);

/** The tensors of tests/testdata/safetensors/webseq_written.safetensors (read by tools/make_safetensors_fixtures.py). */
function webseqFixture(): Record<string, TensorToWrite> {
  return {
    w: {
      dtype: "F32",
      shape: [2, 3],
      data: Float32Array.from([0, 1, 2, 3, 4, 5], (i) => i * 0.5 - 1),
    },
    b: { dtype: "F32", shape: [3], data: new Float32Array([0.1, 0.2, 0.3]) },
    ids: { dtype: "I32", shape: [4], data: new Int32Array([0, -1, 2 ** 31 - 1, -(2 ** 31)]) },
    h: { dtype: "F16", shape: [6], data: new Float32Array([1, 0.1, 65504, 1e-5, -0, 70000]) },
    bh: { dtype: "BF16", shape: [4], data: new Float32Array([1, 0.1, -3e38, 1e-40]) },
    scalar: { dtype: "F32", shape: [], data: new Float32Array([-7]) },
    empty: { dtype: "F32", shape: [2, 0], data: new Float32Array(0) },
  };
}

/** Builds a file from raw header text and data bytes (n defaults to the header's byte length). */
function rawFile(
  header: string | Uint8Array,
  data: Uint8Array = new Uint8Array(0),
  n?: bigint,
): Uint8Array {
  const h = typeof header === "string" ? new TextEncoder().encode(header) : header;
  const out = new Uint8Array(8 + h.length + data.length);
  new DataView(out.buffer).setBigUint64(0, n ?? BigInt(h.length), true);
  out.set(h, 8);
  out.set(data, 8 + h.length);
  return out;
}

function headerOf(bytes: Uint8Array): string {
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  return new TextDecoder().decode(bytes.subarray(8, 8 + n));
}

function rejects(bytes: Uint8Array, fragment: string): void {
  assert.throws(
    () => parseSafetensors(bytes, { source: "bad.safetensors" }),
    (err: unknown) => {
      assert.ok(err instanceof SafetensorsError, `expected SafetensorsError, got ${err}`);
      assert.ok(err instanceof SyntaxError);
      assert.ok(err.message.startsWith("bad.safetensors: invalid safetensors file: "), err.message);
      assert.ok(!err.message.includes("\n"), "message must be one line");
      assert.ok(err.message.includes(fragment), `"${err.message}" lacks "${fragment}"`);
      return true;
    },
  );
}

function bytesOf(
  t: { buffer: ArrayBufferLike; byteOffset: number; byteLength: number },
): Uint8Array {
  return new Uint8Array(t.buffer, t.byteOffset, t.byteLength);
}

function num(v: number | string): number {
  return v === "nan" ? NaN : v === "inf" ? Infinity : v === "-inf" ? -Infinity : v as number;
}

Deno.test("serializeSafetensors() round-trips F32, I32, F16 and BF16 tensors with metadata", () => {
  const tensors = webseqFixture();
  const file = parseSafetensors(serializeSafetensors(tensors, { format: "pt", note: "héllo\n" }));
  assert.deepEqual({ ...file.metadata }, { format: "pt", note: "héllo\n" });
  assert.deepEqual(Object.keys(file.tensors).sort(), Object.keys(tensors).sort());
  for (const [name, t] of Object.entries(tensors)) {
    const got = file.tensors[name];
    assert.equal(got.dtype, t.dtype, name);
    assert.deepEqual(got.shape, t.shape, name);
    if (t.dtype === "F16") {
      assert.deepEqual(got.data, f16ToFloat32(float32ToF16(t.data as Float32Array)));
    } else if (t.dtype === "BF16") {
      assert.deepEqual(got.data, bf16ToFloat32(float32ToBf16(t.data as Float32Array)));
    } else {
      assert.deepEqual(got.data, t.data, name);
    }
  }
  assert.deepEqual([...file.tensors.h.data], [
    1,
    0.0999755859375,
    65504,
    0.000010013580322265625,
    -0,
    Infinity,
  ]);
});

Deno.test("serializeSafetensors() pads the header to 8 bytes with spaces and lays tensors out contiguously", () => {
  const bytes = serializeSafetensors(webseqFixture());
  const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  assert.equal(n % 8, 0);
  const text = headerOf(bytes);
  assert.match(text, /^\{.*\} *$/);
  const header = JSON.parse(text);
  // Reference order: F32 (by name), then I32, BF16, F16.
  assert.deepEqual(Object.keys(header), ["b", "empty", "scalar", "w", "ids", "bh", "h"]);
  let at = 0;
  for (const name of Object.keys(header)) {
    assert.equal(header[name].data_offsets[0], at, name);
    at = header[name].data_offsets[1];
  }
  assert.equal(8 + n + at, bytes.length);
});

Deno.test("serializeSafetensors() writes the same bytes as the reference Rust serializer", async () => {
  const reference = await Deno.readFile(new URL("reference_written.safetensors", TESTDATA));
  const ours = serializeSafetensors({
    "encoder.embed.weight": {
      dtype: "F32",
      shape: [3, 4],
      data: Float32Array.from({ length: 12 }, (_, i) => i * 0.25 - 1),
    },
    ids: {
      dtype: "I32",
      shape: [2, 3],
      data: Int32Array.from({ length: 6 }, (_, i) => i * 1000 - 2500),
    },
    half: {
      dtype: "F16",
      shape: [6],
      data: new Uint16Array([0x3c00, 0xc000, 0x3800, 0x7bff, 0x0001, 0x7c00]),
    },
    brain: {
      dtype: "BF16",
      shape: [2, 2],
      data: new Uint16Array([0x3f80, 0xc000, 0x4049, 0x0001]),
    },
    empty: { dtype: "F32", shape: [0, 3], data: new Float32Array(0) },
  }, { format: "pt" });
  assert.deepEqual(ours, reference);
});

Deno.test("readSafetensors() reads the reference Rust writer's file", async () => {
  const file = await readSafetensors(new URL("reference_written.safetensors", TESTDATA).pathname);
  assert.deepEqual({ ...file.metadata }, { format: "pt" });
  assert.deepEqual([...file.tensors.half.data], [1, -2, 0.5, 65504, 2 ** -24, Infinity]);
  assert.deepEqual([...file.tensors.brain.data], [1, -2, 3.140625, 2 ** -133]);
  assert.deepEqual(
    file.tensors.ids.data,
    Int32Array.from({ length: 6 }, (_, i) => i * 1000 - 2500),
  );
  assert.deepEqual(file.tensors.empty.shape, [0, 3]);
  assert.equal(file.tensors.empty.data.length, 0);
});

Deno.test("readSafetensors() reads the file PyTorch wrote, every dtype equal to torch's values", async () => {
  const file = await readSafetensors(new URL("torch_written.safetensors", TESTDATA).pathname);
  const expected: Record<string, { dtype: string; shape: number[]; values: (number | string)[] }> =
    JSON
      .parse(await Deno.readTextFile(new URL("torch_written.json", TESTDATA)));
  assert.deepEqual(Object.keys(file.tensors).sort(), Object.keys(expected).sort());
  assert.equal(file.metadata.format, "pt");
  for (const [name, want] of Object.entries(expected)) {
    const got: LoadedTensor = file.tensors[name];
    assert.equal(got.dtype, want.dtype, name);
    assert.deepEqual(got.shape, want.shape, name);
    const values = want.dtype === "I64" ? want.values.map((v) => BigInt(v)) : want.values.map(num);
    assert.deepEqual([...got.data], values, name);
  }
  assert.ok(file.tensors.half.data instanceof Float32Array);
  assert.ok(file.tensors.long.data instanceof BigInt64Array);
});

Deno.test("float32ToF16() and float32ToBf16() round exactly as torch does", async () => {
  const expected = JSON.parse(await Deno.readTextFile(new URL("torch_written.json", TESTDATA)));
  for (const [name, encode] of [["half", float32ToF16], ["bf16", float32ToBf16]] as const) {
    const source = new Float32Array(expected[name].float32_source.map(num));
    const got = [...encode(source)];
    const want: number[] = expected[name].bits;
    const decode = name === "half" ? f16ToFloat32 : bf16ToFloat32;
    for (let i = 0; i < source.length; i++) {
      // Any NaN pattern is a NaN (torch's vectorized bf16 path writes 0xffff).
      if (Number.isNaN(source[i])) assert.ok(Number.isNaN(decode(new Uint16Array([got[i]]))[0]));
      else assert.equal(got[i], want[i], `${name}: ${source[i]}`);
    }
  }
});

Deno.test("serializeSafetensors() reproduces the committed fixture that PyTorch reads", async () => {
  const path = new URL("webseq_written.safetensors", TESTDATA);
  const bytes = serializeSafetensors(webseqFixture(), { format: "pt" });
  // Regenerate with: WEBSEQ_WRITE_FIXTURES=1 deno test ... (then run tools/make_safetensors_fixtures.py)
  if (Deno.env.get("WEBSEQ_WRITE_FIXTURES") === "1") await Deno.writeFile(path, bytes);
  assert.deepEqual(bytes, await Deno.readFile(path));
});

Deno.test("writeSafetensors() writes a file that readSafetensors() and readSafetensorsHeader() read back", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/m.safetensors`;
    await writeSafetensors(path, webseqFixture(), { step: "3" });
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["m.safetensors"]);
    const file = await readSafetensors(path);
    assert.deepEqual(file.tensors.w.data, webseqFixture().w.data);
    const header = await readSafetensorsHeader(path);
    assert.equal(header.metadata.step, "3");
    assert.deepEqual(header.tensors.ids.dataOffsets, [40, 56]); // after 12 + 0 + 4 + 24 bytes of F32
    assert.equal(header.headerBytes % 8, 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("readSafetensors() names the file in the error for a corrupt file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/broken.safetensors`;
    await Deno.writeFile(path, serializeSafetensors(webseqFixture()).subarray(0, 100));
    for (const read of [readSafetensors, readSafetensorsHeader]) {
      await assert.rejects(() => read(path), (err: unknown) => {
        assert.ok(err instanceof SafetensorsError);
        assert.equal(err.file, path);
        assert.ok(err.message.startsWith(`${path}: invalid safetensors file: `), err.message);
        return true;
      });
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

const F32x4 = `{"dtype":"F32","shape":[4],"data_offsets":[0,16]}`;
const DATA16 = new Uint8Array(16);

Deno.test("parseSafetensors() accepts the minimal valid files", () => {
  assert.deepEqual(Object.keys(parseSafetensors(rawFile("{}")).tensors), []);
  assert.deepEqual(
    parseSafetensors(rawFile(`{"a":${F32x4}}   `, DATA16)).tensors.a.data,
    new Float32Array(4),
  );
  // Unaligned header (other writers need not pad): data is copied, so alignment does not matter.
  const odd = parseSafetensors(
    rawFile(
      `{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`,
      new Uint8Array([0, 0, 128, 63]),
    ),
  );
  assert.deepEqual(odd.tensors.a.data, new Float32Array([1]));
});

Deno.test("parseSafetensors() rejects a bad length prefix", () => {
  rejects(new Uint8Array(5), "5 bytes, shorter than the 8-byte header length");
  rejects(
    rawFile("{}", undefined, 2n ** 63n),
    "header length 9223372036854775808 exceeds the limit of 100000000 bytes",
  );
  rejects(
    rawFile("{}", undefined, 1000n),
    "header length 1000 runs past the end of the file (10 bytes)",
  );
  assert.throws(
    () => parseSafetensors(rawFile(`{"a":${F32x4}}`, DATA16), { maxHeaderBytes: 16 }),
    /exceeds the limit of 16 bytes/,
  );
});

Deno.test("parseSafetensors() rejects a header that is not UTF-8 or not a JSON object", () => {
  rejects(rawFile(new Uint8Array([0x7b, 0x22, 0xff, 0x22, 0x7d])), "header is not valid UTF-8");
  rejects(
    rawFile(new Uint8Array([0xef, 0xbb, 0xbf, 0x7b, 0x7d])),
    "header does not start with '{'",
  );
  rejects(rawFile(""), "header does not start with '{'");
  rejects(rawFile(" {}"), "header does not start with '{'");
  rejects(rawFile("[]"), "header does not start with '{'");
  rejects(rawFile(`{"a":`), "header is not valid JSON: unexpected end of JSON");
  rejects(rawFile(`{"a":${F32x4}} x`, DATA16), "unexpected text after the JSON value");
  rejects(rawFile(`{"a":${F32x4},}`, DATA16), "expected a string key");
  rejects(rawFile(`{"a\u0001":${F32x4}}`, DATA16), "control character in string");
  rejects(rawFile(`{"\\ud800":${F32x4}}`, DATA16), "lone surrogate");
  rejects(rawFile(`{"\\x":${F32x4}}`, DATA16), "invalid escape");
  rejects(
    rawFile(`{"__metadata__":{"k":${"[".repeat(100)}${"]".repeat(100)}}}`),
    "nesting deeper than 64",
  );
});

Deno.test("parseSafetensors() rejects duplicate keys at every level", () => {
  rejects(rawFile(`{"a":${F32x4},"a":${F32x4}}`, DATA16), `duplicate key "a"`);
  rejects(
    rawFile(`{"a":{"dtype":"F32","dtype":"F32","shape":[4],"data_offsets":[0,16]}}`, DATA16),
    `duplicate key "dtype"`,
  );
  rejects(rawFile(`{"__metadata__":{"k":"1","k":"2"}}`), `duplicate key "k"`);
  // Escapes are decoded before comparing: "\u0061" is "a".
  rejects(rawFile(`{"a":${F32x4},"\\u0061":${F32x4}}`, DATA16), `duplicate key "a"`);
});

Deno.test("parseSafetensors() rejects bad metadata and bad tensor entries", () => {
  rejects(rawFile(`{"__metadata__":{"k":1}}`), `__metadata__ "k" is not a string`);
  rejects(rawFile(`{"__metadata__":[]}`), "__metadata__ is not an object");
  rejects(rawFile(`{"a":[]}`), `tensor "a" is not an object`);
  rejects(
    rawFile(`{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16],"extra":1}}`, DATA16),
    `tensor "a" has unknown field "extra"`,
  );
  rejects(
    rawFile(`{"a":{"shape":[4],"data_offsets":[0,16]}}`, DATA16),
    `tensor "a" has no dtype string`,
  );
  rejects(
    rawFile(`{"a":{"dtype":"F31","shape":[4],"data_offsets":[0,16]}}`, DATA16),
    `unknown dtype "F31"`,
  );
  rejects(
    rawFile(`{"a":{"dtype":"F8_E4M3","shape":[16],"data_offsets":[0,16]}}`, DATA16),
    "unsupported dtype F8_E4M3",
  );
  rejects(
    rawFile(`{"a":{"dtype":"F32","shape":[-4],"data_offsets":[0,16]}}`, DATA16),
    "shape is not an array of non-negative integers",
  );
  rejects(
    rawFile(`{"a":{"dtype":"F32","shape":["4"],"data_offsets":[0,16]}}`, DATA16),
    "shape is not an array of non-negative integers",
  );
  rejects(
    rawFile(`{"a":{"dtype":"F32","data_offsets":[0,16]}}`, DATA16),
    "shape is not an array of non-negative integers",
  );
  rejects(
    rawFile(`{"a":{"dtype":"F32","shape":[4.0],"data_offsets":[0,16]}}`, DATA16),
    "header numbers must be integers",
  );
  rejects(
    rawFile(`{"a":{"dtype":"F32","shape":[4e0],"data_offsets":[0,16]}}`, DATA16),
    "header numbers must be integers",
  );
  rejects(
    rawFile(`{"a":{"dtype":"F32","shape":[99999999999999999999],"data_offsets":[0,16]}}`, DATA16),
    "integer 99999999999999999999 is too large",
  );
  rejects(
    rawFile(
      `{"a":{"dtype":"F32","shape":[1099511627776,1099511627776],"data_offsets":[0,16]}}`,
      DATA16,
    ),
    "is too large",
  );
  rejects(
    rawFile(`{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16,16]}}`, DATA16),
    "data_offsets is not a pair of non-negative integers",
  );
  rejects(
    rawFile(`{"a":{"dtype":"F32","shape":[0],"data_offsets":[16,0]}}`, DATA16),
    "data_offsets [16, 0] end before they begin",
  );
  rejects(
    rawFile(`{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}}`, DATA16),
    "shape [3] of F32 needs 12 bytes but data_offsets span 16",
  );
  rejects(
    rawFile(`{"a":{"dtype":"F16","shape":[4],"data_offsets":[0,16]}}`, DATA16),
    "shape [4] of F16 needs 8 bytes but data_offsets span 16",
  );
});

Deno.test("parseSafetensors() rejects gaps, overlaps, truncated data and trailing bytes", () => {
  const t = (b: number, e: number) =>
    `{"dtype":"U8","shape":[${e - b}],"data_offsets":[${b},${e}]}`;
  rejects(
    rawFile(`{"a":${t(4, 16)}}`, DATA16),
    `tensor "a" data_offsets [4, 16] leave a gap after byte 0`,
  );
  rejects(
    rawFile(`{"a":${t(0, 4)},"b":${t(8, 16)}}`, DATA16),
    `tensor "b" data_offsets [8, 16] leave a gap after byte 4`,
  );
  rejects(
    rawFile(`{"a":${t(0, 8)},"b":${t(4, 16)}}`, DATA16),
    `tensor "b" data_offsets [4, 16] overlap the tensor ending at byte 8`,
  );
  rejects(
    rawFile(`{"a":${t(0, 16)}}`, DATA16.subarray(0, 12)),
    "tensors need 16 data bytes but the file has 12 (truncated?)",
  );
  rejects(rawFile(`{"a":${t(0, 12)}}`, DATA16), "4 trailing bytes after the last tensor");
  rejects(rawFile(`{}`, new Uint8Array(1)), "1 trailing bytes after the last tensor");
  // Order in the header does not matter; zero-length tensors may share an offset.
  const ok = parseSafetensors(rawFile(`{"b":${t(4, 16)},"z":${t(4, 4)},"a":${t(0, 4)}}`, DATA16));
  assert.deepEqual(Object.keys(ok.tensors), ["b", "z", "a"]);
});

Deno.test("parseSafetensors() returns copies that do not alias the file buffer", () => {
  const bytes = serializeSafetensors(webseqFixture());
  const file = parseSafetensors(bytes);
  bytes.fill(0);
  assert.deepEqual(file.tensors.w.data, webseqFixture().w.data);
  assert.equal(Object.getPrototypeOf(file.tensors), null);
  const proto = parseSafetensors(serializeSafetensors({ ["__proto__"]: webseqFixture().b }));
  assert.deepEqual(Object.keys(proto.tensors), ["__proto__"]);
});

Deno.test("serializeSafetensors() refuses bad input with a TypeError naming the tensor", () => {
  const f = (t: unknown) => () => serializeSafetensors({ x: t as TensorToWrite });
  assert.throws(
    f({ dtype: "F32", shape: [3], data: new Float32Array(4) }),
    /tensor "x": shape \[3\] has 3 elements but data has 4/,
  );
  assert.throws(
    f({ dtype: "F32", shape: [2], data: new Int32Array(2) }),
    /tensor "x": dtype F32 needs a Float32Array, got Int32Array/,
  );
  assert.throws(
    f({ dtype: "I32", shape: [2], data: new Float32Array(2) }),
    /dtype I32 needs an Int32Array/,
  );
  assert.throws(
    f({ dtype: "F64", shape: [2], data: new Float32Array(2) }),
    /cannot write dtype "F64"/,
  );
  assert.throws(
    f({ dtype: "F32", shape: [-2], data: new Float32Array(2) }),
    /must hold non-negative integers/,
  );
  assert.throws(() => serializeSafetensors({ __metadata__: webseqFixture().b }), /reserved/);
  assert.throws(
    () => serializeSafetensors({}, { k: 1 as unknown as string }),
    /metadata "k": value must be a string/,
  );
});

Deno.test("f16ToFloat32() and float32ToF16() round-trip all 65536 half patterns", () => {
  const bits = Uint16Array.from({ length: 65536 }, (_, i) => i);
  const back = float32ToF16(f16ToFloat32(bits));
  for (let i = 0; i < 65536; i++) {
    const nan = (i & 0x7c00) === 0x7c00 && (i & 0x3ff) !== 0;
    if (nan) assert.ok((back[i] & 0x7c00) === 0x7c00 && (back[i] & 0x3ff) !== 0, `NaN ${i}`);
    else assert.equal(back[i], i, `pattern ${i.toString(16)}`);
  }
});

// ---------------------------------------------------------------------------
// Fuzz: random corruptions either load consistently or throw SafetensorsError.

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

function sameLayout(a: SafetensorsFile, b: SafetensorsFile): boolean {
  const ka = Object.keys(a.tensors).sort(), kb = Object.keys(b.tensors).sort();
  return ka.join("\n") === kb.join("\n") &&
    ka.every((k) =>
      a.tensors[k].dtype === b.tensors[k].dtype &&
      a.tensors[k].shape.join() === b.tensors[k].shape.join()
    );
}

Deno.test("parseSafetensors() survives 2000 random corruptions: a consistent load or a SafetensorsError", () => {
  const original = serializeSafetensors(webseqFixture(), { format: "pt" });
  const n = Number(new DataView(original.buffer).getBigUint64(0, true));
  const dataStart = 8 + n;
  const reference = parseSafetensors(original);
  const [idsBegin, idsEnd] = JSON.parse(headerOf(original)).ids.data_offsets;
  const rand = mulberry32(20240601);
  const int = (k: number) => Math.floor(rand() * k);
  const counts = { loaded: 0, rejected: 0 };
  for (let iter = 0; iter < 2000; iter++) {
    let bytes = original.slice();
    const kind = int(5);
    let dataOnly = false;
    if (kind === 0) {
      // flip 1-3 random bits anywhere (mostly in the header)
      dataOnly = true;
      for (let k = 0, m = 1 + int(3); k < m; k++) {
        const at = rand() < 0.8 ? int(dataStart) : dataStart + int(original.length - dataStart);
        bytes[at] ^= 1 << int(8);
        if (at < dataStart) dataOnly = false;
      }
    } else if (kind === 1) {
      bytes = bytes.subarray(0, int(original.length)); // strictly shorter
    } else if (kind === 2) {
      const extra = new Uint8Array(1 + int(16)).map(() => int(256));
      bytes = new Uint8Array([...bytes, ...extra]);
    } else if (kind === 3) {
      bytes[int(8)] = int(256); // length prefix
    } else {
      // replace a header byte with a JSON-significant character
      bytes[8 + int(n)] = '{}[]",:0123456789-. e'.charCodeAt(int(21));
    }
    let file: SafetensorsFile | undefined;
    try {
      file = parseSafetensors(bytes, { source: "fuzz" });
    } catch (err) {
      assert.ok(err instanceof SafetensorsError, `iteration ${iter}: ${err}`);
      assert.ok(!err.message.includes("\n"));
      counts.rejected++;
      continue;
    }
    counts.loaded++;
    assert.ok(kind !== 1 && kind !== 2, `iteration ${iter}: a truncated or extended file loaded`);
    for (const t of Object.values(file.tensors)) {
      assert.equal(t.data.length, t.shape.reduce((a, b) => a * b, 1));
    }
    if (dataOnly || bytes.every((b, i) => b === original[i])) {
      assert.ok(sameLayout(file, reference), `iteration ${iter}: data flip changed the layout`);
      assert.deepEqual(
        bytesOf(file.tensors.ids.data),
        bytes.slice(dataStart + idsBegin, dataStart + idsEnd),
      );
    }
  }
  assert.ok(counts.rejected > 1000, JSON.stringify(counts));
  assert.ok(counts.loaded > 50, JSON.stringify(counts));
});
