/**
 * Adapter and device acquisition: asks for the adapter's real limits (the
 * defaults cap storage bindings at 128 MiB) and the useful features.
 *
 * @module
 */
import { GpuUnavailableError } from "./errors.ts";
import { grantedEnv } from "../tensor/env.ts";

/** What `webseq info` reports about an adapter. */
export interface AdapterReport {
  /** Adapter description (e.g. "NVIDIA H100", "llvmpipe"). */
  description: string;
  /** Vendor string or id. */
  vendor: string;
  /** Architecture string, if any. */
  architecture: string;
  /** Whether it is a software/fallback adapter. */
  isFallbackAdapter: boolean;
  /** Features webseq can use, and all others. */
  features: string[];
  /** The limits that matter for webseq. */
  limits: Record<string, number>;
}

/**
 * Whether an adapter is a software one (Mesa llvmpipe/lavapipe, SwiftShader,
 * or flagged as a fallback adapter): slower than the CPU backend, so
 * `--device auto` skips it and benchmarks and tuners treat it apart.
 */
export function isSoftwareAdapter(
  info: Pick<AdapterReport, "description" | "isFallbackAdapter">,
): boolean {
  return info.isFallbackAdapter || /llvmpipe|lavapipe|swiftshader/i.test(info.description);
}

const LIMIT_NAMES = [
  "maxBufferSize",
  "maxStorageBufferBindingSize",
  "maxStorageBuffersPerShaderStage",
  "maxUniformBufferBindingSize",
  "maxComputeWorkgroupStorageSize",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupSizeX",
  "maxComputeWorkgroupSizeY",
  "maxComputeWorkgroupsPerDimension",
  "minStorageBufferOffsetAlignment",
  "minUniformBufferOffsetAlignment",
] as const;

/**
 * With `XDG_RUNTIME_DIR` unset, Mesa's drivers (llvmpipe, lavapipe and the
 * hardware ones, through libwayland's display probe) print `error:
 * XDG_RUNTIME_DIR is invalid or not set in the environment.` twice when an
 * adapter is requested: harmless, but it reads like a failure on the first
 * `deno task train` of a fresh machine. So, where this process may read and
 * write that variable (never prompting for it), an unset one is set to
 * `/tmp` for this process first: the directory only tells libwayland where a
 * display socket would be, and compute needs none. Returns whether it set it.
 */
export function quietDisplayProbe(): boolean {
  const env = { name: "env", variable: "XDG_RUNTIME_DIR" } as const;
  if (Deno.permissions.querySync(env).state !== "granted") return false;
  if (Deno.env.get(env.variable) !== undefined) return false;
  Deno.env.set(env.variable, "/tmp");
  return true;
}

/** Requests an adapter, or throws GpuUnavailableError. */
export async function requestAdapter(
  powerPreference: GPUPowerPreference = "high-performance",
): Promise<GPUAdapter> {
  if (typeof navigator === "undefined" || !("gpu" in navigator) || !navigator.gpu) {
    throw new GpuUnavailableError("WebGPU is not available in this runtime");
  }
  quietDisplayProbe();
  let adapter: GPUAdapter | null = null;
  try {
    adapter = await navigator.gpu.requestAdapter({ powerPreference });
  } catch (err) {
    throw new GpuUnavailableError(`WebGPU adapter request failed: ${(err as Error).message}`);
  }
  if (!adapter) {
    const api = grantedEnv("DENO_WEBGPU_BACKEND");
    const unknown = unknownGraphicsApis(api);
    throw new GpuUnavailableError(
      unknown.length > 0
        ? `No WebGPU adapter: DENO_WEBGPU_BACKEND=${api} names no graphics API Deno knows (${
          unknown.join(", ")
        }; use ${GRAPHICS_APIS.join(", ")}, or unset it)`
        : api
        ? `No WebGPU adapter found through DENO_WEBGPU_BACKEND=${api} (unset it to let Deno choose, install a GPU driver, or Mesa's llvmpipe/lavapipe for a software one)`
        : "No WebGPU adapter found (install a GPU driver, or Mesa's llvmpipe/lavapipe for a software one)",
    );
  }
  return adapter;
}

/** The graphics API names `DENO_WEBGPU_BACKEND` takes (wgpu's, a comma-separated list). */
export const GRAPHICS_APIS: readonly string[] = ["vulkan", "gl", "metal", "dx12"];

/** wgpu's names and aliases of its graphics APIs. */
const API_NAMES = new Set([
  "vulkan",
  "vk",
  "gl",
  "gles",
  "opengl",
  "metal",
  "mtl",
  "dx12",
  "d3d12",
  "webgpu",
]);

/** The entries of a `DENO_WEBGPU_BACKEND` value that name no graphics API. */
export function unknownGraphicsApis(value: string | undefined): string[] {
  if (!value) return [];
  return value.split(",").map((s) => s.trim().toLowerCase()).filter((s) => !API_NAMES.has(s));
}

/** Describes an adapter for `webseq info`. */
export function describeAdapter(adapter: GPUAdapter): AdapterReport {
  const info = adapter.info;
  const limits: Record<string, number> = {};
  for (const name of LIMIT_NAMES) limits[name] = adapter.limits[name] as number;
  return {
    description: info.description || info.device || "unknown adapter",
    vendor: info.vendor,
    architecture: info.architecture,
    isFallbackAdapter: Boolean((info as { isFallbackAdapter?: boolean }).isFallbackAdapter),
    features: [...adapter.features].sort(),
    limits,
  };
}

/** Requests a device with the adapter's full limits and the useful features. */
export async function requestDevice(adapter: GPUAdapter): Promise<GPUDevice> {
  const requiredLimits: Record<string, number> = {};
  for (const name of LIMIT_NAMES) requiredLimits[name] = adapter.limits[name] as number;
  const wanted: GPUFeatureName[] = [
    "shader-f16",
    "timestamp-query",
    "subgroups",
  ] as GPUFeatureName[];
  const requiredFeatures = wanted.filter((f) => adapter.features.has(f));
  try {
    return await adapter.requestDevice({ requiredLimits, requiredFeatures });
  } catch (err) {
    throw new GpuUnavailableError(`WebGPU device request failed: ${(err as Error).message}`);
  }
}
