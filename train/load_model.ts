/**
 * Loads a run folder (CONTRACTS.md §7) into a ready model: config, weights
 * on a backend, tokenizer. Used by `generate`, `eval` and `--init-from`.
 *
 * @example
 * ```ts ignore
 * import { loadRun } from "@webseq/webseq";
 * const { model, config, tokenizer } = await loadRun("runs/demo");
 * console.log(config.d_model, model.parameterCount(), tokenizer?.vocabSize);
 * ```
 *
 * @module
 */
import type { ModelConfig } from "../nn/config.ts";
import { Seq2Seq } from "../nn/seq2seq.ts";
import type { InitContext, StateDict } from "../nn/module.ts";
import { getDefaultBackend } from "../tensor/tensor.ts";
import type { Backend } from "../tensor/types.ts";
import { loadTokenizer } from "../data/tokenizer.ts";
import type { TextTokenizer } from "../data/tokenizer_types.ts";
import { LM_HEAD_WEIGHT, loadConfig, loadModelWeights, runPath } from "./run_folder.ts";

/** Options of {@linkcode loadRun}. */
export interface LoadRunOptions {
  /** Where the weights go (default: the default backend). */
  backend?: Backend;
  /** Fail when tokenizer.json is missing (default true); false returns tokenizer null. */
  requireTokenizer?: boolean;
}

/** What {@linkcode loadRun} returns. */
export interface LoadedRun {
  /** The model with the run's weights, in eval mode. */
  model: Seq2Seq;
  /** The run's config.json. */
  config: ModelConfig;
  /** The run's tokenizer.json (null only when missing and not required). */
  tokenizer: TextTokenizer | null;
}

/**
 * Builds the model from `DIR/config.json`, loads `DIR/model.safetensors`
 * strictly by name (a tied file omits `decoder.lm_head.weight`; a tied model
 * ignores one that is present), loads `DIR/tokenizer.json`, and puts the
 * model in eval mode. Errors name the file at fault.
 */
export async function loadRun(dir: string, opts: LoadRunOptions = {}): Promise<LoadedRun> {
  try {
    const info = await Deno.stat(dir);
    if (!info.isDirectory) throw new TypeError(`${dir}: not a run folder (not a directory)`);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      throw new Deno.errors.NotFound(`${dir}: run folder does not exist`);
    }
    throw err;
  }
  const config = await loadConfig(dir);
  const weights: StateDict = { ...(await loadModelWeights(dir)) };
  const modelPath = runPath(dir, "model");
  if (config.tie_embeddings) {
    delete weights[LM_HEAD_WEIGHT];
  } else if (!weights[LM_HEAD_WEIGHT]) {
    throw new TypeError(
      `${modelPath}: missing tensor "${LM_HEAD_WEIGHT}" (config.json has tie_embeddings false)`,
    );
  }

  let tokenizer: TextTokenizer | null = null;
  const tokPath = runPath(dir, "tokenizer");
  try {
    tokenizer = await loadTokenizer(tokPath);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound) || (opts.requireTokenizer ?? true)) {
      if (err instanceof Deno.errors.NotFound) {
        throw new Deno.errors.NotFound(`${tokPath}: file is missing`);
      }
      throw err;
    }
  }
  if (tokenizer && tokenizer.vocabSize > config.vocab_size) {
    throw new RangeError(
      `${tokPath}: tokenizer has ${tokenizer.vocabSize} ids, more than vocab_size ${config.vocab_size} in config.json`,
    );
  }

  // Initial values are overwritten at once: a constant generator skips the random draws.
  const backend = opts.backend ?? getDefaultBackend();
  const ctx: InitContext = { backend, rng: () => 0.5 };
  const model = new Seq2Seq(config, ctx);
  try {
    model.loadStateDict(weights, { source: modelPath });
  } catch (err) {
    model.dispose();
    throw err;
  }
  return { model: model.eval(), config, tokenizer };
}
