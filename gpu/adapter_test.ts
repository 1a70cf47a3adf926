import assert from "node:assert/strict";
import { unknownGraphicsApis } from "./adapter.ts";

const CLI = new URL("../cli.ts", import.meta.url).pathname;
const ADAPTER = new URL("./adapter.ts", import.meta.url).href;

/** Runs deno with `args` and this environment minus XDG_RUNTIME_DIR. */
async function withoutXdg(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const env = Deno.env.toObject();
  delete env.XDG_RUNTIME_DIR;
  const res = await new Deno.Command(Deno.execPath(), {
    args,
    clearEnv: true,
    env: { ...env, NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: res.code, out: dec.decode(res.stdout), err: dec.decode(res.stderr) };
}

Deno.test("quietDisplayProbe() sets an unset XDG_RUNTIME_DIR only with env permission", async () => {
  const script = await Deno.makeTempFile({ suffix: ".ts" });
  try {
    await Deno.writeTextFile(
      script,
      `import { quietDisplayProbe } from "${ADAPTER}";
const first = quietDisplayProbe();
const env = Deno.permissions.querySync({ name: "env" }).state === "granted"
  ? Deno.env.get("XDG_RUNTIME_DIR") ?? null
  : "no access";
console.log(JSON.stringify([first, quietDisplayProbe(), env]));`,
    );
    const granted = await withoutXdg(["run", "--quiet", "--allow-env", script]);
    assert.equal(granted.code, 0, granted.err);
    assert.deepEqual(JSON.parse(granted.out), [true, false, "/tmp"]);
    // without --allow-env: nothing set, no prompt, no throw
    const denied = await withoutXdg(["run", "--quiet", "--no-prompt", script]);
    assert.equal(denied.code, 0, denied.err);
    assert.deepEqual(JSON.parse(denied.out), [false, false, "no access"]);
  } finally {
    await Deno.remove(script);
  }
});

Deno.test("webseq info without XDG_RUNTIME_DIR prints no Mesa display error", async () => {
  const res = await withoutXdg(["run", "--quiet", "--allow-env", "--allow-read", CLI, "info"]);
  assert.equal(res.code, 0, res.err);
  assert.doesNotMatch(res.err, /XDG_RUNTIME_DIR/);
});

Deno.test("unknownGraphicsApis(): DENO_WEBGPU_BACKEND entries wgpu does not know", () => {
  assert.deepEqual(unknownGraphicsApis(undefined), []);
  assert.deepEqual(unknownGraphicsApis("vulkan"), []);
  assert.deepEqual(unknownGraphicsApis("GL, vk"), []);
  assert.deepEqual(unknownGraphicsApis("bogus"), ["bogus"]);
  assert.deepEqual(unknownGraphicsApis("metal,cuda"), ["cuda"]);
});
