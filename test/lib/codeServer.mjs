// Starts code-server (VS Code 1.139 in the browser) with throwaway state, the way the offline recipe in
// shared/notes/offline-vscode-tests.md prescribes, and makes sure it never outlives the test process.
import { spawn, spawnSync } from "node:child_process";
import { mkdirSync, openSync, closeSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { readTools } from "./tools.mjs";

async function freeLoopbackPort() {
  const server = createServer();
  await new Promise((resolve, reject) => server.once("error", reject).listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Fresh user-data, extensions and XDG folders under `root`, so nothing of the developer's own state leaks in. */
function stateDirs(root) {
  const dirs = {
    userData: join(root, "user-data"),
    extensions: join(root, "extensions"),
    xdgConfig: join(root, "xdg", "config"),
    xdgData: join(root, "xdg", "data"),
    xdgCache: join(root, "xdg", "cache"),
  };
  for (const dir of Object.values(dirs)) mkdirSync(dir, { recursive: true });
  return dirs;
}

function codeServerEnv(tools, dirs) {
  return {
    ...process.env,
    // code-server's launcher runs `node` from PATH and needs Node 24.
    PATH: `${tools.nodeBin}:${process.env.PATH}`,
    XDG_CONFIG_HOME: dirs.xdgConfig,
    XDG_DATA_HOME: dirs.xdgData,
    XDG_CACHE_HOME: dirs.xdgCache,
  };
}

/**
 * Installs a packaged extension into the state under `root` (call before startCodeServer with the same root).
 * @param {string} root
 * @param {string} vsix
 */
export function installExtension(root, vsix) {
  const tools = readTools();
  const dirs = stateDirs(root);
  const result = spawnSync(
    tools.codeServer,
    ["--user-data-dir", dirs.userData, "--extensions-dir", dirs.extensions, "--install-extension", vsix],
    { env: codeServerEnv(tools, dirs), encoding: "utf8", timeout: 120_000 },
  );
  if (result.status !== 0) {
    throw new Error(
      `code-server could not install ${vsix} (exit ${result.status ?? result.signal}):\n${result.stdout}\n${result.stderr}`,
    );
  }
  return result.stdout.trim();
}

/**
 * @param {{ root: string, settings: object, logFile: string, smokeTestDriver?: boolean, logLevels?: string[],
 *   workspaceTrust?: boolean, env?: Record<string, string> }} opts
 *   smokeTestDriver: needed for the extensionDevelopmentPath/extensionTestsPath payload to be honoured.
 *   logLevels: VS Code's --log values, e.g. "debug".
 *   workspaceTrust: keep VS Code's workspace trust on (off by default: every test folder would open in Restricted
 *   Mode); the settings must then turn it on too (security.workspace.trust.enabled).
 *   env: variables added to code-server's environment, which its extension hosts inherit.
 * @returns {Promise<{ port: number, url: string, dirs: ReturnType<typeof stateDirs>, stop: () => Promise<void>, startedMs: number }>}
 */
export async function startCodeServer({ root, settings, logFile, smokeTestDriver = false, logLevels = [], workspaceTrust = false, env = {} }) {
  const tools = readTools();
  const dirs = stateDirs(root);
  // Written before the first window opens, so the extension activates with these settings from the start.
  // The extension runs on the code-server side (a remote window), where machine-scoped settings such as
  // repotune.modelPath are read only from the remote machine's settings (Machine/), never from User/.
  for (const scope of ["User", "Machine"]) {
    mkdirSync(join(dirs.userData, scope), { recursive: true });
    writeFileSync(join(dirs.userData, scope, "settings.json"), JSON.stringify(settings, null, 2));
  }

  const port = await freeLoopbackPort();
  const args = [
    "--bind-addr", `127.0.0.1:${port}`,
    "--auth", "none",
    "--disable-telemetry",
    "--disable-update-check",
    "--disable-getting-started-override",
    "--user-data-dir", dirs.userData,
    "--extensions-dir", dirs.extensions,
  ];
  if (!workspaceTrust) args.push("--disable-workspace-trust");
  if (smokeTestDriver) args.push("--vscode-option", "enable-smoke-test-driver");
  // VS Code's `log` option is a list (a lone value would reach it as a string, so it is given twice). The web
  // workbench, and with it the extension host, takes the server's default level: an extension's own level is not
  // passed on, so a debug line of one extension needs the default level at debug.
  for (const level of logLevels.length === 1 ? [...logLevels, ...logLevels] : logLevels) args.push("--vscode-option", `log=${level}`);

  const started = Date.now();
  const log = openSync(logFile, "a");
  // Detached: its own process group, so stop() can end code-server together with every extension host and
  // engine/trainer process it spawned.
  const child = spawn(tools.codeServer, args, { detached: true, stdio: ["ignore", log, log], env: { ...codeServerEnv(tools, dirs), ...env } });
  closeSync(log);
  let exited = null;
  child.once("exit", (code, signal) => (exited = { code, signal }));
  const killGroup = (signal) => {
    try {
      process.kill(-child.pid, signal);
    } catch {
      // The group is already gone.
    }
  };
  // Last resort when the test process dies abruptly: `exit` handlers run synchronously, so only a SIGKILL fits.
  const onExit = () => killGroup("SIGKILL");
  process.on("exit", onExit);

  const stop = async () => {
    process.off("exit", onExit);
    killGroup("SIGTERM");
    const deadline = Date.now() + 5_000;
    while (exited === null && Date.now() < deadline) await sleep(100);
    // Extension hosts and engine processes may ignore SIGTERM or take their time; none may survive the test.
    killGroup("SIGKILL");
  };

  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (exited !== null) {
      throw new Error(`code-server exited at start (${JSON.stringify(exited)}). Its log:\n${tail(logFile)}`);
    }
    try {
      const res = await fetch(`${url}/healthz`);
      if (res.ok) break;
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`code-server did not answer ${url}/healthz within 60 s. Its log:\n${tail(logFile)}`);
    }
    await sleep(100);
  }
  return { port, url, dirs, stop, startedMs: Date.now() - started };
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export function tail(file, lines = 40) {
  try {
    return readFileSync(file, "utf8").split("\n").slice(-lines).join("\n");
  } catch {
    return "(no log)";
  }
}
