/**
 * MultiHeadAttention: self, causal self and cross attention with key-padding
 * masks, on the fused `attention` op. Q, K, V and output projections have
 * biases (CONTRACTS.md §2). Heads stay token-major: `[B, T, C]` is viewed as
 * `[B, T, H, D]` (a free reshape) and the op's "BTHD" layout reads it as is,
 * so splitting and merging heads costs no copy.
 *
 * @module
 */
import type { Tensor } from "../tensor/tensor.ts";
import { reshape } from "../ops/mod.ts";
import { attention } from "../ops/attention.ts";
import { concat } from "../ops/slice.ts";
import { linearGroup, linearGroupFits } from "../ops/linear_group.ts";
import { grantedEnv } from "../tensor/env.ts";
import type { InitContext } from "./module.ts";
import { Module } from "./module.ts";
import { autocastAccumulate, autocastPrecision, type ForwardContext, Linear } from "./layers.ts";

let grouped: boolean | null = null;

/**
 * Whether the projections of one input run as one grouped op (Q, K and V of
 * a self-attention, K and V of a cross-attention: ops/linear_group.ts): on
 * unless `WEBSEQ_GROUPED_PROJECTIONS=off` or {@linkcode useGroupedProjections}
 * says otherwise (f16 autocast included). The numbers are those of the layers
 * one by one, on the CPU bit for bit.
 */
export function groupedProjections(): boolean {
  if (grouped === null) {
    const v = grantedEnv("WEBSEQ_GROUPED_PROJECTIONS");
    if (v !== undefined && v !== "on" && v !== "off") {
      throw new TypeError(`WEBSEQ_GROUPED_PROJECTIONS must be on or off, got "${v}"`);
    }
    grouped = v !== "off";
  }
  return grouped;
}

/** Forces grouped projections on or off (`null`: back to `WEBSEQ_GROUPED_PROJECTIONS`). */
export function useGroupedProjections(on: boolean | null): void {
  grouped = on;
}

/** Cached keys and values of one attention layer: [B, S, H, D] each. */
export interface KvCache {
  /** Keys. */
  k: Tensor;
  /** Values. */
  v: Tensor;
}

/** Options of {@linkcode MultiHeadAttention.forward}. */
export interface AttendOptions {
  /** Key padding mask [B, S] (1 real, 0 pad). */
  keyMask?: Tensor;
  /** Causal (decoder self-attention). */
  causal?: boolean;
  /**
   * Incremental decoding: for self-attention, the cache of earlier steps
   * (new keys/values are appended and returned); for cross-attention, keys
   * and values computed once from the encoder output.
   */
  cache?: KvCache | null;
  /** Cross-attention with a precomputed cache: skip the K/V projections. */
  staticKv?: boolean;
}

/** Multi-head attention with H heads of D = C/H. */
export class MultiHeadAttention extends Module {
  /** Heads H. */
  readonly heads: number;
  /** Width C. */
  readonly dim: number;
  /** Attention-probability dropout. */
  readonly attnDropout: number;
  readonly #q: Linear;
  readonly #k: Linear;
  readonly #v: Linear;
  readonly #o: Linear;

  /** Four Linear(C, C) projections with biases. */
  constructor(ctx: InitContext, dim: number, heads: number, attnDropout: number) {
    super();
    if (dim % heads !== 0) {
      throw new RangeError(`d_model ${dim} is not divisible by ${heads} heads`);
    }
    this.dim = dim;
    this.heads = heads;
    this.attnDropout = attnDropout;
    this.#q = this.addModule("q_proj", new Linear(ctx, dim, dim));
    this.#k = this.addModule("k_proj", new Linear(ctx, dim, dim));
    this.#v = this.addModule("v_proj", new Linear(ctx, dim, dim));
    this.#o = this.addModule("out_proj", new Linear(ctx, dim, dim));
  }

  /** [B, T, C] → [B, T, H, D] (a view). */
  #split(x: Tensor): Tensor {
    const [B, T] = x.shape;
    return reshape(x, [B, T, this.heads, this.dim / this.heads]);
  }

  /** The layers' outputs on `x`: one grouped op where {@linkcode groupedProjections} allows. */
  #project(x: Tensor, layers: Linear[]): Tensor[] {
    if (!groupedProjections() || !linearGroupFits(x.backend, layers.length)) {
      return layers.map((l) => l.forward(x));
    }
    // under f16 autocast the products of linearF16, as each layer would run them
    const half = autocastPrecision() === "f16" ? autocastAccumulate() : null;
    return linearGroup(x, layers.map((l) => l.weight), layers.map((l) => l.bias!), { half });
  }

  /** Keys and values of `source` [B, S, C], split into heads. */
  keyValues(source: Tensor): KvCache {
    const [k, v] = this.#project(source, [this.#k, this.#v]);
    return { k: this.#split(k), v: this.#split(v) };
  }

  /**
   * x [B, T, C] attends to `source` [B, S, C] (x itself for self-attention).
   * Returns the output [B, T, C] and, in incremental mode, the updated cache.
   */
  forward(
    x: Tensor,
    source: Tensor,
    ctx: ForwardContext,
    opts: AttendOptions = {},
  ): { out: Tensor; cache: KvCache | null } {
    const [B, T] = x.shape;
    let q: Tensor;
    let kv: KvCache;
    if (opts.staticKv && opts.cache) {
      q = this.#split(this.#q.forward(x));
      kv = opts.cache;
    } else {
      if (source === x) {
        // self-attention: Q, K and V of one input
        const [qx, k, v] = this.#project(x, [this.#q, this.#k, this.#v]);
        q = this.#split(qx);
        kv = { k: this.#split(k), v: this.#split(v) };
      } else {
        q = this.#split(this.#q.forward(x));
        kv = this.keyValues(source);
      }
      if (opts.cache) {
        kv = { k: concat([opts.cache.k, kv.k], 1), v: concat([opts.cache.v, kv.v], 1) };
      }
    }
    const p = ctx.training ? this.attnDropout : 0;
    const o = attention(q, kv.k, kv.v, {
      keyMask: opts.keyMask,
      causal: opts.causal ?? false,
      dropout: p > 0 ? { p, seed: ctx.nextSeed() } : undefined,
      layout: "BTHD",
    }); // [B, T, H, D]
    const merged = reshape(o, [B, T, this.dim]);
    return { out: this.#o.forward(merged), cache: opts.cache !== undefined ? kv : null };
  }
}
