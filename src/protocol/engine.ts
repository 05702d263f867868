// The one schema module for the engine boundary (extension host / CLI <-> engine process, over Node IPC).
import { z } from "zod";

/** A piece of a prompt: plain text, or the text of one special token (e.g. "<|fim_prefix|>"). */
export const Segment = z.object({ text: z.string(), special: z.boolean() });
export type Segment = z.infer<typeof Segment>;

export const ModelInfo = z.object({
  path: z.string(),
  arch: z.string(),
  name: z.string().nullable(),
  vocabSize: z.number().int(),
  trainContextSize: z.number().int(),
  bos: z.number().int().nullable(),
  eos: z.number().int().nullable(),
  /** True when the model expects BOS first (llama.cpp's add_bos): `complete` prepends it; `tokenize` never does. */
  addBos: z.boolean().optional(),
  /** Text of the model's special tokens that prompt formats need; null where the model lacks them. */
  special: z.object({
    fimPrefix: z.string().nullable(),
    fimSuffix: z.string().nullable(),
    fimMiddle: z.string().nullable(),
    eot: z.string().nullable(),
  }),
  infillSupported: z.boolean(),
});
export type ModelInfo = z.infer<typeof ModelInfo>;

export const EngineRequest = z.discriminatedUnion("method", [
  z.object({ id: z.number().int(), method: z.literal("load"), params: z.object({ modelPath: z.string(), gpu: z.enum(["auto", "off"]).default("auto") }) }),
  z.object({ id: z.number().int(), method: z.literal("tokenize"), params: z.object({ items: z.array(z.array(Segment)) }) }),
  z.object({ id: z.number().int(), method: z.literal("detokenize"), params: z.object({ tokens: z.array(z.number().int()) }) }),
  z.object({
    id: z.number().int(),
    method: z.literal("complete"),
    params: z.object({
      prompt: z.array(Segment),
      adapterPath: z.string().nullable(),
      maxTokens: z.number().int().positive(),
      stop: z.array(z.string()).default([]),
    }),
  }),
  z.object({ id: z.number().int(), method: z.literal("cancel"), params: z.object({ requestId: z.number().int() }) }),
  z.object({ id: z.number().int(), method: z.literal("dispose"), params: z.object({}).default({}) }),
]);
export type EngineRequest = z.infer<typeof EngineRequest>;
export type EngineMethod = EngineRequest["method"];

export const CompleteResult = z.object({ text: z.string(), tokens: z.number().int(), adapterPath: z.string().nullable() });
export type CompleteResult = z.infer<typeof CompleteResult>;

export const EngineResults = {
  load: ModelInfo,
  tokenize: z.object({ tokens: z.array(z.array(z.number().int())) }),
  detokenize: z.object({ text: z.string() }),
  complete: CompleteResult,
  cancel: z.object({ cancelled: z.boolean() }),
  dispose: z.object({}),
} satisfies Record<EngineMethod, z.ZodTypeAny>;

export const EngineErrorCode = z.enum(["not_loaded", "bad_model", "bad_adapter", "cancelled", "bad_request", "internal"]);
export const EngineResponse = z.union([
  z.object({ id: z.number().int(), ok: z.literal(true), result: z.unknown() }),
  z.object({ id: z.number().int(), ok: z.literal(false), error: z.object({ code: EngineErrorCode, message: z.string() }) }),
]);
export type EngineResponse = z.infer<typeof EngineResponse>;
