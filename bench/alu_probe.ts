/**
 * Arithmetic throughput of the adapter as WGSL reaches it: f32 and f16 FMAs
 * (scalar, vec2, vec4, a splat multiplicand as the matmul kernels write
 * them, a separate multiply and add) and the f16 ↔ f32 conversions, each in
 * a loop of independent chains with no memory traffic. It answers what the
 * matmul kernels cannot say alone: whether the driver packs f16 FMAs two to
 * an instruction (twice the f32 rate on NVIDIA, AMD, Apple), and what a
 * conversion costs next to an FMA.
 *
 *   deno run -A bench/alu_probe.ts [--iters N] [--workgroups N] [--json]
 *
 * prints one JSON line per probe: `ms` per dispatch (GPU timestamps where the
 * adapter has them), `gops` giga lane updates per second (one update: one
 * FMA, or one step of the conversion chains below), `gflops` (2 per FMA
 * update). Figures are for comparing probes with each other in one run.
 *
 * Each probe runs `R` = 8 chains of `vecN<T>` per thread, `iters` steps each:
 * - fma: `x = fma(x, m, a)` (m = 0.5, a = 1, so x stays in [0, 2]);
 * - splat: `x = fma(x, vecN<T>(m.x), a)`;
 * - muladd: `x = x * m + a` (left to the compiler to fuse);
 * - cvt (T = f16): `h = vec4<f16>(f); f = fma(vec4<f32>(h), m, a)`, two
 *   conversions per lane and step;
 * - flush (T = f16): `c += vec4<f32>(h); h = fma(h, m, a)`, the
 *   f16-accumulating matmul's group flush, one conversion per lane and step.
 *
 * {@linkcode aluProbeReference} computes each probe's output on the CPU
 * (exact in the test's few steps), bench/alu_probe_test.ts compares.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { type GpuBackend, sharedGpuBackend } from "../gpu/backend.ts";
import { roundToF16 } from "../ops/matmul_f16.ts";
import { timeKernel } from "./_kernel_timing.ts";

/** One probe: its loop body and element type. */
export interface AluProbe {
  /** Name in the output, e.g. "f16_fma_v4". */
  name: string;
  /** Element type of the chains. */
  type: "f32" | "f16";
  /** Lanes per chain value: 1, 2 or 4. */
  width: 1 | 2 | 4;
  /** Loop body (see the module doc). */
  form: "fma" | "splat" | "muladd" | "cvt" | "flush";
}

/** Chains per thread. */
export const ALU_CHAINS = 8;
/** Threads per workgroup. */
export const ALU_THREADS = 256;

/** Every probe, f32 first. */
export const ALU_PROBES: readonly AluProbe[] = [
  { name: "f32_fma_v4", type: "f32", width: 4, form: "fma" },
  { name: "f32_splat_v4", type: "f32", width: 4, form: "splat" },
  { name: "f32_fma_s", type: "f32", width: 1, form: "fma" },
  { name: "f16_fma_v4", type: "f16", width: 4, form: "fma" },
  { name: "f16_fma_v2", type: "f16", width: 2, form: "fma" },
  { name: "f16_fma_s", type: "f16", width: 1, form: "fma" },
  { name: "f16_splat_v4", type: "f16", width: 4, form: "splat" },
  { name: "f16_muladd_v4", type: "f16", width: 4, form: "muladd" },
  { name: "f16_cvt_v4", type: "f16", width: 4, form: "cvt" },
  { name: "f16_flush_v4", type: "f16", width: 4, form: "flush" },
];

/** The WGSL of one probe: `out[i]` (vec4<f32>) holds thread i's chains summed lane by lane. */
export function aluProbeWgsl(p: AluProbe): string {
  const { type: T, width: N, form } = p;
  if ((form === "cvt" || form === "flush") && (T !== "f16" || N !== 4)) {
    throw new TypeError(`aluProbeWgsl: the ${form} probe is f16 vec4`);
  }
  const V = N === 1 ? T : `vec${N}<${T}>`;
  const lanes = (v: string) =>
    // a chain value as vec4<f32>, missing lanes 0
    N === 4
      ? `vec4<f32>(${v})`
      : N === 2
      ? `vec4<f32>(vec2<f32>(${v}), 0.0, 0.0)`
      : `vec4<f32>(f32(${v}), 0.0, 0.0, 0.0)`;
  const R = Array.from({ length: ALU_CHAINS }, (_, r) => r);
  // m, a read from storage (never constants the compiler could fold), per type and width
  const pick = (t: string) =>
    N === 4 ? `vec4<${t}>(pv.m)` : N === 2 ? `vec2<${t}>(pv.m.xy)` : `${t}(pv.m.x)`;
  const pickA = (t: string) =>
    N === 4 ? `vec4<${t}>(pv.a)` : N === 2 ? `vec2<${t}>(pv.a.xy)` : `${t}(pv.a.x)`;
  const decl: string[] = [`let m = ${pick(T)};`, `let a = ${pickA(T)};`];
  const step: string[] = [];
  let result: string;
  if (form === "cvt") {
    decl.push(`let m32 = vec4<f32>(pv.m);`, `let a32 = vec4<f32>(pv.a);`);
    for (const r of R) {
      decl.push(`var f${r} = vec4<f32>(f32(${r}) * 0.25);`, `var h${r} = vec4<f16>();`);
    }
    for (const r of R) {
      step.push(`h${r} = vec4<f16>(f${r}); f${r} = fma(vec4<f32>(h${r}), m32, a32);`);
    }
    result = R.map((r) => `f${r}`).join(" + ");
  } else if (form === "flush") {
    for (const r of R) {
      decl.push(`var h${r} = vec4<f16>(f16(${r}) * 0.25h);`, `var c${r} = vec4<f32>();`);
    }
    for (const r of R) step.push(`c${r} += vec4<f32>(h${r}); h${r} = fma(h${r}, m, a);`);
    result = R.map((r) => `(c${r} + vec4<f32>(h${r}))`).join(" + ");
  } else {
    for (const r of R) decl.push(`var x${r} = ${V}(${T}(${r}) * ${T}(0.25));`);
    if (form === "splat") decl.push(`let ms = ${V}(m${N === 1 ? "" : ".x"});`);
    const body = (x: string) =>
      form === "fma" ? `fma(${x}, m, a)` : form === "splat" ? `fma(${x}, ms, a)` : `${x} * m + a`;
    for (const r of R) step.push(`x${r} = ${body(`x${r}`)};`);
    result = R.map((r) => lanes(`x${r}`)).join(" + ");
  }
  return `${T === "f16" ? "enable f16;\n" : ""}// alu probe ${p.name}
struct P { m: vec4<f32>, a: vec4<f32> }
@group(0) @binding(0) var<storage, read> pv: P;
@group(0) @binding(1) var<storage, read_write> out: array<vec4<f32>>;
struct U { iters: u32 }
@group(0) @binding(2) var<uniform> u: U;
@compute @workgroup_size(${ALU_THREADS})
fn main(@builtin(global_invocation_id) gid: vec3u) {
  ${decl.join("\n  ")}
  for (var it = 0u; it < u.iters; it++) {
    ${step.join("\n    ")}
  }
  out[gid.x] = ${result};
}`;
}

/**
 * What every thread of probe `p` writes after `iters` steps (m = 0.5, a =
 * 1): the same recurrences on the CPU, f16 values rounded by
 * {@linkcode roundToF16}, f32 ones by `Math.fround`, the chains summed in
 * order. Exact while the chains stay exactly representable (a few steps).
 */
export function aluProbeReference(p: AluProbe, iters: number): number[] {
  const f32 = Math.fround, r16 = roundToF16;
  const rt = p.type === "f16" ? r16 : f32;
  let sum = 0;
  for (let r = 0; r < ALU_CHAINS; r++) {
    let v: number;
    if (p.form === "cvt") {
      let f = f32(r * 0.25);
      for (let i = 0; i < iters; i++) f = f32(r16(f) * 0.5 + 1);
      v = f;
    } else if (p.form === "flush") {
      let h = r16(r * 0.25), c = 0;
      for (let i = 0; i < iters; i++) c = f32(c + h), h = r16(h * 0.5 + 1);
      v = f32(c + h);
    } else {
      let x = rt(r * 0.25);
      for (let i = 0; i < iters; i++) x = rt(x * 0.5 + 1);
      v = x;
    }
    sum = r === 0 ? v : f32(sum + v);
  }
  // lanes past the probe's width stay 0
  return [0, 1, 2, 3].map((l) => (l < p.width || p.form === "cvt" || p.form === "flush" ? sum : 0));
}

/** Options of {@linkcode runAluProbe}. */
export interface AluProbeOptions {
  /** Loop steps per chain (default 4096). */
  iters?: number;
  /** Workgroups of {@linkcode ALU_THREADS} threads (default 1024). */
  workgroups?: number;
  /** Timed dispatches, their median reported (default 5). */
  repeats?: number;
}

/** One probe's figures. */
export interface AluProbeResult {
  /** Probe name. */
  probe: string;
  /** Milliseconds per dispatch (median). */
  ms: number;
  /** "timestamp" (GPU timestamps) or "wallclock". */
  timing: "timestamp" | "wallclock";
  /** Giga lane updates per second. */
  gops: number;
  /** GFLOP/s (2 per FMA update; null for the conversion probes). */
  gflops: number | null;
  /** Thread 0's output, for checking against {@linkcode aluProbeReference}. */
  out: number[];
}

/** Runs probe `p` on `gpu`'s device and times it. */
export async function runAluProbe(
  gpu: GpuBackend,
  p: AluProbe,
  opts: AluProbeOptions = {},
): Promise<AluProbeResult> {
  const iters = opts.iters ?? 4096, wgs = opts.workgroups ?? 1024, repeats = opts.repeats ?? 5;
  if (wgs > gpu.device.limits.maxComputeWorkgroupsPerDimension) {
    throw new RangeError(
      `${p.name}: ${wgs} workgroups exceed the adapter's ${gpu.device.limits.maxComputeWorkgroupsPerDimension}`,
    );
  }
  if (p.type === "f16" && !gpu.hasF16) {
    throw new TypeError(`${p.name}: the adapter has no shader-f16`);
  }
  const dev = gpu.device;
  const threads = wgs * ALU_THREADS;
  const module = dev.createShaderModule({ code: aluProbeWgsl(p) });
  const pipeline = dev.createComputePipeline({
    layout: "auto",
    compute: { module, entryPoint: "main" },
  });
  const params = dev.createBuffer({
    size: 32,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
  });
  dev.queue.writeBuffer(params, 0, new Float32Array([0.5, 0.5, 0.5, 0.5, 1, 1, 1, 1]));
  const out = dev.createBuffer({
    size: threads * 16,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC,
  });
  const uni = dev.createBuffer({
    size: 16,
    usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
  });
  dev.queue.writeBuffer(uni, 0, new Uint32Array([iters, 0, 0, 0]));
  const group = dev.createBindGroup({
    layout: pipeline.getBindGroupLayout(0),
    entries: [params, out, uni].map((buffer, binding) => ({ binding, resource: { buffer } })),
  });
  try {
    const { ms, timing, first } = await timeKernel(dev, pipeline, group, [wgs], out, 16, repeats);
    const updates = threads * ALU_CHAINS * p.width * iters;
    const gops = updates / (ms * 1e6);
    const fma = p.form !== "cvt" && p.form !== "flush";
    return {
      probe: p.name,
      ms,
      timing,
      gops,
      gflops: fma ? 2 * gops : null,
      out: Array.from(new Float32Array(first)),
    };
  } finally {
    for (const b of [params, out, uni]) b.destroy();
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      iters: { type: "string" },
      workgroups: { type: "string" },
      json: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log(`Arithmetic throughput of the WebGPU adapter: f32/f16 FMAs and conversions.

  deno run -A bench/alu_probe.ts --json
  deno run -A bench/alu_probe.ts --iters 1024 --workgroups 256

Options:
  --iters N        loop steps per chain (default 4096)
  --workgroups N   workgroups of ${ALU_THREADS} threads (default 1024)
  --json           JSON lines (the default output too)`);
    Deno.exit(0);
  }
  const int = (s: string | undefined, what: string) => {
    if (s === undefined) return undefined;
    const n = Number(s);
    if (!Number.isInteger(n) || n < 1) {
      console.error(`alu_probe: --${what} takes a positive integer, got "${s}"`);
      Deno.exit(2);
    }
    return n;
  };
  const iters = int(values.iters, "iters"), workgroups = int(values.workgroups, "workgroups");
  const gpu = await sharedGpuBackend();
  if (!gpu) {
    console.error("alu_probe: no WebGPU adapter");
    Deno.exit(1);
  }
  for (const p of ALU_PROBES) {
    const base = { kind: "alu_probe", device: gpu.description, probe: p.name };
    if (p.type === "f16" && !gpu.hasF16) {
      console.log(JSON.stringify({ ...base, skipped: "the adapter has no shader-f16" }));
      continue;
    }
    try {
      const r = await runAluProbe(gpu, p, { iters, workgroups });
      const round = (x: number | null) => (x === null ? null : Math.round(x * 1000) / 1000);
      console.log(JSON.stringify({
        ...base,
        timing: r.timing,
        ms: round(r.ms),
        gops: round(r.gops),
        gflops: round(r.gflops),
      }));
    } catch (err) {
      console.log(
        JSON.stringify({ ...base, skipped: String((err as Error).message).split("\n")[0] }),
      );
    }
  }
}
