import assert from "node:assert/strict";
import type { GpuBackend } from "../gpu/backend.ts";
import { clearMatmulTuning, tunedTable } from "../ops/matmul.ts";
import { setTunedVariant } from "../ops/_matmul_variants.ts";
import { DEFAULT_TARGET } from "../ops/_matmul_variants.ts";
import { loadTuneCache, restoreTuneCache, saveTuneCache, tuneCacheKey } from "./tune_cache.ts";

/** Just what the cache reads of a backend: the adapter report. */
function fakeGpu(description: string, maxWorkgroupBytes = 49152): GpuBackend {
  return {
    adapterInfo: {
      description,
      vendor: "4318",
      architecture: "",
      isFallbackAdapter: false,
      features: [],
      limits: {
        maxComputeInvocationsPerWorkgroup: 1024,
        maxComputeWorkgroupStorageSize: maxWorkgroupBytes,
      },
    },
  } as unknown as GpuBackend;
}

const SHAPE = { M: 512, N: 512, K: 8192, transA: true };

Deno.test("saveTuneCache() and loadTuneCache() keep each adapter's choices, merged, in one file", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/sub/tuning.json`;
  const a = fakeGpu("GPU A"), b = fakeGpu("GPU B");
  try {
    setTunedVariant({ ...DEFAULT_TARGET, description: "GPU A" }, SHAPE, "t64x64k16_8x8");
    assert.equal(await saveTuneCache(path, a), 2); // the shape and its class
    setTunedVariant({ ...DEFAULT_TARGET, description: "GPU B" }, SHAPE, "t128x128k16_4x16");
    await saveTuneCache(path, b);
    const file = JSON.parse(await Deno.readTextFile(path));
    assert.equal(file.version, 1);
    assert.deepEqual(Object.keys(file.adapters).sort(), [tuneCacheKey(a), tuneCacheKey(b)].sort());
    assert.match(tuneCacheKey(a), /^GPU A\|4318\|\|inv1024\|wg49152\|codegen\d+\.\d+\|checked$/);
    clearMatmulTuning();
    assert.equal(await loadTuneCache(path, a), 2);
    assert.equal(tunedTable("GPU A")["512x512x8192/1/TN"], "t64x64k16_8x8");
    assert.deepEqual(tunedTable("GPU B"), {});
    // another limit is another key: nothing for it
    assert.equal(await loadTuneCache(path, fakeGpu("GPU A", 16384)), 0);
    assert.equal(await loadTuneCache(`${dir}/missing.json`, a), 0);
  } finally {
    clearMatmulTuning();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loadTuneCache() skips unknown variants and names a file that is no cache", async () => {
  const dir = await Deno.makeTempDir();
  const a = fakeGpu("GPU A");
  try {
    const path = `${dir}/tuning.json`;
    await Deno.writeTextFile(
      path,
      JSON.stringify({
        version: 1,
        adapters: { [tuneCacheKey(a)]: { "1x1x1/1/NN": "no-such-kernel", "2x2x2/1/NN": "legacy" } },
      }),
    );
    assert.equal(await loadTuneCache(path, a), 1);
    await Deno.writeTextFile(path, "{ not json");
    await assert.rejects(() => loadTuneCache(path, a), /tuning\.json: not a tuning cache/);
    await Deno.writeTextFile(path, JSON.stringify({ version: 2, adapters: {} }));
    await assert.rejects(() => loadTuneCache(path, a), SyntaxError);
    // the trainer's wrapper only notes it
    const notes: string[] = [];
    assert.equal(await restoreTuneCache(path, a, (s) => notes.push(s)), 0);
    assert.match(
      notes[0],
      /^kernels: tuning cache not used \(.*not a tuning cache.*\); tuning afresh$/,
    );
  } finally {
    clearMatmulTuning();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("defaultTuneCachePath() is the cache folder's tuning.json when writable, else null", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/probe.ts`;
    await Deno.writeTextFile(
      file,
      `import { defaultTuneCachePath } from "${new URL("./tune_cache.ts", import.meta.url).href}";
console.log(JSON.stringify(defaultTuneCachePath()));`,
    );
    const run = async (perms: string[]) => {
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["run", "--no-check", "--cached-only", ...perms, file],
        env: { WEBSEQ_CACHE: `${dir}/cache` },
        stdout: "piped",
        stderr: "inherit",
      }).output();
      return JSON.parse(new TextDecoder().decode(out.stdout));
    };
    const path = `${dir}/cache/tuning.json`;
    assert.equal(await run(["--allow-env", "--allow-read", `--allow-write=${dir}/cache`]), path);
    // train's documented permissions write only runs/: no cache, and no prompt
    assert.equal(await run(["--allow-env", "--allow-read", "--allow-write=runs"]), null);
    assert.equal(await run(["--allow-env"]), null);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
