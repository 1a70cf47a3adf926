import assert from "node:assert/strict";
import "./mod.ts";
import { mulSame, silu } from "./elementwise.ts";
import { mul } from "./binary.ts";
import { sum } from "./reduce.ts";
import { swiglu } from "./swiglu.ts";
import { useWasmMatmul } from "./_wasm_matmul.ts";
import { CPU } from "../tensor/cpu_backend.ts";
import { makeRng } from "../tensor/rng.ts";
import { type Tensor, tensor } from "../tensor/tensor.ts";

/** Forward and both gradients of `fn(gate, up)` weighted by `w`, on the CPU in `dtype`. */
async function run(
  fn: (g: Tensor, u: Tensor) => Tensor,
  g0: Float32Array,
  u0: Float32Array,
  w0: Float32Array,
  dtype: "f32" | "f64",
): Promise<Float64Array[]> {
  const opts = { dtype, backend: CPU, requiresGrad: true } as const;
  const g = tensor(g0, [g0.length], opts), u = tensor(u0, [u0.length], opts);
  const y = fn(g, u);
  sum(mul(y, tensor(w0, [w0.length], { dtype, backend: CPU }))).backward();
  return [await y.data(), await g.grad!.data(), await u.grad!.data()].map((a) =>
    Float64Array.from(a)
  );
}

Deno.test("swiglu() gives the bits of mulSame(silu(gate), up), forward and backward", async () => {
  const rng = makeRng(3);
  const n = 70001; // cut into tasks on the CPU threads; the edges of exp below
  const g = Float32Array.from({ length: n }, () => rng() * 24 - 12);
  g.set([0, -0, 1e-30, 90, -90, 750, -750]);
  const u = Float32Array.from({ length: n }, () => rng() * 4 - 2);
  const w = Float32Array.from({ length: n }, () => rng() * 2 - 1);
  const unfused = (a: Tensor, b: Tensor) => mulSame(silu(a), b);
  for (const kernels of ["auto", "off"] as const) {
    useWasmMatmul(kernels);
    try {
      for (const dtype of ["f32", "f64"] as const) {
        const want = await run(unfused, g, u, w, dtype);
        const got = await run(swiglu, g, u, w, dtype);
        ["out", "dGate", "dUp"].forEach((what, k) => {
          const at = got[k].findIndex((v, i) => !Object.is(v, want[k][i]));
          assert.ok(
            at < 0,
            `${what} ${dtype} (${kernels}) at ${at}: ${got[k][at]} vs ${want[k][at]}`,
          );
        });
      }
    } finally {
      useWasmMatmul("auto");
    }
  }
});
