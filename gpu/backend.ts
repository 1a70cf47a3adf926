/**
 * The WebGPU backend: pooled buffers, a pipeline cache, and a step recorder
 * that puts every dispatch into one compute pass until something needs the
 * results on the host (a readback) or `flush()` is called. A training step
 * is therefore one submit with no readback inside.
 *
 * Buffer reuse inside one recording is safe: the queue runs dispatches in
 * order, so a buffer released after its last reader was recorded can be
 * written by a later dispatch. Uploads are different: `writeBuffer` runs
 * before the recorded (unsubmitted) work, so an upload never reuses a buffer
 * released since the last submit.
 *
 * @module
 */
import {
  type Backend,
  bytesPer,
  type CpuArray,
  type GpuKernel,
  type GpuPlan,
  type MemoryStats,
  type OpDef,
  type OpInfo,
  sizeOf,
  type Storage,
  type TensorInfo,
} from "../tensor/types.ts";
import { type AdapterReport, describeAdapter, requestAdapter, requestDevice } from "./adapter.ts";
import {
  GpuDeviceLostError,
  GpuOutOfMemoryError,
  GpuUnavailableError,
  GpuValidationError,
} from "./errors.ts";

/** GPU storage: a pooled buffer, or a window of one (a view). */
export interface GpuStorage extends Storage {
  /** The buffer (its size may exceed `bytes`: pooled size classes). */
  buffer: GPUBuffer;
  /** First byte in `buffer` (0 except for views). */
  readonly offset: number;
  /** Bytes bound for kernels from `offset` (the whole buffer except for views). */
  readonly span: number;
  /** The allocation a view windows. */
  readonly parent?: GpuStorage;
}

const STORAGE_USAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC |
  GPUBufferUsage.COPY_DST;
const UNIFORM_SLOT = 256;
const UNIFORM_ARENA = 1 << 20;
const BIND_GROUP_CACHE = 16384;
/** Dispatches timed per profile (two timestamps each). */
const PROFILE_CAPACITY = 2048;

/** GPU time of a profile key ({@linkcode GpuBackend.profileDetails}). */
export interface ProfileEntry {
  /** Milliseconds, summed over the dispatches. */
  ms: number;
  /** Dispatches. */
  dispatches: number;
  /** FLOPs of the products among them (`GpuKernel.flops`), where there are any. */
  flops?: number;
}

interface CachedPipeline {
  pipeline: GPUComputePipeline;
  layout: GPUBindGroupLayout;
  id: number;
}

/** Pool size class: at most 25% larger than asked, multiples of 256 bytes. */
export function sizeClass(bytes: number): number {
  const b = Math.max(256, bytes);
  const p = 2 ** Math.floor(Math.log2(b));
  const step = Math.max(256, p / 4);
  return Math.ceil(b / step) * step;
}

/** Per-op time and count, from the dispatch counter (and timestamps when enabled). */
export interface DispatchStats {
  /** Dispatches recorded since the last reset. */
  dispatches: number;
  /** Buffer-to-buffer copies recorded since the last reset (`Backend.copy`). */
  copies: number;
  /** Submits since the last reset. */
  submits: number;
  /** Readbacks since the last reset. */
  readbacks: number;
  /** Bind groups created (not found in the cache) since the last reset. */
  bindGroups: number;
  /** Dispatches per op name. */
  perOp: Record<string, number>;
  /**
   * Milliseconds of JavaScript spent in `flush()` (uniform upload, encoder
   * finish, queue submit) since the last reset: the rest of a step's host time
   * is recording. A software adapter may run the kernels inside the submit.
   */
  submitMs: number;
}

function newStats(): DispatchStats {
  return {
    dispatches: 0,
    copies: 0,
    submits: 0,
    readbacks: 0,
    bindGroups: 0,
    perOp: {},
    submitMs: 0,
  };
}

/** Runs ops as WGSL compute kernels on a WebGPU device. */
export class GpuBackend implements Backend {
  /** Always "webgpu". */
  readonly kind = "webgpu" as const;
  /** Adapter description. */
  readonly description: string;
  /** The adapter report (features, limits). */
  readonly adapterInfo: AdapterReport;
  /** The device. */
  readonly device: GPUDevice;
  /** Whether `shader-f16` is enabled. */
  readonly hasF16: boolean;
  /** `minStorageBufferOffsetAlignment`: views start at multiples of it. */
  readonly viewAlignment: number;
  /** `maxStorageBufferBindingSize` (capped by `maxBufferSize`). */
  readonly maxStorageBytes: number;
  #pool = new Map<number, GPUBuffer[]>();
  #pipelines = new Map<string, CachedPipeline>();
  /** Bind groups by pipeline, buffers and uniform slot: a step's dispatches repeat, so do they. */
  #groups = new Map<string, GPUBindGroup>();
  #bufferIds = new WeakMap<GPUBuffer, number>();
  #nextBufferId = 1;
  #encoder: GPUCommandEncoder | null = null;
  #pass: GPUComputePassEncoder | null = null;
  #profile: { querySet: GPUQuerySet; names: string[]; details: string[]; flops: number[] } | null =
    null;
  #profileDetails: Record<string, ProfileEntry> = {};
  #profileSamples: { name: string; ms: number }[] = [];
  #arena: GPUBuffer;
  #arenaCpu = new Uint8Array(UNIFORM_ARENA);
  #arenaUsed = 0;
  #pendingError: Error | null = null;
  #lost: string | null = null;
  #live = 0;
  #peak = 0;
  #pooled = 0;
  #peakReserved = 0;
  #count = 0;
  #stats: DispatchStats = newStats();
  #maxBinding: number;
  /** Buffers released since the last submit: recorded work may still use them. */
  #recent = new Set<GPUBuffer>();

  /** Use {@linkcode createGpuBackend}. */
  constructor(device: GPUDevice, adapterInfo: AdapterReport) {
    this.device = device;
    this.adapterInfo = adapterInfo;
    this.description = adapterInfo.description;
    this.hasF16 = device.features.has("shader-f16");
    this.#maxBinding = Math.min(
      device.limits.maxStorageBufferBindingSize,
      device.limits.maxBufferSize,
    );
    this.maxStorageBytes = this.#maxBinding;
    this.viewAlignment = device.limits.minStorageBufferOffsetAlignment;
    this.#arena = device.createBuffer({
      size: UNIFORM_ARENA,
      usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
    });
    device.addEventListener("uncapturederror", (ev) => {
      const e = (ev as GPUUncapturedErrorEvent).error;
      if (this.#pendingError) return;
      const msg = e.message.split("\n").filter((l) => l.trim()).slice(0, 3).join(" | ");
      this.#pendingError = e instanceof GPUOutOfMemoryError
        ? new GpuOutOfMemoryError(`GPU out of memory: ${msg}`)
        : new GpuValidationError(`WebGPU validation error: ${msg}`);
    });
    device.lost.then((info) => {
      this.#lost = info.message || info.reason || "unknown reason";
    });
  }

  #check(): void {
    if (this.#lost !== null) throw new GpuDeviceLostError(`WebGPU device lost: ${this.#lost}`);
    if (this.#pendingError) {
      const e = this.#pendingError;
      this.#pendingError = null;
      throw e;
    }
  }

  #needF16(what: string): void {
    if (!this.hasF16) {
      throw new TypeError(
        `Cannot ${what}: the WebGPU adapter ${this.description} has no shader-f16`,
      );
    }
  }

  #alloc(bytes: number, forUpload = false): GpuStorage {
    bytes = Math.ceil(bytes / 4) * 4; // f16 tensors of odd length: whole 4-byte words
    if (bytes > this.#maxBinding) {
      throw new GpuOutOfMemoryError(
        `Cannot allocate ${bytes} bytes: above the adapter's storage binding limit (${this.#maxBinding})`,
      );
    }
    const cls = sizeClass(bytes);
    const free = this.#pool.get(cls);
    let buffer: GPUBuffer | undefined;
    if (free?.length) {
      const k = forUpload && this.#encoder
        ? free.findLastIndex((b) => !this.#recent.has(b))
        : free.length - 1;
      if (k >= 0) buffer = free.splice(k, 1)[0];
    }
    if (buffer) {
      this.#pooled -= cls;
    } else {
      buffer = this.device.createBuffer({ size: cls, usage: STORAGE_USAGE });
    }
    this.#live += cls;
    this.#count++;
    if (this.#live > this.#peak) this.#peak = this.#live;
    if (this.#live + this.#pooled > this.#peakReserved) {
      this.#peakReserved = this.#live + this.#pooled;
    }
    return { buffer, offset: 0, span: buffer.size, bytes: Math.max(4, bytes), refs: 1 };
  }

  /** Copies host data into a new buffer. */
  upload(data: CpuArray, info: TensorInfo): Storage {
    this.#check();
    if (info.dtype === "f64") throw new TypeError("f64 tensors exist only on the CPU backend");
    if (info.dtype === "f16") this.#needF16("upload an f16 tensor");
    const s = this.#alloc(data.byteLength, true);
    if (data.byteLength % 4) {
      // writeBuffer moves whole 4-byte words: an odd count of f16 gets one zero pad element
      const padded = new Uint8Array(Math.ceil(data.byteLength / 4) * 4);
      padded.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      this.device.queue.writeBuffer(s.buffer, 0, padded);
    } else if (data.byteLength > 0) {
      this.device.queue.writeBuffer(
        s.buffer,
        0,
        data.buffer as ArrayBuffer,
        data.byteOffset,
        data.byteLength,
      );
    }
    return s;
  }

  /** A window of the parent's buffer, bound as `{buffer, offset, size}`. */
  view(parent: Storage, byteOffset: number, bytes: number): Storage {
    const p = parent as GpuStorage;
    const root = p.parent ?? p;
    const offset = p.offset + byteOffset;
    if (offset % this.viewAlignment || byteOffset < 0 || byteOffset + bytes > p.bytes) {
      throw new RangeError(
        `Cannot view bytes ${byteOffset}..${byteOffset + bytes} of a ${p.bytes}-byte buffer ` +
          `(offsets must be multiples of ${this.viewAlignment})`,
      );
    }
    root.refs++;
    // bind whole vec4s (kernels may load vec4<f32>; they mask by size), never past the buffer
    const span = Math.min(root.buffer.size - offset, Math.max(16, Math.ceil(bytes / 16) * 16));
    return { buffer: root.buffer, offset, span, bytes, refs: 1, parent: root } as GpuStorage;
  }

  /** Records a buffer copy in the current command encoder (ends the compute pass). */
  copy(src: Storage, dst: Storage, bytes: number): void {
    this.#check();
    if (bytes === 0) return;
    if (bytes % 4) {
      throw new RangeError(
        `Cannot copy ${bytes} bytes on WebGPU: buffer copies move whole 4-byte words (an odd count of f16)`,
      );
    }
    const s = src as GpuStorage, d = dst as GpuStorage;
    if (!this.#encoder) this.#encoder = this.device.createCommandEncoder();
    this.#pass?.end();
    this.#pass = null;
    this.#encoder.copyBufferToBuffer(s.buffer, s.offset, d.buffer, d.offset, bytes);
    this.#stats.copies++;
  }

  #pipeline(code: string): CachedPipeline {
    let p = this.#pipelines.get(code);
    if (!p) {
      const module = this.device.createShaderModule({ code });
      const pipeline = this.device.createComputePipeline({
        layout: "auto",
        compute: { module, entryPoint: "main" },
      });
      p = { pipeline, layout: pipeline.getBindGroupLayout(0), id: this.#pipelines.size + 1 };
      this.#pipelines.set(code, p);
    }
    return p;
  }

  #bufferId(b: GPUBuffer): number {
    let id = this.#bufferIds.get(b);
    if (id === undefined) this.#bufferIds.set(b, id = this.#nextBufferId++);
    return id;
  }

  #beginPass(opName: string, detail?: string, flops = 0): GPUComputePassEncoder {
    if (!this.#encoder) this.#encoder = this.device.createCommandEncoder();
    const prof = this.#profile;
    if (prof && prof.names.length < PROFILE_CAPACITY) {
      // profiling: one pass per dispatch, with timestamps at its start and end
      this.#pass?.end();
      const i = prof.names.length;
      prof.names.push(opName);
      prof.details.push(detail ?? opName);
      prof.flops.push(flops);
      this.#pass = this.#encoder.beginComputePass({
        timestampWrites: {
          querySet: prof.querySet,
          beginningOfPassWriteIndex: 2 * i,
          endOfPassWriteIndex: 2 * i + 1,
        },
      });
      return this.#pass;
    }
    if (!this.#pass) this.#pass = this.#encoder.beginComputePass();
    return this.#pass;
  }

  /** Records the op's dispatches into the current pass. */
  exec<P>(
    op: OpDef<P>,
    inputs: Storage[],
    info: OpInfo,
    params: P,
    into?: readonly (Storage | null)[],
  ): Storage[] {
    this.#check();
    if (!op.gpu) throw new TypeError(`Op ${op.name} has no WebGPU kernel`);
    if (info.inputs.some((t) => t.dtype === "f16") || info.outputs.some((t) => t.dtype === "f16")) {
      if (!op.f16) {
        throw new TypeError(`Op ${op.name} has no f16 WebGPU kernel: cast its inputs to f32 first`);
      }
      this.#needF16(`run ${op.name} on f16 tensors`);
    }
    const plan: GpuPlan = op.gpu(info, params);
    const outputs = info.outputs.map((o, k) =>
      (into?.[k] as GpuStorage | null | undefined) ??
        this.#alloc(sizeOf(o.shape) * bytesPer(o.dtype))
    );
    const temps = (plan.temps ?? []).map((b) => this.#alloc(b));
    const ins = inputs as GpuStorage[];
    for (const k of plan.kernels) {
      if (k.workgroups[0] * k.workgroups[1] * k.workgroups[2] === 0) continue;
      if (k.uniform && this.#arenaUsed + UNIFORM_SLOT > UNIFORM_ARENA) this.flush();
      // the finer profile key only while profiling (no work on the usual path)
      const pass = this.#beginPass(
        op.name,
        this.#profile ? dispatchDetail(op.name, plan, k, info) : undefined,
        k.flops,
      );
      const { pipeline, layout, id } = this.#pipeline(k.code);
      const buffers = k.bind.map((ref) =>
        "in" in ref ? ins[ref.in] : "out" in ref ? outputs[ref.out] : temps[ref.tmp]
      );
      let off = -1;
      if (k.uniform) {
        if (k.uniform.byteLength > UNIFORM_SLOT) {
          throw new RangeError(`${op.name}: uniform block over ${UNIFORM_SLOT} bytes`);
        }
        off = this.#arenaUsed;
        this.#arenaCpu.set(new Uint8Array(k.uniform), off);
        this.#arenaUsed += UNIFORM_SLOT;
      }
      const key = `${id}|${
        buffers.map((b) =>
          b.parent ? `${this.#bufferId(b.buffer)}@${b.offset}+${b.span}` : this.#bufferId(b.buffer)
        ).join(",")
      }|${off}|${k.uniform?.byteLength ?? 0}`;
      let group = this.#groups.get(key);
      if (!group) {
        const entries: GPUBindGroupEntry[] = buffers.map((b, binding) => ({
          binding,
          resource: { buffer: b.buffer, offset: b.offset, size: b.span },
        }));
        if (k.uniform) {
          entries.push({
            binding: k.bind.length,
            resource: { buffer: this.#arena, offset: off, size: k.uniform.byteLength },
          });
        }
        group = this.device.createBindGroup({ layout, entries });
        this.#stats.bindGroups++;
        if (this.#groups.size >= BIND_GROUP_CACHE) this.#groups.clear();
        this.#groups.set(key, group);
      }
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, group);
      pass.dispatchWorkgroups(k.workgroups[0], k.workgroups[1], k.workgroups[2]);
      if (this.#profile) {
        pass.end();
        this.#pass = null;
      }
      this.#stats.dispatches++;
      this.#stats.perOp[op.name] = (this.#stats.perOp[op.name] ?? 0) + 1;
    }
    for (const t of temps) this.release(t);
    return outputs;
  }

  /** Ends the pass and submits everything recorded. */
  flush(): void {
    if (!this.#encoder) return;
    const t0 = performance.now();
    this.#pass?.end();
    if (this.#arenaUsed > 0) {
      this.device.queue.writeBuffer(this.#arena, 0, this.#arenaCpu, 0, this.#arenaUsed);
      this.#arenaUsed = 0;
    }
    this.device.queue.submit([this.#encoder.finish()]);
    this.#encoder = null;
    this.#pass = null;
    this.#stats.submits++;
    this.#stats.submitMs += performance.now() - t0;
    this.#recent.clear();
  }

  /** Whether the adapter can time kernels (`timestamp-query`). */
  get canProfile(): boolean {
    return this.device.features.has("timestamp-query");
  }

  /**
   * Starts timing every dispatch (each gets its own compute pass with
   * timestamps, so profiled work runs slower: profile a separate step).
   * Returns false when the adapter has no `timestamp-query`.
   */
  beginProfile(): boolean {
    if (!this.canProfile || this.#profile) return false;
    this.flush();
    this.#profile = {
      querySet: this.device.createQuerySet({ type: "timestamp", count: 2 * PROFILE_CAPACITY }),
      names: [],
      details: [],
      flops: [],
    };
    return true;
  }

  /**
   * Stops timing and returns GPU milliseconds and dispatch counts per op
   * name, from the timestamps of the profiled dispatches.
   */
  async endProfile(): Promise<Record<string, { ms: number; dispatches: number }>> {
    const prof = this.#profile;
    if (!prof) throw new TypeError("endProfile() without beginProfile()");
    this.flush();
    this.#profile = null;
    const n = prof.names.length;
    const out: Record<string, { ms: number; dispatches: number }> = {};
    if (n === 0) {
      prof.querySet.destroy();
      return out;
    }
    const bytes = 16 * n;
    const resolve = this.device.createBuffer({
      size: bytes,
      usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
    });
    const staging = this.device.createBuffer({
      size: bytes,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    const enc = this.device.createCommandEncoder();
    enc.resolveQuerySet(prof.querySet, 0, 2 * n, resolve, 0);
    enc.copyBufferToBuffer(resolve, 0, staging, 0, bytes);
    this.device.queue.submit([enc.finish()]);
    await staging.mapAsync(GPUMapMode.READ);
    const ts = new BigUint64Array(staging.getMappedRange().slice(0));
    staging.unmap();
    for (const b of [staging, resolve]) b.destroy();
    prof.querySet.destroy();
    this.#check();
    const details: Record<string, ProfileEntry> = {};
    const samples: { name: string; ms: number }[] = [];
    prof.names.forEach((name, i) => {
      const dt = ts[2 * i + 1] >= ts[2 * i] ? Number(ts[2 * i + 1] - ts[2 * i]) / 1e6 : 0;
      samples.push({ name, ms: dt });
      for (const [into, key] of [[out, name], [details, prof.details[i]]] as const) {
        const e = into[key] ?? (into[key] = { ms: 0, dispatches: 0 });
        e.ms += dt;
        e.dispatches++;
      }
      const f = prof.flops[i];
      if (f > 0) details[prof.details[i]].flops = (details[prof.details[i]].flops ?? 0) + f;
    });
    this.#profileDetails = details;
    this.#profileSamples = samples;
    return out;
  }

  /**
   * The last {@linkcode endProfile}'s dispatches one by one, in recording
   * order: op name and GPU milliseconds (what the tuners take medians of).
   */
  profileSamples(): readonly { name: string; ms: number }[] {
    return this.#profileSamples;
  }

  /**
   * The last {@linkcode endProfile}'s times split finer: by op, kernel of its
   * plan, input shapes and (for matmul kernels) tile, e.g.
   * `"matmul_bias#0 [8192,512]·[1536,512]·[1536] t128x128x16 8x8"`, with the
   * FLOPs of the products among them.
   */
  profileDetails(): Record<string, ProfileEntry> {
    return this.#profileDetails;
  }

  /** Flushes, copies to a staging buffer and maps it. */
  async read(storage: Storage, info: TensorInfo): Promise<CpuArray> {
    this.#check();
    const s = storage as GpuStorage;
    const n = sizeOf(info.shape);
    const bytes = n * bytesPer(info.dtype);
    const words = Math.ceil(bytes / 4) * 4; // copies move whole 4-byte words
    this.flush();
    const out = info.dtype === "i32"
      ? new Int32Array(n)
      : info.dtype === "f16"
      ? new Float16Array(n)
      : new Float32Array(n);
    if (bytes === 0) return out;
    const staging = this.device.createBuffer({
      size: words,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    const enc = this.device.createCommandEncoder();
    enc.copyBufferToBuffer(s.buffer, s.offset, staging, 0, words);
    this.device.queue.submit([enc.finish()]);
    this.#stats.readbacks++;
    try {
      await staging.mapAsync(GPUMapMode.READ);
    } catch (err) {
      this.#check();
      throw new GpuDeviceLostError(`Readback failed: ${(err as Error).message}`);
    }
    this.#check();
    new Uint8Array(out.buffer).set(new Uint8Array(staging.getMappedRange(0, words), 0, bytes));
    staging.unmap();
    staging.destroy();
    return out;
  }

  /** Returns the buffer to the pool (a view drops its ref of the parent). */
  release(storage: Storage): void {
    const s = storage as GpuStorage;
    if (s.parent) {
      if (--s.parent.refs === 0) this.release(s.parent);
      return;
    }
    const cls = s.buffer.size;
    let list = this.#pool.get(cls);
    if (!list) this.#pool.set(cls, list = []);
    // kept in descending buffer id, so allocation takes the lowest free id: a step that allocates
    // and frees as the last one did gets the same buffers, and its bind groups come from the cache
    const id = this.#bufferId(s.buffer);
    let lo = 0, hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.#bufferId(list[mid]) > id) lo = mid + 1;
      else hi = mid;
    }
    list.splice(lo, 0, s.buffer);
    if (this.#encoder) this.#recent.add(s.buffer);
    this.#live -= cls;
    this.#pooled += cls;
    this.#count--;
  }

  /** Submits and waits for the queue to drain. */
  async sync(): Promise<void> {
    this.flush();
    await this.device.queue.onSubmittedWorkDone();
    this.#check();
  }

  /** Live (in tensors), peak and pooled bytes. */
  memoryStats(): MemoryStats {
    return {
      liveBytes: this.#live,
      peakBytes: this.#peak,
      pooledBytes: this.#pooled,
      peakReservedBytes: this.#peakReserved,
      liveBuffers: this.#count,
    };
  }

  /** Peak := live (and peak reserved := live + pooled). */
  resetPeak(): void {
    this.#peak = this.#live;
    this.#peakReserved = this.#live + this.#pooled;
  }

  /** Dispatch, submit and readback counts since the last reset. */
  dispatchStats(reset = false): DispatchStats {
    const s = this.#stats;
    if (reset) this.#stats = newStats();
    return s;
  }

  /** Destroys pooled buffers once the queue is idle. */
  async emptyCache(): Promise<void> {
    await this.sync();
    for (const list of this.#pool.values()) for (const b of list) b.destroy();
    this.#pool.clear();
    this.#groups.clear();
    this.#pooled = 0;
  }

  /** Releases the device. */
  destroy(): void {
    this.flush();
    for (const list of this.#pool.values()) for (const b of list) b.destroy();
    this.#pool.clear();
    this.#arena.destroy();
    this.device.destroy();
  }
}

/** Acquires an adapter and device and builds the backend. */
export async function createGpuBackend(): Promise<GpuBackend> {
  const adapter = await requestAdapter();
  const device = await requestDevice(adapter);
  return new GpuBackend(device, describeAdapter(adapter));
}

let shared: Promise<GpuBackend | null> | null = null;

/** The process-wide GPU backend, or null when no adapter exists. */
export function sharedGpuBackend(): Promise<GpuBackend | null> {
  if (!shared) {
    shared = createGpuBackend().catch((err) => {
      if (err instanceof GpuUnavailableError) return null;
      throw err;
    });
  }
  return shared;
}

/** The key of one profiled dispatch in {@linkcode GpuBackend.profileDetails}. */
function dispatchDetail(name: string, plan: GpuPlan, k: GpuKernel, info: OpInfo): string {
  const shapes = info.inputs.map((t) => `[${t.shape.join(",")}]`).join("·");
  const tile = /matmul tile (\S+) thread (\S+)( double)?( padded)?( flat)?/.exec(
    k.code.slice(0, 120),
  );
  const flags = `${tile?.[3] ? "d" : ""}${tile?.[4] ? "p" : ""}${tile?.[5] ? "f" : ""}`;
  const t = tile ? ` t${tile[1]} ${tile[2]}${flags}` : "";
  return `${name}#${plan.kernels.indexOf(k)} ${shapes}${t}`;
}
