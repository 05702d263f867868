// Folds a run's events into the snapshot the views render. Pure, so the same events (live, or replayed from
// events.jsonl after a reload) always draw the same view.
import type { RunEvent } from "../protocol/run";
import type { TrainerEvent } from "../protocol/trainer";
import type { LogLine, RunSnapshot, SuggestedSettings } from "../protocol/webview";
import { describeSkipped, formatBytes } from "./format";

/** The event log keeps this many lines (the newest); steps are not logged, they are in the charts. */
const LOG_LINES = 1000;

export function emptySnapshot(activeAdapter: string | null = null, model: string | null = null): RunSnapshot {
  return {
    phase: "idle", runId: null, runDir: null, folder: null, model, startedAt: null, endedAt: null, phaseTimes: {},
    dataset: null, device: null, estimate: null, plan: null, awaitingPlan: false, memoryFree: null, memoryPeak: null, trainer: null,
    step: 0, steps: 0, loss: null, lr: null, tokensPerS: null, trainSeconds: null, resumedFrom: null,
    valLossBase: null, valLoss: null, losses: [], valLosses: [], lrs: [], throughput: [], checkpoint: null,
    adapterStep: null, earlyStopped: false, evalProgress: null, evaluation: null, adapterPath: null, activeAdapter,
    error: null, errorAction: null, errorCode: null, suggestion: null, log: [],
  };
}

/** Starts a fresh snapshot for a new run, keeping what is not about the run (active adapter, model). */
export function snapshotForNewRun(prev: RunSnapshot): RunSnapshot {
  return { ...emptySnapshot(prev.activeAdapter, prev.model), phase: "preparing" };
}

/** A run read back from its events file, as the views draw it. */
export function snapshotFromEvents(events: readonly RunEvent[], activeAdapter: string | null = null): RunSnapshot {
  return events.reduce(applyRunEvent, emptySnapshot(activeAdapter));
}

export function applyRunEvent(prev: RunSnapshot, e: RunEvent): RunSnapshot {
  const line = logLine(e);
  const s = line ? { ...prev, log: [...prev.log.slice(-(LOG_LINES - 1)), line] } : prev;
  switch (e.type) {
    case "run": {
      // A resumed run reports the same id again and keeps its history; another id is another run.
      const base = s.runId === null || s.runId === e.runId ? s : { ...snapshotForNewRun(s), log: s.log };
      return { ...base, runId: e.runId, runDir: e.runDir, folder: e.folder, model: e.modelPath, startedAt: e.time, endedAt: null };
    }
    case "phase": {
      // The first time of each phase: a resumed run's second "training" is not when its data was ready.
      const phaseTimes = { ...s.phaseTimes, [e.phase]: s.phaseTimes[e.phase] ?? e.time };
      if (e.phase === "done" || e.phase === "stopped" || e.phase === "failed") return { ...s, phase: e.phase, phaseTimes, endedAt: e.time, awaitingPlan: false };
      // Working again (a resumed run): the failure before it is history, kept in the log.
      return { ...s, phase: e.phase, phaseTimes, endedAt: null, error: null, errorAction: null, errorCode: null, suggestion: null, awaitingPlan: false };
    }
    case "dataset":
      return { ...s, dataset: e.summary };
    case "estimate":
      return { ...s, estimate: { device: e.device, peakBytes: e.peakBytes } };
    case "planProposed":
      return { ...s, awaitingPlan: true };
    case "plan":
      return { ...s, awaitingPlan: false, plan: { summary: e.lines[1] ?? "", seconds: e.seconds, edited: e.edited } };
    case "adapter":
      return { ...s, adapterPath: e.adapterPath };
    case "error":
      return { ...s, phase: "failed", error: e.message, errorAction: e.action ?? null, suggestion: s.suggestion ?? parseSuggestion(e.message), endedAt: e.time, phaseTimes: { ...s.phaseTimes, failed: s.phaseTimes.failed ?? e.time } };
    case "log":
      return s;
    case "evalProgress":
      return { ...s, evalProgress: { done: e.done, total: e.total } };
    case "evaluation":
      return { ...s, evaluation: e.evaluation };
    case "trainer":
      return applyTrainerEvent(s, e.event);
  }
}

function applyTrainerEvent(s: RunSnapshot, t: TrainerEvent): RunSnapshot {
  switch (t.event) {
    case "start": {
      const from = t.resumed_from_step ?? null;
      // Steps after the checkpoint a resumed run starts from are trained again: the first attempt's are dropped.
      const upTo = <P extends { step: number }>(points: P[]) => (from === null ? points : points.filter((p) => p.step <= from));
      return {
        ...s, device: t.device, steps: t.steps, step: from ?? 0, resumedFrom: from, trainSeconds: null,
        memoryFree: t.memory_free ?? null,
        trainer: {
          arch: t.arch, torch: t.torch_version, nLayer: t.n_layer, nEmbd: t.n_embd, vocabSize: t.vocab_size,
          weightTypes: t.weight_types, trainableParams: t.trainable_params, totalParams: t.total_params, batch: t.batch,
          seqLen: t.seq_len, gradAccum: t.grad_accum ?? null, baseWeights: t.base_weights?.used ?? null,
          trainSequences: t.train_sequences, valSequences: t.val_sequences,
        },
        losses: upTo(s.losses), valLosses: upTo(s.valLosses), lrs: upTo(s.lrs), throughput: upTo(s.throughput),
      };
    }
    case "step":
      return {
        ...s, step: t.step, steps: t.steps, loss: t.loss, lr: t.lr, tokensPerS: t.tokens_per_s, trainSeconds: t.elapsed_s,
        losses: [...s.losses, { step: t.step, loss: t.loss }],
        lrs: [...s.lrs, { step: t.step, value: t.lr }],
        throughput: [...s.throughput, { step: t.step, value: t.tokens_per_s }],
      };
    case "eval":
      return {
        ...s, valLoss: t.val_loss, valLossBase: t.step === 0 ? t.val_loss : s.valLossBase,
        valLosses: [...s.valLosses, { step: t.step, loss: t.val_loss }],
      };
    case "checkpoint":
      return { ...s, checkpoint: { step: t.step, path: t.path } };
    case "done":
      return {
        ...s, step: t.step, valLossBase: t.val_loss_base ?? s.valLossBase, valLoss: t.val_loss ?? s.valLoss,
        adapterStep: t.adapter_step ?? null, earlyStopped: t.early_stopped ?? false, memoryPeak: t.peak_memory_bytes ?? null,
      };
    case "stopped":
      return { ...s, step: t.step, checkpoint: t.checkpoint ? { step: t.step, path: t.checkpoint } : s.checkpoint };
    case "error":
      return {
        ...s, error: t.message, errorCode: t.code,
        suggestion: t.code === "out_of_memory" ? parseSuggestion(t.message) : null,
      };
  }
}

/**
 * The settings an out-of-memory message names (fit.py: "... try batch 4 with grad-accum 2 and gradient
 * checkpointing (--batch 4 --grad-accum 2 --grad-checkpoint): about 1.3 GiB."). Null when it names none.
 */
export function parseSuggestion(message: string): SuggestedSettings | null {
  const m = /\b[Tt]ry (.+?)(?: \((--[^)]*)\))?: about /s.exec(message);
  if (!m) return null;
  const words = m[1]!;
  const flags = m[2] ?? "";
  const int = (re: RegExp, text: string) => {
    const hit = re.exec(text);
    return hit ? Number(hit[1]) : undefined;
  };
  const out: SuggestedSettings = { text: words };
  const batch = int(/--batch (\d+)/, flags);
  const gradAccum = int(/--grad-accum (\d+)/, flags);
  const rank = int(/--rank (\d+)/, flags);
  const seqLen = int(/sequence length (\d+) \(the repotune\.training\.seqLen/, words);
  const form = /--base-weights (keep|q8_0|q4_0)/.exec(flags)?.[1] ?? /\ba (Q8_0|Q4_0) copy of the base weights/.exec(words)?.[1]?.toLowerCase();
  if (batch !== undefined) out.batch = batch;
  if (gradAccum !== undefined) out.gradAccum = gradAccum;
  if (/--grad-checkpoint\b/.test(flags)) out.gradCheckpoint = true;
  if (seqLen !== undefined) out.seqLen = seqLen;
  if (rank !== undefined) out.rank = rank;
  if (form === "keep" || form === "q8_0" || form === "q4_0") out.baseWeights = form;
  return Object.keys(out).length > 1 ? out : null;
}

function logLine(e: RunEvent): LogLine | null {
  const text = describeEvent(e);
  return text === null ? null : { time: e.time, kind: e.type === "trainer" ? e.event.event : e.type, text };
}

/** One event in words for the event log; null for the ones drawn elsewhere (steps, evaluation progress). */
export function describeEvent(e: RunEvent): string | null {
  switch (e.type) {
    case "run":
      return `Run ${e.runId} of ${e.folder} with ${e.modelPath}`;
    case "phase":
      return `Phase: ${e.phase}`;
    case "dataset": {
      const d = e.summary;
      return `Dataset: ${d.filesUsed} files used, skipped ${describeSkipped(d.filesSkipped)}; ${d.trainTokens.toLocaleString("en-US")} training tokens in ${d.trainSequences} sequences of ${d.seqLen}, ${d.valSequences} validation sequences`;
    }
    case "estimate":
      return `Estimated peak memory on ${e.device}: ${formatBytes(e.peakBytes)}`;
    case "planProposed":
      return "Waiting for the training plan to be started or edited";
    case "plan":
      return `Plan${e.edited ? " (edited)" : ""}: ${e.lines.join(" ")}`;
    case "adapter":
      return `Adapter written: ${e.adapterPath}`;
    case "error":
      return `Error: ${e.message}`;
    case "log":
      return e.message;
    case "evalProgress":
      return null;
    case "evaluation":
      return `Evaluation on ${e.evaluation.taskCount} held-out tasks: ${e.evaluation.decision.reason}`;
    case "trainer": {
      const t = e.event;
      switch (t.event) {
        case "start":
          return `Trainer started on ${t.device} (PyTorch ${t.torch_version}, ${t.arch}, ${t.trainable_params.toLocaleString("en-US")} trainable parameters, ${t.steps} steps, batch ${t.batch})` +
            (t.resumed_from_step != null ? `, resumed from step ${t.resumed_from_step}` : "");
        case "step":
          return null;
        case "eval":
          return `Validation loss at step ${t.step}: ${t.val_loss.toFixed(4)}`;
        case "checkpoint":
          return `Checkpoint at step ${t.step}: ${t.path}`;
        case "done":
          return `Training done at step ${t.step}: validation loss ${t.val_loss_base?.toFixed(4) ?? "–"} → ${t.val_loss?.toFixed(4) ?? "–"}` +
            (t.adapter_step !== undefined ? ` (adapter from step ${t.adapter_step})` : "") + (t.early_stopped ? ", stopped early" : "");
        case "stopped":
          return `Training stopped at step ${t.step}${t.checkpoint ? `, checkpoint ${t.checkpoint}` : ", no checkpoint"}`;
        case "error":
          return `Trainer error (${t.code}): ${t.message}`;
      }
    }
  }
}
