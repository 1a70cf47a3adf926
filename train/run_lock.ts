/**
 * One trainer per run folder: `train` holds `DIR/.webseq-train.lock` (the
 * holder's pid and start time) while it runs, so a second `train` into the
 * same folder — the same command started twice, or a `--resume` while the
 * run still goes — stops with a one-line error instead of both writing
 * checkpoints and logs over each other. A lock whose process no longer runs
 * (a crash, a kill; Linux's /proc tells) is taken over.
 *
 * @module
 */
import { absolutePath, processRuns } from "./resume.ts";

/** The lock file's name in a run folder. */
export const RUN_LOCK_FILE = ".webseq-train.lock";

/** Another trainer holds the run folder. */
export class RunLockedError extends Error {
  /**
   * Creates the error.
   *
   * @param message the folder, the holder, what to do
   */
  constructor(message: string) {
    super(message);
    this.name = "RunLockedError";
  }
}

/** A held lock: {@linkcode RunLock.release} gives it back. */
export interface RunLock {
  /** The lock file. */
  path: string;
  /**
   * Removes the lock file, and the run folder when taking the lock made it
   * and nothing else was written into it (a run refused before it began).
   */
  release(): Promise<void>;
}

/** Run folders this process holds (absolute paths): its own pid in a lock file is not stale. */
const held = new Set<string>();

interface LockRecord {
  pid: number;
  started: string;
}

async function readRecord(path: string): Promise<LockRecord | null> {
  try {
    const r = JSON.parse(await Deno.readTextFile(path));
    return Number.isInteger(r?.pid) ? r as LockRecord : null;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) throw err;
    return null; // unreadable (cut short by a crash): stale
  }
}

/** Whether `path` was modified in the last {@linkcode FRESH_LOCK_MS} ms. */
async function isRecent(path: string): Promise<boolean> {
  try {
    const { mtime } = await Deno.stat(path);
    return mtime !== null && Date.now() - mtime.getTime() < FRESH_LOCK_MS;
  } catch {
    return false;
  }
}

/** An unreadable lock file younger than this is one being written; older, a crash's. */
const FRESH_LOCK_MS = 10_000;

/**
 * Takes the run folder `dir` for a trainer (making it if needed), or throws
 * {@linkcode RunLockedError} naming the process that holds it.
 */
export async function lockRunFolder(dir: string): Promise<RunLock> {
  const abs = absolutePath(dir);
  const path = `${dir}/${RUN_LOCK_FILE}`;
  let made = false;
  try {
    await Deno.stat(dir);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
    made = true;
  }
  await Deno.mkdir(dir, { recursive: true });
  const record = JSON.stringify({ pid: Deno.pid, started: new Date().toISOString() }) + "\n";
  for (let attempt = 0;; attempt++) {
    try {
      await Deno.writeTextFile(path, record, { createNew: true });
      break;
    } catch (err) {
      if (!(err instanceof Deno.errors.AlreadyExists)) throw err;
    }
    if (attempt >= 2) throw new RunLockedError(`${dir}: another trainer took it just now`);
    let other: LockRecord | null;
    try {
      other = await readRecord(path);
    } catch {
      continue; // released between the two calls: try again
    }
    const live = other === null
      ? await isRecent(path) // being written this moment, or cut short by a crash
      : other.pid === Deno.pid
      ? held.has(abs)
      : await processRuns(other.pid);
    if (live) {
      const who = other ? `pid ${other.pid}, since ${other.started}` : "starting";
      throw new RunLockedError(
        `${dir} is in use by another webseq train (${who}): wait for it, or choose another --out (remove ${path} if no such run is active)`,
      );
    }
    await Deno.remove(path).catch(() => {}); // stale: its process is gone
  }
  held.add(abs);
  return {
    path,
    async release() {
      held.delete(abs);
      await Deno.remove(path).catch(() => {});
      if (made) await Deno.remove(dir).catch(() => {}); // only when empty
    },
  };
}

/**
 * Removes `dir`'s lock file at once if this process holds it: for an exit
 * that skips `finally` blocks (`Deno.exit` on a second Ctrl-C).
 */
export function releaseRunFolderSync(dir: string): void {
  const path = `${dir}/${RUN_LOCK_FILE}`;
  try {
    if (JSON.parse(Deno.readTextFileSync(path)).pid === Deno.pid) Deno.removeSync(path);
  } catch { /* none, or not ours */ }
  held.delete(absolutePath(dir));
}
