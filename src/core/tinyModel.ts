// The built-in tiny model ("repotune.modelPath": "tiny"): generated once by the trainer package and cached.
// Its file name carries a hash of the generator's source, so a changed generator never serves a stale model.
import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { promises as fs } from "node:fs";
import * as path from "node:path";
import { trainerSpawn } from "./python";

const ARCH = "llama";
const SEED = 0;

export async function ensureTinyModel(python: string, trainerRoot: string, cacheDir: string): Promise<string> {
  const target = path.join(cacheDir, `tiny-${ARCH}-${await generatorHash(trainerRoot)}.gguf`);
  if (await exists(target)) return target;
  await fs.mkdir(cacheDir, { recursive: true });
  // Generated under a temporary name and renamed: two windows generating at once both end with a whole file.
  const tmp = path.join(cacheDir, `.${path.basename(target)}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`);
  const { command, cwd, env } = trainerSpawn(python, trainerRoot);
  try {
    await new Promise<void>((resolve, reject) => {
      execFile(
        command,
        ["-m", "repotune_trainer", "tiny-model", "--arch", ARCH, "--seed", String(SEED), "--out", path.resolve(tmp)],
        { cwd, env, timeout: 120_000, windowsHide: true },
        (err, _stdout, stderr) => {
          if (!err) return resolve();
          const detail = stderr.trim().split("\n").pop() ?? err.message;
          reject(new Error(`Generating the tiny model with ${python} failed: ${detail}. Check that this Python has PyTorch and NumPy (repotune.pythonPath), or set repotune.modelPath to a .gguf model file.`));
        },
      );
    });
    await fs.rename(tmp, target);
  } finally {
    await fs.rm(tmp, { force: true });
  }
  return target;
}

async function generatorHash(trainerRoot: string): Promise<string> {
  const pkg = path.join(trainerRoot, "repotune_trainer");
  const hash = createHash("sha256");
  for (const name of ["tiny.py", "gguf.py", "quants.py"]) {
    hash.update(name).update(await fs.readFile(path.join(pkg, name)).catch(() => Buffer.alloc(0)));
  }
  return hash.digest("hex").slice(0, 12);
}

async function exists(file: string): Promise<boolean> {
  return fs.stat(file).then((s) => s.isFile(), () => false);
}
