/**
 * Optimisation: AdamW (torch semantics, fused and sync-free), learning-rate
 * schedules (transformers' warmup schedules), gradient clipping by global
 * norm (torch `clip_grad_norm_`) and the dynamic loss scaler of mixed
 * precision (torch `GradScaler`, with `autocast` from the ops).
 *
 * @module
 */
export * from "./adamw.ts";
export * from "./clip.ts";
export * from "./grad_scaler.ts";
export * from "./schedule.ts";
