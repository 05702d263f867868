// Where test/setup.sh put the tools that do not live in the repo (Node 24, code-server, chromium).
// setup.sh owns the layout and records it in tools.json, so nothing here guesses paths.
import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const toolsDir = process.env.REPOTUNE_TOOLS || join(homedir(), ".cache", "repotune-tools");
/** The Python that has torch; tests never fall back to whatever `python3` is first on PATH. */
export const python = process.env.REPOTUNE_PYTHON || "/usr/bin/python3";

/** @returns {{ nodeBin: string, nodeVersion: string, codeServer: string, codeServerVersion: string, chromium: string }} */
export function readTools() {
  const file = join(toolsDir, "tools.json");
  try {
    return JSON.parse(readFileSync(file, "utf8"));
  } catch (err) {
    throw new Error(`The test tools are not installed (${file}: ${err.message}). Run test/setup.sh first.`);
  }
}
