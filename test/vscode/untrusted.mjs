// What both launchers (run.mjs, run-electron.mjs) need for the window of test/vscode/suite/untrusted: settings that
// open the folder in Restricted Mode, and an adapter trained beforehand by the CLI, since RepoTune may not train there.
import { execFileSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { testUserSettings } from "../lib/settings.mjs";
import { python, repoRoot } from "../lib/tools.mjs";

/** Workspace trust on, without the startup dialog: the folder opens untrusted, as after answering "No". */
export const untrustedSettings = {
  "security.workspace.trust.enabled": true,
  "security.workspace.trust.startupPrompt": "never",
};

/**
 * Trains an adapter on `workspace` with the CLI and the training settings the other windows use, so that it
 * completes the fixture's marker. Call before the hostile settings are written. Returns the adapter's path.
 * @param {string} workspace @param {string} modelPath @param {string} runs a folder for the CLI's runs
 */
export function trainAdapter(workspace, modelPath, runs) {
  const settings = testUserSettings(modelPath);
  try {
    execFileSync(process.execPath, [
      join(repoRoot, "dist", "cli.js"), "tune", workspace, "--model", modelPath, "--python", python, "--runs", runs,
      "--steps", String(settings["repotune.training.steps"]), "--seq-len", String(settings["repotune.training.seqLen"]),
      "--rank", String(settings["repotune.training.rank"]), "--lr", String(settings["repotune.training.learningRate"]),
      "--max-tasks", "4",
    ], { stdio: ["ignore", "pipe", "pipe"], encoding: "utf8" });
  } catch (err) {
    throw new Error(`Training the untrusted window's adapter with the CLI failed: ${err.stderr || err.message}`);
  }
  const adapters = readdirSync(runs, { recursive: true }).map(String).filter((f) => /adapter-[^/]*\.gguf$/.test(f));
  if (adapters.length !== 1) throw new Error(`Expected one adapter under ${runs}, found ${adapters.length}.`);
  return join(runs, adapters[0]);
}
