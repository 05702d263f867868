// The one module that turns code into fill-in-the-middle prompts. Training examples and completion prompts are both
// built here, so what the adapter learns and what it is asked at serving time cannot drift apart.
//
// Prompts are Segment lists, never strings: a special token is a segment of its own ({special: true}) and all code is
// plain text ({special: false}). The engine parses special tokens only in special segments, so code that happens to
// contain "<|fim_prefix|>" stays plain text and cannot inject control tokens.
import type { ModelInfo, Segment } from "../protocol/engine";

export interface FimInput {
  prefix: string;
  suffix: string;
  /** Path of the file relative to the repository root, for families that condition on it. */
  filePath?: string;
  repoName?: string;
  /**
   * Other files' code to show before this file (snippets of recently edited files), each as a file of the
   * repository: only families pre-trained on repository-level prompts take them; others leave them out.
   */
  context?: readonly ContextFile[];
}

export interface ContextFile {
  /** Path relative to the repository root, as the dataset writes paths. */
  path: string;
  text: string;
}

export interface PromptFormat {
  readonly family: string;
  /** Prefix-suffix-middle prompt: the model continues with the middle. */
  fim(input: FimInput): Segment[];
  /** The token a middle ends with: appended to training examples, and where a completion stops. */
  readonly endOfMiddle: Segment;
  /** Texts of tokens that end a completion (the engine matches special tokens among them by token, not by text). */
  readonly stopStrings: string[];
}

interface FimTokens {
  prefix: string;
  suffix: string;
  middle: string;
}

interface Family {
  name: string;
  /** FIM prefix token texts that identify the family (the texts llama.cpp itself recognises). */
  prefixTexts: string[];
  end(tokens: FimTokens, info: ModelInfo): string;
  /** Repository and file headers before the FIM part, for families pre-trained with them. */
  headers?: (input: FimInput) => Segment[];
  stops(tokens: FimTokens, end: string): string[];
}

const special = (text: string): Segment => ({ text, special: true });
const plain = (text: string): Segment => ({ text, special: false });

// Repo-level format of the Qwen2.5-Coder report (arXiv 2409.12186), also what llama.cpp's server sends (other files'
// chunks included, each ending with a newline): <|repo_name|>name\n<|file_sep|>other\ncode\n<|file_sep|>path\n<|fim_prefix|>...
function qwenHeaders(input: FimInput): Segment[] {
  const out: Segment[] = [];
  if (input.repoName !== undefined) out.push(special("<|repo_name|>"), plain(`${input.repoName}\n`));
  for (const c of input.context ?? []) out.push(special("<|file_sep|>"), plain(`${c.path}\n${endWithNewline(c.text)}`));
  if (input.filePath !== undefined) out.push(special("<|file_sep|>"), plain(`${input.filePath}\n`));
  return out;
}

// StarCoder2 was trained on "<repo_name>name<file_sep>path\ncode<file_sep>path\ncode": no newline after the
// repository name.
function starcoderHeaders(input: FimInput): Segment[] {
  const out: Segment[] = [];
  if (input.repoName !== undefined) out.push(special("<repo_name>"), plain(input.repoName));
  for (const c of input.context ?? []) out.push(special("<file_sep>"), plain(`${c.path}\n${endWithNewline(c.text)}`));
  if (input.filePath !== undefined) out.push(special("<file_sep>"), plain(`${input.filePath}\n`));
  return out;
}

const endWithNewline = (text: string): string => (text.endsWith("\n") ? text : `${text}\n`);

const FAMILIES: Family[] = [
  {
    name: "qwen2.5-coder",
    prefixTexts: ["<|fim_prefix|>"],
    end: () => "<|endoftext|>",
    headers: qwenHeaders,
    // A model that starts another file or repository has finished the middle.
    stops: (t, end) => [end, "<|file_sep|>", "<|repo_name|>", "<|fim_pad|>", t.prefix, t.suffix, t.middle],
  },
  {
    name: "starcoder2",
    prefixTexts: ["<fim_prefix>"],
    end: () => "<|endoftext|>",
    headers: starcoderHeaders,
    stops: (t, end) => [end, "<file_sep>", "<fim_pad>", t.prefix, t.suffix, t.middle],
  },
  {
    // DeepSeek-Coder's base models end a middle with their EOS; "<|EOT|>" is the instruct models' end of turn.
    name: "deepseek-coder",
    prefixTexts: ["<｜fim▁begin｜>"],
    end: () => "<｜end▁of▁sentence｜>",
    stops: (t, end) => [end, "<|EOT|>", t.prefix, t.suffix, t.middle],
  },
  {
    // Code Llama's SentencePiece vocabulary spells these tokens with a leading "▁" ("▁<PRE>"); some conversions
    // drop it. The end token follows the same spelling as the prefix token.
    name: "codellama",
    prefixTexts: ["▁<PRE>", "<PRE>"],
    end: (t, info) => info.special.eot?.endsWith("<EOT>") ? info.special.eot : t.prefix.startsWith("▁") ? "▁<EOT>" : "<EOT>",
    stops: (t, end) => [end, t.prefix, t.suffix, t.middle],
  },
];

export const SUPPORTED_FAMILIES: readonly string[] = FAMILIES.map((f) => f.name);

/** The prompt format of a loaded model, chosen from the special tokens the model really has. */
export function promptFormatFor(info: ModelInfo): PromptFormat {
  const { fimPrefix, fimSuffix, fimMiddle } = info.special;
  if (fimPrefix === null || fimSuffix === null || fimMiddle === null) {
    const missing = [fimPrefix === null && "prefix", fimSuffix === null && "suffix", fimMiddle === null && "middle"].filter(Boolean).join(", ");
    throw new Error(
      `The model ${describe(info)} has no fill-in-the-middle tokens (missing: ${missing}), so this model cannot fill in the middle; ` +
        "choose a base code model with FIM support such as Qwen2.5-Coder.",
    );
  }
  const family = FAMILIES.find((f) => f.prefixTexts.includes(fimPrefix));
  if (family === undefined) {
    throw new Error(
      `The model ${describe(info)} uses the FIM prefix token "${fimPrefix}", which RepoTune does not know how to prompt. ` +
        `Choose a model of a supported family (${SUPPORTED_FAMILIES.join(", ")}), such as Qwen2.5-Coder.`,
    );
  }
  const tokens: FimTokens = { prefix: fimPrefix, suffix: fimSuffix, middle: fimMiddle };
  const end = family.end(tokens, info);
  const stopStrings = [...new Set(family.stops(tokens, end))];
  return {
    family: family.name,
    endOfMiddle: special(end),
    stopStrings,
    fim(input: FimInput): Segment[] {
      const segments = [
        ...(family.headers?.(input) ?? []),
        special(tokens.prefix),
        plain(input.prefix),
        special(tokens.suffix),
        plain(input.suffix),
        special(tokens.middle),
      ];
      // Empty code adds no tokens; dropping it keeps prompts free of no-op segments.
      return segments.filter((s) => s.special || s.text !== "");
    },
  };
}

/** A training example: the prompt the model will later be asked, then the true middle, then the end token. */
export function trainingExample(format: PromptFormat, input: FimInput & { middle: string }): Segment[] {
  const out = format.fim(input);
  if (input.middle !== "") out.push(plain(input.middle));
  out.push(format.endOfMiddle);
  return out;
}

function describe(info: ModelInfo): string {
  return info.name !== null ? `"${info.name}" (${info.path})` : info.path;
}
