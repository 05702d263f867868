// Duplicate files: exact copies by content hash, and near copies (a file copied and lightly edited, generated
// variants) by MinHash over token shingles. A repository's copies would otherwise be learned several times over,
// and a copy on the training side of a held-out file would leak the answer into evaluation. Files are taken in the
// order given and the first of each group is kept, so the caller decides which copy survives (the one to hold out).
//
// Written here rather than taken from npm: `minhash` (0.0.9, the one MinHash + LSH package, a few thousand downloads
// a month) computes (a * h + b) % p in doubles far past 2^53, so its permutations lose their low bits;
// bloom-filters' MinHash draws its hash functions from Math.random, so the same repository would not dedupe the same
// way twice, and has no LSH index. What is needed here is small: a tokenizer, one-permutation MinHash, banding.
import { createHash } from "node:crypto";

/** Files at least this similar (Jaccard of their token 5-gram sets) are near duplicates; the usual threshold. */
export const NEAR_DUPLICATE_JACCARD = 0.85;

const SHINGLE = 5;
// 16 bands of 8 rows (of the 128 values of a signature): a pair at Jaccard 0.85 shares a whole band with probability 1 - (1 - 0.85^8)^16 = 0.994,
// a pair at 0.5 with 0.06 (and is then checked and dropped).
const BANDS = 16;
const ROWS = 128 / BANDS;
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

/**
 * What dedupe needs of a file, computed where the file is read (in file selection's worker threads), so that the
 * text itself need not be kept: its content hash, and its MinHash signature (null when the file has fewer than
 * MIN_SHINGLES distinct shingles, too short for its similarity to mean much).
 */
export interface Fingerprint {
  digest: string;
  signature: Int32Array | null;
}

/** Files in the order given, less the duplicates of an earlier file, and those duplicates. */
export function findDuplicates<T extends { path: string; text: string }>(files: readonly T[]): { kept: T[]; duplicates: Duplicate[] } {
  const prints = new Map(files.map((f) => [f, fingerprint(f.text)]));
  return findDuplicatesOf(files, (f) => prints.get(f)!, (f) => shingles(f.text));
}

/**
 * findDuplicates on fingerprints: `shinglesOf` is asked only for the few files whose signatures make them
 * candidates (the dataset step reads those files again), for the exact check that decides.
 */
export function findDuplicatesOf<T extends { path: string }>(
  files: readonly T[],
  fingerprintOf: (file: T) => Fingerprint,
  shinglesOf: (file: T) => Int32Array,
): { kept: T[]; duplicates: Duplicate[] } {
  const kept: T[] = [];
  const duplicates: Duplicate[] = [];
  const byContent = new Map<string, T>();
  const index = new LshIndex();
  // A few shingle sets are cached for the case of many edited copies of one file.
  const cache = new Map<number, Int32Array>();
  const shinglesOfKept = (i: number): Int32Array => {
    let s = cache.get(i);
    if (s === undefined) {
      s = shinglesOf(kept[i]);
      if (cache.size >= 64) cache.delete(cache.keys().next().value!);
      cache.set(i, s);
    }
    return s;
  };

  for (const file of files) {
    const { digest, signature: sig } = fingerprintOf(file);
    const twin = byContent.get(digest);
    if (twin !== undefined) {
      duplicates.push({ path: file.path, of: twin.path, kind: "exact", similarity: 1 });
      continue;
    }
    byContent.set(digest, file);
    if (sig !== null) {
      let own: Int32Array | null = null;
      let best: { i: number; j: number } | null = null;
      for (const i of index.candidates(sig)) {
        if (estimate(sig, index.signatureOf(i)) < ESTIMATE_FLOOR) continue;
        own ??= shinglesOf(file);
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
 * The content hash and MinHash signature of a text, in one pass over its shingles and without sorting them.
 *
 * The signature is one-permutation hashing (Li, Owen and Zhang, 2012) densified by rotation (Shrivastava and Li,
 * 2014): each shingle hash falls into one of SIGNATURE_BINS bins by its top bits and each bin keeps its least value;
 * an empty bin borrows the value of the next non-empty one, marked with the distance so that it only equals a value
 * borrowed the same way. Two files agree on a bin with probability about their Jaccard similarity, as with one hash
 * function per bin, at one hash per shingle instead of 128: with 128 functions the signatures were half of the
 * dataset build's CPU time on the main thread (bench/dataset.mjs).
 */
export function fingerprint(text: string): Fingerprint {
  const digest = createHash("sha256").update(text).digest("hex");
  const count = tokenHashes(text);
  if (count === 0) return { digest, signature: null };
  const tokens = scratch;
  const bins = new Int32Array(SIGNATURE_BINS).fill(EMPTY_BIN);
  // Distinct shingles are counted only up to MIN_SHINGLES, which is all the short-file rule needs.
  const few = new Int32Array(MIN_SHINGLES);
  let distinct = 0;
  forEachShingle(tokens, count, (_, h) => {
    const b = h >>> BIN_SHIFT;
    const v = h & VALUE_MASK;
    if (v < bins[b]) bins[b] = v;
    if (distinct < MIN_SHINGLES) {
      let seen = false;
      for (let d = 0; d < distinct; d++) if (few[d] === h) seen = true;
      if (!seen) few[distinct++] = h;
    }
  });
  if (distinct < MIN_SHINGLES) return { digest, signature: null };
  const signature = new Int32Array(SIGNATURE_BINS);
  for (let b = 0; b < SIGNATURE_BINS; b++) {
    let d = 0;
    while (bins[(b + d) % SIGNATURE_BINS] === EMPTY_BIN) d++;
    signature[b] = (d << BIN_SHIFT) | bins[(b + d) % SIGNATURE_BINS];
  }
  return { digest, signature };
}

/**
 * Sorted, distinct 32-bit hashes of a text's token 5-grams. Tokens are a cheap reading of code: runs of word
 * characters (identifiers, numbers, keywords; any non-ASCII character counts as one) and single punctuation
 * characters; white space only separates, so re-indenting a file does not make it different.
 */
export function shingles(text: string): Int32Array {
  const count = tokenHashes(text);
  if (count === 0) return new Int32Array(0);
  const tokens = scratch;
  const m = Math.max(1, count - SHINGLE + 1);
  const out = new Int32Array(m);
  forEachShingle(tokens, count, (s, h) => (out[s] = h));
  out.sort();
  let w = 0;
  for (let r = 0; r < out.length; r++) if (r === 0 || out[r] !== out[r - 1]) out[w++] = out[r];
  return out.slice(0, w);
}

/**
 * Calls `each(s, hash)` for the hash of each run of SHINGLE tokens (the whole list when shorter), s = 0, 1, ...
 * A polynomial hash rolls from one shingle to the next in two multiplications instead of SHINGLE, then fmix32 mixes
 * it: this loop runs once per token of every file selected.
 */
function forEachShingle(tokens: Int32Array, count: number, each: (s: number, hash: number) => void): void {
  const width = Math.min(count, SHINGLE);
  let h = 0;
  for (let k = 0; k < width; k++) h = (Math.imul(h, SHINGLE_BASE) + tokens[k]) | 0;
  each(0, fmix32(h));
  for (let s = 1; s + SHINGLE <= count; s++) {
    h = (Math.imul(h - Math.imul(tokens[s - 1], BASE_TO_SHINGLE_1), SHINGLE_BASE) + tokens[s + SHINGLE - 1]) | 0;
    each(s, fmix32(h));
  }
}

const SHINGLE_BASE = 0x01000193;
/** SHINGLE_BASE ** (SHINGLE - 1), mod 2^32: the weight of a shingle's first token. */
const BASE_TO_SHINGLE_1 = Array.from({ length: SHINGLE - 1 }).reduce<number>((p) => Math.imul(p, SHINGLE_BASE), 1);

/** Hashes of a text's tokens into `scratch`; returns how many. */
function tokenHashes(text: string): number {
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
  return count;
}

/** Token hashes of the file being read, reused from file to file (a file has at most one token per character). */
let scratch = new Int32Array(1 << 16);

function isWord(c: number): boolean {
  return c >= 128 || WORD_ASCII[c] === 1;
}

/** ASCII word characters: [0-9A-Za-z_$]. */
const WORD_ASCII = Uint8Array.from({ length: 128 }, (_, c) => ((c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95 || c === 36 ? 1 : 0));

/** murmur3's finalizer: a cheap, well-mixing bijection on 32 bits (signed: V8 keeps int32 values unboxed). */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}

/** Bins of a signature: 7 bits of each shingle hash pick its bin, the other 25 are its value there. */
const SIGNATURE_BINS = 128;
const BIN_SHIFT = 25;
const VALUE_MASK = (1 << BIN_SHIFT) - 1;
const EMPTY_BIN = 0x7fffffff;

/** Share of equal signature values: an estimate of the Jaccard similarity. */
function estimate(a: Int32Array, b: Int32Array): number {
  let same = 0;
  for (let k = 0; k < SIGNATURE_BINS; k++) if (a[k] === b[k]) same++;
  return same / SIGNATURE_BINS;
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
