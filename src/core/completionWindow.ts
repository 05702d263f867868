// The code around a cursor that a completion prompt carries, sized and cut as training examples are
// (dataset/fim.ts), so that the adapter is asked in the shape it learned.
import type { Segment } from "../protocol/engine";
import { cursorWindow, windowCharsFor } from "./dataset/fim";

interface Tokenizer {
  tokenize(items: Segment[][]): Promise<number[][]>;
}

const SAMPLE_CHARS = 8192;

export async function completionWindow(
  tokenizer: Tokenizer, text: string, offset: number, seqLen: number, filePath: string, repoName: string,
  density?: DensityCache | number,
): Promise<{ prefix: string; suffix: string }> {
  // A number is the density an adapter's dataset measured over its whole repository (summary.charsPerToken): with
  // it, the prompt is cut exactly as that adapter's training examples were.
  const charsPerToken = typeof density === "number" ? density
    : density ? await density.get(filePath, text, offset, tokenizer) : await measure(tokenizer, text, offset);
  return cursorWindow(text, offset, windowCharsFor(seqLen, charsPerToken, filePath, repoName));
}

/** Characters per token of this code for this model, measured on the text around the cursor. */
async function measure(tokenizer: Tokenizer, text: string, offset: number): Promise<number> {
  const sample = text.slice(Math.max(0, offset - SAMPLE_CHARS), offset + SAMPLE_CHARS);
  const [tokens] = await tokenizer.tokenize([[{ text: sample, special: false }]]);
  return tokens.length > 0 ? sample.length / tokens.length : 1;
}

/**
 * Characters per token per file, measured once and again only when the file has grown or shrunk by a tenth: a
 * keystroke must not cost a 16 KB tokenization. Cleared when the model (the tokenizer) changes.
 */
export class DensityCache {
  private readonly byFile = new Map<string, { length: number; value: number }>();

  constructor(private readonly capacity = 256) {}

  async get(filePath: string, text: string, offset: number, tokenizer: Tokenizer): Promise<number> {
    const hit = this.byFile.get(filePath);
    if (hit && Math.abs(text.length - hit.length) <= hit.length / 10) return hit.value;
    const value = await measure(tokenizer, text, offset);
    this.byFile.delete(filePath);
    this.byFile.set(filePath, { length: text.length, value });
    while (this.byFile.size > this.capacity) this.byFile.delete(this.byFile.keys().next().value as string);
    return value;
  }

  clear(): void {
    this.byFile.clear();
  }
}
