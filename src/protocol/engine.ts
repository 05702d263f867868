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
  /** The llama.cpp backend serving the model ("cuda", "vulkan", "metal"), or null on the CPU. */
  gpu: z.string().nullable().optional(),
  /** Layers offloaded to the GPU, out of totalLayers (llama.cpp counts the output layer as one). */
  gpuLayers: z.number().int().optional(),
  totalLayers: z.number().int().optional(),
});
export type ModelInfo = z.infer<typeof ModelInfo>;

export const EngineRequest = z.discriminatedUnion("method", [
  z.object({
    id: z.number().int(),
    method: z.literal("load"),
    // vocabOnly: the tokenizer alone, on the CPU (no weights read, no GPU touched): an engine that only tokenizes.
    params: z.object({ modelPath: z.string(), gpu: z.enum(["auto", "off"]).default("auto"), vocabOnly: z.boolean().default(false) }),
  }),
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
  // Frees the model and its contexts (GPU memory included) and keeps the process: a later load brings them back.
  z.object({ id: z.number().int(), method: z.literal("release"), params: z.object({}).default({}) }),
  z.object({ id: z.number().int(), method: z.literal("status"), params: z.object({}).default({}) }),
  // Counts and memory of the engine, for soak tests and diagnostics: answered at once, even while a completion runs.
  z.object({ id: z.number().int(), method: z.literal("stats"), params: z.object({}).default({}) }),
  z.object({ id: z.number().int(), method: z.literal("dispose"), params: z.object({}).default({}) }),
]);
export type EngineRequest = z.infer<typeof EngineRequest>;
export type EngineMethod = EngineRequest["method"];

export const CompleteResult = z.object({
  text: z.string(),
  tokens: z.number().int(),
  adapterPath: z.string().nullable(),
  /** Prompt tokens, BOS included when the model adds one. */
  promptTokens: z.number().int().optional(),
  /** Prompt tokens the model evaluated for this request; the rest were reused from the previous request's KV cache. */
  evaluatedTokens: z.number().int().optional(),
  reusedTokens: z.number().int().optional(),
});
export type CompleteResult = z.infer<typeof CompleteResult>;

/** What became of one completion request, as the engine measured it. */
export const CompletionRecord = z.object({
  id: z.number().int(),
  outcome: z.enum(["done", "cancelled", "failed"]),
  promptTokens: z.number().int(),
  evaluatedTokens: z.number().int(),
  reusedTokens: z.number().int(),
  /** Tokens the model decoded while generating (the last prompt token included). */
  decodedTokens: z.number().int(),
  ms: z.number(),
  /** Decodes started after the cancellation arrived, and the time from then to the generation's end. */
  tokensAfterCancel: z.number().int().nullable(),
  msAfterCancel: z.number().nullable(),
});
export type CompletionRecord = z.infer<typeof CompletionRecord>;

export const EngineStatus = z.object({
  /** The loaded model, or null when none is (never loaded, or released). */
  model: ModelInfo.nullable(),
  /** The latest completion requests, oldest first (a few). */
  completions: z.array(CompletionRecord),
});
export type EngineStatus = z.infer<typeof EngineStatus>;

/** What the engine holds now; a leak shows as a count or a memory figure that keeps growing under a steady load. */
export const EngineStats = z.object({
  /** llama.cpp contexts created and not yet disposed (node-llama-cpp's own dispose events, not the engine's references). */
  contexts: z.number().int(),
  /** Context sequences created and not yet disposed. */
  sequences: z.number().int(),
  /** Contexts created since the engine started (one per adapter switch). */
  contextsCreated: z.number().int(),
  /** Distinct LoRA adapter files applied since the model was loaded (node-llama-cpp keeps each for the model's lifetime). */
  adapters: z.number().int(),
  /** Completions the engine process is running or has queued. */
  inFlight: z.number().int(),
  /** Completion requests since the engine started, by outcome. */
  completions: z.object({ done: z.number().int(), cancelled: z.number().int(), failed: z.number().int() }),
  /** The engine process's resident memory and V8 heap in use (native llama.cpp memory is in rss only). */
  rssBytes: z.number().int(),
  heapUsedBytes: z.number().int(),
});
export type EngineStats = z.infer<typeof EngineStats>;

export const EngineResults = {
  load: ModelInfo,
  tokenize: z.object({ tokens: z.array(z.array(z.number().int())) }),
  detokenize: z.object({ text: z.string() }),
  complete: CompleteResult,
  cancel: z.object({ cancelled: z.boolean() }),
  release: z.object({ released: z.boolean() }),
  status: EngineStatus,
  stats: EngineStats,
  dispose: z.object({}),
} satisfies Record<EngineMethod, z.ZodTypeAny>;

// "unavailable" never crosses the channel: the host gives it while the engine is down, restarting or paused.
export const EngineErrorCode = z.enum(["not_loaded", "bad_model", "bad_adapter", "cancelled", "bad_request", "internal", "unavailable"]);
export const EngineResponse = z.union([
  z.object({ id: z.number().int(), ok: z.literal(true), result: z.unknown() }),
  z.object({ id: z.number().int(), ok: z.literal(false), error: z.object({ code: EngineErrorCode, message: z.string() }) }),
]);
export type EngineResponse = z.infer<typeof EngineResponse>;
