// The base models RepoTune offers to download: base (not instruct) code models trained with fill-in-the-middle, in
// GGUF, in the three architectures the trainer implements. Q8_0 files throughout: the trainer keeps frozen weights
// in their quantized blocks, Q8_0 loses almost nothing against F16 at half the size, and llama.cpp serves it on
// every backend.
//
// Where the data comes from (looked up on Hugging Face file listings, 2026-11; nothing was downloaded here):
// - Qwen2.5-Coder: ggml-org's Q8_0 conversions (the llama.cpp team's, the ones llama.vscode uses for FIM).
//   SHA-256 of the 0.5B file from its Git LFS details (commit ecdd60b); the 1.5B and 7B hashes were not found, so
//   they are null and those downloads are checked by size only.
// - DeepSeek-Coder 1.3B base: TheBloke's Q8_0 (November 2023 conversion). Not verified: its size (computed from
//   the shape, the listing did not show it), its hash (null), and whether this early conversion carries
//   tokenizer.ggml.fim_*_token_id (validate.ts finds the FIM tokens by their text when the ids are missing).
// - StarCoder2 3B: mradermacher's Q8_0 (listed at 3.22 GB). Hash not found (null).
// Sizes are the listings' rounded figures; a download's real size comes from the server.
// Shapes are the models' config.json values; the test checks each against its file size.
//
// trainBytes is what the trainer's own estimator (trainer/repotune_trainer/memory.py, through
// src/core/memoryEstimate.ts) says a run at TRAIN_REFERENCE needs on a CUDA GPU, run on a weightless GGUF of the
// model's shape (shape.ts). Recorded here because the default model is picked synchronously before any Python
// exists; test/unit/modelCatalog.test.ts recomputes every figure with the estimator and fails when one drifts.
import { shapeOfSpec, type ModelShape, type ShapeSpec } from "./shape";

export interface CatalogModel {
  id: string;
  displayName: string;
  /** Prompt family in src/core/promptFormat.ts. */
  family: "qwen2.5-coder" | "deepseek-coder" | "starcoder2";
  licence: string;
  licenceUrl: string;
  /** node-llama-cpp model URI (hf:<user>/<repo>/<file>), resolved by download.ts. */
  uri: string;
  fileName: string;
  /** The file's size as listed (rounded by the listing). */
  approxBytes: number;
  /** Lower-case hex SHA-256, or null when it could not be verified. */
  sha256: string | null;
  spec: ShapeSpec;
  /** Peak training memory on a CUDA GPU at TRAIN_REFERENCE (the trainer's estimate, see above). */
  trainBytes: number;
  /** Offered as the default for a device: the Qwen2.5-Coder line (Apache-2.0, the strongest FIM base models here). */
  defaultCandidate: boolean;
}

/** The settings trainBytes is estimated at: one FIM window of 256 tokens per micro-batch, the least a plan runs with
 * before it shortens windows or lowers the rank (gradient accumulation makes up the batch). */
export const TRAIN_REFERENCE = { seqLen: 256, batch: 1, rank: 16 } as const;

/** The engine's completion context (src/engine/engine.ts MAX_CONTEXT_SIZE): what the KV cache is sized for. */
export const SERVE_CONTEXT = 4096;
/** llama.cpp's default micro-batch: the logits buffer holds this many rows of vocabulary scores. */
const SERVE_UBATCH = 512;

const QWEN_BASE = { arch: "qwen2", nVocab: 151936, contextLength: 32768, biases: "qkv", weightType: "Q8_0", ropeFreqBase: 1_000_000 } as const;

export const CATALOG: readonly CatalogModel[] = [
  {
    id: "qwen2.5-coder-0.5b",
    displayName: "Qwen2.5-Coder 0.5B",
    family: "qwen2.5-coder",
    licence: "Apache-2.0",
    licenceUrl: "https://huggingface.co/Qwen/Qwen2.5-Coder-0.5B/blob/main/LICENSE",
    uri: "hf:ggml-org/Qwen2.5-Coder-0.5B-Q8_0-GGUF/qwen2.5-coder-0.5b-q8_0.gguf",
    fileName: "qwen2.5-coder-0.5b-q8_0.gguf",
    approxBytes: 531e6,
    sha256: "d0f8cd6c49bab52a0abdbe47948518b1f4d9b1a8a2a6825099cea31cea10ac56",
    spec: { ...QWEN_BASE, nLayer: 24, nEmbd: 896, nHead: 14, nHeadKv: 2, nFf: 4864, tied: true },
    trainBytes: 2_230_563_328,
    defaultCandidate: true,
  },
  {
    id: "qwen2.5-coder-1.5b",
    displayName: "Qwen2.5-Coder 1.5B",
    family: "qwen2.5-coder",
    licence: "Apache-2.0",
    licenceUrl: "https://huggingface.co/Qwen/Qwen2.5-Coder-1.5B/blob/main/LICENSE",
    uri: "hf:ggml-org/Qwen2.5-Coder-1.5B-Q8_0-GGUF/qwen2.5-coder-1.5b-q8_0.gguf",
    fileName: "qwen2.5-coder-1.5b-q8_0.gguf",
    approxBytes: 1.65e9,
    sha256: null,
    spec: { ...QWEN_BASE, nLayer: 28, nEmbd: 1536, nHead: 12, nHeadKv: 2, nFf: 8960, tied: true },
    trainBytes: 4_393_232_384,
    defaultCandidate: true,
  },
  {
    id: "qwen2.5-coder-7b",
    displayName: "Qwen2.5-Coder 7B",
    family: "qwen2.5-coder",
    licence: "Apache-2.0",
    licenceUrl: "https://huggingface.co/Qwen/Qwen2.5-Coder-7B/blob/main/LICENSE",
    uri: "hf:ggml-org/Qwen2.5-Coder-7B-Q8_0-GGUF/qwen2.5-coder-7b-q8_0.gguf",
    fileName: "qwen2.5-coder-7b-q8_0.gguf",
    approxBytes: 8.1e9,
    sha256: null,
    spec: { ...QWEN_BASE, nVocab: 152064, nLayer: 28, nEmbd: 3584, nHead: 28, nHeadKv: 4, nFf: 18944, tied: false },
    trainBytes: 13_725_030_400,
    defaultCandidate: true,
  },
  {
    id: "deepseek-coder-1.3b-base",
    displayName: "DeepSeek-Coder 1.3B base",
    family: "deepseek-coder",
    licence: "DeepSeek License (commercial use allowed, with use restrictions)",
    licenceUrl: "https://github.com/deepseek-ai/DeepSeek-Coder/blob/main/LICENSE-MODEL",
    uri: "hf:TheBloke/deepseek-coder-1.3b-base-GGUF/deepseek-coder-1.3b-base.Q8_0.gguf",
    fileName: "deepseek-coder-1.3b-base.Q8_0.gguf",
    approxBytes: 1.43e9,
    sha256: null,
    spec: {
      arch: "llama", nVocab: 32256, contextLength: 16384, nLayer: 24, nEmbd: 2048, nHead: 16, nHeadKv: 16, nFf: 5504,
      tied: false, biases: "none", weightType: "Q8_0", ropeFreqBase: 100_000, ropeScaling: { type: "linear", factor: 4 },
    },
    trainBytes: 2_921_734_144,
    defaultCandidate: false,
  },
  {
    id: "starcoder2-3b",
    displayName: "StarCoder2 3B",
    family: "starcoder2",
    licence: "BigCode OpenRAIL-M v1 (use restrictions apply)",
    licenceUrl: "https://huggingface.co/spaces/bigcode/bigcode-model-license-agreement",
    uri: "hf:mradermacher/starcoder2-3b-GGUF/starcoder2-3b.Q8_0.gguf",
    fileName: "starcoder2-3b.Q8_0.gguf",
    approxBytes: 3.22e9,
    sha256: null,
    spec: {
      arch: "starcoder2", nVocab: 49152, contextLength: 16384, nLayer: 30, nEmbd: 3072, nHead: 24, nHeadKv: 2, nFf: 12288,
      tied: true, biases: "all", weightType: "Q8_0", ropeFreqBase: 999_999.4,
    },
    trainBytes: 5_831_503_872,
    defaultCandidate: false,
  },
];

export const DEFAULT_MODEL_ID = "qwen2.5-coder-1.5b";

export function catalogModel(id: string): CatalogModel {
  const m = CATALOG.find((c) => c.id === id);
  if (!m) throw new Error(`There is no model "${id}" in RepoTune's list; choose one of ${CATALOG.map((c) => c.id).join(", ")}, or use your own GGUF file.`);
  return m;
}

export function shapeOf(m: CatalogModel): ModelShape {
  return shapeOfSpec(m.spec);
}

/**
 * Memory to serve completions: the weights, the KV cache of the engine's context (F16 keys and values, every layer)
 * and the logits of one micro-batch. Within 8% of node-llama-cpp's own estimate (GgufInsights) for every entry, which
 * needs a loaded llama.cpp binary and so is not used here; the catalog test compares the two.
 */
export function serveBytes(m: CatalogModel): number {
  const s = m.spec;
  const headDim = s.nEmbd / s.nHead;
  const kvCache = 2 * s.nLayer * s.nHeadKv * headDim * SERVE_CONTEXT * 2;
  const logits = s.nVocab * SERVE_UBATCH * 4;
  return shapeOf(m).weightBytes + kvCache + logits;
}

/** A share of device memory left free for the driver, the allocator's fragmentation and the rest of the system. */
const HEADROOM = 0.9;

/**
 * The default model for a device: the biggest default candidate whose training at TRAIN_REFERENCE fits in its
 * memory; the smallest when none does (it then trains with the plan's smaller settings, or slowly on the CPU).
 */
export function defaultModelFor(deviceMemoryBytes: number): CatalogModel {
  const bySize = CATALOG.filter((m) => m.defaultCandidate).sort((a, b) => a.trainBytes - b.trainBytes);
  const fitting = bySize.filter((m) => m.trainBytes <= HEADROOM * deviceMemoryBytes);
  return fitting.at(-1) ?? bySize[0];
}
