/**
 * The types every part of the tensor engine shares: dtypes, shapes, the op
 * definition record, the GPU plan an op hands to the WebGPU backend, and the
 * Backend interface both backends implement.
 *
 * @module
 */

/**
 * Element types: f32 for values, i32 for ids, f64 only on the CPU (gradient
 * checks), f16 for the mixed-precision matmul operands (ops/cast.ts,
 * ops/matmul_f16.ts; on WebGPU only where the device has `shader-f16`).
 */
export type DType = "f32" | "i32" | "f64" | "f16";

/** A tensor shape; `[]` is a scalar. */
export type Shape = readonly number[];

/** Host arrays that back CPU tensors and readbacks (Float16Array rounds on store). */
export type CpuArray = Float32Array | Float64Array | Int32Array | Float16Array;

/** Host float arrays (what CPU references compute in). */
export type FloatArray = Float32Array | Float64Array;

/** Shape and dtype of a tensor, without data. */
export interface TensorInfo {
  /** Dimensions, outermost first. */
  shape: Shape;
  /** Element type. */
  dtype: DType;
}

/** Shapes and dtypes of an op's inputs and outputs. */
export interface OpInfo {
  /** One entry per input tensor. */
  inputs: TensorInfo[];
  /** One entry per output tensor. */
  outputs: TensorInfo[];
}

/** A binding of a GPU kernel: an op input, an op output, or a scratch buffer. */
export type BindRef = { in: number } | { out: number } | { tmp: number };

/**
 * One compute dispatch. The WGSL declares `bind.length` storage buffers at
 * `@group(0) @binding(0..)` in the order of `bind`, and, when `uniform` is set,
 * a uniform struct at the next binding.
 */
export interface GpuKernel {
  /** WGSL source with an entry point named `main`. */
  code: string;
  /** Storage buffers in binding order. */
  bind: BindRef[];
  /** Uniform bytes (see `packUniform`). */
  uniform?: ArrayBuffer;
  /** Workgroup counts (x, y, z). */
  workgroups: readonly [number, number, number];
  /**
   * Floating-point operations the dispatch performs, where it is a product
   * (2·M·N·K per matmul): profiles report achieved TFLOP/s from it.
   */
  flops?: number;
}

/** What an op asks the WebGPU backend to run, in order. */
export interface GpuPlan {
  /** Scratch buffers (byte sizes) live for the duration of the plan. */
  temps?: number[];
  /** Dispatches, recorded in order into the current compute pass. */
  kernels: GpuKernel[];
}

/** What an op's backward rule receives. */
export interface BackwardContext<P> {
  /** The op's inputs (still alive; may be used). */
  inputs: TensorLike[];
  /** The op's outputs (saved values such as softmax probabilities). */
  outputs: TensorLike[];
  /** The op's parameters. */
  params: P;
  /**
   * Removes and returns the gradient already accumulated for input `i`
   * during this `backward()` call (from the ops that use the input and ran
   * their backward first), or null when there is none or the input is a
   * leaf (a leaf's `.grad` is never taken). An op that takes it owns it: the
   * gradient it returns for input `i` must include it (returned = taken +
   * own), and it disposes it when done unless it returns it. Fusing the sum
   * into the op's own kernel saves the engine's separate `accumulate` add.
   */
  takeGrad?(i: number): TensorLike | null;
  /**
   * Where input `i`'s gradient may be written in place, or null: a leaf
   * used by this op alone, without a gradient yet, whose owner (AdamW's
   * flat buffers) offers its memory. An op that takes it passes it to
   * `applyInto` (tensor/tensor.ts) for the output that is that gradient
   * (ops that overwrite every output element only) and returns the result;
   * a taken sink it does not use it must dispose. Saves the copy into the
   * flat gradient buffer.
   */
  gradSink?(i: number): TensorLike | null;
}

/**
 * Minimal view of a Tensor, to keep this file free of the Tensor class.
 * The real type is `Tensor` from `tensor/tensor.ts`.
 */
export interface TensorLike {
  /** Dimensions. */
  readonly shape: Shape;
  /** Element type. */
  readonly dtype: DType;
}

/**
 * An op: shape rule, CPU reference, WGSL plan and backward rule, side by
 * side. The CPU function is the specification; the GPU plan must compute the
 * same numbers.
 */
export interface OpDef<P = Record<string, never>> {
  /** Unique name, used in errors and profiles. */
  name: string;
  /** Output shapes/dtypes (throws TypeError on bad shapes). */
  outputs(inputs: TensorInfo[], params: P): TensorInfo[];
  /** CPU reference: reads `inputs`, writes every element of `outputs`. */
  cpu(inputs: CpuArray[], outputs: CpuArray[], info: OpInfo, params: P): void;
  /** WebGPU plan; ops without one cannot run on the GPU. */
  gpu?(info: OpInfo, params: P): GpuPlan;
  /**
   * Gradients of the inputs given the gradients of the outputs (null where
   * an output got none). Written with other ops, so it runs on both backends.
   * Return null for inputs that take no gradient.
   */
  // deno-lint-ignore no-explicit-any
  backward?(ctx: BackwardContext<P>, dys: (any | null)[]): (any | null)[];
  /** Inputs written in place (optimizer updates); such ops take no gradient. */
  mutates?: number[];
  /**
   * The CPU function writes every element of every output, so the CPU backend
   * may hand it reused memory without zeroing it first (tests/ops_overwrite_test.ts
   * checks each such op against zeroed outputs).
   */
  overwrites?: boolean;
  /**
   * The GPU plan handles f16 tensors (its WGSL says `enable f16;`). The
   * WebGPU backend refuses f16 inputs or outputs of every other op.
   */
  f16?: boolean;
}

/** A backend's handle to the memory of one tensor. */
export interface Storage {
  /** Bytes held (for memory statistics). */
  readonly bytes: number;
  /** Tensors sharing this storage (reshape is a view); freed at 0. */
  refs: number;
  /**
   * The allocation this storage is a window of (see `Backend.view`), or
   * undefined for an allocation. A view holds one ref of its parent.
   */
  readonly parent?: Storage;
}

/** Live and peak memory of a backend. */
export interface MemoryStats {
  /** Bytes held by live tensors. */
  liveBytes: number;
  /** Largest liveBytes seen since the last reset. */
  peakBytes: number;
  /** Bytes held in the buffer pool for reuse (GPU). */
  pooledBytes: number;
  /**
   * Largest live + pooled bytes seen since the last reset: what the backend
   * held from the device (GPU; like `torch.cuda.max_memory_reserved`).
   */
  peakReservedBytes?: number;
  /** Number of live storages. */
  liveBuffers: number;
}

/** Where tensors live and how ops run there. */
export interface Backend {
  /** "cpu" or "webgpu". */
  readonly kind: "cpu" | "webgpu";
  /** A one-line description (adapter name, or CPU). */
  readonly description: string;
  /** Byte alignment of view offsets (`minStorageBufferOffsetAlignment` on WebGPU). */
  readonly viewAlignment: number;
  /** Largest storage in bytes (one buffer binding on WebGPU). */
  readonly maxStorageBytes: number;
  /** Copies host data into new storage. */
  upload(data: CpuArray, info: TensorInfo): Storage;
  /**
   * A window of `bytes` bytes of `parent` starting at `byteOffset` (a
   * multiple of `viewAlignment`): no copy; ops read and write the parent's
   * memory. The view holds a ref of the parent until it is released.
   */
  view(parent: Storage, byteOffset: number, bytes: number): Storage;
  /**
   * Copies the first `bytes` bytes of `src` to the start of `dst`, in order
   * with the recorded ops (on WebGPU a buffer copy in the same command
   * encoder: no submit, no readback).
   */
  copy(src: Storage, dst: Storage, bytes: number): void;
  /**
   * Runs an op, returning new storages for its outputs; where `into[k]` is
   * given, output k is written there (the op must overwrite every element)
   * and that storage is returned.
   */
  exec<P>(
    op: OpDef<P>,
    inputs: Storage[],
    info: OpInfo,
    params: P,
    into?: readonly (Storage | null)[],
  ): Storage[];
  /** Reads storage back to the host (flushes pending GPU work). */
  read(storage: Storage, info: TensorInfo): Promise<CpuArray>;
  /** Returns storage to the pool (or frees it). */
  release(storage: Storage): void;
  /** Submits recorded GPU work (no-op on the CPU). */
  flush(): void;
  /** Waits until all submitted work has finished. */
  sync(): Promise<void>;
  /** Live/peak bytes. */
  memoryStats(): MemoryStats;
  /** Resets the peak to the current live bytes. */
  resetPeak(): void;
  /** Frees pooled memory (the `torch.cuda.empty_cache()` of webseq). */
  emptyCache(): Promise<void>;
  /** Releases the device. */
  destroy(): void;
}

/** Number of elements of a shape. */
export function sizeOf(shape: Shape): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Bytes per element. */
export function bytesPer(dtype: DType): number {
  return dtype === "f64" ? 8 : dtype === "f16" ? 2 : 4;
}

/** `[2, 3]` → `"[2, 3]"` for messages. */
export function fmtShape(shape: Shape): string {
  return `[${shape.join(", ")}]`;
}

/** Allocates a host array of the dtype. */
export function allocArray(dtype: DType, n: number): CpuArray {
  if (dtype === "i32") return new Int32Array(n);
  if (dtype === "f64") return new Float64Array(n);
  if (dtype === "f16") return new Float16Array(n);
  return new Float32Array(n);
}

/**
 * Packs a uniform struct whose WGSL declaration lists the u32 fields first,
 * then the f32 fields, each 4 bytes, padded to 16 bytes.
 */
export function packUniform(u32: readonly number[], f32: readonly number[] = []): ArrayBuffer {
  const n = u32.length + f32.length;
  const buf = new ArrayBuffer(Math.max(16, Math.ceil(n / 4) * 16));
  const u = new Uint32Array(buf);
  const f = new Float32Array(buf);
  u32.forEach((v, i) => (u[i] = v >>> 0));
  f32.forEach((v, i) => (f[u32.length + i] = v));
  return buf;
}
