// A real GGUF model generated at test time by the trainer package (nothing can be downloaded here).
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { python, repoRoot } from "./tools.mjs";

/** @param {string} outPath @returns {string} the model's path */
export function makeTinyModel(outPath) {
  let stdout;
  try {
    stdout = execFileSync(
      python,
      ["-m", "repotune_trainer", "tiny-model", "--arch", "llama", "--out", outPath, "--seed", "0"],
      { env: { ...process.env, PYTHONPATH: join(repoRoot, "trainer") }, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] },
    );
  } catch (err) {
    throw new Error(`Generating the tiny test model failed (${python} -m repotune_trainer tiny-model): ${err.stderr || err.message}`);
  }
  const line = stdout.trim().split("\n").at(-1) ?? "";
  const printed = JSON.parse(line).path;
  if (printed !== outPath) throw new Error(`tiny-model wrote ${printed}, expected ${outPath}: ${line}`);
  return outPath;
}
