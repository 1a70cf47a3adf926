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
import assert from "node:assert/strict";

const NO_F16_EXIT = 3;

Deno.test("f16 WebGPU kernels equal their CPU references (lavapipe subprocess)", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "test",
      // the parent already loaded every dependency; a device machine has no registry
      "--cached-only",
      "--allow-read",
      "--allow-write",
      "--allow-env",
      "--allow-net=127.0.0.1",
      "--allow-run",
      new URL("./_f16_gpu.ts", import.meta.url).pathname,
    ],
    env: {
      DENO_WEBGPU_BACKEND: "vulkan",
      XDG_RUNTIME_DIR: Deno.env.get("XDG_RUNTIME_DIR") ?? "/tmp",
    },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  if (out.code === NO_F16_EXIT) {
    assert.ok(
      Deno.env.get("CI") !== "true",
      `CI=true but no shader-f16 adapter: ${
        text.trim().split("\n").pop()
      } (apt-get install mesa-vulkan-drivers)`,
    );
    console.warn(`SKIPPED f16 GPU tests: ${text.trim().split("\n").pop()}`);
    return;
  }
  assert.equal(out.code, 0, text.slice(-4000));
});
