// The training plan inside the real pipeline (tiny model, real trainer estimator, real trainer): settings the user
// did not set are planned, the plan is offered to the caller, whose edits are what the trainer gets; a declined
// plan trains nothing; a model that cannot fit fails before the dataset is built.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readdirSync } from "node:fs";
import * as path from "node:path";
import { tune, type TuneOptions, type TuneResult } from "../../src/core/tune";
import { readManifest } from "../../src/core/runStore";
import { deviceOf, fixedFrom, planLines, withPlan, type PlanProposal } from "../../src/core/planRun";
import { rankFor, SEQUENCES_PER_STEP, type TrainingPlan } from "../../src/core/plan";
import { parseSuggestion, snapshotFromEvents } from "../../src/core/runSnapshot";
import type { RunEvent } from "../../src/protocol/run";
import { enginePath, makeGitRepo, python, removeDir, sampleSources, tempDir, tinyModel, trainerRoot } from "./support/pipeline";

let dir: string;
let modelPath: string;
let repo: string;

before(async () => {
  dir = tempDir("tune-plan");
  modelPath = await tinyModel(path.join(dir, "cache"));
  repo = makeGitRepo(path.join(dir, "repo"), sampleSources(6));
});
after(() => removeDir(dir));

async function run(overrides: Partial<TuneOptions>): Promise<{ result: TuneResult; events: RunEvent[] }> {
  const events: RunEvent[] = [];
  const result = await tune({
    folder: repo, modelPath, python, trainerRoot, enginePath, runsRoot: path.join(dir, "runs"),
    settings: { steps: 6, seqLen: 64, device: "cpu" },
    evaluation: { maxTasks: 10 },
    onEvent: (e) => events.push(e),
    ...overrides,
  });
  return { result, events };
}

const phases = (events: RunEvent[]) => events.flatMap((e) => (e.type === "phase" ? [e.phase] : []));

describe("the plan in the pipeline", () => {
  test("plans what was not set, offers it, and trains with the caller's edits", async () => {
    let offered: PlanProposal | null = null;
    let chosen: TrainingPlan | null = null;
    const { result, events } = await run({
      plan: {
        confirm: async (p) => {
          offered = p;
          chosen = await p.replan({ ...p.fixed, rank: 4, batch: 2 });
          return chosen;
        },
      },
    });
    assert.equal(result.status, "done", result.error ?? "");
    const p = offered as PlanProposal | null;
    assert.ok(p && chosen, "the plan was never offered");
    const edit = chosen as TrainingPlan;
    // Kept as given: the steps and sequence length set; planned: the rest, for the data just built.
    assert.deepEqual(p.fixed, { steps: 6, seqLen: 64 });
    assert.equal(p.plan.steps, 6);
    assert.equal(p.plan.seqLen, 64);
    assert.equal(p.datasetTokens, result.summary!.trainTokens);
    assert.equal(p.trainSequences, result.summary!.trainSequences);
    assert.equal(p.plan.rank, rankFor(result.summary!.trainTokens));
    assert.equal(p.device.kind, "cpu");
    assert.ok(p.plan.fits && p.plan.peakBytes > 0 && p.plan.peakBytes <= p.plan.budgetBytes);
    // No run on this device yet: the time is worked out from the selftest's measured matmul rate.
    assert.ok(p.device.matmulFlops && p.device.matmulFlops > 0);
    assert.ok(p.plan.seconds !== null && p.plan.seconds > 0);
    assert.match(p.plan.timeBasis, /worked out from the device's \d+ GFLOP\/s/);
    // The edit re-planned around the new values: the step keeps its sequences through accumulation.
    assert.deepEqual([edit.rank, edit.batch, edit.gradAccum, edit.steps], [4, 2, p.plan.batch * p.plan.gradAccum / 2, 6]);
    assert.ok(edit.peakBytes < p.plan.peakBytes, `a smaller batch and rank needs less memory (${edit.peakBytes} vs ${p.plan.peakBytes})`);

    // What the trainer got is the edited plan, and the run says so.
    const manifest = await readManifest(result.manifestPath!);
    assert.deepEqual(
      [manifest.settings.rank, manifest.settings.alpha, manifest.settings.batch, manifest.settings.gradAccum, manifest.settings.steps, manifest.settings.seqLen],
      [4, 8, 2, edit.gradAccum, 6, 64],
    );
    const start = events.flatMap((e) => (e.type === "trainer" && e.event.event === "start" ? [e.event] : []))[0];
    assert.ok(start, "no trainer start event");
    assert.equal(start.steps, 6);
    const planned = events.find((e) => e.type === "plan");
    assert.ok(planned && planned.type === "plan");
    // While the plan was on screen the run said it waited; the views read that from the events.
    const order = events.map((e) => e.type).filter((t) => t === "dataset" || t === "planProposed" || t === "plan" || t === "trainer");
    assert.deepEqual(order.slice(0, 4), ["dataset", "planProposed", "plan", "trainer"]);
    const waiting = snapshotFromEvents(events.slice(0, events.findIndex((e) => e.type === "planProposed") + 1));
    assert.equal(waiting.awaitingPlan, true);
    assert.equal(snapshotFromEvents(events).awaitingPlan, false);
    assert.equal(planned.edited, true);
    assert.deepEqual([planned.rank, planned.batch, planned.gradAccum], [4, 2, edit.gradAccum]);
    assert.deepEqual(planned.lines, planLines(p, edit));
    const estimate = events.find((e) => e.type === "estimate");
    assert.equal(estimate?.type === "estimate" && estimate.peakBytes, edit.peakBytes);
  });

  test("a declined plan trains nothing and writes no adapter; its time is scaled from the run before", async () => {
    let asked = 0;
    let offered: PlanProposal | null = null;
    const { result, events } = await run({ plan: { confirm: async (p) => (asked++, (offered = p), null) } });
    assert.equal(asked, 1);
    // The first test's run (same model, same device) measured its speed.
    assert.match((offered as PlanProposal | null)?.plan.timeBasis ?? "", /scaled from the last run on this device \(6 steps in \d+ s\)/);
    assert.equal(result.status, "stopped");
    assert.equal(result.adapterPath, null);
    assert.deepEqual(phases(events), ["preparing", "stopped"]);
    assert.ok(!events.some((e) => e.type === "trainer" || e.type === "plan"), "the trainer ran after the plan was declined");
    assert.ok(events.some((e) => e.type === "log" && /declined/.test(e.message)));
    assert.ok(!existsSync(path.join(result.runDir, "manifest.json")));
  });

  test("a plan that cannot be made does not stop the run: it trains with the settings and their defaults", async () => {
    let asked = 0;
    const { result, events } = await run({
      plan: {
        confirm: async (p) => (asked++, p.plan),
        estimate: async () => {
          throw new Error("the memory estimate failed: simulated");
        },
      },
    });
    assert.equal(result.status, "done", result.error ?? "");
    assert.equal(asked, 0, "a plan was offered without an estimate");
    assert.ok(events.some((e) => e.type === "log" && /^No training plan \(the memory estimate failed: simulated\)/.test(e.message)));
    assert.ok(!events.some((e) => e.type === "plan" || e.type === "planProposed"));
    const manifest = await readManifest(result.manifestPath!);
    assert.deepEqual([manifest.settings.steps, manifest.settings.seqLen, manifest.settings.rank, manifest.settings.batch], [6, 64, 16, 8]);
  });

  test("settings that cannot fit fail before the dataset is built, with what to do", async () => {
    let asked = 0;
    const { result, events } = await run({
      settings: { steps: 6, seqLen: 64, rank: 4, batch: 4_000_000, device: "cpu" },
      plan: { confirm: async (p) => (asked++, p.plan) },
    });
    assert.equal(result.status, "failed");
    assert.equal(asked, 0, "a plan that cannot fit was offered after building the dataset");
    assert.match(result.error ?? "", /does not fit for training on the CPU.*with your .*batch 4000000/);
    assert.match(result.error ?? "", /Lower the values you set/);
    // What would fit, for "Retry with suggested settings": only the batch changes (the rank and length set fit).
    const suggestion = parseSuggestion(result.error ?? "");
    assert.ok(suggestion, `no suggestion in: ${result.error}`);
    assert.deepEqual({ ...suggestion, text: undefined }, { batch: SEQUENCES_PER_STEP, gradAccum: 1, text: undefined });
    assert.deepEqual(phases(events), ["preparing", "failed"]);
    const data = path.join(result.runDir, "data");
    assert.ok(!existsSync(data) || readdirSync(data).length === 0, "the dataset was built for a run that cannot train");
  });
});

describe("plan helpers", () => {
  test("only the values the user set are fixed; auto base weights are planned", () => {
    assert.deepEqual(fixedFrom({ steps: 10, rank: undefined, lr: 0.1, baseWeights: "auto", gradCheckpoint: false }), { steps: 10, gradCheckpoint: false });
    assert.deepEqual(fixedFrom({ baseWeights: "q4_0", batch: 2, gradAccum: 3, seqLen: 128 }), { baseWeights: "q4_0", batch: 2, gradAccum: 3, seqLen: 128 });
  });

  test("the plan's values replace the settings; alpha follows the rank unless set", () => {
    const settings = { steps: 1, seqLen: 16, rank: 1, alpha: 2, lr: 0.1, batch: 1, gradAccum: 1, gradCheckpoint: false, baseWeights: "auto" as const, seed: 3, device: "cpu" as const };
    const plan = { baseWeights: "q8_0", rank: 8, alpha: 16, seqLen: 256, batch: 4, gradAccum: 2, gradCheckpoint: true, steps: 90 } as TrainingPlan;
    assert.deepEqual(withPlan(settings, plan, {}), { ...settings, seqLen: 256, rank: 8, alpha: 16, batch: 4, gradAccum: 2, gradCheckpoint: true, baseWeights: "q8_0", steps: 90 });
    assert.equal(withPlan(settings, plan, { alpha: 5 }).alpha, 5);
  });

  test("the device comes from the selftest, and another device setting does not borrow its memory", () => {
    const selftest = { ok: true, python: "3.11", torch: "2.5", numpy: "2", device: "cuda", device_name: "NVIDIA RTX 4090", memory_total: 24e9, memory_free: 23e9 } as Parameters<typeof deviceOf>[0];
    assert.deepEqual(deviceOf({ ...selftest, matmul_flops: 1.6e14 }, "auto"), { kind: "cuda", name: "NVIDIA RTX 4090", totalBytes: 24e9, freeBytes: 23e9, matmulFlops: 1.6e14 });
    const cpu = deviceOf(selftest, "cpu");
    assert.equal(cpu.kind, "cpu");
    assert.notEqual(cpu.totalBytes, 24e9);
    const mps = deviceOf({ ...selftest, device: "cpu" }, "mps");
    assert.equal(mps.kind, "mps");
    assert.equal(mps.totalBytes, Number.POSITIVE_INFINITY);
  });
});
