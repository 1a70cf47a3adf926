/**
 * The engine's spine: autograd (accumulation, shared subexpressions, noGrad,
 * detach, requiresGrad propagation), scopes and disposal, memory statistics on
 * both backends, and shape errors that name the shapes.
 */
import assert from "node:assert/strict";
import { add, matmul, mul, reshape, scale, sum } from "../ops/mod.ts";
import { CPU, CpuBackend } from "./cpu_backend.ts";
import {
  apply,
  copyInto,
  full,
  noGrad,
  ones,
  scope,
  scopeAsync,
  sliceView,
  type Tensor,
  tensor,
  zeros,
} from "./tensor.ts";
import type { Backend, OpDef } from "./types.ts";
import { GPU, NO_GPU } from "../tests/_gpu.ts";

const BACKENDS: Backend[] = NO_GPU ? [CPU] : [CPU, GPU!];

function param(values: number[], shape: number[], backend: Backend = CPU): Tensor {
  return tensor(values, shape, { backend, requiresGrad: true });
}

Deno.test("backward() twice accumulates gradients into .grad", async () => {
  const x = param([1, 2, 3], [3]);
  scope(() => sum(mul(x, x)).backward());
  assert.deepEqual(await x.grad!.toArray(), [2, 4, 6]);
  scope(() => sum(scale(x, 3)).backward());
  assert.deepEqual(await x.grad!.toArray(), [5, 7, 9]);
  x.grad!.dispose();
  x.grad = null;
  scope(() => sum(x).backward());
  assert.deepEqual(await x.grad!.toArray(), [1, 1, 1]);
});

Deno.test("a shared subexpression gets the sum of its consumers' gradients", async () => {
  for (const backend of BACKENDS) {
    const x = param([1, -2, 0.5], [3], backend);
    scope(() => {
      const y = mul(x, x); // used three times
      const z = add(add(y, y), mul(y, x)); // 2x² + x³
      sum(z).backward();
    });
    assert.deepEqual(await x.grad!.toArray(), [1, -2, 0.5].map((v) => 4 * v + 3 * v * v));
    // freed now, not by the garbage collector during a later test's memory count
    x.dispose();
  }
});

Deno.test("dispose() frees a leaf's gradient with it", async () => {
  for (const backend of BACKENDS) {
    await backend.sync();
    const base = backend.memoryStats().liveBytes;
    const x = param([1, 2, 3], [3], backend);
    scope(() => sum(mul(x, x)).backward());
    const g = x.grad!;
    assert.ok(backend.memoryStats().liveBytes > base);
    x.dispose();
    assert.ok(g.disposed && x.grad === null);
    assert.equal(backend.memoryStats().liveBytes, base);
  }
});

Deno.test("a leaf used twice by one op gets both gradients", async () => {
  const x = param([3], [1]);
  scope(() => sum(add(x, x)).backward());
  assert.deepEqual(await x.grad!.toArray(), [2]);
});

/**
 * `y = a + 2b`, whose backward absorbs the pending gradient of each input
 * through `takeGrad` and logs what it got.
 */
function absorbingOp(taken: (Tensor | null)[]): OpDef {
  return {
    name: "absorbingAxpy",
    outputs: ([a]) => [a],
    cpu([a, b], [y]) {
      for (let i = 0; i < y.length; i++) y[i] = a[i] + 2 * b[i];
    },
    backward(c, [dy]) {
      const own = [(dy as Tensor).detach(), scale(dy as Tensor, 2)];
      return own.map((g, i) => {
        const pending = c.takeGrad?.(i) as Tensor | null;
        taken.push(pending);
        if (!pending) return g;
        const s = add(pending, g);
        pending.dispose();
        g.dispose();
        return s;
      });
    },
  };
}

Deno.test("takeGrad() hands an op the pending gradient once, even for an input passed twice", async () => {
  const taken: (Tensor | null)[] = [];
  const op = absorbingOp(taken);
  const x0 = param([1, -2, 0.5], [3]);
  const before = CPU.memoryStats().liveBuffers;
  scope(() => {
    const x = scale(x0, 1); // not a leaf: its pending gradient may be taken
    // z = Σ x·(x + 2x) = Σ 3x²; mul's backward runs first and leaves x a pending gradient
    const [y] = apply(op, [x, x], {});
    sum(mul(y, x)).backward();
    // input 0 took mul's gradient (3x) and disposed it; input 1 found none
    assert.equal(taken.length, 2);
    assert.ok(taken[0]?.disposed && taken[1] === null);
  });
  // dz/dx = 3x (mul's) + x + 2x (the op's)
  assert.deepEqual(await x0.grad!.toArray(), [6, -12, 3]);
  assert.equal(CPU.memoryStats().liveBuffers - before, 1); // x0.grad
});

Deno.test("takeGrad() never takes a leaf's .grad", async () => {
  const taken: (Tensor | null)[] = [];
  const x = param([1, -2, 0.5], [3]);
  scope(() => sum(mul(apply(absorbingOp(taken), [x, x], {})[0], x)).backward());
  assert.deepEqual(taken, [null, null]);
  assert.deepEqual(await x.grad!.toArray(), [6, -12, 3]);
});

Deno.test("requiresGrad propagates from any input and not from constants", () => {
  const x = param([1, 2], [2]);
  const c = tensor([3, 4], [2]);
  assert.equal(c.requiresGrad, false);
  assert.equal(mul(c, c).requiresGrad, false);
  assert.equal(mul(c, x).requiresGrad, true);
  assert.equal(reshape(mul(x, c), [1, 2]).requiresGrad, true);
  assert.throws(() => sum(mul(c, c)).backward(), /does not require a gradient/);
});

Deno.test("noGrad() records nothing and restores the previous mode after a throw", () => {
  const x = param([1, 2], [2]);
  const y = noGrad(() => mul(x, x));
  assert.equal(y.requiresGrad, false);
  assert.throws(() =>
    noGrad(() => {
      throw new Error("boom");
    }), /boom/);
  assert.equal(mul(x, x).requiresGrad, true);
});

Deno.test("detach() shares the data but cuts the tape", async () => {
  const x = param([1, 2, 3], [3]);
  scope(() => {
    const y = mul(x, x);
    const d = y.detach();
    assert.equal(d.requiresGrad, false);
    sum(add(mul(d, x), y)).backward(); // d·x + x²: d is a constant x²
  });
  assert.deepEqual(await x.grad!.toArray(), [1 + 2, 4 + 4, 9 + 6]);
  const y = mul(x, x);
  const d = y.detach();
  y.dispose();
  assert.deepEqual(await d.toArray(), [1, 4, 9]); // storage outlives the original
});

Deno.test("backward() without dy needs a scalar and names the shape", () => {
  const x = param([1, 2], [2]);
  assert.throws(() => mul(x, x).backward(), /needs a scalar, got \[2\]/);
});

Deno.test("scope() disposes intermediates and keeps returned and kept tensors", async () => {
  const x = tensor([1, 2], [2]);
  let inner: Tensor | null = null, kept: Tensor | null = null;
  const { a, list } = scope(() => {
    inner = scale(x, 2);
    kept = scale(x, 5).keep();
    return { a: scale(inner, 3), list: [add(x, x)] };
  });
  assert.equal(inner!.disposed, true);
  assert.equal(x.disposed, false);
  assert.deepEqual(await a.toArray(), [6, 12]);
  assert.deepEqual(await list[0].toArray(), [2, 4]);
  assert.deepEqual(await kept!.toArray(), [5, 10]);
});

Deno.test("nested scopes hand returned tensors to the outer scope", async () => {
  let mid: Tensor | null = null;
  const out = scope(() => {
    mid = scope(() => ones([2]));
    return scale(mid, 2);
  });
  assert.equal(mid!.disposed, true);
  assert.deepEqual(await out.toArray(), [2, 2]);
});

Deno.test("scope() disposes everything when the function throws", () => {
  let t: Tensor | null = null;
  assert.throws(() =>
    scope(() => {
      t = zeros([3]);
      throw new RangeError("stop");
    }), RangeError);
  assert.equal(t!.disposed, true);
  assert.throws(() => scope(() => Promise.resolve(1)), /use scopeAsync/);
});

Deno.test("scopeAsync() keeps what the async function returns", async () => {
  let tmp: Tensor | null = null;
  const r = await scopeAsync(async () => {
    tmp = full([2], 3);
    const v = await tmp.toArray();
    return { v, t: scale(tmp, 2) };
  });
  assert.deepEqual(r.v, [3, 3]);
  assert.equal(tmp!.disposed, true);
  assert.deepEqual(await r.t.toArray(), [6, 6]);
});

Deno.test("a disposed tensor names itself and its shape when used", async () => {
  const t = tensor([1, 2, 3, 4, 5, 6], [2, 3]);
  t.name = "fc.weight";
  t.dispose();
  t.dispose(); // idempotent
  assert.throws(() => scale(t, 2), /Tensor fc\.weight \[2, 3\] was used after dispose\(\)/);
  await assert.rejects(async () => await t.data(), /was used after dispose/);
  const u = tensor([1], [1]);
  u.dispose();
  assert.throws(() => add(u, u), /Tensor #\d+ \[1\] was used after dispose\(\)/);
});

for (const backend of BACKENDS) {
  Deno.test(`memoryStats() on ${backend.kind}: live returns to baseline after a scope`, async () => {
    await backend.sync();
    const base = backend.memoryStats();
    backend.resetPeak();
    const x = tensor(new Float32Array(4096), [64, 64], { backend });
    const afterX = backend.memoryStats().liveBytes;
    assert.ok(afterX >= base.liveBytes + 4096 * 4, `live ${afterX}`);
    const s = scope(() => sum(matmul(add(x, x), x)));
    const st = backend.memoryStats();
    assert.equal(st.liveBuffers, base.liveBuffers + 2); // x and s
    assert.ok(st.peakBytes >= afterX + 2 * 4096 * 4, `peak ${st.peakBytes}`);
    assert.equal(await s.item(), 0);
    s.dispose();
    x.dispose();
    assert.equal(backend.memoryStats().liveBytes, base.liveBytes);
    assert.equal(backend.memoryStats().liveBuffers, base.liveBuffers);
    backend.resetPeak();
    assert.equal(backend.memoryStats().peakBytes, base.liveBytes);
  });
}

Deno.test("shape errors name both shapes (add, matmul) on every backend", () => {
  for (const backend of BACKENDS) {
    const a = tensor(new Float32Array(6), [2, 3], { backend });
    const b = tensor(new Float32Array(8), [4, 2], { backend });
    assert.throws(
      () => add(a, b),
      (e: unknown) =>
        e instanceof TypeError && /\[2, 3\] and \[4, 2\] do not broadcast/.test(e.message),
    );
    assert.throws(
      () => matmul(a, b),
      (e: unknown) =>
        e instanceof TypeError &&
        /\[2, 3\] by \[4, 2\]: inner dimensions differ \(3 vs 4\)/.test(e.message),
    );
    assert.throws(
      () => tensor([1, 2, 3], [2, 2], { backend }),
      /3 values do not fill shape \[2, 2\]/,
    );
  }
});

Deno.test("ops reject inputs on different backends", { ignore: NO_GPU }, () => {
  const a = tensor([1], [1], { backend: CPU }), b = tensor([1], [1], { backend: GPU! });
  assert.throws(() => add(a, b), /inputs are on different backends \(cpu vs webgpu\)/);
});

Deno.test("sliceView() shares memory with its base; ops read and write through it", async () => {
  for (const backend of BACKENDS) {
    await backend.sync();
    const live = backend.memoryStats().liveBytes;
    const align = backend.viewAlignment / 4; // elements
    const n = 2 * align + 8;
    const base = tensor(Float32Array.from({ length: n }, (_, i) => i), [n], { backend });
    const v = sliceView(base, align, [2, 3]); // elements align..align+5
    const want = [0, 1, 2, 3, 4, 5].map((k) => align + k);
    assert.deepEqual(await v.toArray(), want, backend.kind);
    const twice = add(v, v);
    assert.deepEqual(await twice.toArray(), want.map((x) => 2 * x));
    twice.dispose();
    // a write through the view shows in the base, outside it nothing changes
    const src = tensor([-1, -2, -3, -4, -5, -6], [2, 3], { backend });
    copyInto(v, src);
    const all = await base.toArray();
    assert.deepEqual(all.slice(align, align + 6), [-1, -2, -3, -4, -5, -6]);
    assert.equal(all[align - 1], align - 1);
    assert.equal(all[align + 6], align + 6);
    assert.throws(() => sliceView(base, n - 1, [2]), RangeError);
    assert.throws(() => sliceView(base, 1, [2]), /multiple of/);
    // the base lives until its last view is gone
    base.dispose();
    assert.deepEqual(await v.toArray(), [-1, -2, -3, -4, -5, -6]);
    v.dispose();
    src.dispose();
    assert.equal(backend.memoryStats().liveBytes, live, `${backend.kind}: live bytes back`);
  }
});

Deno.test("shareStorageOf() moves a tensor onto a view and frees its old storage", async () => {
  for (const backend of BACKENDS) {
    await backend.sync();
    const live = backend.memoryStats().liveBytes;
    const p = tensor([1, 2, 3], [3], { backend, requiresGrad: true });
    const flat = zeros([backend.viewAlignment], { backend });
    const v = sliceView(flat, 0, [3]);
    copyInto(v, p);
    p.shareStorageOf(v);
    v.dispose();
    flat.dispose();
    assert.deepEqual(await p.toArray(), [1, 2, 3]);
    scope(() => sum(mul(p, p)).backward());
    assert.deepEqual(await p.grad!.toArray(), [2, 4, 6]);
    p.grad!.dispose();
    const other = tensor([1], [1], { backend });
    assert.throws(() => p.shareStorageOf(other), TypeError);
    other.dispose();
    p.dispose();
    assert.equal(backend.memoryStats().liveBytes, live, `${backend.kind}: live bytes back`);
  }
});

Deno.test("CpuBackend.beginProfile()/endProfile() time each op by name while on", async () => {
  const cpu = new CpuBackend();
  const a = tensor([1, 2, 3, 4], [2, 2], { backend: cpu });
  assert.equal(cpu.beginProfile(), true);
  const b = matmul(a, a);
  add(b, a);
  add(b, b);
  const prof = await cpu.endProfile();
  assert.deepEqual(Object.keys(prof).sort(), ["binary", "matmul"]);
  assert.equal(prof.binary.dispatches, 2);
  assert.ok(prof.matmul.ms >= 0 && prof.matmul.dispatches === 1);
  await assert.rejects(() => cpu.endProfile(), /endProfile\(\) without beginProfile\(\)/);
  add(b, b); // not recorded
});
