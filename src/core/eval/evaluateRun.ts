// The held-out evaluation step of a run (a new run in tune.ts, a resumed one in resume.ts): the "evaluating" phase,
// progress events, evaluation.json in the run folder, and the decision. It never throws: an evaluation that could not
// run or was stopped leaves the adapter inactive, with the reason, and the user may activate it anyway.
import type { EvalDecision, RunEvent } from "../../protocol/run";
import type { EngineClient } from "../engineClient";
import { messageOf } from "../errors";
import { writeJsonAtomic } from "../atomic";
import { promptFormatFor } from "../promptFormat";
import { evaluate, summaryOf, EvaluationStopped, type EvaluateOptions, type EvaluationResult } from "./evaluate";
import { RestartingEngine } from "./restartingEngine";

export interface RunEvaluationOptions
  extends Pick<EvaluateOptions, "folder" | "roots" | "adapterPath" | "seed" | "maxTasks" | "maxTokens" | "windowTokens" | "charsPerToken" | "trainer" | "signal"> {
  /** The held-out files; read inside the step, so that a failure to read them is the evaluation's, not the run's. */
  heldOut: () => Promise<Pick<EvaluateOptions, "files" | "split">>;
  /** An engine the caller runs; absent: one of the step's own that restarts if its process dies. */
  engine?: EngineClient;
  enginePath: string;
  modelPath: string;
  engineLog: (line: string) => void;
  evaluationPath: string;
  emit: (e: RunEvent) => void;
}

export async function evaluateRunAdapter(o: RunEvaluationOptions): Promise<{ evaluation: EvaluationResult | null; decision: EvalDecision }> {
  const { emit } = o;
  emit({ type: "phase", time: Date.now(), phase: "evaluating" });
  let ownEngine: RestartingEngine | undefined;
  try {
    const { files, split } = await o.heldOut();
    if (!o.engine) ownEngine = await RestartingEngine.start({ enginePath: o.enginePath, log: o.engineLog }, o.modelPath);
    const engine = o.engine ?? ownEngine!;
    const info = ownEngine ? ownEngine.info : await o.engine!.load(o.modelPath);
    let last = 0;
    const result = await evaluate({
      engine, modelInfo: info, format: promptFormatFor(info), folder: o.folder, roots: o.roots, files, split,
      adapterPath: o.adapterPath, seed: o.seed, maxTasks: o.maxTasks, maxTokens: o.maxTokens,
      windowTokens: o.windowTokens, charsPerToken: o.charsPerToken, trainer: o.trainer, signal: o.signal,
      onProgress: (done, total) => {
        // About fifty progress events per evaluation: enough for a progress bar, few in events.jsonl.
        if (done === total || done - last >= Math.max(1, Math.floor(total / 50))) {
          last = done;
          emit({ type: "evalProgress", time: Date.now(), done, total });
        }
      },
    });
    await writeJsonAtomic(o.evaluationPath, result);
    emit({ type: "evaluation", time: Date.now(), evaluation: summaryOf(result) });
    return { evaluation: result, decision: result.decision };
  } catch (err) {
    const reason = err instanceof EvaluationStopped || o.signal?.aborted
      ? "The evaluation on held-out code was stopped before it finished, so the adapter was not activated; you can activate it anyway."
      : `The adapter could not be evaluated on held-out code: ${messageOf(err)} It was not activated; you can activate it anyway.`;
    emit({ type: "log", time: Date.now(), message: reason });
    return { evaluation: null, decision: { keep: false, reason } };
  } finally {
    await ownEngine?.dispose().catch(() => undefined);
  }
}
