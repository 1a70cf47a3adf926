/**
 * What `--resume` checks and keeps (train/trainer.ts): the options a run
 * recorded against those given ({@linkcode resumedOption},
 * {@linkcode samePairs}), the checkpoint's files against each other
 * ({@linkcode checkCheckpoint}), and the log lines of an epoch whose
 * checkpoint never landed ({@linkcode dropLaterLines}).
 *
 * @module
 */
import { resolve } from "node:path";
import { writeFileAtomic } from "./atomic.ts";
import { runPath, type TrainerState } from "./run_folder.ts";
import { readSafetensorsHeader } from "./safetensors.ts";

/**
 * An option given to `train` does not fit the run: it differs from what a
 * resumed run recorded, or it names what the run folder decides (`--preset`
 * with `--resume`). The CLI reports it as a usage error (exit 2).
 */
export class TrainOptionError extends RangeError {
  /**
   * Creates the error.
   *
   * @param message which option, what the run has, and what to do
   */
  constructor(message: string) {
    super(message);
    this.name = "TrainOptionError";
  }
}

/**
 * Checks that a run's model and optimizer files are of the step its
 * trainer_state.json records (files from before the step was recorded pass),
 * and removes the temporary files of writes a crash cut short.
 */
export async function checkCheckpoint(out: string, state: TrainerState): Promise<void> {
  for (const file of ["model", "optimizer"] as const) {
    let step: string | undefined;
    try {
      step = (await readSafetensorsHeader(runPath(out, file))).metadata.webseq_step;
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) continue; // the load names it
      throw err;
    }
    if (step !== undefined && Number(step) !== state.step) {
      throw new Error(
        `${runPath(out, file)} is of step ${step} but ${
          runPath(out, "trainerState")
        } of step ${state.step} (a checkpoint write was cut short): this run cannot resume exactly; start a new one from these weights with --init-from ${out}`,
      );
    }
  }
  // a temporary file `.<name>.tmp-<pid>-<random>` is a write a crash cut short: the caller holds
  // the run folder's lock (train/run_lock.ts), so no other process writes here now
  for (const dir of [out, `${out}/best`]) {
    let entries: Deno.DirEntry[] = [];
    try {
      entries = [...Deno.readDirSync(dir)];
    } catch { /* no such folder */ }
    for (const e of entries) {
      if (e.isFile && /^\..+\.tmp-\d+-[0-9a-z]+$/.test(e.name)) {
        await Deno.remove(`${dir}/${e.name}`).catch(() => {});
      }
    }
  }
}

/**
 * An option of a run being resumed from `out`: its saved value when the
 * caller gave none or the same one; a different one is a RangeError naming
 * the flag. Without a saved value (a fresh run, or a state from before the
 * option was saved): the given value, else the fallback.
 */
export function resumedOption<T>(
  out: string,
  o: {
    flag: string;
    given: T | undefined;
    saved: unknown;
    fallback: T;
    /** How a value reads in the message (default: the flag and the value; null: "no FLAG"). */
    show?: (v: unknown) => string;
  },
): T {
  if (o.saved === undefined) return o.given ?? o.fallback;
  if (o.given !== undefined && o.given !== o.saved) {
    const show = o.show ?? ((v: unknown) => (v === null ? `no ${o.flag}` : `${o.flag} ${v}`));
    throw new TrainOptionError(
      `${out} was trained with ${show(o.saved)}, not ${
        show(o.given)
      }: leave ${o.flag} out to resume it as it was`,
    );
  }
  return o.saved as T;
}

/** `path` made absolute against the working folder (as given when that cannot be read). */
export function absolutePath(path: string): string {
  try {
    return resolve(path);
  } catch {
    return path; // no read permission for the working folder
  }
}

/**
 * A resumed run's data file `given` (as `flag`), holding `count` pairs,
 * against the recorded one: the same file, or one holding as many pairs as
 * were recorded (a moved or renamed copy); else a RangeError.
 */
export function samePairs(
  out: string,
  flag: string,
  given: string,
  count: number,
  recorded: unknown,
  recordedCount: unknown,
): void {
  if (typeof recorded !== "string" || absolutePath(given) === recorded) return;
  if (typeof recordedCount === "number" && recordedCount !== count) {
    throw new TrainOptionError(
      `${given} holds ${count} pairs, but ${out} was trained on the ${recordedCount} of ${recorded}: leave ${flag} out to resume it as it was`,
    );
  }
}

/**
 * Rewrites the JSON-lines file at `path` (when it exists) without the
 * records `keep` rejects, atomically; untouched when all are kept.
 */
export async function dropLaterLines(
  path: string,
  keep: (record: Record<string, unknown>) => boolean,
): Promise<void> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return;
    throw err;
  }
  const lines = text.split("\n").filter((l) => l.trim() !== "");
  const kept = lines.filter((l) => {
    try {
      return keep(JSON.parse(l));
    } catch {
      return true; // not ours to judge
    }
  });
  if (kept.length === lines.length) return;
  await writeFileAtomic(path, kept.map((l) => l + "\n").join(""));
}
