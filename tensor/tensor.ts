/**
 * Tensor, the autograd tape, and memory scopes: the spine of webseq.
 *
 * Every op goes through {@linkcode apply}: it checks inputs, asks the backend
 * to run the op, wraps the outputs, and (when gradients are on and an input
 * requires one) records a node. {@linkcode Tensor.backward} walks the nodes in
 * reverse topological order calling each op's backward rule, and sums the
 * gradients of a tensor used by several ops (with an `accumulate` add, unless
 * the op that runs last absorbs the pending sum: `BackwardContext.takeGrad`).
 *
 * @example
 * ```ts
 * import { mul, scope, sum, tensor } from "@webseq/webseq";
 * const x = tensor([1, 2, 3], [3], { requiresGrad: true });
 * scope(() => sum(mul(x, x)).backward());
 * console.log(await x.grad!.toArray()); // [2, 4, 6]
 * ```
 *
 * @module
 */
import {
  allocArray,
  type Backend,
  bytesPer,
  type CpuArray,
  type DType,
  fmtShape,
  type OpDef,
  type Shape,
  sizeOf,
  type Storage,
  type TensorInfo,
  type TensorLike,
} from "./types.ts";
import { CPU } from "./cpu_backend.ts";

interface Node {
  // deno-lint-ignore no-explicit-any
  op: OpDef<any>;
  inputs: Tensor[];
  outputs: Tensor[];
  params: unknown;
}

let nextId = 1;

const safetyNet = new FinalizationRegistry<{ backend: Backend; storage: Storage }>(
  ({ backend, storage }) => {
    if (--storage.refs === 0) backend.release(storage);
  },
);

/** An n-dimensional array on a backend, with optional gradient tracking. */
export class Tensor {
  /** Unique id (for the tape). */
  readonly id: number = nextId++;
  /** Dimensions, outermost first. */
  readonly shape: Shape;
  /** Element type. */
  readonly dtype: DType;
  /** The backend holding the data. */
  readonly backend: Backend;
  /** Whether gradients flow to this tensor. */
  requiresGrad = false;
  /** Accumulated gradient of a leaf, after `backward()`. */
  grad: Tensor | null = null;
  /** Optional name (parameters use the contract's names). */
  name = "";
  /**
   * @internal Where this leaf's gradient may be written in place: a fresh tensor over that
   * memory per call, or null (AdamW's flat gradient buffer; see `BackwardContext.gradSink`).
   */
  gradSink: (() => Tensor | null) | null = null;
  /** @internal the node that produced this tensor */
  node: Node | null = null;
  #storage: Storage | null;
  #token = {};

  /** @internal use `tensor()` or ops to create tensors */
  constructor(backend: Backend, storage: Storage, info: TensorInfo) {
    this.backend = backend;
    this.#storage = storage;
    this.shape = Object.freeze([...info.shape]);
    this.dtype = info.dtype;
    safetyNet.register(this, { backend, storage }, this.#token);
    track(this);
  }

  /** Number of elements. */
  get size(): number {
    return sizeOf(this.shape);
  }

  /** Number of dimensions. */
  get rank(): number {
    return this.shape.length;
  }

  /** Whether `dispose()` was called. */
  get disposed(): boolean {
    return this.#storage === null;
  }

  /** @internal the backend storage; throws if disposed */
  get storage(): Storage {
    if (!this.#storage) {
      throw new TypeError(
        `Tensor ${this.name || "#" + this.id} ${fmtShape(this.shape)} was used after dispose()`,
      );
    }
    return this.#storage;
  }

  /** Shape and dtype. */
  get info(): TensorInfo {
    return { shape: this.shape, dtype: this.dtype };
  }

  /** Reads the data back to the host (flushes pending GPU work). */
  data(): Promise<CpuArray> {
    return this.backend.read(this.storage, this.info);
  }

  /** The data as a flat array of numbers. */
  async toArray(): Promise<number[]> {
    return Array.from(await this.data());
  }

  /** The value of a one-element tensor. */
  async item(): Promise<number> {
    if (this.size !== 1) {
      throw new TypeError(`item() needs one element, got ${fmtShape(this.shape)}`);
    }
    return (await this.data())[0];
  }

  /** Frees the storage now (idempotent). Gradients are disposed too. */
  dispose(): void {
    const s = this.#storage;
    if (!s) return;
    this.#storage = null;
    safetyNet.unregister(this.#token);
    if (--s.refs === 0) this.backend.release(s);
    untrack(this);
    this.node = null;
    this.grad?.dispose();
    this.grad = null;
  }

  /** Removes this tensor from the enclosing scopes so they do not dispose it. */
  keep(): this {
    untrack(this);
    return this;
  }

  /** A tensor sharing this storage, cut off from the tape. */
  detach(): Tensor {
    const s = this.storage;
    s.refs++;
    return new Tensor(this.backend, s, this.info);
  }

  /** @internal a view with another shape over the same storage */
  view(shape: Shape): Tensor {
    const s = this.storage;
    s.refs++;
    return new Tensor(this.backend, s, { shape, dtype: this.dtype });
  }

  /**
   * @internal Points this tensor at `other`'s storage (sharing it, no copy)
   * and drops its own: the optimizer moves parameters into its flat buffer
   * this way, and the model keeps the same Tensor objects.
   */
  shareStorageOf(other: Tensor): void {
    if (other.backend !== this.backend || other.dtype !== this.dtype || other.size !== this.size) {
      throw new TypeError(`shareStorageOf(): ${other} cannot back ${this}`);
    }
    const old = this.storage;
    const s = other.storage;
    s.refs++;
    this.#storage = s;
    safetyNet.unregister(this.#token);
    safetyNet.register(this, { backend: this.backend, storage: s }, this.#token);
    if (--old.refs === 0) this.backend.release(old);
  }

  /**
   * Reverse-mode autodiff from this tensor. `dy` defaults to ones (a scalar
   * loss). Leaf tensors with `requiresGrad` accumulate into `.grad`.
   */
  backward(dy?: Tensor): void {
    backward(this, dy);
  }

  /** `Tensor [2, 3] f32 on webgpu`. */
  toString(): string {
    return `Tensor ${fmtShape(this.shape)} ${this.dtype} on ${this.backend.kind}`;
  }
}

// ---------------------------------------------------------------- engine state

let defaultBackend: Backend = CPU;
let gradEnabled = true;
const scopes: Set<Tensor>[] = [];

function track(t: Tensor): void {
  const top = scopes[scopes.length - 1];
  if (top) top.add(t);
}

function untrack(t: Tensor): void {
  for (const s of scopes) s.delete(t);
}

/** The backend new tensors go to when none is named. */
export function getDefaultBackend(): Backend {
  return defaultBackend;
}

/** Sets the backend new tensors go to when none is named. */
export function setDefaultBackend(backend: Backend): void {
  defaultBackend = backend;
}

/** Whether ops currently record the tape. */
export function isGradEnabled(): boolean {
  return gradEnabled;
}

/** Runs `fn` without recording the tape (inference, optimizer updates). */
export function noGrad<T>(fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = false;
  try {
    return fn();
  } finally {
    gradEnabled = prev;
  }
}

function collectTensors(value: unknown, out: Set<Tensor>, depth = 0): void {
  if (depth > 4 || value === null || typeof value !== "object") return;
  if (value instanceof Tensor) {
    out.add(value);
    return;
  }
  if (Array.isArray(value)) {
    for (const v of value) collectTensors(v, out, depth + 1);
    return;
  }
  if (Object.getPrototypeOf(value) === Object.prototype) {
    for (const v of Object.values(value)) collectTensors(v, out, depth + 1);
  }
}

function endScope(set: Set<Tensor>, result: unknown): void {
  const keep = new Set<Tensor>();
  collectTensors(result, keep);
  scopes.pop();
  const parent = scopes[scopes.length - 1];
  for (const t of set) {
    if (keep.has(t)) {
      if (parent) parent.add(t);
    } else {
      t.dispose();
    }
  }
}

/**
 * Runs `fn` and disposes every tensor created inside it except those it
 * returns (directly, in an array, or in a plain object) and those `keep()`-ed.
 * The intermediates of a training step live and die in one scope.
 */
export function scope<T>(fn: () => T): T {
  const set = new Set<Tensor>();
  scopes.push(set);
  let result: T;
  try {
    result = fn();
  } catch (err) {
    endScope(set, undefined);
    throw err;
  }
  if (result instanceof Promise) {
    throw new TypeError("scope() got an async function: use scopeAsync()");
  }
  endScope(set, result);
  return result;
}

/** {@linkcode scope} for async functions (readbacks inside). */
export async function scopeAsync<T>(fn: () => Promise<T>): Promise<T> {
  const set = new Set<Tensor>();
  scopes.push(set);
  let result: T;
  try {
    result = await fn();
  } catch (err) {
    endScope(set, undefined);
    throw err;
  }
  endScope(set, result);
  return result;
}

// ---------------------------------------------------------------- creation

/** Options of {@linkcode tensor} and the other creators. */
export interface TensorOptions {
  /** Element type; default f32 (i32 for Int32Array data). */
  dtype?: DType;
  /** Backend; default the default backend. */
  backend?: Backend;
  /** Track gradients (leaf parameter). */
  requiresGrad?: boolean;
}

/** A tensor from host data (flat, row-major) and a shape. */
export function tensor(
  data: ArrayLike<number>,
  shape: Shape,
  opts: TensorOptions = {},
): Tensor {
  const dtype: DType = opts.dtype ??
    (data instanceof Int32Array
      ? "i32"
      : data instanceof Float64Array
      ? "f64"
      : data instanceof Float16Array
      ? "f16"
      : "f32");
  const backend = opts.backend ?? defaultBackend;
  const n = sizeOf(shape);
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) {
      throw new TypeError(`Cannot create tensor: bad shape ${fmtShape(shape)}`);
    }
  }
  if (data.length !== n) {
    throw new TypeError(
      `Cannot create tensor: ${data.length} values do not fill shape ${fmtShape(shape)} (${n})`,
    );
  }
  if (dtype === "f64" && backend.kind !== "cpu") {
    throw new TypeError("f64 tensors exist only on the CPU backend");
  }
  const arr = allocArray(dtype, n);
  arr.set(data as ArrayLike<number>);
  const t = new Tensor(backend, backend.upload(arr, { shape, dtype }), { shape, dtype });
  t.requiresGrad = opts.requiresGrad ?? false;
  return t;
}

/** A tensor of zeros. */
export function zeros(shape: Shape, opts: TensorOptions = {}): Tensor {
  return tensor(allocArray(opts.dtype ?? "f32", sizeOf(shape)), shape, opts);
}

/** A tensor filled with `value`. */
export function full(shape: Shape, value: number, opts: TensorOptions = {}): Tensor {
  const a = allocArray(opts.dtype ?? "f32", sizeOf(shape));
  a.fill(value);
  return tensor(a, shape, opts);
}

/** A tensor of ones. */
export function ones(shape: Shape, opts: TensorOptions = {}): Tensor {
  return full(shape, 1, opts);
}

/**
 * A tensor of `shape` over the elements of `base` from `offset` on, sharing
 * its memory (writes through either show in both). `offset` in bytes must be
 * a multiple of the backend's `viewAlignment`. Not recorded on the tape.
 */
export function sliceView(base: Tensor, offset: number, shape: Shape): Tensor {
  const n = sizeOf(shape);
  if (!Number.isInteger(offset) || offset < 0 || offset + n > base.size) {
    throw new RangeError(
      `sliceView(): elements ${offset}..${offset + n} outside ${fmtShape(base.shape)}`,
    );
  }
  const per = bytesPer(base.dtype);
  if ((offset * per) % base.backend.viewAlignment) {
    throw new RangeError(
      `sliceView(): offset ${
        offset * per
      } bytes is not a multiple of ${base.backend.viewAlignment}`,
    );
  }
  const s = base.backend.view(base.storage, offset * per, n * per);
  return new Tensor(base.backend, s, { shape, dtype: base.dtype });
}

/**
 * Copies the elements of `src` into `dst` (same dtype and size; either may
 * be a {@linkcode sliceView}), in order with the recorded ops. Not recorded
 * on the tape.
 */
export function copyInto(dst: Tensor, src: Tensor): void {
  if (dst.backend !== src.backend || dst.dtype !== src.dtype || dst.size !== src.size) {
    throw new TypeError(`copyInto(): cannot copy ${src} (${src.size}) into ${dst} (${dst.size})`);
  }
  dst.backend.copy(src.storage, dst.storage, src.size * bytesPer(src.dtype));
}

/** Moves (copies) a tensor to another backend. */
export async function toBackend(t: Tensor, backend: Backend): Promise<Tensor> {
  if (t.backend === backend) return t;
  const data = await t.data();
  return tensor(data, t.shape, { dtype: t.dtype, backend, requiresGrad: t.requiresGrad });
}

// ---------------------------------------------------------------- apply

/**
 * Runs an op on its inputs' backend and records it on the tape.
 * Returns all outputs (most ops have one).
 */
export function apply<P>(op: OpDef<P>, inputs: Tensor[], params: P): Tensor[] {
  return run(op, inputs, params, null);
}

/**
 * {@linkcode apply} with output k written into `into[k]`'s memory where it is
 * given (a gradient sink, see `BackwardContext.gradSink`): `op` must
 * overwrite every output element (`overwrites`), and `into[k]` must have
 * output k's shape, dtype and backend. The given tensors are consumed: each
 * returned output shares its memory, and the given tensor is disposed.
 */
export function applyInto<P>(
  op: OpDef<P>,
  inputs: Tensor[],
  params: P,
  into: readonly (TensorLike | null | undefined)[],
): Tensor[] {
  if (into.every((t) => !t)) return run(op, inputs, params, null);
  if (!op.overwrites) throw new TypeError(`applyInto(): ${op.name} does not overwrite its outputs`);
  // the sinks of BackwardContext.gradSink are Tensors (types.ts names them TensorLike)
  return run(op, inputs, params, into as readonly (Tensor | null | undefined)[]);
}

function run<P>(
  op: OpDef<P>,
  inputs: Tensor[],
  params: P,
  into: readonly (Tensor | null | undefined)[] | null,
): Tensor[] {
  const backend = inputs[0]?.backend ?? defaultBackend;
  let anyF64 = false;
  for (const t of inputs) {
    if (t.backend !== backend) {
      throw new TypeError(
        `Cannot ${op.name}: inputs are on different backends (${backend.kind} vs ${t.backend.kind})`,
      );
    }
    if (t.dtype === "f64") anyF64 = true;
  }
  const inInfo = inputs.map((t) => t.info);
  let outInfo = op.outputs(inInfo, params);
  if (anyF64) {
    outInfo = outInfo.map((o) => (o.dtype === "f32" ? { shape: o.shape, dtype: "f64" } : o));
  }
  let given: (Storage | null)[] | undefined;
  if (into) {
    given = outInfo.map((o, k) => {
      const t = into[k];
      if (!t) return null;
      if (
        t.backend !== backend || t.dtype !== o.dtype || t.shape.length !== o.shape.length ||
        t.shape.some((d, j) => d !== o.shape[j])
      ) {
        throw new TypeError(
          `applyInto(): ${t} cannot hold ${op.name}'s output ${fmtShape(o.shape)}`,
        );
      }
      return t.storage;
    });
  }
  const storages = backend.exec(
    op,
    inputs.map((t) => t.storage),
    {
      inputs: inInfo,
      outputs: outInfo,
    },
    params,
    given,
  );
  const outputs = storages.map((s, i) => {
    if (given?.[i]) s.refs++; // shared with into[i], which is disposed below
    return new Tensor(backend, s, outInfo[i]);
  });
  if (into) { for (const t of into) t?.dispose(); }
  if (gradEnabled && op.backward && inputs.some((t) => t.requiresGrad)) {
    const node: Node = { op, inputs, outputs, params };
    for (const o of outputs) {
      if (o.dtype !== "i32") {
        o.requiresGrad = true;
        o.node = node;
      }
    }
  }
  return outputs;
}

/**
 * @internal records a node for outputs computed without `apply` (views such
 * as reshape), when gradients are on and an input requires one.
 */
export function recordNode<P>(op: OpDef<P>, inputs: Tensor[], outputs: Tensor[], params: P): void {
  if (!gradEnabled || !op.backward || !inputs.some((t) => t.requiresGrad)) return;
  const node: Node = { op, inputs, outputs, params };
  for (const o of outputs) {
    o.requiresGrad = true;
    o.node = node;
  }
}

// ---------------------------------------------------------------- backward

function topoSort(root: Tensor): Node[] {
  const order: Node[] = [];
  const seen = new Set<Node>();
  const stack: [Node, number][] = [];
  if (root.node) stack.push([root.node, 0]);
  while (stack.length) {
    const top = stack[stack.length - 1];
    const [node, i] = top;
    if (i === 0 && seen.has(node)) {
      stack.pop();
      continue;
    }
    seen.add(node);
    if (i < node.inputs.length) {
      top[1]++;
      const child = node.inputs[i].node;
      if (child && !seen.has(child)) stack.push([child, 0]);
    } else {
      stack.pop();
      order.push(node);
    }
  }
  return order;
}

// the add op is looked up lazily to keep this file free of ops/
let addOp: OpDef<unknown> | null = null;
let onesLike: ((t: Tensor) => Tensor) | null = null;

/** @internal ops/mod.ts registers the ops autograd needs. */
export function registerAutogradOps(add: OpDef<unknown>): void {
  addOp = add;
  onesLike = (t) => full(t.shape, 1, { dtype: t.dtype, backend: t.backend });
}

function accumulate(a: Tensor | undefined, b: Tensor): Tensor {
  if (!a) return b;
  const [s] = apply(addOp!, [a, b], {});
  a.dispose();
  b.dispose();
  return s;
}

function backward(root: Tensor, dy?: Tensor): void {
  if (!addOp || !onesLike) throw new Error("ops/mod.ts must be imported before backward()");
  if (!root.requiresGrad) {
    throw new TypeError("backward(): the tensor does not require a gradient");
  }
  if (!dy && root.size !== 1) {
    throw new TypeError(`backward() without dy needs a scalar, got ${fmtShape(root.shape)}`);
  }
  const nodes = topoSort(root);
  const grads = new Map<Tensor, Tensor>();
  // leaves with a gradient sink, by the number of inputs of nodes they are: an op may write
  // the gradient of a leaf it alone uses into the sink (BackwardContext.gradSink)
  const uses = new Map<Tensor, number>();
  for (const n of nodes) {
    for (const inp of n.inputs) {
      if (!inp.node && inp.gradSink) uses.set(inp, (uses.get(inp) ?? 0) + 1);
    }
  }
  const prev = gradEnabled;
  gradEnabled = false;
  try {
    grads.set(root, dy ? dy.detach() : onesLike(root));
    if (!root.node) {
      root.grad = accumulate(root.grad ?? undefined, grads.get(root)!).keep();
      return;
    }
    for (let n = nodes.length - 1; n >= 0; n--) {
      const node = nodes[n];
      const dys = node.outputs.map((o) => grads.get(o) ?? null);
      if (dys.every((d) => d === null)) continue;
      // an op may absorb an input's pending gradient into its own kernel; the
      // entry is then gone, and the loop below just sets what the op returns
      const takeGrad = (i: number): Tensor | null => {
        const inp = node.inputs[i];
        const g = inp?.node ? grads.get(inp) : undefined;
        if (!g) return null;
        grads.delete(inp);
        return g;
      };
      const gradSink = (i: number): Tensor | null => {
        const inp = node.inputs[i];
        if (!inp || inp.node || !inp.requiresGrad || inp.grad || uses.get(inp) !== 1) return null;
        return inp.gradSink?.() ?? null;
      };
      const gs = node.op.backward!(
        { inputs: node.inputs, outputs: node.outputs, params: node.params, takeGrad, gradSink },
        dys,
      ) as (Tensor | null)[];
      for (const o of node.outputs) {
        grads.get(o)?.dispose();
        grads.delete(o);
      }
      node.inputs.forEach((inp, i) => {
        const g = gs[i];
        if (!g) return;
        if (!inp.requiresGrad) {
          g.dispose();
          return;
        }
        if (g.shape.length !== inp.shape.length || g.shape.some((d, k) => d !== inp.shape[k])) {
          throw new TypeError(
            `${node.op.name} backward gave ${fmtShape(g.shape)} for input ${fmtShape(inp.shape)}`,
          );
        }
        if (inp.node) {
          grads.set(inp, accumulate(grads.get(inp), g));
        } else {
          inp.grad = accumulate(inp.grad ?? undefined, g).keep();
        }
      });
    }
  } finally {
    gradEnabled = prev;
    for (const g of grads.values()) g.dispose();
  }
}
