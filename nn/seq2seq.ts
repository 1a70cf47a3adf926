/**
 * Encoder, Decoder (with `lm_head`) and Seq2Seq, the model of the notebook
 * exactly as CONTRACTS.md §1–3 pin it.
 *
 * @example
 * ```ts
 * import { Seq2Seq, presetConfig, initContext } from "../mod.ts";
 * import { tensor } from "../tensor/tensor.ts";
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

/** Options of {@linkcode Seq2Seq.forward}. */
export interface ForwardOptions {
  /** Seed of this forward's dropout masks (vary it per step). */
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
  }

  /** A context for one forward pass in the current mode. */
  context(seed = 0): ForwardContext {
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
    const ctx = this.context(opts.seed ?? 0);
    const memory = this.encoder.forward(src, srcMask, ctx);
    return this.decoder.forward(tgt, tgtMask, memory, srcMask, ctx);
  }
}
