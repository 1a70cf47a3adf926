/**
 * Basic layers: Linear, Embedding (TokenEmbed), LayerNorm, positional
 * encodings, dropout and DropPath with per-call seeds, and the fused
 * residual update of the blocks.
 *
 * @module
 */
import { type Tensor, tensor } from "../tensor/tensor.ts";
import type { Backend } from "../tensor/types.ts";
import { hashU32 } from "../tensor/rng.ts";
import { add, linearF16, matmul, matmulBias, matmulF16, mul, reshape, scale } from "../ops/mod.ts";
import { accumulateParts, type MatmulF16Accumulate } from "../ops/matmul_f16.ts";
import { layerNorm } from "../ops/layer_norm.ts";
import { embedding } from "../ops/embedding.ts";
import { dropout } from "../ops/dropout.ts";
import { slice } from "../ops/slice.ts";
import { residual } from "../ops/residual.ts";
import { residualLayerNorm } from "../ops/residual_layer_norm.ts";
import { init, type InitContext, Module, parameter } from "./module.ts";

/**
 * Per-forward state: training flag and the dropout seed stream. Each dropout
 * site draws the next seed, so a (seed, step) pair fixes every mask and a
 * resumed run repeats them exactly.
 */
export class ForwardContext {
  /** Whether dropout/DropPath act. */
  readonly training: boolean;
  #seed: number;
  #counter = 0;

  /**
   * The state of one forward: dropout on or off, site seeds drawn from `seed`.
   *
   * @param training dropout on
   * @param seed base seed of this forward
   */
  constructor(training: boolean, seed = 0) {
    this.training = training;
    this.#seed = seed >>> 0;
  }

  /** The seed of the next dropout site. */
  nextSeed(): number {
    return hashU32(this.#seed, this.#counter++);
  }
}

/** Dropout that is the identity in eval mode or at p = 0. */
export function maybeDropout(x: Tensor, p: number, ctx: ForwardContext): Tensor {
  if (!ctx.training || p <= 0) return x;
  return dropout(x, p, ctx.nextSeed());
}

/**
 * DropPath (stochastic depth): zeroes whole samples of a residual branch
 * x [B, ...] with probability p and scales survivors by 1/(1-p).
 */
export function dropPath(x: Tensor, p: number, ctx: ForwardContext): Tensor {
  if (!ctx.training || p <= 0) return x;
  const shape = x.shape.map((d, k) => (k === 0 ? d : 1));
  const ones = tensor(new Float32Array(x.shape[0]).fill(1), shape, { backend: x.backend });
  const keep = dropout(ones, p, ctx.nextSeed());
  return mul(x, keep);
}

/** Probabilities of {@linkcode addResidual}. */
export interface ResidualDropout {
  /** Dropout of the branch elements. */
  dropout: number;
  /** DropPath (per sample). */
  dropPath: number;
}

/**
 * `x + dropPath(gamma · maybeDropout(branch))` as one fused op
 * (ops/residual.ts). Draws the seeds in the order the unfused calls drew
 * them — dropout, then DropPath, each only when it acts — so the masks and
 * the seed stream are those of the composition.
 */
export function addResidual(
  x: Tensor,
  branch: Tensor,
  gamma: Tensor | null,
  p: ResidualDropout,
  ctx: ForwardContext,
): Tensor {
  return residual(x, branch, { gamma, ...residualSeeds(p, ctx) });
}

/** The residual's masks: seeds drawn in the unfused order (dropout, then DropPath, when acting). */
function residualSeeds(p: ResidualDropout, ctx: ForwardContext): {
  dropout: { p: number; seed: number } | null;
  dropPath: { p: number; seed: number } | null;
} {
  const dropout = ctx.training && p.dropout > 0 ? { p: p.dropout, seed: ctx.nextSeed() } : null;
  const dropPath = ctx.training && p.dropPath > 0 ? { p: p.dropPath, seed: ctx.nextSeed() } : null;
  return { dropout, dropPath };
}

/** Compute precision of Linear layers (see {@linkcode autocast}). */
export type Precision = "f32" | "f16";

let linearPrecision: Precision = "f32";
let linearAccumulate: MatmulF16Accumulate = "f32";

/**
 * Runs `fn` with every {@linkcode Linear} computing `x Wᵀ` as
 * `matmulF16(x, W)` — the product of `cast(x, "f16")` and `cast(W, "f16")`,
 * the rounding done as the kernel loads the f32 operands: f16 operands, f32
 * accumulation and an f32 result, the bias added in f32 — webseq's `torch.autocast`,
 * restricted to the matmuls of Linear layers. Everything else (embeddings,
 * LayerNorm, attention and its softmax, the loss) stays f32, and the
 * parameters stay f32 master weights. The backward rules recorded inside
 * `fn` carry the precision, so `backward()` may run after `fn` returns.
 * Trainers set it around the forward (train/trainer.ts `precision`).
 */
export function autocast<T>(precision: Precision, fn: () => T, opts: AutocastOptions = {}): T {
  const prev = linearPrecision, prevAcc = linearAccumulate;
  linearPrecision = precision;
  linearAccumulate = opts.accumulate ?? "f32";
  try {
    return fn();
  } finally {
    linearPrecision = prev;
    linearAccumulate = prevAcc;
  }
}

/** Options of {@linkcode autocast}. */
export interface AutocastOptions {
  /**
   * How the f16 matmuls accumulate: "f32" (default), or "f16", "f16/32",
   * "f16/64" (each 16-, 32- or 64-deep K group by f16 FMAs, the groups'
   * sums in f32: ops/matmul_f16.ts `MatmulF16Accumulate`).
   */
  accumulate?: MatmulF16Accumulate;
}

/** How f16 matmuls accumulate now ("f32" outside {@linkcode autocast}). */
export function autocastAccumulate(): MatmulF16Accumulate {
  return linearAccumulate;
}

/** The precision Linear layers compute in now ("f32" outside {@linkcode autocast}). */
export function autocastPrecision(): Precision {
  return linearPrecision;
}

/** y = x Wᵀ + b with W [out, in] (PyTorch layout). */
export class Linear extends Module {
  /** Input width. */
  readonly inFeatures: number;
  /** Output width. */
  readonly outFeatures: number;
  /** Whether a bias exists. */
  readonly hasBias: boolean;

  /** Xavier-uniform weight, zero bias. */
  constructor(ctx: InitContext, inFeatures: number, outFeatures: number, bias = true) {
    super();
    this.inFeatures = inFeatures;
    this.outFeatures = outFeatures;
    this.hasBias = bias;
    const a = Math.sqrt(6 / (inFeatures + outFeatures));
    this.addParameter("weight", parameter(ctx, [outFeatures, inFeatures], init.uniform(a)));
    if (bias) this.addParameter("bias", parameter(ctx, [outFeatures], init.constant(0)));
  }

  /** The [out, in] weight. */
  get weight(): Tensor {
    return this.param("weight");
  }

  /** The [out] bias, or null. */
  get bias(): Tensor | null {
    return this.hasBias ? this.param("bias") : null;
  }

  /** x: [..., in] → [..., out]. */
  forward(x: Tensor): Tensor {
    const w = this.param("weight");
    if (linearPrecision === "f16") {
      // x and W rounded to f16 as the kernel loads them (no cast passes); an f32 result, the
      // bias added in f32 by the same kernel
      if (this.hasBias) {
        return linearF16(x, w, this.param("bias"), { acc: linearAccumulate });
      }
      const lead = x.shape.slice(0, -1);
      const y = matmulF16(reshape(x, [-1, this.inFeatures]), w, {
        transB: true,
        ...accumulateParts(linearAccumulate),
      });
      return reshape(y, [...lead, this.outFeatures]);
    }
    // one matmul over all rows of x (a shared 2-D weight needs no reshape), the bias added
    // inside the kernel; x itself is the matmul's input, so a gradient pending for x (its
    // other uses, e.g. q, k and v of one input) is added by the kernel computing dx
    return this.hasBias
      ? matmulBias(x, w, this.param("bias"), { transB: true })
      : matmul(x, w, { transB: true });
  }
}

/** Token embedding (TokenEmbed): ids → vectors. */
export class Embedding extends Module {
  /** Vocabulary size V. */
  readonly numEmbeddings: number;
  /** Width C. */
  readonly dim: number;

  /** normal(0, C^-1/2) weights. */
  constructor(ctx: InitContext, numEmbeddings: number, dim: number) {
    super();
    this.numEmbeddings = numEmbeddings;
    this.dim = dim;
    this.addParameter("weight", parameter(ctx, [numEmbeddings, dim], init.normal(dim ** -0.5)));
  }

  /** The [V, C] table. */
  get weight(): Tensor {
    return this.param("weight");
  }

  /** ids: i32 [...] → [..., C]. */
  forward(ids: Tensor): Tensor {
    return embedding(this.param("weight"), ids);
  }
}

/** LayerNorm over the last axis with weight and bias. */
export class LayerNorm extends Module {
  /** Epsilon. */
  readonly eps: number;

  /** Weight 1, bias 0. */
  constructor(ctx: InitContext, dim: number, eps: number) {
    super();
    this.eps = eps;
    this.addParameter("weight", parameter(ctx, [dim], init.constant(1)));
    this.addParameter("bias", parameter(ctx, [dim], init.constant(0)));
  }

  /** x: [..., C] → [..., C]. */
  forward(x: Tensor): Tensor {
    return layerNorm(x, this.param("weight"), this.param("bias"), this.eps);
  }

  /**
   * {@linkcode addResidual} and this norm of its result as one fused op
   * (ops/residual_layer_norm.ts): `[x + …, norm(x + …)]`. The seeds are drawn
   * as {@linkcode addResidual} draws them, so the numbers are those of the
   * two calls.
   */
  residualForward(
    x: Tensor,
    branch: Tensor,
    gamma: Tensor | null,
    p: ResidualDropout,
    ctx: ForwardContext,
  ): [Tensor, Tensor] {
    return residualLayerNorm(x, branch, {
      gamma,
      ...residualSeeds(p, ctx),
      weight: this.param("weight"),
      bias: this.param("bias"),
      eps: this.eps,
    });
  }
}

/** Sinusoidal table: PE[p, 2i] = sin(p / 10000^(2i/C)), PE[p, 2i+1] = cos(…). */
export function sinusoidalTable(positions: number, dim: number): Float32Array {
  const pe = new Float32Array(positions * dim);
  for (let p = 0; p < positions; p++) {
    for (let i = 0; i < dim; i += 2) {
      const angle = p / Math.pow(10000, i / dim);
      pe[p * dim + i] = Math.sin(angle);
      if (i + 1 < dim) pe[p * dim + i + 1] = Math.cos(angle);
    }
  }
  return pe;
}

/**
 * Positional encoding (PositionalEncod): fixed sinusoidal, or a learned
 * `[max_position, C]` parameter named `weight` (→ `encoder.pos.weight`).
 */
export class PositionalEncoding extends Module {
  /** "sinusoidal" or "learned". */
  readonly kind: "sinusoidal" | "learned";
  /** Largest position + 1. */
  readonly maxPosition: number;
  /** Width C. */
  readonly dim: number;
  #table: Tensor | null = null;
  #backend: Backend;

  /** Learned: normal(0, 0.02). */
  constructor(ctx: InitContext, kind: "sinusoidal" | "learned", maxPosition: number, dim: number) {
    super();
    this.kind = kind;
    this.maxPosition = maxPosition;
    this.dim = dim;
    this.#backend = ctx.backend;
    if (kind === "learned") {
      this.addParameter("weight", parameter(ctx, [maxPosition, dim], init.normal(0.02)));
    }
  }

  /** Rows [start, start + length) of the table: [length, C]. */
  forward(start: number, length: number): Tensor {
    if (start + length > this.maxPosition) {
      throw new RangeError(
        `Sequence of ${start + length} positions exceeds max_position ${this.maxPosition}`,
      );
    }
    if (this.kind === "learned") return slice(this.param("weight"), 0, start, start + length);
    if (!this.#table) {
      this.#table = tensor(sinusoidalTable(this.maxPosition, this.dim), [
        this.maxPosition,
        this.dim,
      ], {
        backend: this.#backend,
      }).keep();
    }
    return slice(this.#table, 0, start, start + length);
  }

  /** Frees the cached sinusoidal table (made again on the next forward). */
  protected override releaseCaches(): void {
    this.#table?.dispose();
    this.#table = null;
  }
}

/** `x · sqrt(C) + PE[start : start+T]` for embeddings x [B, T, C]. */
export function embedWithPositions(
  tokens: Tensor,
  pos: PositionalEncoding,
  start = 0,
): Tensor {
  const T = tokens.shape[1], C = tokens.shape[2];
  return add(scale(tokens, Math.sqrt(C)), pos.forward(start, T));
}
