// Packs tokenized examples into fixed-length sequences, the layout of train.bin / val.bin, with a flag per token
// (train.flags / val.flags) that tells the trainer where an example starts and which tokens are never a target.
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

/**
 * Each example goes whole into the first sequence that still has room for it (first fit, in the given order), so an
 * example never loses its FIM header to a cut and the trainer can keep attention inside it (FLAG_START). Tokens in
 * `noLossIds` (FIM sentinels, BOS: structure the prompt format places, not text the model should learn to write)
 * get FLAG_NO_LOSS. Callers keep each example within `seqLen` (see `fitExample`).
 */
export function pack(examples: readonly (readonly number[])[], seqLen: number, noLossIds: ReadonlySet<number> = new Set()): Packed {
  if (!Number.isInteger(seqLen) || seqLen < 1) throw new Error(`The sequence length must be a positive integer, got ${seqLen}.`);
  const room = new RoomTree(examples.length, seqLen);
  const placedAt = new Int32Array(examples.length);
  let sequences = 0;
  let tokens = 0;
  examples.forEach((e, i) => {
    if (e.length > seqLen) throw new Error(`An example of ${e.length} tokens does not fit in a sequence of ${seqLen}.`);
    const seq = room.take(e.length);
    placedAt[i] = seq * seqLen + (seqLen - room.left(seq) - e.length);
    sequences = Math.max(sequences, seq + 1);
    tokens += e.length;
  });
  const data = new Int32Array(sequences * seqLen).fill(PAD);
  const flags = new Uint8Array(sequences * seqLen);
  // A table indexed by token id: a large repository packs hundreds of millions of tokens, and a Set lookup for each
  // was a visible share of the build (bench/dataset.mjs).
  const noLoss = new Uint8Array(noLossIds.size ? Math.max(...noLossIds) + 1 : 0);
  for (const id of noLossIds) noLoss[id] = FLAG_NO_LOSS;
  examples.forEach((e, i) => {
    const at = placedAt[i];
    data.set(e, at);
    for (let k = 0; k < e.length; k++) {
      const t = e[k];
      if (t < noLoss.length) flags[at + k] = noLoss[t];
    }
    if (e.length > 0) flags[at] |= FLAG_START;
  });
  return { data, flags, sequences, tokens };
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
