// The trainer environment in a real VS Code: "Check trainer environment" with a Python that lacks PyTorch, one that
// does not exist, and a CPU PyTorch on a machine whose nvidia-smi lists a GPU (each with its fix as a button); and
// "Set up trainer environment" for real against a package index on 127.0.0.1 (wheels repacked from Debian's torch
// and numpy): an index without torch, a cancel during the download, and the setup that works and becomes
// repotune.pythonPath.
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as vscode from "vscode";
import { execFileSync } from "node:child_process";
import type { RepoTuneApi } from "../../../src/extension";
import type { EnvironmentReport } from "../../../src/models";
import type { SetupOutcome } from "../../../src/pythonEnvCommand";
import { buildWheels, startPythonIndex, type Wheel } from "../../lib/pythonIndex.mjs";

const SETUP_ACTION = "Set Up Trainer Environment";

suite("Trainer environment", () => {
  const config = () => vscode.workspace.getConfiguration("repotune");
  let original: string | undefined;
  let dir: string;
  let bare: string;
  let wheels: Wheel[];
  let storage: string;
  const savedEnv = { ...process.env };

  const check = () => vscode.commands.executeCommand<EnvironmentReport>("repotune.checkEnvironment");
  const setUp = (arg?: { signal: AbortSignal }) => vscode.commands.executeCommand<SetupOutcome>("repotune.setupEnvironment", arg);
  const setPython = (p: string | undefined) => config().update("pythonPath", p, vscode.ConfigurationTarget.Global);
  const useIndex = async (url: string | undefined) => {
    await config().update("python.indexUrl", url, vscode.ConfigurationTarget.Global);
    await config().update("python.torchIndexUrl", url, vscode.ConfigurationTarget.Global);
  };

  suiteSetup(async () => {
    const extension = vscode.extensions.getExtension<RepoTuneApi>("repotune.repotune");
    assert.ok(extension);
    await extension.activate();
    original = config().get<string>("pythonPath");
    assert.ok(original, "the test settings name no Python");
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "repotune-pyenv-"));
    execFileSync(original, ["-m", "venv", "--without-pip", path.join(dir, "venv")]);
    bare = path.join(dir, "venv", "bin", "python");
    wheels = buildWheels({ python: original });
    // The extension host is this process: pip there reads this environment. None of this machine's pip settings
    // (PIP_FIND_LINKS adds other wheels), and a cache of the test's own.
    for (const key of Object.keys(process.env)) if (/^(PIP|UV)_/.test(key)) delete process.env[key];
    process.env.PIP_CONFIG_FILE = "/dev/null";
    process.env.PIP_CACHE_DIR = path.join(dir, "pip-cache");
    // RepoTune's global storage in this code-server (test/vscode/run.mjs: <root>/user-data, logs under it).
    assert.ok(process.env.REPOTUNE_TEST_LOGS, "REPOTUNE_TEST_LOGS is not set: run through test/vscode/run.mjs");
    storage = path.join(path.dirname(process.env.REPOTUNE_TEST_LOGS), "User", "globalStorage", "repotune.repotune");
  });

  suiteTeardown(async () => {
    for (const key of Object.keys(process.env)) if (!(key in savedEnv)) delete process.env[key];
    Object.assign(process.env, savedEnv);
    await setPython(original);
    await useIndex(undefined);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test("no Python, and a Python without PyTorch: the message says so and offers the setup", async () => {
    await setPython(path.join(dir, "nowhere", "python3"));
    const none = await check();
    assert.equal(none.ok, false);
    assert.ok(!none.ok && none.problem === "no_python", JSON.stringify(none));
    assert.deepEqual(none.actions, [SETUP_ACTION, "Open Settings"]);
    assert.match(none.message, /Tried: \S+nowhere\/python3 \(not found\)\. Install Python 3 .*Set up trainer environment/);

    await setPython(bare);
    const noTorch = await check();
    assert.ok(!noTorch.ok && noTorch.problem === "no_torch", JSON.stringify(noTorch));
    assert.match(noTorch.message, /no PyTorch and NumPy/);
    assert.deepEqual(noTorch.actions, [SETUP_ACTION, "Open Settings"]);
  });

  test("a CPU PyTorch where nvidia-smi lists a GPU: trains, with a warning and the setup offered", async () => {
    await setPython(original);
    // An nvidia-smi that answers as on a machine with an A100 (recorded output), first on PATH for this test only.
    const bin = path.join(dir, "bin");
    fs.mkdirSync(bin, { recursive: true });
    const smi = path.join(bin, "nvidia-smi");
    fs.writeFileSync(smi, "#!/bin/sh\nprintf 'Driver Version                            : 550.54.15\\nCUDA Version                              : 12.4\\nGPU 00000000:17:00.0\\n    Product Name                          : NVIDIA A100-SXM4-80GB\\n'\n");
    fs.chmodSync(smi, 0o755);
    const savedPath = process.env.PATH;
    process.env.PATH = `${bin}${path.delimiter}${savedPath}`;
    try {
      const r = await check();
      assert.ok(r.ok, JSON.stringify(r));
      assert.equal(r.accelerator, "none");
      assert.match(r.warning ?? "", /does not use the NVIDIA GPU this computer has \(NVIDIA A100-SXM4-80GB\).*Set up trainer environment/);
    } finally {
      process.env.PATH = savedPath;
    }
    const clean = await check();
    assert.ok(clean.ok && clean.warning === null, "a warning without a GPU");
  });

  test("setup against an index without torch fails with Open Log / Retry; the interpreter setting stays", async () => {
    const index = await startPythonIndex(wheels, { omit: ["torch"] });
    try {
      await useIndex(index.url);
      const r = await setUp();
      assert.ok(!r.ok && r.code === "package_missing", JSON.stringify(r));
      assert.match(r.message, /has no torch/);
      assert.deepEqual(r.actions, ["Open Log", "Retry"]);
      assert.equal(config().get("pythonPath"), original);
    } finally {
      await index.close();
    }
  });

  test("setup cancelled during the PyTorch download: nothing is marked ready, the interpreter setting stays", async () => {
    const index = await startPythonIndex(wheels, { stallProject: "torch", stallAfterBytes: 4 << 20 });
    try {
      await useIndex(index.url);
      const abort = new AbortController();
      void index.stalled.then(() => setTimeout(() => abort.abort(), 500));
      const r = await setUp({ signal: abort.signal });
      assert.ok(!r.ok && r.code === "cancelled", JSON.stringify(r));
      assert.equal(config().get("pythonPath"), original);
      assert.ok(!fs.existsSync(path.join(storage, "python-env", "repotune-ready.json")), "a cancelled environment is marked ready");
      assert.ok(!fs.existsSync(path.join(storage, "python-env.partial")), "the half-made environment was kept");
    } finally {
      await index.close();
    }
  });

  test("setup installs PyTorch and NumPy into an environment of its own, which then trains", async () => {
    const index = await startPythonIndex(wheels);
    try {
      await useIndex(index.url);
      const r = await setUp();
      assert.ok(r.ok, JSON.stringify(r));
      assert.equal(r.installer, "pip");
      assert.ok(r.selftest.ok && r.selftest.torch);
      assert.equal(config().get("pythonPath"), r.python, "the new interpreter is not the one used");
      assert.equal(r.python, path.join(storage, "python-env", "bin", "python"));
      assert.ok(fs.existsSync(path.join(storage, "python-env", "repotune-ready.json")));
      const env = await check();
      assert.ok(env.ok && env.interpreter === r.python, JSON.stringify(env));
    } finally {
      await index.close();
    }
  });
});
