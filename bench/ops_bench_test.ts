/** The ops benchmark yields well-formed lines naming the device (tiny CPU run). */
import assert from "node:assert/strict";
import { runOpsBench, sweepTiles } from "./ops_bench.ts";
import { tileName } from "../ops/mod.ts";
import { sweepBestTiles } from "./sweep_best.ts";
import { CPU } from "../tensor/cpu_backend.ts";
import { GPU, NO_GPU } from "../tests/_gpu.ts";

Deno.test("runOpsBench() yields matmul, dispatch and attention lines naming the device", async () => {
  const lines = [];
  for await (
    const l of runOpsBench({ backend: CPU, sizes: [48, 4096], tokens: 2, minTimeMs: 5 })
  ) lines.push(l);
  for (const l of lines) {
    assert.equal(l.device, CPU.description);
    assert.equal(l.backend, "cpu");
  }
  const square = lines.filter((l) => l.kind === "matmul" && l.label === "square");
  assert.equal(square.length, 2);
  assert.ok((square[0].gflops as number) > 0 && square[0].m === 48);
  assert.match(String(square[1].skipped), /software backend/);
  const model = lines.filter((l) => l.kind === "matmul" && String(l.label).startsWith("small."));
  assert.equal(model.length, 6);
  assert.ok(model.every((l) => (l.gflops as number) > 0 && l.m !== undefined));
  const dispatch = lines.find((l) => l.kind === "dispatch");
  assert.ok((dispatch!.us_per_dispatch as number) > 0);
  const attention = lines.filter((l) => l.kind === "attention");
  assert.ok(attention.length >= 1);
  for (const l of attention) assert.ok(l.ms !== undefined || l.skipped !== undefined);
});

Deno.test({
  name: "runOpsBench() variants and tune groups yield one line per variant, size and layout",
  ignore: NO_GPU,
  fn: async () => {
    const lines = [];
    for await (
      const l of runOpsBench({
        backend: GPU!,
        only: ["variants", "tune"],
        variantSizes: [8],
        variants: ["t32x32k16_4x4"],
        layouts: ["NT", "NN"],
        tokens: 2,
        minTimeMs: 5,
      })
    ) lines.push(l);
    const table = lines.filter((l) => l.kind === "matmul_variant");
    assert.deepEqual(table.map((l) => l.layout), ["NT", "NN"]);
    for (const l of table) {
      assert.equal(l.variant, "t32x32k16_4x4");
      assert.ok((l.ms as number) > 0 && (l.first_ms as number) > 0, JSON.stringify(l));
    }
    const tune = lines.filter((l) => l.kind === "matmul_tune");
    assert.equal(tune.length, 1 + 6); // the square size and the small preset's shapes
    for (const l of tune) {
      assert.equal(l.variant, "t32x32k16_4x4");
      assert.ok(Number.isFinite(JSON.parse(l.variants_ms as string)["t32x32k16_4x4"]));
    }
  },
});

Deno.test("sweepTiles() stays within the adapter's limits and starts at the 256-thread 8×8 tile", () => {
  const small = { description: "", software: false, maxInvocations: 256, maxWorkgroupBytes: 16384 };
  const big = { ...small, maxInvocations: 1024, maxWorkgroupBytes: 49152 };
  const tiles = sweepTiles(small);
  assert.ok(tiles.length > 50 && sweepTiles(big).length > tiles.length);
  for (const t of tiles) {
    const threads = (t.BM / t.TM) * (t.BN / t.TN);
    assert.ok(threads >= 64 && threads <= 256, tileName(t));
    const pad = t.pad ? 8 : 0;
    assert.ok((t.BM + t.BN + pad) * t.BK * 4 * (t.double ? 2 : 1) <= 16384, tileName(t));
    assert.ok(t.TM * t.TN <= 128, tileName(t));
  }
  assert.equal(tileName(tiles[0]), "t128x128k8_8x8d");
  // padded, it needs 16.5 KiB: beyond WebGPU's default, second where the adapter allows more
  assert.ok(!tiles.some((t) => tileName(t) === "t128x128k8_8x8dp"));
  assert.equal(tileName(sweepTiles(big)[1]), "t128x128k8_8x8dp");
  assert.equal(new Set(tiles.map(tileName)).size, tiles.length);
});

Deno.test({
  name: "runOpsBench() sweep times generator tiles until its budget and names the fastest",
  ignore: NO_GPU,
  fn: async () => {
    const lines = [];
    for await (
      const l of runOpsBench({
        backend: GPU!,
        only: ["sweep"],
        variantSizes: [16],
        layouts: ["NT"],
        sweepSeconds: 1.5,
        sweepPrecisions: ["f32", "f16acc"],
      })
    ) lines.push(l);
    if (!GPU!.hasF16) {
      // the CI adapter (GL) has no shader-f16: the f16 sweep says so and the f32 one runs
      const skipped = lines.shift()!;
      assert.equal(skipped.precision, "f16acc");
      assert.match(String(skipped.skipped), /shader-f16/);
    }
    const timed = lines.filter((l) =>
      l.kind === "matmul_sweep" && l.gflops !== undefined && l.precision === "f32"
    );
    assert.ok(timed.length >= 1, JSON.stringify(lines));
    const best = lines.find((l) => l.kind === "matmul_sweep_best" && l.precision === "f32")!;
    assert.equal(best.tried, timed.filter((l) => l.precision === "f32").length);
    const top = JSON.parse(best.best as string) as { name: string; gflops: number }[];
    assert.equal(top[0].gflops, Math.max(...timed.map((l) => l.gflops as number)));
  },
});

Deno.test("sweepBestTiles() takes the fastest tiles of every sweep_best line, each once", () => {
  const best = (xs: [string, number][]) =>
    JSON.stringify({
      kind: "matmul_sweep_best",
      best: JSON.stringify(xs.map(([name, gflops]) => ({ name, gflops }))),
    });
  const jsonl = [
    best([["t128x128k8_8x8d", 900], ["t64x64k8_4x4d", 500], ["t32x32k16_4x4", 100]]),
    '{"kind":"matmul_sweep","tile":"t256x64k8_16x4","gflops":5000}',
    "== a log line",
    best([["t64x128k16_8x8d", 1200], ["t128x128k8_8x8d", 800]]),
    '{"kind":"matmul_sweep_best","best":"[', // cut off
  ].join("\n");
  assert.deepEqual(sweepBestTiles(jsonl), ["t64x128k16_8x8d", "t128x128k8_8x8d", "t64x64k8_4x4d"]);
  assert.deepEqual(sweepBestTiles(jsonl, 1), ["t64x128k16_8x8d", "t128x128k8_8x8d"]);
  assert.deepEqual(sweepBestTiles(""), []);
});

Deno.test({
  name: "--sweep-tiles times the named tiles in order; a name that is no tile is a one-line error",
  ignore: NO_GPU,
  fn: async () => {
    const sweep = [];
    for await (
      const l of runOpsBench({
        backend: GPU!,
        only: ["sweep"],
        variantSizes: [32],
        layouts: ["NN"],
        sweepTiles: ["t32x32k8_4x4", "t32x32k16_4x4"],
        sweepSeconds: 30,
      })
    ) if (l.kind === "matmul_sweep") sweep.push(l);
    assert.deepEqual(sweep.map((l) => l.tile), ["t32x32k8_4x4", "t32x32k16_4x4"]);
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        new URL("./ops_bench.ts", import.meta.url).pathname,
        "--sweep-tiles",
        "t1x1",
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 2);
    const err = new TextDecoder().decode(out.stderr).trim();
    assert.equal(err.split("\n").length, 1);
    assert.match(err, /--sweep-tiles takes generator tiles .*"t1x1"/);
  },
});
