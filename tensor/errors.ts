/**
 * The first line of an error's message (or of `String(value)` for a thrown
 * non-Error): what webseq's one-line error reports and notes quote from a
 * library's or the runtime's (possibly multi-line) message.
 *
 * @example
 * ```ts
 * import { errorLine } from "./errors.ts";
 * console.log(errorLine(new Error("bad file\n  at line 3"))); // "bad file"
 * ```
 *
 * @module
 */

/** The first line of `err`'s message (`String(err)` when it is not an Error). */
export function errorLine(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split("\n")[0];
}
