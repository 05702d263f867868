// Folds a run's events into the snapshot the views render. Pure, so the same events (live, or replayed from
// events.jsonl) always draw the same view.
import type { RunEvent } from "../protocol/run";
import type { RunSnapshot } from "../protocol/webview";

export function emptySnapshot(activeAdapter: string | null = null, model: string | null = null): RunSnapshot {
  return {
    phase: "idle", runId: null, folder: null, model, dataset: null, device: null, estimate: null,
    step: 0, steps: 0, loss: null, tokensPerS: null, valLossBase: null, valLoss: null,
    losses: [], valLosses: [], adapterPath: null, activeAdapter, error: null, errorAction: null,
  };
}

/** Starts a fresh snapshot for a new run, keeping what is not about the run (active adapter, model). */
export function snapshotForNewRun(prev: RunSnapshot): RunSnapshot {
  return { ...emptySnapshot(prev.activeAdapter, prev.model), phase: "preparing" };
}

export function applyRunEvent(s: RunSnapshot, e: RunEvent): RunSnapshot {
  switch (e.type) {
    case "run":
      return { ...s, runId: e.runId, folder: e.folder, model: e.modelPath };
    case "phase":
      return { ...s, phase: e.phase };
    case "dataset":
      return { ...s, dataset: e.summary };
    case "estimate":
      return { ...s, estimate: { device: e.device, peakBytes: e.peakBytes } };
    case "adapter":
      return { ...s, adapterPath: e.adapterPath };
    case "error":
      return { ...s, phase: "failed", error: e.message, errorAction: e.action ?? null };
    case "log":
    case "evalProgress":
    case "evaluation":
      return s;
    case "trainer": {
      const t = e.event;
      switch (t.event) {
        case "start":
          return { ...s, device: t.device, steps: t.steps, step: t.resumed_from_step ?? 0 };
        case "step":
          return {
            ...s, step: t.step, steps: t.steps, loss: t.loss, tokensPerS: t.tokens_per_s,
            losses: [...s.losses, { step: t.step, loss: t.loss }],
          };
        case "eval":
          return {
            ...s, valLoss: t.val_loss, valLossBase: t.step === 0 ? t.val_loss : s.valLossBase,
            valLosses: [...s.valLosses, { step: t.step, loss: t.val_loss }],
          };
        case "done":
          return { ...s, step: t.step, valLossBase: t.val_loss_base ?? s.valLossBase, valLoss: t.val_loss ?? s.valLoss };
        case "stopped":
          return { ...s, step: t.step };
        case "checkpoint":
          return s;
        case "error":
          return { ...s, error: t.message };
      }
    }
  }
}
