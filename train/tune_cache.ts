/**
 * The kernel tuning cache: the tuner's choices (ops/autotune.ts
 * `autotuneStep`: matmul variants and attention kernels) saved per adapter in one JSON file, so a second
 * `train` or `bench` on the same GPU starts without the tuning pause (about
 * 35 s for `base` on an NVIDIA H200). Default file: `tuning.json` in the
 * webseq cache folder (data/cache_dir.ts), used only where read and write
 * permission for it is already granted (no prompt; `train`'s documented
 * permissions write only `runs/`): add `--allow-write=runs,$HOME/.cache/webseq`
 * or name a file with `--tune-cache`.
 *
 * The file: `{ "version": 1, "adapters": { "<key>": { "<shape key>":
 * "<variant>", "attention|<geometry class>": "<kernel>" } } }`, the key naming the adapter (description, vendor,
 * architecture, limits) and the kernel generator's version, so a driver
 * reporting another architecture, another card or new kernels tune again.
 * Writes are atomic (train/atomic.ts) and merge with what the file holds.
 *
 * @example
 * ```ts ignore
 * import { loadTuneCache, saveTuneCache } from "@webseq/webseq";
 * await loadTuneCache("runs/tuning.json", gpu); // before the first step
 * // ... autotuneStep(gpu, step) ...
 * await saveTuneCache("runs/tuning.json", gpu); // after it tuned something
 * ```
 *
 * @module
 */
import type { GpuBackend } from "../gpu/backend.ts";
import { loadTunedTable, MATMUL_CODEGEN_VERSION, tunedTable } from "../ops/matmul.ts";
import {
  ATTENTION_CODEGEN_VERSION,
  attentionTunedTable,
  loadAttentionTunedTable,
} from "../ops/attention.ts";
import { webseqCacheDir } from "../data/cache_dir.ts";
import { writeJsonAtomic } from "./atomic.ts";
import { errorLine } from "../tensor/errors.ts";

/** The file's layout. */
export interface TuneCacheFile {
  /** Layout version (1). */
  version: 1;
  /** Choices by adapter key ({@linkcode tuneCacheKey}), then by shape key. */
  adapters: Record<string, Record<string, string>>;
}

/** The adapter and kernel generation a file's choices belong to. */
export function tuneCacheKey(backend: GpuBackend): string {
  const a = backend.adapterInfo;
  const l = a.limits;
  return [
    a.description,
    a.vendor,
    a.architecture,
    `inv${l.maxComputeInvocationsPerWorkgroup ?? 256}`,
    `wg${l.maxComputeWorkgroupStorageSize ?? 16384}`,
    `codegen${MATMUL_CODEGEN_VERSION}.${ATTENTION_CODEGEN_VERSION}`,
    // choices made since the tuner checks each candidate's result (TUNE_TOLERANCE); earlier
    // files' choices were timed only, so they are tuned again
    "checked",
  ].join("|");
}

/**
 * The default cache file, or null when this process may not both read and
 * write it (queried without prompting) or no cache folder is known.
 */
export function defaultTuneCachePath(): string | null {
  let path: string;
  try {
    path = webseqCacheDir("tuning.json");
  } catch {
    return null;
  }
  try {
    const granted = (name: "read" | "write") =>
      Deno.permissions.querySync({ name, path }).state === "granted";
    return granted("read") && granted("write") ? path : null;
  } catch {
    return null;
  }
}

/**
 * The cache file a run uses for the `tuneCache` option: the file named, none
 * for null, {@linkcode defaultTuneCachePath} when undefined.
 */
export function resolveTuneCache(option: string | null | undefined): string | null {
  return option === undefined ? defaultTuneCachePath() : option;
}

async function readFile(path: string): Promise<TuneCacheFile> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return { version: 1, adapters: {} };
    throw err;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new SyntaxError(`${path}: not a tuning cache (${(err as Error).message})`);
  }
  const f = parsed as Partial<TuneCacheFile>;
  if (
    typeof f !== "object" || f === null || f.version !== 1 || typeof f.adapters !== "object" ||
    f.adapters === null || Array.isArray(f.adapters)
  ) {
    throw new SyntaxError(`${path}: not a tuning cache (expected {"version": 1, "adapters": {…}})`);
  }
  return f as TuneCacheFile;
}

/**
 * Loads the choices saved in `path` for this backend's adapter into the
 * matmul selection; returns how many (0 when the file is missing or holds
 * none for this adapter). A file that is not a tuning cache is a SyntaxError
 * naming it.
 */
export async function loadTuneCache(path: string, backend: GpuBackend): Promise<number> {
  const f = await readFile(path);
  const table = f.adapters[tuneCacheKey(backend)];
  if (!table || typeof table !== "object") return 0;
  const d = backend.adapterInfo.description;
  return loadTunedTable(d, table) + loadAttentionTunedTable(d, table);
}

/**
 * Saves the selection's tuned choices for this backend's adapter into
 * `path` (merged with the file's other adapters and earlier choices),
 * atomically; creates the folder. Returns how many choices the adapter has.
 */
export async function saveTuneCache(path: string, backend: GpuBackend): Promise<number> {
  const f = await readFile(path);
  const key = tuneCacheKey(backend);
  const d = backend.adapterInfo.description;
  const table = { ...f.adapters[key], ...tunedTable(d), ...attentionTunedTable(d) };
  const dir = path.includes("/") ? path.slice(0, path.lastIndexOf("/")) : ".";
  if (dir) await Deno.mkdir(dir, { recursive: true });
  await writeJsonAtomic(path, { version: 1, adapters: { ...f.adapters, [key]: table } });
  return Object.keys(table).length;
}

/** Loads the tuning cache into the matmul selection; a bad or unreadable file is only noted. */
export async function restoreTuneCache(
  path: string,
  gpu: GpuBackend,
  info: (s: string) => void,
): Promise<number> {
  try {
    const n = await loadTuneCache(path, gpu);
    if (n > 0) info(`kernels: ${n} tuned choices for this adapter from ${path}`);
    return n;
  } catch (err) {
    const why = errorLine(err);
    info(`kernels: tuning cache not used (${why}); tuning afresh`);
    return 0;
  }
}

/** Saves the tuned choices; a failure is only noted (tuning is an optimisation). */
export async function storeTuneCache(
  path: string,
  gpu: GpuBackend,
  info: (s: string) => void,
): Promise<void> {
  try {
    await saveTuneCache(path, gpu);
    info(`kernels: tuned choices saved to ${path}`);
  } catch (err) {
    const why = errorLine(err);
    info(`kernels: tuned choices not saved (${why})`);
  }
}
