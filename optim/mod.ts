/**
 * Optimisation: AdamW (torch semantics, fused and sync-free), learning-rate
 * schedules (transformers' warmup schedules) and gradient clipping by global
 * norm (torch `clip_grad_norm_`).
 *
 * @module
 */
export * from "./adamw.ts";
export * from "./clip.ts";
export * from "./schedule.ts";
