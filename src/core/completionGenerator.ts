// One inline completion from a ready engine: the prompt cut as the adapter's training examples were, the serving path
// (completeAtCursor) and the caches that keep a keystroke cheap. Free of VS Code, so that the provider
// (src/completion/provider.ts) and the soak benchmark (bench/soak.mjs) run the same code.
import { promptFormatFor, type ContextFile } from "./promptFormat";
import type { Segment } from "../protocol/engine";
import { DensityCache } from "./completionWindow";
import { completeAtCursor } from "./eval/serving";
import { adapterInfo } from "./runStore";
import type { ReadyEngine } from "./engineHost";

/** Context a completion prompt carries when the adapter's own training length is unknown (the base model alone). */
const DEFAULT_WINDOW_TOKENS = 1024;

export interface GenerateRequest {
  /** The document's whole text and the cursor's offset in it. */
  text: string;
  offset: number;
  /** Path as the dataset wrote it, and the repository's name (undefined outside a workspace folder). */
  filePath: string;
  repoName: string | undefined;
  adapterPath: string | null;
  maxTokens: number;
  /** Snippets of recently edited files to show before this one (src/core/recentEdits.ts). */
  context?: readonly ContextFile[];
}

interface PromptShape {
  windowTokens: number;
  charsPerToken: number | null;
}

export class CompletionGenerator {
  private readonly density = new DensityCache();
  private readonly shapes = new Map<string, Promise<PromptShape>>();
  private densityModel = "";
  /** The last prompt given to the engine (for the extension-host tests and the debug log). */
  lastPrompt: Segment[] | null = null;

  /** The text to show ("" when nothing is worth showing). Throws the engine's errors (cancelled, unavailable...). */
  async generate(engine: ReadyEngine, req: GenerateRequest, signal: AbortSignal): Promise<string> {
    const { client, info } = engine;
    // Characters per token belong to a tokenizer: another model measures again.
    if (this.densityModel !== info.path) {
      this.density.clear();
      this.densityModel = info.path;
    }
    const shape = await this.promptShapeFor(req.adapterPath);
    // supersede: whatever else this window still generates is for text the user has typed past.
    const result = await completeAtCursor(client, promptFormatFor(info), {
      text: req.text, offset: req.offset, filePath: req.filePath, repoName: req.repoName,
      windowTokens: shape.windowTokens, charsPerToken: shape.charsPerToken, maxTokens: req.maxTokens, adapterPath: req.adapterPath,
      context: req.context,
    }, { signal, density: this.density, supersede: true });
    this.lastPrompt = result.prompt;
    return result.text;
  }

  /**
   * Prompts cut as the adapter's training examples were: its sequence length and its dataset's characters per token.
   * For the base model alone (or an adapter without a RepoTune manifest), a default length and a measured density.
   */
  private promptShapeFor(adapterPath: string | null): Promise<PromptShape> {
    const key = adapterPath ?? "";
    let hit = this.shapes.get(key);
    if (!hit) {
      hit = adapterPath === null
        ? Promise.resolve({ windowTokens: DEFAULT_WINDOW_TOKENS, charsPerToken: null })
        : adapterInfo(adapterPath).then((a) => ({ windowTokens: a?.seqLen ?? DEFAULT_WINDOW_TOKENS, charsPerToken: a?.charsPerToken ?? null }));
      this.shapes.set(key, hit);
    }
    return hit;
  }
}
