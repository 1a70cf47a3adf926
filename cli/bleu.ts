/**
 * `webseq bleu`: BLEU of a hypothesis file against one or more reference
 * files (one sentence a line, whitespace tokens), with NLTK semantics;
 * optionally sacreBLEU-style BLEU and chrF.
 *
 * @module
 */
import { type BleuSummary, bleuSummary, corpusSacreBleu } from "../metrics/bleu.ts";
import { corpusChrf, sentenceChrf } from "../metrics/chrf.ts";
import {
  EXIT_OK,
  numberFlag,
  parseFlags,
  printJson,
  reportError,
  stringFlag,
  UsageError,
} from "./_common.ts";
import { errorLine } from "../tensor/errors.ts";
import { readTextLines } from "../data/readers.ts";

/** Help text of `webseq bleu`. */
export const HELP: string =
  `webseq bleu: BLEU of a hypothesis file against reference files (NLTK semantics)

Examples:
  webseq bleu --refs tests/testdata/bleu/cli_refs_a.txt --hyps tests/testdata/bleu/cli_hyps.txt
  webseq bleu --refs tests/testdata/bleu/cli_refs_a.txt --refs tests/testdata/bleu/cli_refs_b.txt \\
    --hyps tests/testdata/bleu/cli_hyps.txt --smoothing 0 --sacrebleu --chrf --json

Usage:
  webseq bleu --refs FILE [--refs FILE ...] --hyps FILE [options]

One sentence a line; line i of every --refs file is a reference of line i of --hyps.
BLEU is NLTK's sentence_bleu/corpus_bleu on whitespace tokens, weights (0.25, 0.25,
0.25, 0.25), scores 0-1. --json prints {"sentence": [...], "sentence_mean": x, "corpus": y, ...}.

Options:
  --refs FILE       reference file; repeat for several references per sentence
  --hyps FILE|-     hypothesis file (same number of lines), or stdin with -
  --smoothing N     NLTK SmoothingFunction method 0-7 (default 1; 0 is NLTK's unsmoothed)
  --sacrebleu       also sacreBLEU-style corpus BLEU (0-100, 13a tokenizer, exp smoothing)
  --chrf            also chrF2 (sacreBLEU CHRF defaults, 0-100), corpus and sentence mean
  --json            one JSON object on stdout
  -h, --help        show this help

Permissions: --allow-read (the files named).`;

/**
 * Reads a file as lines (a final newline ends the last line; CRLF accepted, a
 * byte-order mark dropped, invalid UTF-8 an error naming the line).
 */
async function readLines(path: string, flag: string): Promise<string[]> {
  try {
    // "-": standard input (`webseq generate … | webseq bleu --refs R --hyps -`)
    return path === "-"
      ? await readTextLines(Deno.stdin.readable, "stdin")
      : await readTextLines(path);
  } catch (err) {
    if (err instanceof SyntaxError) throw err; // file:line: invalid UTF-8
    const why = err instanceof Deno.errors.NotFound ? "no such file" : errorLine(err);
    throw new Error(`cannot read ${flag} file ${path}: ${why}`);
  }
}

function mean(xs: number[]): number {
  let s = 0;
  for (const x of xs) s += x;
  return s / xs.length;
}

/** Runs `webseq bleu`; returns the exit code. */
export async function run(args: string[]): Promise<number> {
  try {
    const { flags } = parseFlags(args, {
      refs: { type: "string", multiple: true },
      hyps: { type: "string" },
      smoothing: { type: "string" },
      sacrebleu: { type: "boolean" },
      chrf: { type: "boolean" },
      json: { type: "boolean" },
    });
    if (flags.help) {
      console.log(HELP);
      return EXIT_OK;
    }
    const refPaths = (flags.refs as string[] | undefined) ?? [];
    if (refPaths.length === 0) throw new UsageError("Missing required option --refs");
    if (refPaths.includes("-")) {
      throw new UsageError("Option --refs takes files; only --hyps may be - (stdin)");
    }
    const hypPath = stringFlag(flags, "hyps", true)!;
    const smoothing = numberFlag(flags, "smoothing", { integer: true, min: 0, max: 7 }) ?? 1;

    const hyps = await readLines(hypPath, "--hyps");
    const refFiles: string[][] = [];
    for (const p of refPaths) {
      const lines = await readLines(p, "--refs");
      if (lines.length !== hyps.length) {
        throw new Error(
          `line count mismatch: --refs ${p} has ${lines.length} lines, --hyps ${hypPath} has ${hyps.length}`,
        );
      }
      refFiles.push(lines);
    }
    if (hyps.length === 0) throw new Error(`--hyps ${hypPath} has no lines`);

    const refText = hyps.map((_, i) => refFiles.map((f) => f[i]));
    let bleu: BleuSummary;
    try {
      bleu = bleuSummary(refText, hyps, { smoothing });
    } catch (err) {
      const msg = err instanceof Error ? err.message : String(err);
      const m = /^sentence (\d+): (.*)$/.exec(msg);
      throw new Error(m ? `${hypPath} line ${Number(m[1]) + 1}: ${m[2]}` : msg);
    }
    const result: Record<string, unknown> = {
      sentence: bleu.sentence,
      sentence_mean: bleu.sentenceMean,
      corpus: bleu.corpus,
      smoothing,
      sentences: hyps.length,
      references: refPaths.length,
    };
    const sacre = flags.sacrebleu ? corpusSacreBleu(refText, hyps) : undefined;
    if (sacre) {
      result.sacrebleu = {
        score: sacre.score,
        precisions: sacre.precisions,
        bp: sacre.bp,
        ratio: sacre.ratio,
        hyp_len: sacre.sysLen,
        ref_len: sacre.refLen,
        signature: sacre.signature,
      };
    }
    let chrf: { score: number; sentence_mean: number; name: string; signature: string } | undefined;
    if (flags.chrf) {
      const c = corpusChrf(refText, hyps);
      const sent = hyps.map((h, i) => sentenceChrf(refText[i], h).score);
      chrf = { score: c.score, sentence_mean: mean(sent), name: c.name, signature: c.signature };
      result.chrf = chrf;
    }

    if (flags.json) {
      printJson(result);
    } else {
      const nrefs = refPaths.length === 1 ? "1 reference" : `${refPaths.length} references`;
      console.log(
        `BLEU (NLTK, method${smoothing}): corpus ${(result.corpus as number).toFixed(4)}  ` +
          `sentence mean ${(result.sentence_mean as number).toFixed(4)}  ` +
          `(${hyps.length} sentences, ${nrefs} each)`,
      );
      if (sacre) console.log(`sacreBLEU: ${sacre.text}  ${sacre.signature}`);
      if (chrf) {
        console.log(
          `${chrf.name} = ${chrf.score.toFixed(2)}  sentence mean ${
            chrf.sentence_mean.toFixed(2)
          }  ` +
            chrf.signature,
        );
      }
    }
    return EXIT_OK;
  } catch (err) {
    return reportError("bleu", err);
  }
}
