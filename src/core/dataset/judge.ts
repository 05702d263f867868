// One file's fate: usable (with its language), or left out with a reason. Decided by the cheapest check that
// settles it: the name, then the read, then the text, and the secret scan last. Runs in the selecting thread or in a
// worker (selectWorker.ts), so everything it needs travels as plain data (JudgeRules).
import * as path from "node:path";
import ignore, { type Ignore } from "ignore";
import { readSourceFile, readSourceFileSync } from "./sourceFile";
import { fingerprint, type Fingerprint } from "./dedupe";
import { contentReason, languageOf, pathReason } from "./classify";
import { DOTENV_RULE, findSecrets, isDotenvFile } from "./secrets";

export interface JudgeRules {
  maxFileBytes: number;
  /** gitignore-syntax patterns (settings, then .repotuneignore) of files never to learn from. */
  exclude: string[];
  /** gitignore-syntax patterns of files to learn from even though a rule would leave them out (never secrets). */
  include: string[];
}

/**
 * What a usable file's verdict carries: its text ("text"), or only what the dataset step needs to dedupe it and
 * size its examples ("record": characters and fingerprint), so that a large folder's text is never all held at once
 * nor sent from thread to thread; the dataset step reads each file again when it makes its examples.
 */
export type Keep = "text" | "record";

export type Verdict =
  | { reason: string; secretRules?: string[] }
  | { path: string; text?: string; chars: number; fingerprint?: Fingerprint; language: string | null; bytes: number };

export class Judge {
  private readonly excluded: Ignore;
  private readonly included: Ignore;

  constructor(
    private readonly folder: string,
    private readonly rules: JudgeRules,
    private readonly keep: Keep = "text",
    /** Synchronous reads: for worker threads, which have nothing else to do while a read waits. */
    private readonly syncReads = false,
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
    const abs = path.join(this.folder, rel);
    const read = this.syncReads ? readSourceFileSync(abs, this.rules.maxFileBytes) : await readSourceFile(abs, this.rules.maxFileBytes);
    if (!read.ok) return { reason: read.reason };
    const language = languageOf(rel, read.text);
    const byContent = readmitted ? null : contentReason(rel, read.text, language);
    if (byContent) return { reason: byContent };
    const secretRules = await findSecretsSafely(rel, read.text);
    if (secretRules === null) return { reason: "scan_failed" };
    if (secretRules.length > 0) return { reason: "secret", secretRules };
    if (this.keep === "record") return { path: rel, chars: read.text.length, fingerprint: fingerprint(read.text), language, bytes: read.bytes };
    return { path: rel, text: read.text, chars: read.text.length, language, bytes: read.bytes };
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
