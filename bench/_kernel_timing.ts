/**
 * Timing one hand-built compute kernel (the bench probes' pipelines, outside
 * the op registry): an untimed dispatch whose output is read back, then
 * `repeats` timed ones, each in a pass of its own with GPU timestamps where
 * the adapter has them (else the wall clock of a submit each), the median
 * reported.
 *
 * @module
 */

/** What {@linkcode timeKernel} measured. */
export interface KernelTiming {
  /** Milliseconds per dispatch (median). */
  ms: number;
  /** "timestamp" (GPU timestamps) or "wallclock". */
  timing: "timestamp" | "wallclock";
  /** The first `readBytes` of `out` after the untimed dispatch. */
  first: ArrayBuffer;
}

/**
 * Dispatches `pipeline` with bind group `group` over `grid` workgroups once,
 * reads back the first `readBytes` of `out`, then times `repeats` more.
 */
export async function timeKernel(
  dev: GPUDevice,
  pipeline: GPUComputePipeline,
  group: GPUBindGroup,
  grid: readonly [number, number?],
  out: GPUBuffer,
  readBytes: number,
  repeats: number,
): Promise<KernelTiming> {
  const qs = dev.features.has("timestamp-query")
    ? dev.createQuerySet({ type: "timestamp", count: 2 * repeats })
    : null;
  const resolve = qs
    ? dev.createBuffer({
      size: 16 * repeats,
      usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
    })
    : null;
  const read = dev.createBuffer({
    size: Math.max(readBytes, qs ? 16 * repeats : 0, 16),
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  const dispatch = (enc: GPUCommandEncoder, i: number | null) => {
    const pass = enc.beginComputePass(
      qs && i !== null
        ? {
          timestampWrites: {
            querySet: qs,
            beginningOfPassWriteIndex: 2 * i,
            endOfPassWriteIndex: 2 * i + 1,
          },
        }
        : {},
    );
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, group);
    pass.dispatchWorkgroups(grid[0], grid[1] ?? 1);
    pass.end();
  };
  try {
    // one untimed dispatch (the compile, the clocks), then `repeats` timed ones
    let enc = dev.createCommandEncoder();
    dispatch(enc, null);
    enc.copyBufferToBuffer(out, 0, read, 0, readBytes);
    dev.queue.submit([enc.finish()]);
    await read.mapAsync(GPUMapMode.READ);
    const first = read.getMappedRange().slice(0, readBytes);
    read.unmap();
    const times: number[] = [];
    if (qs && resolve) {
      enc = dev.createCommandEncoder();
      for (let i = 0; i < repeats; i++) dispatch(enc, i);
      enc.resolveQuerySet(qs, 0, 2 * repeats, resolve, 0);
      enc.copyBufferToBuffer(resolve, 0, read, 0, 16 * repeats);
      dev.queue.submit([enc.finish()]);
      await read.mapAsync(GPUMapMode.READ);
      const ts = new BigUint64Array(read.getMappedRange().slice(0, 16 * repeats));
      read.unmap();
      for (let i = 0; i < repeats; i++) times.push(Number(ts[2 * i + 1] - ts[2 * i]) / 1e6);
    } else {
      for (let i = 0; i < repeats; i++) {
        const t0 = performance.now();
        enc = dev.createCommandEncoder();
        dispatch(enc, null);
        dev.queue.submit([enc.finish()]);
        await dev.queue.onSubmittedWorkDone();
        times.push(performance.now() - t0);
      }
    }
    times.sort((x, y) => x - y);
    return {
      ms: times[Math.floor(times.length / 2)],
      timing: qs ? "timestamp" : "wallclock",
      first,
    };
  } finally {
    for (const b of [read, resolve]) b?.destroy();
    qs?.destroy();
  }
}
