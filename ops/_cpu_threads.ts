/**
 * Worker threads for the CPU kernels: a pool of workers that share one
 * WebAssembly memory with the main thread and run the tasks of a job with it.
 *
 * A job is `count` tasks; task i is `task(tasks + i·taskBytes, tid)`, an export
 * of the module, which imports `env.memory`;
 * ops/_wasm_matmul.ts writes the task descriptors (matmul, GELU, cross-entropy).
 * The main thread publishes the job in a control block of the shared memory,
 * wakes the workers with `Atomics.notify`, claims tasks itself like any worker
 * and returns when all are done (`Atomics.wait`), so callers stay synchronous.
 * Tasks are claimed one at a time (compare-and-swap on one 64-bit word that
 * also holds the job's number, its task count and its thread limit), so a
 * worker slowed by other processes takes fewer tasks and a worker not yet
 * started takes none.
 *
 * Workers come from `node:worker_threads` with their source inline (nothing is
 * read at run time, no permission is needed) and are unref'd: idle ones keep
 * neither `deno run` nor `deno test` from finishing.
 *
 * The number of threads is `WEBSEQ_CPU_THREADS` when set (1: no workers) or the
 * core count (`navigator.hardwareConcurrency`) up to {@linkcode MAX_AUTO_THREADS}.
 *
 * @module
 */
import { Worker } from "node:worker_threads";
import { grantedEnv } from "../tensor/env.ts";

/** The default thread count is at most this. */
export const MAX_AUTO_THREADS = 8;
/** `WEBSEQ_CPU_THREADS` may ask for at most this many. */
export const MAX_THREADS = 16;
/** Bytes of the control block at the start of a pool's memory region `ctrl`. */
export const CONTROL_BYTES = 32;

// Control block at ctrl: an i64 claim word (job: 32 bits, thread limit: 8, task count: 12,
// next task: 12), then i32 words at these indices.
const SEQ = 2, DONE = 3, ERROR = 4, STARTED = 5, TASKS = 6, TASK_BYTES = 7;
/** At most this many tasks in one job (12 bits of the claim word). */
export const MAX_TASKS = 4095;
/** How long an idle worker spins for the next job, and the main thread for the workers, before sleeping. */
const WORKER_SPIN_MS = 0.05, MAIN_SPIN_MS = 0.5;

const WORKER_SOURCE = `
const { parentPort } = require("node:worker_threads");
parentPort.once("message", ({ module, memory, ctrl, tid }) => {
  const task = new WebAssembly.Instance(module, { env: { memory } }).exports.task;
  const C = new BigInt64Array(memory.buffer, ctrl, 1);
  const I = new Int32Array(memory.buffer, ctrl, ${CONTROL_BYTES / 4});
  Atomics.add(I, ${STARTED}, 1);
  for (;;) {
    const seq = Atomics.load(I, ${SEQ});
    for (;;) {
      const v = Atomics.load(C, 0);
      const next = Number(v & 0xfffn), count = Number((v >> 12n) & 0xfffn);
      if (next >= count || tid >= Number((v >> 24n) & 0xffn)) break;
      if (Atomics.compareExchange(C, 0, v, v + 1n) !== v) continue;
      try {
        task(I[${TASKS}] + next * I[${TASK_BYTES}], tid);
      } catch {
        Atomics.store(I, ${ERROR}, 1);
      }
      if (Atomics.add(I, ${DONE}, 1) + 1 === count) Atomics.notify(I, ${DONE});
    }
    // the next job often comes within microseconds (the next product of a layer): spin a little
    const t0 = performance.now();
    while (Atomics.load(I, ${SEQ}) === seq && performance.now() - t0 < ${WORKER_SPIN_MS}) {}
    Atomics.wait(I, ${SEQ}, seq);
  }
});
`;

/**
 * The thread count that `value` (of `WEBSEQ_CPU_THREADS`) asks for on a machine
 * with `cores` cores: unset or empty means the cores up to
 * {@linkcode MAX_AUTO_THREADS}.
 */
export function parseCpuThreads(value: string | undefined, cores: number): number {
  if (value === undefined || value.trim() === "") {
    return Math.max(1, Math.min(MAX_AUTO_THREADS, Math.floor(cores) || 1));
  }
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > MAX_THREADS) {
    throw new RangeError(
      `WEBSEQ_CPU_THREADS must be an integer from 1 to ${MAX_THREADS}, got ${
        JSON.stringify(value)
      }`,
    );
  }
  return n;
}

function fromEnvironment(): number {
  // read the variable only where that needs no prompt
  const value = grantedEnv("WEBSEQ_CPU_THREADS");
  return parseCpuThreads(value, globalThis.navigator?.hardwareConcurrency ?? 1);
}

let threads: number | undefined;

/** Threads the CPU kernels use (1: the main thread only). */
export function cpuThreads(): number {
  return threads ??= fromEnvironment();
}

/** Sets the thread count (benchmarks and tests); `"auto"` rereads `WEBSEQ_CPU_THREADS`. Returns it. */
export function useCpuThreads(n: number | "auto"): number {
  threads = n === "auto" ? fromEnvironment() : parseCpuThreads(String(n), 1);
  return threads;
}

/** Workers of one shared memory and module; see the top of the file. */
export class CpuPool {
  readonly #module: WebAssembly.Module;
  readonly #memory: WebAssembly.Memory;
  readonly #ctrl: number;
  readonly #claim: BigInt64Array;
  readonly #words: Int32Array;
  readonly #workers: Worker[] = [];
  #job = 0;
  #broken = false;

  /** A pool for `module` (which exports `task(at, tid)`) over `memory`, controlled at byte `ctrl`. */
  constructor(module: WebAssembly.Module, memory: WebAssembly.Memory, ctrl: number) {
    if (ctrl % 8 !== 0) throw new RangeError(`CpuPool: ctrl ${ctrl} is not 8-byte aligned`);
    this.#module = module;
    this.#memory = memory;
    this.#ctrl = ctrl;
    this.#claim = new BigInt64Array(memory.buffer, ctrl, 1);
    this.#words = new Int32Array(memory.buffer, ctrl, CONTROL_BYTES / 4);
  }

  /** Workers that have started (they start in the background, after the first job asks for them). */
  get started(): number {
    return Atomics.load(this.#words, STARTED);
  }

  /** Workers created so far. */
  get size(): number {
    return this.#workers.length;
  }

  #grow(n: number): void {
    while (!this.#broken && this.#workers.length < n) {
      try {
        const w = new Worker(WORKER_SOURCE, { eval: true });
        w.postMessage({
          module: this.#module,
          memory: this.#memory,
          ctrl: this.#ctrl,
          tid: this.#workers.length + 1,
        });
        w.on("error", () => {}); // a worker that fails takes no task; the main thread runs them
        w.unref();
        this.#workers.push(w);
      } catch {
        this.#broken = true; // no workers here: the main thread runs every task
      }
    }
  }

  /**
   * Runs tasks 0..count-1 on up to `nThreads` threads (the main thread
   * included), task i with its descriptor at `tasks + i·taskBytes`, and
   * returns when all are done. `runHere(at)` runs a task on the main thread.
   */
  run(
    count: number,
    tasks: number,
    taskBytes: number,
    nThreads: number,
    runHere: (at: number) => void,
  ): void {
    if (count < 1 || count > MAX_TASKS) {
      throw new RangeError(`CpuPool.run: ${count} tasks (1 to ${MAX_TASKS})`);
    }
    const n = Math.max(1, Math.min(nThreads, MAX_THREADS));
    this.#grow(n - 1);
    const I = this.#words;
    this.#job = (this.#job + 1) & 0x7fffffff;
    Atomics.store(I, DONE, 0);
    Atomics.store(I, ERROR, 0);
    Atomics.store(I, TASKS, tasks);
    Atomics.store(I, TASK_BYTES, taskBytes);
    Atomics.store(
      this.#claim,
      0,
      (BigInt(this.#job) << 32n) | (BigInt(n) << 24n) | (BigInt(count) << 12n),
    );
    Atomics.add(I, SEQ, 1);
    if (n > 1) Atomics.notify(I, SEQ);
    let failure: unknown = null;
    for (;;) {
      const v = Atomics.load(this.#claim, 0);
      const next = Number(v & 0xfffn);
      if (next >= count) break;
      if (Atomics.compareExchange(this.#claim, 0, v, v + 1n) !== v) continue;
      try {
        runHere(tasks + next * taskBytes);
      } catch (err) {
        failure ??= err;
      }
      Atomics.add(I, DONE, 1);
    }
    // the workers' last tasks: spin a little (they are usually about to finish), then sleep
    const t0 = performance.now();
    for (;;) {
      const done = Atomics.load(I, DONE);
      if (done >= count) break;
      if (performance.now() - t0 > MAIN_SPIN_MS) Atomics.wait(I, DONE, done, 100);
    }
    if (failure !== null) throw failure;
    if (Atomics.load(I, ERROR) !== 0) {
      throw new Error("ops/_cpu_threads.ts: a task failed in a worker thread");
    }
  }
}
