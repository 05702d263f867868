// Duplicate files: exact copies by content hash, and near copies (a file copied and lightly edited, generated
// variants) by MinHash over token shingles. A repository's copies would otherwise be learned several times over,
// and a copy on the training side of a held-out file would leak the answer into evaluation. Files are taken in the
// order given and the first of each group is kept, so the caller decides which copy survives (the one to hold out).
//
// Written here rather than taken from npm: `minhash` (0.0.9, the one MinHash + LSH package, a few thousand downloads
// a month) computes (a * h + b) % p in doubles far past 2^53, so its permutations lose their low bits;
// bloom-filters' MinHash draws its hash functions from Math.random, so the same repository would not dedupe the same
// way twice, and has no LSH index. What is needed here is small: a tokenizer, 128 seeded hash functions, banding.
import { createHash } from "node:crypto";

/** Files at least this similar (Jaccard of their token 5-gram sets) are near duplicates; the usual threshold. */
export const NEAR_DUPLICATE_JACCARD = 0.85;

const SHINGLE = 5;
const PERMUTATIONS = 128;
// 16 bands of 8 rows: a pair at Jaccard 0.85 shares a whole band with probability 1 - (1 - 0.85^8)^16 = 0.994,
// a pair at 0.5 with 0.06 (and is then checked and dropped).
const BANDS = 16;
const ROWS = PERMUTATIONS / BANDS;
/** Below this many shingles a file is too short for its similarity to mean much (a one-line re-export). */
const MIN_SHINGLES = 8;
/** Candidates whose MinHash estimate is this low are not worth an exact check: 8 standard deviations below 0.85. */
const ESTIMATE_FLOOR = 0.6;
/**
 * Bounds that keep the search linear in the number of files: the candidates checked per file (the ones sharing the
 * most bands come first, and a true near duplicate shares several), and the files one band bucket remembers (a
 * bucket fills only with files that share 8 hash values yet are not near duplicates of each other, such as
 * generated files with one long common header; each still has 15 other bands).
 */
const MAX_CANDIDATES = 32;
const MAX_BUCKET = 64;

export interface Duplicate {
  path: string;
  /** The kept file it duplicates. */
  of: string;
  kind: "exact" | "near";
  /** Jaccard similarity of the token shingles (1 for an exact copy). */
  similarity: number;
}

/** Files in the order given, less the duplicates of an earlier file, and those duplicates. */
export function findDuplicates<T extends { path: string; text: string }>(files: readonly T[]): { kept: T[]; duplicates: Duplicate[] } {
  const kept: T[] = [];
  const duplicates: Duplicate[] = [];
  const byContent = new Map<string, T>();
  const index = new LshIndex();
  // Shingles of kept files are recomputed when a candidate needs an exact check; a few are cached for the case of
  // many edited copies of one file.
  const cache = new Map<number, Int32Array>();
  const shinglesOfKept = (i: number): Int32Array => {
    let s = cache.get(i);
    if (s === undefined) {
      s = shingles(kept[i].text);
      if (cache.size >= 64) cache.delete(cache.keys().next().value!);
      cache.set(i, s);
    }
    return s;
  };

  for (const file of files) {
    const digest = createHash("sha256").update(file.text).digest("hex");
    const twin = byContent.get(digest);
    if (twin !== undefined) {
      duplicates.push({ path: file.path, of: twin.path, kind: "exact", similarity: 1 });
      continue;
    }
    byContent.set(digest, file);
    const own = shingles(file.text);
    if (own.length >= MIN_SHINGLES) {
      const sig = signature(own);
      let best: { i: number; j: number } | null = null;
      for (const i of index.candidates(sig)) {
        if (estimate(sig, index.signatureOf(i)) < ESTIMATE_FLOOR) continue;
        const j = jaccard(own, shinglesOfKept(i));
        if (j >= NEAR_DUPLICATE_JACCARD && (best === null || j > best.j)) best = { i, j };
      }
      if (best !== null) {
        duplicates.push({ path: file.path, of: kept[best.i].path, kind: "near", similarity: best.j });
        continue;
      }
      index.insert(sig, kept.length);
    }
    kept.push(file);
  }
  return { kept, duplicates };
}

/**
 * Sorted, distinct 32-bit hashes of a text's token 5-grams. Tokens are a cheap reading of code: runs of word
 * characters (identifiers, numbers, keywords; any non-ASCII character counts as one) and single punctuation
 * characters; white space only separates, so re-indenting a file does not make it different.
 */
export function shingles(text: string): Int32Array {
  const n = text.length;
  if (scratch.length < n) scratch = new Int32Array(Math.max(n, 2 * scratch.length));
  const tokens = scratch;
  let count = 0;
  let i = 0;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c <= 32) {
      i++;
      continue;
    }
    let h = 0x811c9dc5;
    if (isWord(c)) {
      while (i < n && isWord(text.charCodeAt(i))) h = Math.imul(h ^ text.charCodeAt(i++), 0x01000193);
    } else {
      h = Math.imul(h ^ c, 0x01000193);
      i++;
    }
    tokens[count++] = h;
  }
  if (count === 0) return new Int32Array(0);
  const m = Math.max(1, count - SHINGLE + 1);
  const out = new Int32Array(m);
  for (let s = 0; s < m; s++) {
    let h = 0x811c9dc5;
    for (let k = s; k < Math.min(count, s + SHINGLE); k++) h = Math.imul(h ^ tokens[k], 0x01000193);
    out[s] = fmix32(h);
  }
  out.sort();
  let w = 0;
  for (let r = 0; r < out.length; r++) if (r === 0 || out[r] !== out[r - 1]) out[w++] = out[r];
  return out.slice(0, w);
}

/** Token hashes of the file being read, reused from file to file (a file has at most one token per character). */
let scratch = new Int32Array(1 << 16);

function isWord(c: number): boolean {
  return (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95 || c === 36 || c >= 128;
}

/** murmur3's finalizer: a cheap, well-mixing bijection on 32 bits (signed: V8 keeps int32 values unboxed). */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}

/**
 * The k-th hash function is (x ^ SEEDS[k]) * MULTIPLIERS[k] mod 2^32, fixed for every run: a bijection, and enough
 * of a random permutation here because shingle hashes are already well mixed (fmix32) and the order of a product is
 * decided by its high bits, which depend on every bit of x. Near-duplicate candidates are checked exactly anyway.
 * One multiply per shingle and function: with four functions per pass, half the time of a full mix of each value.
 */
const SEEDS = Int32Array.from({ length: PERMUTATIONS }, (_, k) => fmix32(Math.imul(k + 1, 0x9e3779b9)));
const MULTIPLIERS = Int32Array.from({ length: PERMUTATIONS }, (_, k) => fmix32(Math.imul(k + 1, 0x85ebca6b) ^ 0x5bd1e995) | 1);

/** The MinHash signature: for each of the hash functions, the least hash over the shingles. */
export function signature(shingleSet: Int32Array): Int32Array {
  const sig = new Int32Array(PERMUTATIONS);
  // Four functions per pass over the shingles: four independent multiply chains keep the CPU busy.
  for (let k = 0; k < PERMUTATIONS; k += 4) {
    const [s0, s1, s2, s3] = [SEEDS[k], SEEDS[k + 1], SEEDS[k + 2], SEEDS[k + 3]];
    const [m0, m1, m2, m3] = [MULTIPLIERS[k], MULTIPLIERS[k + 1], MULTIPLIERS[k + 2], MULTIPLIERS[k + 3]];
    let min0 = 0x7fffffff;
    let min1 = 0x7fffffff;
    let min2 = 0x7fffffff;
    let min3 = 0x7fffffff;
    for (let s = 0; s < shingleSet.length; s++) {
      const x = shingleSet[s];
      const h0 = Math.imul(x ^ s0, m0);
      const h1 = Math.imul(x ^ s1, m1);
      const h2 = Math.imul(x ^ s2, m2);
      const h3 = Math.imul(x ^ s3, m3);
      if (h0 < min0) min0 = h0;
      if (h1 < min1) min1 = h1;
      if (h2 < min2) min2 = h2;
      if (h3 < min3) min3 = h3;
    }
    sig[k] = min0;
    sig[k + 1] = min1;
    sig[k + 2] = min2;
    sig[k + 3] = min3;
  }
  return sig;
}

/** Share of equal signature values: an estimate of the Jaccard similarity. */
function estimate(a: Int32Array, b: Int32Array): number {
  let same = 0;
  for (let k = 0; k < PERMUTATIONS; k++) if (a[k] === b[k]) same++;
  return same / PERMUTATIONS;
}

/** Exact Jaccard similarity of two sorted, distinct sets. */
export function jaccard(a: Int32Array, b: Int32Array): number {
  let i = 0;
  let j = 0;
  let both = 0;
  while (i < a.length && j < b.length) {
    if (a[i] === b[j]) {
      both++;
      i++;
      j++;
    } else if (a[i] < b[j]) i++;
    else j++;
  }
  const union = a.length + b.length - both;
  return union === 0 ? 1 : both / union;
}

/** Signatures by band: files whose signatures agree on all rows of some band are candidate near duplicates. */
class LshIndex {
  private readonly buckets = Array.from({ length: BANDS }, () => new Map<number, number[]>());
  private readonly signatures = new Map<number, Int32Array>();

  signatureOf(i: number): Int32Array {
    return this.signatures.get(i)!;
  }

  insert(sig: Int32Array, i: number): void {
    this.signatures.set(i, sig);
    for (let b = 0; b < BANDS; b++) {
      const key = bandKey(sig, b);
      const bucket = this.buckets[b].get(key);
      if (bucket === undefined) this.buckets[b].set(key, [i]);
      else if (bucket.length < MAX_BUCKET) bucket.push(i);
    }
  }

  /** Indexed files sharing a band with `sig`, most shared bands first, then in insertion order. */
  candidates(sig: Int32Array): number[] {
    const hits = new Map<number, number>();
    for (let b = 0; b < BANDS; b++) {
      for (const i of this.buckets[b].get(bandKey(sig, b)) ?? []) hits.set(i, (hits.get(i) ?? 0) + 1);
    }
    return [...hits].sort((x, y) => y[1] - x[1] || x[0] - y[0]).slice(0, MAX_CANDIDATES).map(([i]) => i);
  }
}

/** A 53-bit key of one band's rows; a rare collision only adds a candidate, which the exact check then drops. */
function bandKey(sig: Int32Array, band: number): number {
  let h1 = 0x811c9dc5;
  let h2 = 0x9747b28c;
  for (let r = band * ROWS; r < (band + 1) * ROWS; r++) {
    h1 = Math.imul(h1 ^ sig[r], 0x01000193);
    h2 = fmix32(h2 ^ sig[r]);
  }
  return (fmix32(h1) >>> 0) * 2 ** 21 + (h2 >>> 11);
}
