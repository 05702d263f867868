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
): Promise<{ prefix: string; suffix: string }> {
  // Characters per token of this code for this model, measured on the text around the cursor.
  const sample = text.slice(Math.max(0, offset - SAMPLE_CHARS), offset + SAMPLE_CHARS);
  const [tokens] = await tokenizer.tokenize([[{ text: sample, special: false }]]);
  const charsPerToken = tokens.length > 0 ? sample.length / tokens.length : 1;
  return cursorWindow(text, offset, windowCharsFor(seqLen, charsPerToken, filePath, repoName));
}
