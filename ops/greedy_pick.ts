/**
 * Greedy decoding's choice, made where the logits are: for logits `[N, V]`
 * and a done flag per row, each row's first maximum (`torch.argmax`; the
 * host's `argmax` in train/generate.ts), its log-softmax value, and the done
 * flags after this step. A WebGPU decoder feeds the ids straight into its
 * next step and reads the picks back only every few steps: in Deno 2.9.6
 * each readback waits about 12 ms however small (its map callback is polled
 * with a 10 ms sleep), which would otherwise bound greedy decoding at about
 * 80 tokens per second.
 *
 * Inputs `[logits [N, V] f32, done [N] f32 (0 or 1)]`, params `{ eosId,
 * padId }`, outputs:
 * - `ids [N, 1] i32`: the argmax, or `padId` where the row was done;
 * - `picks [N, 2] f32`: (id, log-softmax at id), or (padId, 0) where done;
 * - `done [N] f32`: 1 where the row was done or picked `eosId`.
 *
 * Like the host: ties and NaN-free rows give the first maximum; a row whose
 * first logit is NaN picks 0; a row of −∞ picks 0 with log-probability
 * −log V. The CPU reference works in float64, the GPU in f32.
 *
 * @example
 * ```ts
 * import { greedyPick, tensor } from "@webseq/webseq";
 * const [ids, picks, done] = greedyPick(
 *   tensor([0, 2, 2, 5, 1, 0], [2, 3]),
 *   tensor([0, 0], [2]),
 *   { eosId: 0, padId: 1 },
 * );
 * console.log(await ids.toArray(), await done.toArray()); // [1, 0] [0, 1]
 * ```
 *
 * @module
 */
import { apply, type Tensor } from "../tensor/tensor.ts";
import { type CpuArray, fmtShape, type OpDef, packUniform } from "../tensor/types.ts";
import type { OpEntry } from "./registry.ts";
import { lastAxisRows, rowWorkgroupSize, wgslRowMain, wgslRowReduce } from "./softmax.ts";

/** Parameters of {@linkcode GREEDY_PICK}. */
export interface GreedyPickParams {
  /** End-of-sequence id: a row that picks it is done. */
  eosId: number;
  /** Id a done row gets. */
  padId: number;
}

/** CPU reference: row `r`'s pick from `x` (float64), as train/generate.ts `argmax`/`logSoftmax`. */
function pickRow(x: CpuArray, o: number, V: number): [number, number] {
  let best = 0;
  for (let j = 1; j < V; j++) if (x[o + j] > x[o + best]) best = j;
  let max = -Infinity;
  for (let j = 0; j < V; j++) if (x[o + j] > max) max = x[o + j];
  if (max === -Infinity) return [best, -Math.log(V)];
  let z = 0;
  for (let j = 0; j < V; j++) z += Math.exp(x[o + j] - max);
  return [best, x[o + best] - (max + Math.log(z))];
}

/** See the module doc. */
export const GREEDY_PICK: OpDef<GreedyPickParams> = {
  name: "greedyPick",
  outputs([logits, done]) {
    const [N] = logits.shape.length === 2 ? logits.shape : [-1];
    if (
      logits.shape.length !== 2 || logits.dtype === "i32" || logits.shape[1] < 1 ||
      done.shape.length !== 1 || done.shape[0] !== N || done.dtype === "i32"
    ) {
      throw new TypeError(
        `Cannot greedyPick: logits ${
          fmtShape(logits.shape)
        } ${logits.dtype} must be float [N, V] ` +
          `(V ≥ 1) and done ${fmtShape(done.shape)} ${done.dtype} float [N]`,
      );
    }
    return [
      { shape: [N, 1], dtype: "i32" },
      { shape: [N, 2], dtype: logits.dtype },
      { shape: [N], dtype: logits.dtype },
    ];
  },
  cpu([x, done], [ids, picks, doneOut], info, p) {
    const [N, V] = lastAxisRows(info.inputs[0].shape);
    for (let r = 0; r < N; r++) {
      if (done[r] !== 0) {
        ids[r] = p.padId;
        picks[2 * r] = p.padId;
        picks[2 * r + 1] = 0;
        doneOut[r] = 1;
        continue;
      }
      const [id, logp] = pickRow(x, r * V, V);
      ids[r] = id;
      picks[2 * r] = id;
      picks[2 * r + 1] = logp;
      doneOut[r] = id === p.eosId ? 1 : 0;
    }
  },
  gpu(info, p) {
    const [N, V] = lastAxisRows(info.inputs[0].shape);
    const wg = rowWorkgroupSize(V);
    return {
      kernels: [{
        code: kernelCode(wg),
        bind: [{ in: 0 }, { in: 1 }, { out: 0 }, { out: 1 }, { out: 2 }],
        uniform: packUniform([N, V, p.eosId >>> 0, p.padId >>> 0]),
        workgroups: N <= 65535 ? [N, 1, 1] : [65535, Math.ceil(N / 65535), 1],
      }],
    };
  },
};

const codes = new Map<number, string>();

/**
 * @internal WGSL `write_pick(row, id, logp)`: a row's outputs of a pick op
 * (bindings `ids`, `picks`, `done_out` and `done`; the uniform's `pad` and
 * `eos`): the pad id where the row was done, else the pick, done when it is
 * eos. ops/sample_pick.ts writes its picks with it too.
 */
export const WGSL_WRITE_PICK = `
fn write_pick(row: u32, id: u32, logp: f32) {
  if (done[row] != 0.0) {
    ids[row] = i32(u.pad);
    picks[2u * row] = f32(u.pad);
    picks[2u * row + 1u] = 0.0;
    done_out[row] = 1.0;
  } else {
    ids[row] = i32(id);
    picks[2u * row] = f32(id);
    picks[2u * row + 1u] = logp;
    done_out[row] = select(0.0, 1.0, id == u.eos);
  }
}`;

/**
 * One workgroup per row: the row maximum (NaN skipped), the first index
 * holding it (as the largest −index), Σ exp(x − max); thread 0 writes.
 */
function kernelCode(wg: number): string {
  let code = codes.get(wg);
  if (code) return code;
  code = `
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> done: array<f32>;
@group(0) @binding(2) var<storage, read_write> ids: array<i32>;
@group(0) @binding(3) var<storage, read_write> picks: array<f32>;
@group(0) @binding(4) var<storage, read_write> done_out: array<f32>;
struct U { R: u32, V: u32, eos: u32, pad: u32 }
@group(0) @binding(5) var<uniform> u: U;
${wgslRowReduce(wg)}
${WGSL_WRITE_PICK}
const LOWEST: f32 = -3.4028234663852886e38;
${wgslRowMain(wg)}
  let o = row * u.V;
  var m = LOWEST;
  var found = false; // a value above −∞ (LOWEST stands in for it in the reductions)
  for (var j = lid; j < u.V; j += ${wg}u) {
    let v = x[o + j];
    if (v > m) { m = v; }
    if (v > -3.4e38) { found = true; }
  }
  let best = wg_max(m, lid);
  let seen = wg_max(select(0.0, 1.0, found), lid);
  // the first index holding the maximum: the largest −j among them
  var lead = -f32(u.V);
  for (var j = lid; j < u.V; j += ${wg}u) {
    if (x[o + j] == best) { lead = max(lead, -f32(j)); }
  }
  let at = wg_max(lead, lid);
  var z = 0.0;
  for (var j = lid; j < u.V; j += ${wg}u) { z += exp(x[o + j] - best); }
  let total = wg_sum(z, lid);
  if (lid == 0u) {
    var id = u32(-at);
    var logp = x[o + id] - (best + log(total));
    let x0 = x[o];
    // NaN by its bits: compilers may assume x == x (WGSL allows it)
    let nan0 = (bitcast<u32>(x0) & 0x7fffffffu) > 0x7f800000u;
    if (nan0 || seen == 0.0 || id >= u.V) {
      // NaN first logit, or nothing above −∞: the host's argmax stays at 0
      id = 0u;
      logp = select(x0 - (best + log(total)), -log(f32(u.V)), seen == 0.0);
    }
    write_pick(row, id, logp);
  }
}`;
  codes.set(wg, code);
  return code;
}

/** See the module doc: `[ids [N, 1] i32, picks [N, 2], done [N]]`. */
export function greedyPick(
  logits: Tensor,
  done: Tensor,
  params: GreedyPickParams,
): [Tensor, Tensor, Tensor] {
  const [ids, picks, doneOut] = apply(GREEDY_PICK, [logits, done], params);
  return [ids, picks, doneOut];
}

/** Registry cases: ties, done rows, eos picks, a wide row (several elements per thread). */
export const GREEDY_PICK_ENTRIES: OpEntry[] = [{
  op: GREEDY_PICK,
  cases: [
    {
      label: "ties take the first, done rows pad, eos finishes",
      inputs: [
        { shape: [4, 5], values: [1, 3, 3, 0, 2, 0, 0, 0, 0, 0, -1, 5, 2, 5, 0, 9, 1, 2, 3, 4] },
        { shape: [4], values: [0, 0, 1, 0] },
      ],
      params: { eosId: 0, padId: 4 },
      noGradCheck: true,
    },
    {
      label: "wide rows",
      inputs: [{ shape: [3, 1000], min: -4, max: 4 }, { shape: [3], values: [0, 0, 0] }],
      params: { eosId: 7, padId: 0 },
      noGradCheck: true,
    },
    {
      label: "V = 1",
      inputs: [{ shape: [2, 1] }, { shape: [2], values: [0, 1] }],
      params: { eosId: 0, padId: 3 },
      noGradCheck: true,
    },
  ],
}];
