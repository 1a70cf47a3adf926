/**
 * `webseq info`: the runtime, the WebGPU adapter (description, features,
 * limits) and which device `--device auto` would choose.
 *
 * @module
 */
import { EXIT_OK, parseFlags, printJson, reportError } from "./_common.ts";
import { describeAdapter, isSoftwareAdapter, requestAdapter } from "../gpu/adapter.ts";
import { grantedEnv } from "../tensor/env.ts";

/** Help text. */
export const HELP: string = `webseq info — devices, WebGPU adapter, features and limits

Examples:
  deno task webseq info
  deno run --allow-env cli.ts info --json

Usage: webseq info [--json]

Options:
  --json     one JSON object on stdout

Permissions: --allow-env (XDG_RUNTIME_DIR, DENO_WEBGPU_BACKEND)
`;

/** Runs `webseq info`. */
export async function run(args: string[]): Promise<number> {
  try {
    const { flags } = parseFlags(args, { json: { type: "boolean" } });
    if (flags.help) {
      console.log(HELP);
      return EXIT_OK;
    }
    let adapter: ReturnType<typeof describeAdapter> | null = null;
    let reason: string | null = null;
    try {
      adapter = describeAdapter(await requestAdapter());
    } catch (err) {
      reason = (err as Error).message;
    }
    // as selectBackend decides: software adapters (llvmpipe, lavapipe, SwiftShader) lose to the CPU
    const auto = adapter && !isSoftwareAdapter(adapter) ? "webgpu" : "cpu";
    // the graphics API Deno's WebGPU was asked to use (its own choice when unset)
    const api = grantedEnv("DENO_WEBGPU_BACKEND") || null;
    const report = {
      webseq: "0.1.0",
      deno: Deno.version.deno,
      v8: Deno.version.v8,
      os: Deno.build.os,
      arch: Deno.build.arch,
      cpu_cores: navigator.hardwareConcurrency,
      webgpu: adapter,
      webgpu_backend: api,
      webgpu_unavailable_reason: reason,
      auto_device: auto,
    };
    if (flags.json) {
      printJson(report);
      return EXIT_OK;
    }
    console.log(
      `webseq 0.1.0 on Deno ${report.deno} (${report.os}/${report.arch}, ${report.cpu_cores} cores)`,
    );
    if (adapter) {
      console.log(
        `WebGPU adapter: ${adapter.description}${isSoftwareAdapter(adapter) ? " (software)" : ""}`,
      );
      console.log(`  vendor ${adapter.vendor || "?"}, architecture ${adapter.architecture || "?"}`);
      console.log(
        `  graphics API: ${
          api ?? "Deno's default"
        } (DENO_WEBGPU_BACKEND=gl|vulkan|metal|dx12 picks)`,
      );
      console.log(`  features: ${adapter.features.join(", ") || "none"}`);
      for (const [k, v] of Object.entries(adapter.limits)) console.log(`  ${k.padEnd(36)} ${v}`);
    } else {
      console.log(`WebGPU: unavailable (${reason})`);
    }
    console.log(`--device auto chooses: ${auto}`);
    return EXIT_OK;
  } catch (err) {
    return reportError("info", err);
  }
}
