// "Use my own GGUF": checks a model file before RepoTune uses it, from its header alone (node-llama-cpp's
// readGgufFileInfo reads metadata and the tensor table; no model is loaded). Each failure says what is wrong with
// the file and what to choose instead.
//
// The supported architectures and weight types are the trainer's (trainer/repotune_trainer/model.py
// SUPPORTED_ARCHES, quants.py SUPPORTED_TYPES); test/unit/modelValidate.test.ts compares these lists with the
// Python ones, so the two cannot drift apart silently.
import { promises as fs } from "node:fs";
import type { GgufFileInfo } from "node-llama-cpp";
import type { ModelInfo } from "../../protocol/engine";
import { promptFormatFor } from "../promptFormat";
import { checkGguf } from "../tune";
import { messageOf } from "../errors";
import { GGML_TYPES, ggmlTypeName, shapeFromGguf, type GgmlTypeName, type ModelShape } from "./shape";

export const TRAINABLE_ARCHES = ["llama", "qwen2", "starcoder2"] as const;
export const TRAINABLE_TYPES: readonly GgmlTypeName[] = ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K"];

export type ModelProblem = "unreadable" | "not_gguf" | "truncated" | "unsupported_arch" | "no_fim" | "unsupported_weights" | "unsupported_rope";

export class ModelCheckError extends Error {
  constructor(readonly problem: ModelProblem, message: string) {
    super(message);
    this.name = "ModelCheckError";
  }
}

export interface CheckedModel {
  path: string;
  arch: string;
  name: string | null;
  /** Prompt family (src/core/promptFormat.ts). */
  family: string;
  shape: ModelShape;
  /** Weight types in the file, most parameters first. */
  weightTypes: string[];
  fileBytes: number;
}

const CHOOSE = "Choose a GGUF of a base code model with fill-in-the-middle support, such as Qwen2.5-Coder (Q8_0 or Q4_K_M), or pick one from RepoTune's list.";

export async function validateModel(file: string): Promise<CheckedModel> {
  try {
    await checkGguf(file);
  } catch (err) {
    const missing = !(await fs.stat(file).then((s) => s.isFile(), () => false));
    throw new ModelCheckError(missing ? "unreadable" : "not_gguf", messageOf(err));
  }
  const { readGgufFileInfo } = await import("node-llama-cpp");
  let info: GgufFileInfo;
  try {
    info = await readGgufFileInfo(file, { logWarnings: false, sourceType: "filesystem", spliceSplitFiles: false });
  } catch (err) {
    throw new ModelCheckError("truncated", `The model file ${file} is damaged: its GGUF header cannot be read (${messageOf(err)}). The download may have been cut short; download it again. ${CHOOSE}`);
  }
  const fileBytes = (await fs.stat(file)).size;
  const tensors = info.tensorInfo ?? [];
  const dataEnd = Math.max(0, ...tensors.map((t) => Number(t.fileOffset) + tensorSize(t.ggmlType, t.dimensions.map(Number))));
  if (dataEnd > fileBytes) {
    throw new ModelCheckError("truncated", `The model file ${file} is incomplete: its weights need ${dataEnd.toLocaleString("en-US")} bytes but the file has ${fileBytes.toLocaleString("en-US")}. The download was probably cut short; download it again.`);
  }

  const arch = String(info.metadata.general?.architecture ?? "");
  const name = typeof info.metadata.general?.name === "string" ? info.metadata.general.name : null;
  if (!(TRAINABLE_ARCHES as readonly string[]).includes(arch)) {
    throw new ModelCheckError("unsupported_arch", `The model ${name ?? file} has the architecture "${arch || "none"}", which RepoTune cannot fine-tune. It trains ${TRAINABLE_ARCHES.join(", ")} models (Qwen2.5-Coder, DeepSeek-Coder 1.x, CodeLlama, StarCoder2). ${CHOOSE}`);
  }
  const scaling = (info.metadata as unknown as Record<string, Record<string, unknown>>)[arch]?.rope as Record<string, unknown> | undefined;
  const scalingType = (scaling?.scaling as Record<string, unknown> | undefined)?.type;
  if (scalingType !== undefined && scalingType !== "none" && scalingType !== "linear") {
    throw new ModelCheckError("unsupported_rope", `The model ${name ?? file} uses "${String(scalingType)}" RoPE scaling, which the trainer does not implement. Choose a GGUF of the model without RoPE scaling (most code models up to 32k context have none).`);
  }

  let family: string;
  try {
    family = promptFormatFor(modelInfoOf(file, arch, name, info)).family;
  } catch (err) {
    throw new ModelCheckError("no_fim", messageOf(err));
  }

  const params = new Map<string, number>();
  for (const t of tensors) params.set(ggmlTypeName(t.ggmlType), (params.get(ggmlTypeName(t.ggmlType)) ?? 0) + t.dimensions.map(Number).reduce((a, b) => a * b, 1));
  const weightTypes = [...params.entries()].sort((a, b) => b[1] - a[1]).map(([t]) => t);
  const unsupported = weightTypes.filter((t) => !(TRAINABLE_TYPES as readonly string[]).includes(t));
  if (unsupported.length > 0) {
    throw new ModelCheckError("unsupported_weights", `The model ${name ?? file} stores weights as ${unsupported.join(", ")}, which the trainer cannot read (it reads ${TRAINABLE_TYPES.join(", ")}). Use a Q8_0, Q4_K_M, F16 or BF16 GGUF of the same model.`);
  }
  return { path: file, arch, name, family, shape: shapeFromGguf(info), weightTypes, fileBytes };
}

/**
 * The special-token part of the engine's ModelInfo, from the header: the FIM token ids the converter recorded, or,
 * for files converted before those keys existed, the tokens found by their text (as llama.cpp itself does).
 */
function modelInfoOf(file: string, arch: string, name: string | null, info: GgufFileInfo): ModelInfo {
  const tok = (info.metadata.tokenizer?.ggml ?? {}) as Record<string, unknown>;
  const tokens = Array.isArray(tok.tokens) ? (tok.tokens as unknown[]).map(String) : [];
  const byId = (...keys: string[]): string | null => {
    for (const key of keys) {
      const id = tok[key];
      if (typeof id === "number" && id >= 0 && id < tokens.length) return tokens[id];
    }
    return null;
  };
  const byText = (...texts: string[]): string | null => texts.find((t) => tokens.includes(t)) ?? null;
  const fimPrefix = byId("fim_pre_token_id", "prefix_token_id") ?? byText("<|fim_prefix|>", "<fim_prefix>", "<｜fim▁begin｜>", "▁<PRE>", "<PRE>");
  const fimSuffix = byId("fim_suf_token_id", "suffix_token_id") ?? byText("<|fim_suffix|>", "<fim_suffix>", "<｜fim▁hole｜>", "▁<SUF>", "<SUF>");
  const fimMiddle = byId("fim_mid_token_id", "middle_token_id") ?? byText("<|fim_middle|>", "<fim_middle>", "<｜fim▁end｜>", "▁<MID>", "<MID>");
  const eos = typeof tok.eos_token_id === "number" ? tok.eos_token_id : null;
  return {
    path: file, arch, name, vocabSize: tokens.length, trainContextSize: shapeFromGguf(info).contextLength,
    bos: typeof tok.bos_token_id === "number" ? tok.bos_token_id : null, eos,
    special: { fimPrefix, fimSuffix, fimMiddle, eot: byId("eot_token_id") },
    infillSupported: fimPrefix !== null && fimSuffix !== null,
  };
}

function tensorSize(ggmlType: number, ne: number[]): number {
  const t = GGML_TYPES[ggmlTypeName(ggmlType) as GgmlTypeName];
  // A type without an entry here is reported as unsupported later; its size is not needed for that.
  return t ? (ne.reduce((a, b) => a * b, 1) / t.block) * t.bytes : 0;
}
