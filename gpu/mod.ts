/**
 * WebGPU plumbing: adapter/device acquisition, typed errors, the backend.
 *
 * @module
 */
export * from "./adapter.ts";
export * from "./errors.ts";
export * from "./backend.ts";
