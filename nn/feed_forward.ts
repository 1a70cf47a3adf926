/**
 * FeedForward: GELU (`fc2(dropout(gelu(fc1(x))))`, with biases) or SwiGLU
 * (`w_down(silu(w_gate(x)) * w_up(x))`, no biases), per CONTRACTS.md §2.
 *
 * The GELU variant runs `fc2(dropout(gelu(·)))` as one op
 * (ops/gelu_linear.ts): the `d_ff`-wide activation is recomputed inside the
 * matmuls instead of stored, the same numbers with two `d_ff`-wide tensors
 * less per block and two dispatches less forward and backward. Under f16
 * autocast it runs the f16 form of the same op (the numbers of the f16
 * Linear on the unfused activation). The SwiGLU variant's gate,
 * `silu(w_gate(x)) * w_up(x)`, is one op (ops/swiglu.ts): the same numbers,
 * one dispatch instead of two forward and three backward, and no saved
 * `silu(·)`.
 *
 * @module
 */
import type { Tensor } from "../tensor/tensor.ts";
import { geluLinear, swiglu } from "../ops/mod.ts";
import type { FfnActivation } from "./config.ts";
import { type InitContext, Module } from "./module.ts";
import { autocastAccumulate, autocastPrecision, type ForwardContext, Linear } from "./layers.ts";

/** The position-wise feed-forward network. */
export class FeedForward extends Module {
  /** "gelu" or "swiglu". */
  readonly activation: FfnActivation;
  /** Dropout after the activation (GELU variant). */
  readonly dropout: number;
  #layers: Linear[];

  /** C → F → C. */
  constructor(
    ctx: InitContext,
    dim: number,
    hidden: number,
    activation: FfnActivation,
    dropout: number,
  ) {
    super();
    this.activation = activation;
    this.dropout = dropout;
    if (activation === "gelu") {
      this.#layers = [
        this.addModule("fc1", new Linear(ctx, dim, hidden)),
        this.addModule("fc2", new Linear(ctx, hidden, dim)),
      ];
    } else {
      this.#layers = [
        this.addModule("w_gate", new Linear(ctx, dim, hidden, false)),
        this.addModule("w_up", new Linear(ctx, dim, hidden, false)),
        this.addModule("w_down", new Linear(ctx, hidden, dim, false)),
      ];
    }
  }

  /** x: [B, T, C] → [B, T, C]. */
  forward(x: Tensor, ctx: ForwardContext): Tensor {
    if (this.activation === "gelu") {
      const [fc1, fc2] = this.#layers;
      const u = fc1.forward(x);
      // the seed is drawn where maybeDropout would draw it: same masks, same seed stream
      const p = this.dropout, dropout = ctx.training && p > 0 ? { p, seed: ctx.nextSeed() } : null;
      const half = autocastPrecision() === "f16" ? autocastAccumulate() : null;
      return geluLinear(u, fc2.weight, fc2.bias, { dropout, half });
    }
    const [gate, up, down] = this.#layers;
    return down.forward(swiglu(gate.forward(x), up.forward(x)));
  }
}
