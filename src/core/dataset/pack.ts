// Packs tokenized examples back to back into fixed-length sequences, the layout of train.bin / val.bin.
import { PAD } from "../../protocol/dataset";
export { PAD };

export interface Packed {
  /** n_sequences x seqLen token ids, row-major; PAD fills the tail of the last sequence. */
  data: Int32Array;
  sequences: number;
  /** Real (non-padding) tokens. */
  tokens: number;
}

/**
 * Examples are concatenated in order and cut every `seqLen` tokens, so no token is wasted on padding except at
 * the very end; an example may continue in the next sequence. Callers keep each example within `seqLen`
 * (see `fitExample`), so an example is split at most once.
 */
export function pack(examples: readonly (readonly number[])[], seqLen: number): Packed {
  if (!Number.isInteger(seqLen) || seqLen < 1) throw new Error(`The sequence length must be a positive integer, got ${seqLen}.`);
  let tokens = 0;
  for (const e of examples) tokens += e.length;
  const sequences = Math.ceil(tokens / seqLen);
  const data = new Int32Array(sequences * seqLen).fill(PAD);
  let at = 0;
  for (const e of examples) {
    data.set(e, at);
    at += e.length;
  }
  return { data, sequences, tokens };
}

/** Keeps the head of an over-long example: its FIM header and context, which is what the model must read first. */
export function fitExample(tokens: number[], seqLen: number): { tokens: number[]; truncated: boolean } {
  return tokens.length <= seqLen ? { tokens, truncated: false } : { tokens: tokens.slice(0, seqLen), truncated: true };
}
