/**
 * Runs a subcommand's `run(args)` in-process with console.log and
 * console.error captured line by line (the CLI tests' shared helper).
 *
 * @module
 */

/** What a captured run printed and returned. */
export interface Captured {
  /** Exit code. */
  code: number;
  /** console.log lines (stdout). */
  out: string[];
  /** console.error lines (stderr). */
  err: string[];
}

/** Runs `run(args)`, capturing its console output; the console is restored afterwards. */
export async function captureRun(
  run: (args: string[]) => Promise<number>,
  args: string[],
): Promise<Captured> {
  const out: string[] = [], err: string[] = [];
  const { log, error } = console;
  console.log = (...a: unknown[]) => out.push(a.join(" "));
  console.error = (...a: unknown[]) => err.push(a.join(" "));
  try {
    return { code: await run(args), out, err };
  } finally {
    console.log = log;
    console.error = error;
  }
}
