/**
 * The model: config, modules, and Seq2Seq.
 *
 * @module
 */
export * from "./config.ts";
export * from "./module.ts";
export * from "./layers.ts";
export * from "./attention.ts";
export * from "./feed_forward.ts";
export * from "./blocks.ts";
export * from "./seq2seq.ts";
