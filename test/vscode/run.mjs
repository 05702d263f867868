// Runs the extension-host test suite (test/vscode/suite, built to out/test/vscode/suite) inside a real VS Code:
// code-server driven by headless chromium, with the standard extensionDevelopmentPath / extensionTestsPath
// payload. Exits with the suite's exit code. See shared/notes/offline-vscode-tests.md.
//
//   node test/vscode/run.mjs [--extension DIR] [--tests INDEX.js] [--no-folder | --untrusted]
//   (the options point the harness at another extension and suite, e.g. to check the harness itself;
//   --no-folder opens a window without a folder, for what the extension does with nothing to learn from;
//   --untrusted turns workspace trust on and opens the folder untrusted (Restricted Mode), with an adapter trained
//   beforehand by the CLI, for test/vscode/suite/untrusted)
//
// Every folder window's workspace carries a hostile .vscode/settings.json (hostileSettings.mjs) that the
// extension must ignore.
//
// Desktop VS Code (@vscode/test-electron) cannot be downloaded here. The suite index exports the usual run(), so
// @vscode/test-electron can load it where a download is possible; that runner is not wired up in this script.
import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync, appendFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { parseArgs, format } from "node:util";
import { startCodeServer, tail } from "../lib/codeServer.mjs";
import { launchBrowser } from "../lib/browser.mjs";
import { prepareWorkspace } from "../lib/workspace.mjs";
import { makeTinyModel } from "../lib/tinyModel.mjs";
import { testUserSettings } from "../lib/settings.mjs";
import { repoRoot } from "../lib/tools.mjs";
import { writeHostileSettings } from "./hostileSettings.mjs";
import { trainAdapter, untrustedSettings } from "./untrusted.mjs";

const { values: opts } = parseArgs({
  options: {
    extension: { type: "string", default: repoRoot },
    tests: { type: "string", default: join(repoRoot, "out", "test", "vscode", "suite", "index.js") },
    "no-folder": { type: "boolean", default: false },
    untrusted: { type: "boolean", default: false },
  },
});
if (opts["no-folder"] && opts.untrusted) {
  console.error("[vscode] --no-folder and --untrusted exclude each other: workspace trust is about a folder.");
  process.exit(2);
}
const extensionDir = resolve(opts.extension);
const testsIndex = resolve(opts.tests);
const timeoutS = Number(process.env.REPOTUNE_VSCODE_TIMEOUT_S || 360);
const outDir = join(repoRoot, "test-output", "vscode");

const t0 = Date.now();
const elapsed = () => `${((Date.now() - t0) / 1000).toFixed(1)}s`;
const say = (msg) => console.log(`[vscode ${elapsed()}] ${msg}`);

function requireFile(path, what) {
  if (!existsSync(path)) {
    console.error(`[vscode] ${what} not found: ${path}. Build first with \`node esbuild.mjs\`.`);
    process.exit(2);
  }
}
requireFile(join(extensionDir, "package.json"), "The extension's package.json");
requireFile(testsIndex, "The test suite index");

rmSync(outDir, { recursive: true, force: true });
mkdirSync(outDir, { recursive: true });
const root = mkdtempSync(join(tmpdir(), "repotune-vscode-"));
const automationLog = join(outDir, "automation.log");
const codeServerLog = join(outDir, "code-server.log");

let server;
let browser;
let cleanedUp = false;
async function cleanUp() {
  if (cleanedUp) return;
  cleanedUp = true;
  await browser?.close().catch(() => {});
  await server?.stop();
  // The extension host's own logs (the extension's output channel among them) help most when a test fails.
  if (server && existsSync(join(server.dirs.userData, "logs"))) {
    cpSync(join(server.dirs.userData, "logs"), join(outDir, "logs"), { recursive: true });
  }
}
let interrupted = false;
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.once(signal, () => {
    interrupted = true;
    cleanUp().finally(() => process.exit(130));
  });
}

let exitCode = 1;
try {
  const modelPath = makeTinyModel(join(root, "tiny-llama.gguf"));
  const workspace = prepareWorkspace(join(root, "workspace"));
  const env = { REPOTUNE_TEST_LOGS: join(root, "user-data", "logs") };
  if (opts.untrusted) {
    env.REPOTUNE_TEST_ADAPTER = trainAdapter(workspace, modelPath, join(root, "cli-runs"));
    say(`adapter trained by the CLI: ${env.REPOTUNE_TEST_ADAPTER}`);
  }
  writeHostileSettings(workspace, join(root, "hostile"));
  say(`model ${modelPath}, workspace ${workspace}`);

  server = await startCodeServer({
    root,
    settings: { ...testUserSettings(modelPath), ...(opts.untrusted ? untrustedSettings : {}) },
    logFile: codeServerLog,
    smokeTestDriver: true,
    workspaceTrust: opts.untrusted,
    env,
  });
  say(`code-server up on ${server.url} in ${server.startedMs} ms`);

  const remote = (path) => `vscode-remote://127.0.0.1:${server.port}${path}`;
  const payload = [
    ["extensionDevelopmentPath", remote(extensionDir)],
    ["extensionTestsPath", remote(testsIndex)],
    ["skipWelcome", "true"],
  ];
  const where = opts["no-folder"] ? "ew=true" : `folder=${encodeURIComponent(workspace)}`;
  const url = `${server.url}/?${where}&payload=${encodeURIComponent(JSON.stringify(payload))}`;

  browser = await launchBrowser();
  const page = await browser.newPage();
  page.on("console", (msg) => appendFileSync(join(outDir, "browser-console.log"), `[${msg.type()}] ${msg.text()}\n`));

  // The workbench reports the suite's console output and its end through these two hooks (as in @vscode/test-web).
  const finished = new Promise((resolveExit) => {
    page.exposeFunction("codeAutomationLog", (type, args) => {
      // Mocha's reporter logs format strings ("%s%s"), so the arguments are formatted as console.log would.
      const text = format(...(Array.isArray(args) ? args : [args]));
      appendFileSync(automationLog, `[${type}] ${text}\n`);
      // Workbench errors come with long stack traces (mostly the harmless failed requests to open-vsx.org):
      // their first line here, all of it in automation.log.
      if (type === "error") console.error(`  [workbench error] ${text.split("\n")[0]}`);
      else console.log(`  ${text}`);
    });
    page.exposeFunction("codeAutomationExit", (code, logs) => {
      for (const log of Array.isArray(logs) ? logs : []) {
        const file = join(outDir, "workbench-logs", log.relativePath);
        mkdirSync(dirname(file), { recursive: true });
        writeFileSync(file, log.contents);
      }
      resolveExit(code);
    });
  });
  const timedOut = new Promise((resolveTimeout) =>
    setTimeout(() => resolveTimeout("timeout"), timeoutS * 1000).unref(),
  );

  await page.goto(url);
  say("workbench opened; suite running");
  const result = await Promise.race([finished, timedOut]);
  if (result === "timeout") {
    await page.screenshot({ path: join(outDir, "timeout.png") }).catch(() => {});
    console.error(
      `[vscode] TIMEOUT: the suite did not finish within ${timeoutS} s (REPOTUNE_VSCODE_TIMEOUT_S). ` +
        `Screenshot: ${join(outDir, "timeout.png")}; logs under ${outDir}. code-server log tail:\n${tail(codeServerLog)}`,
    );
    exitCode = 1;
  } else {
    exitCode = Number(result);
    say(`suite finished with exit code ${exitCode}`);
  }
} catch (err) {
  console.error(`[vscode] ${err.stack || err}`);
  exitCode = 1;
} finally {
  await cleanUp();
}
if (interrupted) exitCode = 130;
if (exitCode === 0) rmSync(root, { recursive: true, force: true });
else console.error(`[vscode] FAILED (exit ${exitCode}); state kept in ${root}, logs in ${outDir}`);
process.exit(exitCode);
