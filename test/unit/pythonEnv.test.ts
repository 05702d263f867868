// The trainer environment setup: which PyTorch build a machine gets (from recorded nvidia-smi / ROCm outputs), and
// the real setup — a virtual environment of the torch Python, PyTorch and NumPy installed by pip from a package
// index on 127.0.0.1 that serves wheels repacked from Debian's torch and numpy — including an index without torch
// and a cancel during the download.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import * as path from "node:path";
import {
  EnvSetupError, READY_MARKER, acceleratorOf, chooseTorchBuild, envPython, installFailure, managedPython, parseNvidiaSmi,
  parseRocm, setupEnvironment, torchBuildMismatch, type DeviceDescription, type SetupOptions,
} from "../../src/core/pythonEnv";
import { python, removeDir, tempDir, trainerRoot } from "./support/pipeline";
import { buildWheels, startPythonIndex, type PythonIndex, type Wheel } from "../lib/pythonIndex.mjs";

// --- Recorded outputs of the GPU tools (formats of nvidia-smi 470 / 550 / 570, rocminfo and rocm-smi of ROCm 6) ---

const NVIDIA_SMI_Q_550 = `
==============NVSMI LOG==============

Timestamp                                 : Tue Jun 11 09:12:44 2024
Driver Version                            : 550.54.15
CUDA Version                              : 12.4

Attached GPUs                             : 2
GPU 00000000:17:00.0
    Product Name                          : NVIDIA A100-SXM4-80GB
    Product Brand                         : NVIDIA
    Product Architecture                  : Ampere
    FB Memory Usage
        Total                             : 81920 MiB
GPU 00000000:65:00.0
    Product Name                          : NVIDIA A100-SXM4-80GB
    Product Brand                         : NVIDIA
`;

const NVIDIA_SMI_TABLE_570 = `Mon Mar 10 14:02:11 2025
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 570.86.15              Driver Version: 570.86.15      CUDA Version: 12.8     |
|-----------------------------------------+------------------------+----------------------+
| GPU  Name                 Persistence-M | Bus-Id          Disp.A | Volatile Uncorr. ECC |
| Fan  Temp   Perf          Pwr:Usage/Cap |           Memory-Usage | GPU-Util  Compute M. |
|                                         |                        |               MIG M. |
|=========================================+========================+======================|
|   0  NVIDIA GeForce RTX 5090        Off |   00000000:01:00.0  On |                  N/A |
|  0%   38C    P8             21W /  575W |     512MiB /  32607MiB |      2%      Default |
+-----------------------------------------+------------------------+----------------------+
`;

const NVIDIA_SMI_TABLE_470 = `+-----------------------------------------------------------------------------+
| NVIDIA-SMI 470.82.01    Driver Version: 470.82.01    CUDA Version: 11.4     |
|-------------------------------+----------------------+----------------------+
| GPU  Name        Persistence-M| Bus-Id        Disp.A | Volatile Uncorr. ECC |
|===============================+======================+======================|
|   0  Tesla T4            Off  | 00000000:00:04.0 Off |                    0 |
+-------------------------------+----------------------+----------------------+
`;

const NVIDIA_SMI_L = "GPU 0: NVIDIA GeForce RTX 3090 (UUID: GPU-5e1a0c2d-8f3b-4c1e-9a7d-2b6f0e4d1c3a)\n";

const ROCMINFO = `ROCk module is loaded
=====================
HSA System Attributes
=====================
Runtime Version:         1.14
==========
HSA Agents
==========
*******
Agent 1
*******
  Name:                    AMD Ryzen 9 7950X 16-Core Processor
  Marketing Name:          AMD Ryzen 9 7950X 16-Core Processor
  Device Type:             CPU
*******
Agent 2
*******
  Name:                    gfx1100
  Marketing Name:          Radeon RX 7900 XTX
  Device Type:             GPU
`;

const ROCM_SMI = `============================ ROCm System Management Interface ============================
====================================== Product Info ======================================
GPU[0]\t\t: Card Series: \t\tAMD Instinct MI210
GPU[0]\t\t: Card Model: \t\t0x740f
GPU[0]\t\t: Card Vendor: \t\tAdvanced Micro Devices, Inc. [AMD/ATI]
==========================================================================================
`;

const linux = (gpu: DeviceDescription["gpu"]): DeviceDescription => ({ platform: "linux", arch: "x64", gpu });
const nvidia = (text: string): DeviceDescription => {
  const parsed = parseNvidiaSmi(text);
  assert.ok(parsed, "no GPU parsed");
  return linux({ vendor: "nvidia", ...parsed, rocmVersion: null });
};

describe("reading the GPU tools", () => {
  test("nvidia-smi -q, the plain table (old and new layout) and -L", () => {
    assert.deepEqual(parseNvidiaSmi(NVIDIA_SMI_Q_550), { names: ["NVIDIA A100-SXM4-80GB", "NVIDIA A100-SXM4-80GB"], driverVersion: "550.54.15", cudaVersion: "12.4" });
    assert.deepEqual(parseNvidiaSmi(NVIDIA_SMI_TABLE_570), { names: ["NVIDIA GeForce RTX 5090"], driverVersion: "570.86.15", cudaVersion: "12.8" });
    assert.deepEqual(parseNvidiaSmi(NVIDIA_SMI_TABLE_470), { names: ["Tesla T4"], driverVersion: "470.82.01", cudaVersion: "11.4" });
    assert.deepEqual(parseNvidiaSmi(NVIDIA_SMI_L), { names: ["NVIDIA GeForce RTX 3090"], driverVersion: null, cudaVersion: null });
    assert.equal(parseNvidiaSmi("No devices were found\n"), null);
  });

  test("rocminfo lists GPU agents only; rocm-smi's card series", () => {
    assert.deepEqual(parseRocm(ROCMINFO), ["Radeon RX 7900 XTX"]);
    assert.deepEqual(parseRocm(ROCM_SMI), ["AMD Instinct MI210"]);
    assert.equal(parseRocm("ROCk module is NOT loaded, possibly no GPU devices\n"), null);
  });
});

describe("choosing the PyTorch build", () => {
  const index = (d: DeviceDescription) => chooseTorchBuild(d).indexUrl;

  test("NVIDIA: the newest CUDA 12 build the driver runs, cu118 for CUDA 11.8 drivers, CPU for older ones", () => {
    assert.equal(index(nvidia(NVIDIA_SMI_TABLE_570)), "https://download.pytorch.org/whl/cu128");
    assert.equal(index(nvidia(NVIDIA_SMI_Q_550)), "https://download.pytorch.org/whl/cu126");
    assert.equal(index(nvidia(NVIDIA_SMI_Q_550.replace("12.4", "13.0"))), "https://download.pytorch.org/whl/cu128");
    assert.equal(index(nvidia(NVIDIA_SMI_Q_550.replace("12.4", "11.8"))), "https://download.pytorch.org/whl/cu118");
    assert.equal(index(nvidia(NVIDIA_SMI_L)), "https://download.pytorch.org/whl/cu126", "CUDA version unknown: the common CUDA 12 build");
    const old = chooseTorchBuild(nvidia(NVIDIA_SMI_TABLE_470));
    assert.equal(old.indexUrl, "https://download.pytorch.org/whl/cpu");
    assert.equal(old.accelerator, "none");
    assert.match(old.reason, /Tesla T4.*only CUDA 11\.4.*Update the NVIDIA driver/);
    const windows = { ...nvidia(NVIDIA_SMI_TABLE_570), platform: "win32" as const };
    assert.equal(index(windows), "https://download.pytorch.org/whl/cu128");
  });

  test("AMD on Linux: the ROCm build not newer than the installed ROCm, the newest when unknown", () => {
    const amd = (rocmVersion: string | null) => linux({ vendor: "amd", names: parseRocm(ROCMINFO)!, driverVersion: null, cudaVersion: null, rocmVersion });
    assert.equal(index(amd("6.4.1")), "https://download.pytorch.org/whl/rocm6.4");
    assert.equal(index(amd("6.3.0")), "https://download.pytorch.org/whl/rocm6.3");
    assert.equal(index(amd("6.2.0")), "https://download.pytorch.org/whl/rocm6.3", "older ROCm: the oldest build offered");
    assert.equal(index(amd(null)), "https://download.pytorch.org/whl/rocm6.4");
    assert.equal(chooseTorchBuild(amd(null)).accelerator, "rocm");
  });

  test("macOS gets the standard build (MPS on Apple silicon); no GPU gets the CPU build", () => {
    const mac = chooseTorchBuild({ platform: "darwin", arch: "arm64", gpu: null });
    assert.deepEqual([mac.indexUrl, mac.accelerator], [null, "mps"]);
    assert.deepEqual([index({ platform: "darwin", arch: "x64", gpu: null }), chooseTorchBuild({ platform: "darwin", arch: "x64", gpu: null }).accelerator], [null, "none"]);
    assert.equal(index(linux(null)), "https://download.pytorch.org/whl/cpu");
    assert.equal(index({ platform: "win32", arch: "x64", gpu: null }), "https://download.pytorch.org/whl/cpu");
  });
});

describe("what a working PyTorch trains on", () => {
  const self = (device: string, torch: string) => ({ device, torch, python: "/opt/venv/bin/python" });

  test("accelerator from the self-test: ROCm builds call their device cuda", () => {
    assert.equal(acceleratorOf(self("cuda", "2.5.1+cu124")), "cuda");
    assert.equal(acceleratorOf(self("cuda", "2.5.1+rocm6.2")), "rocm");
    assert.equal(acceleratorOf(self("mps", "2.5.1")), "mps");
    assert.equal(acceleratorOf(self("cpu", "2.5.1+cpu")), "none");
  });

  test("a CPU build on a machine with an NVIDIA GPU is the wrong build; the right one is not", () => {
    const gpu = nvidia(NVIDIA_SMI_Q_550);
    const cpuBuild = torchBuildMismatch(gpu, self("cpu", "2.5.1+cpu"));
    assert.match(cpuBuild ?? "", /PyTorch 2\.5\.1\+cpu, a CPU-only build, which does not use the NVIDIA GPU .*A100.*Set up trainer environment/);
    assert.match(torchBuildMismatch(gpu, self("cpu", "2.5.1+cu128")) ?? "", /a CUDA build.*driver may be older/);
    assert.equal(torchBuildMismatch(gpu, self("cuda", "2.5.1+cu124")), null);
    assert.equal(torchBuildMismatch(linux(null), self("cpu", "2.5.1+cpu")), null, "no GPU: CPU is right");
    assert.equal(torchBuildMismatch({ platform: "darwin", arch: "arm64", gpu: null }, self("cpu", "2.5.1")), null);
    const amd = linux({ vendor: "amd", names: ["Radeon RX 7900 XTX"], driverVersion: null, cudaVersion: null, rocmVersion: "6.3.0" });
    assert.match(torchBuildMismatch(amd, self("cpu", "2.5.1+cu124")) ?? "", /does not use the AMD GPU/);
  });

  test("installer failures are told apart from pip's and uv's words", () => {
    const pip = "ERROR: Could not find a version that satisfies the requirement torch (from versions: none)\nERROR: No matching distribution found for torch";
    assert.equal(installFailure("Installing PyTorch", pip, 1).code, "package_missing");
    const uv = "  × No solution found when resolving dependencies:\n  ╰─▶ Because torch was not found in the package registry and you require torch, we can conclude that your requirements are unsatisfiable.";
    assert.match(installFailure("Installing PyTorch", uv, 1).message, /has no torch for this Python/);
    const offline = "x --index-url https://mirror.example/simple torch\nWARNING: Retrying ... NewConnectionError('Failed to establish a new connection: [Errno 111] Connection refused')";
    const net = installFailure("Installing PyTorch", offline, 1);
    assert.equal(net.code, "network");
    assert.match(net.message, /could not be reached \(https:\/\/mirror\.example\/simple\)/);
    assert.equal(installFailure("Installing NumPy", "Killed", 137).code, "install_failed");
  });
});

describe("setting up the environment for real (pip, a local index)", () => {
  let dir: string;
  let wheels: Wheel[];
  const noGpu: DeviceDescription = { platform: process.platform, arch: process.arch, gpu: null };
  // None of this machine's pip configuration (PIP_FIND_LINKS and the like would add other wheels), and a cache of
  // the test's own (the wheels are 200 MB).
  const env = () => ({
    ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(PIP|UV)_/.test(k))),
    PIP_CONFIG_FILE: "/dev/null",
    PIP_CACHE_DIR: path.join(dir, "pip-cache"),
  });
  const options = (storageDir: string, index: PythonIndex, extra: Partial<SetupOptions> = {}): SetupOptions => ({
    storageDir, trainerRoot, basePythons: [python], installer: "pip", device: noGpu, torchIndexUrl: index.url, indexUrl: index.url,
    env: env(),
    ...extra,
  });
  const leftoverInstallers = (storageDir: string) =>
    readdirSync("/proc").filter((pid) => /^\d+$/.test(pid)).filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(storageDir);
      } catch {
        return false;
      }
    });

  before(() => {
    dir = tempDir("pythonenv");
    wheels = buildWheels();
  });
  after(() => removeDir(dir));

  const storage = () => path.join(dir, "storage");

  test("creates a venv of the torch Python, installs torch and numpy from the index, self-tests, marks it ready", { timeout: 600_000 }, async () => {
    const index = await startPythonIndex(wheels);
    const lines: string[] = [];
    const fractions: number[] = [];
    const t0 = Date.now();
    try {
      const result = await setupEnvironment(options(storage(), index, { log: (l) => lines.push(l), onProgress: (f) => fractions.push(f) }));
      const seconds = (Date.now() - t0) / 1000;
      console.log(`setup took ${seconds.toFixed(1)} s; PyTorch ${result.selftest.torch} on ${result.selftest.device}`);
      assert.equal(result.python, envPython(path.join(storage(), "python-env")));
      assert.equal(result.installer, "pip");
      assert.ok(result.selftest.ok && result.selftest.device === "cpu");
      assert.equal(result.build.indexUrl, index.url);
      assert.equal(managedPython(storage()), result.python, "the finished environment is not found as ready");
      const marker = JSON.parse(readFileSync(path.join(storage(), "python-env", READY_MARKER), "utf8"));
      assert.equal(marker.torch, result.selftest.torch);
      assert.ok(!existsSync(path.join(storage(), "python-env.partial")), "the build folder was left");
      // torch and numpy come from the environment itself, installed by pip from the index: not the system's.
      const where = execFileSync(result.python, ["-c", "import torch, numpy; print(torch.__file__); print(numpy.__file__)"], { encoding: "utf8" });
      for (const file of where.trim().split("\n")) assert.ok(file.startsWith(path.join(storage(), "python-env")), `${file} is not inside the environment`);
      assert.ok(index.requests.some((r) => r.startsWith("/files/torch-")) && index.requests.some((r) => r.startsWith("/files/numpy-")));
      assert.ok(lines.some((l) => /Successfully installed .*torch/.test(l)), "pip's output is not in the log");
      assert.deepEqual(fractions, [...fractions].sort((a, b) => a - b), "progress went backwards");
      assert.equal(fractions.at(-1), 1);
    } finally {
      await index.close();
    }
  });

  test("an index without torch: a clear error, and the environment already there stays ready", { timeout: 300_000 }, async () => {
    const before = managedPython(storage());
    assert.ok(before, "needs the environment of the previous test");
    const index = await startPythonIndex(wheels, { omit: ["torch"] });
    try {
      await assert.rejects(setupEnvironment(options(storage(), index)), (err: unknown) => {
        assert.ok(err instanceof EnvSetupError);
        assert.equal(err.code, "package_missing");
        assert.match(err.message, /Installing PyTorch failed: the package index has no torch .*repotune\.python\.torchIndexUrl/);
        return true;
      });
    } finally {
      await index.close();
    }
    assert.equal(managedPython(storage()), before);
    assert.ok(!existsSync(path.join(storage(), "python-env.partial")));
  });

  test("cancelled during the PyTorch download: the installer dies, nothing half-made is kept or marked ready", { timeout: 300_000 }, async () => {
    for (const storageDir of [storage(), path.join(dir, "fresh")]) {
      const hadEnv = managedPython(storageDir);
      const index = await startPythonIndex(wheels, { stallProject: "torch", stallAfterBytes: 4 << 20 });
      const abort = new AbortController();
      void index.stalled.then(() => setTimeout(() => abort.abort(), 500));
      const t0 = Date.now();
      try {
        await assert.rejects(setupEnvironment(options(storageDir, index, { signal: abort.signal })), (err: unknown) => {
          assert.ok(err instanceof EnvSetupError);
          assert.equal(err.code, "cancelled");
          return true;
        });
      } finally {
        await index.close();
      }
      assert.ok(abort.signal.aborted, "the setup ended before the download stalled");
      console.log(`cancel: ended ${Date.now() - t0} ms after the start`);
      assert.deepEqual(leftoverInstallers(storageDir), [], "an installer process outlived the cancel");
      assert.ok(!existsSync(path.join(storageDir, "python-env.partial")), "the half-made environment was kept");
      assert.equal(managedPython(storageDir), hadEnv, "the environment in place changed");
      if (!hadEnv) assert.ok(!existsSync(path.join(storageDir, "python-env", READY_MARKER)));
    }
  });
});
