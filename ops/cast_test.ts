import assert from "node:assert/strict";
import "./mod.ts";
import { scope, tensor } from "../tensor/tensor.ts";
import { CPU } from "../tensor/cpu_backend.ts";
import { cast, WGSL_ROUND_F16 } from "./cast.ts";
import { GPU, NO_GPU } from "../tests/_gpu.ts";
import { mul, sum } from "./mod.ts";
import { roundF16 } from "../tests/_f16_reference.ts";

Deno.test("cast() to f16 rounds to nearest even like the binary16 definition", async () => {
  const xs: number[] = [1 / 3, -2 / 3, 1 + 2 ** -11, 1 + 3 * 2 ** -11, 2049, 2051, 65504, 65519.9];
  xs.push(65520, -70000, 6e-8, 2 ** -24 * 0.5, 2 ** -24 * 1.5, 1e-5, 0, -0);
  for (let i = 0; i < 200; i++) xs.push(Math.sin(i * 1.7) * 10 ** ((i % 9) - 4));
  const x = tensor(new Float64Array(xs), [xs.length], { backend: CPU });
  const h = cast(x, "f16");
  assert.equal(h.dtype, "f16");
  const got = await h.toArray();
  xs.forEach((v, i) =>
    assert.ok(Object.is(got[i], roundF16(v)), `${v}: ${got[i]} vs ${roundF16(v)}`)
  );
  // from f32: the f32 value, rounded once
  const x32 = tensor(xs, [xs.length]);
  const got32 = await cast(x32, "f16").toArray();
  const ref32 = Float32Array.from(xs);
  ref32.forEach((v, i) => assert.ok(Object.is(got32[i], roundF16(v)), `${v}`));
});

Deno.test("cast() keeps NaN and infinities and widens f16 back to f32 exactly", async () => {
  const h = cast(tensor([NaN, Infinity, -Infinity, 0.1], [4]), "f16");
  const back = cast(h, "f32");
  assert.equal(back.dtype, "f32");
  const v = await back.toArray();
  assert.ok(Number.isNaN(v[0]));
  assert.deepEqual(v.slice(1), [Infinity, -Infinity, roundF16(0.1)]);
  const same = tensor([1], [1]);
  assert.equal(cast(same, "f32"), same);
});

Deno.test("cast() backward casts the gradient to the input dtype", async () => {
  const x = tensor([0.5, -1.25, 3], [3], { requiresGrad: true });
  const w = tensor([1 / 3, 1e5, -7e-6], [3]);
  scope(() => sum(mul(cast(cast(x, "f16"), "f32"), w)).backward());
  assert.equal(x.grad!.dtype, "f32");
  // d/dh of cast(h, f32)·w is w rounded to f16 (the gradient of an f16 tensor is f16)
  assert.deepEqual(await x.grad!.toArray(), [roundF16(1 / 3), Infinity, roundF16(-7e-6)]);
});

Deno.test("cast() refuses i32 and unknown dtypes", () => {
  assert.throws(() => cast(tensor(new Int32Array([1]), [1]), "f16"), TypeError);
  assert.throws(() => cast(tensor([1], [1]), "bf16" as "f16"), TypeError);
});

/** round_f16 and round_f16v4 of `xs` (f32) on the GPU: [scalar results, vec4 results]. */
async function roundOnGpu(xs: Float32Array<ArrayBuffer>): Promise<[Float32Array, Float32Array]> {
  const dev = GPU!.device;
  const n = xs.length; // a multiple of 4
  const code = `${WGSL_ROUND_F16}
@group(0) @binding(0) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> out: array<vec4<f32>>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3u) {
  let i = g.x;
  if (i >= ${n / 4}u) { return; }
  let v = x[i];
  out[i] = vec4<f32>(round_f16(v.x), round_f16(v.y), round_f16(v.z), round_f16(v.w));
  out[i + ${n / 4}u] = round_f16v4(v);
}`;
  const pipeline = dev.createComputePipeline({
    layout: "auto",
    compute: { module: dev.createShaderModule({ code }), entryPoint: "main" },
  });
  const src = dev.createBuffer({
    size: n * 4,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
  });
  const dst = dev.createBuffer({
    size: n * 8,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC,
  });
  const read = dev.createBuffer({
    size: n * 8,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  try {
    dev.queue.writeBuffer(src, 0, xs);
    const enc = dev.createCommandEncoder();
    const pass = enc.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(
      0,
      dev.createBindGroup({
        layout: pipeline.getBindGroupLayout(0),
        entries: [src, dst].map((buffer, binding) => ({ binding, resource: { buffer } })),
      }),
    );
    pass.dispatchWorkgroups(Math.ceil(n / 4 / 64));
    pass.end();
    enc.copyBufferToBuffer(dst, 0, read, 0, n * 8);
    dev.queue.submit([enc.finish()]);
    await read.mapAsync(GPUMapMode.READ);
    const all = new Float32Array(read.getMappedRange().slice(0));
    read.unmap();
    return [all.subarray(0, n), all.subarray(n)];
  } finally {
    for (const b of [src, dst, read]) b.destroy();
  }
}

Deno.test({
  name: "WGSL round_f16() and round_f16v4() equal Math.f16round on every kind of f32",
  ignore: NO_GPU,
  fn: async () => {
    // ties to even and not (normal and subnormal), the top of the range and past it, the
    // smallest normal and subnormal, f32 subnormals, signed zeros, infinities, NaN
    const ulp = (e: number) => 2 ** (e - 10);
    const xs: number[] = [1 + ulp(0) / 2, 1 + 1.5 * ulp(0), 1 + ulp(0) / 2 + 2 ** -20, 2049, 2051];
    xs.push(65504, 65519.99, 65520, 70000, 3.4e38, 2 ** -14, 2 ** -14 * (1 - 2 ** -12));
    xs.push(2 ** -24, 2 ** -25, 2 ** -25 * (1 + 2 ** -10), 3 * 2 ** -25, 5 * 2 ** -25, 2 ** -26);
    xs.push(1e-40, 0, Infinity, NaN, 1 / 3, 0.1, 1e-5, 6.1e-5, 6.2e-5);
    for (const v of [...xs]) xs.push(-v);
    // every f32 bit pattern class: a random walk over exponents and significands
    let seed = 12345;
    const rand = () => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;
    while (xs.length < 4096) {
      xs.push((rand() < 0.5 ? -1 : 1) * (1 + rand()) * 2 ** Math.floor(rand() * 60 - 40));
    }
    const x = Float32Array.from(xs);
    const [scalar, vec] = await roundOnGpu(x);
    x.forEach((v, i) => {
      const want = Math.f16round(v);
      assert.ok(Object.is(scalar[i], want), `round_f16(${v}) = ${scalar[i]}, want ${want}`);
      assert.ok(Object.is(vec[i], want), `round_f16v4(${v}) = ${vec[i]}, want ${want}`);
    });
  },
});
