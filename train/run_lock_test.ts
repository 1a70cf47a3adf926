import assert from "node:assert/strict";
import { lockRunFolder, releaseRunFolderSync, RUN_LOCK_FILE, RunLockedError } from "./run_lock.ts";

Deno.test("lockRunFolder(): one holder at a time; release frees the folder and removes one it made while empty", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const run = `${dir}/runs/a`;
    const lock = await lockRunFolder(run);
    const record = JSON.parse(await Deno.readTextFile(lock.path));
    assert.equal(record.pid, Deno.pid);
    // the same process taking it again (two train() calls into one folder) is refused too
    await assert.rejects(
      () => lockRunFolder(run),
      new RunLockedError(
        `${run} is in use by another webseq train (pid ${Deno.pid}, since ${record.started}): wait for it to finish, or choose another --out`,
      ),
    );
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

Deno.test("lockRunFolder(): another process's lock is refused naming it, and goes with that process (a kill leaves no stale lock)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const script = `${dir}/hold.ts`;
    const mod = new URL("./run_lock.ts", import.meta.url).href;
    await Deno.writeTextFile(
      script,
      `import { lockRunFolder } from "${mod}";\nawait lockRunFolder(Deno.args[0]);\n` +
        `console.log("locked");\nsetInterval(() => {}, 1000);\n`,
    );
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-check", `--allow-read=${dir}`, `--allow-write=${dir}`, script, dir],
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    assert.match((await reader.read()).value ?? "", /locked/);
    await assert.rejects(
      () => lockRunFolder(dir),
      new RegExp(`in use by another webseq train \\(pid ${child.pid}, since `),
    );
    child.kill("SIGKILL");
    await child.status;
    reader.releaseLock();
    await child.stdout.cancel().catch(() => {});
    // its file is still there, its lock is not
    assert.equal(JSON.parse(await Deno.readTextFile(`${dir}/${RUN_LOCK_FILE}`)).pid, child.pid);
    const lock = await lockRunFolder(dir);
    assert.equal(JSON.parse(await Deno.readTextFile(lock.path)).pid, Deno.pid);
    await lock.release();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("releaseRunFolderSync(): removes this process's lock file only", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/${RUN_LOCK_FILE}`;
  try {
    await Deno.writeTextFile(path, JSON.stringify({ pid: -1, started: "x" }));
    releaseRunFolderSync(dir);
    assert.ok((await Deno.stat(path)).isFile);
    const lock = await lockRunFolder(dir);
    releaseRunFolderSync(dir);
    await assert.rejects(() => Deno.stat(path), Deno.errors.NotFound);
    await lock.release();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
