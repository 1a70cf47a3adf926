/**
 * `report.html`: loss, accuracy and BLEU curves as inline SVG, the final
 * metrics, and the latest sample generations, from the run's metrics.jsonl
 * and samples.jsonl. A self-contained file with no scripts or network.
 *
 * @module
 */

/** One epoch's metrics (what the trainer writes to metrics.jsonl). */
export type MetricsRecord = Record<string, number | string | null>;

/** One sample (what the trainer writes to samples.jsonl). */
export interface SampleRecord {
  /** Epoch of the sample. */
  epoch: number;
  /** Source text. */
  source: string;
  /** Reference target. */
  reference: string;
  /** Generated text. */
  output: string;
  /** Decoding strategy. */
  strategy?: string;
}

function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea"];

/** An SVG line chart of several series over x. */
export function lineChart(
  title: string,
  series: { name: string; points: [number, number][] }[],
  opts: { xLabel?: string; width?: number; height?: number } = {},
): string {
  const W = opts.width ?? 460, H = opts.height ?? 260, L = 52, R = 12, T = 28, B = 36;
  const all = series.flatMap((s) => s.points).filter(([, y]) => Number.isFinite(y));
  if (all.length === 0) {
    return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}"><text x="10" y="20">${
      esc(title)
    }: no data yet</text></svg>`;
  }
  const x0 = Math.min(...all.map((p) => p[0]));
  let x1 = Math.max(...all.map((p) => p[0]));
  let y0 = Math.min(...all.map((p) => p[1])), y1 = Math.max(...all.map((p) => p[1]));
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) (y0 -= 0.5), (y1 += 0.5);
  const pad = (y1 - y0) * 0.05;
  y0 -= pad;
  y1 += pad;
  const sx = (x: number) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const sy = (y: number) => T + (1 - (y - y0) / (y1 - y0)) * (H - T - B);
  const ticks = (a: number, b: number, integer = false) => {
    // "nice" steps of 1, 2 or 5 × 10^k, about five ticks inside [a, b]
    const raw = (b - a) / 6, mag = 10 ** Math.floor(Math.log10(raw));
    let step = [1, 2, 5, 10].map((m) => m * mag).find((st) => st >= raw) ?? 10 * mag;
    if (integer) step = Math.max(1, Math.round(step));
    const out: number[] = [];
    for (let v = Math.ceil(a / step) * step; v <= b + 1e-9 * step; v += step) {
      out.push(Number(v.toPrecision(12)));
    }
    return out;
  };
  const fmt = (v: number) =>
    Math.abs(v) >= 100 || Number.isInteger(v) ? v.toFixed(0) : String(Number(v.toPrecision(3)));
  let svg =
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="11">`;
  svg += `<text x="${W / 2}" y="16" text-anchor="middle" font-size="13" font-weight="bold">${
    esc(title)
  }</text>`;
  for (const v of ticks(y0, y1)) {
    svg += `<line x1="${L}" x2="${W - R}" y1="${sy(v)}" y2="${sy(v)}" stroke="#e5e7eb"/>`;
    svg += `<text x="${L - 4}" y="${sy(v) + 4}" text-anchor="end">${fmt(v)}</text>`;
  }
  for (const v of ticks(x0, x1, true)) {
    svg += `<text x="${sx(v)}" y="${H - B + 14}" text-anchor="middle">${fmt(v)}</text>`;
  }
  svg += `<text x="${(L + W - R) / 2}" y="${H - 6}" text-anchor="middle">${
    esc(opts.xLabel ?? "epoch")
  }</text>`;
  series.forEach((s, i) => {
    const pts = s.points.filter(([, y]) => Number.isFinite(y));
    if (!pts.length) return;
    const c = COLORS[i % COLORS.length];
    svg += `<polyline fill="none" stroke="${c}" stroke-width="2" points="${
      pts.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(" ")
    }"/>`;
    for (const [x, y] of pts) svg += `<circle cx="${sx(x)}" cy="${sy(y)}" r="2.5" fill="${c}"/>`;
    svg += `<rect x="${L + 8 + i * 110}" y="${T + 2}" width="10" height="10" fill="${c}"/>`;
    svg += `<text x="${L + 22 + i * 110}" y="${T + 11}">${esc(s.name)}</text>`;
  });
  return svg + "</svg>";
}

function series(records: MetricsRecord[], key: string): [number, number][] {
  return records
    .filter((r) => typeof r[key] === "number")
    .map((r) => [Number(r.epoch), r[key] as number]);
}

/** The whole report page. */
export function renderReport(
  runName: string,
  records: MetricsRecord[],
  samples: SampleRecord[],
  info: Record<string, string | number> = {},
): string {
  const charts = [
    lineChart("Loss", [
      { name: "train", points: series(records, "train_loss") },
      { name: "valid", points: series(records, "valid_loss") },
    ]),
    lineChart("Token accuracy", [
      { name: "train", points: series(records, "train_accuracy") },
      { name: "valid", points: series(records, "valid_accuracy") },
      { name: "valid top-5", points: series(records, "valid_top5_accuracy") },
    ]),
    lineChart("BLEU (valid, greedy)", [
      { name: "sentence mean", points: series(records, "valid_bleu_sentence") },
      { name: "corpus", points: series(records, "valid_bleu_corpus") },
    ]),
    lineChart("Perplexity", [
      { name: "train", points: series(records, "train_perplexity") },
      { name: "valid", points: series(records, "valid_perplexity") },
    ]),
  ];
  const last = records[records.length - 1] ?? {};
  const lastEpoch = samples.length ? samples[samples.length - 1].epoch : null;
  const latest = samples.filter((s) => s.epoch === lastEpoch);
  const rows = Object.entries(last)
    .map(([k, v]) =>
      `<tr><th>${esc(k)}</th><td>${esc(typeof v === "number" ? fmtNum(v) : String(v))}</td></tr>`
    )
    .join("");
  const infoRows = Object.entries(info)
    .map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(String(v))}</td></tr>`)
    .join("");
  const sampleRows = latest
    .map((s) =>
      `<tr><td>${esc(s.source)}</td><td>${esc(s.reference)}</td><td class="${
        s.output.trim() === s.reference.trim() ? "ok" : ""
      }">${esc(s.output)}</td></tr>`
    )
    .join("");
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>webseq · ${esc(runName)}</title>
<style>
body{font-family:system-ui,sans-serif;margin:24px;color:#111;max-width:1000px}
h1{font-size:20px}h2{font-size:16px;margin-top:28px}
.charts{display:flex;flex-wrap:wrap;gap:12px}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f9fafb}.ok{background:#ecfdf5}
</style></head><body>
<h1>webseq run: ${esc(runName)}</h1>
<table>${infoRows}</table>
<h2>Curves</h2><div class="charts">${charts.join("\n")}</div>
<h2>Last epoch</h2><table>${rows}</table>
<h2>Samples${lastEpoch !== null ? ` (epoch ${lastEpoch})` : ""}</h2>
<table><tr><th>source</th><th>reference</th><th>generated</th></tr>${sampleRows}</table>
</body></html>
`;
}

function fmtNum(v: number): string {
  return Number.isInteger(v) ? String(v) : v.toPrecision(5);
}
