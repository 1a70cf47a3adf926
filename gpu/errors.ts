/**
 * Typed WebGPU errors with messages that say what failed and why.
 *
 * @module
 */

/** No WebGPU adapter could be found (or WebGPU is missing). */
export class GpuUnavailableError extends Error {
  /**
   * Creates the error.
   *
   * @param message why no adapter was found
   */
  constructor(message: string) {
    super(message);
    this.name = "GpuUnavailableError";
  }
}

/** An allocation exceeded the adapter's limits or the device ran out of memory. */
export class GpuOutOfMemoryError extends RangeError {
  /**
   * Creates the error.
   *
   * @param message what allocation failed
   */
  constructor(message: string) {
    super(message);
    this.name = "GpuOutOfMemoryError";
  }
}

/** The device was lost (driver reset, destroyed); create a new backend. */
export class GpuDeviceLostError extends Error {
  /**
   * Creates the error.
   *
   * @param message the reason the driver gave
   */
  constructor(message: string) {
    super(message);
    this.name = "GpuDeviceLostError";
  }
}

/** A WGSL shader or pipeline failed validation (a webseq bug). */
export class GpuValidationError extends Error {
  /**
   * Creates the error.
   *
   * @param message the validation message
   */
  constructor(message: string) {
    super(message);
    this.name = "GpuValidationError";
  }
}
