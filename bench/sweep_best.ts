/**
 * The fastest tiles of a tile sweep's output, as a `--tune-tiles` list:
 *
 *   deno run --allow-read bench/sweep_best.ts device.jsonl [per-line]
 *
 * reads the JSON lines `bench/ops_bench.ts --only sweep --json` printed and
 * prints the `per-line` (default 2) fastest tiles of every
 * `matmul_sweep_best` line, comma-separated, each once, fastest first.
 * bench/device_check.sh hands them to the training benchmark's tuner.
 *
 * @module
 */

/** The tile names of `per` fastest tiles per `matmul_sweep_best` line in `jsonl`. */
export function sweepBestTiles(jsonl: string, per = 2): string[] {
  const out: { name: string; gflops: number }[] = [];
  for (const line of jsonl.split("\n")) {
    if (!line.startsWith("{")) continue;
    let row: { kind?: string; best?: string };
    try {
      row = JSON.parse(line);
    } catch {
      continue; // a line cut off by a section's time limit
    }
    if (row.kind !== "matmul_sweep_best" || typeof row.best !== "string") continue;
    const best = JSON.parse(row.best) as { name: string; gflops: number }[];
    out.push(...best.slice(0, per));
  }
  out.sort((a, b) => b.gflops - a.gflops);
  return [...new Set(out.map((t) => t.name))];
}

if (import.meta.main) {
  const [file, per] = Deno.args;
  if (!file) {
    console.error("usage: deno run --allow-read bench/sweep_best.ts FILE.jsonl [per-line]");
    Deno.exit(2);
  }
  console.log(sweepBestTiles(await Deno.readTextFile(file), per ? Number(per) : 2).join(","));
}
