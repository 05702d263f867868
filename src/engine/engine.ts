// The engine's model state over node-llama-cpp: one base model, and one context for the adapter in use.
//
// LoRA adapters attach when a context is created, so each adapter (or none) gets its own context; switching adapter
// disposes the old context while the model stays loaded. node-llama-cpp caches adapters by path for the model's
// lifetime, which is why a retrained adapter must always be written to a new path.
import { open, stat } from "node:fs/promises";
import { resolve } from "node:path";
import {
  getLlama,
  readGgufFileInfo,
  LlamaCompletion,
  LlamaLogLevel,
  LlamaVocabularyType,
  type GgufFileInfo,
  type Llama,
  type LlamaContext,
  type LlamaContextSequence,
  type LlamaModel,
  type Token,
} from "node-llama-cpp";
import type { CompleteResult, CompletionRecord, EngineStats, EngineStatus, ModelInfo, Segment } from "../protocol/engine";
import { cudaNote, useInstalledBinaries } from "../core/binaries";
import { EngineFailure } from "./errors";

export type GpuSetting = "auto" | "off";

export interface CompleteParams {
  prompt: Segment[];
  adapterPath: string | null;
  maxTokens: number;
  stop: string[];
}

interface LoadedModel {
  path: string;
  gpu: GpuSetting;
  /** The tokenizer alone: it can tokenize, not complete. */
  vocabOnly: boolean;
  model: LlamaModel;
  info: ModelInfo;
}

interface ActiveContext {
  adapterPath: string | null;
  context: LlamaContext;
  sequence: LlamaContextSequence;
  completion: LlamaCompletion;
}

// FIM prompts in an editor are a few thousand tokens at most; a larger context only costs memory (KV cache).
const MAX_CONTEXT_SIZE = 4096;
// Prompt tokens evaluated per step before the cancellation is checked again: a cancel waits for at most one
// chunk of prompt evaluation (one token once generation runs). Smaller chunks cancel sooner and batch worse.
const PROMPT_CHUNK = 128;
const RECORDS_KEPT = 16;

export class Engine {
  private llama: { gpu: GpuSetting; llama: Llama } | null = null;
  private loaded: LoadedModel | null = null;
  private active: ActiveContext | null = null;
  // Loading and generation change shared native state, so they run one at a time, in arrival order.
  private queue: Promise<unknown> = Promise.resolve();
  private loading: Promise<unknown> | null = null;
  private readonly records: CompletionRecord[] = [];
  // Counted from node-llama-cpp's dispose events, so that a context the engine lost track of still counts as live.
  private readonly live = { contexts: 0, sequences: 0, contextsCreated: 0 };
  private readonly outcomes = { done: 0, cancelled: 0, failed: 0 };
  private readonly adaptersApplied = new Set<string>();

  constructor(private readonly log: (line: string) => void) {}

  load(modelPath: string, gpu: GpuSetting, vocabOnly = false): Promise<ModelInfo> {
    // The tokenizer alone needs no GPU: the CPU build, so that a tokenizing engine takes no GPU memory.
    const run = this.exclusive(() => this.loadNow(modelPath, vocabOnly ? "off" : gpu, vocabOnly));
    const loading = run.catch(() => undefined);
    this.loading = loading;
    void loading.then(() => {
      if (this.loading === loading) this.loading = null;
    });
    return run;
  }

  /** Each segment tokenized on its own; special tokens are parsed only in special segments. No BOS is added. */
  async tokenize(items: Segment[][]): Promise<number[][]> {
    const model = await this.model();
    return items.map((segments) => this.tokenizeSegments(model, segments));
  }

  /** Special tokens are rendered as their text, so a tokenized prompt reads back as the prompt. */
  async detokenize(tokens: number[]): Promise<string> {
    const model = await this.model();
    this.checkTokenIds(tokens);
    return model.detokenize(tokens as Token[], true);
  }

  /**
   * Greedy completion of the prompt's tokens, with the model's BOS prepended when the model asks for one
   * (node-llama-cpp's LlamaCompletion does this, as llama.cpp does), so ModelInfo.addBos tells callers
   * who score the same text themselves whether to prepend it too.
   *
   * The context keeps the previous request's evaluated tokens: only the prompt after the first token that differs
   * from them is evaluated (LlamaCompletion itself erases the divergent tail of the sequence; a long prompt is
   * evaluated here first, in chunks, so that a cancellation also stops it between chunks).
   */
  complete(params: CompleteParams, signal: AbortSignal, requestId = 0): Promise<CompleteResult> {
    const run = this.completeNow(params, signal, requestId);
    // Counted here, so that a request cancelled while it waited its turn counts too.
    run.then(
      () => this.outcomes.done++,
      () => this.outcomes[signal.aborted ? "cancelled" : "failed"]++,
    );
    return run;
  }

  private completeNow(params: CompleteParams, signal: AbortSignal, requestId: number): Promise<CompleteResult> {
    return this.exclusive(async () => {
      throwIfCancelled(signal);
      const model = await this.model();
      const tokens = this.tokenizeSegments(model, params.prompt);
      if (tokens.length === 0) throw new EngineFailure("bad_request", "The prompt is empty: send at least one token of prompt to complete.");
      const active = await this.contextFor(params.adapterPath);
      throwIfCancelled(signal);
      const sequence = active.sequence;
      const prompt = [...beginningTokens(model), ...tokens];
      if (prompt.length + params.maxTokens > active.context.contextSize) {
        throw new EngineFailure(
          "bad_request",
          `The prompt (${tokens.length} tokens) plus ${params.maxTokens} tokens to generate do not fit the engine's context of ` +
            `${active.context.contextSize} tokens. Send a shorter prefix and suffix, or ask for fewer tokens.`,
        );
      }
      const started = performance.now();
      const meterBefore = sequence.tokenMeter.getState();
      let cancelledAt: { outputs: number; time: number } | null = null;
      const onAbort = (): void => {
        cancelledAt = { outputs: sequence.tokenMeter.usedOutputTokens, time: performance.now() };
      };
      signal.addEventListener("abort", onAbort, { once: true });
      let generated = 0;
      const record = (outcome: CompletionRecord["outcome"]): CompletionRecord => {
        const used = sequence.tokenMeter.diff(meterBefore);
        // Prompt tokens are decoded without logits ("input"); the last one and each generated token with ("output").
        const evaluated = used.usedInputTokens + Math.min(used.usedOutputTokens, 1);
        const at = cancelledAt;
        const entry: CompletionRecord = {
          id: requestId,
          outcome,
          promptTokens: prompt.length,
          evaluatedTokens: evaluated,
          reusedTokens: Math.max(0, prompt.length - evaluated),
          decodedTokens: used.usedOutputTokens,
          ms: performance.now() - started,
          tokensAfterCancel: at === null ? null : sequence.tokenMeter.usedOutputTokens - at.outputs,
          msAfterCancel: at === null ? null : performance.now() - at.time,
        };
        this.records.push(entry);
        if (this.records.length > RECORDS_KEPT) this.records.shift();
        return entry;
      };
      try {
        await evaluatePrompt(sequence, prompt, signal);
        const text = await active.completion.generateCompletion(tokens, {
          maxTokens: params.maxTokens,
          // Greedy and unpenalised: the same prompt always gives the same completion, and the output is what the
          // adapter learned, not what a sampler made of it.
          temperature: 0,
          repeatPenalty: false,
          customStopTriggers: this.stopTriggers(model, params.stop),
          disableContextShift: true,
          // LlamaCompletion keeps at most contextSize - contextShiftSize prompt tokens and silently drops the ones
          // before: with maxTokens here, what fits by the check above is never cut.
          contextShiftSize: params.maxTokens,
          signal,
          onToken: (t) => {
            generated += t.length;
          },
        });
        const done = record("done");
        return {
          text,
          tokens: generated,
          adapterPath: params.adapterPath,
          promptTokens: done.promptTokens,
          evaluatedTokens: done.evaluatedTokens,
          reusedTokens: done.reusedTokens,
        };
      } catch (err) {
        const entry = record(signal.aborted ? "cancelled" : "failed");
        if (entry.outcome === "cancelled") {
          this.log(
            `completion #${requestId} cancelled: ${entry.tokensAfterCancel} tokens decoded after the cancel, ` +
              `stopped ${entry.msAfterCancel?.toFixed(1)} ms after it`,
          );
        }
        throwIfCancelled(signal);
        throw err;
      } finally {
        signal.removeEventListener("abort", onAbort);
      }
    });
  }

  /** Frees the model and its context (and the GPU memory they hold); the llama.cpp backend stays ready for a load. */
  release(): Promise<boolean> {
    return this.exclusive(async () => {
      const had = this.loaded !== null;
      await this.unloadModel();
      if (had) this.log("released the model and its context");
      return had;
    });
  }

  /** Answers at once, even while a completion runs: nothing here waits for the queue. */
  status(): EngineStatus {
    return { model: this.loaded?.info ?? null, completions: [...this.records] };
  }

  /** Answers at once, like status(); the process's memory is added by main.ts. */
  stats(): Omit<EngineStats, "inFlight" | "rssBytes" | "heapUsedBytes"> {
    return { ...this.live, adapters: this.adaptersApplied.size, completions: { ...this.outcomes } };
  }

  async dispose(): Promise<void> {
    await this.exclusive(async () => {
      await this.unloadModel();
      const llama = this.llama;
      this.llama = null;
      await llama?.llama.dispose();
    });
  }

  private async loadNow(modelPath: string, gpu: GpuSetting, vocabOnly: boolean): Promise<ModelInfo> {
    const path = resolve(modelPath);
    const l = this.loaded;
    if (l !== null && l.path === path && l.gpu === gpu && l.vocabOnly === vocabOnly) return l.info;
    const fileInfo = await readGguf(path, "model");
    const type = generalField(fileInfo, "type");
    if (type === "adapter") {
      throw new EngineFailure(
        "bad_model",
        `${path} is a LoRA adapter, not a base model. Choose the base model's .gguf file as the model; adapters are applied on top of it.`,
      );
    }
    await this.unloadModel();
    const llama = await this.llamaFor(gpu);
    const started = Date.now();
    let model: LlamaModel;
    try {
      model = await llama.loadModel({ modelPath: path, gpuLayers: gpu === "off" ? 0 : "auto", ...(vocabOnly ? { vocabOnly: true } : {}) });
    } catch (err) {
      const arch = generalField(fileInfo, "architecture") ?? "unknown";
      throw new EngineFailure(
        "bad_model",
        `llama.cpp could not load the model ${path} (architecture "${arch}"): ${messageOf(err)}. ` +
          "The file may be damaged, or of an architecture this version of llama.cpp does not support: choose another .gguf model.",
      );
    }
    let info: ModelInfo;
    try {
      info = modelInfo(model, path, llama);
    } catch (err) {
      // Not kept as the loaded model, so nothing else would ever free its memory.
      await model.dispose();
      throw err;
    }
    this.loaded = { path, gpu, vocabOnly, model, info };
    this.log(`loaded ${vocabOnly ? "the vocabulary of " : ""}${path} (${info.arch}, ${info.vocabSize} tokens, gpu ${llama.gpu || "none"}, ${model.gpuLayers} layers on GPU) in ${Date.now() - started} ms`);
    return info;
  }

  private async llamaFor(gpu: GpuSetting): Promise<Llama> {
    if (this.llama !== null && this.llama.gpu === gpu) return this.llama.llama;
    const previous = this.llama;
    this.llama = null;
    await previous?.llama.dispose();
    // CUDA builds are too large for the VSIX: the extension downloads them into global storage on first use and
    // names that folder here; src/core/binaries.ts says how node-llama-cpp is made to find them.
    const binaries = process.env.REPOTUNE_BINARIES_DIR || null;
    if (gpu === "auto" && binaries !== null) {
      const used = await useInstalledBinaries(binaries).catch((err: unknown) => {
        this.log(`the CUDA build in ${binaries} is not used: ${messageOf(err)}`);
        return [];
      });
      if (used.length > 0) this.log(`llama.cpp builds from ${binaries}: ${used.map((p) => p.name).join(", ")}`);
    }
    try {
      const llama = await getLlama({
        gpu: gpu === "off" ? false : "auto",
        // Compiling llama.cpp inside the engine would take minutes and may produce a binary for the wrong CPU:
        // only the prebuilt binaries shipped with node-llama-cpp are used.
        build: "never",
        logLevel: LlamaLogLevel.warn,
        logger: (level, message) => this.log(`llama.cpp ${level}: ${message.trimEnd()}`),
      });
      this.llama = { gpu, llama };
      if (gpu === "auto") {
        const note = await cudaNote(binaries, llama.gpu).catch(() => null);
        if (note !== null) this.log(note);
      }
      return llama;
    } catch (err) {
      throw new EngineFailure(
        "internal",
        `No usable llama.cpp binary was found for this machine: ${messageOf(err)}. ` +
          "Reinstall RepoTune so that node-llama-cpp's prebuilt binaries for your platform are present" +
          (gpu === "auto" ? ', or set the GPU option to "off" to use the CPU build.' : "."),
      );
    }
  }

  private async contextFor(adapterPath: string | null): Promise<ActiveContext> {
    const loaded = this.loaded;
    if (loaded === null) throw notLoaded();
    if (loaded.vocabOnly) {
      throw new EngineFailure("not_loaded", `Only the vocabulary of ${loaded.path} is loaded (for tokenizing); load the model to complete.`);
    }
    const wanted = adapterPath === null ? null : resolve(adapterPath);
    if (this.active !== null && this.active.adapterPath === wanted) return this.active;
    if (wanted !== null) await this.checkAdapter(wanted, loaded);
    await this.disposeContext();
    try {
      const llama = loaded.model.llama;
      const context = await loaded.model.createContext({
        contextSize: { max: MAX_CONTEXT_SIZE },
        sequences: 1,
        // On the CPU, leave a core to the editor, which must stay responsive while completions run. ggml's threads
        // busy-wait, so more threads than free cores made a tiny model 100x slower here, not faster.
        ...(llama.gpu === false ? { threads: Math.max(1, llama.cpuMathCores - 1) } : {}),
        ...(wanted !== null ? { lora: { adapters: [{ filePath: wanted }] } } : {}),
      });
      this.live.contexts++;
      this.live.contextsCreated++;
      context.onDispose.createListener(() => this.live.contexts--);
      const sequence = context.getSequence();
      this.live.sequences++;
      sequence.onDispose.createListener(() => this.live.sequences--);
      if (wanted !== null) this.adaptersApplied.add(wanted);
      const completion = new LlamaCompletion({ contextSequence: sequence });
      this.active = { adapterPath: wanted, context, sequence, completion };
      return this.active;
    } catch (err) {
      if (wanted !== null) {
        throw new EngineFailure(
          "bad_adapter",
          `llama.cpp could not apply the LoRA adapter ${wanted} to the model ${loaded.path}: ${messageOf(err)}. ` +
            "The adapter was probably trained for a different base model: train a new adapter for this model.",
        );
      }
      throw new EngineFailure("internal", `Could not create a context for the model ${loaded.path}: ${messageOf(err)}.`);
    }
  }

  private async checkAdapter(path: string, loaded: LoadedModel): Promise<void> {
    const fileInfo = await readGguf(path, "adapter");
    const type = generalField(fileInfo, "type");
    if (type !== "adapter") {
      throw new EngineFailure(
        "bad_adapter",
        `${path} is not a LoRA adapter (its GGUF general.type is "${type ?? "missing"}"). Choose an adapter file trained by RepoTune.`,
      );
    }
    const arch = generalField(fileInfo, "architecture");
    if (arch !== loaded.info.arch) {
      throw new EngineFailure(
        "bad_adapter",
        `The LoRA adapter ${path} is for the "${arch ?? "unknown"}" architecture, but the loaded model ${loaded.path} is "${loaded.info.arch}". ` +
          "Use an adapter trained for this model, or load the model it was trained for.",
      );
    }
  }

  private tokenizeSegments(model: LlamaModel, segments: Segment[]): Token[] {
    const out: Token[] = [];
    for (const segment of segments) {
      const tokens = model.tokenize(segment.text, segment.special);
      // A special text the vocabulary lacks would silently become plain-text tokens and teach or prompt the wrong thing.
      if (segment.special && tokens.length !== 1) {
        throw new EngineFailure(
          "bad_request",
          `The special token "${segment.text}" is not in the vocabulary of ${this.loaded?.path ?? "the model"}, so the prompt format ` +
            "does not match this model. Rebuild the prompt with the format chosen for this model.",
        );
      }
      for (const t of tokens) out.push(t);
    }
    return out;
  }

  // A stop string that is exactly one special token is matched by token: generated special tokens have no text.
  private stopTriggers(model: LlamaModel, stop: string[]): (string | Token)[][] {
    return stop
      .filter((s) => s !== "")
      .map((s) => {
        const tokens = model.tokenize(s, true);
        return tokens.length === 1 && model.isSpecialToken(tokens[0]) ? [tokens[0]] : [s];
      });
  }

  private checkTokenIds(tokens: number[]): void {
    const vocabSize = this.loaded?.info.vocabSize ?? 0;
    const bad = tokens.find((t) => t < 0 || t >= vocabSize);
    if (bad !== undefined) {
      throw new EngineFailure("bad_request", `Token id ${bad} is outside the model's vocabulary (0 to ${vocabSize - 1}); send token ids produced by this model's tokenizer.`);
    }
  }

  private async model(): Promise<LlamaModel> {
    if (this.loading !== null) await this.loading;
    if (this.loaded === null) throw notLoaded();
    return this.loaded.model;
  }

  private async unloadModel(): Promise<void> {
    await this.disposeContext();
    const loaded = this.loaded;
    this.loaded = null;
    this.adaptersApplied.clear();
    await loaded?.model.dispose();
  }

  private async disposeContext(): Promise<void> {
    const active = this.active;
    this.active = null;
    if (active === null) return;
    active.completion.dispose();
    await active.context.dispose();
  }

  private exclusive<T>(task: () => Promise<T>): Promise<T> {
    const run = this.queue.then(task, task);
    this.queue = run.catch(() => undefined);
    return run;
  }
}

function modelInfo(model: LlamaModel, path: string, llama: Llama): ModelInfo {
  const metadata = model.fileInfo.metadata;
  const tokens = model.tokens;
  const vocabSize = metadata.tokenizer?.ggml?.tokens?.length;
  if (typeof vocabSize !== "number") {
    throw new EngineFailure("bad_model", `The model ${path} has no tokenizer vocabulary in its GGUF metadata. Choose a complete model file.`);
  }
  return {
    path,
    arch: String(metadata.general.architecture),
    name: metadata.general.name ?? null,
    vocabSize,
    trainContextSize: model.trainContextSize,
    bos: tokens.bos,
    eos: tokens.eos,
    addBos: beginningTokens(model).length > 0,
    // Raw vocabulary texts, as special segments must spell them for the tokenizer to parse them back.
    special: {
      fimPrefix: tokens.infill.prefixString,
      fimSuffix: tokens.infill.suffixString,
      fimMiddle: tokens.infill.middleString,
      eot: tokens.eotString ?? tokens.eosString,
    },
    infillSupported: tokens.infill.prefix !== null && tokens.infill.suffix !== null,
    gpu: llama.gpu === false ? null : llama.gpu,
    gpuLayers: model.gpuLayers,
    totalLayers: model.fileInsights.totalLayers,
  };
}

// The tokens LlamaCompletion puts before the prompt (node-llama-cpp's resolveBeginningTokenToPrepend, not exported).
function beginningTokens(model: LlamaModel): Token[] {
  const type = model.vocabularyType;
  if (type === LlamaVocabularyType.rwkv || type === LlamaVocabularyType.ugm) return [];
  const bos = model.tokens.bos;
  if (bos === null) return [];
  return type === LlamaVocabularyType.wpm || model.tokens.shouldPrependBosToken ? [bos] : [];
}

/**
 * Brings the sequence's state towards `prompt`: keeps the evaluated tokens it starts with, erases the rest, and
 * evaluates what is missing in chunks, checking the cancellation between them. The last chunk (the prompt's last
 * token with up to PROMPT_CHUNK - 1 before it) is left to LlamaCompletion, which evaluates it in one batch as it
 * does without this step, so short increments are computed exactly as node-llama-cpp alone computes them.
 */
async function evaluatePrompt(sequence: LlamaContextSequence, prompt: Token[], signal: AbortSignal): Promise<void> {
  // Without its last token, as LlamaCompletion compares it. allowShift false: keep the common prefix only. Shifting
  // cells to reuse later matches would give tokens after an edit a KV state computed without it, and a completion
  // that differs from the same request made cold.
  const head = prompt.slice(0, -1);
  await sequence.adaptStateToTokens(head, false);
  for (let at = sequence.nextTokenIndex; prompt.length - at > PROMPT_CHUNK; at += PROMPT_CHUNK) {
    throwIfCancelled(signal);
    await sequence.evaluateWithoutGeneratingNewTokens(head.slice(at, at + PROMPT_CHUNK));
  }
  throwIfCancelled(signal);
}

async function readGguf(path: string, what: "model" | "adapter"): Promise<GgufFileInfo> {
  const code = what === "model" ? "bad_model" : "bad_adapter";
  const choose = what === "model" ? "choose a .gguf model file" : "choose a LoRA adapter .gguf file trained by RepoTune";
  const isFile = await stat(path).then((s) => s.isFile(), () => false);
  if (!isFile) {
    throw new EngineFailure(code, `The ${what === "model" ? "model" : "LoRA adapter"} file ${path} does not exist or is not a file: ${choose}.`);
  }
  const magic = Buffer.alloc(4);
  const handle = await open(path, "r");
  try {
    await handle.read(magic, 0, 4, 0);
  } finally {
    await handle.close();
  }
  if (magic.toString("latin1") !== "GGUF") {
    throw new EngineFailure(code, `${path} is not a GGUF ${what} file (it does not start with "GGUF"): ${choose}.`);
  }
  try {
    return await readGgufFileInfo(path, { readTensorInfo: false, logWarnings: false, sourceType: "filesystem" });
  } catch (err) {
    throw new EngineFailure(code, `The GGUF file ${path} could not be read: ${messageOf(err)}. It may be truncated or damaged: ${choose}.`);
  }
}

function generalField(info: GgufFileInfo, key: string): string | undefined {
  const value = (info.metadata.general as Record<string, unknown> | undefined)?.[key];
  return typeof value === "string" ? value : undefined;
}

function throwIfCancelled(signal: AbortSignal): void {
  if (!signal.aborted) return;
  const reason: unknown = signal.reason;
  throw reason instanceof EngineFailure ? reason : new EngineFailure("cancelled", "The completion was cancelled.");
}

function notLoaded(): EngineFailure {
  return new EngineFailure("not_loaded", "No model is loaded in the engine: send a load request with a .gguf model first.");
}

function messageOf(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).replace(/\.$/, "");
}
