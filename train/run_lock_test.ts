import assert from "node:assert/strict";
import { lockRunFolder, releaseRunFolderSync, RUN_LOCK_FILE, RunLockedError } from "./run_lock.ts";

/** A pid no process can have: above the kernel's pid_max (a pid that exited may be reused). */
async function deadPid(): Promise<number> {
  const max = Number((await Deno.readTextFile("/proc/sys/kernel/pid_max")).trim());
  return max + 1;
}

Deno.test("lockRunFolder(): one holder at a time; release frees the folder and removes one it made while empty", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const run = `${dir}/runs/a`;
    const lock = await lockRunFolder(run);
    assert.equal(JSON.parse(await Deno.readTextFile(lock.path)).pid, Deno.pid);
    // the same process taking it again (two train() calls into one folder) is refused too
    await assert.rejects(() => lockRunFolder(run), RunLockedError);
    await lock.release();
    await assert.rejects(() => Deno.stat(run), Deno.errors.NotFound); // made and left empty
    // a folder that existed, or got files, stays
    const again = await lockRunFolder(run);
    await Deno.writeTextFile(`${run}/config.json`, "{}");
    await again.release();
    assert.deepEqual([...Deno.readDirSync(run)].map((e) => e.name), ["config.json"]);
    await (await lockRunFolder(run)).release();
    assert.ok((await Deno.stat(`${run}/config.json`)).isFile);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("lockRunFolder(): a live holder is named; a dead one's lock, or an old unreadable one, is taken over", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/${RUN_LOCK_FILE}`;
  try {
    await Deno.writeTextFile(path, JSON.stringify({ pid: 1, started: "2026-01-01T00:00:00Z" }));
    await assert.rejects(
      () => lockRunFolder(dir),
      new RunLockedError(
        `${dir} is in use by another webseq train (pid 1, since 2026-01-01T00:00:00Z): wait for it, or choose another --out (remove ${path} if no such run is active)`,
      ),
    );
    await Deno.writeTextFile(path, JSON.stringify({ pid: await deadPid(), started: "x" }));
    const l1 = await lockRunFolder(dir);
    assert.equal(JSON.parse(await Deno.readTextFile(path)).pid, Deno.pid);
    await l1.release();
    // unreadable (a writer this moment, or a crash mid-write): refused while fresh, then stale
    await Deno.writeTextFile(path, "");
    await assert.rejects(() => lockRunFolder(dir), /in use by another webseq train \(starting\)/);
    const old = new Date(Date.now() - 60_000);
    await Deno.utime(path, old, old);
    await (await lockRunFolder(dir)).release();
    await assert.rejects(() => Deno.stat(path), Deno.errors.NotFound);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("releaseRunFolderSync(): removes this process's lock only", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/${RUN_LOCK_FILE}`;
  try {
    await Deno.writeTextFile(path, JSON.stringify({ pid: 1, started: "x" }));
    releaseRunFolderSync(dir);
    assert.ok((await Deno.stat(path)).isFile);
    await Deno.remove(path);
    await lockRunFolder(dir);
    releaseRunFolderSync(dir);
    await assert.rejects(() => Deno.stat(path), Deno.errors.NotFound);
    // and the folder is free for this process again
    await (await lockRunFolder(dir)).release();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
