/**
 * Training-throughput benchmark: the given preset on random token batches
 * (no padding), AdamW each step, timed over `steps` after `warmup` steps.
 * Prints the same JSON fields as bench/torch_baseline.py so both rows can be
 * compared from one command.
 *
 * @module
 */
import { scope, tensor } from "../tensor/tensor.ts";
import type { Backend } from "../tensor/types.ts";
import { makeRng } from "../tensor/rng.ts";
import type { ModelConfig } from "../nn/config.ts";
import { initContext } from "../nn/module.ts";
import { Seq2Seq } from "../nn/seq2seq.ts";
import { AdamW } from "../optim/adamw.ts";
import { clipGradNorm } from "../optim/clip.ts";
import { GradScaler } from "../optim/grad_scaler.ts";
import { autocast, type Precision } from "../nn/layers.ts";
import { type GeluStage, geluStage } from "../ops/gelu_linear.ts";
import { type AttentionProbs, attentionProbs } from "../ops/attention.ts";
import { checkF16Accumulate, checkPrecision, type TuneMode, tunesOn } from "../train/trainer.ts";
import type { MatmulF16Accumulate } from "../ops/matmul_f16.ts";
import { configureMatmul, fastestOf, type MatmulTuning } from "../ops/matmul.ts";
import { shapeKey } from "../ops/_matmul_variants.ts";
import { autotuneStep } from "../ops/autotune.ts";
import { attentionShapeKey } from "../ops/attention.ts";
import { resolveTuneCache, restoreTuneCache, storeTuneCache } from "../train/tune_cache.ts";
import type { GpuBackend, ProfileEntry } from "../gpu/backend.ts";
import { isSoftwareAdapter } from "../gpu/adapter.ts";
import { batchLoss, type BatchTensors } from "../train/batch_tensors.ts";

/** Kernels listed in a profiled line's `kernel_detail`. */
export const PROFILE_DETAIL_LINES = 40;

/** Options of {@linkcode benchTrain}. */
export interface TrainBenchOptions {
  /** Model config (vocab_size included). */
  config: ModelConfig;
  /** Preset name for the report. */
  preset?: string;
  /** Batch size (default 16). */
  batchSize?: number;
  /** Source length (default 32). */
  srcLen?: number;
  /** Target length (default 32). */
  tgtLen?: number;
  /** Timed steps (default 10). */
  steps?: number;
  /** Untimed warm-up steps (default 2). */
  warmup?: number;
  /**
   * Then more warm-up steps, back to back, until this many milliseconds have passed since
   * the tuning (default 1000 on a hardware GPU, else 0): a GPU left idle runs at low clocks
   * until load brings them up, and a few timed steps right after an idle spell (the tuning,
   * a readback) measured the clocks instead of the kernels.
   */
  warmupMs?: number;
  /** With precision f16: the f16 matmuls' accumulation (default "f32"; train's option). */
  f16Accumulate?: MatmulF16Accumulate;
  /** Tune the matmul kernels on the first warm-up step, as the trainer does (default "auto"). */
  tune?: TuneMode;
  /** The matmul variants tuning compares (default every registered one; as the trainer's). */
  tuneVariants?: string[];
  /** The attention kernels tuning compares (default "rows" and every fitting tile). */
  tuneAttentionKernels?: string[];
  /** The tuning cache file (as the trainer's `tuneCache`; default where permitted, null: none). */
  tuneCache?: string | null;
  /**
   * After the timed steps, time one more step per op (GPU time on WebGPU with timestamp-query,
   * wall clock of each op's function on the CPU).
   */
  profile?: boolean;
  /**
   * After the timed steps (and the profile), run as many more steps each followed by a wait for
   * the device, and report each one's wall time (`step_times_ms`): a slow first step or a steady
   * pace, without the host/device overlap of the timed steps.
   */
  stepTimes?: boolean;
  /** "f32" (default) or "f16": the trainer's mixed precision (f16 Linear matmuls, loss scaling). */
  precision?: Precision;
}

/** One result line (`kind: "train"`). */
export interface TrainBenchLine {
  /** Always "webseq". */
  impl: "webseq";
  /** Always "train". */
  kind: "train";
  /** Backend kind and adapter. */
  device: string;
  /** Preset name. */
  preset: string;
  /** Training precision ("f32" or "f16"). */
  precision: Precision;
  /** Batch size. */
  batch_size: number;
  /** Source length. */
  src_len: number;
  /** Target length. */
  tgt_len: number;
  /** Timed steps. */
  steps: number;
  /** Untimed steps before them (the fixed ones and those of `warmupMs`). */
  warmup_steps: number;
  /** The `warmupMs` those ran for (the PyTorch baseline of `bench --torch` gets the same). */
  warmup_ms: number;
  /** Target tokens per second (warm-up excluded). */
  tokens_per_s: number;
  /** Source + target tokens per second. */
  all_tokens_per_s: number;
  /** Mean milliseconds per step. */
  step_ms: number;
  /**
   * WebGPU: mean JavaScript milliseconds per step spent recording and
   * submitting it (the GPU runs the previous step meanwhile); near `step_ms`,
   * the host bounds the step.
   */
  host_ms?: number;
  /** WebGPU: of `host_ms`, the part in submits (a software adapter runs its kernels there). */
  submit_ms?: number;
  /** Peak bytes held by tensors during the timed steps. */
  peak_bytes: number;
  /** GPU: the peak of live + pooled bytes (what the backend held from the device). */
  peak_reserved_bytes?: number;
  /** Largest resident set size of the process sampled after each timed step (CPU backend). */
  rss_bytes?: number;
  /** Approximate achieved TFLOP/s (6 · matmul params · tokens + attention). */
  tflops: number;
  /** Parameter count. */
  parameters: number;
  /** Dispatches per op of the profiled step (with `profile`). */
  kernel_dispatches?: Record<string, number>;
  /**
   * With profile: the {@linkcode PROFILE_DETAIL_LINES} costliest kernels by op, kernel of its
   * plan, input shapes and matmul tile (`"matmul_bias#0 [8192,512]·[1536,512]·[1536] t128x128x16 8x8"`),
   * as [GPU ms, dispatches].
   */
  kernel_detail?: Record<string, [number, number]>;
  /** With profile: achieved TFLOP/s of the products among `kernel_detail`'s kernels. */
  kernel_tflops?: Record<string, number>;
  /**
   * With profile: every product of the profiled step together (the dispatches with FLOPs:
   * plain and fused matmuls, grouped projections, attention's per-head products; not the split-K
   * reductions): GPU ms, FLOPs, achieved TFLOP/s, and `other_ms`, the step's GPU time besides.
   */
  matmul_profile?: { ms: number; flops: number; tflops: number; other_ms: number };
  /** With stepTimes: the wall time of each extra step with a wait for the device after it. */
  step_times_ms?: number[];
  /** Dispatches per step (WebGPU). */
  dispatches_per_step?: number;
  /** Buffer copies per step (WebGPU): gradients AdamW's flat buffer could not take in place. */
  copies_per_step?: number;
  /** WebGPU, GELU feed-forward: how the kernels apply the GELU (ops/gelu_linear.ts `geluStage`). */
  gelu_stage?: GeluStage;
  /**
   * WebGPU: the mode of attention's probabilities (ops/attention.ts `attentionProbs`); a call
   * keeps them only where its forward and backward run "mm" without attention dropout.
   */
  attention_probs?: AttentionProbs;
  /** Seconds the matmul tuning of the first warm-up step took (when it ran). */
  tune_s?: number;
  /** Matmul shapes it measured. */
  tuned_shapes?: number;
  /**
   * Attention geometries it measured: the kernel chosen, each kernel's ms per call, the
   * tiles rejected because their result differed from the row kernels', and the runoff of
   * the near ties (ops/matmul.ts `runoff`: medians of interleaved rounds; empty if none).
   */
  tuned_attention?: {
    key: string;
    kernel: string;
    ms: Record<string, number>;
    rejected: string[];
    runoff: Record<string, number>;
  }[];
  /**
   * Matmul shapes whose near ties went to a runoff: the first pass's fastest, the variant
   * chosen, and the runoff's medians (ms per call).
   */
  tune_runoff?: { shape: string; first: string; chosen: string; ms: Record<string, number> }[];
  /**
   * Every matmul shape measured: the variant chosen and each candidate's first-pass time (ms
   * per call, 4 decimals; null where it failed or was rejected), e.g. a padded tile against its
   * unpadded twin on each of the step's products; `split`: the K split timings where the
   * chosen variant splits K.
   */
  tune_matmul?: ReturnType<typeof matmulTuneTable>;
  /** Matmul candidates rejected because their result differed from the heuristic kernel's. */
  tune_rejected?: { shape: string; variants: string[] }[];
  /** Why the tuning stopped early (the heuristic's kernels ran), if it did. */
  tune_error?: string;
  /** The tuning cache file used, and how many saved choices it gave this adapter. */
  tune_cache?: string;
  /** See `tune_cache`. */
  tune_cached?: number;
  /** Milliseconds per op of one profiled step, largest first (with `profile`). */
  kernel_ms?: Record<string, number>;
}

/** Approximate training FLOPs of one step (forward + backward = 3× forward). */
export function trainFlops(cfg: ModelConfig, B: number, S: number, T: number): number {
  const C = cfg.d_model, F = cfg.d_ff;
  const ffn = cfg.ffn_activation === "swiglu" ? 3 * C * F : 2 * C * F;
  const enc = cfg.n_encoder_layers * (4 * C * C + ffn) * B * S;
  const dec = cfg.n_decoder_layers * ((4 * C * C + 2 * C * C + ffn) * B * T + 2 * C * C * B * S);
  const head = C * cfg.vocab_size * B * T;
  const attn = cfg.n_encoder_layers * 2 * B * S * S * C +
    cfg.n_decoder_layers * 2 * B * T * (T + S) * C;
  return 3 * 2 * (enc + dec + head + attn);
}

/**
 * The `tune_matmul` lines of a tuning: each measured shape, the variant chosen and every
 * candidate's first-pass ms per call (4 decimals; null for Infinity: failed or rejected), and
 * where the chosen variant splits K, the split tuning (`split`: the rule's number of ranges, the
 * one chosen, ms per call of each number timed).
 */
export function matmulTuneTable(tunings: MatmulTuning[]): {
  shape: string;
  chosen: string;
  ms: Record<string, number | null>;
  split?: {
    rule: number;
    chosen: number;
    ms: Record<string, number | null>;
    runoff?: Record<string, number | null>;
  };
}[] {
  const ms4 = (ms: Record<string, number>) =>
    Object.fromEntries(
      Object.entries(ms).map((
        [k, v],
      ) => [k, Number.isFinite(v) ? Math.round(v * 1e4) / 1e4 : null]),
    );
  return tunings.filter((m) => m.tuned).map((m) => ({
    shape: shapeKey(m.shape),
    chosen: m.variant,
    ms: ms4(m.ms),
    ...(m.split
      ? {
        split: {
          ...m.split,
          ms: ms4(m.split.ms),
          ...(m.split.runoff ? { runoff: ms4(m.split.runoff) } : {}),
        },
      }
      : {}),
  }));
}

/**
 * The products of a profile together (the entries with FLOPs): their GPU ms, FLOPs and achieved
 * TFLOP/s, and the GPU ms of everything else; undefined when no entry has FLOPs.
 */
export function matmulShare(
  entries: ProfileEntry[],
): { ms: number; flops: number; tflops: number; other_ms: number } | undefined {
  let ms = 0, flops = 0, other = 0;
  for (const e of entries) {
    if (e.flops) (ms += e.ms), (flops += e.flops);
    else other += e.ms;
  }
  if (flops === 0 || ms <= 0) return undefined;
  const r4 = (x: number) => Number(x.toFixed(4));
  return {
    ms: r4(ms),
    flops,
    tflops: Number((flops / (ms * 1e9)).toPrecision(4)),
    other_ms: r4(other),
  };
}

/**
 * With a profiled line: the TFLOP/s its products would need for the step to take `targetMs`
 * (PyTorch's step, say) with the rest of its GPU time as profiled (`parity_matmul_tflops`; null
 * when the rest alone takes longer); nothing without a profile.
 */
export function parityTflops(
  line: Pick<TrainBenchLine, "matmul_profile">,
  targetMs: number,
): { parity_matmul_tflops?: number | null } {
  const m = line.matmul_profile;
  if (!m || !(targetMs > 0)) return {};
  const left = targetMs - m.other_ms;
  return {
    parity_matmul_tflops: left > 0 ? Number((m.flops / (left * 1e9)).toPrecision(4)) : null,
  };
}

/** Runs the benchmark on `backend`. */
export async function benchTrain(
  backend: Backend,
  opts: TrainBenchOptions,
): Promise<TrainBenchLine> {
  const cfg = opts.config;
  const B = opts.batchSize ?? 16, S = opts.srcLen ?? 32, T = opts.tgtLen ?? 32;
  const steps = opts.steps ?? 10;
  let warmup = opts.warmup ?? 2;
  const warmupMs = opts.warmupMs ??
    (backend.kind === "webgpu" && !isSoftwareAdapter((backend as GpuBackend).adapterInfo)
      ? 1000
      : 0);
  const model = new Seq2Seq(cfg, initContext(0, backend));
  const precision = checkPrecision(opts.precision ?? "f32", backend);
  const accumulate = checkF16Accumulate(opts.f16Accumulate ?? "f32", precision);
  const opt = new AdamW(new Map(model.namedParameters()), { lr: 1e-4 });
  const scaler = precision === "f16" ? new GradScaler({ backend }) : null;
  const rng = makeRng(1);
  const ids = (n: number) =>
    Int32Array.from({ length: n }, () => 4 + Math.floor(rng() * (cfg.vocab_size - 4)));
  // a few fixed random batches, uploaded once
  const batches: BatchTensors[] = Array.from({ length: 2 }, () => ({
    src: tensor(ids(B * S), [B, S], { dtype: "i32", backend }).keep(),
    srcMask: tensor(new Float32Array(B * S).fill(1), [B, S], { backend }).keep(),
    tgt: tensor(ids(B * T), [B, T], { dtype: "i32", backend }).keep(),
    tgtMask: tensor(new Float32Array(B * T).fill(1), [B, T], { backend }).keep(),
    targets: tensor(ids(B * T), [B * T], { dtype: "i32", backend }).keep(),
  }));
  const gpu = backend as Backend & {
    dispatchStats?: (
      reset?: boolean,
    ) => { dispatches: number; copies: number; submitMs: number };
  };
  const step = (i: number) => {
    scope(() => {
      const { loss } = autocast(
        precision,
        () => batchLoss(model, batches[i % batches.length], { seed: i }),
        { accumulate },
      );
      if (scaler) {
        scaler.scale(loss).backward();
        scaler.step(opt, { maxNorm: 1 });
        return;
      }
      loss.backward();
      clipGradNorm(opt, 1);
      opt.step();
    });
    opt.zeroGrad();
    backend.flush(); // one submit per step, as the trainer does
  };
  let tuning: {
    seconds: number;
    shapes: number;
    attention: {
      key: string;
      kernel: string;
      ms: Record<string, number>;
      rejected: string[];
      runoff: Record<string, number>;
    }[];
    rejected: { shape: string; variants: string[] }[];
    runoff: { shape: string; first: string; chosen: string; ms: Record<string, number> }[];
    table: { shape: string; chosen: string; ms: Record<string, number | null> }[];
    error?: string;
  } | null = null;
  const tuneMode = opts.tune ?? "auto";
  if (backend.kind === "webgpu") configureMatmul(backend as GpuBackend); // as the trainer does
  const tuneNow = tunesOn(tuneMode, backend);
  const cache = tuneNow ? resolveTuneCache(opts.tuneCache) : null;
  let cached = 0;
  const note = (s: string) => console.error(s);
  if (cache) cached = await restoreTuneCache(cache, backend as GpuBackend, note);
  for (let i = 0; i < warmup; i++) {
    if (i === 0 && tuneNow) {
      const r = await autotuneStep(backend as GpuBackend, () => step(i), {
        force: tuneMode === "on",
        variants: opts.tuneVariants,
        attentionKernels: opts.tuneAttentionKernels,
      });
      tuning = {
        seconds: r.seconds,
        shapes: r.matmul.length,
        attention: r.attention.map((a) => ({
          key: attentionShapeKey(a.shape),
          kernel: a.kernel,
          ms: a.ms,
          rejected: a.rejected,
          runoff: a.runoff,
        })),
        runoff: r.matmul.filter((m) => Object.keys(m.runoff).length > 0).map((m) => ({
          shape: shapeKey(m.shape),
          first: fastestOf(m.ms, {}, m.variant),
          chosen: m.variant,
          ms: m.runoff,
        })),
        table: matmulTuneTable(r.matmul),
        rejected: r.matmul.filter((m) => m.rejected.length > 0).map((m) => ({
          shape: shapeKey(m.shape),
          variants: m.rejected,
        })),
        error: r.error,
      };
      if (cache && r.matmul.length + r.attention.length > 0) {
        await storeTuneCache(cache, backend as GpuBackend, note);
      }
    } else step(i);
  }
  // more steps, recorded back to back as the timed ones are (no wait, so the GPU stays
  // busy), until warmupMs have passed; then the wait for them all
  const w0 = performance.now();
  while (performance.now() - w0 < warmupMs) step(warmup++);
  await backend.sync();
  backend.resetPeak();
  gpu.dispatchStats?.(true);
  let rss = 0;
  const t0 = performance.now();
  let hostMs = 0; // JavaScript time recording and submitting (the GPU runs meanwhile)
  for (let i = 0; i < steps; i++) {
    const h0 = performance.now();
    step(warmup + i);
    hostMs += performance.now() - h0;
    if (backend.kind === "cpu") rss = Math.max(rss, Deno.memoryUsage().rss);
  }
  await backend.sync();
  const secs = (performance.now() - t0) / 1000;
  const stats = gpu.dispatchStats?.(true);
  const dispatches = stats?.dispatches;
  const { peakBytes: peak, peakReservedBytes: reserved } = backend.memoryStats();
  let kernelMs: Record<string, number> | undefined;
  let kernelDispatches: Record<string, number> | undefined;
  let kernelDetail: Record<string, [number, number]> | undefined;
  let kernelTflops: Record<string, number> | undefined;
  let matmulProfile: TrainBenchLine["matmul_profile"];
  const prof = backend as Backend & {
    beginProfile?: () => boolean;
    endProfile?: () => Promise<Record<string, { ms: number; dispatches: number }>>;
    profileDetails?: () => Record<string, ProfileEntry>;
  };
  if (opts.profile && prof.beginProfile?.()) {
    step(warmup + steps);
    const split = await prof.endProfile!();
    kernelMs = Object.fromEntries(
      Object.entries(split).sort((a, b) => b[1].ms - a[1].ms).map((
        [k, v],
      ) => [k, Number(v.ms.toFixed(4))]),
    );
    kernelDispatches = Object.fromEntries(
      Object.entries(split).sort((a, b) => b[1].dispatches - a[1].dispatches).map((
        [k, v],
      ) => [k, v.dispatches]),
    );
    // the costliest kernels by op, plan kernel, input shapes and tile: [ms, dispatches]
    const details = Object.entries(prof.profileDetails?.() ?? {});
    const top = details.sort((a, b) => b[1].ms - a[1].ms).slice(0, PROFILE_DETAIL_LINES);
    kernelDetail = Object.fromEntries(
      top.map(([k, v]) => [k, [Number(v.ms.toFixed(4)), v.dispatches]]),
    );
    const tflops = (flops: number, ms: number) => Number((flops / (ms * 1e9)).toPrecision(4));
    kernelTflops = Object.fromEntries(
      top.filter(([, v]) => v.flops && v.ms > 0).map(([k, v]) => [k, tflops(v.flops!, v.ms)]),
    );
    matmulProfile = matmulShare(details.map(([, v]) => v));
  }
  let stepTimes: number[] | undefined;
  if (opts.stepTimes) {
    stepTimes = [];
    for (let i = 0; i < steps; i++) {
      const s0 = performance.now();
      step(warmup + steps + 1 + i);
      await backend.sync();
      stepTimes.push(Number((performance.now() - s0).toFixed(2)));
    }
  }
  const parameters = model.parameterCount();
  for (const b of batches) for (const t of Object.values(b)) t.dispose();
  model.dispose();
  opt.dispose();
  scaler?.dispose();
  return {
    impl: "webseq",
    kind: "train",
    device: `${backend.kind}: ${backend.description}`,
    preset: opts.preset ?? "custom",
    precision,
    ...(precision === "f16" ? { f16_accumulate: accumulate } : {}),
    batch_size: B,
    src_len: S,
    tgt_len: T,
    steps,
    warmup_steps: warmup,
    warmup_ms: warmupMs,
    tokens_per_s: (B * T * steps) / secs,
    all_tokens_per_s: (B * (S + T) * steps) / secs,
    step_ms: (secs * 1000) / steps,
    ...(stats ? { host_ms: hostMs / steps, submit_ms: stats.submitMs / steps } : {}),
    peak_bytes: peak,
    ...(reserved !== undefined ? { peak_reserved_bytes: reserved } : {}),
    ...(rss > 0 ? { rss_bytes: rss } : {}),
    tflops: (trainFlops(cfg, B, S, T) * steps) / secs / 1e12,
    parameters,
    ...(dispatches !== undefined ? { dispatches_per_step: dispatches / steps } : {}),
    ...(stats ? { copies_per_step: stats.copies / steps } : {}),
    ...(backend.kind === "webgpu" && cfg.ffn_activation === "gelu"
      ? { gelu_stage: geluStage() }
      : {}),
    ...(backend.kind === "webgpu" ? { attention_probs: attentionProbs() } : {}),
    ...(tuning ? { tune_s: tuning.seconds, tuned_shapes: tuning.shapes } : {}),
    ...(tuning?.attention.length ? { tuned_attention: tuning.attention } : {}),
    ...(tuning?.rejected.length ? { tune_rejected: tuning.rejected } : {}),
    ...(tuning?.runoff.length ? { tune_runoff: tuning.runoff } : {}),
    ...(tuning?.table.length ? { tune_matmul: tuning.table } : {}),
    ...(cache ? { tune_cache: cache, tune_cached: cached } : {}),
    ...(tuning?.error ? { tune_error: tuning.error } : {}),
    ...(kernelMs ? { kernel_ms: kernelMs } : {}),
    ...(kernelDispatches ? { kernel_dispatches: kernelDispatches } : {}),
    ...(kernelDetail ? { kernel_detail: kernelDetail } : {}),
    ...(kernelTflops && Object.keys(kernelTflops).length ? { kernel_tflops: kernelTflops } : {}),
    ...(matmulProfile ? { matmul_profile: matmulProfile } : {}),
    ...(stepTimes ? { step_times_ms: stepTimes } : {}),
  };
}
