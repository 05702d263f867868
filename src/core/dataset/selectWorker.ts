// Worker thread entry (bundled to dist/selectWorker.js), for the dataset step's CPU-bound work on several cores:
// judging files for selectFiles (the secret scan above all; messages in { id, paths }, out { id, verdicts } in the
// same order), or, when started with `task: "examples"`, making files' training examples (examples.ts).
import { parentPort, workerData } from "node:worker_threads";
import { Judge, type JudgeRules, type Keep, type Verdict } from "./judge";
import { exampleWorker, type ExampleBatch, type ExampleWorkerSetup } from "./examples";

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
  const data = workerData as WorkerSetup | ExampleWorkerSetup;
  if ("task" in data && data.task === "examples") {
    const make = exampleWorker(data, (reply, transfer) => port.postMessage(reply, transfer));
    port.on("message", (batch: ExampleBatch) => make(batch));
  } else {
    const setup = data as WorkerSetup;
    const judge = new Judge(setup.folder, setup.rules, setup.keep, true);
    port.on("message", async (batch: WorkerBatch) => {
      const verdicts: Verdict[] = [];
      for (const rel of batch.paths) verdicts.push(await judge.judge(rel));
      port.postMessage({ id: batch.id, verdicts } satisfies WorkerReply);
    });
  }
}
