/**
 * Runs `code` with `deno eval` in a fresh process with extra environment
 * variables (settings read once per process, such as `WEBSEQ_*`, without
 * touching this process's environment) and returns its trimmed stdout.
 *
 * @module
 */
export async function evalStdout(code: string, env: Record<string, string>): Promise<string> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--no-check", code],
    env,
    stdout: "piped",
    stderr: "inherit",
  }).output();
  return new TextDecoder().decode(out.stdout).trim();
}
