// One completion at a cursor, exactly as the inline completion provider makes it (src/completion/provider.ts): the
// window of code around the cursor, the prompt format's FIM prompt, the engine's greedy completion, and the same
// post-processing. Evaluation and `repotune complete` go through here, so what is measured is what is served.
import type { CompleteResult, Segment } from "../../protocol/engine";
import type { ContextFile, PromptFormat } from "../promptFormat";
import { cleanCompletion, completionMode, type CompletionMode } from "../completionText";
import { completionWindow, type DensityCache } from "../completionWindow";

/** What of the engine a completion needs (EngineClient's public methods). */
export interface CompletionEngine {
  tokenize(items: Segment[][]): Promise<number[][]>;
  complete(p: { prompt: Segment[]; adapterPath: string | null; maxTokens: number; stop?: string[]; supersede?: boolean }, signal?: AbortSignal): Promise<CompleteResult>;
}

export interface CursorRequest {
  /** The document's whole text and the cursor's offset in it. */
  text: string;
  offset: number;
  /** Path relative to the repository root, and the repository's name (undefined outside a workspace folder). */
  filePath: string;
  repoName: string | undefined;
  /** Tokens of code around the cursor the prompt carries (the adapter's training sequence length). */
  windowTokens: number;
  /**
   * Characters per token the adapter's dataset measured (its summary.charsPerToken): the window is then cut exactly
   * as its training examples were. Absent: measured around the cursor (or taken from `density`).
   */
  charsPerToken?: number | null;
  maxTokens: number;
  adapterPath: string | null;
  /** Snippets of other files, before this one (formats with repository-level prompts only; see promptFormat.ts). */
  context?: readonly ContextFile[];
}

export interface CursorCompletion {
  /** What an inline completion shows ("" when nothing is worth showing). */
  text: string;
  mode: CompletionMode;
  /** The model's output before post-processing. */
  raw: string;
  tokens: number;
  /** The prompt the engine was given. */
  prompt: Segment[];
}

export async function completeAtCursor(
  engine: CompletionEngine, format: PromptFormat, req: CursorRequest,
  opts: { signal?: AbortSignal; density?: DensityCache; supersede?: boolean } = {},
): Promise<CursorCompletion> {
  const density = req.charsPerToken ?? opts.density;
  const { prefix, suffix } = await completionWindow(engine, req.text, req.offset, req.windowTokens, req.filePath, req.repoName ?? "", density);
  const mode = completionMode(prefix, suffix);
  const prompt = format.fim({ prefix, suffix, filePath: req.filePath, repoName: req.repoName, context: req.context });
  // A single-line completion ends at its first line end (cleanCompletion cuts it there): generating past it only costs time.
  const stop = mode === "line" ? [...format.stopStrings, "\n"] : format.stopStrings;
  const result = await engine.complete(
    { prompt, adapterPath: req.adapterPath, maxTokens: req.maxTokens, stop, ...(opts.supersede ? { supersede: true } : {}) },
    opts.signal,
  );
  return { text: cleanCompletion(result.text, { prefix, suffix, singleLine: mode === "line" }), mode, raw: result.text, tokens: result.tokens, prompt };
}
