// The trainer environment RepoTune sets up itself: a virtual environment in global storage with the PyTorch build
// that fits this machine's GPU (CUDA, ROCm, Apple MPS or CPU) and NumPy, installed with uv when it is on PATH, else
// pip. Built beside its final place and moved there only when the trainer's self-test passes in it, so a cancelled
// or failed setup never leaves an environment that looks ready, and never breaks the one already there.
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { existsSync, promises as fs } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { TrainerSelftest } from "../protocol/trainer";
import { checkPython } from "./python";
import { messageOf } from "./errors";

export const ENV_DIR_NAME = "python-env";
/** Written into the environment only after its self-test passed: an environment without it is never used. */
export const READY_MARKER = "repotune-ready.json";

const TORCH_WHEELS = "https://download.pytorch.org/whl";

export type Accelerator = "cuda" | "rocm" | "mps" | "none";
export const ACCELERATOR_WORDS: Record<Accelerator, string> = { cuda: "CUDA", rocm: "ROCm", mps: "Apple MPS", none: "no GPU" };

export interface GpuInfo {
  vendor: "nvidia" | "amd";
  names: string[];
  driverVersion: string | null;
  /** Highest CUDA version the NVIDIA driver supports (nvidia-smi's "CUDA Version"), e.g. "12.4". */
  cudaVersion: string | null;
  /** The installed ROCm release (/opt/rocm/.info/version), e.g. "6.2.0". */
  rocmVersion: string | null;
}

/** What decides the PyTorch build: the platform and the GPU its tools report. */
export interface DeviceDescription {
  platform: NodeJS.Platform;
  arch: string;
  gpu: GpuInfo | null;
}

export interface TorchBuild {
  accelerator: Accelerator;
  /** Where `torch` is installed from; null = the default index (PyPI, or the user's pip/uv configuration). */
  indexUrl: string | null;
  /** One sentence for the log and the progress notification. */
  reason: string;
}

// --- Reading the GPU tools' output (pure, tested against recorded outputs) ------------------------------------------

/** `nvidia-smi -q` (or the plain table, or `-L`): driver, CUDA version and GPU names; null when it lists no GPU. */
export function parseNvidiaSmi(text: string): Pick<GpuInfo, "names" | "driverVersion" | "cudaVersion"> | null {
  const driverVersion = /Driver Version\s*:\s*([\d.]+)/.exec(text)?.[1] ?? null;
  const cudaVersion = /CUDA Version\s*:\s*(\d+\.\d+)/.exec(text)?.[1] ?? null;
  const names = [
    ...[...text.matchAll(/^\s*Product Name\s*:\s*(.+?)\s*$/gm)].map((m) => m[1]),
    ...[...text.matchAll(/^GPU \d+:\s*(.+?)\s*\(UUID/gm)].map((m) => m[1]),
  ];
  if (names.length === 0) {
    // The plain table: "|   0  NVIDIA GeForce RTX 4090        Off |" rows below the header.
    for (const m of text.matchAll(/^\|\s+\d+\s+(.+?)\s+(?:On|Off)\s+\|/gm)) names.push(m[1]);
  }
  return names.length ? { names, driverVersion, cudaVersion } : null;
}

/** `rocminfo` (GPU agents' marketing names) or `rocm-smi --showproductname` (card series); null when no GPU. */
export function parseRocm(text: string): string[] | null {
  const names: string[] = [];
  // rocminfo lists CPU agents too: keep the agents whose Device Type is GPU.
  for (const agent of text.split(/\*{5,}\s*\n\s*Agent \d+/)) {
    if (!/Device Type:\s*GPU/.test(agent)) continue;
    const name = /Marketing Name:\s*(.+?)\s*$/m.exec(agent)?.[1] ?? /^\s*Name:\s*(gfx\w+)/m.exec(agent)?.[1];
    if (name) names.push(name);
  }
  for (const m of text.matchAll(/GPU\[\d+\]\s*:\s*Card (?:series|Series):\s*(.+?)\s*$/gm)) names.push(m[1]);
  return names.length ? names : null;
}

// --- Choosing the PyTorch build (pure) ------------------------------------------------------------------------------

const version = (v: string): number[] => v.split(".").map((n) => Number.parseInt(n, 10) || 0);
const atLeast = (v: string, min: string): boolean => {
  const [a, b] = [version(v), version(min)];
  for (let i = 0; i < Math.max(a.length, b.length); i++) if ((a[i] ?? 0) !== (b[i] ?? 0)) return (a[i] ?? 0) > (b[i] ?? 0);
  return true;
};

/**
 * PyTorch's CUDA wheel indexes, newest first, with the least driver CUDA version each needs (as of PyTorch 2.9).
 * cu128 and not cu130 on the newest drivers: CUDA 13 builds drop pre-Turing GPUs, and cu128 covers Blackwell. CUDA 12
 * builds run on any 12.x driver (CUDA minor version compatibility), so a 12.0-12.5 driver gets cu126.
 */
const CUDA_INDEXES: { tag: string; minDriverCuda: string }[] = [
  { tag: "cu128", minDriverCuda: "12.8" },
  { tag: "cu126", minDriverCuda: "12.0" },
  { tag: "cu118", minDriverCuda: "11.8" },
];
/** PyTorch's ROCm wheel indexes (as of PyTorch 2.9); the wheels carry their own ROCm libraries. */
const ROCM_INDEXES = ["6.4", "6.3"];

/** The PyTorch build for a device: a pure function of what the GPU tools reported. */
export function chooseTorchBuild(device: DeviceDescription): TorchBuild {
  const gpu = device.gpu;
  if (device.platform === "darwin") {
    return device.arch === "arm64"
      ? { accelerator: "mps", indexUrl: null, reason: "macOS on Apple silicon: the standard PyTorch build, which trains on the GPU through MPS" }
      : { accelerator: "none", indexUrl: null, reason: "macOS on Intel: the standard PyTorch build (CPU)" };
  }
  if (gpu?.vendor === "nvidia") {
    const names = gpu.names.join(", ");
    if (gpu.cudaVersion === null) {
      return { accelerator: "cuda", indexUrl: `${TORCH_WHEELS}/cu126`, reason: `NVIDIA GPU (${names}), driver's CUDA version not reported: the CUDA 12.6 build` };
    }
    const fit = CUDA_INDEXES.find((c) => atLeast(gpu.cudaVersion!, c.minDriverCuda));
    if (fit) {
      return { accelerator: "cuda", indexUrl: `${TORCH_WHEELS}/${fit.tag}`, reason: `NVIDIA GPU (${names}) with a driver for CUDA ${gpu.cudaVersion}: the ${fit.tag} build` };
    }
    return {
      accelerator: "none",
      indexUrl: `${TORCH_WHEELS}/cpu`,
      reason: `NVIDIA GPU (${names}), but its driver supports only CUDA ${gpu.cudaVersion} and PyTorch needs 11.8 or newer: the CPU build. Update the NVIDIA driver and set up the environment again to train on the GPU`,
    };
  }
  if (gpu?.vendor === "amd" && device.platform === "linux") {
    const installed = gpu.rocmVersion;
    // The newest index not newer than the installed ROCm (its kernel driver); the newest when that is not known.
    const tag = installed ? (ROCM_INDEXES.find((r) => atLeast(installed, r)) ?? ROCM_INDEXES[ROCM_INDEXES.length - 1]) : ROCM_INDEXES[0];
    return {
      accelerator: "rocm",
      indexUrl: `${TORCH_WHEELS}/rocm${tag}`,
      reason: `AMD GPU (${gpu.names.join(", ")})${installed ? ` with ROCm ${installed}` : ""}: the ROCm ${tag} build`,
    };
  }
  return { accelerator: "none", indexUrl: `${TORCH_WHEELS}/cpu`, reason: "no NVIDIA or AMD GPU found: the CPU build (smaller; training runs on the CPU)" };
}

/** What a working interpreter trains on, from its self-test: ROCm builds of PyTorch also call their device "cuda". */
export function acceleratorOf(selftest: Pick<TrainerSelftest, "device" | "torch">): Accelerator {
  if (selftest.device === "cuda") return /\+rocm/i.test(selftest.torch ?? "") ? "rocm" : "cuda";
  if (selftest.device === "mps") return "mps";
  return "none";
}

/**
 * Why a PyTorch that works cannot use the GPU this machine has (a CPU build where nvidia-smi lists an NVIDIA GPU, a
 * CUDA build on an AMD machine…), or null. Training still works then, on the CPU, many times slower.
 */
export function torchBuildMismatch(device: DeviceDescription, selftest: Pick<TrainerSelftest, "device" | "torch" | "python">): string | null {
  const gpu = device.gpu;
  if (!gpu || device.platform === "darwin" || selftest.device !== "cpu") return null;
  const torch = selftest.torch ?? "?";
  const build = /\+cpu/.test(torch) ? "a CPU-only build" : /\+cu\d+/.test(torch) ? `a CUDA build (${torch})` : /\+rocm/.test(torch) ? `a ROCm build (${torch})` : `a build that sees no GPU`;
  const which = gpu.vendor === "nvidia" ? "NVIDIA" : "AMD";
  const driver = gpu.vendor === "nvidia" && /\+cu\d+/.test(torch) ? " (its driver may be older than this build needs)" : "";
  return `${selftest.python} has PyTorch ${torch}, ${build}, which does not use the ${which} GPU this computer has ` +
    `(${gpu.names.join(", ")})${driver}: training would run on the CPU, many times slower. ` +
    `"RepoTune: Set up trainer environment" installs the PyTorch build for this GPU.`;
}

// --- Asking the machine ---------------------------------------------------------------------------------------------

type Runner = (command: string, args: string[]) => Promise<string | null>;

/** A tool's stdout, or null when it is missing, fails or hangs (a GPU tool can hang on a wedged driver). */
const runTool: Runner = (command, args) =>
  new Promise((resolve) => {
    execFile(command, args, { timeout: 15_000, windowsHide: true, maxBuffer: 4 << 20 }, (err, stdout) => resolve(err ? null : stdout));
  });

/** The platform and the GPU, from nvidia-smi, then rocminfo / rocm-smi. */
export async function detectDevice(run: Runner = runTool): Promise<DeviceDescription> {
  const base = { platform: process.platform, arch: process.arch };
  if (process.platform === "darwin") return { ...base, gpu: null };
  const nvidia = await run("nvidia-smi", ["-q"]);
  const parsed = nvidia ? parseNvidiaSmi(nvidia) : null;
  if (parsed) return { ...base, gpu: { vendor: "nvidia", ...parsed, rocmVersion: null } };
  if (process.platform === "linux") {
    const rocm = (await run("rocminfo", [])) ?? (await run("rocm-smi", ["--showproductname"]));
    const names = rocm ? parseRocm(rocm) : null;
    if (names) {
      const rocmVersion = (await fs.readFile("/opt/rocm/.info/version", "utf8").catch(() => "")).trim().split("-")[0] || null;
      return { ...base, gpu: { vendor: "amd", names, driverVersion: null, cudaVersion: null, rocmVersion } };
    }
  }
  return { ...base, gpu: null };
}

/** The executable `name` on PATH (PATHEXT on Windows), or null. */
export function onPath(name: string, env: NodeJS.ProcessEnv = process.env): string | null {
  const exts = process.platform === "win32" ? (env.PATHEXT ?? ".EXE;.CMD;.BAT").split(";") : [""];
  for (const dir of (env.PATH ?? env.Path ?? "").split(path.delimiter).filter(Boolean)) {
    for (const ext of exts) {
      const file = path.join(dir, name + ext.toLowerCase());
      if (existsSync(file)) return file;
    }
  }
  return null;
}

// --- The managed environment ----------------------------------------------------------------------------------------

export function envPython(envDir: string): string {
  return process.platform === "win32" ? path.join(envDir, "Scripts", "python.exe") : path.join(envDir, "bin", "python");
}

/** The interpreter of the environment RepoTune set up under `storageDir`, when its setup finished; else null. */
export function managedPython(storageDir: string): string | null {
  const dir = path.join(storageDir, ENV_DIR_NAME);
  const python = envPython(dir);
  return existsSync(path.join(dir, READY_MARKER)) && existsSync(python) ? python : null;
}

export type SetupErrorCode = "cancelled" | "no_python" | "package_missing" | "network" | "install_failed" | "selftest_failed";

export class EnvSetupError extends Error {
  constructor(readonly code: SetupErrorCode, message: string) {
    super(message);
    this.name = "EnvSetupError";
  }
}

export interface SetupOptions {
  /** Global storage: the environment becomes `<storageDir>/python-env`. */
  storageDir: string;
  trainerRoot: string;
  /** Interpreters to try for creating the environment, before python3, python and /usr/bin/python3. */
  basePythons?: string[];
  /** Where PyTorch comes from, instead of the build chosen for the GPU (a mirror, or a local index). */
  torchIndexUrl?: string;
  /** Where NumPy (and, with no GPU index, everything) comes from; default: PyPI or the user's pip/uv configuration. */
  indexUrl?: string;
  /** "auto" (default): uv when on PATH, else pip; "pip" even where uv is there. */
  installer?: "auto" | "pip";
  /** The device to choose a build for (default: detected). */
  device?: DeviceDescription;
  env?: NodeJS.ProcessEnv;
  signal?: AbortSignal;
  log?: (line: string) => void;
  /** Fraction done (0..1) and what is happening, for a progress bar. */
  onProgress?: (fraction: number, message: string) => void;
}

export interface SetupResult {
  python: string;
  selftest: TrainerSelftest;
  build: TorchBuild;
  installer: "uv" | "pip";
}

/**
 * Creates (or replaces) the managed environment and returns its interpreter, self-tested. Throws EnvSetupError with a
 * message that says what happened and what to do; after a failure or a cancel the previous environment is untouched.
 */
export async function setupEnvironment(opts: SetupOptions): Promise<SetupResult> {
  const log = opts.log ?? (() => {});
  const progress = (f: number, m: string) => {
    log(m);
    opts.onProgress?.(f, m);
  };
  const env = opts.env ?? process.env;
  const finalDir = path.join(opts.storageDir, ENV_DIR_NAME);
  const workDir = `${finalDir}.partial`;
  const checkCancel = () => {
    if (opts.signal?.aborted) throw new EnvSetupError("cancelled", "The trainer environment setup was cancelled; nothing was changed.");
  };

  progress(0.02, "Looking for the GPU…");
  const device = opts.device ?? (await detectDevice());
  const chosen = chooseTorchBuild(device);
  const build: TorchBuild = opts.torchIndexUrl ? { ...chosen, indexUrl: opts.torchIndexUrl, reason: `${chosen.reason}, from ${opts.torchIndexUrl} (repotune.python.torchIndexUrl)` } : chosen;
  log(`PyTorch build: ${build.reason}`);
  checkCancel();

  const uv = opts.installer === "pip" ? null : onPath("uv", env);
  const installer = uv ? "uv" : "pip";
  const base = await findBasePython([...(opts.basePythons ?? []), "python3", "python", "/usr/bin/python3"], installer === "pip", env);
  if (!base && installer === "pip") {
    throw new EnvSetupError(
      "no_python",
      "No Python 3.9 or newer with the venv module was found to create the trainer environment. Install Python 3 " +
        "(https://www.python.org/downloads/; on Debian or Ubuntu also `sudo apt install python3-venv`), or install uv, then try again.",
    );
  }

  await fs.rm(workDir, { recursive: true, force: true });
  await fs.mkdir(opts.storageDir, { recursive: true });
  // The installer's lines go to the progress message; the bar moves from step to step (pip tells no total).
  const exec = (at: number, step: string, command: string, args: string[]) =>
    runInstaller({ step, command, args, env, signal: opts.signal, log, onLine: (line) => opts.onProgress?.(at, `${step}: ${line.slice(0, 120)}`) });
  try {
    progress(0.05, `Creating the environment with ${installer}${base ? ` from ${base}` : ""}…`);
    if (uv) await exec(0.05, "Creating the environment", uv, ["venv", "--no-project", ...(base ? ["--python", base] : []), workDir]);
    else await exec(0.05, "Creating the environment", base!, ["-m", "venv", workDir]);
    const python = envPython(workDir);
    const install = (pkg: string, index: string | null): [string, string[]] => {
      const indexArgs = index ? ["--index-url", index] : [];
      return uv
        ? [uv, ["pip", "install", "--python", python, ...indexArgs, pkg]]
        : [python, ["-m", "pip", "install", "--disable-pip-version-check", "--no-input", "--progress-bar", "off", ...indexArgs, pkg]];
    };

    const size = build.accelerator === "none" ? "a few hundred MB" : "a few GB";
    progress(0.15, `Installing PyTorch (${build.accelerator === "none" ? "CPU" : ACCELERATOR_WORDS[build.accelerator]} build; the download is ${size})…`);
    await exec(0.15, "Installing PyTorch", ...install("torch", build.indexUrl ?? opts.indexUrl ?? null));
    progress(0.8, "Installing NumPy…");
    await exec(0.8, "Installing NumPy", ...install("numpy", opts.indexUrl ?? null));
    checkCancel();

    progress(0.9, "Checking that PyTorch trains in the new environment…");
    await selftestOrThrow(python, opts.trainerRoot);
    checkCancel();
    // Only now does the old environment go: a failed or cancelled setup leaves it as it was.
    await fs.rm(finalDir, { recursive: true, force: true });
    await fs.rename(workDir, finalDir);
  } catch (err) {
    await fs.rm(workDir, { recursive: true, force: true }).catch(() => {});
    throw err;
  }
  const python = envPython(finalDir);
  const selftest = await selftestOrThrow(python, opts.trainerRoot);
  const marker = { python, torch: selftest.torch, numpy: selftest.numpy, device: selftest.device, build, installer, created: new Date().toISOString() };
  await fs.writeFile(path.join(finalDir, READY_MARKER), `${JSON.stringify(marker, null, 2)}\n`);
  progress(1, `The trainer environment is ready: PyTorch ${selftest.torch} on ${deviceWords(selftest)}.`);
  return { python, selftest, build, installer };
}

/** "the CPU", or the GPU's name. */
export function deviceWords(t: Pick<TrainerSelftest, "device" | "device_name">): string {
  return t.device === "cpu" || !t.device ? "the CPU" : (t.device_name ?? t.device);
}

async function selftestOrThrow(python: string, trainerRoot: string): Promise<TrainerSelftest> {
  try {
    return await checkPython(python, trainerRoot);
  } catch (err) {
    throw new EnvSetupError("selftest_failed", `PyTorch was installed, but the trainer's self-test failed in the new environment: ${messageOf(err)}`);
  }
}

/** The first interpreter that runs Python 3.9+ (with venv and ensurepip when pip creates the environment). */
async function findBasePython(candidates: string[], needVenv: boolean, env: NodeJS.ProcessEnv): Promise<string | null> {
  const check = `import sys${needVenv ? ", venv, ensurepip" : ""}; sys.exit(0 if sys.version_info >= (3, 9) else 1)`;
  for (const python of [...new Set(candidates.map((c) => c.trim()).filter(Boolean))]) {
    const ok = await new Promise<boolean>((resolve) =>
      execFile(python, ["-c", check], { env, timeout: 30_000, windowsHide: true }, (err) => resolve(!err)),
    );
    if (ok) return python;
  }
  return null;
}

/** Classifies an installer's failure from its output (pip's and uv's wording). */
export function installFailure(step: string, output: string, exitCode: number | null): EnvSetupError {
  const missing =
    /No matching distribution found for ([\w.-]+)/.exec(output)?.[1] ??
    /Because ([\w.-]+) was not found in the package registry/.exec(output)?.[1] ??
    /([\w.-]+) was not found in the package registry/.exec(output)?.[1];
  const index = /--index-url (\S+)/.exec(output)?.[1];
  if (missing) {
    return new EnvSetupError(
      "package_missing",
      `${step} failed: the package index has no ${missing} for this Python and platform (${process.platform} ${process.arch}). ` +
        `Check repotune.python.torchIndexUrl and repotune.python.indexUrl (a mirror must carry the PyTorch wheels), or install PyTorch ` +
        `yourself and set repotune.pythonPath to that Python.`,
    );
  }
  if (/Failed to establish a new connection|Connection refused|Name or service not known|Temporary failure in name resolution|Failed to fetch|dns error|timed out|tcp connect error/i.test(output)) {
    return new EnvSetupError(
      "network",
      `${step} failed: the package index could not be reached${index ? ` (${index})` : ""}. Check the network or proxy, or point ` +
        `repotune.python.indexUrl / repotune.python.torchIndexUrl at a mirror you can reach, then retry.`,
    );
  }
  const tail = output.split("\n").map((l) => l.trim()).filter(Boolean).slice(-3).join(" ");
  return new EnvSetupError("install_failed", `${step} failed (exit code ${exitCode}): ${tail || "no output"}. The log has the installer's full output.`);
}

/** Runs one installer step, its output line by line to the log; cancelling kills it with all its children. */
function runInstaller(p: {
  step: string; command: string; args: string[]; env: NodeJS.ProcessEnv; signal?: AbortSignal;
  log: (line: string) => void; onLine: (line: string) => void;
}): Promise<void> {
  if (p.signal?.aborted) return Promise.reject(new EnvSetupError("cancelled", "The trainer environment setup was cancelled; nothing was changed."));
  p.log(`$ ${p.command} ${p.args.join(" ")}`);
  return new Promise((resolve, reject) => {
    // Its own process group on POSIX: pip and uv start builds and downloads of their own, which must die with it.
    const child = spawn(p.command, p.args, { env: { ...p.env, PYTHONUNBUFFERED: "1" }, detached: process.platform !== "win32", windowsHide: true, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    let cancelled = false;
    const onAbort = () => {
      cancelled = true;
      killTree(child);
    };
    p.signal?.addEventListener("abort", onAbort, { once: true });
    for (const stream of [child.stdout, child.stderr]) {
      let partial = "";
      stream.setEncoding("utf8");
      stream.on("data", (chunk: string) => {
        output = (output + chunk).slice(-64_000);
        const lines = (partial + chunk).split(/\r?\n|\r/);
        partial = lines.pop() ?? "";
        for (const line of lines.map((l) => l.trimEnd()).filter(Boolean)) {
          p.log(line);
          p.onLine(line.trim());
        }
      });
    }
    child.on("error", (err) => {
      p.signal?.removeEventListener("abort", onAbort);
      reject(new EnvSetupError("install_failed", `${p.step} failed: ${p.command} could not be started (${err.message}).`));
    });
    child.on("close", (code) => {
      p.signal?.removeEventListener("abort", onAbort);
      if (cancelled) reject(new EnvSetupError("cancelled", "The trainer environment setup was cancelled; nothing was changed."));
      else if (code === 0) resolve();
      else reject(installFailure(p.step, `${p.command} ${p.args.join(" ")}\n${output}`, code));
    });
  });
}

function killTree(child: ChildProcess): void {
  if (child.pid === undefined || child.exitCode !== null) return;
  if (process.platform === "win32") {
    execFile("taskkill", ["/pid", String(child.pid), "/T", "/F"], () => {});
    return;
  }
  const signalGroup = (signal: NodeJS.Signals) => {
    try {
      process.kill(-child.pid!, signal);
    } catch {
      // The group is gone already.
    }
  };
  signalGroup("SIGTERM");
  const hard = setTimeout(() => signalGroup("SIGKILL"), 3000);
  hard.unref();
  child.once("close", () => clearTimeout(hard));
}

/** For the log: the platform in words. */
export function describeDevice(d: DeviceDescription): string {
  const gpu = d.gpu
    ? `${d.gpu.vendor === "nvidia" ? "NVIDIA" : "AMD"} ${d.gpu.names.join(", ")}${d.gpu.cudaVersion ? ` (driver for CUDA ${d.gpu.cudaVersion})` : ""}${d.gpu.rocmVersion ? ` (ROCm ${d.gpu.rocmVersion})` : ""}`
    : "no NVIDIA or AMD GPU";
  return `${d.platform} ${d.arch} (${os.release()}), ${gpu}`;
}
