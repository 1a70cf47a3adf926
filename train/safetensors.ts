/**
 * A small, strict reader and writer of the safetensors format
 * (https://huggingface.co/docs/safetensors): an 8-byte little-endian header
 * length `n`, `n` bytes of UTF-8 JSON, then the raw little-endian tensor data.
 *
 * The writer mirrors the reference serializer (huggingface/safetensors
 * `prepare`): tensors ordered by descending dtype (as its `Dtype` enum orders
 * them) then by name, contiguous offsets, `__metadata__` first, compact JSON
 * padded with spaces to a multiple of 8 bytes.
 *
 * The reader checks everything the reference reader checks (header length,
 * size limit, UTF-8, JSON, dtype, shape × dtype size = byte span, offsets
 * contiguous from 0 and covering the data section exactly) and more: no
 * duplicate keys at any level, no unknown fields, integers only. Any
 * violation throws {@linkcode SafetensorsError} with a one-line message that
 * names the file; nothing is returned for a file that fails a check.
 *
 * F16 and BF16 tensors are converted to Float32Array on read.
 *
 * @example
 * ```ts
 * import { parseSafetensors, serializeSafetensors } from "@webseq/webseq";
 * const bytes = serializeSafetensors({
 *   w: { dtype: "F32", shape: [2, 2], data: new Float32Array([1, 2, 3, 4]) },
 * });
 * const file = parseSafetensors(bytes);
 * console.assert(file.tensors.w.data[3] === 4);
 * ```
 *
 * @module
 */
import { writeFileAtomic } from "./atomic.ts";

/** Element types the reader knows, with their size in bytes. */
export const DTYPE_BYTES: Readonly<Record<Dtype, number>> = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  F64: 8,
  I64: 8,
  U64: 8,
};

/** An element type this module reads (the reference's dtypes narrower than a byte, F8 and C64 are refused). */
export type Dtype =
  | "BOOL"
  | "U8"
  | "I8"
  | "I16"
  | "U16"
  | "F16"
  | "BF16"
  | "I32"
  | "U32"
  | "F32"
  | "F64"
  | "I64"
  | "U64";

/** Dtypes of the reference format that this module recognises but does not decode. */
const UNSUPPORTED_DTYPES = new Set([
  "F4",
  "F6_E2M3",
  "F6_E3M2",
  "F8_E5M2",
  "F8_E4M3",
  "F8_E8M0",
  "F8_E4M3FNUZ",
  "F8_E5M2FNUZ",
  "C64",
]);

/** Position of each dtype in the reference `Dtype` enum; the writer orders tensors by it, descending. */
const DTYPE_RANK: Readonly<Record<Dtype, number>> = {
  BOOL: 0,
  U8: 4,
  I8: 5,
  I16: 11,
  U16: 12,
  F16: 13,
  BF16: 14,
  I32: 15,
  U32: 16,
  F32: 17,
  F64: 19,
  I64: 20,
  U64: 21,
};

/** Element types the writer produces. */
export type WritableDtype = "F32" | "I32" | "F16" | "BF16";

/**
 * One tensor to write. F32 takes a Float32Array, I32 an Int32Array; F16 and
 * BF16 take either the raw 16-bit patterns (Uint16Array) or a Float32Array
 * that is rounded to nearest even.
 */
export interface TensorToWrite {
  /** Element type in the file. */
  dtype: WritableDtype;
  /** Dimensions, row-major (C order). `[]` is a scalar. */
  shape: readonly number[];
  /** Elements in row-major order; its length is the product of `shape`. */
  data: Float32Array | Int32Array | Uint16Array;
}

/** The decoded elements of a tensor (F16/BF16 decode to Float32Array). */
export type TensorData =
  | Float32Array
  | Float64Array
  | Int32Array
  | Uint32Array
  | Int16Array
  | Uint16Array
  | Int8Array
  | Uint8Array
  | BigInt64Array
  | BigUint64Array;

/** One tensor read from a file. */
export interface LoadedTensor {
  /** Element type stored in the file. */
  dtype: Dtype;
  /** Dimensions, row-major. */
  shape: number[];
  /** Elements (a fresh copy, never a view of the file buffer). */
  data: TensorData;
}

/** Header entry of one tensor, as validated. */
export interface TensorInfo {
  /** Element type stored in the file. */
  dtype: Dtype;
  /** Dimensions, row-major. */
  shape: number[];
  /** Byte range [begin, end) within the data section. */
  dataOffsets: [number, number];
}

/** A validated header: tensors (null-prototype record) and `__metadata__`. */
export interface SafetensorsHeader {
  /** Tensor entries by name. */
  tensors: Record<string, TensorInfo>;
  /** String-to-string metadata (empty when the file has none). */
  metadata: Record<string, string>;
  /** Byte length of the JSON header (the `n` of the format). */
  headerBytes: number;
}

/** A whole file: tensors by name (null-prototype record) and metadata. */
export interface SafetensorsFile {
  /** Tensors by name. */
  tensors: Record<string, LoadedTensor>;
  /** String-to-string metadata (empty when the file has none). */
  metadata: Record<string, string>;
}

/** Options of {@linkcode parseSafetensors}. */
export interface ParseOptions {
  /** Named in error messages (default "safetensors data"). */
  source?: string;
  /** Largest accepted JSON header in bytes (default 100 000 000, as the reference). */
  maxHeaderBytes?: number;
}

/** The reference implementation's header size limit. */
export const MAX_HEADER_BYTES = 100_000_000;

/** A file that is not valid safetensors. The message is one line and names the file. */
export class SafetensorsError extends SyntaxError {
  /** The file (or source label) at fault. */
  readonly file: string;
  /** What is wrong, without the file name. */
  readonly problem: string;
  /**
   * Creates the error; its message is `<file>: invalid safetensors file: <problem>`.
   *
   * @param file the file or source label
   * @param problem what is wrong, one line
   */
  constructor(file: string, problem: string) {
    super(`${file}: invalid safetensors file: ${problem}`);
    this.name = "SafetensorsError";
    this.file = file;
    this.problem = problem;
  }
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function assertLittleEndian(): void {
  if (!LITTLE_ENDIAN) throw new RangeError("safetensors: big-endian hosts are not supported");
}

// ---------------------------------------------------------------------------
// 16-bit float conversions

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** Decodes IEEE half-precision bit patterns to float32. */
export function f16ToFloat32(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  const outBits = new Uint32Array(out.buffer);
  for (let i = 0; i < bits.length; i++) {
    const h = bits[i];
    const sign = (h & 0x8000) << 16;
    const exp = (h >> 10) & 0x1f;
    const mant = h & 0x3ff;
    if (exp === 0x1f) {
      outBits[i] = sign | 0x7f800000 | (mant << 13); // inf or NaN (payload kept)
    } else if (exp !== 0) {
      outBits[i] = sign | ((exp + 112) << 23) | (mant << 13);
    } else if (mant === 0) {
      outBits[i] = sign; // ±0
    } else {
      out[i] = (sign ? -1 : 1) * mant * 2 ** -24; // subnormal: exact in float32
    }
  }
  return out;
}

/** Encodes float32 values as IEEE half-precision bit patterns, rounding to nearest even. */
export function float32ToF16(values: Float32Array): Uint16Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) {
    f32[0] = values[i];
    const x = u32[0];
    const sign = (x >>> 16) & 0x8000;
    const exp = (x >>> 23) & 0xff;
    const mant = x & 0x7fffff;
    if (exp === 0xff) {
      out[i] = sign | 0x7c00 | (mant ? 0x200 | (mant >>> 13) : 0);
      continue;
    }
    const e = exp - 127 + 15;
    if (e >= 0x1f) {
      out[i] = sign | 0x7c00; // overflow to infinity
    } else if (e <= 0) {
      if (e < -10) {
        out[i] = sign; // underflow to zero
        continue;
      }
      const m = mant | 0x800000; // implicit bit
      const shift = 14 - e; // 14..24
      let half = m >>> shift;
      const rest = m & ((1 << shift) - 1);
      const mid = 1 << (shift - 1);
      if (rest > mid || (rest === mid && (half & 1))) half++;
      out[i] = sign | half;
    } else {
      let half = (e << 10) | (mant >>> 13);
      const rest = mant & 0x1fff;
      if (rest > 0x1000 || (rest === 0x1000 && (half & 1))) half++; // may carry into exp: correct
      out[i] = sign | half;
    }
  }
  return out;
}

/** Decodes bfloat16 bit patterns to float32 (exact). */
export function bf16ToFloat32(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  const outBits = new Uint32Array(out.buffer);
  for (let i = 0; i < bits.length; i++) outBits[i] = bits[i] << 16;
  return out;
}

/** Encodes float32 values as bfloat16 bit patterns, rounding to nearest even (NaN stays NaN). */
export function float32ToBf16(values: Float32Array): Uint16Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) {
    f32[0] = values[i];
    const x = u32[0];
    if ((x & 0x7fffffff) > 0x7f800000) {
      out[i] = (x >>> 16) | 0x40; // quiet NaN
    } else {
      out[i] = (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// Writer

function typeName(x: unknown): string {
  return x === null ? "null" : typeof x === "object" ? x.constructor?.name ?? "object" : typeof x;
}

function encodeTensor(name: string, t: TensorToWrite): Uint8Array {
  const label = `tensor ${JSON.stringify(name)}`;
  if (typeof t !== "object" || t === null) throw new TypeError(`${label}: expected an object`);
  if (!Array.isArray(t.shape)) throw new TypeError(`${label}: shape must be an array`);
  let count = 1;
  for (const d of t.shape) {
    if (!Number.isSafeInteger(d) || d < 0) {
      throw new TypeError(
        `${label}: shape ${JSON.stringify(t.shape)} must hold non-negative integers`,
      );
    }
    count *= d;
  }
  if (!Number.isSafeInteger(count)) throw new RangeError(`${label}: shape is too large`);
  let out: Float32Array | Int32Array | Uint16Array;
  const data = t.data;
  switch (t.dtype) {
    case "F32":
      if (!(data instanceof Float32Array)) {
        throw new TypeError(`${label}: dtype F32 needs a Float32Array, got ${typeName(data)}`);
      }
      out = data;
      break;
    case "I32":
      if (!(data instanceof Int32Array)) {
        throw new TypeError(`${label}: dtype I32 needs an Int32Array, got ${typeName(data)}`);
      }
      out = data;
      break;
    case "F16":
    case "BF16":
      if (data instanceof Uint16Array) out = data;
      else if (data instanceof Float32Array) {
        out = t.dtype === "F16" ? float32ToF16(data) : float32ToBf16(data);
      } else {
        throw new TypeError(
          `${label}: dtype ${t.dtype} needs a Uint16Array or Float32Array, got ${typeName(data)}`,
        );
      }
      break;
    default:
      throw new TypeError(`${label}: cannot write dtype ${JSON.stringify(t.dtype)}`);
  }
  if (out.length !== count) {
    throw new TypeError(
      `${label}: shape ${JSON.stringify(t.shape)} has ${count} elements but data has ${out.length}`,
    );
  }
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}

/** The header bytes (length prefix + padded JSON) and data chunks of a file, in order. */
export interface SafetensorsChunks {
  /** 8-byte length followed by the space-padded JSON header. */
  header: Uint8Array;
  /** Tensor bytes in file order (views of the callers' arrays where no conversion was needed). */
  chunks: Uint8Array[];
  /** Total file size in bytes. */
  byteLength: number;
}

/**
 * Lays out a file without joining it into one buffer (for streaming writes).
 * Throws TypeError for bad shapes, dtypes or data, RangeError for a header
 * over the size limit.
 */
export function safetensorsChunks(
  tensors: Readonly<Record<string, TensorToWrite>>,
  metadata: Readonly<Record<string, string>> = {},
): SafetensorsChunks {
  assertLittleEndian();
  const names = Object.keys(tensors);
  for (const name of names) {
    if (name === "__metadata__") throw new TypeError(`tensor name "__metadata__" is reserved`);
  }
  const meta: Record<string, string> = {};
  const metaKeys = Object.keys(metadata).sort();
  for (const k of metaKeys) {
    const v = metadata[k];
    if (typeof v !== "string") {
      throw new TypeError(
        `metadata ${JSON.stringify(k)}: value must be a string, got ${typeName(v)}`,
      );
    }
    Object.defineProperty(meta, k, {
      value: v,
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  const encoded = new Map<string, Uint8Array>();
  for (const name of names) encoded.set(name, encodeTensor(name, tensors[name]));
  names.sort((a, b) => {
    const r = DTYPE_RANK[tensors[b].dtype] - DTYPE_RANK[tensors[a].dtype];
    return r !== 0 ? r : a < b ? -1 : a > b ? 1 : 0;
  });
  const parts: string[] = [];
  if (metaKeys.length > 0) parts.push(`"__metadata__":${JSON.stringify(meta)}`);
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const name of names) {
    const bytes = encoded.get(name)!;
    const t = tensors[name];
    const info = {
      dtype: t.dtype,
      shape: [...t.shape],
      data_offsets: [offset, offset + bytes.length],
    };
    parts.push(`${JSON.stringify(name)}:${JSON.stringify(info)}`);
    chunks.push(bytes);
    offset += bytes.length;
  }
  const json = new TextEncoder().encode(`{${parts.join(",")}}`);
  const n = Math.ceil(json.length / 8) * 8;
  if (n > MAX_HEADER_BYTES) {
    throw new RangeError(
      `safetensors header of ${n} bytes exceeds the limit of ${MAX_HEADER_BYTES}`,
    );
  }
  const header = new Uint8Array(8 + n).fill(0x20, 8 + json.length);
  new DataView(header.buffer).setBigUint64(0, BigInt(n), true);
  header.set(json, 8);
  return { header, chunks, byteLength: header.length + offset };
}

/** Serializes tensors and string metadata to the bytes of a safetensors file. */
export function serializeSafetensors(
  tensors: Readonly<Record<string, TensorToWrite>>,
  metadata: Readonly<Record<string, string>> = {},
): Uint8Array {
  const { header, chunks, byteLength } = safetensorsChunks(tensors, metadata);
  const out = new Uint8Array(byteLength);
  out.set(header, 0);
  let at = header.length;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/**
 * Writes a safetensors file atomically (temporary file, fsync, rename),
 * streaming the tensor data without joining it into one buffer.
 */
export async function writeSafetensors(
  path: string,
  tensors: Readonly<Record<string, TensorToWrite>>,
  metadata: Readonly<Record<string, string>> = {},
): Promise<void> {
  const { header, chunks } = safetensorsChunks(tensors, metadata);
  await writeFileAtomic(path, [header, ...chunks]);
}

// ---------------------------------------------------------------------------
// Strict JSON for the header: objects become Maps, duplicate keys and
// non-integer numbers are refused, nesting is bounded.

type Json = null | boolean | number | string | Json[] | Map<string, Json>;

class JsonError extends Error {}

const MAX_DEPTH = 64;

class StrictJson {
  private i = 0;
  constructor(private readonly s: string) {}

  parse(): Json {
    this.ws();
    const v = this.value(0);
    this.ws();
    if (this.i < this.s.length) this.fail("unexpected text after the JSON value");
    return v;
  }

  private fail(what: string): never {
    throw new JsonError(`${what} at character ${this.i}`);
  }

  private ws(): void {
    const s = this.s;
    while (this.i < s.length) {
      const c = s.charCodeAt(this.i);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) this.i++;
      else break;
    }
  }

  private value(depth: number): Json {
    if (depth > MAX_DEPTH) this.fail(`nesting deeper than ${MAX_DEPTH}`);
    const c = this.s[this.i];
    if (c === "{") return this.object(depth);
    if (c === "[") return this.array(depth);
    if (c === '"') return this.string();
    if (c === "-" || (c >= "0" && c <= "9")) return this.number();
    for (const [word, v] of [["true", true], ["false", false], ["null", null]] as const) {
      if (this.s.startsWith(word, this.i)) {
        this.i += word.length;
        return v;
      }
    }
    return this.fail(
      c === undefined ? "unexpected end of JSON" : `unexpected ${JSON.stringify(c)}`,
    );
  }

  private object(depth: number): Map<string, Json> {
    const out = new Map<string, Json>();
    this.i++; // {
    this.ws();
    if (this.s[this.i] === "}") {
      this.i++;
      return out;
    }
    for (;;) {
      if (this.s[this.i] !== '"') this.fail("expected a string key");
      const at = this.i;
      const key = this.string();
      if (out.has(key)) {
        this.i = at;
        this.fail(`duplicate key ${JSON.stringify(key)}`);
      }
      this.ws();
      if (this.s[this.i] !== ":") this.fail("expected ':'");
      this.i++;
      this.ws();
      out.set(key, this.value(depth + 1));
      this.ws();
      const c = this.s[this.i++];
      if (c === "}") return out;
      if (c !== ",") {
        this.i--;
        this.fail("expected ',' or '}'");
      }
      this.ws();
    }
  }

  private array(depth: number): Json[] {
    const out: Json[] = [];
    this.i++; // [
    this.ws();
    if (this.s[this.i] === "]") {
      this.i++;
      return out;
    }
    for (;;) {
      out.push(this.value(depth + 1));
      this.ws();
      const c = this.s[this.i++];
      if (c === "]") return out;
      if (c !== ",") {
        this.i--;
        this.fail("expected ',' or ']'");
      }
      this.ws();
    }
  }

  private string(): string {
    const s = this.s;
    this.i++; // opening quote
    let out = "";
    let start = this.i;
    for (;;) {
      if (this.i >= s.length) this.fail("unterminated string");
      const c = s.charCodeAt(this.i);
      if (c === 0x22) {
        out += s.slice(start, this.i);
        this.i++;
        return out;
      }
      if (c < 0x20) this.fail("control character in string");
      if (c !== 0x5c) {
        this.i++;
        continue;
      }
      out += s.slice(start, this.i);
      const e = s[this.i + 1];
      const simple: Record<string, string> = {
        '"': '"',
        "\\": "\\",
        "/": "/",
        b: "\b",
        f: "\f",
        n: "\n",
        r: "\r",
        t: "\t",
      };
      if (e !== undefined && Object.hasOwn(simple, e)) {
        out += simple[e];
        this.i += 2;
      } else if (e === "u") {
        const hi = this.hex4(this.i + 2);
        this.i += 6;
        if (hi >= 0xd800 && hi <= 0xdbff) {
          if (s[this.i] !== "\\" || s[this.i + 1] !== "u") {
            this.fail("lone surrogate in \\u escape");
          }
          const lo = this.hex4(this.i + 2);
          if (lo < 0xdc00 || lo > 0xdfff) this.fail("lone surrogate in \\u escape");
          this.i += 6;
          out += String.fromCharCode(hi, lo);
        } else if (hi >= 0xdc00 && hi <= 0xdfff) {
          this.fail("lone surrogate in \\u escape");
        } else {
          out += String.fromCharCode(hi);
        }
      } else {
        this.fail("invalid escape in string");
      }
      start = this.i;
    }
  }

  private hex4(at: number): number {
    const h = this.s.slice(at, at + 4);
    if (!/^[0-9a-fA-F]{4}$/.test(h)) this.fail("invalid \\u escape");
    return parseInt(h, 16);
  }

  private number(): number {
    const m = /^-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/.exec(
      this.s.slice(this.i, this.i + 400),
    );
    if (!m) this.fail("invalid number");
    if (m[1] !== undefined || m[2] !== undefined) this.fail("header numbers must be integers");
    const v = Number(m[0]);
    if (!Number.isSafeInteger(v)) this.fail(`integer ${m[0]} is too large`);
    this.i += m[0].length;
    return v;
  }
}

// ---------------------------------------------------------------------------
// Reader

function isDtype(s: string): s is Dtype {
  return Object.hasOwn(DTYPE_BYTES, s);
}

function nullRecord<T>(): Record<string, T> {
  return Object.create(null) as Record<string, T>;
}

function nonNegativeInts(v: Json | undefined): v is number[] {
  return Array.isArray(v) && v.every((d) => typeof d === "number" && d >= 0);
}

/**
 * Validates a header. `json` is the header text, `dataBytes` the size of the
 * data section after it. Throws {@linkcode SafetensorsError}.
 */
function validateHeader(
  json: string,
  dataBytes: number,
  source: string,
): { tensors: Record<string, TensorInfo>; metadata: Record<string, string> } {
  const bad = (problem: string): never => {
    throw new SafetensorsError(source, problem);
  };
  if (!json.startsWith("{")) bad("header does not start with '{'");
  let root: Json;
  try {
    root = new StrictJson(json).parse();
  } catch (err) {
    if (err instanceof JsonError) return bad(`header is not valid JSON: ${err.message}`);
    if (err instanceof RangeError) return bad("header is too deeply nested");
    throw err;
  }
  if (!(root instanceof Map)) return bad("header is not a JSON object");
  const tensors = nullRecord<TensorInfo>();
  const metadata = nullRecord<string>();
  const order: [string, TensorInfo][] = [];
  for (const [name, entry] of root) {
    const label = `tensor ${JSON.stringify(name)}`;
    if (name === "__metadata__") {
      if (!(entry instanceof Map)) bad("__metadata__ is not an object");
      for (const [k, v] of entry as Map<string, Json>) {
        if (typeof v !== "string") bad(`__metadata__ ${JSON.stringify(k)} is not a string`);
        metadata[k] = v as string;
      }
      continue;
    }
    if (!(entry instanceof Map)) return bad(`${label} is not an object`);
    for (const k of entry.keys()) {
      if (k !== "dtype" && k !== "shape" && k !== "data_offsets") {
        bad(`${label} has unknown field ${JSON.stringify(k)}`);
      }
    }
    const dtype = entry.get("dtype");
    if (typeof dtype !== "string") return bad(`${label} has no dtype string`);
    if (!isDtype(dtype)) {
      return bad(
        UNSUPPORTED_DTYPES.has(dtype)
          ? `${label} has unsupported dtype ${dtype}`
          : `${label} has unknown dtype ${JSON.stringify(dtype)}`,
      );
    }
    const shape = entry.get("shape");
    if (!nonNegativeInts(shape)) {
      return bad(`${label} shape is not an array of non-negative integers`);
    }
    const offsets = entry.get("data_offsets");
    if (!nonNegativeInts(offsets) || offsets.length !== 2) {
      return bad(`${label} data_offsets is not a pair of non-negative integers`);
    }
    const [begin, end] = offsets;
    if (begin > end) bad(`${label} data_offsets [${begin}, ${end}] end before they begin`);
    let count = 1;
    for (const d of shape) count *= d;
    const need = count * DTYPE_BYTES[dtype];
    if (!Number.isSafeInteger(need)) bad(`${label} shape ${JSON.stringify(shape)} is too large`);
    if (need !== end - begin) {
      bad(
        `${label} shape ${
          JSON.stringify(shape)
        } of ${dtype} needs ${need} bytes but data_offsets span ${end - begin}`,
      );
    }
    const info: TensorInfo = { dtype, shape, dataOffsets: [begin, end] };
    tensors[name] = info;
    order.push([name, info]);
  }
  order.sort((a, b) =>
    a[1].dataOffsets[0] - b[1].dataOffsets[0] || a[1].dataOffsets[1] - b[1].dataOffsets[1]
  );
  let at = 0;
  for (const [name, info] of order) {
    const [begin, end] = info.dataOffsets;
    if (begin !== at) {
      bad(
        `tensor ${JSON.stringify(name)} data_offsets [${begin}, ${end}] ${
          begin > at ? `leave a gap after byte ${at}` : `overlap the tensor ending at byte ${at}`
        }`,
      );
    }
    at = end;
  }
  if (at > dataBytes) {
    bad(`tensors need ${at} data bytes but the file has ${dataBytes} (truncated?)`);
  }
  if (at < dataBytes) bad(`${dataBytes - at} trailing bytes after the last tensor`);
  return { tensors, metadata };
}

/** Reads and checks the 8-byte length; returns the header length `n`. */
function headerLength(
  prefix: Uint8Array,
  fileBytes: number,
  source: string,
  limit: number,
): number {
  if (fileBytes < 8) {
    throw new SafetensorsError(
      source,
      `file is ${fileBytes} bytes, shorter than the 8-byte header length`,
    );
  }
  const n = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(limit)) {
    throw new SafetensorsError(source, `header length ${n} exceeds the limit of ${limit} bytes`);
  }
  const len = Number(n);
  if (8 + len > fileBytes) {
    throw new SafetensorsError(
      source,
      `header length ${len} runs past the end of the file (${fileBytes} bytes)`,
    );
  }
  return len;
}

function decodeHeaderText(bytes: Uint8Array, source: string): string {
  try {
    return new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    throw new SafetensorsError(source, "header is not valid UTF-8");
  }
}

function decodeTensor(dtype: Dtype, bytes: Uint8Array): TensorData {
  const buf = bytes.slice().buffer; // own, aligned copy
  switch (dtype) {
    case "F32":
      return new Float32Array(buf);
    case "F16":
      return f16ToFloat32(new Uint16Array(buf));
    case "BF16":
      return bf16ToFloat32(new Uint16Array(buf));
    case "F64":
      return new Float64Array(buf);
    case "I32":
      return new Int32Array(buf);
    case "U32":
      return new Uint32Array(buf);
    case "I16":
      return new Int16Array(buf);
    case "U16":
      return new Uint16Array(buf);
    case "I8":
      return new Int8Array(buf);
    case "U8":
    case "BOOL":
      return new Uint8Array(buf);
    case "I64":
      return new BigInt64Array(buf);
    case "U64":
      return new BigUint64Array(buf);
  }
}

/**
 * Parses and validates the bytes of a whole safetensors file. Throws
 * {@linkcode SafetensorsError} for any violation; returns fresh arrays.
 */
export function parseSafetensors(bytes: Uint8Array, opts: ParseOptions = {}): SafetensorsFile {
  assertLittleEndian();
  const source = opts.source ?? "safetensors data";
  const n = headerLength(bytes, bytes.length, source, opts.maxHeaderBytes ?? MAX_HEADER_BYTES);
  const json = decodeHeaderText(bytes.subarray(8, 8 + n), source);
  const header = validateHeader(json, bytes.length - 8 - n, source);
  const tensors = nullRecord<LoadedTensor>();
  const base = 8 + n;
  for (const name of Object.keys(header.tensors)) {
    const { dtype, shape, dataOffsets: [b, e] } = header.tensors[name];
    tensors[name] = { dtype, shape, data: decodeTensor(dtype, bytes.subarray(base + b, base + e)) };
  }
  return { tensors, metadata: header.metadata };
}

/** Reads and validates a safetensors file. Throws {@linkcode SafetensorsError} for a corrupt file. */
export async function readSafetensors(
  path: string,
  opts: Omit<ParseOptions, "source"> = {},
): Promise<SafetensorsFile> {
  const bytes = await Deno.readFile(path);
  return parseSafetensors(bytes, { ...opts, source: path });
}

/**
 * Reads only the header of a file (its length prefix and JSON) and validates
 * it against the file size, without reading the tensor data.
 */
export async function readSafetensorsHeader(
  path: string,
  opts: Omit<ParseOptions, "source"> = {},
): Promise<SafetensorsHeader> {
  using file = await Deno.open(path, { read: true });
  const size = (await file.stat()).size;
  const prefix = await readExactly(file, Math.min(8, size));
  const n = headerLength(prefix, size, path, opts.maxHeaderBytes ?? MAX_HEADER_BYTES);
  const json = decodeHeaderText(await readExactly(file, n), path);
  return { ...validateHeader(json, size - 8 - n, path), headerBytes: n };
}

async function readExactly(file: Deno.FsFile, n: number): Promise<Uint8Array> {
  const out = new Uint8Array(n);
  let done = 0;
  while (done < n) {
    const got = await file.read(out.subarray(done));
    if (got === null) throw new Deno.errors.UnexpectedEof(`unexpected end of file`);
    done += got;
  }
  return out;
}
