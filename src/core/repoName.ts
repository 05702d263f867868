import { promises as fs } from "node:fs";
import * as path from "node:path";

/**
 * The repository name in prompt headers (e.g. Qwen2.5-Coder's `<|repo_name|>`): the folder's real name. Training
 * examples and completion prompts both take it from here, so the header an adapter learned is the one it is shown.
 */
export async function repoName(folder: string): Promise<string> {
  return path.basename(await fs.realpath(folder).catch(() => path.resolve(folder)));
}
