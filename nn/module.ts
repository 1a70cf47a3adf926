/**
 * `Module`: named parameters in the contract's names (CONTRACTS.md §3),
 * train/eval mode, state dicts as plain Float32Arrays, parameter counts.
 *
 * Initialisation (documented here, used by the layers):
 * - Linear weights: Xavier/Glorot uniform, U(±sqrt(6/(in+out))); biases 0.
 * - Embeddings: normal(0, C^-1/2), so `embed · sqrt(C)` has unit variance and
 *   tied logits start with unit scale.
 * - LayerNorm: weight 1, bias 0. LayerScale gammas: `layer_scale_init`.
 * - Learned positional embeddings: normal(0, 0.02).
 *
 * @module
 */
import { getDefaultBackend, type Tensor, tensor } from "../tensor/tensor.ts";
import type { Backend, Shape } from "../tensor/types.ts";
import { makeNormal, makeRng } from "../tensor/rng.ts";
import { fmtShape, sizeOf } from "../tensor/types.ts";

/** Plain tensor data by name (what safetensors files hold). */
export type StateDict = Record<string, { shape: number[]; data: Float32Array }>;

/** Where and how parameters are created. */
export interface InitContext {
  /** Backend for the parameters. */
  backend: Backend;
  /** Host random generator for initial values. */
  rng: () => number;
  /** The seed `rng` started from (a model's unseeded dropout masks derive from it too). */
  seed?: number;
}

/** A new init context with a seed. */
export function initContext(seed = 0, backend: Backend = getDefaultBackend()): InitContext {
  return { backend, rng: makeRng(seed), seed };
}

/** A parameter tensor filled by `fill(i)`. */
export function parameter(
  ctx: InitContext,
  shape: Shape,
  fill: Initializer,
): Tensor {
  const f = fill(ctx.rng);
  const data = new Float32Array(sizeOf(shape));
  for (let i = 0; i < data.length; i++) data[i] = f();
  return tensor(data, shape, { backend: ctx.backend, requiresGrad: true }).keep();
}

/** Makes a value generator from the host random generator. */
export type Initializer = (rng: () => number) => () => number;

/** Initialisers for {@linkcode parameter}. */
export const init: {
  constant: (v: number) => Initializer;
  uniform: (a: number) => Initializer;
  normal: (std: number) => Initializer;
} = {
  /** Constant value. */
  constant: (v: number): Initializer => () => () => v,
  /** Uniform in [-a, a]. */
  uniform: (a: number): Initializer => (rng) => () => (rng() * 2 - 1) * a,
  /** Normal(0, std). */
  normal: (std: number): Initializer => (rng) => {
    const n = makeNormal(rng);
    return () => n() * std;
  },
};

/** Base class of layers: parameters and children by name. */
export class Module {
  /** Training mode: dropout, attention dropout and DropPath active. */
  training = true;
  #params = new Map<string, Tensor>();
  #children = new Map<string, Module>();

  /** Registers a parameter under a local name. */
  protected addParameter(name: string, t: Tensor): Tensor {
    this.#params.set(name, t);
    t.name = name;
    return t;
  }

  /** Registers a child module under a local name. */
  protected addModule<M extends Module>(name: string, m: M): M {
    this.#children.set(name, m);
    return m;
  }

  /** All parameters with dotted names, children in registration order; shared tensors once. */
  namedParameters(prefix = ""): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    const seen = new Set<Tensor>();
    const walk = (m: Module, p: string) => {
      for (const [n, t] of m.#params) {
        if (!seen.has(t)) {
          seen.add(t);
          out.push([p + n, t]);
        }
      }
      for (const [n, c] of m.#children) walk(c, `${p}${n}.`);
    };
    walk(this, prefix);
    for (const [n, t] of out) t.name = n;
    return out;
  }

  /** Parameter tensors. */
  parameters(): Tensor[] {
    return this.namedParameters().map(([, t]) => t);
  }

  /** Number of parameter elements (shared tensors counted once). */
  parameterCount(): number {
    return this.parameters().reduce((a, t) => a + t.size, 0);
  }

  /** Sets training mode on this module and its children. */
  train(mode = true): this {
    this.training = mode;
    for (const c of this.#children.values()) c.train(mode);
    return this;
  }

  /** Evaluation mode (no dropout). */
  eval(): this {
    return this.train(false);
  }

  /** Reads every parameter back to the host. */
  async stateDict(): Promise<StateDict> {
    const out: StateDict = {};
    for (const [n, t] of this.namedParameters()) {
      out[n] = { shape: [...t.shape], data: Float32Array.from(await t.data()) };
    }
    return out;
  }

  /**
   * Loads parameters by name. Every parameter must be present with its shape
   * unless `strict` is false; unknown names are an error in strict mode.
   */
  loadStateDict(state: StateDict, opts: { strict?: boolean; source?: string } = {}): void {
    const strict = opts.strict ?? true;
    const src = opts.source ?? "state dict";
    const named = this.namedParameters();
    const names = new Set(named.map(([n]) => n));
    if (strict) {
      for (const k of Object.keys(state)) {
        if (!names.has(k)) throw new TypeError(`${src}: unexpected tensor "${k}"`);
      }
    }
    const replacements: [Tensor, Tensor][] = [];
    for (const [n, t] of named) {
      const s = state[n];
      if (!s) {
        if (strict) throw new TypeError(`${src}: missing tensor "${n}"`);
        continue;
      }
      if (s.shape.length !== t.shape.length || s.shape.some((d, k) => d !== t.shape[k])) {
        throw new TypeError(
          `${src}: tensor "${n}" has shape ${fmtShape(s.shape)}, expected ${fmtShape(t.shape)}`,
        );
      }
      replacements.push([
        t,
        tensor(s.data, t.shape, { backend: t.backend, requiresGrad: true }).keep(),
      ]);
    }
    for (const [old, fresh] of replacements) this.#replace(old, fresh);
  }

  #replace(old: Tensor, fresh: Tensor): void {
    fresh.name = old.name;
    const walk = (m: Module) => {
      for (const [n, t] of m.#params) if (t === old) m.#params.set(n, fresh);
      for (const c of m.#children.values()) walk(c);
      m.onParametersReplaced(old, fresh);
    };
    walk(this);
    old.dispose();
  }

  /** Hook for modules that cache parameter references in fields. */
  protected onParametersReplaced(_old: Tensor, _fresh: Tensor): void {}

  /** The local parameter by name. */
  protected param(name: string): Tensor {
    const t = this.#params.get(name);
    if (!t) throw new TypeError(`No parameter "${name}"`);
    return t;
  }

  /**
   * Hook for modules that hold tensors besides their parameters (cached
   * tables): frees them. {@linkcode Module.dispose} calls it on every module
   * of the tree.
   */
  protected releaseCaches(): void {}

  /** Frees every parameter (and gradient) and every module's cached tensors, children's too. */
  dispose(): void {
    const walk = (m: Module) => {
      m.releaseCaches();
      for (const c of m.#children.values()) walk(c);
    };
    walk(this);
    for (const t of this.parameters()) {
      t.grad?.dispose();
      t.dispose();
    }
  }
}
