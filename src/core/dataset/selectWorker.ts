// Worker thread entry (bundled to dist/selectWorker.js): judges batches of files for selectFiles, so that the secret
// scan, which is CPU-bound, runs on several cores. Messages: in { id, paths }, out { id, verdicts } in the same order.
import { parentPort, workerData } from "node:worker_threads";
import { Judge, type JudgeRules, type Keep, type Verdict } from "./judge";

export interface WorkerSetup {
  folder: string;
  rules: JudgeRules;
  keep: Keep;
}

export interface WorkerBatch {
  id: number;
  paths: string[];
}

export interface WorkerReply {
  id: number;
  verdicts: Verdict[];
}

const port = parentPort;
if (port) {
  const setup = workerData as WorkerSetup;
  const judge = new Judge(setup.folder, setup.rules, setup.keep, true);
  port.on("message", async (batch: WorkerBatch) => {
    const verdicts: Verdict[] = [];
    for (const rel of batch.paths) verdicts.push(await judge.judge(rel));
    port.postMessage({ id: batch.id, verdicts } satisfies WorkerReply);
  });
}
