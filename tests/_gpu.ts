/**
 * The GPU gate for tests, computed once: the shared WebGPU backend, or null
 * when no adapter exists. In CI (CI=true) a missing adapter is a failure,
 * not a skip: CI has Mesa's software adapter, so GPU tests must run there.
 *
 * @module
 */
import { type GpuBackend, sharedGpuBackend } from "../gpu/backend.ts";

/** The test GPU backend (null: no adapter, tests skip outside CI). */
export const GPU: GpuBackend | null = await sharedGpuBackend();

if (!GPU && Deno.env.get("CI") === "true") {
  throw new Error(
    "CI=true but no WebGPU adapter was found: GPU tests must run in CI (Mesa llvmpipe)",
  );
}

/** `ignore` option for GPU-only tests. */
export const NO_GPU: boolean = GPU === null;
