// Seeded randomness, so the same folder and seed always give the same dataset.
import { createHash } from "node:crypto";

/** A 32-bit hash of a string (first 4 bytes of SHA-256). */
export function hash32(text: string): number {
  return createHash("sha256").update(text).digest().readUInt32LE(0);
}

/** A number in [0, 1) that depends only on `text`. */
export function hashUnit(text: string): number {
  return hash32(text) / 2 ** 32;
}

export interface Rng {
  /** Uniform in [0, 1). */
  next(): number;
  /** Uniform integer in [lo, hi] (both inclusive). */
  int(lo: number, hi: number): number;
}

/** mulberry32: small, fast, good enough to pick split points; not for anything secret. */
export function rng(seed: number): Rng {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
  return { next, int: (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)) };
}

export function shuffleInPlace<T>(items: T[], r: Rng): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = r.int(0, i);
    [items[i], items[j]] = [items[j], items[i]];
  }
  return items;
}
