/**
 * Tests of the fused attention beyond the registry's GPU-vs-CPU and
 * finite-difference checks: attention() equals the composition
 * softmax(maskedFill(q·kᵀ·scale, disallowed, finfo.min))·v built from other
 * ops (PyTorch's formula in interop/torch/webseq_torch.py) — values and
 * gradients, on both backends — plus fully masked rows, the KV-cache step,
 * recompute after a scope freed the saved outputs, and errors.
 */
import assert from "node:assert/strict";
import { CPU } from "../tensor/cpu_backend.ts";
import { makeRng } from "../tensor/rng.ts";
import { apply, scope, type Tensor, tensor } from "../tensor/tensor.ts";
import type { Backend } from "../tensor/types.ts";
import { GPU, NO_GPU } from "../tests/_gpu.ts";
import { MM_MAX_SCORE_BYTES, mmSoftmaxWgsl } from "./_attention_mm.ts";
import {
  MM_DEFAULT_MAX_SCORE_BYTES,
  tiledDkvWgsl,
  tiledDqWgsl,
  tiledForwardWgsl,
} from "./_attention_tiled.ts";
import {
  ATTENTION,
  attention,
  attentionEpilogues,
  type AttentionOptions,
  attentionProbs,
  type AttentionShape,
  attentionShapeKey,
  type AttentionTile,
  attentionTileName,
  attentionTunedTable,
  clearAttentionTuning,
  dropout,
  fittingAttentionTiles,
  loadAttentionTunedTable,
  maskedFill,
  matmul,
  mul,
  parseAttentionTileName,
  permute,
  scale,
  selectAttentionKernel,
  setTunedAttentionKernel,
  slice,
  softmax,
  sum,
  useActivations,
  useAttentionEpilogues,
  useAttentionKernel,
  useAttentionProbs,
} from "./mod.ts";
import { evalStdout } from "../tests/_eval.ts";

/** torch.finfo(torch.float32).min, the value PyTorch's twin fills disallowed scores with. */
const F32_MIN = -3.4028234663852886e38;

interface Setup {
  B: number;
  H: number;
  T: number;
  S: number;
  D: number;
  /** Real keys per batch row (right padding). */
  lens?: number[];
  causal?: boolean;
  dropout?: { p: number; seed: number };
  range?: number;
}

function randoms(n: number, rng: () => number, r = 1): number[] {
  return Array.from({ length: n }, () => (rng() * 2 - 1) * r);
}

/** Inputs of a setup on a backend (f64 on the CPU for exact gradient comparisons). */
function inputs(c: Setup, backend: Backend, seed = 1) {
  const rng = makeRng(seed);
  const dtype = backend === CPU ? "f64" as const : "f32" as const;
  const mk = (shape: number[], r = 1) =>
    tensor(randoms(shape.reduce((a, b) => a * b, 1), rng, r), shape, {
      backend,
      dtype,
      requiresGrad: true,
    });
  const q = mk([c.B, c.H, c.T, c.D], c.range), k = mk([c.B, c.H, c.S, c.D], c.range);
  const v = mk([c.B, c.H, c.S, c.D]);
  const w = tensor(randoms(c.B * c.H * c.T * c.D, rng), [c.B, c.H, c.T, c.D], { backend, dtype });
  const keyMask = c.lens
    ? tensor(
      Array.from({ length: c.B * c.S }, (_, i) => (i % c.S < c.lens![Math.floor(i / c.S)] ? 1 : 0)),
      [c.B, c.S],
      { backend },
    )
    : undefined;
  return { q, k, v, w, keyMask };
}

/** 1 where key s is NOT allowed for query t: `[B, 1, T, S]`. */
function disallowed(c: Setup, backend: Backend): Tensor {
  const out: number[] = [];
  for (let b = 0; b < c.B; b++) {
    for (let t = 0; t < c.T; t++) {
      for (let s = 0; s < c.S; s++) {
        const ok = (!c.lens || s < c.lens[b]) && (!c.causal || s <= t + c.S - c.T);
        out.push(ok ? 0 : 1);
      }
    }
  }
  return tensor(out, [c.B, 1, c.T, c.S], { backend });
}

/** The unfused reference: PyTorch's masked_fill + softmax + dropout + matmul. */
function composed(q: Tensor, k: Tensor, v: Tensor, c: Setup): Tensor {
  const scores = scale(matmul(q, k, { transB: true }), 1 / Math.sqrt(c.D));
  let probs = softmax(maskedFill(scores, disallowed(c, q.backend), F32_MIN));
  if (c.dropout) probs = dropout(probs, c.dropout.p, c.dropout.seed);
  return matmul(probs, v);
}

function closeTo(got: ArrayLike<number>, want: ArrayLike<number>, tol: number, what: string): void {
  assert.equal(got.length, want.length, `${what}: length`);
  let scaleRef = 1e-12;
  for (let i = 0; i < want.length; i++) scaleRef = Math.max(scaleRef, Math.abs(want[i]));
  for (let i = 0; i < want.length; i++) {
    assert.ok(
      Math.abs(got[i] - want[i]) <= tol * Math.max(1, scaleRef),
      `${what}[${i}]: ${got[i]} vs ${want[i]}`,
    );
  }
}

/** Forward values and q/k/v gradients of attention() and of the composition agree. */
async function compareWithComposition(c: Setup, backend: Backend, tol: number): Promise<void> {
  const a = inputs(c, backend), r = inputs(c, backend);
  const opts: AttentionOptions = { keyMask: a.keyMask, causal: c.causal, dropout: c.dropout };
  const outA = attention(a.q, a.k, a.v, opts);
  const outR = composed(r.q, r.k, r.v, c);
  closeTo(await outA.data(), await outR.data(), tol, "out");
  sum(mul(outA, a.w)).backward();
  sum(mul(outR, r.w)).backward();
  for (const n of ["q", "k", "v"] as const) {
    closeTo(await a[n].grad!.data(), await r[n].grad!.data(), tol, `d${n}`);
  }
}

const SETUPS: [string, Setup][] = [
  ["key padding", { B: 2, H: 3, T: 5, S: 7, D: 8, lens: [7, 3] }],
  ["causal self-attention with padding", {
    B: 2,
    H: 2,
    T: 9,
    S: 9,
    D: 4,
    lens: [9, 5],
    causal: true,
  }],
  ["causal with T < S (KV cache)", { B: 1, H: 2, T: 3, S: 8, D: 6, causal: true }],
  ["fully masked rows (all-pad sequence)", { B: 2, H: 2, T: 4, S: 6, D: 4, lens: [4, 0] }],
  ["fully masked causal rows", { B: 2, H: 1, T: 6, S: 6, D: 4, lens: [0, 6], causal: true }],
  ["causal with T > S (leading rows see no key)", { B: 1, H: 1, T: 7, S: 4, D: 4, causal: true }],
  ["large-magnitude q and k", { B: 1, H: 2, T: 6, S: 6, D: 8, lens: [5], range: 8 }],
  [
    "attention dropout",
    { B: 2, H: 2, T: 5, S: 6, D: 4, lens: [6, 2], causal: true, dropout: { p: 0.25, seed: 77 } },
  ],
];

for (const [name, c] of SETUPS) {
  Deno.test(`attention() equals the composed masked_fill/softmax/matmul on the CPU (f64): ${name}`, async () => {
    await compareWithComposition(c, CPU, 1e-10);
  });
  Deno.test({
    name: `attention() equals the composed masked_fill/softmax/matmul on WebGPU: ${name}`,
    ignore: NO_GPU,
    fn: async () => {
      await compareWithComposition(c, GPU!, c.range ? 2e-4 : 1e-4);
    },
  });
}

Deno.test({
  name: "attention() forward and backward on WebGPU equal the CPU on a training-like shape",
  ignore: NO_GPU,
  fn: async () => {
    const c: Setup = {
      B: 3,
      H: 4,
      T: 37,
      S: 37,
      D: 16,
      lens: [37, 20, 1],
      causal: true,
      dropout: { p: 0.1, seed: 5 },
    };
    const g = inputs(c, GPU!, 9), h = inputs(c, CPU, 9);
    const opts = (x: typeof g): AttentionOptions => ({
      keyMask: x.keyMask,
      causal: true,
      dropout: c.dropout,
    });
    const og = attention(g.q, g.k, g.v, opts(g)), oh = attention(h.q, h.k, h.v, opts(h));
    closeTo(await og.data(), await oh.data(), 1e-4, "out");
    sum(mul(og, g.w)).backward();
    sum(mul(oh, h.w)).backward();
    for (const n of ["q", "k", "v"] as const) {
      closeTo(await g[n].grad!.data(), await h[n].grad!.data(), 1e-4, `d${n}`);
    }
  },
});

Deno.test("attention() gives a fully masked row the mean of v over all keys and no q/k gradient", async () => {
  // batch row 1 is all padding: its queries attend uniformly (PyTorch's masked_fill semantics)
  const c: Setup = { B: 2, H: 1, T: 2, S: 3, D: 2, lens: [3, 0] };
  const { q, k, v, keyMask } = inputs(c, CPU, 3);
  const [out, lse] = apply(ATTENTION, [q, k, v, keyMask!], {
    hasMask: true,
    causal: false,
    scale: 1 / Math.sqrt(2),
    dropoutP: 0,
    seed: 0,
  });
  const vs = await v.data(), os = await out.data(), ls = await lse.data();
  for (let t = 0; t < 2; t++) {
    for (let d = 0; d < 2; d++) {
      const mean = (vs[6 + d] + vs[8 + d] + vs[10 + d]) / 3;
      assert.ok(Math.abs(os[(2 + t) * 2 + d] - mean) < 1e-12, `row ${t} dim ${d}`);
    }
    assert.ok(Math.abs(ls[2 + t] - Math.log(3)) < 1e-12);
  }
  sum(out).backward();
  const dq = await q.grad!.data(), dk = await k.grad!.data(), dv = await v.grad!.data();
  for (let i = 4; i < 8; i++) assert.equal(dq[i], 0, `dq[${i}]`);
  for (let i = 6; i < 12; i++) {
    assert.equal(dk[i], 0, `dk[${i}]`);
    assert.ok(Math.abs(dv[i] - 2 / 3) < 1e-12, `dv[${i}] = ${dv[i]}`); // 2 queries × 1/3
  }
});

Deno.test("attention() with T = 1 (KV-cache step) equals the last row of full causal attention", async () => {
  for (const backend of NO_GPU ? [CPU] : [CPU, GPU!]) {
    const c: Setup = { B: 2, H: 2, T: 6, S: 6, D: 8, lens: [6, 4] };
    const { q, k, v, keyMask } = inputs(c, backend, 4);
    const full = attention(q, k, v, { keyMask, causal: true });
    const step = attention(slice(q, 2, 5, 6), k, v, { keyMask, causal: true });
    closeTo(await step.data(), await slice(full, 2, 5, 6).data(), 1e-6, backend.kind);
  }
});

Deno.test("attention() backward recomputes the saved outputs when a scope freed them", async () => {
  const c: Setup = { B: 1, H: 2, T: 4, S: 5, D: 3, lens: [4] };
  const a = inputs(c, CPU, 6), r = inputs(c, CPU, 6);
  // lse (the op's second output) is created and freed inside the scope; only out survives
  const out = scope(() => attention(a.q, a.k, a.v, { keyMask: a.keyMask }));
  sum(mul(out, a.w)).backward();
  sum(mul(attention(r.q, r.k, r.v, { keyMask: r.keyMask }), r.w)).backward();
  closeTo(await a.q.grad!.data(), await r.q.grad!.data(), 1e-12, "dq");
  closeTo(await a.v.grad!.data(), await r.v.grad!.data(), 1e-12, "dv");
});

Deno.test("tiled and mm attention kernels unroll their short loops: no vector or register array indexed at run time", () => {
  const v = { D: 64, mask: "f32" as const, causal: true, dropout: true };
  const t = { R: 32, C: 32, RM: 2, TC: 8 };
  const codes = [
    tiledForwardWgsl(v, t, () => ""),
    tiledDqWgsl(v, t, () => "", []),
    tiledDkvWgsl(v, t, () => "", []),
  ];
  for (const code of codes) {
    assert.doesNotMatch(code, /for \(var x = 0u; x < 4u/);
    assert.doesNotMatch(code, /\w\[x\]/);
    // rows of D/4 vec4s as 2-D arrays: a row, then the vec4 j of the score products' loop
    assert.doesNotMatch(code, /\* [QP]W \+/);
    assert.match(code, /var<workgroup> Ks: array<array<vec4f, QW>, [RC]>;/);
    assert.match(code, /\[tx \+ 24u\]\[j\];/);
    // each of the four components, with its row of the other side a constant step past c
    for (const [q, c] of ["x", "y", "z", "w"].entries()) {
      assert.match(code, new RegExp(`\\[c \\+ ${q}u\\]\\[tx`));
      assert.match(code, new RegExp(`\\d\\.${c} \\* \\w+v0;`));
    }
  }
  // "mm" softmax: a thread's keys (128 over 32 lanes: 4) unrolled, their scores in registers
  const mm = mmSoftmaxWgsl("", 128);
  assert.doesNotMatch(mm, /for \(var j = /);
  assert.match(mm, /const j = 3u;/);
  assert.doesNotMatch(mm, /const j = 4u;/);
});

Deno.test("attention() rejects bad shapes and options with one-line errors naming them", () => {
  const q = tensor(new Float32Array(2 * 3 * 4), [1, 2, 3, 4]);
  const k = tensor(new Float32Array(2 * 5 * 4), [1, 2, 5, 4]);
  const k3 = tensor(new Float32Array(2 * 5 * 3), [1, 2, 5, 3]);
  assert.throws(
    () => attention(q, k3, k3),
    (e: Error) => e instanceof TypeError && /\[1, 2, 5, 3\]/.test(e.message),
  );
  assert.throws(
    () => attention(q, k, k, { keyMask: tensor([1, 1, 1], [1, 3]) }),
    (e: Error) => e instanceof TypeError && /keyMask must be \[1, 5\]/.test(e.message),
  );
  assert.throws(
    () => attention(q, k, k, { dropout: { p: 1.5, seed: 1 } }),
    (e: Error) => e instanceof RangeError && !e.message.includes("\n"),
  );
  assert.throws(() => attention(tensor([1], [1]), k, k), TypeError);
});

Deno.test("attention(): the f32 CPU fast path (WebAssembly matmuls) equals the float64 reference, forward and backward", async () => {
  const rng = makeRng(5);
  const shapes = [
    { B: 2, H: 2, T: 5, S: 7, D: 8, causal: false, p: 0 },
    { B: 1, H: 3, T: 6, S: 6, D: 4, causal: true, p: 0.25 },
    { B: 2, H: 1, T: 1, S: 9, D: 16, causal: true, p: 0 },
    // T·S·D ≥ WASM_ATTENTION_MAX_WORK: the matmul path without dropout too
    { B: 2, H: 1, T: 128, S: 128, D: 64, causal: true, p: 0 },
  ];
  for (const c of shapes) {
    const { B, H, T, S, D } = c;
    const rand = (n: number) => Float64Array.from({ length: n }, () => rng() * 2 - 1);
    const qd = rand(B * H * T * D), kd = rand(B * H * S * D), vd = rand(B * H * S * D);
    const md = Float64Array.from({ length: B * S }, (_, i) => (i % S < S - 2 || i < S ? 1 : 0));
    md.fill(0, (B - 1) * S, B * S); // the last batch row is fully padded
    const dyd = rand(B * H * T * D);
    const run = async (dtype: "f32" | "f64") => {
      const mk = (d: Float64Array, shape: number[], grad = false) =>
        tensor(dtype === "f32" ? Float32Array.from(d) : d, shape, {
          dtype,
          backend: CPU,
          requiresGrad: grad,
        });
      const q = mk(qd, [B, H, T, D], true),
        k = mk(kd, [B, H, S, D], true),
        v = mk(vd, [B, H, S, D], true);
      const out = attention(q, k, v, {
        keyMask: mk(md, [B, S]),
        causal: c.causal,
        dropout: c.p > 0 ? { p: c.p, seed: 9 } : undefined,
      });
      out.backward(mk(dyd, [B, H, T, D]));
      return [await out.data(), await q.grad!.data(), await k.grad!.data(), await v.grad!.data()];
    };
    const fast = await run("f32"), ref = await run("f64");
    fast.forEach((got, j) => {
      let scale = 1e-6, worst = 0;
      for (let i = 0; i < got.length; i++) {
        scale = Math.max(scale, Math.abs(ref[j][i]));
        worst = Math.max(worst, Math.abs(got[i] - ref[j][i]));
      }
      assert.ok(
        worst <= 1e-5 * scale,
        `${JSON.stringify(c)} output ${j}: ${worst} (scale ${scale})`,
      );
    });
  }
});

Deno.test("attention() with layout BTHD equals BHTD with permutes, values and gradients, on CPU f64, CPU f32 and WebGPU", async () => {
  const setups: Setup[] = [
    { B: 2, H: 3, T: 5, S: 7, D: 8, lens: [7, 0] }, // cross-attention, a fully padded row
    { B: 2, H: 2, T: 6, S: 6, D: 4, lens: [6, 3], causal: true, dropout: { p: 0.3, seed: 11 } },
    { B: 1, H: 2, T: 1, S: 5, D: 3, causal: true }, // a KV-cache step
  ];
  const runs: [Backend, "f32" | "f64", number][] = [[CPU, "f64", 1e-12], [CPU, "f32", 1e-5]];
  if (!NO_GPU) runs.push([GPU!, "f32", 1e-5]);
  const toBthd = [0, 2, 1, 3];
  for (const c of setups) {
    for (const [backend, dtype, tol] of runs) {
      const rng = makeRng(21);
      const mk = (shape: number[]) =>
        tensor(randoms(shape.reduce((a, b) => a * b, 1), rng), shape, {
          backend,
          dtype,
          requiresGrad: true,
        });
      // token-major leaves [B, L, H, D]
      const q = mk([c.B, c.T, c.H, c.D]),
        k = mk([c.B, c.S, c.H, c.D]),
        v = mk([c.B, c.S, c.H, c.D]);
      const w = tensor(randoms(c.B * c.T * c.H * c.D, rng), [c.B, c.T, c.H, c.D], {
        backend,
        dtype,
      });
      const keyMask = c.lens
        ? tensor(
          Array.from(
            { length: c.B * c.S },
            (_, i) => (i % c.S < c.lens![Math.floor(i / c.S)] ? 1 : 0),
          ),
          [c.B, c.S],
          { backend },
        )
        : undefined;
      const opts: AttentionOptions = { keyMask, causal: c.causal, dropout: c.dropout };
      const direct = attention(q, k, v, { ...opts, layout: "BTHD" });
      sum(mul(direct, w)).backward();
      const got = [direct, q.grad!, k.grad!, v.grad!];
      const [q2, k2, v2] = [q, k, v].map((x) => {
        const y = x.detach();
        y.requiresGrad = true;
        return y;
      });
      const viaHeads = permute(
        attention(permute(q2, toBthd), permute(k2, toBthd), permute(v2, toBthd), opts),
        toBthd,
      );
      sum(mul(viaHeads, w)).backward();
      const want = [viaHeads, q2.grad!, k2.grad!, v2.grad!];
      for (let j = 0; j < 4; j++) {
        closeTo(
          await got[j].data(),
          await want[j].data(),
          tol,
          `${backend.kind} ${dtype} ${JSON.stringify(c)} ${["out", "dq", "dk", "dv"][j]}`,
        );
      }
    }
  }
});

Deno.test("attention kernel selection: forced, tuned per adapter, else mm on hardware GPUs and the row kernels elsewhere; tiles that do not fit fall back", () => {
  const big = { maxInvocations: 1024, maxWorkgroupBytes: 49152 };
  const small = { maxInvocations: 256, maxWorkgroupBytes: 16384 };
  const shape: AttentionShape = {
    op: "fwd",
    BH: 512,
    T: 128,
    S: 100,
    D: 64,
    causal: true,
    mask: true,
    dropout: false,
  };
  assert.equal(attentionShapeKey(shape), "attention|fwd|D64|BH~512|T~128|S~128|c1m1d0");
  assert.deepEqual(parseAttentionTileName("a64x32_4x8"), { R: 64, C: 32, RM: 4, TC: 8 });
  assert.equal(parseAttentionTileName("t64x64k8_4x4"), null);
  // the preferred tiles need desktop limits; WebGPU's guaranteed 16 KiB takes smaller ones
  assert.equal(fittingAttentionTiles("fwd", 64, big)[0], "a64x32_4x8");
  assert.ok(!fittingAttentionTiles("fwd", 64, small).includes("a64x32_4x8"));
  assert.ok(fittingAttentionTiles("bwd", 64, small).length > 0);
  assert.deepEqual(fittingAttentionTiles("fwd", 6, big), []); // D % 4 != 0: rows only
  clearAttentionTuning();
  try {
    assert.equal(selectAttentionKernel(shape, "gpu A", big), "rows");
    // untuned and unforced: "mm" on a configured hardware GPU, rows on software adapters
    const hw0 = { ...big, software: false, description: "gpu H" };
    assert.equal(selectAttentionKernel(shape, "gpu H", hw0), "mm");
    assert.equal(selectAttentionKernel({ ...shape, T: 1 }, "gpu H", hw0), "rows"); // decoding
    assert.equal(selectAttentionKernel({ ...shape, S: 63 }, "gpu H", hw0), "rows");
    const many = Math.floor(MM_DEFAULT_MAX_SCORE_BYTES / (4 * shape.T * shape.S)) + 1;
    assert.equal(selectAttentionKernel({ ...shape, BH: many }, "gpu H", hw0), "rows");
    assert.equal(selectAttentionKernel(shape, "gpu H", { ...hw0, software: true }), "rows");
    assert.equal(selectAttentionKernel(shape, "", { ...hw0, description: "" }), "rows");
    setTunedAttentionKernel("gpu A", shape, "a32x32_2x8");
    assert.deepEqual(selectAttentionKernel({ ...shape, T: 120 }, "gpu A", big), {
      R: 32,
      C: 32,
      RM: 2,
      TC: 8,
    });
    assert.equal(selectAttentionKernel(shape, "gpu B", big), "rows"); // per adapter
    assert.equal(selectAttentionKernel({ ...shape, op: "bwd" }, "gpu A", big), "rows");
    // a tuned tile too large for these limits: the first registered tile that fits
    setTunedAttentionKernel("gpu A", shape, "a64x32_4x8");
    assert.equal(
      attentionTileName(selectAttentionKernel(shape, "gpu A", small) as AttentionTile),
      fittingAttentionTiles("fwd", 64, small)[0],
    );
    useAttentionKernel("rows");
    assert.equal(selectAttentionKernel(shape, "gpu A", big), "rows");
    const hw = { ...big, software: false, description: "gpu H" };
    assert.equal(selectAttentionKernel(shape, "gpu H", hw), "rows"); // forced above
    // "mm" where its scores fit MM_MAX_SCORE_BYTES and the grid, else the row kernels
    useAttentionKernel("mm");
    assert.equal(selectAttentionKernel(shape, "gpu A", small), "mm");
    const tooBig = Math.floor(MM_MAX_SCORE_BYTES / (4 * shape.T * shape.S)) + 1;
    assert.equal(selectAttentionKernel({ ...shape, BH: tooBig }, "gpu A", big), "rows");
    assert.equal(selectAttentionKernel({ ...shape, T: 1, S: 1, BH: 65536 }, "gpu A", big), "rows");
    useAttentionKernel("tiled");
    assert.equal(
      attentionTileName(selectAttentionKernel(shape, "gpu B", big) as AttentionTile),
      "a64x32_4x8",
    );
    assert.equal(selectAttentionKernel({ ...shape, D: 6 }, "gpu B", big), "rows");
    assert.throws(
      () => useAttentionKernel("fast"),
      /^TypeError: useAttentionKernel: bad attention kernel "fast"/,
    );
    assert.throws(() => useAttentionKernel("a8x8_3x2"), /do not split/);
    // a saved table: attention keys with known kernels are taken, the rest skipped
    const n = loadAttentionTunedTable("gpu C", {
      [attentionShapeKey(shape)]: "a16x16_2x4",
      "attention|bwd|D64|BH~512|T~128|S~128|c1m1d0": "warp-speed",
      "~512x512x512/1/NN": "t64x64k8_4x4d",
    });
    assert.equal(n, 1);
    assert.deepEqual(attentionTunedTable("gpu C"), { [attentionShapeKey(shape)]: "a16x16_2x4" });
  } finally {
    useAttentionKernel(null);
    clearAttentionTuning();
  }
});

Deno.test("WEBSEQ_ATTENTION_KERNEL forces the attention kernels; a bad name is a one-line TypeError", async () => {
  const run = async (value: string) => {
    const code = `import { forcedAttentionKernel } from "${
      new URL("./attention.ts", import.meta.url).href
    }"; console.log(JSON.stringify(forcedAttentionKernel()));`;
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["eval", "--cached-only", code],
      env: { WEBSEQ_ATTENTION_KERNEL: value },
      stdout: "piped",
      stderr: "piped",
    }).output();
    return {
      code: out.code,
      text: new TextDecoder().decode(out.stdout).trim(),
      err: new TextDecoder().decode(out.stderr),
    };
  };
  assert.equal((await run("a16x16_2x4")).text, '"a16x16_2x4"');
  assert.equal((await run("auto")).text, "null");
  const bad = await run("fastest");
  assert.notEqual(bad.code, 0);
  assert.match(bad.err, /WEBSEQ_ATTENTION_KERNEL: bad attention kernel "fastest"/);
});

/**
 * Out and the q, k, v gradients of a causal, padded BTHD attention on
 * `backend` (batch row 1 padded, row 2 all padding); the probabilities' fate.
 */
async function probsRun(backend: Backend, opts: { dropout?: { p: number; seed: number } } = {}) {
  const [B, T, H, D] = [3, 12, 3, 8], rng = makeRng(31);
  const mk = (shape: number[]) =>
    tensor(randoms(shape.reduce((a, b) => a * b, 1), rng), shape, { backend, requiresGrad: true });
  const q = mk([B, T, H, D]), k = mk([B, T, H, D]), v = mk([B, T, H, D]);
  const w = tensor(randoms(B * T * H * D, rng), [B, T, H, D], { backend });
  const keyMask = tensor(
    Array.from({ length: B * T }, (_, i) => +(i % T < [T, 5, 0][Math.floor(i / T)])),
    [
      B,
      T,
    ],
    { backend },
  );
  const gpu = backend.kind === "webgpu" ? GPU! : null;
  gpu?.dispatchStats(true);
  const out = attention(q, k, v, { keyMask, causal: true, layout: "BTHD", ...opts });
  const forward = gpu?.dispatchStats(true).perOp.attention ?? 0;
  const outs = out.node?.outputs ?? [];
  sum(mul(out, w)).backward();
  const dispatches = gpu?.dispatchStats(true).perOp.attention_backward ?? 0;
  const data = await Promise.all([out, q.grad!, k.grad!, v.grad!].map((t) => t.data()));
  return { data, outputs: outs.length, probsFreed: outs[2]?.disposed ?? null, dispatches, forward };
}

Deno.test({
  name:
    'useAttentionProbs("kept"): on WebGPU with the "mm" backward the probabilities are a third output, freed by the backward, which skips Q·Kᵀ and takes dS from the epilogue of dO·Vᵀ; the same numbers',
  ignore: NO_GPU,
  fn: async () => {
    try {
      useAttentionKernel("mm");
      useAttentionProbs("recomputed");
      const recomputed = await probsRun(GPU!);
      useAttentionProbs("kept");
      assert.equal(attentionProbs(), "kept");
      const kept = await probsRun(GPU!);
      assert.equal(recomputed.outputs, 2);
      assert.equal(kept.outputs, 3);
      assert.equal(kept.probsFreed, true);
      // recomputed: P (Q·Kᵀ with the probabilities' epilogue), dS (dO·Vᵀ with Δ and dS in its
      // epilogue: the rows fit its tile), dV, dQ, dK; kept: no Q·Kᵀ; with dropout the Δ kernel
      // and the elementwise kernel between the two products (7)
      assert.equal(recomputed.dispatches, 5);
      assert.equal(kept.dispatches, 4);
      kept.data.forEach((got, j) =>
        closeTo(got, recomputed.data[j], 1e-6, ["out", "dq", "dk", "dv"][j])
      );
      // and both as the CPU computes them (both take dS from the same epilogue)
      const cpu = await probsRun(CPU);
      kept.data.forEach((got, j) => closeTo(got, cpu.data[j], 1e-5, `cpu ${j}`));
      // not kept: with attention dropout, on the CPU, without gradients, where the backward
      // runs other kernels, or in the recomputed mode; kept by default
      const dropped = await probsRun(GPU!, { dropout: { p: 0.2, seed: 3 } });
      assert.equal(dropped.outputs, 2);
      assert.equal(dropped.dispatches, 7);
      assert.equal(cpu.outputs, 2);
      const x = tensor(randoms(2 * 4 * 8, makeRng(1)), [1, 2, 4, 8], { backend: GPU! });
      assert.equal(attention(x, x, x).node, null);
      useAttentionKernel("rows");
      assert.equal((await probsRun(GPU!)).outputs, 2);
      useAttentionKernel("mm");
      useAttentionProbs("recomputed");
      assert.equal((await probsRun(GPU!)).outputs, 2);
      useAttentionProbs("auto");
      assert.equal(attentionProbs(), "kept");
      assert.equal((await probsRun(GPU!)).outputs, 3);
      useActivations("recomputed");
      assert.equal(attentionProbs(), "recomputed");
    } finally {
      useAttentionKernel(null);
      useActivations(null);
    }
  },
});

Deno.test({
  name:
    'useAttentionEpilogues(false): the "mm" softmax and backward run kernels of their own (3 and 7 dispatches, not 2 and 5), the same results',
  ignore: NO_GPU,
  fn: async () => {
    try {
      useAttentionKernel("mm");
      useAttentionProbs("recomputed");
      const on = await probsRun(GPU!);
      useAttentionEpilogues(false);
      assert.equal(attentionEpilogues(), false);
      const off = await probsRun(GPU!);
      assert.deepEqual([on.forward, on.dispatches], [2, 5]);
      assert.deepEqual([off.forward, off.dispatches], [3, 7]);
      off.data.forEach((got, j) => closeTo(got, on.data[j], 1e-5, ["out", "dq", "dk", "dv"][j]));
    } finally {
      useAttentionKernel(null);
      useAttentionProbs(null);
      useAttentionEpilogues(null);
    }
  },
});

Deno.test("useAttentionProbs() and WEBSEQ_ATTENTION_PROBS pick the mode; a bad name is a one-line TypeError; keepProbs needs dropout 0", async () => {
  assert.throws(
    () => useAttentionProbs("both" as "kept"),
    /^TypeError: useAttentionProbs: expected recomputed, kept or auto, got "both"$/,
  );
  // what `fn()` of attention.ts prints with the environment variable `name` set to `value`
  const envRun = (fn: string, name: string) => (value: string) =>
    evalStdout(
      `import { ${fn} } from "${new URL("./attention.ts", import.meta.url)}";
    try { console.log(${fn}()); } catch (e) { console.log(String(e)); }`,
      { [name]: value },
    );
  const run = envRun("attentionProbs", "WEBSEQ_ATTENTION_PROBS");
  assert.equal(await run("recomputed"), "recomputed");
  assert.equal(await run("auto"), "kept");
  assert.match(
    await run("cached"),
    /^TypeError: WEBSEQ_ATTENTION_PROBS: expected recomputed, kept or auto, got "cached"$/,
  );
  const runEpi = envRun("attentionEpilogues", "WEBSEQ_ATTENTION_EPILOGUES");
  assert.equal(await runEpi("off"), "false");
  assert.equal(await runEpi("auto"), "true");
  assert.match(
    await runEpi("some"),
    /^TypeError: WEBSEQ_ATTENTION_EPILOGUES: expected on, off or auto, got "some"$/,
  );
  const x = tensor(new Array(16).fill(0.5), [1, 1, 2, 8]);
  const p = { hasMask: false, causal: false, scale: 1, dropoutP: 0.1, seed: 0, keepProbs: true };
  assert.throws(() => apply(ATTENTION, [x, x, x], p), /keepProbs needs dropout p 0, got 0.1/);
});

Deno.test({
  name:
    'the "mm" backward gives padding keys no gradient even from a non-finite dO (P = 0 there), as the CPU reference does',
  ignore: NO_GPU,
  fn: async () => {
    try {
      useAttentionKernel("mm");
      for (const S of [6, 8]) { // scalar and vec4 epilogues
        for (const mode of ["recomputed", "kept"] as const) {
          useAttentionProbs(mode);
          for (const backend of [GPU!, CPU]) {
            const rng = makeRng(5);
            const mk = (L: number) =>
              tensor(randoms(L * 4, rng), [1, 1, L, 4], { backend, requiresGrad: true });
            const q = mk(3), k = mk(S), v = mk(S);
            const keyMask = tensor(Array.from({ length: S }, (_, s) => +(s < 5)), [1, S], {
              backend,
            });
            const out = attention(q, k, v, { keyMask });
            const dO = new Array(12).fill(0.5);
            dO[0] = Infinity;
            out.backward(tensor(dO, [1, 1, 3, 4], { backend }));
            const dk = await k.grad!.data();
            const what = `S ${S} ${mode} ${backend.kind}`;
            assert.ok(Array.from(dk.slice(20)).every((x) => x === 0), `${what}: ${dk.slice(20)}`);
          }
        }
      }
    } finally {
      useAttentionKernel(null);
      useAttentionProbs(null);
    }
  },
});
