import assert from "node:assert/strict";
import { grantedEnv } from "./env.ts";

Deno.test("grantedEnv() reads a variable only where reading it is granted, never prompting", async () => {
  const file = await Deno.makeTempFile({ suffix: ".ts" });
  await Deno.writeTextFile(
    file,
    `import { grantedEnv } from "${new URL("./env.ts", import.meta.url)}";
      console.log(JSON.stringify(grantedEnv("WEBSEQ_ENV_TEST") ?? null));`,
  );
  const run = async (allow: string) => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-check", "--no-prompt", allow, file],
      env: { WEBSEQ_ENV_TEST: "seven" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    return new TextDecoder().decode(out.stdout).trim();
  };
  assert.equal(await run("--allow-env=WEBSEQ_ENV_TEST"), '"seven"');
  assert.equal(await run("--allow-env=OTHER"), "null");
  await Deno.remove(file);
  assert.equal(grantedEnv("WEBSEQ_ENV_TEST_UNSET_VARIABLE"), undefined);
});
