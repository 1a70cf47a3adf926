/**
 * One trainer per run folder: `train` holds an exclusive advisory lock
 * (`flock`, `Deno.FsFile.tryLock`) on `DIR/.webseq-train.lock` while it runs,
 * so a second `train` into the same folder — the same command started twice,
 * or a `--resume` while the run still goes — stops with a one-line error
 * naming the holder (the file records its pid and start time) instead of both
 * writing checkpoints and logs over each other. The operating system releases
 * the lock when its process ends in any way (a crash, a kill), so a lock is
 * never stale: the file left behind is simply taken by the next trainer. This
 * needs no permission beyond reading and writing the run folder.
 *
 * @module
 */

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
   * Removes the lock file and releases the lock, and removes the run folder
   * when taking the lock made it and nothing else was written into it (a run
   * refused before it began).
   */
  release(): Promise<void>;
}

/** Who holds a lock, from its file: "pid N, since T", or "another process". */
async function holder(path: string): Promise<string> {
  try {
    const r = JSON.parse(await Deno.readTextFile(path));
    if (Number.isInteger(r?.pid)) return `pid ${r.pid}, since ${r.started}`;
  } catch { /* being written, or unreadable */ }
  return "another process";
}

/**
 * Takes the run folder `dir` for a trainer (making it if needed), or throws
 * {@linkcode RunLockedError} naming the process that holds it.
 */
export async function lockRunFolder(dir: string): Promise<RunLock> {
  const path = `${dir}/${RUN_LOCK_FILE}`;
  let made = false;
  try {
    await Deno.stat(dir);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
    made = true;
  }
  await Deno.mkdir(dir, { recursive: true });
  for (let attempt = 0;; attempt++) {
    const file = await Deno.open(path, { read: true, write: true, create: true });
    if (!(await file.tryLock(true))) {
      file.close();
      throw new RunLockedError(
        `${dir} is in use by another webseq train (${await holder(
          path,
        )}): wait for it to finish, or choose another --out`,
      );
    }
    // the holder before us may have removed the file between our open and our lock: the lock is
    // then on a file no one else will open; take the one at the path instead
    let same: boolean;
    try {
      const [mine, atPath] = await Promise.all([file.stat(), Deno.stat(path).catch(() => null)]);
      same = atPath !== null && mine.ino === atPath.ino && mine.dev === atPath.dev;
      if (same) {
        await file.truncate(0);
        const record = JSON.stringify({ pid: Deno.pid, started: new Date().toISOString() }) + "\n";
        const bytes = new TextEncoder().encode(record);
        for (let n = 0; n < bytes.length;) n += await file.write(bytes.subarray(n));
      }
    } catch (err) {
      file.close(); // an I/O error (a full disk): the lock goes with the handle
      throw err;
    }
    if (!same) {
      file.close();
      if (attempt >= 3) throw new RunLockedError(`${dir}: the lock file keeps changing`);
      continue;
    }
    return {
      path,
      async release() {
        // removed while still locked, so no one locks a file that is about to go
        await Deno.remove(path).catch(() => {});
        file.close(); // closing releases the lock
        if (made) await Deno.remove(dir).catch(() => {}); // only when empty
      },
    };
  }
}

/**
 * Removes `dir`'s lock file at once if this process's record is in it: for
 * an exit that skips `finally` blocks (`Deno.exit` on a second Ctrl-C). The
 * lock itself goes with the process; this only tidies the folder.
 */
export function releaseRunFolderSync(dir: string): void {
  const path = `${dir}/${RUN_LOCK_FILE}`;
  try {
    if (JSON.parse(Deno.readTextFileSync(path)).pid === Deno.pid) Deno.removeSync(path);
  } catch { /* none, or not ours */ }
}
