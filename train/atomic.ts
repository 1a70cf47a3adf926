/**
 * Atomic file writes: the data goes to a temporary file in the same folder,
 * is flushed to disk (fsync), then renamed over the target. A reader sees
 * either the old file or the complete new one, never a partial write; on any
 * failure the temporary file is removed and the old file stays as it was.
 *
 * @example
 * ```ts
 * import { writeJsonAtomic } from "@webseq/webseq";
 * const dir = await Deno.makeTempDir();
 * await writeJsonAtomic(`${dir}/state.json`, { step: 10 });
 * ```
 *
 * @module
 */
import { errorLine } from "../tensor/errors.ts";

/** What {@linkcode writeFileAtomic} can write: bytes, text, or a stream of byte chunks. */
export type AtomicData =
  | Uint8Array
  | string
  | Iterable<Uint8Array>
  | AsyncIterable<Uint8Array>;

/** Options of {@linkcode writeFileAtomic}. */
export interface WriteAtomicOptions {
  /** File mode of the new file (default 0o644, before the umask). */
  mode?: number;
}

function splitPath(path: string): { dir: string; base: string } {
  const i = path.lastIndexOf("/");
  if (i < 0) return { dir: ".", base: path };
  return { dir: i === 0 ? "/" : path.slice(0, i), base: path.slice(i + 1) };
}

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let done = 0;
  while (done < bytes.length) done += await file.write(bytes.subarray(done));
}

/**
 * Writes `data` to `path` atomically (temporary file in the same folder,
 * fsync, rename). Chunks from an (async) iterable are written as they come,
 * so large checkpoints need not be joined into one buffer; if the iterable
 * throws, nothing at `path` changes. Errors name `path` in one line.
 */
export async function writeFileAtomic(
  path: string,
  data: AtomicData,
  opts: WriteAtomicOptions = {},
): Promise<void> {
  if (path === "" || path.endsWith("/")) {
    throw new TypeError(`Cannot write "${path}": not a file path`);
  }
  const { dir, base } = splitPath(path);
  const suffix = `${Deno.pid}-${crypto.getRandomValues(new Uint32Array(1))[0].toString(36)}`;
  const temp = `${dir}/.${base}.tmp-${suffix}`;
  let file: Deno.FsFile | undefined;
  let created = false;
  try {
    file = await Deno.open(temp, { write: true, createNew: true, mode: opts.mode ?? 0o644 });
    created = true;
    if (typeof data === "string") {
      await writeAll(file, new TextEncoder().encode(data));
    } else if (data instanceof Uint8Array) {
      await writeAll(file, data);
    } else {
      for await (const chunk of data) {
        if (!(chunk instanceof Uint8Array)) {
          throw new TypeError("chunks must be Uint8Array");
        }
        await writeAll(file, chunk);
      }
    }
    await file.sync();
    file.close();
    file = undefined;
    await Deno.rename(temp, path);
    created = false;
  } catch (err) {
    if (file) {
      try {
        file.close();
      } catch { /* already closed */ }
    }
    if (created) {
      try {
        await Deno.remove(temp);
      } catch { /* best effort */ }
    }
    // Deno's rename asks for read and write access to both names: say so in the user's words
    const why = err instanceof Deno.errors.NotCapable
      ? `it needs read and write access to ${dir} (--allow-read=${dir} --allow-write=${dir}): ${
        errorLine(err)
      }`
      : errorLine(err);
    throw new Error(`Cannot write ${path}: ${why}`, { cause: err });
  }
  await syncDir(dir);
}

/** Flushes the directory entry of the rename (best effort: not every platform allows it). */
async function syncDir(dir: string): Promise<void> {
  if (Deno.build.os === "windows") return;
  let handle: Deno.FsFile | undefined;
  try {
    handle = await Deno.open(dir, { read: true });
    await handle.sync();
  } catch {
    /* best effort */
  } finally {
    try {
      handle?.close();
    } catch { /* ignore */ }
  }
}

/** Options of {@linkcode writeJsonAtomic}. */
export interface WriteJsonOptions extends WriteAtomicOptions {
  /** Indentation passed to JSON.stringify (default 2; 0 for one line). */
  indent?: number;
}

/** Writes `value` as JSON (with a final newline) to `path` atomically. */
export async function writeJsonAtomic(
  path: string,
  value: unknown,
  opts: WriteJsonOptions = {},
): Promise<void> {
  const text = JSON.stringify(value, null, opts.indent ?? 2);
  if (text === undefined) {
    throw new TypeError(`Cannot write ${path}: value is not JSON-serializable`);
  }
  await writeFileAtomic(path, text + "\n", opts);
}

/** Whether something exists at `path` (a NotFound is false; other errors, e.g. permission, throw). */
export async function pathExists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return false;
    throw err;
  }
}
