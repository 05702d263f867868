// Seeded random numbers for the benchmarks: the same seed draws the same repository and the same typing.

/** mulberry32: a small, fast 32-bit generator, good enough for test data (not for anything secret). */
export function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
