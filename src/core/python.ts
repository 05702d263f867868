// Finds the Python that trains: one that runs the trainer package's selftest with PyTorch and NumPy importable.
// Like a language server binary, the interpreter is located, checked, and explained to the user when missing.
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import * as path from "node:path";
import { TrainerSelftest } from "../protocol/trainer";
import { UserError } from "./errors";

export const PYTHON_SETTING = "repotune.pythonPath";

const INSTALL_HINT =
  "Install PyTorch and NumPy for it (for example `python3 -m pip install torch numpy`; for GPU builds see https://pytorch.org/get-started/locally/)";

/** Settings of the user's environment the trainer may need (GPU selection, libraries, threads); nothing else passes. */
const PASSED_ENV = [
  "PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "TMP", "TEMP", "USERPROFILE", "SYSTEMROOT", "APPDATA", "LOCALAPPDATA",
  "LD_LIBRARY_PATH", "DYLD_LIBRARY_PATH", "VIRTUAL_ENV", "CONDA_PREFIX", "PYENV_ROOT", "PYENV_VERSION",
  "CUDA_VISIBLE_DEVICES", "CUDA_HOME", "CUDA_PATH", "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "HSA_OVERRIDE_GFX_VERSION",
  "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TORCH_HOME",
];
const PASSED_ENV_PREFIXES = ["PYTORCH_", "CUDA_", "NCCL_"];

/** The minimal environment every trainer process runs with; PYTHONPATH is the trainer package only. */
function trainerEnv(trainerRoot: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (value !== undefined && (PASSED_ENV.includes(key) || PASSED_ENV_PREFIXES.some((p) => key.startsWith(p)))) env[key] = value;
  }
  env.PYTHONPATH = trainerRoot;
  env.PYTHONUNBUFFERED = "1";
  // `python -m` puts the current directory first on sys.path, and that may be the repository being trained on: a
  // `json.py` or `torch.py` there would run in place of the real module (Python 3.11+ honours this).
  env.PYTHONSAFEPATH = "1";
  return env;
}

/**
 * How every trainer process starts: in the trainer folder, so that no file of the repository being trained on can
 * shadow a module (`python -m` puts the working directory first on sys.path; PYTHONSAFEPATH covers this only on
 * Python 3.11+), with the minimal environment, and with a relative interpreter path made absolute to stay valid.
 */
export function trainerSpawn(python: string, trainerRoot: string): { command: string; cwd: string; env: NodeJS.ProcessEnv } {
  const command = /[\\/]/.test(python) ? path.resolve(python) : python;
  return { command, cwd: trainerRoot, env: trainerEnv(trainerRoot) };
}

/** The trainer folder next to the bundle (dist/ or out/test/unit/), found by walking up from this file. */
export function locateTrainerRoot(from = __dirname): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, "trainer");
    if (existsSync(path.join(candidate, "repotune_trainer", "__main__.py"))) return candidate;
    if (path.dirname(dir) === dir) return path.join(from, "..", "trainer");
  }
}

/** Why an interpreter cannot train: it does not run at all, it lacks PyTorch or NumPy, or PyTorch fails in it. */
export type PythonProblem = "no_python" | "no_torch" | "broken";

type Probe = { ok: true; selftest: TrainerSelftest } | { ok: false; reason: string; problem: PythonProblem };

async function probe(python: string, trainerRoot: string): Promise<Probe> {
  const { command, cwd, env } = trainerSpawn(python, trainerRoot);
  return new Promise((resolve) => {
    execFile(
      command,
      ["-m", "repotune_trainer", "selftest"],
      { cwd, env, timeout: 120_000, windowsHide: true, maxBuffer: 1 << 20 },
      (err, stdout, stderr) => {
        const code = (err as NodeJS.ErrnoException | null)?.code;
        if (code === "ENOENT") return resolve({ ok: false, reason: "not found", problem: "no_python" });
        if (code === "EACCES") return resolve({ ok: false, reason: "not executable", problem: "no_python" });
        const line = stdout.split("\n").map((l) => l.trim()).filter(Boolean).pop();
        let parsed: TrainerSelftest | undefined;
        try {
          parsed = line ? TrainerSelftest.parse(JSON.parse(line)) : undefined;
        } catch {
          parsed = undefined;
        }
        if (parsed?.ok) return resolve({ ok: true, selftest: parsed });
        if (parsed) {
          const missing = [parsed.torch === null && "PyTorch", parsed.numpy === null && "NumPy"].filter(Boolean).join(" and ");
          return resolve({
            ok: false,
            reason: `${missing ? `no ${missing}` : "selftest failed"}${parsed.message ? `: ${parsed.message}` : ""}`,
            problem: missing ? "no_torch" : "broken",
          });
        }
        const lastErr = stderr.split("\n").map((l) => l.trim()).filter(Boolean).pop();
        // A Python 2, or a file that is no Python at all, cannot run the trainer package: as good as no Python.
        resolve({ ok: false, reason: lastErr ?? (err ? err.message : "no answer from the selftest"), problem: "no_python" });
      },
    );
  });
}

/** An interpreter that cannot train, and which kind of problem that is (each has its fix button). */
export class PythonEnvError extends UserError {
  constructor(message: string, readonly problem: PythonProblem) {
    super(message, PYTHON_SETTING);
    this.name = "PythonEnvError";
  }
}

const SETUP_HINT = `or run "RepoTune: Set up trainer environment" to have RepoTune install them in an environment of its own`;

/** Checks one interpreter; throws a PythonEnvError naming the setting and what to install when it cannot train. */
export async function checkPython(python: string, trainerRoot = locateTrainerRoot()): Promise<TrainerSelftest> {
  const r = await probe(python, trainerRoot);
  if (r.ok) return r.selftest;
  throw new PythonEnvError(
    `The Python interpreter "${python}" cannot train (${r.reason}). RepoTune needs Python 3 with PyTorch and NumPy. ` +
      `${INSTALL_HINT}, set ${PYTHON_SETTING} to an interpreter that has them, ${SETUP_HINT}.`,
    r.problem,
  );
}

export interface PythonSearch {
  /** The environment RepoTune set up (src/core/pythonEnv.ts managedPython), when there is a ready one. */
  managed?: string | null;
  /** The Python extension's interpreter for the workspace (asked only when the ones before it cannot train). */
  fromExtension?: () => Promise<string | undefined>;
}

/**
 * The configured interpreter when one is set (never silently another: the user chose it, and must hear when it
 * cannot train); otherwise the first with PyTorch of: the environment RepoTune set up, the Python extension's
 * interpreter, $REPOTUNE_PYTHON, python3 and python on PATH, and /usr/bin/python3 (a system Python with distribution
 * PyTorch, when a virtualenv shadows it).
 */
export async function findPython(
  configured: string | undefined,
  trainerRoot = locateTrainerRoot(),
  search: PythonSearch = {},
): Promise<{ python: string; selftest: TrainerSelftest }> {
  const tried: string[] = [];
  const problems: PythonProblem[] = [];
  const seen = new Set<string>();
  const attempt = async (candidate: string | null | undefined) => {
    const python = candidate?.trim();
    if (!python || seen.has(python)) return null;
    seen.add(python);
    const r = await probe(python, trainerRoot);
    if (r.ok) return { python, selftest: r.selftest };
    tried.push(`${python} (${r.reason})`);
    problems.push(r.problem);
    return null;
  };
  if (configured?.trim()) {
    const hit = await attempt(configured);
    if (hit) return hit;
  } else {
    const early = (await attempt(search.managed)) ?? (await attempt(await search.fromExtension?.().catch(() => undefined)));
    if (early) return early;
    for (const python of [process.env.REPOTUNE_PYTHON, "python3", "python", "/usr/bin/python3"]) {
      const hit = await attempt(python);
      if (hit) return hit;
    }
  }
  // The most fixable problem names the kind: a Python that runs but lacks PyTorch beats one that is not there.
  const problem: PythonProblem = problems.includes("broken") ? "broken" : problems.includes("no_torch") ? "no_torch" : "no_python";
  const install = problem === "no_python" ? "Install Python 3 (https://www.python.org/downloads/) with PyTorch and NumPy" : INSTALL_HINT;
  throw new PythonEnvError(
    `RepoTune needs Python 3 with PyTorch and NumPy to train, and found none. Tried: ${tried.join("; ")}. ` +
      `${install}, then set ${PYTHON_SETTING} to that interpreter, ${SETUP_HINT}.`,
    problem,
  );
}

/**
 * The interpreter the Python extension (ms-python.python) has selected for `resource`, from its exported API, or
 * undefined. Everything is feature-detected: the API has changed across versions, and other extensions may stand in.
 * The current API: environments.getActiveEnvironmentPath(resource) -> { id, path }, and
 * environments.resolveEnvironment(that) -> { executable: { uri } }; older ones: settings.getExecutionDetails(resource).
 */
export async function interpreterFromPythonExtension(api: unknown, resource?: unknown): Promise<string | undefined> {
  const obj = (v: unknown): Record<string, unknown> | undefined => (v !== null && typeof v === "object" ? (v as Record<string, unknown>) : undefined);
  const fn = (v: unknown): ((...args: unknown[]) => unknown) | undefined => (typeof v === "function" ? (v as (...args: unknown[]) => unknown) : undefined);
  const exports = obj(api);
  if (!exports) return undefined;
  if (exports.ready instanceof Promise) await exports.ready.catch(() => {});
  const environments = obj(exports.environments);
  const getActive = fn(environments?.getActiveEnvironmentPath);
  if (environments && getActive) {
    const active = obj(getActive.call(environments, resource));
    const resolve = fn(environments.resolveEnvironment);
    const resolved = active && resolve ? obj(await resolve.call(environments, active)) : undefined;
    const uri = obj(obj(resolved?.executable)?.uri);
    const fsPath = uri?.fsPath;
    if (typeof fsPath === "string" && fsPath) return fsPath;
    // Unresolvable (a conda env being created…): its path may still name the interpreter itself.
    if (typeof active?.path === "string" && /python[\d.]*(\.exe)?$/i.test(active.path)) return active.path;
  }
  const details = obj(fn(obj(exports.settings)?.getExecutionDetails)?.call(exports.settings, resource));
  const command = details?.execCommand;
  return Array.isArray(command) && typeof command[0] === "string" && command[0] ? command[0] : undefined;
}
