/**
 * `--device auto|webgpu|cpu` for every subcommand: picks the backend.
 *
 * - `auto`: WebGPU when a hardware adapter exists, else the CPU with a
 *   one-line notice on stderr (unless quiet). Software adapters (Mesa
 *   llvmpipe/lavapipe, flagged `isFallbackAdapter`) are slower than the CPU
 *   backend, so `auto` skips them;
 * - `webgpu`: WebGPU or a one-line error (exit 1 through `reportError`);
 * - `cpu`: the CPU backend.
 *
 * @module
 */
import { sharedGpuBackend } from "../gpu/backend.ts";
import { type AdapterReport, isSoftwareAdapter as isSoftwareReport } from "../gpu/adapter.ts";
import { GpuUnavailableError } from "../gpu/errors.ts";
import { CPU } from "../tensor/cpu_backend.ts";
import type { Backend } from "../tensor/types.ts";
import { UsageError } from "./_common.ts";
import { errorLine } from "../tensor/errors.ts";

/** The values `--device` accepts. */
export type DeviceChoice = "auto" | "webgpu" | "cpu";

/** The choices, for help texts and validation. */
export const DEVICE_CHOICES: readonly DeviceChoice[] = ["auto", "webgpu", "cpu"];

/** Checks a `--device` value (undefined → "auto"); a bad one is a UsageError. */
export function parseDevice(value: string | undefined): DeviceChoice {
  const v = value ?? "auto";
  if (!(DEVICE_CHOICES as readonly string[]).includes(v)) {
    throw new UsageError(`Option --device must be auto, webgpu or cpu, got "${v}"`);
  }
  return v as DeviceChoice;
}

/** Options of {@linkcode selectBackend}. */
export interface SelectBackendOptions {
  /** No notice on stderr when `auto` falls back to the CPU. */
  quiet?: boolean;
}

/**
 * The backend for a `--device` choice. `webgpu` without an adapter throws a
 * {@linkcode GpuUnavailableError} with a one-line message.
 */
export async function selectBackend(
  choice: DeviceChoice,
  opts: SelectBackendOptions = {},
): Promise<Backend> {
  if (choice === "cpu") return CPU;
  let gpu: Backend | null = null;
  let why = "no WebGPU adapter found";
  try {
    gpu = await sharedGpuBackend();
  } catch (err) {
    why = `WebGPU failed: ${errorLine(err)}`;
  }
  if (gpu && (choice === "webgpu" || !isSoftwareAdapter(gpu))) return gpu;
  if (gpu) why = `the WebGPU adapter is a software one (${gpu.description})`;
  if (choice === "webgpu") {
    throw new GpuUnavailableError(
      `--device webgpu: ${why} (use --device auto or cpu, or install Mesa's llvmpipe)`,
    );
  }
  if (!opts.quiet) {
    console.error(
      `webseq: ${why}; running on the CPU${gpu ? " (--device webgpu uses it anyway)" : ""}`,
    );
  }
  return CPU;
}

/** Whether a backend is a software WebGPU adapter (llvmpipe, lavapipe, SwiftShader); false for the CPU. */
export function isSoftwareAdapter(backend: Backend): boolean {
  const info = (backend as { adapterInfo?: AdapterReport }).adapterInfo;
  return backend.kind === "webgpu" && info !== undefined && isSoftwareReport(info);
}
