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

type Probe = { ok: true; selftest: TrainerSelftest } | { ok: false; reason: string };

async function probe(python: string, trainerRoot: string): Promise<Probe> {
  const { command, cwd, env } = trainerSpawn(python, trainerRoot);
  return new Promise((resolve) => {
    execFile(
      command,
      ["-m", "repotune_trainer", "selftest"],
      { cwd, env, timeout: 120_000, windowsHide: true, maxBuffer: 1 << 20 },
      (err, stdout, stderr) => {
        const code = (err as NodeJS.ErrnoException | null)?.code;
        if (code === "ENOENT") return resolve({ ok: false, reason: "not found" });
        if (code === "EACCES") return resolve({ ok: false, reason: "not executable" });
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
          return resolve({ ok: false, reason: `${missing ? `no ${missing}` : "selftest failed"}${parsed.message ? `: ${parsed.message}` : ""}` });
        }
        const lastErr = stderr.split("\n").map((l) => l.trim()).filter(Boolean).pop();
        resolve({ ok: false, reason: lastErr ?? (err ? err.message : "no answer from the selftest") });
      },
    );
  });
}

/** Checks one interpreter; throws a UserError naming the setting and what to install when it cannot train. */
export async function checkPython(python: string, trainerRoot = locateTrainerRoot()): Promise<TrainerSelftest> {
  const r = await probe(python, trainerRoot);
  if (r.ok) return r.selftest;
  throw new UserError(
    `The Python interpreter "${python}" cannot train (${r.reason}). RepoTune needs Python 3 with PyTorch and NumPy. ` +
      `${INSTALL_HINT}, or set ${PYTHON_SETTING} to an interpreter that has them.`,
    PYTHON_SETTING,
  );
}

/**
 * The configured interpreter when one is set (never silently another: the user chose it, and must hear when it
 * cannot train); otherwise the first with PyTorch of $REPOTUNE_PYTHON, python3 and python on PATH, and
 * /usr/bin/python3 (a system Python with distribution PyTorch, when a virtualenv shadows it).
 */
export async function findPython(
  configured: string | undefined,
  trainerRoot = locateTrainerRoot(),
): Promise<{ python: string; selftest: TrainerSelftest }> {
  const candidates = (configured?.trim() ? [configured] : [process.env.REPOTUNE_PYTHON, "python3", "python", "/usr/bin/python3"])
    .map((c) => c?.trim())
    .filter((c): c is string => !!c);
  const tried: string[] = [];
  for (const python of [...new Set(candidates)]) {
    const r = await probe(python, trainerRoot);
    if (r.ok) return { python, selftest: r.selftest };
    tried.push(`${python} (${r.reason})`);
  }
  throw new UserError(
    `RepoTune needs Python 3 with PyTorch and NumPy to train, and found none. Tried: ${tried.join("; ")}. ` +
      `${INSTALL_HINT}, then set ${PYTHON_SETTING} to that interpreter.`,
    PYTHON_SETTING,
  );
}
