/**
 * The model configuration record, as pinned by CONTRACTS.md §1. It is written
 * as `config.json` in every run folder.
 *
 * @module
 */

/** Feed-forward activation. */
export type FfnActivation = "gelu" | "swiglu";
/** Positional encoding kind. */
export type PositionalEncodingKind = "sinusoidal" | "learned";

/** One typed record for the whole architecture; a comment per field. */
export interface ModelConfig {
  /** Always "webseq". */
  format: "webseq";
  /** Bumped whenever a contract changes. */
  format_version: 1;
  /** Number of token ids (V). */
  vocab_size: number;
  /** Model width (C). */
  d_model: number;
  /** Attention heads (H); d_model must be divisible by it. */
  n_heads: number;
  /** Feed-forward width (F). */
  d_ff: number;
  /** Encoder blocks. */
  n_encoder_layers: number;
  /** Decoder blocks. */
  n_decoder_layers: number;
  /** "gelu" (exact, erf) with fc1/fc2 and biases, or "swiglu" without biases. */
  ffn_activation: FfnActivation;
  /** "sinusoidal" (fixed) or "learned" (a [max_position, C] parameter). */
  positional_encoding: PositionalEncodingKind;
  /** Longest sequence the positional encoding covers. */
  max_position: number;
  /** Dropout on embeddings, sublayer outputs and inside the FFN. */
  dropout: number;
  /** Dropout on attention probabilities. */
  attention_dropout: number;
  /** Stochastic depth rate (DropPath) on residual branches. */
  drop_path: number;
  /** Initial LayerScale gamma; null means no gamma parameters. */
  layer_scale_init: number | null;
  /** LayerNorm epsilon. */
  norm_eps: number;
  /** When true, decoder.embed.weight is also lm_head.weight. */
  tie_embeddings: boolean;
  /** Padding id: masked in attention, ignored by the loss. */
  pad_token_id: number;
  /** Beginning-of-sequence id. */
  bos_token_id: number;
  /** End-of-sequence id: appended to sources and targets; stops generation. */
  eos_token_id: number;
  /** First decoder input token. */
  decoder_start_token_id: number;
}

/** The defaults of CONTRACTS.md §1. */
export const DEFAULT_CONFIG: ModelConfig = {
  format: "webseq",
  format_version: 1,
  vocab_size: 8000,
  d_model: 256,
  n_heads: 4,
  d_ff: 1024,
  n_encoder_layers: 3,
  n_decoder_layers: 3,
  ffn_activation: "gelu",
  positional_encoding: "sinusoidal",
  max_position: 512,
  dropout: 0.1,
  attention_dropout: 0.0,
  drop_path: 0.1,
  layer_scale_init: 0.1,
  norm_eps: 1e-5,
  tie_embeddings: true,
  pad_token_id: 0,
  bos_token_id: 1,
  eos_token_id: 2,
  decoder_start_token_id: 1,
};

/** Named presets; vocab_size is set from the tokenizer at training time. */
export const PRESETS: Readonly<Record<string, Partial<ModelConfig>>> = {
  /** Learns the built-in corpus on a 2-core CPU in minutes. */
  tiny: {
    d_model: 64,
    n_heads: 4,
    d_ff: 256,
    n_encoder_layers: 2,
    n_decoder_layers: 2,
    max_position: 128,
    dropout: 0.1,
    drop_path: 0.0,
  },
  /** A small model (the contract's defaults). */
  small: {},
  /** Close to transformer-base (Vaswani et al. 2017). */
  base: {
    d_model: 512,
    n_heads: 8,
    d_ff: 2048,
    n_encoder_layers: 6,
    n_decoder_layers: 6,
  },
};

const INT_FIELDS = [
  "vocab_size",
  "d_model",
  "n_heads",
  "d_ff",
  "n_encoder_layers",
  "n_decoder_layers",
  "max_position",
  "pad_token_id",
  "bos_token_id",
  "eos_token_id",
  "decoder_start_token_id",
] as const;

/**
 * Checks a parsed config object field by field and returns it typed, with
 * defaults for missing fields. Throws a one-line error naming the field.
 */
export function validateConfig(raw: unknown, source = "config"): ModelConfig {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new TypeError(`${source}: expected a JSON object`);
  }
  const obj = raw as Record<string, unknown>;
  const known = new Set(Object.keys(DEFAULT_CONFIG));
  for (const key of Object.keys(obj)) {
    if (!known.has(key)) throw new TypeError(`${source}: unknown field "${key}"`);
  }
  const cfg = { ...DEFAULT_CONFIG, ...obj } as ModelConfig;
  if (cfg.format !== "webseq") throw new TypeError(`${source}: field "format" must be "webseq"`);
  if (cfg.format_version !== 1) {
    throw new RangeError(`${source}: unsupported format_version ${cfg.format_version}`);
  }
  for (const f of INT_FIELDS) {
    const v = cfg[f];
    if (typeof v !== "number" || !Number.isInteger(v) || v < 0) {
      throw new TypeError(`${source}: field "${f}" must be a non-negative integer`);
    }
  }
  for (const f of ["vocab_size", "d_model", "n_heads", "d_ff", "max_position"] as const) {
    if (cfg[f] < 1) throw new RangeError(`${source}: field "${f}" must be at least 1`);
  }
  if (cfg.d_model % cfg.n_heads !== 0) {
    throw new RangeError(
      `${source}: field "d_model" (${cfg.d_model}) must be divisible by n_heads (${cfg.n_heads})`,
    );
  }
  for (const f of ["dropout", "attention_dropout", "drop_path"] as const) {
    const v = cfg[f];
    if (typeof v !== "number" || !(v >= 0 && v < 1)) {
      throw new RangeError(`${source}: field "${f}" must be in [0, 1)`);
    }
  }
  if (cfg.ffn_activation !== "gelu" && cfg.ffn_activation !== "swiglu") {
    throw new TypeError(`${source}: field "ffn_activation" must be "gelu" or "swiglu"`);
  }
  if (cfg.positional_encoding !== "sinusoidal" && cfg.positional_encoding !== "learned") {
    throw new TypeError(`${source}: field "positional_encoding" must be "sinusoidal" or "learned"`);
  }
  if (cfg.layer_scale_init !== null && typeof cfg.layer_scale_init !== "number") {
    throw new TypeError(`${source}: field "layer_scale_init" must be a number or null`);
  }
  if (typeof cfg.norm_eps !== "number" || !(cfg.norm_eps > 0)) {
    throw new RangeError(`${source}: field "norm_eps" must be positive`);
  }
  if (typeof cfg.tie_embeddings !== "boolean") {
    throw new TypeError(`${source}: field "tie_embeddings" must be true or false`);
  }
  for (
    const f of ["pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id"] as const
  ) {
    if (cfg[f] >= cfg.vocab_size) {
      throw new RangeError(`${source}: field "${f}" (${cfg[f]}) must be below vocab_size`);
    }
  }
  return cfg;
}

/** Builds a config from a preset name plus overrides. */
export function presetConfig(name: string, overrides: Partial<ModelConfig> = {}): ModelConfig {
  const preset = PRESETS[name];
  if (!preset) {
    throw new RangeError(
      `Unknown preset "${name}" (choose one of ${Object.keys(PRESETS).join(", ")})`,
    );
  }
  return validateConfig({ ...DEFAULT_CONFIG, ...preset, ...overrides }, `preset ${name}`);
}
