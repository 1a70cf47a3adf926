/**
 * The WebAssembly GELU, SiLU, cross-entropy, AdamW and dropout kernels give the same bits as the
 * TypeScript loops of their ops (run with the kernels off), on 1, 2 and 3
 * threads, with sizes that are cut into tasks and edge values (±∞, NaN, huge
 * logits, ignored and out-of-range targets, label smoothing).
 *
 * @module
 */
import assert from "node:assert/strict";
import { GELU, GELU_GRAD, SILU, SILU_GRAD } from "./elementwise.ts";
import { CROSS_ENTROPY, CROSS_ENTROPY_GRAD, CROSS_ENTROPY_STATS } from "./cross_entropy.ts";
import { ADAMW_FLAT } from "./optim_ops.ts";
import { DROPOUT, dropoutKeeps, dropoutThreshold } from "./dropout.ts";
import { RESIDUAL, RESIDUAL_BACKWARD } from "./residual.ts";
import { LAYER_NORM, LAYER_NORM_GRAD } from "./layer_norm.ts";
import { ATTENTION, ATTENTION_BACKWARD } from "./attention.ts";
import { softmaxRows } from "./_attention_rows.ts";
import { useWasmMatmul } from "./_wasm_matmul.ts";
import { cpuThreads, useCpuThreads } from "./_cpu_threads.ts";
import { dropoutF32, keepMaskU8 } from "./_cpu_threads_kernels.ts";
import { hashU32, makeRng } from "../tensor/rng.ts";
import type { CpuArray, OpDef, OpInfo, Shape } from "../tensor/types.ts";

/** Runs `op.cpu` with the kernels off and on (1, 2, 3 threads); all outputs must be the same bits. */
function sameBits<P>(op: OpDef<P>, ins: CpuArray[], info: OpInfo, p: P): void {
  const run = () => {
    const outs = info.outputs.map((o) =>
      new Float32Array(o.shape.reduce((x, y) => x * y, 1)).fill(NaN)
    );
    op.cpu(ins, outs, info, p);
    return outs;
  };
  const threads0 = cpuThreads();
  try {
    useWasmMatmul("off");
    const want = run();
    useWasmMatmul("auto");
    for (const n of [1, 2, 3]) {
      useCpuThreads(n);
      const got = run();
      got.forEach((g, k) => {
        const at = g.findIndex((v, i) => !Object.is(v, want[k][i]));
        assert.ok(
          at < 0,
          `${op.name} output ${k} on ${n} threads: ${g[at]} at ${at}, TypeScript gives ${
            want[k][at]
          }`,
        );
      });
    }
  } finally {
    useCpuThreads(threads0);
    useWasmMatmul("auto");
  }
}

function f32(n: number, seed: number, scale: number): Float32Array {
  const rng = makeRng(seed);
  return new Float32Array(n).map(() => (rng() * 2 - 1) * scale);
}

const info = (inputs: [Shape, "f32" | "i32"][], outputs: Shape[]): OpInfo => ({
  inputs: inputs.map(([shape, dtype]) => ({ shape, dtype })),
  outputs: outputs.map((shape) => ({ shape, dtype: "f32" as const })),
});

Deno.test("gelu and its gradient in WebAssembly equal the TypeScript loops bit for bit", () => {
  for (const n of [1, 7, 1000, 70001]) {
    const x = f32(n, n, 6), dy = f32(n, n + 1, 2);
    // the erf branches (|x| < 0.5, < 4, ≥ 4) and the edges
    x.set([0, -0, 0.5, -0.5, 4, -4, 1e-30, 30, -30, Infinity, -Infinity, NaN].slice(0, n));
    sameBits(GELU, [x], info([[[n], "f32"]], [[n]]), { a: 0 });
    sameBits(GELU_GRAD, [x, dy], info([[[n], "f32"], [[n], "f32"]], [[n]]), { a: 0 });
  }
});

Deno.test("silu and its gradient in WebAssembly equal the TypeScript loops bit for bit", () => {
  for (const n of [1, 7, 128, 129, 70001]) {
    const x = f32(n, n + 5, 12), dy = f32(n, n + 6, 2);
    // exp(−x) overflowing and underflowing, signed zeros, the edges
    x.set([0, -0, 1e-30, 30, -30, 750, -750, Infinity, -Infinity, NaN].slice(0, n));
    sameBits(SILU, [x], info([[[n], "f32"]], [[n]]), { a: 0 });
    sameBits(SILU_GRAD, [x, dy], info([[[n], "f32"], [[n], "f32"]], [[n]]), { a: 0 });
  }
});

Deno.test("cross-entropy forward, statistics and gradient in WebAssembly equal the TypeScript loops bit for bit", () => {
  for (const [N, V] of [[1, 1], [3, 5], [37, 129], [64, 2000]]) {
    const x = f32(N * V, N + V, 8);
    x[0] = 80; // exp(x − m) far below 1 for the rest of row 0
    if (N * V > 10) x[V + 1] = -1e30;
    const rng = makeRng(N);
    const t = Int32Array.from({ length: N }, () => Math.floor(rng() * V));
    if (N > 2) [t[1], t[2]] = [0, V - 1];
    if (N > 4) x[4 * V + t[4]] = x[4 * V]; // a tie with an earlier class
    const ignoreIndex = N > 3 ? t[3] : -100; // row 3 (and any with its class) is ignored
    const p = { ignoreIndex, labelSmoothing: 0.1 };
    const ins = info([[[N, V], "f32"], [[N], "i32"]], []);
    sameBits(CROSS_ENTROPY, [x, t], { ...ins, outputs: info([], [[], [N], []]).outputs }, p);
    sameBits(CROSS_ENTROPY_STATS, [x, t], { ...ins, outputs: info([], [[4]]).outputs }, {
      ignoreIndex,
      k: 5,
    });
    for (const labelSmoothing of [0, 0.1]) {
      const lse = f32(N, V, 3).map((v) => v + 6), count = new Float32Array([N]);
      const dy = new Float32Array([0.75]);
      sameBits(
        CROSS_ENTROPY_GRAD,
        [x, t, lse, count, dy],
        info(
          [[[N, V], "f32"], [[N], "i32"], [[N], "f32"], [[], "f32"], [[], "f32"]],
          [[N, V]],
        ),
        { ...p, labelSmoothing },
      );
    }
  }
});

Deno.test("crossEntropyStats with a target out of range still throws the TypeScript error", () => {
  const x = f32(12, 1, 1), t = new Int32Array([1, 7, 0]);
  const i = info([[[3, 4], "f32"], [[3], "i32"]], [[4]]);
  assert.throws(
    () => CROSS_ENTROPY_STATS.cpu([x, t], [new Float32Array(4)], i, { ignoreIndex: -100, k: 1 }),
    /target 7 at row 1 is outside \[0, 4\)/,
  );
});

Deno.test("the AdamW update in WebAssembly equals the TypeScript loop bit for bit", () => {
  // one element, an odd count, and several chunks with decayEnd inside one; gradient scale ≠ 1
  for (const [n, decayEnd] of [[1, 1], [7, 3], [1000, 0], [600_001, 300_003]]) {
    const g = f32(n, n, 3), m0 = f32(n, n + 1, 0.1);
    const v0 = f32(n, n + 2, 0.01).map(Math.abs), p0 = f32(n, n + 3, 1);
    g.set([0, -0, 1e-30, 3e38, -7, NaN, Infinity].slice(0, n));
    v0.set([0, 0, 1e-45].slice(0, n));
    const prm = {
      lr: 3e-3,
      beta1: 0.9,
      beta2: 0.98,
      eps: 1e-9,
      weightDecay: 0.01,
      step: 7,
      decayEnd,
    };
    const run = () => {
      const [p, m, v] = [p0.slice(), m0.slice(), v0.slice()];
      const s = new Float32Array([0.37]);
      const shape = { shape: [n], dtype: "f32" as const };
      ADAMW_FLAT.cpu([p, g, m, v, s], [], {
        inputs: [shape, shape, shape, shape, { shape: [1], dtype: "f32" }],
        outputs: [],
      }, prm);
      return [p, m, v];
    };
    const threads0 = cpuThreads();
    try {
      useWasmMatmul("off");
      const want = run();
      useWasmMatmul("auto");
      for (const t of [1, 2, 3]) {
        useCpuThreads(t);
        const got = run();
        got.forEach((a, k) => {
          const at = a.findIndex((x, i) => !Object.is(x, want[k][i]));
          assert.ok(
            at < 0,
            `n ${n}, ${t} threads, array ${k}: ${a[at]} at ${at}, want ${want[k][at]}`,
          );
        });
      }
    } finally {
      useWasmMatmul("auto");
      useCpuThreads(threads0);
    }
  }
});

Deno.test("dropout in WebAssembly equals the TypeScript loop bit for bit", () => {
  for (const n of [1, 7, 1000, 70001]) {
    const x = f32(n, n, 5);
    x.set([Infinity, -Infinity, NaN, -0, 3e38, -1e-40].slice(0, n));
    for (const [p, seed] of [[0.1, 7], [0.5, 0xfffffff0], [0, 3], [1, 1], [0.999, -5]]) {
      sameBits(DROPOUT, [x], info([[[n], "f32"]], [[n]]), { p, seed });
    }
  }
});

Deno.test("residual with dropout, gamma and DropPath (forward and backward) through the WebAssembly dropout equals the TypeScript loops bit for bit", () => {
  for (const [B, T, C] of [[1, 1, 1], [2, 3, 5], [4, 33, 129]]) {
    const n = B * T * C, x = f32(n, n, 4), branch = f32(n, n + 1, 4), dy = f32(n, n + 2, 1);
    branch.set([Infinity, NaN, -0, 3e38].slice(0, n));
    x.set([-0, 1, -3e38].slice(0, n));
    for (const [dropoutP, dropoutSeed] of [[0.1, 11], [0.6, 0xfffffff3], [1, 2]]) {
      const p = { hasGamma: false, dropoutP, dropoutSeed, dropPathP: 0, dropPathSeed: 0 };
      sameBits(
        RESIDUAL,
        [x, branch],
        info([[[B, T, C], "f32"], [[B, T, C], "f32"]], [[B, T, C]]),
        p,
      );
      sameBits(RESIDUAL_BACKWARD, [dy], info([[[B, T, C], "f32"]], [[B, T, C]]), p);
      // with gamma and DropPath: the loops take the WebAssembly mask
      const gamma = f32(C, C + 3, 2), q = { ...p, hasGamma: true, dropPathP: 0.3, dropPathSeed: 5 };
      const three = info([[[B, T, C], "f32"], [[B, T, C], "f32"], [[C], "f32"]], [[B, T, C]]);
      sameBits(RESIDUAL, [x, branch, gamma], three, q);
      const back = info([[[B, T, C], "f32"], [[B, T, C], "f32"], [[C], "f32"]], [[B, T, C], [C]]);
      sameBits(RESIDUAL_BACKWARD, [dy, branch, gamma], back, q);
    }
  }
});

Deno.test("the residual kernels (any of dropout, gamma, DropPath) equal the TypeScript loops bit for bit", () => {
  // every combination the WebAssembly residual kernels take, small and threaded sizes
  for (const [B, T, C] of [[1, 1, 1], [3, 2, 7], [8, 40, 130]]) {
    const n = B * T * C, x = f32(n, n, 4), branch = f32(n, n + 1, 4), dy = f32(n, n + 2, 1);
    branch.set([Infinity, NaN, -0, 3e38].slice(0, n));
    x.set([-0, 1, -3e38].slice(0, n));
    const gamma = f32(C, C + 3, 2);
    for (const dropoutP of [0, 0.25, 1]) {
      for (
        const [hasGamma, dropPathP] of [[false, 0], [true, 0], [false, 0.4], [true, 0.4]] as const
      ) {
        const p = { hasGamma, dropoutP, dropoutSeed: 9 + n, dropPathP, dropPathSeed: 3 };
        const ins = hasGamma ? [x, branch, gamma] : [x, branch];
        const shapes: [Shape, "f32"][] = [[[B, T, C], "f32"], [[B, T, C], "f32"]];
        if (hasGamma) shapes.push([[C], "f32"]);
        sameBits(RESIDUAL, ins, info(shapes, [[B, T, C]]), p);
        const back = hasGamma ? [dy, branch, gamma] : [dy];
        const bShapes: [Shape, "f32"][] = hasGamma
          ? [[[B, T, C], "f32"], [[B, T, C], "f32"], [[C], "f32"]]
          : [[[B, T, C], "f32"]];
        sameBits(
          RESIDUAL_BACKWARD,
          back,
          info(bShapes, hasGamma ? [[B, T, C], [C]] : [[B, T, C]]),
          p,
        );
      }
    }
  }
});

Deno.test("the WebAssembly keep mask equals the hash loop, on 1, 2 and 3 threads", () => {
  const threads0 = cpuThreads();
  try {
    for (const n of [1, 15, 16, 17, 70001]) {
      for (const [p, seed] of [[0.1, 3], [0.9, 0xfffffffe], [1, 4], [1e-7, 9]]) {
        const thr = dropoutThreshold(p);
        const want = Uint8Array.from(
          { length: n },
          (_, i) => hashU32(seed, i) >>> 8 >= thr ? 1 : 0,
        );
        for (const t of [1, 2, 3]) {
          useCpuThreads(t);
          const got = keepMaskU8(n, seed, thr);
          assert.ok(got !== null);
          const at = got.findIndex((k, i) => k !== want[i]);
          assert.ok(at < 0, `n=${n} p=${p} on ${t} threads: ${got[at]} at ${at}`);
        }
      }
    }
  } finally {
    useCpuThreads(threads0);
  }
});

Deno.test("the WebAssembly dropout of ones with scale 1 is the keep mask (residual and attention read it)", () => {
  const n = 70001, ones = new Float32Array(n).fill(1), keep = new Float32Array(n);
  for (const [p, seed] of [[0.1, 3], [0.9, 0xfffffffe], [1, 4], [1e-7, 9]]) {
    const thr = Math.ceil(p * 16777216);
    assert.ok(dropoutF32(ones, keep, seed, thr, 1));
    const at = keep.findIndex((k, i) =>
      (k === 1) !== dropoutKeeps(p, seed, i) || (k !== 0 && k !== 1)
    );
    assert.ok(at < 0, `p ${p} seed ${seed}: mask ${keep[at]} at ${at}`);
  }
});

Deno.test("attention forward and backward in WebAssembly equal the TypeScript reference bit for bit", () => {
  // [B, T, S, H, D], layout, causal, mask ("f32", "i32" or none), dLse
  const cases: [number[], "BTHD" | "BHTD", boolean, "f32" | "i32" | null, boolean][] = [
    [[2, 5, 5, 2, 4], "BTHD", true, "f32", false],
    [[3, 4, 7, 2, 3], "BHTD", true, "f32", true], // T < S: causal rows see S − T more keys
    [[2, 1, 9, 3, 5], "BTHD", false, "i32", true], // one query (a decode step), odd D
    [[4, 6, 6, 4, 16], "BTHD", false, null, false],
    [[2, 12, 12, 4, 16], "BTHD", true, "f32", true], // tiny's head size
    [[2, 8, 3, 1, 7], "BHTD", true, null, false], // T > S: the first rows see no key at all
    [[2, 32, 32, 2, 64], "BTHD", true, "f32", false], // small's head size
  ];
  for (const [[B, T, S, H, D], layout, causal, maskType, hasDLse] of cases) {
    const seed = B * 1000 + T * 100 + S * 10 + D;
    const q = f32(B * T * H * D, seed, 1), k = f32(B * S * H * D, seed + 1, 1);
    const v = f32(B * S * H * D, seed + 2, 1), dO = f32(B * T * H * D, seed + 3, 1);
    const dl = f32(B * T * H, seed + 4, 1);
    // batch row 0 pads every key (uniform weights), the others a few
    const maskVals = Array.from({ length: B * S }, (_, i) => (i < S ? 0 : +(i % S < S - (i % 3))));
    const mask = maskType === "i32" ? Int32Array.from(maskVals) : Float32Array.from(maskVals);
    const qs = layout === "BTHD" ? [B, T, H, D] : [B, H, T, D];
    const ks = layout === "BTHD" ? [B, S, H, D] : [B, H, S, D];
    const ls = layout === "BTHD" ? [B, T, H] : [B, H, T];
    const p = {
      layout,
      hasMask: maskType !== null,
      causal,
      scale: 1 / Math.sqrt(D),
      dropoutP: 0,
      seed: 0,
    };
    const fwdIns: CpuArray[] = [q, k, v],
      fwdInfo: [Shape, "f32" | "i32"][] = [
        [qs, "f32"],
        [ks, "f32"],
        [ks, "f32"],
      ];
    if (maskType) fwdIns.push(mask), fwdInfo.push([[B, S], maskType]);
    sameBits(ATTENTION, fwdIns, info(fwdInfo, [qs, ls]), p);
    // the backward from the reference's forward
    const out = new Float32Array(B * T * H * D), lse = new Float32Array(B * T * H);
    useWasmMatmul("off");
    ATTENTION.cpu(fwdIns, [out, lse], info(fwdInfo, [qs, ls]), p);
    useWasmMatmul("auto");
    const bIns: CpuArray[] = [q, k, v, out, lse, dO];
    const bInfo: [Shape, "f32" | "i32"][] = [...fwdInfo.slice(0, 3), [qs, "f32"], [ls, "f32"], [
      qs,
      "f32",
    ]];
    if (maskType) bIns.push(mask), bInfo.push([[B, S], maskType]);
    if (hasDLse) bIns.push(dl), bInfo.push([ls, "f32"]);
    sameBits(ATTENTION_BACKWARD, bIns, info(bInfo, [qs, ks, ks]), { ...p, hasDLse });
  }
});

Deno.test("the attention softmax rows in WebAssembly equal the TypeScript loop bit for bit", () => {
  const threads0 = cpuThreads();
  // [B, H, T, S], causal, key lengths per batch row (none: no mask), BTHD row map
  const cases: [number, number, number, number, boolean, number[] | null, boolean][] = [
    [1, 1, 1, 1, false, null, false],
    [2, 2, 5, 7, true, [7, 3], true],
    [1, 3, 9, 4, true, null, false], // T > S: early rows have no allowed key
    [2, 1, 6, 6, false, [6, 0], false], // a fully padded batch row
    [1, 2, 33, 300, true, [250], true], // S over one block of 128, odd tail
    [2, 4, 40, 129, false, [129, 77], false],
  ];
  try {
    for (const [B, H, T, S, causal, lens, bthd] of cases) {
      const n = B * H * T * S, rowsN = B * H * T;
      const z0 = f32(n, n + S, 4);
      z0.set([Infinity, -Infinity, NaN, 1e30, -1e30].slice(0, n));
      const mask = lens
        ? Float32Array.from({ length: B * S }, (_, i) => i % S < lens[Math.floor(i / S)] ? 1 : 0)
        : null;
      const rows = bthd ? Int32Array.from({ length: rowsN }, (_, r) => rowsN - 1 - r) : null;
      const g = { B, H, T, S }, p = { causal, scale: 0.125 };
      const run = (lseIn: Float32Array | null) => {
        const z = z0.slice(), prob = new Float32Array(n).fill(NaN);
        const lse = new Float32Array(rowsN).fill(NaN), any = new Uint8Array(rowsN).fill(7);
        softmaxRows(z, mask, lseIn, lseIn ? null : lse, g, p, prob, any, rows);
        return [z, prob, lse, Float32Array.from(any)];
      };
      useWasmMatmul("off");
      const want = run(null);
      const wantB = run(want[2]); // the backward's recomputation from the lse
      useWasmMatmul("auto");
      for (const t of [1, 2, 3]) {
        useCpuThreads(t);
        for (
          const [got, exp, what] of [[run(null), want, "forward"], [
            run(want[2]),
            wantB,
            "lse in",
          ]] as const
        ) {
          got.forEach((arr, k) => {
            const at = arr.findIndex((v, i) => !Object.is(v, exp[k][i]));
            assert.ok(
              at < 0,
              `[${B},${H},${T},${S}] ${what} output ${k} on ${t} threads at ${at}: ${arr[at]} vs ${
                exp[k][at]
              }`,
            );
          });
        }
      }
    }
  } finally {
    useCpuThreads(threads0);
    useWasmMatmul("auto");
  }
});

Deno.test("LayerNorm forward and backward in WebAssembly equal the TypeScript loops", () => {
  // rows split among the threads (and dw/db by columns) from 32k elements; odd and even C,
  // C = 1, offset and scaled rows, with and without the pending gradient acc
  for (
    const [R, C, scale, shift] of [
      [3, 1, 1, 0],
      [5, 7, 1, 0],
      [64, 64, 1, 0],
      [129, 257, 3, 1e3],
      [600, 96, 1e-3, -2],
      [70, 513, 10, 0],
    ] as const
  ) {
    const x = f32(R * C, R + C, scale).map((v) => v + shift);
    const w = f32(C, 3 * C, 1), b = f32(C, 5 * C, 1);
    const rows: Shape = [R], row: Shape = [R, C], col: Shape = [C];
    const t = (shape: Shape) => ({ shape, dtype: "f32" as const });
    const fwdInfo = { inputs: [t(row), t(col), t(col)], outputs: [t(row), t(rows), t(rows)] };
    sameBits(LAYER_NORM, [x, w, b], fwdInfo, { eps: 1e-5 });
    const y = new Float32Array(R * C), mean = new Float32Array(R), rstd = new Float32Array(R);
    LAYER_NORM.cpu([x, w, b], [y, mean, rstd], fwdInfo, { eps: 1e-5 });
    const dy = f32(R * C, 7 * R, 1), acc = f32(R * C, 11 * C, 1);
    for (const withAcc of [false, true]) {
      const ins = [x, w, mean, rstd, dy, ...(withAcc ? [acc] : [])];
      sameBits(LAYER_NORM_GRAD, ins, {
        inputs: [t(row), t(col), t(rows), t(rows), t(row), ...(withAcc ? [t(row)] : [])],
        outputs: [t(row), t(col), t(col)],
      }, { eps: 1e-5 });
    }
  }
});
