/**
 * The CPU worker pool: every task of a job runs exactly once whoever claims
 * it, worker threads do take tasks, a trap in a task is thrown on the main
 * thread, and `WEBSEQ_CPU_THREADS` is parsed strictly.
 *
 * @module
 */
import assert from "node:assert/strict";
import initWabt from "wabt";
import { CONTROL_BYTES, CpuPool, MAX_AUTO_THREADS, parseCpuThreads } from "./_cpu_threads.ts";

// task(at, tid): memory[at] += 1 (atomically), memory[at + 4] = tid + 1, and a little busy work
// so that the workers have time to take some.
const WAT = `(module
  (import "env" "memory" (memory 1 16 shared))
  (func (export "task") (param $at i32) (param $tid i32) (local $i i32)
    (drop (i32.atomic.rmw.add (local.get $at) (i32.const 1)))
    (i32.store offset=4 (local.get $at) (i32.add (local.get $tid) (i32.const 1)))
    (local.set $i (i32.const 200000))
    (loop $spin (br_if $spin (local.tee $i (i32.sub (local.get $i) (i32.const 1)))))))`;

async function testPool(): Promise<
  { pool: CpuPool; memory: WebAssembly.Memory; task: (at: number, tid: number) => void }
> {
  const wabt = await initWabt();
  const features = { threads: true };
  const mod = wabt.parseWat("pool_test.wat", WAT, features);
  const bytes = new Uint8Array(mod.toBinary({}).buffer);
  mod.destroy();
  const module = new WebAssembly.Module(bytes);
  const memory = new WebAssembly.Memory({ initial: 1, maximum: 16, shared: true });
  const inst = new WebAssembly.Instance(module, { env: { memory } });
  return {
    pool: new CpuPool(module, memory, 0),
    memory,
    task: inst.exports.task as (at: number, tid: number) => void,
  };
}

const TASKS = 64, SLOT = 8;

Deno.test("CpuPool.run() runs every task once, on the main thread and the workers", async () => {
  const { pool, memory, task } = await testPool();
  const base = CONTROL_BYTES;
  const words = new Int32Array(memory.buffer);
  // the first job starts the workers in the background; wait until they are up
  pool.run(1, base, SLOT, 3, (at) => task(at, 0));
  for (let i = 0; i < 200 && pool.started < 2; i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal(pool.started, 2, "the two workers did not start");
  for (let round = 0; round < 5; round++) {
    words.fill(0, base >> 2, (base >> 2) + 2 * TASKS);
    pool.run(TASKS, base, SLOT, 3, (at) => task(at, 0));
    const runs = [], by = new Set<number>();
    for (let i = 0; i < TASKS; i++) {
      runs.push(words[(base + i * SLOT) >> 2]);
      by.add(words[(base + i * SLOT + 4) >> 2]);
    }
    assert.deepEqual(runs, new Array(TASKS).fill(1), `round ${round}: a task ran twice or never`);
    assert.ok([...by].every((t) => t >= 1 && t <= 3), `round ${round}: thread ids ${[...by]}`);
    if (by.size > 1) return; // a worker took some of the tasks
  }
  assert.fail("the workers took no task in 5 rounds");
});

Deno.test("CpuPool.run() with a thread limit of 1 runs every task on the main thread", async () => {
  const { pool, memory, task } = await testPool();
  const words = new Int32Array(memory.buffer);
  pool.run(TASKS, CONTROL_BYTES, SLOT, 1, (at) => task(at, 0));
  for (let i = 0; i < TASKS; i++) {
    assert.equal(words[(CONTROL_BYTES + i * SLOT) >> 2], 1);
    assert.equal(words[(CONTROL_BYTES + i * SLOT + 4) >> 2], 1);
  }
  assert.equal(pool.size, 0);
});

Deno.test("CpuPool.run() throws on the main thread when a task traps, whichever thread ran it", async () => {
  const { pool, task } = await testPool();
  // descriptors past the end of the 64 KiB memory: every task traps
  for (let i = 0; i < 3; i++) {
    assert.throws(() => pool.run(8, 1 << 20, SLOT, 2, (at) => task(at, 0)));
  }
  pool.run(4, CONTROL_BYTES, SLOT, 2, (at) => task(at, 0)); // and the pool still works
  assert.throws(() => pool.run(0, CONTROL_BYTES, SLOT, 2, () => {}), RangeError);
});

Deno.test("parseCpuThreads() reads WEBSEQ_CPU_THREADS or defaults to the cores, capped", () => {
  assert.equal(parseCpuThreads(undefined, 2), 2);
  assert.equal(parseCpuThreads("", 1), 1);
  assert.equal(parseCpuThreads(undefined, 0), 1);
  assert.equal(parseCpuThreads(undefined, 64), MAX_AUTO_THREADS);
  assert.equal(parseCpuThreads("1", 16), 1);
  assert.equal(parseCpuThreads(" 12 ", 2), 12);
  for (const bad of ["0", "-1", "1.5", "two", "17"]) {
    assert.throws(() => parseCpuThreads(bad, 2), RangeError, bad);
  }
});
