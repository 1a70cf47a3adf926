/**
 * Runs the f16 WebGPU tests (tests/_f16_gpu.ts) in a subprocess with
 * `DENO_WEBGPU_BACKEND=vulkan`: Mesa's lavapipe has shader-f16, the GL
 * llvmpipe adapter the rest of the suite uses has not, and the backend of a
 * process is fixed once chosen. Without any shader-f16 adapter the test is
 * skipped with a message, except in CI (CI=true), where that fails: install
 * `mesa-vulkan-drivers` (.ci/run does).
 *
 * @module
 */
import { runOnVulkan } from "./_vulkan.ts";

Deno.test("f16 WebGPU kernels equal their CPU references (lavapipe subprocess)", async () => {
  await runOnVulkan(new URL("./_f16_gpu.ts", import.meta.url), "f16 GPU");
});
