/**
 * Random numbers. `makeRng` is a seeded generator (splitmix32) for
 * initialisation and shuffling on the host. `hashU32` is the counter-based
 * hash that dropout uses on both backends: the same (seed, index) gives the
 * same bits on the CPU and in WGSL (`WGSL_HASH`), so masks are identical.
 *
 * @module
 */

/** A seeded uniform [0, 1) generator (splitmix32). */
export function makeRng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    z = (z ^ (z >>> 16)) >>> 0;
    return z / 4294967296;
  };
}

/** Standard normal samples from a uniform generator (Box–Muller). */
export function makeNormal(rng: () => number): () => number {
  let spare: number | null = null;
  return () => {
    if (spare !== null) {
      const s = spare;
      spare = null;
      return s;
    }
    let u = 0;
    while (u === 0) u = rng();
    const v = rng();
    const r = Math.sqrt(-2 * Math.log(u));
    spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  };
}

/**
 * Counter-based hash of (seed, counter) → u32: a lowbias32-style mixer
 * applied twice. Mirrors `WGSL_HASH` bit for bit.
 */
export function hashU32(seed: number, counter: number): number {
  let x = (counter ^ Math.imul(seed >>> 0, 0x9e3779b9)) >>> 0;
  x = Math.imul(x ^ (x >>> 16), 0x21f0aaad) >>> 0;
  x = Math.imul(x ^ (x >>> 15), 0x735a2d97) >>> 0;
  x = (x ^ (x >>> 15)) >>> 0;
  x = (x + (seed >>> 0)) >>> 0;
  x = Math.imul(x ^ (x >>> 16), 0x21f0aaad) >>> 0;
  x = Math.imul(x ^ (x >>> 15), 0x735a2d97) >>> 0;
  return (x ^ (x >>> 15)) >>> 0;
}

/** Uniform [0, 1) from the counter hash (24-bit resolution, exact in f32). */
export function hashUniform(seed: number, counter: number): number {
  return (hashU32(seed, counter) >>> 8) / 16777216;
}

/** WGSL twin of {@linkcode hashU32} and {@linkcode hashUniform}. */
export const WGSL_HASH = `
fn hash_u32(seed: u32, counter: u32) -> u32 {
  var x = counter ^ (seed * 0x9e3779b9u);
  x = (x ^ (x >> 16u)) * 0x21f0aaadu;
  x = (x ^ (x >> 15u)) * 0x735a2d97u;
  x = x ^ (x >> 15u);
  x = x + seed;
  x = (x ^ (x >> 16u)) * 0x21f0aaadu;
  x = (x ^ (x >> 15u)) * 0x735a2d97u;
  return x ^ (x >> 15u);
}
fn hash_uniform(seed: u32, counter: u32) -> f32 {
  return f32(hash_u32(seed, counter) >> 8u) / 16777216.0;
}
`;
