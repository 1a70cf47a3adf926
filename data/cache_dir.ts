/**
 * The webseq cache folder: `$WEBSEQ_CACHE`, else `$XDG_CACHE_HOME/webseq`,
 * else `$HOME/.cache/webseq`. Hub downloads go to its `hub/` folder
 * (data/tokenizer.ts), the matmul tuning table to `tuning.json`
 * (train/tune_cache.ts). Without `--allow-env` the variables read as unset.
 *
 * @module
 */

/** `$name`, or undefined when unset, empty or not readable (no `--allow-env`). */
export function envVar(name: string): string | undefined {
  try {
    return Deno.env.get(name) || undefined;
  } catch {
    return undefined; // no --allow-env: as if unset
  }
}

/** `parts` joined with single slashes. */
export function joinPath(...parts: string[]): string {
  return parts.join("/").replace(/\/{2,}/g, "/");
}

/** The cache folder, with `parts` appended; an Error when no variable names one. */
export function webseqCacheDir(...parts: string[]): string {
  const own = envVar("WEBSEQ_CACHE");
  if (own) return joinPath(own, ...parts);
  const xdg = envVar("XDG_CACHE_HOME");
  if (xdg) return joinPath(xdg, "webseq", ...parts);
  const home = envVar("HOME") ?? envVar("USERPROFILE");
  if (!home) throw new Error("No cache folder: set WEBSEQ_CACHE or HOME");
  return joinPath(home, ".cache", "webseq", ...parts);
}
