/**
 * A tqdm-like progress bar on stderr with a live postfix:
 * `epoch 2/10  47%|█████▌      | 125/266 [00:12<00:13, loss=2.31, lr=3.0e-04, tok/s=1.2k]`.
 * On a terminal it redraws one line; otherwise it prints a plain line every
 * `everySeconds` so logs stay readable.
 *
 * @module
 */

/** Options of {@linkcode ProgressBar}. */
export interface ProgressOptions {
  /** Label before the bar. */
  label: string;
  /** Total count (0: unknown). */
  total: number;
  /** Suppress all output. */
  quiet?: boolean;
  /** Seconds between lines when stderr is not a terminal (default 10). */
  everySeconds?: number;
  /** Where to write (default stderr). */
  write?: (s: string) => void;
  /** Force terminal mode on or off. */
  tty?: boolean;
  /**
   * Terminal width in columns (default: the terminal's, read at each redraw): a redrawn line
   * longer than this would wrap, and `\r` would then redraw only its last row.
   */
  columns?: number;
}

/** The terminal's width, or undefined when it cannot be told. */
function terminalColumns(): number | undefined {
  try {
    return Deno.consoleSize().columns;
  } catch {
    return undefined;
  }
}

/** `line` cut to fit `columns` − 1 characters (an ellipsis at the cut). */
export function fitLine(line: string, columns: number | undefined): string {
  if (!columns || columns < 8) return line;
  const chars = [...line];
  return chars.length < columns ? line : chars.slice(0, columns - 2).join("") + "…";
}

const encoder = new TextEncoder();

function fmtTime(s: number): string {
  if (!Number.isFinite(s) || s < 0) return "?";
  s = Math.round(s);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  const mm = String(m).padStart(2, "0"), ss = String(sec).padStart(2, "0");
  return h > 0 ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
}

/** Formats a number compactly (1234 → 1.2k). */
export function fmtCompact(v: number): string {
  const a = Math.abs(v);
  if (a >= 1e6) return (v / 1e6).toFixed(1) + "M";
  if (a >= 1e3) return (v / 1e3).toFixed(1) + "k";
  if (a !== 0 && a < 1e-2) return v.toExponential(1);
  return a >= 100 ? v.toFixed(0) : v.toPrecision(3);
}

/** A progress bar with a postfix of named values. */
export class ProgressBar {
  #opts: ProgressOptions;
  #n = 0;
  #start = performance.now();
  #last = 0;
  #postfix: Record<string, string> = {};
  #tty: boolean;
  #drawnAt = -1;
  #write: (s: string) => void;

  /** Starts the clock. */
  constructor(opts: ProgressOptions) {
    this.#opts = opts;
    this.#tty = opts.tty ?? Deno.stderr.isTerminal();
    this.#write = opts.write ?? ((s) => Deno.stderr.writeSync(encoder.encode(s)));
  }

  /** Sets postfix values (numbers are formatted compactly). */
  setPostfix(values: Record<string, number | string>): void {
    for (const [k, v] of Object.entries(values)) {
      this.#postfix[k] = typeof v === "number" ? fmtCompact(v) : v;
    }
  }

  /** Advances by `k` and redraws when due. */
  update(k = 1): void {
    this.#n += k;
    const now = performance.now();
    const every = this.#tty ? 100 : (this.#opts.everySeconds ?? 10) * 1000;
    if (now - this.#last >= every || this.#n === this.#opts.total) {
      this.#last = now;
      this.#draw(false);
    }
  }

  /** The current line. */
  render(): string {
    const { label, total } = this.#opts;
    const elapsed = (performance.now() - this.#start) / 1000;
    const rate = this.#n / Math.max(elapsed, 1e-9);
    const post = Object.entries(this.#postfix).map(([k, v]) => `${k}=${v}`).join(", ");
    if (!total) return `${label} ${this.#n} [${fmtTime(elapsed)}${post ? ", " + post : ""}]`;
    const frac = Math.min(1, this.#n / total);
    const width = 20;
    const full = Math.floor(frac * width);
    const partial = " ▏▎▍▌▋▊▉"[Math.floor((frac * width - full) * 8)] ?? "";
    const bar = ("█".repeat(full) + (full < width ? partial : "")).padEnd(width, " ");
    const eta = this.#n > 0 ? (total - this.#n) / rate : NaN; // nothing done yet: unknown ("?")
    return `${label} ${String(Math.floor(frac * 100)).padStart(3)}%|${bar}| ${this.#n}/${total} [${
      fmtTime(elapsed)
    }<${fmtTime(eta)}${post ? ", " + post : ""}]`;
  }

  #draw(final: boolean): void {
    if (this.#opts.quiet) return;
    if (!this.#tty && final && this.#drawnAt === this.#n) return;
    this.#drawnAt = this.#n;
    const line = this.render();
    if (this.#tty) {
      const fitted = fitLine(line, this.#opts.columns ?? terminalColumns());
      this.#write(`\r\x1b[2K${fitted}${final ? "\n" : ""}`);
    } else this.#write(line + "\n");
  }

  /** Draws the final state and ends the line. */
  close(): void {
    this.#draw(true);
  }
}
