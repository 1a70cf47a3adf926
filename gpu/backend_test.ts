/**
 * The WebGPU backend's plumbing: pooled buffers, one submit per recorded op
 * sequence, readbacks, emptyCache, typed out-of-memory errors, uploads
 * that never overwrite a buffer still used by unsubmitted work, and views
 * (windows of a buffer) with buffer copies in stream order.
 */
import assert from "node:assert/strict";
import { add, expandTo, matmul, mul, scale, sum } from "../ops/mod.ts";
import { copyInto, scope, sliceView, tensor } from "../tensor/tensor.ts";
import { GPU, NO_GPU } from "../tests/_gpu.ts";
import { type GpuStorage, sizeClass } from "./backend.ts";
import { GpuOutOfMemoryError } from "./errors.ts";

function gpuTest(name: string, fn: () => Promise<void> | void): void {
  Deno.test({ name, ignore: NO_GPU, fn });
}

Deno.test("sizeClass() rounds up to multiples of 256 with at most 25% (or 255 bytes) slack", () => {
  assert.equal(sizeClass(1), 256);
  assert.equal(sizeClass(256), 256);
  assert.equal(sizeClass(257), 512);
  assert.equal(sizeClass(4096), 4096);
  assert.equal(sizeClass(4097), 5120);
  for (let b = 1; b < 1 << 24; b = Math.ceil(b * 1.37)) {
    const c = sizeClass(b);
    assert.ok(c >= b && c % 256 === 0 && c - b <= Math.max(255, b / 4), `${b} → ${c}`);
  }
});

gpuTest("a disposed buffer is reused by the next tensor of its size class", async () => {
  const gpu = GPU!;
  await gpu.sync();
  const a = tensor(new Float32Array(1000), [1000], { backend: gpu });
  const buf = (a.storage as GpuStorage).buffer;
  a.dispose();
  const pooled = gpu.memoryStats().pooledBytes;
  assert.ok(pooled >= sizeClass(4000));
  const b = tensor(new Float32Array(990), [990], { backend: gpu }); // same class (4096)
  assert.equal((b.storage as GpuStorage).buffer, buf);
  assert.equal(gpu.memoryStats().pooledBytes, pooled - sizeClass(4000));
  b.dispose();
});

gpuTest("a whole op sequence is one submit, flushed by the readback", async () => {
  const gpu = GPU!;
  await gpu.sync();
  gpu.dispatchStats(true);
  const out = scope(() => {
    const x = tensor([1, 2, 3, 4, 5, 6], [2, 3], { backend: gpu });
    const w = tensor([1, 0, 0, 1, 1, 1], [3, 2], { backend: gpu });
    const h = add(matmul(x, w), scale(tensor([1, 1], [2], { backend: gpu }), 0.5));
    return sum(mul(h, h));
  });
  const before = gpu.dispatchStats();
  assert.equal(before.submits, 0);
  assert.equal(before.readbacks, 0);
  assert.ok(before.dispatches >= 5, `dispatches ${before.dispatches}`);
  // x·w = [[4, 5], [10, 11]], + 0.5 → 4.5² + 5.5² + 10.5² + 11.5²
  assert.equal(await out.item(), 4.5 ** 2 + 5.5 ** 2 + 10.5 ** 2 + 11.5 ** 2);
  const after = gpu.dispatchStats(true);
  assert.equal(after.submits, 1);
  assert.equal(after.readbacks, 1);
  out.dispose();
});

gpuTest("readbacks return the uploaded f32 and i32 values, odd and empty sizes", async () => {
  const gpu = GPU!;
  const f = Float32Array.from({ length: 1001 }, (_, i) => Math.fround(Math.sin(i) * 1e3));
  const ft = tensor(f, [7, 11, 13], { backend: gpu });
  assert.deepEqual(await ft.data(), f);
  const ids = Int32Array.from({ length: 3 }, (_, i) => -5 + 7 * i);
  const t = tensor(ids, [3], { backend: gpu });
  assert.equal(t.dtype, "i32");
  assert.deepEqual(await t.data(), ids);
  const empty = tensor([], [0, 4], { backend: gpu });
  assert.deepEqual(await empty.data(), new Float32Array(0));
  for (const x of [ft, t, empty]) x.dispose();
});

gpuTest("an upload never overwrites a buffer that unsubmitted work still uses", async () => {
  const gpu = GPU!;
  await gpu.sync();
  const a = tensor([1, 2, 3, 4], [4], { backend: gpu });
  const b = scale(a, 2); // recorded, not submitted
  const c = scale(b, 1); // reads b
  const bBuf = (b.storage as GpuStorage).buffer;
  b.dispose(); // b's buffer is back in the pool while both kernels wait
  const d = tensor([100, 100, 100, 100], [4], { backend: gpu });
  assert.deepEqual(await c.toArray(), [2, 4, 6, 8]);
  assert.deepEqual(await d.toArray(), [100, 100, 100, 100]);
  assert.notEqual((d.storage as GpuStorage).buffer, bBuf);
  // after the submit, the pool is free for uploads again: e takes a pooled buffer (the lowest id)
  const buf = (c.storage as GpuStorage).buffer;
  c.dispose();
  const e = tensor([7, 7, 7, 7], [4], { backend: gpu });
  assert.ok([buf, bBuf].includes((e.storage as GpuStorage).buffer));
  assert.deepEqual(await e.toArray(), [7, 7, 7, 7]);
  for (const t of [a, d, e]) t.dispose();
});

gpuTest("emptyCache() frees pooled buffers and keeps live tensors intact", async () => {
  const gpu = GPU!;
  const keep = tensor([1, 2, 3], [3], { backend: gpu });
  tensor(new Float32Array(50_000), [50_000], { backend: gpu }).dispose();
  assert.ok(gpu.memoryStats().pooledBytes > 0);
  const live = gpu.memoryStats().liveBytes;
  await gpu.emptyCache();
  assert.equal(gpu.memoryStats().pooledBytes, 0);
  assert.equal(gpu.memoryStats().liveBytes, live);
  assert.deepEqual(await keep.toArray(), [1, 2, 3]);
  keep.dispose();
});

gpuTest("an allocation above the storage binding limit is a GpuOutOfMemoryError", () => {
  const gpu = GPU!;
  const limit = gpu.device.limits.maxStorageBufferBindingSize;
  const one = tensor([1], [1], { backend: gpu });
  const live = gpu.memoryStats().liveBytes;
  assert.throws(
    () => expandTo(one, [Math.floor(limit / 4) + 1]),
    (err: unknown) =>
      err instanceof GpuOutOfMemoryError && err instanceof RangeError &&
      /above the adapter's storage binding limit/.test(err.message),
  );
  assert.equal(gpu.memoryStats().liveBytes, live);
  one.dispose();
});

gpuTest("views bind at their offset, copies record without a submit", async () => {
  const gpu = GPU!;
  await gpu.sync();
  const live = gpu.memoryStats().liveBytes;
  const a = gpu.viewAlignment / 4; // elements per alignment step
  const base = tensor(Float32Array.from({ length: 3 * a }, (_, i) => i), [3 * a], { backend: gpu });
  const v0 = sliceView(base, 0, [4]),
    v1 = sliceView(base, a, [4]),
    v2 = sliceView(base, 2 * a, [4]);
  assert.equal((v1.storage as GpuStorage).offset, gpu.viewAlignment);
  assert.equal(gpu.memoryStats().liveBytes, live + sizeClass(12 * a), "views hold no memory");
  // the same op over views of one buffer: a bind group per offset, not one cached for all
  const sums = [v0, v1, v2].map((v) => scale(v, 2));
  for (let k = 0; k < 3; k++) {
    assert.deepEqual(await sums[k].toArray(), [0, 1, 2, 3].map((i) => 2 * (k * a + i)));
  }
  await gpu.sync();
  gpu.dispatchStats(true);
  const src = tensor([-1, -2, -3, -4], [4], { backend: gpu });
  copyInto(v1, src);
  const doubled = scale(v1, 2); // recorded after the copy: sees the new values
  const st = gpu.dispatchStats(true);
  assert.equal(st.copies, 1);
  assert.equal(st.dispatches, 1);
  assert.equal(st.submits, 0);
  assert.deepEqual(await doubled.toArray(), [-2, -4, -6, -8]);
  assert.deepEqual((await base.toArray()).slice(a - 1, a + 5), [a - 1, -1, -2, -3, -4, a + 4]);
  for (const t of [base, v0, v1, v2, src, doubled, ...sums]) t.dispose();
  assert.equal(gpu.memoryStats().liveBytes, live);
});

gpuTest(
  "peakReservedBytes counts pooled buffers too: what the device holds, not only tensors",
  async () => {
    const gpu = GPU!;
    await gpu.sync();
    gpu.resetPeak();
    const s0 = gpu.memoryStats();
    assert.equal(s0.peakReservedBytes, s0.liveBytes + s0.pooledBytes);
    tensor(new Float32Array(100_000), [100_000], { backend: gpu }).dispose(); // then pooled
    // another size class cannot reuse that buffer: live + pooled exceeds every live count
    const other = tensor(new Float32Array(50_000), [50_000], { backend: gpu });
    const s = gpu.memoryStats();
    assert.ok(s.pooledBytes >= sizeClass(400_000), JSON.stringify(s));
    assert.ok(s.peakReservedBytes! >= s.liveBytes + s.pooledBytes, JSON.stringify(s));
    assert.ok(s.peakReservedBytes! > s.peakBytes, JSON.stringify(s));
    other.dispose();
  },
);

gpuTest(
  "a step that repeats the last one's allocations reuses its buffers and bind groups",
  async () => {
    const gpu = GPU!;
    await gpu.sync();
    const x = tensor(Float32Array.from({ length: 64 }, (_, i) => i / 64), [8, 8], { backend: gpu });
    const w = tensor(Float32Array.from({ length: 64 }, (_, i) => 1 - i / 64), [8, 8], {
      backend: gpu,
      requiresGrad: true,
    });
    // a small forward/backward whose temporaries are freed in another order than allocated
    const step = () => {
      scope(() => sum(mul(matmul(x, w), scale(matmul(w, x), 0.5))).backward());
      w.grad?.dispose();
      w.grad = null;
      gpu.flush(); // one submit per step: the uniform arena restarts
    };
    step();
    step();
    gpu.dispatchStats(true);
    step();
    const st = gpu.dispatchStats(true);
    assert.ok(st.dispatches >= 6, `${st.dispatches} dispatches`);
    assert.equal(st.bindGroups, 0, "every bind group of the repeated step came from the cache");
    await gpu.sync();
    x.dispose();
    w.dispose();
  },
);
