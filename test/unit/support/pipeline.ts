// Shared by the pipeline tests: paths of the real engine bundle and trainer, the tiny model (generated once per
// test file by the trainer package, through ensureTinyModel), and small repositories written on the fly.
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { ensureTinyModel } from "../../../src/core/tinyModel";

export const repoRoot = process.cwd();
export const enginePath = path.join(repoRoot, "dist", "engine.mjs");
export const cliPath = path.join(repoRoot, "dist", "cli.js");
export const trainerRoot = path.join(repoRoot, "trainer");
/** The Python with torch; tests never fall back to whatever `python3` is first on PATH. */
export const python = process.env.REPOTUNE_PYTHON || "/usr/bin/python3";

export function tempDir(prefix: string): string {
  return mkdtempSync(path.join(tmpdir(), `repotune-${prefix}-`));
}

export function removeDir(dir: string | undefined): void {
  if (dir) rmSync(dir, { recursive: true, force: true });
}

export function tinyModel(cacheDir: string): Promise<string> {
  return ensureTinyModel(python, trainerRoot, cacheDir);
}

export function writeFiles(root: string, files: Record<string, string | Buffer>): void {
  for (const [rel, content] of Object.entries(files)) {
    const abs = path.join(root, rel);
    mkdirSync(path.dirname(abs), { recursive: true });
    writeFileSync(abs, content);
  }
}

export function git(cwd: string, ...args: string[]): string {
  return execFileSync("git", ["-c", "user.name=RepoTune Test", "-c", "user.email=test@repotune.invalid", ...args], {
    cwd,
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
  });
}

/**
 * A small, regular code base (an inventory module in a few files), so that a few training steps visibly lower the
 * loss. Deterministic: the same content every run.
 */
export function sampleSources(files = 6): Record<string, string> {
  const out: Record<string, string> = {};
  const kinds = ["Widget", "Gadget", "Sprocket", "Bracket", "Fastener", "Hinge", "Spring", "Valve"];
  for (let f = 0; f < files; f++) {
    const kind = kinds[f % kinds.length];
    const lines = [`// Inventory of ${kind.toLowerCase()}s.`, `import { Store } from "./store";`, ""];
    lines.push(`export interface ${kind} {`, "  id: number;", "  name: string;", "  price: number;", "}", "");
    for (let i = 0; i < 8; i++) {
      lines.push(
        `export function ${kind.toLowerCase()}Total${i}(items: ${kind}[]): number {`,
        `  let total = 0;`,
        `  for (const item of items) total += item.price * ${i + 1};`,
        `  return total;`,
        `}`,
        "",
        `export function find${kind}${i}(store: Store<${kind}>, id: number): ${kind} | undefined {`,
        `  return store.all().find((item) => item.id === id + ${i});`,
        `}`,
        "",
      );
    }
    out[`src/${kind.toLowerCase()}.ts`] = lines.join("\n");
  }
  out["src/store.ts"] = [
    "export class Store<T> {",
    "  private items: T[] = [];",
    "  add(item: T): void {",
    "    this.items.push(item);",
    "  }",
    "  all(): T[] {",
    "    return [...this.items];",
    "  }",
    "}",
    "",
  ].join("\n");
  return out;
}

/** A git repository holding `files`, committed. */
export function makeGitRepo(root: string, files: Record<string, string | Buffer>): string {
  mkdirSync(root, { recursive: true });
  writeFiles(root, files);
  git(root, "init", "-q", "-b", "main");
  git(root, "add", "-A");
  git(root, "commit", "-q", "-m", "sample");
  return root;
}

/**
 * Request handlers that all follow one house convention (parse, audit, reply), one resource per file: what a
 * repository's own code looks like to a model that has never seen it.
 */
export function handlerSources(nouns: readonly string[], verbs: readonly string[]): Record<string, string> {
  const files: Record<string, string> = {};
  for (const noun of nouns) {
    const Noun = noun[0].toUpperCase() + noun.slice(1);
    const lines = [`// Handlers for ${noun} requests.`, `import { audit, parseBody } from "../lib";`, ""];
    for (const verb of verbs) {
      lines.push(
        `export function ${verb}${Noun}(req, res) {`,
        `  const body = parseBody(req, "${noun}.${verb}");`,
        `  audit.record("${noun}.${verb}", body.id);`,
        `  return res.send({ ok: true, id: body.id });`,
        "}",
        "",
      );
    }
    files[`src/handlers/${noun}.js`] = lines.join("\n");
  }
  return files;
}
