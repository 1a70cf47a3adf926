/**
 * Environment settings read without prompting: a variable is read only
 * where this process already may (`--allow-env` or `--allow-env=NAME`), so a
 * library import never asks the user for a permission.
 *
 * @module
 */

/**
 * The value of environment variable `name`, or undefined when it is unset,
 * when reading it is not granted, or outside Deno (a worker without `Deno`).
 */
export function grantedEnv(name: string): string | undefined {
  const deno = (globalThis as { Deno?: typeof Deno }).Deno;
  try {
    const st = deno?.permissions?.querySync?.({ name: "env", variable: name });
    return st?.state === "granted" ? deno!.env.get(name) : undefined;
  } catch {
    return undefined;
  }
}
