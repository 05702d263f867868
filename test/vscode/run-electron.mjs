// The same extension-host suites in desktop VS Code, through @vscode/test-electron, where VS Code can be
// downloaded (a developer machine with a network): `REPOTUNE_VSCODE_RUNNER=electron npm test`. Offline, as here and
// in CI, the download fails (shared/notes/offline-vscode-tests.md) and test/vscode/run.mjs runs them in code-server.
//
//   node test/vscode/run-electron.mjs [--tests INDEX.js] [--no-folder]
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { runTests } from "@vscode/test-electron";
import { prepareWorkspace } from "../lib/workspace.mjs";
import { makeTinyModel } from "../lib/tinyModel.mjs";
import { testUserSettings } from "../lib/settings.mjs";
import { repoRoot } from "../lib/tools.mjs";

const { values: opts } = parseArgs({
  options: {
    tests: { type: "string", default: join(repoRoot, "out", "test", "vscode", "suite", "index.js") },
    "no-folder": { type: "boolean", default: false },
  },
});

const root = mkdtempSync(join(tmpdir(), "repotune-electron-"));
const userData = join(root, "user-data");
mkdirSync(join(userData, "User"), { recursive: true });
writeFileSync(join(userData, "User", "settings.json"), JSON.stringify(testUserSettings(makeTinyModel(join(root, "tiny-llama.gguf"))), null, 2));
const launchArgs = [
  ...(opts["no-folder"] ? [] : [prepareWorkspace(join(root, "workspace"))]),
  "--user-data-dir", userData,
  "--extensions-dir", join(root, "extensions"),
  "--disable-extensions",
  "--disable-workspace-trust",
  "--skip-welcome",
];
let code = 1;
try {
  code = await runTests({ extensionDevelopmentPath: repoRoot, extensionTestsPath: resolve(opts.tests), launchArgs });
} catch (err) {
  console.error(`[electron] ${err?.message ?? err}`);
}
if (code === 0) rmSync(root, { recursive: true, force: true });
else console.error(`[electron] FAILED; state kept in ${root}`);
process.exit(code);
