/**
 * The WebAssembly matmul kernel against the TypeScript reference in
 * `MATMUL.cpu` (float64 inputs take the reference path): random shapes with
 * size-1 dims and sizes that are not multiples of the 6×8 tile or the blocks,
 * all four transpose combinations, batches, shared (broadcast) operands and
 * large magnitudes, for both embedded builds; and on 2 and 3 threads against
 * itself on one, which must agree bit for bit.
 *
 * @module
 */
import assert from "node:assert/strict";
import { addRows, MATMUL, matmulCpu, type MatmulParams, sumRows } from "./matmul.ts";
import {
  ResidentHeap,
  useWasmMatmul,
  wasmMatmulF32,
  wasmMatmulKernel,
  wasmMatmulWorkers,
} from "./_wasm_matmul.ts";
import { cpuThreads, useCpuThreads } from "./_cpu_threads.ts";
import { makeRng } from "../tensor/rng.ts";
import { CPU } from "../tensor/cpu_backend.ts";
import type { OpInfo, Shape } from "../tensor/types.ts";

interface Case {
  a: Shape;
  b: Shape;
  p: MatmulParams;
  /** Half-width of the uniform inputs. */
  scale?: number;
}

function outShape(c: Case): Shape {
  const info = [{ shape: c.a, dtype: "f32" as const }, { shape: c.b, dtype: "f32" as const }];
  return MATMUL.outputs(info, c.p)[0].shape;
}

function size(s: Shape): number {
  return s.reduce((x, y) => x * y, 1);
}

/** Runs MATMUL.cpu on `c` in float64 (the reference) and float32 (the kernel). */
function both(c: Case, seed: number): { ref: Float64Array; got: Float32Array; K: number } {
  const rng = makeRng(seed);
  const scale = c.scale ?? 1;
  const a = new Float32Array(size(c.a)).map(() => (rng() * 2 - 1) * scale);
  const b = new Float32Array(size(c.b)).map(() => (rng() * 2 - 1) * scale);
  const os = outShape(c);
  const info = (dtype: "f32" | "f64"): OpInfo => ({
    inputs: [{ shape: c.a, dtype }, { shape: c.b, dtype }],
    outputs: [{ shape: os, dtype }],
  });
  const ref = new Float64Array(size(os)), got = new Float32Array(size(os));
  MATMUL.cpu([Float64Array.from(a), Float64Array.from(b)], [ref], info("f64"), c.p);
  MATMUL.cpu([a, b], [got], info("f32"), c.p);
  const K = c.p.transA ? c.a[c.a.length - 2] : c.a[c.a.length - 1];
  return { ref, got, K };
}

function assertClose(c: Case, seed: number): void {
  const { ref, got, K } = both(c, seed);
  let maxRef = 0, worst = 0, at = -1;
  for (let i = 0; i < ref.length; i++) maxRef = Math.max(maxRef, Math.abs(ref[i]));
  for (let i = 0; i < ref.length; i++) {
    const d = Math.abs(got[i] - ref[i]);
    if (!(d <= worst)) [worst, at] = [d, i];
  }
  const tol = 1e-5 * Math.sqrt(Math.max(K, 1)) * Math.max(maxRef, 1e-30);
  assert.ok(
    ref.length === 0 || worst <= tol,
    `[${c.a}]·[${c.b}] ${
      JSON.stringify(c.p)
    } (${wasmMatmulKernel()}): max diff ${worst} at ${at} ` +
      `(got ${got[at]}, want ${ref[at]}), tol ${tol}`,
  );
}

const TRANS: MatmulParams[] = [
  { transA: false, transB: false },
  { transA: true, transB: false },
  { transA: false, transB: true },
  { transA: true, transB: true },
];

/** Stored shapes of op(a) = [..., M, K] and op(b) = [..., K, N]. */
function shapes(ab: number[], bb: number[], M: number, N: number, K: number, p: MatmulParams) {
  return {
    a: [...ab, ...(p.transA ? [K, M] : [M, K])],
    b: [...bb, ...(p.transB ? [N, K] : [K, N])],
  };
}

/** Cases for one transpose combination: edges, size-1 dims, blocks, batches, broadcasts. */
function cases(p: MatmulParams, seed: number): Case[] {
  const out: Case[] = [];
  const dims: [number, number, number][] = [
    [1, 1, 1],
    [1, 8, 4],
    [4, 1, 7],
    [3, 5, 1],
    [4, 8, 16],
    [5, 9, 3],
    [7, 13, 17],
    [33, 31, 29],
    [64, 64, 64],
    [65, 257, 9], // past NC = 256 columns
    [80, 20, 301], // past KC = 256 (accumulates into C; odd slice) and MC = 72
  ];
  for (const [M, N, K] of dims) out.push({ ...shapes([], [], M, N, K, p), p });
  const rng = makeRng(seed);
  const pick = (n: number): number => 1 + Math.floor(rng() * n);
  for (let i = 0; i < 6; i++) {
    const [M, N, K] = [pick(20), pick(20), pick(40)];
    out.push({ ...shapes([], [], M, N, K, p), p });
  }
  out.push({ ...shapes([3], [3], 5, 6, 7, p), p }); // both batched
  out.push({ ...shapes([2, 3], [2, 3], 4, 9, 5, p), p }); // two batch axes
  out.push({ ...shapes([3], [], 6, 10, 11, p), p }); // b shared by the batch
  out.push({ ...shapes([], [4], 9, 3, 6, p), p }); // a shared by the batch
  out.push({ ...shapes([2], [], 1, 1, 1, p), p });
  out.push({ ...shapes([], [], 12, 10, 40, p), p, scale: 1e4 }); // large magnitudes
  return out;
}

/**
 * Products of at least 2^19 multiply-adds, which are cut into tasks: blocks of rows
 * (M ≥ N) or columns, groups of batches, one batch cut up, shared operands, K past KC.
 */
function threadedCases(p: MatmulParams): Case[] {
  return [
    { ...shapes([], [], 301, 67, 129, p), p },
    { ...shapes([], [], 37, 530, 61, p), p },
    { ...shapes([], [], 130, 70, 600, p), p },
    { ...shapes([5], [5], 61, 47, 43, p), p },
    { ...shapes([2], [2], 97, 120, 70, p), p },
    { ...shapes([3], [], 90, 70, 50, p), p },
    { ...shapes([], [4], 60, 90, 40, p), p },
  ];
}

/** MATMUL.cpu's f32 result for `c` on `n` threads. */
function onThreads(c: Case, n: number, seed: number): Float32Array {
  useCpuThreads(n);
  return both(c, seed).got;
}

for (const build of ["fma", "plain"] as const) {
  Deno.test(`wasm matmul (${build}) on 2 and 3 threads equals itself on 1, bit for bit`, async () => {
    const threads0 = cpuThreads();
    assert.ok(useWasmMatmul(build), `the ${build} build does not load here`);
    try {
      // the first threaded product starts the workers in the background; wait for them
      onThreads({ a: [200, 200], b: [200, 200], p: TRANS[0] }, 3, 1);
      for (let i = 0; i < 300 && wasmMatmulWorkers() < 2; i++) {
        await new Promise((r) => setTimeout(r, 10));
      }
      assert.ok(wasmMatmulWorkers() >= 2, "the worker threads did not start");
      TRANS.forEach((p, t) =>
        threadedCases(p).forEach((c, i) => {
          const seed = 5000 + 100 * t + i, one = onThreads(c, 1, seed);
          for (const n of [2, 3]) {
            const got = onThreads(c, n, seed);
            const at = got.findIndex((x, j) => x !== one[j]);
            assert.ok(
              at < 0,
              `[${c.a}]·[${c.b}] ${JSON.stringify(p)} on ${n} threads: ${got[at]} at ${at}, ` +
                `one thread gives ${one[at]}`,
            );
          }
          if (i === 0) assertClose(c, seed);
        })
      );
    } finally {
      useCpuThreads(threads0);
      useWasmMatmul("auto");
    }
  });
}

Deno.test("WEBSEQ_CPU_THREADS=1 runs the matmul on the main thread only; 2 starts a worker", async () => {
  const src = new URL("./_wasm_matmul.ts", import.meta.url).href;
  const code = `
    import { wasmMatmulF32, wasmMatmulWorkers } from ${JSON.stringify(src)};
    import { cpuThreads } from ${
    JSON.stringify(new URL("./_cpu_threads.ts", import.meta.url).href)
  };
    const n = 256, a = new Float32Array(n * n).fill(1), out = new Float32Array(n * n);
    const g = { M: n, N: n, K: n, P: 1, sa: 0, sb: 0, transA: false, transB: false };
    for (let i = 0; i < 200 && wasmMatmulWorkers() === 0; i++) {
      wasmMatmulF32(a, a, out, g);
      await new Promise((r) => setTimeout(r, 5));
    }
    console.log(JSON.stringify({ threads: cpuThreads(), workers: wasmMatmulWorkers(), out: out[n + 1] }));`;
  const run = async (threads: string) => {
    const { code: rc, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
      args: ["eval", "--no-lock", code],
      env: { WEBSEQ_CPU_THREADS: threads },
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(rc, 0, new TextDecoder().decode(stderr));
    return JSON.parse(new TextDecoder().decode(stdout));
  };
  assert.deepEqual(await run("1"), { threads: 1, workers: 0, out: 256 });
  assert.deepEqual(await run("2"), { threads: 2, workers: 1, out: 256 });
});

for (const build of ["fma", "plain"] as const) {
  Deno.test(`wasm matmul (${build}) equals the TypeScript reference for all transposes, batches and edges`, () => {
    assert.ok(useWasmMatmul(build), `the ${build} build does not load here`);
    try {
      TRANS.forEach((p, t) => cases(p, 100 + t).forEach((c, i) => assertClose(c, 1000 * t + i)));
    } finally {
      useWasmMatmul("auto");
    }
  });
}

Deno.test("wasm matmul runs in f32: its result differs from the f64 reference in the last bits", () => {
  useWasmMatmul("auto");
  const { ref, got } = both({ a: [16, 200], b: [200, 16], p: TRANS[0] }, 7);
  assert.ok(
    got.some((g, i) => g !== Math.fround(ref[i])),
    "no rounding difference: is the kernel running?",
  );
});

Deno.test("wasm matmul reuses and grows its memory across sizes", () => {
  useWasmMatmul("auto");
  for (const [M, N, K] of [[8, 8, 8], [300, 200, 100], [3, 3, 3], [300, 200, 100]]) {
    assertClose({ a: [M, K], b: [K, N], p: TRANS[0] }, M + N + K);
  }
});

Deno.test("wasm matmul writes zeros for K = 0 and nothing for empty outputs", () => {
  useWasmMatmul("auto");
  const out = new Float32Array(6).fill(NaN);
  const g = { M: 2, N: 3, K: 0, P: 1, sa: 0, sb: 0, transA: false, transB: false };
  assert.ok(wasmMatmulF32(new Float32Array(0), new Float32Array(0), out, g));
  assert.deepEqual([...out], [0, 0, 0, 0, 0, 0]);
  assert.ok(
    wasmMatmulF32(new Float32Array(0), new Float32Array(0), new Float32Array(0), {
      ...g,
      M: 0,
      K: 4,
    }),
  );
});

Deno.test("useWasmMatmul('off') makes MATMUL.cpu run the TypeScript path for f32", () => {
  useWasmMatmul("off");
  try {
    assert.equal(wasmMatmulKernel(), "off");
    const out = new Float32Array(4);
    assert.equal(
      wasmMatmulF32(new Float32Array(4), new Float32Array(4), out, {
        M: 2,
        N: 2,
        K: 2,
        P: 1,
        sa: 0,
        sb: 0,
        transA: false,
        transB: false,
      }),
      false,
    );
    const { ref, got } = both({ a: [16, 200], b: [200, 16], p: TRANS[0] }, 7);
    assert.deepEqual([...got], [...ref].map(Math.fround));
  } finally {
    useWasmMatmul("auto");
  }
});

Deno.test("a small-M product with a weight seen before unchanged reads it prepacked, with the same bits", () => {
  const threads0 = cpuThreads();
  const rng = makeRng(21);
  const f32 = (n: number) => Float32Array.from({ length: n }, () => rng() * 2 - 1);
  try {
    // [M, K] · op(b) with b [N, K] (transB) or [K, N]; K over one 256-deep slice and odd,
    // N not a multiple of the 8-column tile, N over one column block
    for (
      const [M, K, N, transB] of [
        [1, 256, 256, true],
        [5, 300, 129, true],
        [8, 64, 1000, false],
        [
          16,
          257,
          700,
          true,
        ],
        [3, 128, 2049, false],
        [40, 96, 520, true],
      ] as const
    ) {
      for (const t of [1, 2, 3]) {
        useCpuThreads(t);
        const a = f32(M * K), b = f32(K * N);
        const g = { M, N, K, P: 1, sa: 0, sb: 0, transA: false, transB };
        const run = (w: Float32Array) => {
          const out = new Float32Array(M * N).fill(NaN);
          assert.ok(wasmMatmulF32(a, w, out, g));
          return out;
        };
        const want = run(b.slice()); // a fresh array: packed per call
        // first sight (packed per call), second (packed into the cache), third (read from it)
        for (const k of [1, 2, 3]) {
          const got = run(b);
          const at = got.findIndex((v, i) => !Object.is(v, want[i]));
          assert.ok(
            at < 0,
            `[${M},${K},${N}] transB ${transB}, ${t} threads, call ${k}: ${got[at]} vs ${
              want[at]
            } at ${at}`,
          );
        }
        // changed in place (as an optimizer step counts it): not read from the cache
        b[0] += 1;
        CPU.copy(
          CPU.upload(new Float32Array(1), { shape: [1], dtype: "f32" }),
          CPU.upload(new Float32Array(1), { shape: [1], dtype: "f32" }),
          4,
        );
        const fresh = run(b.slice());
        // first sight after the change, then repacked into its block, then read from it
        for (const k of [1, 2, 3]) assert.deepEqual(run(b), fresh, `after the change, call ${k}`);
      }
    }
  } finally {
    useCpuThreads(threads0);
  }
});

Deno.test("the product's epilogue (bias rows, column sums of a) has the TypeScript bits on 1-3 threads", () => {
  const threads0 = cpuThreads();
  const rng = makeRng(33);
  const f32 = (n: number, s = 1) => Float32Array.from({ length: n }, () => (rng() * 2 - 1) * s);
  try {
    // bias: rows of every width class (under 4, odd, over a block), batches, the prepacked
    // path (M ≤ 64, b of 16384+ elements seen twice); sums: transA products as a Linear's
    // weight gradient, odd and even column counts, large magnitudes
    const cases: { M: number; K: number; N: number; P: number; transA: boolean; s: number }[] = [
      { M: 7, K: 5, N: 3, P: 1, transA: false, s: 1 },
      { M: 300, K: 64, N: 129, P: 1, transA: false, s: 1 },
      { M: 40, K: 8, N: 33, P: 3, transA: false, s: 1 },
      { M: 8, K: 256, N: 520, P: 1, transA: false, s: 1 },
      { M: 65, K: 384, N: 64, P: 1, transA: true, s: 1 },
      { M: 257, K: 513, N: 31, P: 1, transA: true, s: 1e20 },
      { M: 3, K: 2, N: 5, P: 1, transA: true, s: 1 },
    ];
    for (const { M, K, N, P, transA, s } of cases) {
      for (const t of [1, 2, 3]) {
        useCpuThreads(t);
        const a = f32(P * M * K, s), b = f32(K * N), bias = f32(N, s);
        const geo = { M, N, K, P, sa: P > 1 ? M * K : 0, sb: 0, transA, transB: false };
        const sums = transA && P === 1;
        // the reference: the product without epilogue (checked above), then the TS loops
        const want = new Float32Array(P * M * N);
        assert.ok(wasmMatmulF32(a, b, want, geo));
        const wantSums = new Float32Array(M);
        addRows(want, bias);
        if (sums) sumRows(a, K, M, wantSums);
        for (const call of [1, 2, 3]) {
          const out = new Float32Array(P * M * N).fill(NaN);
          const got = sums ? new Float32Array(M).fill(NaN) : undefined;
          assert.ok(wasmMatmulF32(a, b, out, { ...geo, bias, aColumnSums: got }));
          const tag = `[${P}×${M},${K},${N}] transA ${transA}, ${t} threads, call ${call}`;
          const at = out.findIndex((v, i) => !Object.is(v, want[i]));
          assert.ok(at < 0, `${tag}: ${out[at]} vs ${want[at]} at ${at}`);
          if (got) assert.deepEqual(got, wantSums, tag);
        }
      }
    }
  } finally {
    useCpuThreads(threads0);
  }
});

Deno.test("matmulCpu's epilogue falls back to the TypeScript loops for empty products and f64", () => {
  const info = (a: Shape, b: Shape): OpInfo => ({
    inputs: [{ shape: a, dtype: "f32" }, { shape: b, dtype: "f32" }],
    outputs: [],
  });
  // K = 0: out is the bias; the sums of a [0, 2] are zeros
  const out = new Float32Array(4).fill(NaN), db = new Float32Array(2).fill(NaN);
  matmulCpu(new Float32Array(0), new Float32Array(0), out, info([0, 2], [0, 2]), {
    transA: true,
    transB: false,
  }, { aColumnSums: db });
  assert.deepEqual([...out], [0, 0, 0, 0]);
  assert.deepEqual([...db], [0, 0]);
  const out2 = new Float32Array(4);
  matmulCpu(new Float32Array(0), new Float32Array(0), out2, info([2, 0], [0, 2]), {
    transA: false,
    transB: false,
  }, { bias: Float32Array.of(1, -2) });
  assert.deepEqual([...out2], [1, -2, 1, -2]);
  // f64 takes the reference loops
  const o64 = new Float64Array(2), s64 = new Float64Array(2);
  matmulCpu(Float64Array.of(1, 2, 3, 4), Float64Array.of(1, 1), o64, info([2, 2], [2, 1]), {
    transA: true,
    transB: false,
  }, { bias: Float64Array.of(0.5), aColumnSums: s64 });
  assert.deepEqual([...o64], [4.5, 6.5]);
  assert.deepEqual([...s64], [4, 6]);
});

Deno.test("ResidentHeap hands out disjoint 16 KiB-rounded ranges and merges them back when freed", () => {
  const heap = new ResidentHeap();
  const rng = makeRng(9);
  const live = new Map<number, number>(); // offset → rounded size
  for (let i = 0; i < 3000; i++) {
    if (live.size > 0 && rng() < 0.45) {
      const offs = [...live.keys()];
      const off = offs[Math.floor(rng() * offs.length)];
      assert.ok(heap.release(off));
      assert.ok(!heap.release(off), "freed twice");
      live.delete(off);
      continue;
    }
    // sizes from 4 bytes to 8 MiB, many not powers of two
    const bytes = Math.ceil(2 ** (2 + rng() * 21));
    const off = heap.alloc(bytes);
    assert.ok(off >= 0 && off % 16384 === 0, `offset ${off}`);
    const size = Math.ceil(bytes / 16384) * 16384;
    assert.ok(off + size <= 2 ** 30);
    for (const [o, s] of live) {
      assert.ok(off + size <= o || o + s <= off, `[${off}, +${size}) overlaps [${o}, +${s})`);
    }
    live.set(off, size);
  }
  for (const off of live.keys()) assert.ok(heap.release(off));
  // everything merged back into the one block of the whole region
  assert.deepEqual(heap.free.map((f) => f.size).filter((n) => n > 0), [1]);
  assert.ok(heap.free[30].has(0));
  assert.equal(heap.alloc(2 ** 31), -1);
});
