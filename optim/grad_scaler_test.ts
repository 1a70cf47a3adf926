import assert from "node:assert/strict";
import "../ops/mod.ts";
import { mul, sum } from "../ops/mod.ts";
import { CPU } from "../tensor/cpu_backend.ts";
import { scope, tensor } from "../tensor/tensor.ts";
import type { Backend } from "../tensor/types.ts";
import { GPU } from "../tests/_gpu.ts";
import { AdamW } from "./adamw.ts";
import { GradScaler } from "./grad_scaler.ts";

const BACKENDS: [string, Backend | null][] = [["CPU", CPU], ["WebGPU", GPU]];

// 'F': finite gradients, 'I': an infinite one, 'N': a NaN
const PATTERN = "FFFFIFFFINF";
// torch.cuda.amp.GradScaler (init_scale 8, growth_factor 2, backoff_factor 0.5,
// growth_interval 3), written by hand from `_amp_update_scale_`: on inf/NaN the
// scale halves and the tracker resets; else the tracker counts up and at 3 the
// scale doubles and the tracker resets.
const EXPECTED_SCALE = [8, 8, 16, 16, 8, 8, 8, 16, 8, 4, 4];
const EXPECTED_TRACKER = [1, 2, 0, 1, 0, 1, 2, 0, 0, 0, 1];
const EXPECTED_SKIPPED = [0, 0, 0, 0, 1, 1, 1, 1, 2, 3, 3];

function coefs(k: number, kind: string): number[] {
  const c = [0.3 * Math.sin(k + 1), -0.2 * Math.cos(2 * k), 0.5 + 0.1 * k];
  if (kind === "I") c[1] = Infinity;
  if (kind === "N") c[2] = NaN;
  return c;
}

/** torch.optim.AdamW in float64 over the steps taken (skipped ones leave no trace). */
function referenceAdamW(pattern: string, maxNorm: number, lr: number): number[] {
  const p = [1, -2, 0.5], m = [0, 0, 0], v = [0, 0, 0];
  const [b1, b2, eps, wd] = [0.9, 0.999, 1e-8, 0.01];
  let t = 0;
  [...pattern].forEach((kind, k) => {
    if (kind !== "F") return;
    t++;
    const g = coefs(k, kind);
    const norm = Math.hypot(...g);
    const clip = maxNorm > 0 ? Math.min(1, maxNorm / (norm + 1e-6)) : 1;
    for (let i = 0; i < 3; i++) {
      const gi = g[i] * clip;
      p[i] *= 1 - lr * wd;
      m[i] = b1 * m[i] + (1 - b1) * gi;
      v[i] = b2 * v[i] + (1 - b2) * gi * gi;
      p[i] -= (lr / (1 - b1 ** t)) * m[i] / (Math.sqrt(v[i]) / Math.sqrt(1 - b2 ** t) + eps);
    }
  });
  return p;
}

for (const [name, backend] of BACKENDS) {
  for (const flat of [true, false]) {
    Deno.test({
      name:
        `GradScaler on ${name} (flat ${flat}) follows torch's scale sequence and skips inf/NaN steps`,
      ignore: backend === null,
      fn: async () => {
        const w = tensor([1, -2, 0.5], [3], { backend: backend!, requiresGrad: true });
        const opt = new AdamW(new Map([["w", w]]), { lr: 0.05, flat });
        const scaler = new GradScaler({ initScale: 8, growthInterval: 3, backend: backend! });
        const norms: number[] = [];
        for (let k = 0; k < PATTERN.length; k++) {
          const norm = scope(() => {
            const c = tensor(coefs(k, PATTERN[k]), [3], { backend: backend! });
            scaler.scale(sum(mul(w, c))).backward();
            return scaler.step(opt, { maxNorm: 0.5 });
          });
          opt.zeroGrad();
          norms.push(await norm.item());
          norm.dispose();
          const s = await scaler.read();
          assert.deepEqual(
            [s.scale, s.goodSteps, s.skippedSteps, s.foundInf],
            [EXPECTED_SCALE[k], EXPECTED_TRACKER[k], EXPECTED_SKIPPED[k], PATTERN[k] !== "F"],
            `after step ${k + 1} (${PATTERN[k]})`,
          );
        }
        // the unscaled norm of finite steps is the norm of the true gradient
        [...PATTERN].forEach((kind, k) => {
          if (kind === "F") {
            const ref = Math.hypot(...coefs(k, kind));
            assert.ok(Math.abs(norms[k] - ref) <= 1e-6 * ref, `norm ${k}: ${norms[k]} vs ${ref}`);
          } else assert.ok(!Number.isFinite(norms[k]));
        });
        const ref = referenceAdamW(PATTERN, 0.5, 0.05);
        const got = await w.toArray();
        ref.forEach((r, i) => assert.ok(Math.abs(got[i] - r) <= 2e-6, `w[${i}] ${got[i]} vs ${r}`));
        opt.dispose();
        scaler.dispose();
      },
    });
  }
}

Deno.test("GradScaler.scale() multiplies the loss and keeps its shape; load() restores a state", async () => {
  const scaler = new GradScaler();
  const loss = tensor([1.5], []);
  const y = scaler.scale(loss);
  assert.deepEqual(y.shape, []);
  assert.equal(await y.item(), 1.5 * 65536);
  scaler.load({ scale: 1024, goodSteps: 7, skippedSteps: 2, foundInf: false });
  assert.deepEqual(await scaler.read(), {
    scale: 1024,
    goodSteps: 7,
    skippedSteps: 2,
    foundInf: false,
  });
  assert.throws(() => new GradScaler({ backoffFactor: 2 }), RangeError);
  assert.throws(() => scaler.load({ scale: -1, goodSteps: 0, skippedSteps: 0, foundInf: false }));
});

Deno.test("GradScaler doubles at most to a finite scale (f32 overflow keeps the old scale)", async () => {
  const w = tensor([1], [1], { requiresGrad: true });
  const opt = new AdamW(new Map([["w", w]]), { lr: 0.01 });
  const scaler = new GradScaler({ initScale: 2 ** 127, growthInterval: 1 });
  scope(() => {
    scaler.scale(sum(mul(w, tensor([1e-30], [1])))).backward();
    scaler.step(opt).dispose();
  });
  assert.equal((await scaler.read()).scale, 2 ** 127);
});
