/**
 * Encoder, Decoder (with `lm_head`) and Seq2Seq, the model of the notebook
 * exactly as CONTRACTS.md §1–3 pin it.
 *
 * @example
 * ```ts
 * import { initContext, presetConfig, Seq2Seq, tensor } from "@webseq/webseq";
 * const cfg = presetConfig("tiny", { vocab_size: 50, dropout: 0, drop_path: 0 });
 * const model = new Seq2Seq(cfg, initContext(0));
 * const src = tensor(new Int32Array([5, 6, 2]), [1, 3]);
 * const srcMask = tensor([1, 1, 1], [1, 3]);
 * const tgt = tensor(new Int32Array([1, 7]), [1, 2]);
 * const tgtMask = tensor([1, 1], [1, 2]);
 * const logits = model.eval().forward(src, srcMask, tgt, tgtMask); // [1, 2, 50]
 * console.log(logits.shape);
 * ```
 *
 * @module
 */
import type { Tensor } from "../tensor/tensor.ts";
import { fmtShape } from "../tensor/types.ts";
import { hashU32 } from "../tensor/rng.ts";
import { matmul, reshape } from "../ops/mod.ts";
import type { ModelConfig } from "./config.ts";
import { type InitContext, Module } from "./module.ts";
import {
  Embedding,
  embedWithPositions,
  ForwardContext,
  LayerNorm,
  Linear,
  maybeDropout,
  PositionalEncoding,
} from "./layers.ts";
import { type BlockCache, DecoderBlock, EncoderBlock } from "./blocks.ts";

/**
 * Runs pre-LN blocks and the final LayerNorm: the first block's norm1 here,
 * then each block returns its output and the LayerNorm that follows it
 * (fused into its last residual). Returns the final norm's output.
 */
function stack<L extends { norm1: LayerNorm }>(
  layers: L[],
  finalNorm: LayerNorm,
  x: Tensor,
  run: (layer: L, x: Tensor, h: Tensor, next: LayerNorm, i: number) => [Tensor, Tensor],
): Tensor {
  let h = (layers[0]?.norm1 ?? finalNorm).forward(x);
  layers.forEach((layer, i) => {
    [x, h] = run(layer, x, h, layers[i + 1]?.norm1 ?? finalNorm, i);
  });
  return h;
}

/** Embedding + positions, encoder blocks, final LayerNorm. */
export class Encoder extends Module {
  /** The model config. */
  readonly cfg: ModelConfig;
  #embed: Embedding;
  #pos: PositionalEncoding;
  #layers: EncoderBlock[] = [];
  #norm: LayerNorm;

  /** Parameters named as the contract's `encoder.*`. */
  constructor(ctx: InitContext, cfg: ModelConfig) {
    super();
    this.cfg = cfg;
    this.#embed = this.addModule("embed", new Embedding(ctx, cfg.vocab_size, cfg.d_model));
    this.#pos = this.addModule(
      "pos",
      new PositionalEncoding(ctx, cfg.positional_encoding, cfg.max_position, cfg.d_model),
    );
    for (let i = 0; i < cfg.n_encoder_layers; i++) {
      this.#layers.push(this.addModule(`layers.${i}`, new EncoderBlock(ctx, cfg)));
    }
    this.#norm = this.addModule("norm", new LayerNorm(ctx, cfg.d_model, cfg.norm_eps));
  }

  /** ids: i32 [B, S], mask: [B, S] → memory [B, S, C]. */
  forward(ids: Tensor, mask: Tensor, ctx: ForwardContext): Tensor {
    checkIds("encoder", "src", ids, "srcMask", mask);
    let x = embedWithPositions(this.#embed.forward(ids), this.#pos);
    x = maybeDropout(x, this.cfg.dropout, ctx);
    return stack(
      this.#layers,
      this.#norm,
      x,
      (layer, x, h, next) => layer.forward(x, h, mask, ctx, next),
    );
  }
}

/** State of incremental decoding: one cache per block and the next position. */
export interface DecoderCache {
  /** Per-block caches. */
  blocks: BlockCache[];
  /** Positions already decoded. */
  length: number;
}

/** Embedding + positions, decoder blocks, final LayerNorm, lm_head. */
export class Decoder extends Module {
  /** The model config. */
  readonly cfg: ModelConfig;
  #embed: Embedding;
  #pos: PositionalEncoding;
  #layers: DecoderBlock[] = [];
  #norm: LayerNorm;
  #head: Linear | null = null;

  /** Parameters named as the contract's `decoder.*`. */
  constructor(ctx: InitContext, cfg: ModelConfig) {
    super();
    this.cfg = cfg;
    this.#embed = this.addModule("embed", new Embedding(ctx, cfg.vocab_size, cfg.d_model));
    this.#pos = this.addModule(
      "pos",
      new PositionalEncoding(ctx, cfg.positional_encoding, cfg.max_position, cfg.d_model),
    );
    for (let i = 0; i < cfg.n_decoder_layers; i++) {
      this.#layers.push(this.addModule(`layers.${i}`, new DecoderBlock(ctx, cfg)));
    }
    this.#norm = this.addModule("norm", new LayerNorm(ctx, cfg.d_model, cfg.norm_eps));
    if (!cfg.tie_embeddings) {
      this.#head = this.addModule("lm_head", new Linear(ctx, cfg.d_model, cfg.vocab_size, false));
    }
  }

  /** A fresh incremental-decoding cache. */
  newCache(): DecoderCache {
    return { blocks: this.#layers.map(() => ({ self: null, cross: null })), length: 0 };
  }

  /** h: [B, T, C] → logits [B, T, V] (tied: decoder.embed.weight). */
  logits(h: Tensor): Tensor {
    if (this.#head) return this.#head.forward(h);
    const [B, T, C] = h.shape;
    const y = matmul(reshape(h, [B * T, C]), this.#embed.weight, { transB: true });
    return reshape(y, [B, T, this.cfg.vocab_size]);
  }

  /**
   * ids: i32 [B, T] → logits [B, T, V]. With `cache`, ids are the new
   * positions only (usually T = 1) and the cache advances.
   */
  forward(
    ids: Tensor,
    mask: Tensor | undefined,
    memory: Tensor,
    srcMask: Tensor,
    ctx: ForwardContext,
    cache?: DecoderCache,
  ): Tensor {
    checkIds("decoder", "tgt", ids, "tgtMask", mask);
    const [B] = ids.shape, C = this.cfg.d_model;
    if (memory.shape.length !== 3 || memory.shape[0] !== B || memory.shape[2] !== C) {
      throw new TypeError(
        `decoder: memory must be [${B}, S, ${C}] (the encoder's output), got ${
          fmtShape(memory.shape)
        }`,
      );
    }
    checkIds("decoder", "src", null, "srcMask", srcMask, [B, memory.shape[1]]);
    const start = cache ? cache.length : 0;
    let x = embedWithPositions(this.#embed.forward(ids), this.#pos, start);
    x = maybeDropout(x, this.cfg.dropout, ctx);
    const h = stack(
      this.#layers,
      this.#norm,
      x,
      (layer, x, h, next, i) =>
        layer.forward(x, h, mask, memory, srcMask, ctx, next, cache?.blocks[i]),
    );
    if (cache) cache.length += ids.shape[1];
    return this.logits(h);
  }
}

/**
 * Checks a forward's token ids (i32 [B, L]) and mask ([B, L], any dtype;
 * `undefined` where optional), or a mask alone against `shape`: a wrong
 * rank, dtype or shape is a one-line TypeError naming the argument.
 */
function checkIds(
  where: string,
  idsName: string,
  ids: Tensor | null,
  maskName: string,
  mask: Tensor | undefined,
  shape: readonly number[] | null = null,
): void {
  if (ids) {
    if (ids.dtype !== "i32" || ids.shape.length !== 2) {
      throw new TypeError(
        `${where}: ${idsName} must be token ids, i32 [B, L], got ${ids.dtype} ${
          fmtShape(ids.shape)
        }`,
      );
    }
    shape = ids.shape;
  }
  if (mask && shape && (mask.shape.length !== 2 || mask.shape.some((d, i) => d !== shape[i]))) {
    throw new TypeError(
      `${where}: ${maskName} must be ${fmtShape(shape)} (1 real, 0 pad)${
        ids ? ` like ${idsName}` : ""
      }, got ${fmtShape(mask.shape)}`,
    );
  }
}

/** Base of the seeds forwards without one draw (`hashU32(base, n)` for the n-th). */
const FORWARD_SEED_STREAM = 0x5eed_f0d;

/** Options of {@linkcode Seq2Seq.forward}. */
export interface ForwardOptions {
  /**
   * Seed of this forward's dropout masks. Default: in training mode, a fresh
   * seed each call, from the model's init seed and its own counter (so a model
   * built with the same seed and called the same way draws the same masks, as
   * after `torch.manual_seed`); the trainer passes one per step so a resumed
   * run continues its masks.
   */
  seed?: number;
}

/** Encoder + decoder: `forward(src, srcMask, tgt, tgtMask) → logits [B, T, V]`. */
export class Seq2Seq extends Module {
  /** The model config. */
  readonly config: ModelConfig;
  /** The encoder. */
  readonly encoder: Encoder;
  /** The decoder. */
  readonly decoder: Decoder;

  /** Builds the model with initial weights from `ctx` (see nn/module.ts). */
  constructor(config: ModelConfig, ctx: InitContext) {
    super();
    this.config = config;
    this.encoder = this.addModule("encoder", new Encoder(ctx, config));
    this.decoder = this.addModule("decoder", new Decoder(ctx, config));
    this.#seedBase = hashU32(FORWARD_SEED_STREAM, ctx.seed ?? 0);
  }

  /** Forwards that drew a seed of their own (see `ForwardOptions.seed`). */
  #drawnSeeds = 0;
  /** Where those seeds start: from the init seed, so models seeded apart draw apart. */
  readonly #seedBase: number;

  /**
   * A context for one forward pass in the current mode, its dropout masks
   * from `seed` (default: a fresh one in training mode, see `ForwardOptions.seed`).
   */
  context(seed?: number): ForwardContext {
    if (seed === undefined) {
      seed = this.training ? hashU32(this.#seedBase, this.#drawnSeeds++) : 0;
    }
    return new ForwardContext(this.training, seed);
  }

  /** Encoder output [B, S, C]. */
  encode(src: Tensor, srcMask: Tensor, ctx: ForwardContext = this.context()): Tensor {
    return this.encoder.forward(src, srcMask, ctx);
  }

  /**
   * src: i32 [B, S], srcMask: [B, S] (1 real, 0 pad), tgt: i32 [B, T],
   * tgtMask: [B, T] → logits [B, T, V].
   */
  forward(
    src: Tensor,
    srcMask: Tensor,
    tgt: Tensor,
    tgtMask: Tensor,
    opts: ForwardOptions = {},
  ): Tensor {
    const ctx = this.context(opts.seed);
    const memory = this.encoder.forward(src, srcMask, ctx);
    return this.decoder.forward(tgt, tgtMask, memory, srcMask, ctx);
  }
}
