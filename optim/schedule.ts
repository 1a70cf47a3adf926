/**
 * Learning-rate schedules as factors of the base learning rate, equal to
 * Hugging Face transformers' `get_*_schedule_with_warmup` lambdas. Step `s`
 * counts optimizer steps from 0: the first update uses `schedule(0)` (0 while
 * warming up, as with `LambdaLR`).
 *
 * @example
 * ```ts
 * import { linearWarmupSchedule } from "@webseq/webseq";
 * const f = linearWarmupSchedule(2, 6);
 * console.log([0, 1, 2, 3, 6].map(f)); // [0, 0.5, 1, 0.75, 0]
 * ```
 *
 * @module
 */

/** Learning-rate factor for optimizer step `s` (0-based). */
export type Schedule = (step: number) => number;

function checkSteps(name: string, warmup: number, total?: number): void {
  if (!Number.isInteger(warmup) || warmup < 0) {
    throw new RangeError(`${name}: warmup must be an integer ≥ 0, got ${warmup}`);
  }
  if (total !== undefined && (!Number.isInteger(total) || total < 0)) {
    throw new RangeError(`${name}: total must be an integer ≥ 0, got ${total}`);
  }
}

function warmupFactor(s: number, warmup: number): number {
  return s / Math.max(1, warmup);
}

/**
 * transformers' `get_linear_schedule_with_warmup`: `s / w` for `s < w`, then
 * `max(0, (T − s) / max(1, T − w))`.
 */
export function linearWarmupSchedule(warmup: number, total: number): Schedule {
  checkSteps("linearWarmupSchedule", warmup, total);
  return (s) => {
    if (s < warmup) return warmupFactor(s, warmup);
    return Math.max(0, (total - s) / Math.max(1, total - warmup));
  };
}

/** transformers' `get_constant_schedule_with_warmup`: `s / w` for `s < w`, then 1. */
export function constantSchedule(warmup = 0): Schedule {
  checkSteps("constantSchedule", warmup);
  return (s) => (s < warmup ? warmupFactor(s, warmup) : 1);
}

/**
 * transformers' `get_cosine_schedule_with_warmup`: `s / w` for `s < w`, then
 * `max(0, ½(1 + cos(2π·cycles·p)))` with progress `p = (s − w) / max(1, T − w)`
 * (half a cosine by default).
 */
export function cosineSchedule(warmup: number, total: number, cycles = 0.5): Schedule {
  checkSteps("cosineSchedule", warmup, total);
  if (!Number.isFinite(cycles) || cycles <= 0) {
    throw new RangeError(`cosineSchedule: cycles must be > 0, got ${cycles}`);
  }
  return (s) => {
    if (s < warmup) return warmupFactor(s, warmup);
    const progress = (s - warmup) / Math.max(1, total - warmup);
    return Math.max(0, 0.5 * (1 + Math.cos(Math.PI * cycles * 2 * progress)));
  };
}
