/**
 * The CPU backend: host typed arrays and the ops' CPU reference functions.
 * f64 tensors live only here (gradient checks).
 *
 * @module
 */
import {
  allocArray,
  type Backend,
  bytesPer,
  type CpuArray,
  type DType,
  type MemoryStats,
  type OpDef,
  type OpInfo,
  sizeOf,
  type Storage,
  type TensorInfo,
} from "./types.ts";

let writes = 0;

/**
 * How many times CPU storage was written in place so far (`copy`, ops that
 * `mutate` their inputs): a cache of values computed from an array (the
 * cross-entropy row statistics) is valid while this has not changed.
 */
export function cpuWrites(): number {
  return writes;
}

/** CPU storage: a host array (a subarray of the parent's for a view). */
export interface CpuStorage extends Storage {
  /** The elements. */
  array: CpuArray;
  /** The allocation a view windows. */
  readonly parent?: CpuStorage;
}

/**
 * Memory outside the JavaScript heap for CPU tensors: ops/_wasm_matmul.ts installs the
 * WebAssembly kernels' memory, so that the kernels use such tensors in place.
 */
export interface ResidentArrays {
  /** A zeroed (unless `dirty`) array of n elements there, or null (too small, or no room). */
  alloc(dtype: "f32" | "i32", n: number, dirty: boolean): CpuArray | null;
  /** Frees `a` when it lives there (true), else false. */
  release(a: CpuArray): boolean;
}

let residentArrays: ResidentArrays | null = null;

/** Installs (or, with null, removes) where f32 and i32 tensors may live. */
export function setResidentArrays(r: ResidentArrays | null): void {
  residentArrays = r;
}

/** Arrays smaller than this come from the JavaScript heap each time (cheap there). */
const POOL_MIN_BYTES = 16384;
/**
 * The pool holds at most the peak of live bytes (a step's temporaries come back for the next
 * step), within these bounds; a release past it empties the pool first, so shapes that are
 * not seen again (a new batch length) go to the garbage collector.
 */
const POOL_MIN_CAP = 64 * 2 ** 20, POOL_MAX_CAP = 512 * 2 ** 20;

/** A new zeroed array of `n` elements over `buffer` (exactly its size). */
function arrayOver(dtype: DType, buffer: ArrayBuffer, n: number): CpuArray {
  if (dtype === "i32") return new Int32Array(buffer, 0, n);
  if (dtype === "f64") return new Float64Array(buffer, 0, n);
  if (dtype === "f16") return new Float16Array(buffer, 0, n);
  return new Float32Array(buffer, 0, n);
}

/**
 * Runs every op with its CPU reference.
 *
 * Where an array comes from:
 * - f32 and i32 arrays of 16 KiB or more live in the WebAssembly kernels' memory when it has
 *   room (`setResidentArrays`, installed by ops/_wasm_matmul.ts): the kernels use them in place;
 * - other arrays of 16 KiB or more reuse released memory of the same byte size from a pool (at
 *   most the peak of live bytes, 64 to 512 MiB; emptied when full). A training step allocates
 *   the same sizes every step, and a fresh large array costs page faults and a later
 *   collection (in a `tiny` step, allocation took about 5% of the time);
 * - smaller arrays come from the JavaScript heap.
 *
 * Reused memory is zeroed unless the op says it writes every output element
 * (`OpDef.overwrites`), and always gets a new typed array, so nothing keyed by array identity
 * (the cross-entropy statistics, the prepacked weights) can take it for the old one.
 */
export class CpuBackend implements Backend {
  /** Always "cpu". */
  readonly kind = "cpu" as const;
  /** A one-line description. */
  readonly description: string = "CPU (TypeScript + WebAssembly SIMD matmul)";
  /** Views start at multiples of 8 bytes (whole f32 and f64 elements). */
  readonly viewAlignment = 8;
  /** Largest typed array webseq allocates (2 GiB). */
  readonly maxStorageBytes: number = 2 ** 31;
  #live = 0;
  #peak = 0;
  #count = 0;
  #profile: Map<string, { ms: number; dispatches: number }> | null = null;
  /** Released buffers by byte size. */
  #pool = new Map<number, ArrayBuffer[]>();
  #pooled = 0;

  /**
   * A zeroed array (or, with `dirty`, one whose old contents the caller overwrites):
   * a pooled buffer of the same byte size when there is one.
   */
  #alloc(dtype: DType, n: number, dirty = false): CpuArray {
    const bytes = n * bytesPer(dtype);
    if (residentArrays && (dtype === "f32" || dtype === "i32")) {
      const a = residentArrays.alloc(dtype, n, dirty);
      if (a) return a;
    }
    if (bytes >= POOL_MIN_BYTES) {
      const buf = this.#pool.get(bytes)?.pop();
      if (buf) {
        this.#pooled -= bytes;
        if (!dirty) new Uint8Array(buf).fill(0);
        return arrayOver(dtype, buf, n);
      }
    }
    return allocArray(dtype, n);
  }

  #wrap(array: CpuArray): CpuStorage {
    this.#live += array.byteLength;
    this.#count++;
    if (this.#live > this.#peak) this.#peak = this.#live;
    return { array, bytes: array.byteLength, refs: 1 };
  }

  /** Copies host data into new storage. */
  upload(data: CpuArray, info: TensorInfo): Storage {
    const a = this.#alloc(info.dtype, sizeOf(info.shape), data.length === sizeOf(info.shape));
    a.set(data);
    return this.#wrap(a);
  }

  /** A subarray of the parent's elements. */
  view(parent: Storage, byteOffset: number, bytes: number): Storage {
    const p = parent as CpuStorage;
    const root = p.parent ?? p;
    const base = p.parent ? p.array.byteOffset - root.array.byteOffset : 0;
    const per = root.array.BYTES_PER_ELEMENT;
    const at = base + byteOffset;
    if (at % per || bytes % per || byteOffset < 0 || byteOffset + bytes > p.bytes) {
      throw new RangeError(
        `Cannot view bytes ${byteOffset}..${byteOffset + bytes} of a ${p.bytes}-byte storage`,
      );
    }
    root.refs++;
    return {
      array: root.array.subarray(at / per, (at + bytes) / per),
      bytes,
      refs: 1,
      parent: root,
    } as CpuStorage;
  }

  /** `dst.set(src)` over `bytes` bytes. */
  copy(src: Storage, dst: Storage, bytes: number): void {
    writes++;
    const s = (src as CpuStorage).array, d = (dst as CpuStorage).array;
    d.set(s.subarray(0, bytes / s.BYTES_PER_ELEMENT));
  }

  /** Runs the op's CPU reference. */
  exec<P>(
    op: OpDef<P>,
    inputs: Storage[],
    info: OpInfo,
    params: P,
    into?: readonly (Storage | null)[],
  ): Storage[] {
    if (op.mutates?.length) writes++;
    const ins = inputs.map((s) => (s as CpuStorage).array);
    const outs = info.outputs.map((o, k) =>
      into?.[k]
        ? (into[k] as CpuStorage).array
        : this.#alloc(o.dtype, sizeOf(o.shape), op.overwrites)
    );
    if (this.#profile) {
      const t0 = performance.now();
      op.cpu(ins, outs, info, params);
      const e = this.#profile.get(op.name) ?? { ms: 0, dispatches: 0 };
      e.ms += performance.now() - t0;
      e.dispatches++;
      this.#profile.set(op.name, e);
    } else op.cpu(ins, outs, info, params);
    return outs.map((a, k) => into?.[k] ?? this.#wrap(a));
  }

  /**
   * Starts timing ops (wall clock of each op's CPU function, by op name;
   * allocation and autograd bookkeeping not included) until
   * {@linkcode CpuBackend.endProfile}. Returns true (the CPU can always).
   */
  beginProfile(): boolean {
    this.#profile = new Map();
    return true;
  }

  /** Milliseconds and calls per op name since {@linkcode CpuBackend.beginProfile}. */
  endProfile(): Promise<Record<string, { ms: number; dispatches: number }>> {
    if (!this.#profile) {
      return Promise.reject(new TypeError("endProfile() without beginProfile()"));
    }
    const out = Object.fromEntries(this.#profile);
    this.#profile = null;
    return Promise.resolve(out);
  }

  /** A copy of the data. */
  read(storage: Storage, _info: TensorInfo): Promise<CpuArray> {
    return Promise.resolve((storage as CpuStorage).array.slice());
  }

  /** Drops the array (a view drops its ref of the parent). */
  release(storage: Storage): void {
    const parent = (storage as CpuStorage).parent;
    if (parent) {
      (storage as CpuStorage).array = new Float32Array(0);
      if (--parent.refs === 0) this.release(parent);
      return;
    }
    this.#live -= storage.bytes;
    this.#count--;
    const a = (storage as CpuStorage).array, buf = a.buffer;
    const bytes = a.byteLength;
    (storage as CpuStorage).array = new Float32Array(0);
    if (buf instanceof SharedArrayBuffer && residentArrays?.release(a)) return;
    const cap = Math.min(POOL_MAX_CAP, Math.max(POOL_MIN_CAP, this.#peak));
    if (
      bytes >= POOL_MIN_BYTES && bytes <= cap && buf instanceof ArrayBuffer &&
      a.byteOffset === 0 && buf.byteLength === bytes
    ) {
      if (this.#pooled + bytes > cap) {
        this.#pool.clear();
        this.#pooled = 0;
      }
      const list = this.#pool.get(bytes);
      if (list) list.push(buf);
      else this.#pool.set(bytes, [buf]);
      this.#pooled += bytes;
    }
  }

  /** Nothing to submit on the CPU. */
  flush(): void {}

  /** Nothing to wait for on the CPU. */
  sync(): Promise<void> {
    return Promise.resolve();
  }

  /** Live and peak bytes of tensors. */
  memoryStats(): MemoryStats {
    return {
      liveBytes: this.#live,
      peakBytes: this.#peak,
      pooledBytes: this.#pooled,
      liveBuffers: this.#count,
    };
  }

  /** Peak := live. */
  resetPeak(): void {
    this.#peak = this.#live;
  }

  /** Drops the pooled buffers (the garbage collector frees them). */
  emptyCache(): Promise<void> {
    this.#pool.clear();
    this.#pooled = 0;
    return Promise.resolve();
  }

  /** Nothing to release. */
  destroy(): void {}
}

/** The process-wide CPU backend. */
export const CPU: CpuBackend = new CpuBackend();
