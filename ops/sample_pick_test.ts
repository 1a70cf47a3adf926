import assert from "node:assert/strict";
import "./mod.ts";
import { tensor } from "../tensor/tensor.ts";
import { CPU } from "../tensor/cpu_backend.ts";
import type { Backend } from "../tensor/types.ts";
import { makeRng } from "../tensor/rng.ts";
import { GPU, NO_GPU } from "../tests/_gpu.ts";
import {
  applyTemperature,
  applyTopK,
  applyTopP,
  logSoftmax,
  sampleIndex,
  softmax,
} from "../train/generate.ts";
import {
  kthLargest,
  logSumExp,
  rowsLogSumExp,
  samplePick,
  type SamplePickParams,
} from "./sample_pick.ts";

type Filters = Omit<SamplePickParams, "eosId" | "padId">;

/** The host's sampling choice for one row without penalties (train/generate.ts greedyOrSample). */
function hostPick(row: Float32Array, u: number, f: Filters): [number, number] {
  const logp = logSoftmax(row);
  const w = row.slice();
  applyTemperature(w, f.temperature);
  applyTopK(w, f.topK);
  applyTopP(w, f.topP);
  const id = sampleIndex(w, () => u);
  return [id, logp[id]];
}

/**
 * The distance of the nearest cumulative mass that decides the row (top-p's
 * sums in descending order up to p, the draw's sums up to u) from p or u: f32
 * may decide otherwise than float64 where it is below about 1e-6.
 */
function margin(row: Float32Array, u: number, f: Filters): number {
  const w = row.slice();
  applyTemperature(w, f.temperature);
  applyTopK(w, f.topK);
  let m = Infinity;
  if (f.topP < 1) {
    const probs = softmax(w);
    const order = Array.from({ length: w.length }, (_, i) => i)
      .sort((a, b) => (w[b] - w[a]) || a - b);
    let cum = 0;
    for (const i of order) {
      cum += probs[i];
      m = Math.min(m, Math.abs(cum - f.topP));
      if (cum >= f.topP) break;
    }
  }
  applyTopP(w, f.topP);
  let cum = 0;
  for (const q of softmax(w)) {
    if (q <= 0) continue;
    cum += q;
    m = Math.min(m, Math.abs(cum - u));
    if (u < cum) break;
  }
  return m;
}

/** A uniform [0, 1) draw that f32 holds exactly (as sampleOnDevice uploads it). */
const draw = (rng: () => number) => Math.min(Math.fround(rng()), 1 - 2 ** -24);

/** Random rows [N, V]: smooth, with ties (halves), with −∞ entries, and some rows −∞ throughout. */
function randomRows(rng: () => number, N: number, V: number): Float32Array {
  const x = new Float32Array(N * V);
  for (let r = 0; r < N; r++) {
    const style = r % 4;
    for (let j = 0; j < V; j++) {
      const v = rng() * 8 - 4;
      x[r * V + j] = style === 1 ? Math.round(v * 2) / 2 : v;
      if (style === 2 && rng() < 0.3) x[r * V + j] = -Infinity;
      if (style === 3 && r % 8 === 3) x[r * V + j] = -Infinity;
    }
  }
  return x;
}

/** Random cases: (V, filters) pairs covering every filter on and off, and the k ≥ V edges. */
function randomCases(seed: number, count: number): { V: number; f: Filters }[] {
  const rng = makeRng(seed);
  const Vs = [1, 2, 7, 33, 300];
  const temps = [1, 0.7, 1.6];
  const topPs = [1, 0.9, 0.5, 0, 0.999];
  const pick = <T>(xs: T[]) => xs[Math.floor(rng() * xs.length)];
  return Array.from({ length: count }, (_, i) => {
    const V = Vs[i % Vs.length];
    const topK = pick([0, 1, 3, V - 1, V, V + 5].filter((k) => k >= 0));
    return { V, f: { temperature: pick(temps), topK, topP: pick(topPs) } };
  });
}

/** Runs samplePick on `be` and returns host arrays. */
async function run(
  be: Backend,
  x: Float32Array,
  done: number[],
  u: number[],
  p: SamplePickParams,
): Promise<{ ids: number[]; picks: number[]; done: number[] }> {
  const N = done.length;
  const [ids, picks, d] = samplePick(
    tensor(x, [N, x.length / N], { backend: be }),
    tensor(done, [N], { backend: be }),
    tensor(u, [N], { backend: be }),
    p,
  );
  const out = {
    ids: Array.from(await ids.data()),
    picks: Array.from(await picks.data()),
    done: Array.from(await d.data()),
  };
  for (const t of [ids, picks, d]) t.dispose();
  return out;
}

Deno.test("samplePick() on the CPU equals the host's temperature, top-k, top-p and sampleIndex", async () => {
  const rng = makeRng(11);
  const N = 16;
  for (const { V, f } of randomCases(3, 150)) {
    const x = randomRows(rng, N, V);
    const u = Array.from({ length: N }, () => draw(rng));
    const done = Array.from({ length: N }, (_, r) => (r % 7 === 5 ? 1 : 0));
    const p = { eosId: 1, padId: 0, ...f };
    const got = await run(CPU, x, done, u, p);
    for (let r = 0; r < N; r++) {
      const at = `V ${V} ${JSON.stringify(f)} row ${r}`;
      if (done[r]) {
        const padded = [got.ids[r], got.picks[2 * r], got.picks[2 * r + 1], got.done[r]];
        assert.deepEqual(padded, [0, 0, 0, 1], at);
        continue;
      }
      const [id, logp] = hostPick(x.subarray(r * V, (r + 1) * V), u[r], f);
      assert.equal(got.ids[r], id, at);
      assert.equal(got.picks[2 * r], id, at);
      assert.equal(got.picks[2 * r + 1], Math.fround(logp), at);
      assert.equal(got.done[r], id === 1 ? 1 : 0, at);
    }
  }
});

Deno.test("samplePick() keeps top-p's ties in index order and samples a −∞ row uniformly", async () => {
  for (const be of GPU ? [CPU, GPU] : [CPU]) {
    // four equal values with probability 0.229 each: p 0.5 keeps the first three
    const ties = [1, 1, 1, 1, 0];
    let got = await run(be, Float32Array.from(ties), [0], [0.99], {
      eosId: 9,
      padId: 0,
      temperature: 1,
      topK: 0,
      topP: 0.5,
    });
    assert.equal(got.ids[0], 2, be.kind);
    // top-k 2 of ties keeps all four: u 0.99 reaches the fourth
    got = await run(be, Float32Array.from(ties), [0], [0.99], {
      eosId: 9,
      padId: 0,
      temperature: 1,
      topK: 2,
      topP: 1,
    });
    assert.equal(got.ids[0], 3, be.kind);
    // wide: 10 ones after 590 zeros, top-p keeps the ones and the first 298 zeros, so the
    // boundary falls inside a thread's chunk (3 indices each); the draw lands past the kept
    // zeros, in the first one (index 590)
    const wide = Float32Array.from({ length: 600 }, (_, j) => (j >= 590 ? 1 : 0));
    const z = Math.exp(-1);
    const all = 10 + 590 * z, kept = 10 + 298 * z;
    got = await run(be, wide, [0], [Math.fround((299.5 * z) / kept)], {
      eosId: 9,
      padId: 0,
      temperature: 1,
      topK: 0,
      topP: (10 + 297.5 * z) / all,
    });
    assert.equal(got.ids[0], 590, be.kind);
    // top-p 0 takes the first maximum; top-k 1 keeps both maxima
    for (const [f, want] of [[{ topK: 0, topP: 0 }, 1], [{ topK: 1, topP: 1 }, 3]] as const) {
      got = await run(be, Float32Array.from([0, 3, 1, 3]), [0], [0.999], {
        eosId: 9,
        padId: 0,
        temperature: 0.5,
        ...f,
      });
      assert.equal(got.ids[0], want, `${be.kind} ${JSON.stringify(f)}`);
    }
    // −∞ everywhere: uniform over V = 5 (u 0.7 → index 3), log-probability −log 5; eos finishes
    got = await run(be, new Float32Array(10).fill(-Infinity), [0, 0], [0.7, 0.1], {
      eosId: 3,
      padId: 0,
      temperature: 0.8,
      topK: 2,
      topP: 0.3,
    });
    assert.deepEqual(got.ids, [3, 0], be.kind);
    assert.deepEqual(got.done, [1, 0], be.kind);
    assert.ok(Math.abs(got.picks[1] + Math.log(5)) < 1e-6, `${be.kind}: ${got.picks[1]}`);
    // −∞ entries are never drawn (u 0.01 skips index 0); a done row pads
    const row = [-Infinity, 2, -Infinity, 2, 5, 5];
    got = await run(be, Float32Array.from([...row, ...row]), [0, 1], [0.01, 0.2], {
      eosId: 9,
      padId: 7,
      temperature: 1,
      topK: 0,
      topP: 1,
    });
    const logp = Math.fround(logSoftmax(Float32Array.from(row))[1]);
    assert.deepEqual(
      [got.ids, got.done, got.picks[2], got.picks[3]],
      [[1, 7], [0, 1], 7, 0],
      be.kind,
    );
    assert.ok(Math.abs(got.picks[1] - logp) < 1e-6, `${be.kind}: ${got.picks[1]} vs ${logp}`);
  }
});

Deno.test({
  name: "samplePick() on WebGPU equals the CPU reference on random rows",
  ignore: NO_GPU,
  fn: async () => {
    const rng = makeRng(29);
    const N = 12;
    let checked = 0, differ = 0;
    for (const { V, f } of randomCases(5, 60)) {
      const x = randomRows(rng, N, V);
      const u = Array.from({ length: N }, () => draw(rng));
      const done = Array.from({ length: N }, (_, r) => (r % 5 === 4 ? 1 : 0));
      const p = { eosId: 2, padId: 1, ...f };
      const want = await run(CPU, x, done, u, p);
      const got = await run(GPU!, x, done, u, p);
      for (let r = 0; r < N; r++) {
        const at = `V ${V} ${JSON.stringify(f)} row ${r}: gpu ${got.ids[r]} cpu ${want.ids[r]}`;
        // a row decided by a cumulative sum within 1e-5 of u or p may go either way in f32
        // (exact ties, as two equal values and p 0.5, mostly go the same way): counted, not failed
        if (!done[r] && margin(x.subarray(r * V, (r + 1) * V), u[r], f) < 1e-5) {
          if (got.ids[r] !== want.ids[r]) differ++;
          continue;
        }
        checked++;
        assert.equal(got.ids[r], want.ids[r], at);
        assert.equal(got.picks[2 * r], want.picks[2 * r], at);
        assert.equal(got.done[r], want.done[r], at);
        assert.ok(Math.abs(got.picks[2 * r + 1] - want.picks[2 * r + 1]) < 1e-4, at);
      }
    }
    assert.ok(
      differ * 100 < checked,
      `${differ} rows differ within rounding, ${checked} checked`,
    );
  },
});

Deno.test("samplePick() rejects bad shapes and parameters with one-line errors", () => {
  const p = { eosId: 0, padId: 0, temperature: 1, topK: 0, topP: 1 };
  const x = tensor([1, 2, 3, 4], [2, 2]);
  const two = tensor([0, 0], [2]);
  assert.throws(
    () => samplePick(tensor([1, 2, 3], [3]), tensor([0, 0, 0], [3]), tensor([0, 0, 0], [3]), p),
    /Cannot samplePick: logits \[3\] f32 must be float \[N, V\]/,
  );
  assert.throws(
    () => samplePick(x, tensor([0], [1]), two, p),
    /done \[1\] f32 and u \[2\] f32 float \[N\]/,
  );
  assert.throws(() => samplePick(x, two, tensor([0, 0], [2], { dtype: "i32" }), p), /u \[2\] i32/);
  assert.throws(() => samplePick(x, two, two, { ...p, temperature: 0 }), RangeError);
  assert.throws(
    () => samplePick(x, two, two, { ...p, topP: 1.5 }),
    /topP must be in \[0, 1\], got 1.5/,
  );
  assert.throws(() => samplePick(x, two, two, { ...p, topK: 1.5 }), TypeError);
  assert.throws(() => samplePick(x, two, two, { ...p, topK: -1 }), /topK must be at least 0/);
});

Deno.test("kthLargest() equals the sort it replaces, with ties, ±0, ±∞ and NaN", () => {
  const rng = makeRng(11);
  const pool = [0, -0, 1, -1, 2.5, Infinity, -Infinity, NaN];
  for (let trial = 0; trial < 400; trial++) {
    const n = 1 + Math.floor(rng() * 40);
    // from a small pool (many ties) or continuous values
    const x = Float32Array.from(
      { length: n },
      () => trial % 2 ? pool[Math.floor(rng() * pool.length)] : rng() * 10 - 5,
    );
    for (let k = 1; k <= n; k++) {
      const want = Float64Array.from(x).sort()[n - k];
      const got = kthLargest(x, k);
      // -0 and 0 compare equal in the top-k filter (logits[i] < kth)
      assert.ok(
        got === want || Object.is(got, want),
        `k=${k} of [${x}]: ${got}, sort gives ${want}`,
      );
    }
  }
});

Deno.test("applyTopP() on a top-k row keeps what a sort of the whole row keeps", () => {
  const rng = makeRng(12);
  for (let trial = 0; trial < 50; trial++) {
    const row = Float32Array.from({ length: 300 }, () => Math.floor(rng() * 40) / 4 - 5);
    applyTopK(row, 1 + Math.floor(rng() * 60));
    const p = rng();
    // the full-row reference: every index ordered, as before the −∞ entries were skipped
    const want = row.slice();
    const probs = softmax(want);
    const order = Array.from({ length: want.length }, (_, i) => i)
      .sort((a, b) => (want[b] - want[a]) || a - b);
    let cum = 0, keep = 0;
    while (keep < order.length) {
      cum += probs[order[keep++]];
      if (cum >= p) break;
    }
    for (let r = keep; r < order.length; r++) want[order[r]] = -Infinity;
    applyTopP(row, p);
    assert.deepEqual(row, want);
  }
});

Deno.test("rowsLogSumExp() gives each row's logSumExp() bit for bit, with ±∞ and NaN rows", () => {
  const rng = makeRng(13);
  const V = 1000, N = 80; // 80k values: cut into tasks on the CPU threads
  const x = Float32Array.from({ length: N * V }, () => rng() * 20 - 10);
  for (let j = 0; j < V; j += 3) x[V + j] = -Infinity; // row 1: a third masked
  x.fill(-Infinity, 2 * V, 3 * V); // row 2: all −∞
  x[3 * V + 7] = NaN; // row 3: a NaN among finite values
  x.fill(-Infinity, 4 * V, 5 * V);
  x[4 * V + 5] = NaN; // row 4: a NaN among −∞
  x[5 * V + 9] = Infinity; // row 5: +∞
  x[6 * V + 2] = 88; // row 6: exp(x − max) underflows for most
  for (const [rows, width] of [[N, V], [1, 1], [3, 1]] as const) {
    const got = rowsLogSumExp(x, rows, width);
    for (let r = 0; r < rows; r++) {
      const want = logSumExp(x.subarray(r * width, (r + 1) * width));
      assert.ok(Object.is(got[r], want), `row ${r} of ${rows}×${width}: ${got[r]} vs ${want}`);
    }
  }
});
