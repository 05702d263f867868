// Why a trainer process ended without success, in words, for a new run (tune.ts) and a resumed one (resume.ts).
import { promises as fs } from "node:fs";
import * as path from "node:path";
import { UserError } from "./errors";
import { formatBytes } from "./format";
import type { TrainerExit } from "./trainerProcess";
import type { RunPaths } from "./runStore";

const MODEL_SETTING = "repotune.modelPath";
const PYTHON_SETTING = "repotune.pythonPath";
/** Below this much free space, a trainer that died without a word most likely could not write: say so. */
const NEARLY_FULL_BYTES = 16 * 2 ** 20;

export async function newestCheckpoint(runDir: string): Promise<string | null> {
  const dir = path.join(runDir, "checkpoints");
  const names = await fs.readdir(dir).catch(() => [] as string[]);
  const newest = names.filter((n) => /^step-\d+\.pt$/.test(n)).sort().pop();
  return newest ? path.join(dir, newest) : null;
}

export async function trainerFailure(exit: TrainerExit, paths: RunPaths): Promise<Error> {
  const final = exit.final;
  if (final?.event === "error") {
    const model = final.code === "bad_model" || final.code === "unsupported_arch";
    const hint = final.code === "out_of_memory"
      ? " Lower repotune.training.seqLen or the batch size, or train on a machine with more memory."
      : model ? " Choose another base model in repotune.modelPath." : "";
    return new UserError(`Training failed: ${final.message}${hint}`, model ? MODEL_SETTING : undefined);
  }
  if (exit.spawnError) return new UserError(`The trainer could not start: ${exit.spawnError}. Set ${PYTHON_SETTING} to a Python with PyTorch.`, PYTHON_SETTING);
  const how = exit.signal ? `was killed by ${exit.signal}` : exit.code !== null ? `exited with code ${exit.code}` : "ended";
  const checkpoint = await newestCheckpoint(paths.runDir);
  const resume = checkpoint ? ` The newest checkpoint (${path.basename(checkpoint)}) is kept: resume to continue from it.` : "";
  // A full disk can leave the trainer no room even for its error event (its events go to a file in the run folder).
  const free = await fs.statfs(paths.runDir).then((s) => s.bavail * s.bsize, () => null);
  if (free !== null && free < NEARLY_FULL_BYTES) {
    return new UserError(`The trainer ${how}: the disk that holds ${paths.runDir} is full (${formatBytes(free)} free). Free space on it, then resume.${resume}`);
  }
  const tail = exit.stderrTail.trim().split("\n").slice(-5).join("\n");
  return new Error(`The trainer ${how} without finishing${tail ? `:\n${tail}` : "."}\nThe full log is in ${paths.trainerLogPath}.${resume}`);
}
