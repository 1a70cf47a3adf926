/**
 * Metrics: BLEU (NLTK semantics), sacreBLEU-style BLEU, chrF, and
 * plain-array token metrics.
 *
 * @module
 */
export * from "./bleu.ts";
export * from "./chrf.ts";
export * from "./token_metrics.ts";
