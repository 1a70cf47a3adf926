/**
 * The small training setup of the end-to-end tests: the first 96 pairs of the
 * built-in corpus to train on, the next 16 to validate, and a one-layer
 * d_model-16 config (dropout and DropPath overridable).
 *
 * @module
 */

const CORPUS = new URL("../data/corpus/train.tsv", import.meta.url).pathname;

/** Paths of the files {@linkcode smallData} writes. */
export interface SmallData {
  /** 96 training pairs (TSV with header). */
  train: string;
  /** 16 validation pairs. */
  valid: string;
  /** The model config. */
  config: string;
}

/** Writes the small corpus slices and config into `dir`. */
export async function smallData(
  dir: string,
  regularisation: { dropout: number; drop_path: number } = { dropout: 0.1, drop_path: 0.1 },
): Promise<SmallData> {
  const lines = (await Deno.readTextFile(CORPUS)).split("\n");
  const train = `${dir}/train.tsv`, valid = `${dir}/valid.tsv`, config = `${dir}/config.json`;
  await Deno.writeTextFile(train, [lines[0], ...lines.slice(1, 97)].join("\n") + "\n");
  await Deno.writeTextFile(valid, [lines[0], ...lines.slice(97, 113)].join("\n") + "\n");
  await Deno.writeTextFile(
    config,
    JSON.stringify({
      d_model: 16,
      n_heads: 2,
      d_ff: 32,
      n_encoder_layers: 1,
      n_decoder_layers: 1,
      max_position: 48,
      ...regularisation,
    }),
  );
  return { train, valid, config };
}
