// A model's shape: what the trainer's memory estimate and the plan need to know about a GGUF, read from a file's
// metadata (node-llama-cpp's readGgufFileInfo) or, for a catalog model not downloaded yet, from the catalog.
//
// A shape can also be written out as a GGUF that has the real metadata and tensor table but no weights (a sparse
// file: the data section is a hole, so a "7B" of this kind takes a few kilobytes of disk). The trainer's memory
// estimator (trainer/repotune_trainer/memory.py) reads only shapes and weight types, so such a file lets it estimate
// a model before the model is downloaded, with the same code that estimates a downloaded one.
import { promises as fs } from "node:fs";
import type { GgufFileInfo } from "node-llama-cpp";

/** ggml tensor types the catalog and the trainer deal in: id, elements per block, bytes per block (ggml.c). */
export const GGML_TYPES = {
  F32: { id: 0, block: 1, bytes: 4 },
  F16: { id: 1, block: 1, bytes: 2 },
  Q4_0: { id: 2, block: 32, bytes: 18 },
  Q4_1: { id: 3, block: 32, bytes: 20 },
  Q5_0: { id: 6, block: 32, bytes: 22 },
  Q5_1: { id: 7, block: 32, bytes: 24 },
  Q8_0: { id: 8, block: 32, bytes: 34 },
  Q2_K: { id: 10, block: 256, bytes: 84 },
  Q3_K: { id: 11, block: 256, bytes: 110 },
  Q4_K: { id: 12, block: 256, bytes: 144 },
  Q5_K: { id: 13, block: 256, bytes: 176 },
  Q6_K: { id: 14, block: 256, bytes: 210 },
  BF16: { id: 30, block: 1, bytes: 2 },
} as const;
export type GgmlTypeName = keyof typeof GGML_TYPES;

export function ggmlTypeName(id: number): string {
  const found = Object.entries(GGML_TYPES).find(([, t]) => t.id === id);
  return found ? found[0] : `type ${id}`;
}

export function tensorBytes(type: GgmlTypeName, ne: readonly number[]): number {
  const t = GGML_TYPES[type];
  return (ne.reduce((a, b) => a * b, 1) / t.block) * t.bytes;
}

/** The hyperparameters that size a model's tensors. */
interface Dimensions {
  nLayer: number;
  nEmbd: number;
  nHead: number;
  nHeadKv: number;
  nFf: number;
  nVocab: number;
  contextLength: number;
  /** True when the output head is the token embedding (no output.weight). */
  tied: boolean;
}

export interface ModelShape extends Dimensions {
  arch: string;
  /** The type of the model's large matrices (a mixed file: the most common one among them). */
  weightType: string;
  /** Parameters of all tensors. */
  params: number;
  /** Bytes of all tensors (the file's size, less its header). */
  weightBytes: number;
}

/** A shape to write (writeShapeGguf): a catalog model's config.json values, or a test's. */
export interface ShapeSpec extends Dimensions {
  arch: "llama" | "qwen2" | "starcoder2";
  /** qwen2 has Q/K/V biases; starcoder2 has biases on every linear layer and norm (llama.cpp requires them). */
  biases: "none" | "qkv" | "all";
  weightType: GgmlTypeName;
  ropeFreqBase: number;
  ropeScaling?: { type: "linear"; factor: number };
}

interface TensorSpec {
  name: string;
  ne: number[];
  type: GgmlTypeName;
}

/** The tensor table llama.cpp expects for this architecture (names and ggml dimensions, fastest first). */
export function shapeTensors(s: ShapeSpec): TensorSpec[] {
  const headDim = s.nEmbd / s.nHead;
  const q = s.nHead * headDim;
  const kv = s.nHeadKv * headDim;
  // llama.cpp's quantizer keeps a matrix whose rows do not fill whole blocks in a type whose blocks fit.
  const matrix = (name: string, nIn: number, nOut: number): TensorSpec => ({
    name, ne: [nIn, nOut], type: nIn % GGML_TYPES[s.weightType].block === 0 ? s.weightType : "Q8_0",
  });
  const vector = (name: string, n: number): TensorSpec => ({ name, ne: [n], type: "F32" });
  const out: TensorSpec[] = [matrix("token_embd.weight", s.nEmbd, s.nVocab), vector("output_norm.weight", s.nEmbd)];
  const layerNorm = s.arch === "starcoder2";
  if (layerNorm) out.push(vector("output_norm.bias", s.nEmbd));
  if (!s.tied) out.push(matrix("output.weight", s.nEmbd, s.nVocab));
  for (let i = 0; i < s.nLayer; i++) {
    const b = `blk.${i}`;
    out.push(vector(`${b}.attn_norm.weight`, s.nEmbd));
    if (layerNorm) out.push(vector(`${b}.attn_norm.bias`, s.nEmbd));
    out.push(matrix(`${b}.attn_q.weight`, s.nEmbd, q), matrix(`${b}.attn_k.weight`, s.nEmbd, kv), matrix(`${b}.attn_v.weight`, s.nEmbd, kv));
    if (s.biases !== "none") out.push(vector(`${b}.attn_q.bias`, q), vector(`${b}.attn_k.bias`, kv), vector(`${b}.attn_v.bias`, kv));
    out.push(matrix(`${b}.attn_output.weight`, q, s.nEmbd));
    if (s.biases === "all") out.push(vector(`${b}.attn_output.bias`, s.nEmbd));
    out.push(vector(`${b}.ffn_norm.weight`, s.nEmbd));
    if (layerNorm) out.push(vector(`${b}.ffn_norm.bias`, s.nEmbd));
    if (s.arch !== "starcoder2") out.push(matrix(`${b}.ffn_gate.weight`, s.nEmbd, s.nFf));
    out.push(matrix(`${b}.ffn_up.weight`, s.nEmbd, s.nFf), matrix(`${b}.ffn_down.weight`, s.nFf, s.nEmbd));
    if (s.biases === "all") out.push(vector(`${b}.ffn_up.bias`, s.nFf), vector(`${b}.ffn_down.bias`, s.nEmbd));
  }
  return out;
}

export function shapeOfSpec(s: ShapeSpec): ModelShape {
  const tensors = shapeTensors(s);
  const { nLayer, nEmbd, nHead, nHeadKv, nFf, nVocab, contextLength, tied } = s;
  return {
    arch: s.arch, nLayer, nEmbd, nHead, nHeadKv, nFf, nVocab, contextLength, tied, weightType: s.weightType,
    params: tensors.reduce((n, t) => n + t.ne.reduce((a, b) => a * b, 1), 0),
    weightBytes: tensors.reduce((n, t) => n + tensorBytes(t.type, t.ne), 0),
  };
}

/** The shape of a GGUF read by readGgufFileInfo (with its tensor table). */
export function shapeFromGguf(info: GgufFileInfo): ModelShape {
  const arch = String(info.metadata.general?.architecture ?? "");
  const meta = (info.metadata as unknown as Record<string, Record<string, unknown> | undefined>)[arch] ?? {};
  const num = (value: unknown, fallback: number): number => (typeof value === "number" ? value : typeof value === "bigint" ? Number(value) : fallback);
  const attention = (meta.attention ?? {}) as Record<string, unknown>;
  const tensors = info.fullTensorInfo ?? info.tensorInfo ?? [];
  const byName = new Map(tensors.map((t) => [t.name, t]));
  const embd = byName.get("token_embd.weight");
  const nEmbd = num(meta.embedding_length, embd ? Number(embd.dimensions[0]) : 0);
  const nHead = num(attention.head_count, 1);
  let params = 0;
  let weightBytes = 0;
  const matrixTypes = new Map<string, number>();
  for (const t of tensors) {
    const ne = t.dimensions.map(Number);
    const n = ne.reduce((a, b) => a * b, 1);
    params += n;
    const name = ggmlTypeName(t.ggmlType);
    const type = GGML_TYPES[name as GgmlTypeName];
    weightBytes += type ? (n / type.block) * type.bytes : 0;
    if (ne.length === 2 && t.name.startsWith("blk.")) matrixTypes.set(name, (matrixTypes.get(name) ?? 0) + n);
  }
  const weightType = [...matrixTypes.entries()].sort((a, b) => b[1] - a[1])[0]?.[0] ?? "unknown";
  return {
    arch,
    nLayer: num(meta.block_count, 0),
    nEmbd,
    nHead,
    nHeadKv: num(attention.head_count_kv, nHead),
    nFf: num(meta.feed_forward_length, 0),
    nVocab: embd ? Number(embd.dimensions[1]) : 0,
    contextLength: num(meta.context_length, 4096),
    tied: !byName.has("output.weight"),
    weightType,
    params,
    weightBytes,
  };
}

// GGUF v3 value types (ggml/include/gguf.h).
const UINT32 = 4;
const FLOAT32 = 6;
const BOOL = 7;
const STRING = 8;
const ARRAY = 9;
const INT32 = 5;
const ALIGNMENT = 32;

export type MetadataValue = string | boolean | { u32: number } | { i32: number } | { f32: number } | string[] | { i32s: number[] };

/**
 * Writes `spec` as a GGUF with no weights: the header, `extra` metadata (tokenizer keys, for example) and the tensor
 * table, then the file is extended to its full size without writing the data (a sparse file on Linux, macOS and
 * Windows' NTFS, which all leave unwritten extents unallocated).
 */
export async function writeShapeGguf(spec: ShapeSpec, file: string, extra: Record<string, MetadataValue> = {}): Promise<void> {
  const a = spec.arch;
  const metadata: Record<string, MetadataValue> = {
    "general.architecture": a,
    "general.name": `${a} shape ${spec.nLayer}x${spec.nEmbd}`,
    "general.alignment": { u32: ALIGNMENT },
    [`${a}.block_count`]: { u32: spec.nLayer },
    [`${a}.context_length`]: { u32: spec.contextLength },
    [`${a}.embedding_length`]: { u32: spec.nEmbd },
    [`${a}.feed_forward_length`]: { u32: spec.nFf },
    [`${a}.attention.head_count`]: { u32: spec.nHead },
    [`${a}.attention.head_count_kv`]: { u32: spec.nHeadKv },
    [`${a}.rope.freq_base`]: { f32: spec.ropeFreqBase },
    [a === "starcoder2" ? `${a}.attention.layer_norm_epsilon` : `${a}.attention.layer_norm_rms_epsilon`]: { f32: 1e-6 },
    ...(spec.ropeScaling ? { [`${a}.rope.scaling.type`]: spec.ropeScaling.type, [`${a}.rope.scaling.factor`]: { f32: spec.ropeScaling.factor } } : {}),
    ...extra,
  };
  const tensors = shapeTensors(spec);
  const parts: Buffer[] = [];
  const u32 = (v: number) => { const b = Buffer.alloc(4); b.writeUInt32LE(v); parts.push(b); };
  const u64 = (v: number) => { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(v)); parts.push(b); };
  const str = (s: string) => { const b = Buffer.from(s, "utf8"); u64(b.length); parts.push(b); };
  parts.push(Buffer.from("GGUF", "latin1"));
  u32(3);
  u64(tensors.length);
  u64(Object.keys(metadata).length);
  for (const [key, value] of Object.entries(metadata)) {
    str(key);
    if (typeof value === "string") { u32(STRING); str(value); }
    else if (typeof value === "boolean") { u32(BOOL); parts.push(Buffer.from([value ? 1 : 0])); }
    else if (Array.isArray(value)) { u32(ARRAY); u32(STRING); u64(value.length); value.forEach(str); }
    else if ("u32" in value) { u32(UINT32); u32(value.u32); }
    else if ("i32" in value) { u32(INT32); const b = Buffer.alloc(4); b.writeInt32LE(value.i32); parts.push(b); }
    else if ("i32s" in value) {
      u32(ARRAY); u32(INT32); u64(value.i32s.length);
      const b = Buffer.alloc(4 * value.i32s.length);
      value.i32s.forEach((v, i) => b.writeInt32LE(v, 4 * i));
      parts.push(b);
    } else { u32(FLOAT32); const b = Buffer.alloc(4); b.writeFloatLE(value.f32); parts.push(b); }
  }
  let offset = 0;
  for (const t of tensors) {
    str(t.name);
    u32(t.ne.length);
    t.ne.forEach(u64);
    u32(GGML_TYPES[t.type].id);
    u64(offset);
    offset = align(offset + tensorBytes(t.type, t.ne));
  }
  const header = Buffer.concat(parts);
  const dataStart = align(header.length);
  const handle = await fs.open(file, "w");
  try {
    await handle.write(header, 0, header.length, 0);
    await handle.truncate(dataStart + offset);
  } finally {
    await handle.close();
  }
}

function align(n: number): number {
  return Math.ceil(n / ALIGNMENT) * ALIGNMENT;
}
