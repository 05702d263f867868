// Resuming a run for real (tiny model, real trainer): a run stopped at step 2 continues from its checkpoint in the
// same folder to the same end as an uninterrupted run, and its events replay into one continuous history. And the
// settings the trainer's out-of-memory messages name, from messages the trainer's own code writes.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, rmSync } from "node:fs";
import * as path from "node:path";
import { tune, type TuneOptions } from "../../src/core/tune";
import { newestCheckpoint, resumePlan, resumeRun } from "../../src/core/resume";
import { readEvents, readManifest } from "../../src/core/runStore";
import { parseSuggestion, snapshotFromEvents } from "../../src/core/runSnapshot";
import { RunSnapshot } from "../../src/protocol/webview";
import type { RunEvent } from "../../src/protocol/run";
import { enginePath, makeGitRepo, python, removeDir, sampleSources, tempDir, tinyModel, trainerRoot } from "./support/pipeline";
import { code } from "./support/datedRepo";

let dir: string;
let modelPath: string;
let repo: string;

before(async () => {
  dir = tempDir("resume");
  modelPath = await tinyModel(path.join(dir, "cache"));
  repo = makeGitRepo(path.join(dir, "repo"), sampleSources(6));
});
after(() => removeDir(dir));

const settings = { steps: 8, seqLen: 64, batch: 4, rank: 4 };

function options(events: RunEvent[], extra: Partial<TuneOptions> = {}): TuneOptions {
  return {
    folder: repo, modelPath, python, trainerRoot, enginePath, runsRoot: path.join(dir, "runs"), settings,
    evaluation: { maxTasks: 10 }, onEvent: (e) => events.push(e), ...extra,
  };
}

const steps = (events: RunEvent[]) => events.flatMap((e) => (e.type === "trainer" && e.event.event === "step" ? [[e.event.step, e.event.loss] as const] : []));

describe("resume a run from its checkpoint", () => {
  test("a stopped run continues in its folder to the losses and adapter of an uninterrupted run", { timeout: 180_000 }, async () => {
    const whole: RunEvent[] = [];
    const uninterrupted = await tune(options(whole));
    assert.equal(uninterrupted.status, "done", uninterrupted.error ?? "");

    const first: RunEvent[] = [];
    const abort = new AbortController();
    const stopped = await tune(options(first, {
      signal: abort.signal,
      onEvent: (e) => {
        first.push(e);
        if (e.type === "trainer" && e.event.event === "step" && e.event.step === 2) abort.abort();
      },
    }));
    assert.equal(stopped.status, "stopped", stopped.error ?? "");
    const checkpoint = await newestCheckpoint(stopped.runDir);
    assert.ok(checkpoint && existsSync(checkpoint), "the stop wrote no checkpoint");

    const plan = await resumePlan(stopped.runDir);
    assert.equal(plan.checkpoint, checkpoint);
    assert.equal(plan.modelPath, modelPath);
    assert.deepEqual(plan.settings, (await readManifest(stopped.manifestPath!)).settings);

    const second: RunEvent[] = [];
    const resumed = await resumeRun({ runDir: stopped.runDir, python, trainerRoot, enginePath, evaluation: { maxTasks: 10 }, onEvent: (e) => second.push(e) });
    assert.equal(resumed.status, "done", resumed.error ?? "");
    assert.equal(resumed.runDir, stopped.runDir, "a resumed run stays in its folder");
    const start = second.find((e) => e.type === "trainer" && e.event.event === "start");
    assert.ok(start?.type === "trainer" && start.event.event === "start");
    const from = start.event.resumed_from_step;
    assert.ok(from !== null && from !== undefined && from >= 2, `the trainer did not resume (resumed_from_step ${from})`);
    // Exact resume (trainer/README.md): the steps after the checkpoint repeat the uninterrupted run's losses.
    assert.deepEqual(steps(second), steps(whole).filter(([s]) => s > from));
    assert.equal(resumed.valLoss, uninterrupted.valLoss);
    assert.ok(resumed.evaluation, `the resumed adapter was not evaluated: ${resumed.decision?.reason}`);
    const manifest = await readManifest(resumed.manifestPath!);
    assert.equal(manifest.status, "done");
    assert.equal(manifest.adapter, path.basename(resumed.adapterPath!));

    // One events file, one history: the view drawn from it has every step once and ends done.
    const replayed = snapshotFromEvents(await readEvents(path.join(stopped.runDir, "events.jsonl")));
    RunSnapshot.parse(replayed);
    assert.equal(replayed.phase, "done");
    assert.equal(replayed.error, null);
    assert.deepEqual(replayed.losses.map((p) => p.step), steps(whole).map(([s]) => s));
    assert.equal(replayed.resumedFrom, from);
    assert.ok(replayed.evaluation);
    assert.ok(replayed.log.some((l) => l.text === `Resuming from ${path.basename(checkpoint)}.`));
  });

  test("a stopped multi-root run resumes and is evaluated on the held-out files of every folder", { timeout: 180_000 }, async () => {
    const other = makeGitRepo(path.join(dir, "other-folder"), Object.fromEntries([1, 2, 3, 4].map((i) => [`lib/part${i}.js`, code(100 + i)])));
    const abort = new AbortController();
    const stopped = await tune(options([], {
      folder: [repo, other],
      signal: abort.signal,
      onEvent: (e) => e.type === "trainer" && e.event.event === "step" && e.event.step === 2 && abort.abort(),
    }));
    assert.equal(stopped.status, "stopped", stopped.error ?? "");
    const plan = await resumePlan(stopped.runDir);
    assert.deepEqual(plan.folders, [repo, other].map((f) => path.resolve(f)));
    const resumed = await resumeRun({ runDir: stopped.runDir, python, trainerRoot, enginePath, evaluation: { maxTasks: 10 }, onEvent: () => undefined });
    assert.equal(resumed.status, "done", resumed.error ?? "");
    assert.ok(resumed.evaluation && resumed.evaluation.tasks.length > 0, `not evaluated: ${resumed.decision?.reason}`);
    const heldOut = (JSON.parse(readFileSync(path.join(stopped.runDir, "data", "files.json"), "utf8")) as { val: string[] }).val;
    assert.ok(resumed.evaluation.tasks.every((t) => heldOut.includes(t.file)), "a task from a file that is not held out");
  });

  test("a run that finished, or one without a checkpoint, is refused with a reason", { timeout: 120_000 }, async () => {
    const done = await tune(options([]));
    await assert.rejects(resumePlan(done.runDir), /already finished/);
    const early = await tune(options([], {
      settings: { ...settings, seqLen: 100_000 }, // longer than the model's context: fails before training
    }));
    assert.equal(early.status, "failed");
    await assert.rejects(resumePlan(early.runDir), /no checkpoint|before its first checkpoint|data of this run/);
    const result = await resumeRun({ runDir: early.runDir, python, trainerRoot, enginePath, onEvent: () => undefined });
    assert.equal(result.status, "failed");
    rmSync(early.runDir, { recursive: true, force: true });
  });
});

describe("settings an out-of-memory error names", () => {
  /** Messages written by the trainer's own fit.py for the tiny model, with free memory set so each rung of its ladder is the first that fits. */
  function trainerMessages(): { message: string; expected: Record<string, number | boolean | string> }[] {
    const script = `
import json, sys
from dataclasses import replace
from repotune_trainer.gguf import GGUFReader
from repotune_trainer.memory import model_shape
from repotune_trainer import fit
from repotune_trainer.events import TrainerError
with GGUFReader(sys.argv[1]) as r:
    shape = model_shape(r)
asked = fit.Settings(batch=8, grad_accum=1, grad_checkpoint=False, seq_len=512, rank=16, base_weights="keep")
planner = fit.Planner(shape, "cpu", "keep")
rungs = list(fit.ladder(asked))
out = []
for target in (rungs[1], rungs[len(rungs) // 2], rungs[-1]):
    free = int(planner.need(target) / fit.HEADROOM) + 1
    try:
        fit.preflight(shape, "cpu", asked, free)
    except TrainerError as e:
        got = planner.first_fit(asked, fit.HEADROOM * free)
        out.append({"message": e.message, "expected": {
            "batch": got.batch, "gradAccum": got.grad_accum, "gradCheckpoint": got.grad_checkpoint,
            "seqLen": got.seq_len, "rank": got.rank}})
print(json.dumps(out))
`;
    const stdout = execFileSync(python, ["-c", script, modelPath], { cwd: trainerRoot, env: { ...process.env, PYTHONPATH: trainerRoot }, encoding: "utf8" });
    return JSON.parse(stdout.trim().split("\n").pop()!);
  }

  test("each suggestion of the trainer's ladder is read back as the settings it names", () => {
    const cases = trainerMessages();
    assert.ok(cases.length >= 2, `the trainer produced ${cases.length} messages`);
    for (const { message, expected } of cases) {
      const s = parseSuggestion(message);
      assert.ok(s, `no suggestion read from: ${message}`);
      // Only what changed is named: compare the named fields with the trainer's chosen settings.
      if (s.batch !== undefined) assert.equal(s.batch, expected.batch, message);
      if (s.gradAccum !== undefined) assert.equal(s.gradAccum, expected.gradAccum, message);
      if (s.seqLen !== undefined) assert.equal(s.seqLen, expected.seqLen, message);
      if (s.rank !== undefined) assert.equal(s.rank, expected.rank, message);
      assert.equal(s.gradCheckpoint ?? false, expected.gradCheckpoint, message);
      assert.ok(s.batch !== undefined, `the batch the trainer suggests was not read: ${message}`);
    }
    const last = parseSuggestion(cases.at(-1)!.message)!;
    assert.ok(last.seqLen !== undefined || last.rank !== undefined, `the smallest rung names no sequence length or rank: ${cases.at(-1)!.message}`);
    assert.equal(parseSuggestion("The trainer exited with code 1."), null);
  });
});
