/**
 * Pre-LN encoder and decoder blocks (CONTRACTS.md §2):
 * `x = x + DropPath(gamma_i · dropout(Sublayer(LN_i(x))))`.
 * Gammas (LayerScale) exist when `layer_scale_init` is a number. Every
 * residual update runs as one op with the LayerNorm that follows it
 * (ops/residual_layer_norm.ts): the next sublayer's, or for a block's last
 * residual the next block's norm1 (or the stack's final norm), which the
 * caller passes as `next`; a block therefore takes `h = norm1(x)` with `x`.
 *
 * @module
 */
import type { Tensor } from "../tensor/tensor.ts";
import type { ModelConfig } from "./config.ts";
import { init, type InitContext, Module, parameter } from "./module.ts";
import { type ForwardContext, LayerNorm } from "./layers.ts";
import { type KvCache, MultiHeadAttention } from "./attention.ts";
import { FeedForward } from "./feed_forward.ts";

/** `residual(…)` then `norm` of the result, fused (one dispatch forward): `[x, norm(x)]`. */
function residualNorm(
  m: Module & { cfg: ModelConfig },
  x: Tensor,
  branch: Tensor,
  gamma: Tensor | null,
  ctx: ForwardContext,
  norm: LayerNorm,
): [Tensor, Tensor] {
  const p = { dropout: m.cfg.dropout, dropPath: m.cfg.drop_path };
  return norm.residualForward(x, branch, gamma, p, ctx);
}

/** Self-attention + FFN, pre-LN. */
export class EncoderBlock extends Module {
  /** The model config. */
  readonly cfg: ModelConfig;
  #norm1: LayerNorm;
  #attn: MultiHeadAttention;
  #norm2: LayerNorm;
  #ffn: FeedForward;

  /** Parameters in the contract's order and names. */
  constructor(ctx: InitContext, cfg: ModelConfig) {
    super();
    this.cfg = cfg;
    const C = cfg.d_model;
    this.#norm1 = this.addModule("norm1", new LayerNorm(ctx, C, cfg.norm_eps));
    this.#attn = this.addModule(
      "self_attn",
      new MultiHeadAttention(ctx, C, cfg.n_heads, cfg.attention_dropout),
    );
    this.#norm2 = this.addModule("norm2", new LayerNorm(ctx, C, cfg.norm_eps));
    this.#ffn = this.addModule(
      "ffn",
      new FeedForward(ctx, C, cfg.d_ff, cfg.ffn_activation, cfg.dropout),
    );
    if (cfg.layer_scale_init !== null) {
      for (const g of ["gamma1", "gamma2"]) {
        this.addParameter(g, parameter(ctx, [C], init.constant(cfg.layer_scale_init)));
      }
    }
  }

  #gamma(name: string): Tensor | null {
    return this.cfg.layer_scale_init === null ? null : this.param(name);
  }

  /** The block's first LayerNorm (the previous block applies it, fused into its last residual). */
  get norm1(): LayerNorm {
    return this.#norm1;
  }

  /**
   * x: [B, S, C] and h = norm1(x), mask: [B, S] → `[x', next(x')]`: the
   * block's output and the LayerNorm that follows it (the next block's
   * norm1, or the encoder's final norm), fused into the last residual.
   */
  forward(
    x: Tensor,
    h: Tensor,
    mask: Tensor,
    ctx: ForwardContext,
    next: LayerNorm,
  ): [Tensor, Tensor] {
    const a = this.#attn.forward(h, h, ctx, { keyMask: mask }).out;
    const [x1, h2] = residualNorm(this, x, a, this.#gamma("gamma1"), ctx, this.#norm2);
    const f = this.#ffn.forward(h2, ctx);
    return residualNorm(this, x1, f, this.#gamma("gamma2"), ctx, next);
  }
}

/** Caches of one decoder block for incremental decoding. */
export interface BlockCache {
  /** Self-attention keys/values of earlier steps. */
  self: KvCache | null;
  /** Cross-attention keys/values of the encoder output (computed once). */
  cross: KvCache | null;
}

/** Causal self-attention, cross-attention, FFN; pre-LN. */
export class DecoderBlock extends Module {
  /** The model config. */
  readonly cfg: ModelConfig;
  #norm1: LayerNorm;
  #self: MultiHeadAttention;
  #norm2: LayerNorm;
  #cross: MultiHeadAttention;
  #norm3: LayerNorm;
  #ffn: FeedForward;

  /** Parameters in the contract's order and names. */
  constructor(ctx: InitContext, cfg: ModelConfig) {
    super();
    this.cfg = cfg;
    const C = cfg.d_model;
    this.#norm1 = this.addModule("norm1", new LayerNorm(ctx, C, cfg.norm_eps));
    this.#self = this.addModule(
      "self_attn",
      new MultiHeadAttention(ctx, C, cfg.n_heads, cfg.attention_dropout),
    );
    this.#norm2 = this.addModule("norm2", new LayerNorm(ctx, C, cfg.norm_eps));
    this.#cross = this.addModule(
      "cross_attn",
      new MultiHeadAttention(ctx, C, cfg.n_heads, cfg.attention_dropout),
    );
    this.#norm3 = this.addModule("norm3", new LayerNorm(ctx, C, cfg.norm_eps));
    this.#ffn = this.addModule(
      "ffn",
      new FeedForward(ctx, C, cfg.d_ff, cfg.ffn_activation, cfg.dropout),
    );
    if (cfg.layer_scale_init !== null) {
      for (const g of ["gamma1", "gamma2", "gamma3"]) {
        this.addParameter(g, parameter(ctx, [C], init.constant(cfg.layer_scale_init)));
      }
    }
  }

  #gamma(name: string): Tensor | null {
    return this.cfg.layer_scale_init === null ? null : this.param(name);
  }

  /** Cross-attention keys/values of the encoder output, for a cache. */
  crossKeyValues(memory: Tensor): KvCache {
    return this.#cross.keyValues(memory);
  }

  /** The block's first LayerNorm (the previous block applies it, fused into its last residual). */
  get norm1(): LayerNorm {
    return this.#norm1;
  }

  /**
   * x: [B, T, C] and h = norm1(x), memory: [B, S, C] → `[x', next(x')]`: the
   * block's output and the LayerNorm that follows it (the next block's
   * norm1, or the decoder's final norm), fused into the last residual. With
   * `cache`, x holds only the new positions and the cache is updated in place.
   */
  forward(
    x: Tensor,
    h: Tensor,
    tgtMask: Tensor | undefined,
    memory: Tensor,
    srcMask: Tensor,
    ctx: ForwardContext,
    next: LayerNorm,
    cache?: BlockCache,
  ): [Tensor, Tensor] {
    const sa = this.#self.forward(h, h, ctx, {
      keyMask: tgtMask,
      causal: true,
      cache: cache ? cache.self : undefined,
    });
    if (cache) cache.self = sa.cache;
    const [x1, h2] = residualNorm(this, x, sa.out, this.#gamma("gamma1"), ctx, this.#norm2);
    const ca = this.#cross.forward(h2, memory, ctx, {
      keyMask: srcMask,
      cache: cache ? cache.cross : undefined,
      staticKv: cache !== undefined && cache.cross !== null,
    });
    if (cache && !cache.cross) cache.cross = ca.cache;
    const [x2, h3] = residualNorm(this, x1, ca.out, this.#gamma("gamma2"), ctx, this.#norm3);
    const f = this.#ffn.forward(h3, ctx);
    return residualNorm(this, x2, f, this.#gamma("gamma3"), ctx, next);
  }
}
