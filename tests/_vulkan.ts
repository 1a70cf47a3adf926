/**
 * Runs a test module in a `deno test` subprocess with
 * `DENO_WEBGPU_BACKEND=vulkan` (a process's WebGPU backend is fixed once
 * chosen; the main suite uses GL llvmpipe). Exit code 3 from the module means
 * it found no suitable adapter: a skip with a message, except in CI
 * (CI=true), where it fails: install `mesa-vulkan-drivers` (.ci/run does).
 *
 * @module
 */
import assert from "node:assert/strict";

/** Exit code of a module that found no suitable adapter. */
export const NO_ADAPTER_EXIT = 3;

/** Runs `module`'s tests on the Vulkan backend; `what` names them in skip and failure messages. */
export async function runOnVulkan(module: URL, what: string): Promise<void> {
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
      module.pathname,
    ],
    env: {
      DENO_WEBGPU_BACKEND: "vulkan",
      XDG_RUNTIME_DIR: Deno.env.get("XDG_RUNTIME_DIR") ?? "/tmp",
    },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  if (out.code === NO_ADAPTER_EXIT) {
    const why = text.trim().split("\n").pop();
    assert.ok(
      Deno.env.get("CI") !== "true",
      `CI=true but ${what} found no adapter: ${why} (apt-get install mesa-vulkan-drivers)`,
    );
    console.warn(`SKIPPED ${what} tests: ${why}`);
    return;
  }
  assert.equal(out.code, 0, text.slice(-4000));
}
