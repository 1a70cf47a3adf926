/** Schedules against transformers' lambdas (fixture table) and hand values. */
import assert from "node:assert/strict";
import { constantSchedule, cosineSchedule, linearWarmupSchedule } from "./schedule.ts";

const FIXTURE = JSON.parse(
  await Deno.readTextFile(new URL("../tests/testdata/optim/adamw.json", import.meta.url)),
) as {
  schedule_table: { num_warmup_steps: number; num_training_steps: number; factors: number[] }[];
};

Deno.test("linearWarmupSchedule() equals get_linear_schedule_with_warmup exactly", () => {
  assert.ok(FIXTURE.schedule_table.length >= 5);
  for (const row of FIXTURE.schedule_table) {
    const f = linearWarmupSchedule(row.num_warmup_steps, row.num_training_steps);
    assert.deepEqual(
      row.factors.map((_, s) => f(s)),
      row.factors,
      `w=${row.num_warmup_steps} T=${row.num_training_steps}`,
    );
  }
});

Deno.test("linearWarmupSchedule() with no warmup starts at 1 and ends at 0", () => {
  const f = linearWarmupSchedule(0, 4);
  assert.deepEqual([0, 1, 2, 3, 4, 5].map(f), [1, 0.75, 0.5, 0.25, 0, 0]);
});

Deno.test("cosineSchedule() and constantSchedule() follow transformers' formulas", () => {
  const c = cosineSchedule(2, 10);
  assert.deepEqual([0, 1, 2].map(c), [0, 0.5, 1]);
  assert.ok(Math.abs(c(6) - 0.5) < 1e-15); // half way through the decay
  assert.ok(Math.abs(c(10)) < 1e-15);
  assert.ok(Math.abs(c(4) - 0.5 * (1 + Math.cos(Math.PI * 0.25))) < 1e-15);
  const k = constantSchedule(4);
  assert.deepEqual([0, 1, 4, 100].map(k), [0, 0.25, 1, 1]);
  assert.equal(constantSchedule()(0), 1);
});

Deno.test("schedules reject negative or fractional step counts", () => {
  assert.throws(() => linearWarmupSchedule(-1, 10), /warmup must be an integer/);
  assert.throws(() => linearWarmupSchedule(1, 2.5), /total must be an integer/);
  assert.throws(() => cosineSchedule(0, 10, 0), RangeError);
});
