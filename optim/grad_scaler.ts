/**
 * Dynamic loss scaling for f16 training, with the semantics of
 * `torch.cuda.amp.GradScaler` and no readback inside a step: the scale lives
 * on the device in a 4-element state tensor, `[scale, goodSteps,
 * skippedSteps, foundInf]`.
 *
 * One step, as torch writes it and as webseq records it:
 *
 * | torch                                  | webseq                                    |
 * | -------------------------------------- | ----------------------------------------- |
 * | `scaler.scale(loss).backward()`        | `scaler.scale(loss).backward()`           |
 * | `scaler.unscale_(opt)`                 | `scaler.step(opt, { maxNorm, lr })`:      |
 * | `clip_grad_norm_(params, maxNorm)`     | norm of the scaled gradients (flat path), |
 * | `scaler.step(opt)`                     | one `gradScalerUpdate` kernel, then AdamW |
 * | `scaler.update()`                      | skipping itself when `foundInf` is set    |
 *
 * Defaults are torch's: initial scale 2¹⁶, growth ×2 after 2000 finite steps
 * in a row, backoff ×0.5 (and the step skipped) when a gradient is inf or
 * NaN. The scale stays a power of two, so unscaling is exact.
 *
 * @example
 * ```ts
 * import { AdamW, GradScaler, mul, sum, tensor } from "@webseq/webseq";
 * const w = tensor([1, 2], [2], { requiresGrad: true });
 * const opt = new AdamW(new Map([["w", w]]), { lr: 0.1 });
 * const scaler = new GradScaler({ backend: w.backend });
 * scaler.scale(sum(mul(w, w))).backward();
 * scaler.step(opt, { maxNorm: 1 });
 * opt.zeroGrad();
 * console.log(await scaler.read()); // { scale: 65536, goodSteps: 1, skippedSteps: 0, foundInf: false }
 * ```
 *
 * @module
 */
import {
  apply,
  copyInto,
  getDefaultBackend,
  noGrad,
  sliceView,
  type Tensor,
  tensor,
} from "../tensor/tensor.ts";
import type { Backend } from "../tensor/types.ts";
import { mul } from "../ops/binary.ts";
import { reshape } from "../ops/reshape.ts";
import { GRAD_SCALER_UPDATE, type GradScalerParams } from "../ops/optim_ops.ts";
import type { AdamW } from "./adamw.ts";
import { normAndClipFactor } from "./clip.ts";

/** Options of {@linkcode GradScaler}; defaults are torch's. */
export interface GradScalerOptions {
  /** Initial scale (default 2¹⁶). */
  initScale?: number;
  /** Factor after `growthInterval` finite steps in a row (default 2). */
  growthFactor?: number;
  /** Factor after a step with inf/NaN gradients (default 0.5). */
  backoffFactor?: number;
  /** Finite steps in a row before growing (default 2000). */
  growthInterval?: number;
  /** Backend of the state (default the default backend). */
  backend?: Backend;
}

/** Options of {@linkcode GradScaler.step}. */
export interface GradScalerStepOptions {
  /** Clip the unscaled global gradient norm to this (default 0: no clipping). */
  maxNorm?: number;
  /** Learning rate of this step (default the optimizer's). */
  lr?: number;
}

/** The scaler state as host values (for logs and checkpoints). */
export interface GradScalerState {
  /** Current loss scale. */
  scale: number;
  /** Finite steps since the last growth or backoff (torch `_growth_tracker`). */
  goodSteps: number;
  /** Steps skipped for inf/NaN gradients so far. */
  skippedSteps: number;
  /** Whether the last step was skipped. */
  foundInf: boolean;
}

/** torch's `GradScaler` with the scale on the device. */
export class GradScaler {
  /** f32 [4]: scale, goodSteps, skippedSteps, foundInf (1 or 0). */
  readonly state: Tensor;
  #params: Omit<GradScalerParams, "maxNorm">;

  /** A scaler with state on `opts.backend`. */
  constructor(opts: GradScalerOptions = {}) {
    const initScale = opts.initScale ?? 2 ** 16;
    if (!(initScale > 0) || !Number.isFinite(initScale)) {
      throw new RangeError(`GradScaler: initScale must be finite and > 0, got ${initScale}`);
    }
    this.#params = {
      growthFactor: opts.growthFactor ?? 2,
      backoffFactor: opts.backoffFactor ?? 0.5,
      growthInterval: opts.growthInterval ?? 2000,
    };
    // validates the factors now rather than at the first step
    GRAD_SCALER_UPDATE.outputs(
      [{ shape: [1], dtype: "f32" }, { shape: [4], dtype: "f32" }],
      { ...this.#params, maxNorm: 0 },
    );
    const backend = opts.backend ?? getDefaultBackend();
    this.state = tensor([initScale, 0, 0, 0], [4], { backend }).keep();
  }

  /** `loss · scale` (recorded on the tape; the scale itself takes no gradient). */
  scale(loss: Tensor): Tensor {
    // a view of state[0]; the tape holds it for mul's backward, the enclosing scope frees it
    const y = mul(loss, sliceView(this.state, 0, [1]));
    return y.rank === loss.rank ? y : reshape(y, loss.shape);
  }

  /**
   * Unscales and clips the gradients, updates the optimizer unless a
   * gradient is inf or NaN, and updates the scale: all recorded on the
   * device. Returns the unscaled global gradient norm [1] (inf or NaN on a
   * skipped step); read it whenever convenient.
   */
  step(optimizer: AdamW, opts: GradScalerStepOptions = {}): Tensor {
    const maxNorm = opts.maxNorm ?? 0;
    return noGrad(() => {
      const [norm, clip] = optimizer.flatNormAndClipFactor(0) ??
        normAndClipFactor(optimizer.params.flatMap((p) => p.tensor.grad ? [p.tensor.grad] : []));
      clip.dispose();
      const [factor, unscaled] = apply(GRAD_SCALER_UPDATE, [norm, this.state], {
        ...this.#params,
        maxNorm,
      });
      norm.dispose();
      optimizer.setGradScale(factor);
      optimizer.setScalerState(this.state);
      factor.dispose();
      optimizer.step(opts.lr);
      return unscaled;
    });
  }

  /** The state on the host (one readback). */
  async read(): Promise<GradScalerState> {
    const [scale, goodSteps, skippedSteps, foundInf] = await this.state.data();
    return { scale, goodSteps, skippedSteps, foundInf: foundInf !== 0 };
  }

  /** Restores a state read by {@linkcode GradScaler.read} (a checkpoint). */
  load(s: GradScalerState): void {
    const ok = (x: number) => Number.isFinite(x) && x >= 0;
    if (!(s.scale > 0) || !ok(s.scale) || !ok(s.goodSteps) || !ok(s.skippedSteps)) {
      throw new RangeError(`GradScaler state: bad values ${JSON.stringify(s)}`);
    }
    const t = tensor([s.scale, s.goodSteps, s.skippedSteps, s.foundInf ? 1 : 0], [4], {
      backend: this.state.backend,
    });
    copyInto(this.state, t);
    t.dispose();
  }

  /** Frees the state. */
  dispose(): void {
    this.state.dispose();
  }
}
