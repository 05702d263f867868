// The trainer's own prediction of its peak memory (trainer/repotune_trainer/memory.py), asked before training starts
// so that the user sees what a run will take on the chosen device.
import { execFile } from "node:child_process";
import { TrainerMemoryEstimate } from "../protocol/trainer";
import { trainerSpawn } from "./python";

export interface EstimateRequest {
  python: string;
  trainerRoot: string;
  modelPath: string;
  seqLen: number;
  batch: number;
  rank: number;
  /** Where training will run: "cpu", or a GPU kind ("cuda", "mps"), whose memory the GPU formula describes. */
  device: string;
  /** The trainer's --base-weights form (default keep). */
  baseWeights?: "keep" | "q8_0" | "q4_0";
  /** The trainer's --grad-checkpoint. */
  gradCheckpoint?: boolean;
}

export function estimateMemory(r: EstimateRequest): Promise<TrainerMemoryEstimate> {
  const { command, cwd, env } = trainerSpawn(r.python, r.trainerRoot);
  const args = [
    "-m", "repotune_trainer.memory", "--model", r.modelPath, "--seq-len", String(r.seqLen), "--batch", String(r.batch),
    "--rank", String(r.rank), "--device", r.device === "cpu" ? "cpu" : r.device === "mps" ? "mps" : "cuda",
    ...(r.baseWeights ? ["--base-weights", r.baseWeights] : []), ...(r.gradCheckpoint ? ["--grad-checkpoint"] : []),
  ];
  return new Promise((resolve, reject) => {
    execFile(command, args, { cwd, env, timeout: 120_000, windowsHide: true }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`the memory estimate failed: ${stderr.trim().split("\n").pop() ?? err.message}`));
      const line = stdout.trim().split("\n").pop() ?? "";
      try {
        resolve(TrainerMemoryEstimate.parse(JSON.parse(line)));
      } catch {
        reject(new Error(`the memory estimate printed no valid answer: ${line.slice(0, 200)}`));
      }
    });
  });
}
