/**
 * One switch for what a training step's backward reads from its forward on
 * WebGPU, where the kernels could either keep a tensor or compute it again:
 * the GELU feed-forward's activation `dropout(gelu(u))` (ops/gelu_linear.ts
 * {@linkcode useGeluStage}) and attention's probabilities (ops/attention.ts
 * {@linkcode useAttentionProbs}). `"kept"` (the default, as PyTorch's eager
 * autograd keeps both) saves the backward a GELU pass per block and a `Q·Kᵀ`
 * product per attention call; `"recomputed"` saves their memory (at the
 * `base` preset's batch of 64 × 128 tokens, 805 MB of activations and 603 MB
 * of probabilities). The CPU backend is not affected.
 *
 * @example
 * ```ts
 * import { useActivations } from "@webseq/webseq";
 * useActivations("recomputed"); // less memory, a little more time
 * useActivations(null); // back to the default
 * ```
 *
 * @module
 */
import { useGeluStage } from "./gelu_linear.ts";
import { useAttentionProbs } from "./attention.ts";

/** Whether the backward reads the GELU activations and attention probabilities kept from the forward. */
export type ActivationMemory = "kept" | "recomputed";

/**
 * Sets both {@linkcode useGeluStage} (`"kept"` or `"separate"`) and
 * {@linkcode useAttentionProbs} (`"kept"` or `"recomputed"`); `null` or
 * `"auto"` returns both to their defaults (and environment variables).
 */
export function useActivations(mode: ActivationMemory | "auto" | null): void {
  if (mode === null || mode === "auto") {
    useGeluStage(null);
    useAttentionProbs(null);
    return;
  }
  if (mode !== "kept" && mode !== "recomputed") {
    throw new TypeError(`useActivations: expected kept, recomputed or auto, got "${mode}"`);
  }
  useGeluStage(mode === "kept" ? "kept" : "separate");
  useAttentionProbs(mode);
}
