/**
 * AdamW over named parameters, equal to `torch.optim.AdamW` (decoupled weight
 * decay, bias correction, eps outside the square root). A step never reads
 * back: a training step stays one submit on the GPU.
 *
 * By default (`flat: true`) the optimizer owns flat buffers of parameters,
 * gradients and moments (optim/_flat.ts): the parameters become views of
 * the flat parameter buffer, each step copies the gradients into the flat
 * gradient buffer (buffer copies, not dispatches), and clipping plus the
 * update of every parameter are three dispatches whatever the parameter
 * count (two more per extra bank, when the model exceeds one storage
 * binding). `flat: false` records two kernels per parameter
 * (ops/optim_ops.ts); it is the reference, and both give the same numbers,
 * bit for bit. A step in which some parameter has no gradient takes the
 * per-parameter kernels (over the same flat memory).
 *
 * Biases, norm weights and LayerScale gammas get no weight decay by default
 * (CONTRACTS.md §6). The moments are exported as plain arrays for
 * `optimizer.safetensors` (`exp_avg.<name>`, `exp_avg_sq.<name>`).
 *
 * @example
 * ```ts
 * import { AdamW, tensor } from "@webseq/webseq";
 * const w = tensor([1, 2], [2], { requiresGrad: true });
 * const opt = new AdamW(new Map([["fc.weight", w]]), { lr: 0.1 });
 * w.grad = tensor([0.5, -0.5], [2]);
 * opt.step();
 * opt.zeroGrad();
 * console.log(await w.toArray()); // ≈ [0.899, 2.098]
 * ```
 *
 * @module
 */
import { full, noGrad, Tensor, tensor, zeros } from "../tensor/tensor.ts";
import { fmtShape, sizeOf } from "../tensor/types.ts";
import { type AdamWParams, adamwUpdate } from "../ops/optim_ops.ts";
import { FlatBuffers } from "./_flat.ts";

/** Options of {@linkcode AdamW}; defaults are torch's. */
export interface AdamWOptions {
  /** Base learning rate (a schedule multiplies it through `step(lr)`). */
  lr: number;
  /** Moment decays (β1, β2); default [0.9, 0.999]. */
  betas?: readonly [number, number];
  /** Added to the root of the second moment; default 1e-8. */
  eps?: number;
  /** Decoupled weight decay; default 0.01. */
  weightDecay?: number;
  /**
   * Parameters that get no weight decay; default {@linkcode defaultNoDecay}
   * (biases, norm weights, gammas).
   */
  noDecay?: (name: string) => boolean;
  /**
   * Flat buffers and a constant number of dispatches per step (default
   * true); the parameters become views of the optimizer's buffer. False: one
   * kernel per parameter, parameters untouched.
   */
  flat?: boolean;
  /** Largest flat buffer in bytes (default: the backend's binding limit). */
  maxBankBytes?: number;
}

/** A parameter and its name (CONTRACTS.md §3). */
export interface NamedParameter {
  /** Parameter name, e.g. `encoder.layers.0.fc1.weight`. */
  name: string;
  /** The parameter (a leaf with `requiresGrad`). */
  tensor: Tensor;
}

/** A parameter as the optimizer holds it. */
export interface AdamWParameter extends NamedParameter {
  /** Whether weight decay applies. */
  readonly decay: boolean;
}

/** One moment as plain data (structurally `NamedTensor` of train/run_folder.ts). */
export interface MomentData {
  /** Dimensions (the parameter's). */
  shape: number[];
  /** Elements, row-major. */
  data: Float32Array;
}

/**
 * The optimizer state by parameter name, shaped like `OptimizerState` of
 * train/run_folder.ts (which writes them as `exp_avg.<name>` and
 * `exp_avg_sq.<name>`).
 */
export interface AdamWState {
  /** Steps taken (drives bias correction). */
  step: number;
  /** First moments (torch `exp_avg`). */
  expAvg: Record<string, MomentData>;
  /** Second moments (torch `exp_avg_sq`). */
  expAvgSq: Record<string, MomentData>;
}

/** No decay on biases (`….bias`), norm weights (`…norm…`) and gammas (`…gamma…`). */
export function defaultNoDecay(name: string): boolean {
  return name.endsWith(".bias") || name === "bias" || name.includes("norm") ||
    name.includes("gamma");
}

function checkFinite(what: string, x: number, min = 0, max = Infinity): void {
  if (!Number.isFinite(x) || x < min || x > max) {
    throw new RangeError(`AdamW: ${what} must be in [${min}, ${max}], got ${x}`);
  }
}

/**
 * AdamW with torch's semantics. A parameter without a gradient is skipped
 * (its moments do not move); the step count is shared by all parameters.
 */
export class AdamW {
  /** The parameters, in the order given. */
  readonly params: readonly AdamWParameter[];
  /** Base learning rate, used when `step()` gets none. */
  lr: number;
  /** (β1, β2). */
  readonly betas: readonly [number, number];
  /** eps. */
  readonly eps: number;
  /** Weight decay of the decayed parameters. */
  readonly weightDecay: number;
  #m: Tensor[];
  #v: Tensor[];
  #flat: FlatBuffers | null = null;
  /** The gradient sinks this optimizer gave its parameters (flat mode). */
  #sinks: (() => Tensor | null)[] = [];
  /** The gradients last copied into the flat buffer (skip copying them again). */
  #gathered: (Tensor | null)[] | null = null;
  #step = 0;
  #one: Tensor | null = null;
  #gradScale: Tensor | null = null;
  #scalerState: Tensor | null = null;

  /**
   * Creates zero moments beside each parameter (on its backend). `params`: a
   * Map of name to tensor, `model.namedParameters()` ([name, tensor] pairs)
   * or {name, tensor} records; a name given twice is an error.
   */
  constructor(
    params:
      | Map<string, Tensor>
      | Iterable<NamedParameter | readonly [string, Tensor]>,
    opts: AdamWOptions,
  ) {
    // a Map, `model.namedParameters()`'s [name, tensor] pairs, or {name, tensor} records
    const list: NamedParameter[] = [...params].map((p, i) => {
      const [name, t] = Array.isArray(p)
        ? p
        : [(p as NamedParameter)?.name, (p as NamedParameter)?.tensor];
      if (typeof name !== "string" || !(t instanceof Tensor)) {
        throw new TypeError(
          `AdamW: parameter ${i} is not a [name, tensor] pair or a {name, tensor} record`,
        );
      }
      return { name, tensor: t };
    });
    this.lr = opts.lr;
    this.betas = opts.betas ?? [0.9, 0.999];
    this.eps = opts.eps ?? 1e-8;
    this.weightDecay = opts.weightDecay ?? 0.01;
    checkFinite("lr", this.lr);
    checkFinite("betas[0]", this.betas[0], 0, 1 - 1e-12);
    checkFinite("betas[1]", this.betas[1], 0, 1 - 1e-12);
    checkFinite("eps", this.eps);
    checkFinite("weightDecay", this.weightDecay);
    const noDecay = opts.noDecay ?? defaultNoDecay;
    const seen = new Set<string>();
    for (const { name, tensor: t } of list) {
      if (seen.has(name)) {
        throw new TypeError(`AdamW: parameter ${JSON.stringify(name)} given twice`);
      }
      seen.add(name);
      if (t.dtype === "i32") {
        throw new TypeError(`AdamW: parameter ${JSON.stringify(name)} must be a float tensor`);
      }
      if (t.backend !== list[0].tensor.backend) {
        throw new TypeError(`AdamW: parameter ${JSON.stringify(name)} is on another backend`);
      }
    }
    this.params = list.map(({ name, tensor: t }) => ({ name, tensor: t, decay: !noDecay(name) }));
    if ((opts.flat ?? true) && list.length > 0) {
      const bad = list.find((p) => p.tensor.dtype !== list[0].tensor.dtype);
      if (bad) {
        const name = JSON.stringify(bad.name);
        throw new TypeError(
          `AdamW: flat buffers need one dtype, ${name} is ${bad.tensor.dtype} (pass flat: false)`,
        );
      }
      const flat = this.#flat = new FlatBuffers(this.params, opts.maxBankBytes);
      this.#m = [...flat.m];
      this.#v = [...flat.v];
      // backward rules may write the gradients straight into the gradient bank
      this.#sinks = this.params.map((p, i) => p.tensor.gradSink = () => flat.sinkFor(i));
    } else {
      const moment = (t: Tensor) => zeros(t.shape, { dtype: t.dtype, backend: t.backend }).keep();
      this.#m = list.map((p) => moment(p.tensor));
      this.#v = list.map((p) => moment(p.tensor));
    }
    const first = list[0]?.tensor;
    if (first) this.#one = full([1], 1, { dtype: first.dtype, backend: first.backend }).keep();
  }

  /** Whether the parameters live in flat buffers (`flat` option). */
  get flat(): boolean {
    return this.#flat !== null;
  }

  /** Flat mode, every parameter with a gradient: copies them into the flat buffer (once). */
  #gatherAll(): boolean {
    const flat = this.#flat;
    if (!flat) return false;
    const grads = this.params.map((p) => p.tensor.grad);
    if (grads.some((g) => !g)) return false;
    const prev = this.#gathered;
    if (!prev || grads.some((g, i) => g !== prev[i] || g!.disposed)) {
      flat.gather(grads as Tensor[]);
      this.#gathered = grads;
    }
    return true;
  }

  /**
   * The global gradient norm and torch's clipping factor for `maxNorm`
   * (`[norm, factor]`, each [1]) over the flat gradient buffer: one
   * dispatch per bank plus one. Null when that path does not apply (`flat:
   * false`, or a parameter without a gradient); optim/clip.ts then takes
   * the per-tensor path.
   */
  flatNormAndClipFactor(maxNorm: number): [Tensor, Tensor] | null {
    return this.#gatherAll() ? this.#flat!.normAndClipFactor(maxNorm) : null;
  }

  /** Steps taken so far (t of the last update). */
  get stepCount(): number {
    return this.#step;
  }

  /**
   * Multiplies the gradients of the next `step()` by the device scalar
   * `scale` [1] (the clipping factor from `clipGradNorm`), without a readback.
   */
  setGradScale(scale: Tensor): void {
    if (scale.size !== 1) {
      throw new TypeError(`AdamW: gradScale must have one element, got ${fmtShape(scale.shape)}`);
    }
    this.#gradScale?.dispose();
    this.#gradScale = scale.detach().keep();
  }

  /**
   * Makes the next `step()` obey a loss scaler's device state [4] (see
   * optim/grad_scaler.ts): no update at all when its `foundInf` is set, and
   * bias correction over the steps actually taken (`t − skippedSteps`), as
   * torch's `GradScaler.step(optimizer)` does. No readback.
   */
  setScalerState(state: Tensor): void {
    if (state.size !== 4) {
      throw new TypeError(`AdamW: scaler state must have 4 elements, got ${fmtShape(state.shape)}`);
    }
    this.#scalerState?.dispose();
    this.#scalerState = state.detach().keep();
  }

  /**
   * One update of every parameter that has a gradient, with learning rate
   * `lr` (default the base rate; pass `base · schedule(s)`). Recorded on the
   * device; nothing is read back.
   */
  step(lr: number = this.lr): void {
    checkFinite("lr", lr);
    this.#step++;
    const [beta1, beta2] = this.betas;
    const scale = this.#gradScale ?? this.#one;
    const hp = { lr, beta1, beta2, eps: this.eps, weightDecay: this.weightDecay, step: this.#step };
    const state = this.#scalerState ?? undefined;
    if (scale && this.#gatherAll()) this.#flat!.update(scale, hp, state);
    else if (scale) this.#stepEach(scale, hp, state);
    this.#gathered = null;
    this.#gradScale?.dispose();
    this.#scalerState?.dispose();
    this.#gradScale = this.#scalerState = null;
  }

  /** The reference path: one fused kernel per parameter that has a gradient. */
  #stepEach(scale: Tensor, hp: AdamWParams, scalerState?: Tensor): void {
    noGrad(() => {
      this.params.forEach((p, i) => {
        const g = p.tensor.grad;
        if (!g) return;
        adamwUpdate(p.tensor, g, this.#m[i], this.#v[i], scale, {
          ...hp,
          weightDecay: p.decay ? hp.weightDecay : 0,
        }, scalerState);
      });
    });
  }

  /** Disposes every parameter's gradient (sets `.grad` to null). */
  zeroGrad(): void {
    this.#gathered = null;
    for (const p of this.params) {
      p.tensor.grad?.dispose();
      p.tensor.grad = null;
    }
  }

  /** The moments and step count as host arrays (reads back). */
  async state(): Promise<AdamWState> {
    const expAvg: Record<string, MomentData> = {};
    const expAvgSq: Record<string, MomentData> = {};
    if (this.#flat) {
      const { m, v } = await this.#flat.readMoments();
      this.params.forEach(({ name, tensor: t }, i) => {
        expAvg[name] = { shape: [...t.shape], data: m[i] };
        expAvgSq[name] = { shape: [...t.shape], data: v[i] };
      });
      return { step: this.#step, expAvg, expAvgSq };
    }
    for (let i = 0; i < this.params.length; i++) {
      const { name, tensor: t } = this.params[i];
      expAvg[name] = { shape: [...t.shape], data: Float32Array.from(await this.#m[i].data()) };
      expAvgSq[name] = { shape: [...t.shape], data: Float32Array.from(await this.#v[i].data()) };
    }
    return { step: this.#step, expAvg, expAvgSq };
  }

  /**
   * Restores moments and step count (from a checkpoint). Every parameter
   * needs both moments with its shape; unknown names are an error.
   */
  loadState(state: AdamWState): void {
    if (!Number.isSafeInteger(state.step) || state.step < 0) {
      throw new RangeError(`AdamW state: step must be an integer ≥ 0, got ${state.step}`);
    }
    const names = new Set(this.params.map((p) => p.name));
    for (
      const [prefix, rec] of [["exp_avg", state.expAvg], ["exp_avg_sq", state.expAvgSq]] as const
    ) {
      for (const name of Object.keys(rec)) {
        if (!names.has(name)) {
          throw new TypeError(`AdamW state: ${prefix}.${name} names no parameter of this model`);
        }
      }
    }
    const check = (prefix: string, rec: Record<string, MomentData>, t: Tensor, name: string) => {
      const d = rec[name];
      if (!d) throw new TypeError(`AdamW state: ${prefix}.${name} is missing`);
      if (fmtShape(d.shape) !== fmtShape(t.shape) || d.data.length !== sizeOf(t.shape)) {
        throw new TypeError(
          `AdamW state: ${prefix}.${name} has shape ${
            fmtShape(d.shape)
          } (${d.data.length} values), parameter has ${fmtShape(t.shape)}`,
        );
      }
      return d.data;
    };
    // validate everything before replacing anything
    const mData = this.params.map((p) => check("exp_avg", state.expAvg, p.tensor, p.name));
    const vData = this.params.map((p) => check("exp_avg_sq", state.expAvgSq, p.tensor, p.name));
    if (this.#flat) {
      this.#flat.writeMoments(mData, vData);
      this.#step = state.step;
      return;
    }
    const upload = (data: Float32Array, t: Tensor) =>
      tensor(data, t.shape, { dtype: t.dtype, backend: t.backend }).keep();
    const ms = this.params.map((p, i) => upload(mData[i], p.tensor));
    const vs = this.params.map((p, i) => upload(vData[i], p.tensor));
    for (const t of [...this.#m, ...this.#v]) t.dispose();
    this.#m = ms;
    this.#v = vs;
    this.#step = state.step;
  }

  /**
   * Frees the moments (the optimizer is unusable afterwards). Flat
   * parameters stay views of the parameter buffer, which lives until they
   * are disposed.
   */
  dispose(): void {
    if (this.#flat) {
      // this optimizer's sinks only (another may have taken the parameters since)
      this.params.forEach((p, i) => {
        if (p.tensor.gradSink === this.#sinks[i]) p.tensor.gradSink = null;
      });
      this.#flat.dispose();
    } else for (const t of [...this.#m, ...this.#v]) t.dispose();
    this.#flat = null;
    this.#gathered = null;
    this.#one?.dispose();
    this.#gradScale?.dispose();
    this.#scalerState?.dispose();
    this.#one = this.#gradScale = this.#scalerState = null;
  }
}
