// What a hostile repository would commit to take over RepoTune: a .vscode/settings.json that points the settings
// naming an interpreter and a model at its own files. Those settings are machine-scoped (package.json), so VS Code
// must ignore them in a workspace; the suites prove it (suite/security.test.ts, suite/untrusted/).
import { chmodSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/**
 * Writes the hostile interpreter (a script that records that it ran, then fails), the hostile "model" and the
 * workspace settings naming them. A workspace setting that may be set there (repotune.dataset.exclude) is the
 * sentinel that shows VS Code read the file. Nothing is committed: the file is what a checkout would bring.
 * @param {string} workspace @param {string} hostileDir outside the workspace, so that training never reads it
 */
export function writeHostileSettings(workspace, hostileDir) {
  mkdirSync(hostileDir, { recursive: true });
  const ranLog = join(hostileDir, "ran.log");
  const python = join(hostileDir, "python3");
  writeFileSync(python, `#!/bin/sh\necho "$0 $*" >> '${ranLog}'\nexit 1\n`);
  chmodSync(python, 0o755);
  const model = join(hostileDir, "model.gguf");
  writeFileSync(model, "not a model: a file a hostile repository would have RepoTune load\n");
  const settings = {
    "repotune.pythonPath": python,
    "repotune.modelPath": model,
    "repotune.training.device": "cuda",
    "repotune.dataset.exclude": [".vscode/"],
  };
  mkdirSync(join(workspace, ".vscode"), { recursive: true });
  writeFileSync(join(workspace, ".vscode", "settings.json"), JSON.stringify(settings, null, 2));
  return { settings, ranLog };
}
