/**
 * Tests of nn/seq2seq.ts: what a forward checks of its inputs, the dropout
 * seeds of forwards given none, and that dispose() frees the whole tree.
 */
import assert from "node:assert/strict";
import { noGrad, scope, type Tensor, tensor } from "../tensor/tensor.ts";
import { CPU } from "../tensor/cpu_backend.ts";
import { presetConfig } from "./config.ts";
import { initContext } from "./module.ts";
import { Seq2Seq } from "./seq2seq.ts";

const CFG = presetConfig("tiny", {
  vocab_size: 30,
  d_model: 16,
  n_heads: 2,
  d_ff: 32,
  n_encoder_layers: 1,
  n_decoder_layers: 1,
  max_position: 64,
  dropout: 0.3,
});

const ids = (v: number[], shape: number[]) => tensor(Int32Array.from(v), shape, { dtype: "i32" });
const SRC = ids([5, 6, 7, 2], [1, 4]), SRC_MASK = tensor([1, 1, 1, 1], [1, 4]);
const TGT = ids([1, 8, 9], [1, 3]), TGT_MASK = tensor([1, 1, 1], [1, 3]);

async function logits(m: Seq2Seq, seed?: number): Promise<Float32Array> {
  const t = noGrad(() => scope(() => m.forward(SRC, SRC_MASK, TGT, TGT_MASK, { seed })));
  const out = Float32Array.from(await t.data());
  t.dispose();
  return out;
}

Deno.test("Seq2Seq.forward() in training draws fresh dropout masks per call unless given a seed, the same for the same calls", async () => {
  const a = new Seq2Seq(CFG, initContext(1)), b = new Seq2Seq(CFG, initContext(1));
  try {
    const [a1, a2] = [await logits(a), await logits(a)];
    assert.notDeepEqual(a1, a2, "two unseeded training forwards share their masks");
    // a model built the same way, called the same way, draws the same masks
    assert.deepEqual([await logits(b), await logits(b)], [a1, a2]);
    // another init seed, other masks (same weights loaded, so only the masks differ)
    const c = new Seq2Seq(CFG, initContext(2));
    c.loadStateDict(await a.stateDict());
    assert.notDeepEqual(await logits(c), a1);
    c.dispose();
    assert.deepEqual(await logits(a, 7), await logits(a, 7));
    a.eval();
    assert.deepEqual(await logits(a), await logits(a));
  } finally {
    a.dispose();
    b.dispose();
  }
});

Deno.test("Seq2Seq.forward() names the argument of a wrong rank, dtype or shape", () => {
  const m = new Seq2Seq(CFG, initContext(1)).eval();
  try {
    const cases: [Tensor[], RegExp][] = [
      [
        [ids([5, 6, 7], [3]), SRC_MASK, TGT, TGT_MASK],
        /encoder: src must be token ids, i32 \[B, L\], got i32 \[3\]/,
      ],
      [
        [tensor([5, 6, 7, 2], [1, 4]), SRC_MASK, TGT, TGT_MASK],
        /encoder: src must be token ids, i32 \[B, L\], got f32 \[1, 4\]/,
      ],
      [
        [SRC, tensor([1, 1, 1], [1, 3]), TGT, TGT_MASK],
        /encoder: srcMask must be \[1, 4\] \(1 real, 0 pad\) like src, got \[1, 3\]/,
      ],
      [
        [SRC, SRC_MASK, ids([1, 8, 9], [1, 1, 3]), TGT_MASK],
        /decoder: tgt must be token ids, i32 \[B, L\], got i32 \[1, 1, 3\]/,
      ],
      [
        [SRC, SRC_MASK, TGT, tensor([1, 1], [1, 2])],
        /decoder: tgtMask must be \[1, 3\] .* got \[1, 2\]/,
      ],
      [
        [
          ids([5, 6, 7, 2, 5, 6, 7, 2], [2, 4]),
          tensor(new Array(8).fill(1), [2, 4]),
          TGT,
          TGT_MASK,
        ],
        /decoder: memory must be \[1, S, 16\] \(the encoder's output\), got \[2, 4, 16\]/,
      ],
    ];
    for (const [[s, sm, t, tm], re] of cases) {
      assert.throws(() => noGrad(() => scope(() => m.forward(s, sm, t, tm))), re);
    }
  } finally {
    m.dispose();
  }
});

Deno.test("Seq2Seq.dispose() frees its parameters and its modules' cached tables", async () => {
  const base = CPU.memoryStats().liveBytes;
  for (const kind of ["sinusoidal", "learned"] as const) {
    const m = new Seq2Seq({ ...CFG, positional_encoding: kind }, initContext(2)).eval();
    await logits(m);
    m.dispose();
    assert.equal(CPU.memoryStats().liveBytes, base, `${kind}: bytes left after dispose`);
  }
});
