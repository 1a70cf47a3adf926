/**
 * The flat buffers behind AdamW's fused step: every parameter is a segment of
 * one buffer (a "bank") of parameters, and of the same-shaped banks of
 * gradients, first moments and second moments. The parameter tensors are
 * moved into the parameter bank (they become views of it, so the forward
 * pass reads them with no copy). Backward rules write a parameter's
 * gradient straight into its segment of the gradient bank where they can
 * (`BackwardContext.gradSink`: Linear, LayerNorm, the embedding…), and each
 * step copies the others there (buffer copies, no dispatch); then one
 * `sumSquaresFlat` per bank and one `clipCoef` give the norm and clipping
 * factor, and one `adamwFlat` per bank updates everything.
 *
 * Layout of a bank: decayed parameters first, then the others (so the update
 * needs one boundary, `decayEnd`, instead of a per-segment table); each
 * segment padded to the backend's view alignment (256 bytes on most GPUs).
 * A bank holds at most `maxStorageBytes` (one binding): there is one bank
 * unless the model exceeds that. Padding stays zero.
 *
 * The partials of the global norm keep the per-parameter order and
 * partition of optim/clip.ts, so both paths compute the same numbers.
 *
 * @module
 */
import {
  apply,
  copyInto,
  noGrad,
  sliceView,
  type Tensor,
  tensor,
  zeros,
} from "../tensor/tensor.ts";
import { bytesPer, type CpuArray, type Shape } from "../tensor/types.ts";
import {
  ADAMW_FLAT,
  type AdamWParams,
  clipCoef,
  type FlatSegment,
  SUM_SQUARES_FLAT,
  type SumSquaresFlatParams,
  sumSquaresGroups,
  sumSquaresTable,
} from "../ops/optim_ops.ts";

/** A parameter as the flat buffers see it. */
export interface FlatParameter {
  /** The parameter (moved into the parameter bank). */
  tensor: Tensor;
  /** Whether weight decay applies. */
  decay: boolean;
}

/** Where a parameter lives: bank and first element. */
export interface FlatSlot {
  /** Bank index. */
  bank: number;
  /** First element in the bank. */
  offset: number;
}

interface Bank {
  /** Elements (segments and padding). */
  n: number;
  /** Elements [0, decayEnd) are decayed parameters. */
  decayEnd: number;
  /** Segments of the sum-of-squares table. */
  segments: FlatSegment[];
  p: Tensor;
  g: Tensor;
  m: Tensor;
  v: Tensor;
  table: Tensor;
  sumSquares: SumSquaresFlatParams;
}

/** Parameters, gradients and moments of AdamW in flat banks. */
export class FlatBuffers {
  /** Per parameter (in the order given): bank and offset. */
  readonly slots: readonly FlatSlot[];
  /** Per parameter: its first moment, a view of the moment bank. */
  readonly m: readonly Tensor[];
  /** Per parameter: its second moment, a view of the moment bank. */
  readonly v: readonly Tensor[];
  /** Number of banks (dispatches per step: 2 per bank + 1). */
  get bankCount(): number {
    return this.#banks.length;
  }
  #banks: Bank[];
  #params: readonly FlatParameter[];
  #g: Tensor[];
  #partials: number;
  /** The storages {@linkcode sinkFor} handed out, by parameter. */
  #sinks = new WeakMap<object, number>();

  /**
   * Lays the parameters out, copies them into the parameter bank and makes
   * each parameter tensor a view of it. `maxBankBytes` caps a bank (default
   * and ceiling: the backend's `maxStorageBytes`).
   */
  constructor(params: readonly FlatParameter[], maxBankBytes?: number) {
    this.#params = params;
    const first = params[0].tensor;
    const backend = first.backend, dtype = first.dtype;
    const per = bytesPer(dtype);
    const alignEl = Math.max(1, Math.ceil(backend.viewAlignment / per));
    const cap = Math.floor(Math.min(maxBankBytes ?? Infinity, backend.maxStorageBytes) / per);
    // partial slots in the order given, as clip.ts assigns them
    const partialOffset: number[] = [];
    let partials = 0;
    for (const p of params) {
      partialOffset.push(partials);
      partials += sumSquaresGroups(p.tensor.size);
    }
    this.#partials = partials;
    // decayed first, then the others; a new bank when one is full
    const order = [...params.keys()].sort((a, b) =>
      Number(params[b].decay) - Number(params[a].decay) || a - b
    );
    const layout: { n: number; decayEnd: number; segments: FlatSegment[] }[] = [];
    const slots: FlatSlot[] = new Array(params.length);
    for (const i of order) {
      const n = params[i].tensor.size;
      const padded = Math.max(alignEl, Math.ceil(n / alignEl) * alignEl);
      if (padded > cap) {
        throw new RangeError(
          `AdamW: parameter of ${n} elements exceeds a flat bank of ${cap} (maxBankBytes)`,
        );
      }
      let bank = layout[layout.length - 1];
      if (!bank || bank.n + padded > cap) layout.push(bank = { n: 0, decayEnd: 0, segments: [] });
      slots[i] = { bank: layout.length - 1, offset: bank.n };
      bank.segments.push({ offset: bank.n, n, partialOffset: partialOffset[i] });
      bank.n += padded;
      if (params[i].decay) bank.decayEnd = bank.n;
    }
    this.slots = slots;
    this.#banks = noGrad(() =>
      layout.map((b) => {
        const buf = () => zeros([b.n], { dtype, backend }).keep();
        const { table, params: sumSquares } = sumSquaresTable(b.segments);
        return {
          ...b,
          p: buf(),
          g: buf(),
          m: buf(),
          v: buf(),
          table: tensor(table, [table.length], { dtype: "i32", backend }).keep(),
          sumSquares,
        };
      })
    );
    const views = (key: "p" | "g" | "m" | "v") =>
      params.map((p, i) => this.#view(key, i, p.tensor.shape));
    // move each parameter into the parameter bank
    views("p").forEach((view, i) => {
      const t = params[i].tensor;
      copyInto(view, t);
      t.shareStorageOf(view);
      view.dispose();
    });
    this.#g = views("g");
    this.m = views("m");
    this.v = views("v");
  }

  #view(key: "p" | "g" | "m" | "v", i: number, shape: Shape): Tensor {
    const { bank, offset } = this.slots[i];
    return sliceView(this.#banks[bank][key], offset, shape).keep();
  }

  /**
   * Parameter `i`'s segment of the gradient bank as a fresh tensor (a
   * gradient sink, `BackwardContext.gradSink`): an op that writes the
   * gradient there saves {@linkcode gather} its copy.
   */
  sinkFor(i: number): Tensor {
    const t = this.#view("g", i, this.#params[i].tensor.shape);
    this.#sinks.set(t.storage, i);
    return t;
  }

  /**
   * Copies every parameter's gradient into the gradient bank (all must
   * exist), except those already written there ({@linkcode sinkFor}).
   */
  gather(grads: readonly Tensor[]): void {
    grads.forEach((g, i) => {
      if (this.#sinks.get(g.storage) !== i) copyInto(this.#g[i], g);
    });
  }

  /**
   * The global norm of the gathered gradients and torch's clipping factor
   * (`[norm, factor]`, each [1]), as `normAndClipFactor` of optim/clip.ts
   * computes them over the same gradients.
   */
  normAndClipFactor(maxNorm: number): [Tensor, Tensor] {
    return noGrad(() => {
      const partials = zeros([Math.max(1, this.#partials)], {
        dtype: this.#banks[0].g.dtype,
        backend: this.#banks[0].g.backend,
      });
      for (const b of this.#banks) apply(SUM_SQUARES_FLAT, [partials, b.g, b.table], b.sumSquares);
      const out = clipCoef(partials, maxNorm);
      partials.dispose();
      return out;
    });
  }

  /**
   * One AdamW update of every bank from the gathered gradients times
   * `gradScale`; with a loss scaler's state [4], skipped when it flags
   * non-finite gradients (see ADAMW_FLAT).
   */
  update(gradScale: Tensor, prm: AdamWParams, scalerState?: Tensor): void {
    const extra = scalerState ? [scalerState] : [];
    noGrad(() => {
      for (const b of this.#banks) {
        apply(ADAMW_FLAT, [b.p, b.g, b.m, b.v, gradScale, ...extra], {
          ...prm,
          decayEnd: b.decayEnd,
        });
      }
    });
  }

  /** The moments per parameter as host arrays (two readbacks per bank). */
  async readMoments(): Promise<{ m: Float32Array[]; v: Float32Array[] }> {
    const m: Float32Array[] = [], v: Float32Array[] = [];
    for (const [key, out] of [["m", m], ["v", v]] as const) {
      const banks: CpuArray[] = [];
      for (const b of this.#banks) banks.push(await b[key].data());
      this.#params.forEach((p, i) => {
        const { bank, offset } = this.slots[i];
        out.push(Float32Array.from(banks[bank].subarray(offset, offset + p.tensor.size)));
      });
    }
    return { m, v };
  }

  /** Overwrites the moments from host arrays (one upload and copy per bank). */
  writeMoments(m: readonly ArrayLike<number>[], v: readonly ArrayLike<number>[]): void {
    for (const [key, data] of [["m", m], ["v", v]] as const) {
      this.#banks.forEach((b, k) => {
        const host = new Float32Array(b.n);
        this.#params.forEach((_, i) => {
          if (this.slots[i].bank === k) host.set(data[i], this.slots[i].offset);
        });
        const t = tensor(host, [b.n], { dtype: b[key].dtype, backend: b[key].backend });
        copyInto(b[key], t);
        t.dispose();
      });
    }
  }

  /** Frees the banks; the parameter bank lives on in the parameters. */
  dispose(): void {
    for (const t of [...this.#g, ...this.m, ...this.v]) t.dispose();
    for (const b of this.#banks) for (const t of [b.p, b.g, b.m, b.v, b.table]) t.dispose();
  }
}
