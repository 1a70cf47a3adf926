import assert from "node:assert/strict";
import { writeFileAtomic, writeJsonAtomic } from "./atomic.ts";

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function names(dir: string): string[] {
  return [...Deno.readDirSync(dir)].map((e) => e.name).sort();
}

Deno.test("writeFileAtomic() writes bytes, text and chunk streams and leaves no temporary file", async () => {
  await withDir(async (dir) => {
    await writeFileAtomic(`${dir}/a.bin`, new Uint8Array([1, 2, 3]));
    await writeFileAtomic(`${dir}/b.txt`, "héllo");
    await writeFileAtomic(`${dir}/c.bin`, [new Uint8Array([1]), new Uint8Array([2, 3])]);
    async function* chunks() {
      yield new Uint8Array([9]);
      yield new Uint8Array(100_000).fill(7);
    }
    await writeFileAtomic(`${dir}/d.bin`, chunks());
    assert.deepEqual(names(dir), ["a.bin", "b.txt", "c.bin", "d.bin"]);
    assert.deepEqual(await Deno.readFile(`${dir}/a.bin`), new Uint8Array([1, 2, 3]));
    assert.equal(await Deno.readTextFile(`${dir}/b.txt`), "héllo");
    assert.deepEqual(await Deno.readFile(`${dir}/c.bin`), new Uint8Array([1, 2, 3]));
    const d = await Deno.readFile(`${dir}/d.bin`);
    assert.equal(d.length, 100_001);
    assert.equal(d[0], 9);
    assert.equal(d[100_000], 7);
  });
});

Deno.test("writeFileAtomic() replaces an existing file", async () => {
  await withDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/x.json`, "old old old old");
    await writeFileAtomic(`${dir}/x.json`, "new");
    assert.equal(await Deno.readTextFile(`${dir}/x.json`), "new");
    assert.deepEqual(names(dir), ["x.json"]);
  });
});

Deno.test("writeFileAtomic() keeps the old file intact and removes the temporary file when writing fails midway", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/model.safetensors`;
    await Deno.writeTextFile(path, "the old checkpoint");
    let wroteSome = false;
    async function* failing() {
      yield new Uint8Array(4096).fill(1);
      wroteSome = true;
      throw new Error("No space left on device (simulated)");
    }
    await assert.rejects(
      () => writeFileAtomic(path, failing()),
      (err: unknown) => {
        assert.ok(err instanceof Error);
        assert.equal(
          err.message,
          `Cannot write ${path}: No space left on device (simulated)`,
        );
        return true;
      },
    );
    assert.ok(wroteSome);
    assert.equal(await Deno.readTextFile(path), "the old checkpoint");
    assert.deepEqual(names(dir), ["model.safetensors"]);
  });
});

Deno.test("writeFileAtomic() removes the temporary file when the rename fails", async () => {
  await withDir(async (dir) => {
    await Deno.mkdir(`${dir}/target`);
    await Deno.writeTextFile(`${dir}/target/keep`, "x");
    await assert.rejects(
      () => writeFileAtomic(`${dir}/target`, "data"),
      new RegExp(`^Error: Cannot write ${dir}/target: `),
    );
    assert.deepEqual(names(dir), ["target"]);
    assert.deepEqual(names(`${dir}/target`), ["keep"]);
  });
});

Deno.test("writeFileAtomic() fails with one line naming the path when the folder is missing", async () => {
  await withDir(async (dir) => {
    await assert.rejects(
      () => writeFileAtomic(`${dir}/nope/file.json`, "{}"),
      (err: unknown) => {
        assert.ok(err instanceof Error);
        assert.ok(err.message.startsWith(`Cannot write ${dir}/nope/file.json: `), err.message);
        assert.ok(!err.message.includes("\n"));
        return true;
      },
    );
  });
});

Deno.test("writeJsonAtomic() writes indented JSON with a final newline", async () => {
  await withDir(async (dir) => {
    await writeJsonAtomic(`${dir}/s.json`, { step: 3, best: null });
    assert.equal(await Deno.readTextFile(`${dir}/s.json`), '{\n  "step": 3,\n  "best": null\n}\n');
    await writeJsonAtomic(`${dir}/t.json`, [1, 2], { indent: 0 });
    assert.equal(await Deno.readTextFile(`${dir}/t.json`), "[1,2]\n");
    await assert.rejects(() => writeJsonAtomic(`${dir}/u.json`, undefined), TypeError);
    assert.deepEqual(names(dir), ["s.json", "t.json"]);
  });
});
