// Packs tokenized examples into fixed-length sequences, the layout of train.bin / val.bin, with a flag per token
// (train.flags / val.flags) that tells the trainer where an example starts and which tokens are never a target.
// Packing is planned from the examples' lengths alone, then sequences are filled a block at a time, so that a large
// dataset is written without ever holding all of its sequences (packedBlocks), each example's tokens being read from
// a TokenStore (4 bytes a token) rather than from arrays of numbers.
import { closeSync, openSync, readSync, rmSync, write, writeSync } from "node:fs";
import { FLAG_NO_LOSS, FLAG_START, PAD } from "../../protocol/dataset";
export { FLAG_NO_LOSS, FLAG_START, PAD };

export interface Packed {
  /** n_sequences x seqLen token ids, row-major; PAD fills the tail of a sequence. */
  data: Int32Array;
  /** One byte per token: FLAG_START on an example's first token, FLAG_NO_LOSS on tokens never to predict. */
  flags: Uint8Array;
  sequences: number;
  /** Real (non-padding) tokens. */
  tokens: number;
}

/** Where each example goes: a sequence and an offset in it, as a position in the flattened sequences. */
export interface PackPlan {
  seqLen: number;
  /** Examples in packing order, as indices into the caller's list (a TokenStore's). */
  order: ArrayLike<number>;
  /** placedAt[k]: position of order[k]'s first token in the flattened sequences. */
  placedAt: Float64Array;
  sequences: number;
  tokens: number;
}

/**
 * Each example goes whole into the first sequence that still has room for it (first fit, in the given order), so an
 * example never loses its FIM header to a cut and the trainer can keep attention inside it (FLAG_START). Tokens in
 * `noLossIds` (FIM sentinels, BOS: structure the prompt format places, not text the model should learn to write)
 * get FLAG_NO_LOSS. Callers keep each example within `seqLen` (see `fitExample`).
 */
export function pack(examples: readonly (readonly number[])[], seqLen: number, noLossIds: ReadonlySet<number> = new Set()): Packed {
  const store = new TokenStore(seqLen);
  for (const e of examples) store.add(e);
  const plan = planPacking(store, Array.from(examples.keys()), seqLen);
  const data = new Int32Array(plan.sequences * seqLen);
  const flags = new Uint8Array(plan.sequences * seqLen);
  for (const block of packedBlocks(store, plan, noLossIds, Math.max(1, plan.sequences))) {
    data.set(block.data, block.firstSequence * seqLen);
    flags.set(block.flags, block.firstSequence * seqLen);
  }
  return { data, flags, sequences: plan.sequences, tokens: plan.tokens };
}

/** First-fit placement of `order`'s examples (indices into `store`), from their lengths alone. */
export function planPacking(store: TokenStore, order: ArrayLike<number>, seqLen: number): PackPlan {
  if (!Number.isInteger(seqLen) || seqLen < 1) throw new Error(`The sequence length must be a positive integer, got ${seqLen}.`);
  const room = new RoomTree(order.length, seqLen);
  const placedAt = new Float64Array(order.length);
  let sequences = 0;
  let tokens = 0;
  for (let k = 0; k < order.length; k++) {
    const n = store.lengthOf(order[k]);
    if (n > seqLen) throw new Error(`An example of ${n} tokens does not fit in a sequence of ${seqLen}.`);
    const seq = room.take(n);
    placedAt[k] = seq * seqLen + (seqLen - room.left(seq) - n);
    sequences = Math.max(sequences, seq + 1);
    tokens += n;
  }
  return { seqLen, order, placedAt, sequences, tokens };
}

export interface PackedBlock {
  firstSequence: number;
  /** Whole sequences from firstSequence on. */
  data: Int32Array;
  flags: Uint8Array;
}

/**
 * The packed sequences of `plan`, `blockSequences` at a time, in order. Blocks alternate between two pairs of
 * buffers, so that one block can be written while the next is filled: a block's buffers are reused by the block
 * after next.
 * Within a block, examples are copied in the order they were stored, so that a store kept on disk is read forward,
 * each of its chunks once per block.
 */
export function* packedBlocks(store: TokenStore, plan: PackPlan, noLossIds: ReadonlySet<number>, blockSequences: number): Generator<PackedBlock> {
  const { seqLen, sequences } = plan;
  const size = Math.min(blockSequences, Math.max(1, sequences));
  const blocks = Math.ceil(sequences / size);
  // The plan's examples in store order, then grouped by block (a stable counting sort keeps store order within one).
  const planOf = new Int32Array(store.size).fill(-1);
  for (let k = 0; k < plan.order.length; k++) planOf[plan.order[k]] = k;
  const start = new Int32Array(blocks + 1);
  const blockOf = (k: number) => Math.floor(plan.placedAt[k] / (size * seqLen));
  for (let k = 0; k < plan.order.length; k++) start[blockOf(k) + 1]++;
  for (let b = 0; b < blocks; b++) start[b + 1] += start[b];
  const byBlock = new Int32Array(plan.order.length);
  const fill = start.slice(0, blocks);
  for (let i = 0; i < planOf.length; i++) {
    const k = planOf[i];
    if (k >= 0) byBlock[fill[blockOf(k)]++] = k;
  }
  // A table indexed by token id: a large repository packs hundreds of millions of tokens, and a Set lookup for each
  // was a visible share of the build (bench/dataset.mjs).
  const noLoss = new Uint8Array(noLossIds.size ? Math.max(...noLossIds) + 1 : 0);
  for (const id of noLossIds) noLoss[id] = FLAG_NO_LOSS;
  const pairs: { data: Int32Array; flags: Uint8Array }[] = [];
  for (let b = 0; b < blocks; b++) {
    if (pairs.length < Math.min(2, blocks)) pairs.push({ data: new Int32Array(size * seqLen), flags: new Uint8Array(size * seqLen) });
    const { data, flags } = pairs[b % pairs.length];
    const first = b * size;
    const n = (Math.min(sequences, first + size) - first) * seqLen;
    const blockData = n === data.length ? data : data.subarray(0, n);
    const blockFlags = n === flags.length ? flags : flags.subarray(0, n);
    blockData.fill(PAD);
    blockFlags.fill(0);
    const base = first * seqLen;
    for (let j = start[b]; j < start[b + 1]; j++) {
      const k = byBlock[j];
      const at = plan.placedAt[k] - base;
      const length = store.copyTo(plan.order[k], blockData, at);
      for (let p = at; p < at + length; p++) {
        const t = blockData[p];
        if (t < noLoss.length) blockFlags[p] = noLoss[t];
      }
      if (length > 0) blockFlags[at] |= FLAG_START;
    }
    yield { firstSequence: first, data: blockData, flags: blockFlags };
  }
}

/**
 * Token lists back to back in chunks of int32 (4 bytes a token, where an array of numbers takes 8 and more), an
 * example never across two chunks; examples are numbered in the order added. Past `memoryChunks` chunks, each full
 * chunk goes to `spillPath` (a temporary file, removed by `dispose`), so that a large repository's tokens take
 * bounded memory: packing reads them back forward, a block of sequences at a time.
 */
export class TokenStore {
  private readonly chunks: (Int32Array | null)[] = [];
  private current: Int32Array | null = null;
  private used = 0;
  private readonly chunkSize: number;
  private starts = new Float64Array(1024);
  private lengths = new Int32Array(1024);
  private count = 0;
  private fd: number | null = null;
  /** The spilled chunk last read back, and its number. */
  private loaded: { index: number; chunk: Int32Array } | null = null;
  /** Chunks being written to the spill file in the background, and the first error of such a write. */
  private writing = 0;
  private writeError: Error | null = null;
  private wakeWriters: (() => void)[] = [];

  /**
   * `longest`: the most tokens one example may have. With `spill.background`, full chunks go to the file in libuv's
   * thread pool (a fresh buffer each) while tokens are added: the caller awaits `settled()` before reading tokens
   * back (copyTo), and `backlog()` now and then so that unwritten chunks stay few.
   */
  constructor(
    longest: number,
    private readonly spill: { path: string; memoryChunks: number; background?: boolean } | null = null,
    chunkTokens = 1 << 20,
  ) {
    this.chunkSize = Math.max(longest, chunkTokens);
  }

  get size(): number {
    return this.count;
  }

  /** Adds an example (`first`, when given, goes before `tokens`) and returns its index. */
  add(tokens: ArrayLike<number>, first?: number): number {
    const n = tokens.length + (first === undefined ? 0 : 1);
    if (n > this.chunkSize) throw new Error(`An example of ${n} tokens is longer than the store allows (${this.chunkSize}).`);
    if (this.current === null || this.used + n > this.chunkSize) this.nextChunk();
    const chunk = this.current!;
    let at = this.used;
    if (first !== undefined) chunk[at++] = first;
    for (let i = 0; i < tokens.length; i++) chunk[at + i] = tokens[i];
    if (this.count === this.starts.length) {
      this.starts = grow(this.starts);
      this.lengths = grow(this.lengths);
    }
    this.starts[this.count] = (this.chunks.length - 1) * this.chunkSize + this.used;
    this.lengths[this.count] = n;
    this.used += n;
    return this.count++;
  }

  private nextChunk(): void {
    const index = this.chunks.length;
    if (this.spill !== null && index >= this.spill.memoryChunks) {
      // The chunk before this one is full: to disk, and its buffer is reused (or, written in the background, left
      // to the write and then to the garbage collector).
      if (index > this.spill.memoryChunks) {
        if (this.spill.background) {
          this.writeChunkInBackground(index - 1, this.current!);
          this.chunks[index - 1] = null;
          this.chunks.push(new Int32Array(this.chunkSize));
        } else {
          this.writeChunk(index - 1, this.current!);
          this.chunks[index - 1] = null;
          this.chunks.push(this.current);
        }
      } else {
        this.fd = openSync(this.spill.path, "w+");
        this.chunks.push(new Int32Array(this.chunkSize));
      }
    } else {
      this.chunks.push(new Int32Array(this.chunkSize));
    }
    this.current = this.chunks[index];
    this.used = 0;
  }

  private writeChunk(index: number, chunk: Int32Array): void {
    const bytes = new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    for (let done = 0; done < bytes.length; ) done += writeSync(this.fd!, bytes, done, bytes.length - done, this.position(index) + done);
  }

  private writeChunkInBackground(index: number, chunk: Int32Array): void {
    const bytes = new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    this.writing++;
    const done = (err: Error | null) => {
      if (err) this.writeError ??= err;
      this.writing--;
      for (const wake of this.wakeWriters.splice(0)) wake();
    };
    const from = (at: number) =>
      write(this.fd!, bytes, at, bytes.length - at, this.position(index) + at, (err, n) => (err ? done(err) : at + n < bytes.length ? from(at + n) : done(null)));
    from(0);
  }

  /** Resolves once at most `chunks` chunks wait to be written to the spill file; rejects if a write failed. */
  async backlog(chunks = 2): Promise<void> {
    while (this.writing > chunks) await new Promise<void>((wake) => this.wakeWriters.push(wake));
    if (this.writeError) throw this.writeError;
  }

  /** Resolves once every chunk is in the spill file (tokens can then be read back); rejects if a write failed. */
  settled(): Promise<void> {
    return this.backlog(0);
  }

  private position(chunkIndex: number): number {
    return (chunkIndex - (this.spill?.memoryChunks ?? 0)) * this.chunkSize * 4;
  }

  lengthOf(i: number): number {
    return this.lengths[i];
  }

  /** Copies example `i` into `out` at `at` and returns its length. */
  copyTo(i: number, out: Int32Array, at: number): number {
    const s = this.starts[i];
    const c = Math.floor(s / this.chunkSize);
    const from = s - c * this.chunkSize;
    const n = this.lengths[i];
    out.set(this.chunk(c).subarray(from, from + n), at);
    return n;
  }

  private chunk(c: number): Int32Array {
    const inMemory = this.chunks[c];
    if (inMemory !== null) return inMemory;
    if (this.writing > 0) throw new Error("Tokens were read back before the store was settled (await settled() first).");
    if (this.loaded?.index !== c) {
      const chunk = this.loaded?.chunk ?? new Int32Array(this.chunkSize);
      const bytes = new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);
      for (let done = 0; done < bytes.length; ) {
        const got = readSync(this.fd!, bytes, done, bytes.length - done, this.position(c) + done);
        if (got === 0) break;
        done += got;
      }
      this.loaded = { index: c, chunk };
    }
    return this.loaded.chunk;
  }

  /** Closes and removes the spill file, if any: after the writes in the background (see `settled`), whatever their outcome. */
  async disposeWhenSettled(): Promise<void> {
    await this.settled().catch(() => undefined);
    this.dispose();
  }

  /** Closes and removes the spill file, if any. */
  dispose(): void {
    if (this.fd !== null) {
      closeSync(this.fd);
      this.fd = null;
      rmSync(this.spill!.path, { force: true });
    }
  }
}

function grow<T extends Float64Array | Int32Array>(a: T): T {
  const out = new (a.constructor as new (n: number) => T)(a.length * 2);
  out.set(a);
  return out;
}

/**
 * Free room of up to `n` sequences (all opened left to right), in a max segment tree, so that "the first sequence
 * with at least k free tokens" takes O(log n): packing a large repository stays linear-ish instead of quadratic.
 * Sequences not yet opened have the whole length free, so the first fit is an open one whenever one fits.
 */
class RoomTree {
  private readonly size: number;
  private readonly max: Int32Array;

  constructor(n: number, seqLen: number) {
    this.size = 1;
    while (this.size < Math.max(1, n)) this.size *= 2;
    this.max = new Int32Array(2 * this.size).fill(seqLen);
  }

  left(seq: number): number {
    return this.max[this.size + seq];
  }

  /** Reserves `k` tokens in the leftmost sequence with room for them and returns its index. */
  take(k: number): number {
    let node = 1;
    while (node < this.size) node = this.max[2 * node] >= k ? 2 * node : 2 * node + 1;
    this.max[node] -= k;
    for (let p = node >> 1; p >= 1; p >>= 1) this.max[p] = Math.max(this.max[2 * p], this.max[2 * p + 1]);
    return node - this.size;
  }
}

/** Keeps the head of an over-long example: its FIM header and context, which is what the model must read first. */
export function fitExample(tokens: number[], seqLen: number): { tokens: number[]; truncated: boolean } {
  return tokens.length <= seqLen ? { tokens, truncated: false } : { tokens: tokens.slice(0, seqLen), truncated: true };
}
