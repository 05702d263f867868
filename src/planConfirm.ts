// The training plan, shown before the trainer starts: a modal dialog with what the run will do (steps, rank,
// sequence length, batch, memory, time) and Start / Edit. Edit opens a quick pick of the planned values; a changed
// value is kept and the rest is planned around it again (plan.ts), so the memory and time shown stay true.
import * as vscode from "vscode";
import { planLines, type ConfirmPlan, type PlanFixed, type PlanProposal } from "./core/planRun";
import type { BaseWeights, TrainingPlan } from "./core/plan";
import { messageOf } from "./core/errors";

const START = "Start Training";
const START_ANYWAY = "Start Anyway";
const EDIT = "Edit Plan…";

export const confirmPlanInVsCode: ConfirmPlan = async (proposal) => {
  let plan = proposal.plan;
  let fixed: PlanFixed = { ...proposal.fixed };
  for (;;) {
    const start = plan.fits ? START : START_ANYWAY;
    const title = plan.fits ? "Fine-tune with this plan?" : "This plan may not fit in memory. Fine-tune anyway?";
    const choice = await vscode.window.showInformationMessage(title, { modal: true, detail: planLines(proposal, plan).join("\n") }, start, EDIT);
    if (choice === start) return plan;
    if (choice !== EDIT) return null;
    const edited = await editPlan(proposal, plan, fixed);
    if (edited) ({ plan, fixed } = edited);
  }
};

interface Field {
  key: "steps" | "rank" | "batch" | "gradAccum";
  label: string;
  what: string;
}

const FIELDS: Field[] = [
  { key: "steps", label: "Steps", what: "optimizer steps" },
  { key: "rank", label: "LoRA rank", what: "adapter capacity: higher learns more and takes more memory" },
  { key: "batch", label: "Micro-batch", what: "sequences per forward pass: lower takes less memory" },
  { key: "gradAccum", label: "Gradient accumulation", what: "micro-batches per step" },
];

type Item = vscode.QuickPickItem & { apply?: (fixed: PlanFixed) => Promise<PlanFixed | undefined>; done?: true };

/** The quick pick of planned values; each choice re-plans. Undefined when nothing changed (Escape). */
async function editPlan(p: PlanProposal, start: TrainingPlan, startFixed: PlanFixed): Promise<{ plan: TrainingPlan; fixed: PlanFixed } | undefined> {
  let plan = start;
  let fixed = startFixed;
  let changed = false;
  for (;;) {
    const yours = (k: keyof PlanFixed) => (fixed[k] !== undefined ? "set by you" : "planned");
    const items: Item[] = [
      { label: "$(check) Done", description: planLines(p, plan)[2], done: true },
      ...FIELDS.map((f): Item => ({
        label: f.label, description: `${plan[f.key]} (${yours(f.key)})`, detail: f.what,
        apply: async (x) => {
          const n = await askInteger(f, plan[f.key]);
          return n === undefined ? undefined : { ...x, [f.key]: n };
        },
      })),
      {
        label: "Gradient checkpointing", description: `${plan.gradCheckpoint ? "on" : "off"} (${yours("gradCheckpoint")})`,
        detail: "recompute activations in the backward pass: much less memory, about a third more time",
        apply: async (x) => ({ ...x, gradCheckpoint: !plan.gradCheckpoint }),
      },
      {
        label: "Base weights", description: `${plan.baseWeights} (${yours("baseWeights")})`,
        detail: "the frozen model trained against: as stored, or an 8-bit / 4-bit copy of full-precision weights",
        apply: async (x) => {
          const picked = await vscode.window.showQuickPick(["keep", "q8_0", "q4_0"], { title: "Base weights", placeHolder: plan.baseWeights });
          return picked ? { ...x, baseWeights: picked as BaseWeights } : undefined;
        },
      },
    ];
    const pick = await vscode.window.showQuickPick(items, {
      title: "RepoTune: edit the training plan",
      // The data is already packed for the sequence length: another one means another dataset (the setting).
      placeHolder: `Sequence length ${plan.seqLen}: set repotune.training.seqLen for another`,
    });
    if (!pick) return changed ? { plan, fixed } : undefined;
    if (pick.done) return { plan, fixed };
    const next = await pick.apply!(fixed);
    if (!next) continue;
    try {
      plan = await vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title: "RepoTune: planning again…" }, () => p.replan(next));
      fixed = next;
      changed = true;
    } catch (err) {
      void vscode.window.showErrorMessage(`RepoTune: could not plan with that value: ${messageOf(err)}`);
    }
  }
}

async function askInteger(f: Field, current: number): Promise<number | undefined> {
  const text = await vscode.window.showInputBox({
    title: f.label, prompt: f.what, value: String(current),
    validateInput: (v) => (/^\s*[1-9]\d*\s*$/.test(v) && Number(v) <= 1_000_000 ? null : "A whole number from 1 to 1,000,000"),
  });
  return text === undefined ? undefined : Number(text.trim());
}
