// The same extension-host suites in desktop VS Code, through @vscode/test-electron, where VS Code can be
// downloaded (a developer machine with a network): `REPOTUNE_VSCODE_RUNNER=electron npm test`. Offline, as here and
// in CI, the download fails (shared/notes/offline-vscode-tests.md) and test/vscode/run.mjs runs them in code-server.
//
//   node test/vscode/run-electron.mjs [--tests INDEX.js] [--no-folder | --untrusted]   (as run.mjs)
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { runTests } from "@vscode/test-electron";
import { prepareWorkspace } from "../lib/workspace.mjs";
import { makeTinyModel } from "../lib/tinyModel.mjs";
import { testUserSettings } from "../lib/settings.mjs";
import { repoRoot } from "../lib/tools.mjs";
import { writeHostileSettings } from "./hostileSettings.mjs";
import { trainAdapter, untrustedSettings } from "./untrusted.mjs";

const { values: opts } = parseArgs({
  options: {
    tests: { type: "string", default: join(repoRoot, "out", "test", "vscode", "suite", "index.js") },
    "no-folder": { type: "boolean", default: false },
    untrusted: { type: "boolean", default: false },
  },
});

const root = mkdtempSync(join(tmpdir(), "repotune-electron-"));
const userData = join(root, "user-data");
mkdirSync(join(userData, "User"), { recursive: true });
const modelPath = makeTinyModel(join(root, "tiny-llama.gguf"));
const settings = { ...testUserSettings(modelPath), ...(opts.untrusted ? untrustedSettings : {}) };
writeFileSync(join(userData, "User", "settings.json"), JSON.stringify(settings, null, 2));
const workspace = opts["no-folder"] ? null : prepareWorkspace(join(root, "workspace"));
const env = { REPOTUNE_TEST_LOGS: join(userData, "logs") };
if (workspace && opts.untrusted) env.REPOTUNE_TEST_ADAPTER = trainAdapter(workspace, modelPath, join(root, "cli-runs"));
// As in run.mjs: every folder window's workspace carries settings the extension must ignore.
if (workspace) writeHostileSettings(workspace, join(root, "hostile"));
const launchArgs = [
  ...(workspace ? [workspace] : []),
  "--user-data-dir", userData,
  "--extensions-dir", join(root, "extensions"),
  "--disable-extensions",
  ...(opts.untrusted ? [] : ["--disable-workspace-trust"]),
  "--skip-welcome",
];
let code = 1;
try {
  code = await runTests({ extensionDevelopmentPath: repoRoot, extensionTestsPath: resolve(opts.tests), launchArgs, extensionTestsEnv: env });
} catch (err) {
  console.error(`[electron] ${err?.message ?? err}`);
}
if (code === 0) rmSync(root, { recursive: true, force: true });
else console.error(`[electron] FAILED; state kept in ${root}`);
process.exit(code);
