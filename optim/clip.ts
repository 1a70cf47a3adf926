/**
 * Gradient clipping by global norm, equal to `torch.nn.utils.clip_grad_norm_`
 * (norm over all gradients together; factor `min(1, maxNorm / (norm + 1e-6))`),
 * computed on the device: one partial-sum kernel per tensor (one in all over
 * a flat AdamW's gradient buffer, see optim/_flat.ts) and one finishing
 * kernel. Nothing is read back; the norm comes back as a [1] tensor the
 * trainer may read later, and the factor reaches AdamW as a device scalar.
 *
 * @example
 * ```ts
 * import { clipGradNorm, tensor } from "@webseq/webseq";
 * const w = tensor([0, 0], [2], { requiresGrad: true });
 * w.grad = tensor([3, 4], [2]);
 * const norm = clipGradNorm([w], 1);
 * console.log(await norm.item(), await w.grad.toArray()); // 5, ≈ [0.6, 0.8]
 * ```
 *
 * @module
 */
import { mul } from "../ops/binary.ts";
import { clipCoef, sumSquaresGroups, sumSquaresInto } from "../ops/optim_ops.ts";
import { getDefaultBackend, noGrad, type Tensor, zeros } from "../tensor/tensor.ts";
import { AdamW } from "./adamw.ts";

/**
 * The global L2 norm of `tensors` and torch's clipping factor for `maxNorm`
 * (factor 1 when `maxNorm` is 0): `[norm, factor]`, each f32 [1] on the
 * tensors' backend. No readback.
 */
export function normAndClipFactor(tensors: readonly Tensor[], maxNorm = 0): [Tensor, Tensor] {
  if (!(maxNorm >= 0) || !Number.isFinite(maxNorm)) {
    throw new RangeError(`clipGradNorm: maxNorm must be a finite number ≥ 0, got ${maxNorm}`);
  }
  const backend = tensors[0]?.backend ?? getDefaultBackend();
  const groups = tensors.map((t) => sumSquaresGroups(t.size));
  const total = groups.reduce((a, b) => a + b, 0);
  return noGrad(() => {
    // every slot is written by one sumSquaresPartial; zeros covers the empty list
    const partials = zeros([Math.max(1, total)], { backend });
    let offset = 0;
    tensors.forEach((t, i) => {
      sumSquaresInto(partials, t, offset, groups[i]);
      offset += groups[i];
    });
    const out = clipCoef(partials, maxNorm);
    partials.dispose();
    return out;
  });
}

/** The global L2 norm of `tensors` (f32 [1], no readback). */
export function globalNorm(tensors: readonly Tensor[]): Tensor {
  const [norm, factor] = normAndClipFactor(tensors, 0);
  factor.dispose();
  return norm;
}

/**
 * Clips gradients to a global norm of at most `maxNorm` and returns the norm
 * before clipping (f32 [1], read it whenever convenient).
 *
 * With an {@linkcode AdamW}, the factor is handed to its next `step()` (the
 * fused update multiplies the gradients; no extra pass). With a list of
 * parameters, their `.grad` tensors are replaced by the clipped ones.
 * Parameters without a gradient are ignored.
 */
export function clipGradNorm(target: AdamW | readonly Tensor[], maxNorm: number): Tensor {
  if (!(maxNorm > 0) || !Number.isFinite(maxNorm)) {
    throw new RangeError(`clipGradNorm: maxNorm must be a finite number > 0, got ${maxNorm}`);
  }
  const params = target instanceof AdamW ? target.params.map((p) => p.tensor) : target;
  const withGrad = params.filter((p) => p.grad);
  const [norm, factor] = (target instanceof AdamW && target.flatNormAndClipFactor(maxNorm)) ||
    normAndClipFactor(withGrad.map((p) => p.grad!), maxNorm);
  if (target instanceof AdamW) {
    target.setGradScale(factor);
  } else {
    noGrad(() => {
      for (const p of withGrad) {
        const g = p.grad!;
        const c = mul(g, factor); // [1] broadcasts over g
        const clipped = c.rank === g.rank ? c : c.view(g.shape); // g was a scalar []
        if (clipped !== c) c.dispose();
        g.dispose();
        p.grad = clipped.keep();
      }
    });
  }
  factor.dispose();
  return norm;
}
