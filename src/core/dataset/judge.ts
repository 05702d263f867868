// One file's fate: usable (with its language), or left out with a reason. Decided by the cheapest check that
// settles it: the name, then the read, then the text, and the secret scan last. Runs in the selecting thread or in a
// worker (selectWorker.ts), so everything it needs travels as plain data (JudgeRules).
import * as path from "node:path";
import ignore, { type Ignore } from "ignore";
import { readSourceFile } from "./sourceFile";
import { contentReason, languageOf, pathReason } from "./classify";
import { DOTENV_RULE, findSecrets, isDotenvFile } from "./secrets";

export interface JudgeRules {
  maxFileBytes: number;
  /** gitignore-syntax patterns (settings, then .repotuneignore) of files never to learn from. */
  exclude: string[];
  /** gitignore-syntax patterns of files to learn from even though a rule would leave them out (never secrets). */
  include: string[];
}

export type Verdict =
  | { reason: string; secretRules?: string[] }
  | { path: string; text: string; language: string | null; bytes: number };

export class Judge {
  private readonly excluded: Ignore;
  private readonly included: Ignore;

  constructor(
    private readonly folder: string,
    private readonly rules: JudgeRules,
  ) {
    this.excluded = ignore().add(rules.exclude);
    this.included = ignore().add(rules.include);
  }

  async judge(rel: string): Promise<Verdict> {
    // Secrets by name come first: a dotenv file is reported as a secret even when an exclude also covers it.
    if (isDotenvFile(rel)) return { reason: "secret", secretRules: [DOTENV_RULE] };
    const readmitted = this.included.ignores(rel);
    const byPath = readmitted ? null : this.excluded.ignores(rel) ? "user_excluded" : pathReason(rel);
    if (byPath) return { reason: byPath };
    const read = await readSourceFile(path.join(this.folder, rel), this.rules.maxFileBytes);
    if (!read.ok) return { reason: read.reason };
    const language = languageOf(rel, read.text);
    const byContent = readmitted ? null : contentReason(rel, read.text, language);
    if (byContent) return { reason: byContent };
    const secretRules = await findSecretsSafely(rel, read.text);
    if (secretRules === null) return { reason: "scan_failed" };
    if (secretRules.length > 0) return { reason: "secret", secretRules };
    return { path: rel, text: read.text, language, bytes: read.bytes };
  }
}

/**
 * A scan that fails (a rule throwing on odd input) leaves the file out rather than letting it through unscanned.
 * The error is dropped: its message may quote the text.
 */
async function findSecretsSafely(rel: string, text: string): Promise<string[] | null> {
  try {
    return await findSecrets(rel, text);
  } catch {
    return null;
  }
}
