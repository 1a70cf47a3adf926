/**
 * Runs the tiled attention kernel tests (tests/_attention_tiled_gpu.ts) in a
 * subprocess with `DENO_WEBGPU_BACKEND=vulkan` (see there why). Without a
 * Vulkan adapter the test is skipped with a message, except in CI
 * (CI=true), where that fails: install `mesa-vulkan-drivers` (.ci/run does).
 *
 * @module
 */
import { runOnVulkan } from "./_vulkan.ts";

Deno.test("tiled attention kernels equal the CPU reference (Vulkan subprocess)", async () => {
  await runOnVulkan(new URL("./_attention_tiled_gpu.ts", import.meta.url), "tiled attention");
});
