// Post-processing of raw model output into the text an inline completion shows.

export interface CleanOptions {
  /** Text after the cursor; a completion stops where it starts repeating it. */
  suffix: string;
  /** Mid-line completions end at the line end; on an empty line a block may follow. */
  singleLine: boolean;
}

/** A cursor on a line that has code on it gets a single-line completion; on an empty line a block may follow. */
export function isMidLine(prefix: string, suffix: string): boolean {
  const lineBefore = prefix.slice(prefix.lastIndexOf("\n") + 1);
  const lineAfter = suffix.split("\n", 1)[0];
  return (lineBefore + lineAfter).trim().length > 0;
}

export function cleanCompletion(raw: string, opts: CleanOptions): string {
  let text = raw;
  if (opts.singleLine) {
    const nl = text.indexOf("\n");
    if (nl >= 0) text = text.slice(0, nl);
  } else {
    const blank = text.indexOf("\n\n");
    if (blank >= 0) text = text.slice(0, blank);
  }
  const restOfLine = opts.suffix.split("\n", 1)[0].trim();
  if (restOfLine.length > 0) {
    const at = text.indexOf(restOfLine);
    if (at >= 0) text = text.slice(0, at);
  }
  return text.trimEnd().length === 0 ? "" : text.replace(/\s+$/, "");
}
