/**
 * The CPU backend's buffer pool: released arrays of 16 KiB or more lend their
 * memory to the next array of the same byte size, zeroed and as a new array
 * object, so caches keyed by array identity never mistake one for the other.
 *
 * @module
 */
import assert from "node:assert/strict";
import { CpuBackend } from "./cpu_backend.ts";
import type { CpuArray, TensorInfo } from "./types.ts";
import { tensor } from "./tensor.ts";
import { crossEntropy, crossEntropyStats } from "../ops/cross_entropy.ts";
import { makeRng } from "./rng.ts";
import { useResidentArrays } from "../ops/_wasm_matmul.ts";

const f32 = (n: number): TensorInfo => ({ shape: [n], dtype: "f32" });
const arrayOf = (s: unknown): CpuArray => (s as { array: CpuArray }).array;

Deno.test("CpuBackend reuses a released buffer of the same byte size, zeroed, as a new array", () => {
  const resident = useResidentArrays(false); // the JavaScript-heap path
  try {
    const cpu = new CpuBackend();
    const n = 8192; // 32 KiB
    const a = cpu.upload(new Float32Array(n).fill(3), f32(n));
    const first = arrayOf(a), buffer = first.buffer;
    cpu.release(a);
    assert.equal(cpu.memoryStats().pooledBytes, 4 * n);
    // the same bytes as i32: the buffer, zeroed, in a new array
    const [out] = cpu.exec(
      { name: "noop", outputs: () => [{ shape: [n], dtype: "i32" }], cpu: () => {} },
      [],
      { inputs: [], outputs: [{ shape: [n], dtype: "i32" }] },
      {},
    );
    const got = arrayOf(out);
    assert.equal(got.buffer, buffer);
    assert.notEqual(got, first);
    assert.ok(got instanceof Int32Array && got.every((v) => v === 0));
    assert.equal(cpu.memoryStats().pooledBytes, 0);
    // another size: a fresh buffer
    const b = cpu.upload(new Float32Array(n + 1), f32(n + 1));
    assert.notEqual(arrayOf(b).buffer, buffer);
    cpu.release(out);
    cpu.release(b);
    assert.equal(cpu.memoryStats().pooledBytes, 8 * n + 4);
    cpu.emptyCache();
    assert.equal(cpu.memoryStats().pooledBytes, 0);
  } finally {
    useResidentArrays(resident);
  }
});

Deno.test("CpuBackend leaves small arrays and views out of the pool", () => {
  const resident = useResidentArrays(false); // the JavaScript-heap path
  try {
    const cpu = new CpuBackend();
    const small = cpu.upload(new Float32Array(100), f32(100));
    cpu.release(small);
    assert.equal(cpu.memoryStats().pooledBytes, 0);
    const big = cpu.upload(new Float32Array(8192), f32(8192));
    const view = cpu.view(big, 0, 4 * 4096);
    // as Tensor.dispose does: the root goes when its last reference does (the view holds one)
    if (--big.refs === 0) cpu.release(big);
    assert.equal(cpu.memoryStats().pooledBytes, 0);
    cpu.release(view);
    assert.equal(cpu.memoryStats().pooledBytes, 4 * 8192);
  } finally {
    useResidentArrays(resident);
  }
});

Deno.test("cross-entropy statistics are not taken for logits that reuse a released array's memory", async () => {
  // the forward caches its row statistics by logits array; new logits in the same memory
  // must get their own
  const rng = makeRng(5);
  const N = 64, V = 300; // 75 KiB of logits: pooled
  const data = () => Float32Array.from({ length: N * V }, () => rng() * 8 - 4);
  const targets = tensor(Int32Array.from({ length: N }, (_, i) => 1 + (i % (V - 1))), [N], {
    dtype: "i32",
  });
  const xa = data(), xb = data();
  const want = await crossEntropyStats(tensor(xb, [N, V]), targets, { ignoreIndex: 0 }).data();
  const a = tensor(xa, [N, V]);
  crossEntropy(a, targets, { ignoreIndex: 0 }).dispose();
  a.dispose(); // its memory goes to the pool
  const b = tensor(xb, [N, V]);
  const got = await crossEntropyStats(b, targets, { ignoreIndex: 0 }).data();
  assert.deepEqual([...got], [...want]);
});

Deno.test("CpuBackend empties its pool when a release would take it past its cap", () => {
  const resident = useResidentArrays(false); // the JavaScript-heap path
  try {
    const cpu = new CpuBackend();
    // 20, 21, 22, 23 MiB one after the other: the live peak stays under 64 MiB, the cap
    const mib = 2 ** 18; // f32 elements
    const sizes = [20, 21, 22, 23].map((m) => m * mib);
    const pooled: number[] = [];
    for (const n of sizes) {
      cpu.release(cpu.upload(new Float32Array(n), f32(n)));
      pooled.push(cpu.memoryStats().pooledBytes / 4 / mib);
    }
    assert.deepEqual(pooled, [20, 41, 63, 23]); // the last would make 86 MiB: the pool starts over
  } finally {
    useResidentArrays(resident);
  }
});

Deno.test("f32 and i32 tensors of 16 KiB or more live in the kernels' memory, their blocks reused", () => {
  const cpu = new CpuBackend();
  const n = 8192;
  const a = cpu.upload(new Float32Array(n).fill(3), f32(n));
  const first = arrayOf(a);
  assert.ok(first.buffer instanceof SharedArrayBuffer, "not in the kernels' shared memory");
  const at = first.byteOffset;
  cpu.release(a);
  assert.equal(cpu.memoryStats().pooledBytes, 0); // not in the JavaScript-heap pool
  const [out] = cpu.exec(
    { name: "noop", outputs: () => [{ shape: [n], dtype: "i32" }], cpu: () => {} },
    [],
    { inputs: [], outputs: [{ shape: [n], dtype: "i32" }] },
    {},
  );
  const got = arrayOf(out);
  assert.ok(got instanceof Int32Array && got.buffer instanceof SharedArrayBuffer);
  assert.equal(got.byteOffset, at); // the freed block, zeroed
  assert.ok(got.every((v) => v === 0));
  // f64 and small arrays stay on the JavaScript heap
  const d = cpu.upload(new Float64Array(n), { shape: [n], dtype: "f64" });
  const s = cpu.upload(new Float32Array(16), f32(16));
  assert.ok(arrayOf(d).buffer instanceof ArrayBuffer && arrayOf(s).buffer instanceof ArrayBuffer);
  for (const t of [out, d, s]) cpu.release(t);
});
