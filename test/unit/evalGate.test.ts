// The keep-or-reject gate for real: the tiny model, the real trainer through tune(), the real engine. An adapter
// trained on a repository whose held-out files follow its conventions must show a significant gain and be kept;
// an adapter trained on an unrelated corpus, evaluated on that repository's held-out files, must be rejected.
// Run from the repository root after `node esbuild.mjs`.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import * as path from "node:path";
import { tune, type TuneResult } from "../../src/core/tune";
import { EngineClient } from "../../src/core/engineClient";
import { promptFormatFor } from "../../src/core/promptFormat";
import { evaluate, summaryOf, type EvaluationResult } from "../../src/core/eval/evaluate";
import { readDatasetFiles } from "../../src/core/dataset/write";
import { readManifest } from "../../src/core/runStore";
import type { RunEvent } from "../../src/protocol/run";
import { enginePath, handlerSources, makeGitRepo, python, removeDir, tempDir, tinyModel, trainerRoot } from "./support/pipeline";

const NOUNS = [
  "order", "invoice", "customer", "shipment", "ticket", "account", "payment", "refund", "coupon", "review", "basket",
  "report", "session", "device", "channel", "profile", "address", "vendor", "contract", "badge", "ledger", "bundle",
];
const VERBS = ["create", "update", "remove", "fetch", "list", "archive"];


/**
 * A parts catalogue, one part number per line. The tiny model starts from random weights, so any adapter that learned
 * to write printable text beats it on edit similarity, whatever the text: measured here, one trained on English prose
 * scored +6.9 points (95% interval +5.9 to +7.9) over the random base on the handlers above. A real base model
 * already writes text; here only a corpus that shares no character with the repository stands for "unrelated"
 * (checked below). Part numbers and not plain numbers: the dataset leaves out files that are mostly digits.
 */
function unrelatedCorpus(): Record<string, string> {
  const letters = "EFGJKMNQUWXYZ";
  const files: Record<string, string> = {};
  let x = 5;
  const next = (n: number) => {
    x = (x * 1103515245 + 12345) % 2147483648;
    return Math.floor((x / 2147483648) * n);
  };
  for (let f = 1; f <= 12; f++) {
    const lines: string[] = [];
    for (let i = 0; i < 60; i++) {
      const code = (k: number) => Array.from({ length: k }, () => letters[next(letters.length)]).join("");
      lines.push(`${code(2)}-${String(next(10000)).padStart(4, "7")}-${code(3)}`);
    }
    files[`catalog/parts${f}.txt`] = lines.join("\n") + "\n";
  }
  return files;
}

function characters(files: Record<string, string>): Set<string> {
  return new Set(Object.values(files).join("").replace(/\n/g, ""));
}

let dir: string;
let modelPath: string;
let conventions: TuneResult;
let conventionEvents: RunEvent[];

before(async () => {
  dir = tempDir("eval-gate");
  modelPath = await tinyModel(path.join(dir, "cache"));
});
after(() => removeDir(dir));

async function train(folder: string, steps: number, events: RunEvent[] = []): Promise<TuneResult> {
  return tune({
    folder, modelPath, python, trainerRoot, enginePath, runsRoot: path.join(dir, "runs"),
    settings: { steps, seqLen: 128, batch: 8, rank: 16 },
    evaluation: { maxTasks: 100 },
    onEvent: (e) => events.push(e),
  });
}

/** The figures of a run, for the test log. */
function figures(label: string, r: EvaluationResult): void {
  const d = r.diff.editSimilarity;
  const trained = r.loss.adapterStep === null ? "" : `; adapter of step ${r.loss.adapterStep}`;
  console.log(
    `${label}: ${r.taskCount} tasks in ${r.seconds.toFixed(1)} s${trained}; edit similarity base ${r.base.editSimilarity.mean.toFixed(3)}, ` +
      `adapter ${r.adapter.editSimilarity.mean.toFixed(3)}, gain ${d.mean.toFixed(3)} [${d.lo.toFixed(3)}, ${d.hi.toFixed(3)}]; ` +
      `exact match gain ${r.diff.exactMatch.mean.toFixed(3)}; first task: expected ${JSON.stringify(r.tasks[0].expected)}, ` +
      `base ${JSON.stringify(r.tasks[0].base)}, adapter ${JSON.stringify(r.tasks[0].adapter)}`,
  );
}

describe("the gate, on the tiny model with the real trainer and engine", () => {
  test("an adapter trained on the repository's conventions shows a significant gain on its held-out files and is kept", { timeout: 240_000 }, async () => {
    const repo = makeGitRepo(path.join(dir, "handlers"), handlerSources(NOUNS, VERBS));
    conventionEvents = [];
    conventions = await train(repo, 120, conventionEvents);
    assert.equal(conventions.status, "done", conventions.error ?? "");
    const e = conventions.evaluation;
    assert.ok(e, `no evaluation: ${conventions.decision?.reason}`);
    figures("conventions", e);
    assert.ok(e.taskCount >= 50, `only ${e.taskCount} tasks`);
    assert.ok(e.diff.editSimilarity.lo > 0, `gain ${JSON.stringify(e.diff.editSimilarity)}`);
    assert.ok(e.adapter.editSimilarity.mean > e.base.editSimilarity.mean);
    assert.deepEqual(conventions.decision, { keep: true, reason: e.decision.reason });
    assert.match(e.decision.reason, /^The adapter completes held-out code better: on \d+ completions, edit similarity/);
    // The tasks come from the held-out files only, and the trainer's best step is the adapter evaluated.
    const held = await readDatasetFiles(path.join(conventions.runDir, "data"));
    assert.ok(e.tasks.every((t) => held.val.includes(t.file) && !held.train.includes(t.file)));
    const done = conventionEvents.find((ev) => ev.type === "trainer" && ev.event.event === "done");
    assert.ok(done?.type === "trainer" && done.event.event === "done");
    assert.equal(e.loss.adapterStep, done.event.adapter_step ?? done.event.step);
    assert.equal(e.loss.adapter, conventions.valLoss);
    assert.ok(e.loss.perplexityBase !== null && Math.abs(e.loss.perplexityBase - Math.exp(conventions.valLossBase!)) < 1e-9);

    // The run records it: an evaluating phase with progress, the evaluation event, the manifest, evaluation.json.
    const phases = conventionEvents.flatMap((ev) => (ev.type === "phase" ? [ev.phase] : []));
    assert.deepEqual(phases, ["preparing", "training", "evaluating", "done"]);
    const progress = conventionEvents.flatMap((ev) => (ev.type === "evalProgress" ? [ev] : []));
    assert.ok(progress.length >= 2 && progress.at(-1)!.done === 2 * e.taskCount && progress.at(-1)!.total === 2 * e.taskCount);
    const logged = conventionEvents.find((ev) => ev.type === "evaluation");
    assert.ok(logged?.type === "evaluation");
    assert.deepEqual(logged.evaluation, summaryOf(e));
    const manifest = await readManifest(conventions.manifestPath!);
    assert.deepEqual(manifest.evaluation, summaryOf(e));
    assert.deepEqual(manifest.decision, conventions.decision);
    assert.equal(manifest.parentAdapter, null);
    const saved = JSON.parse(readFileSync(path.join(conventions.runDir, "evaluation.json"), "utf8"));
    assert.equal(saved.tasks.length, e.taskCount);
    assert.ok(saved.tasks.every((t: { expected: string; base: string; adapter: string }) => typeof t.expected === "string" && typeof t.adapter === "string"));
  });

  test("an adapter trained on an unrelated corpus is rejected on the repository's held-out files", { timeout: 240_000 }, async () => {
    assert.ok(conventions?.status === "done", "needs the conventions run of the test above");
    const shared = [...characters(unrelatedCorpus())].filter((c) => characters(handlerSources(NOUNS, VERBS)).has(c));
    assert.deepEqual(shared, [], "the unrelated corpus shares characters with the repository");
    const corpus = makeGitRepo(path.join(dir, "catalog"), unrelatedCorpus());
    const unrelated = await train(corpus, 80);
    assert.equal(unrelated.status, "done", unrelated.error ?? "");
    assert.ok(unrelated.adapterPath && existsSync(unrelated.adapterPath));

    const held = await readDatasetFiles(path.join(conventions.runDir, "data"));
    const engine = await EngineClient.start({ enginePath, log: () => undefined });
    try {
      const info = await engine.load(modelPath);
      const result = await evaluate({
        engine, modelInfo: info, format: promptFormatFor(info), folder: path.join(dir, "handlers"), files: held.val, split: held.split,
        // The prompt shape serving gives this adapter: its training length and its dataset's characters per token.
        adapterPath: unrelated.adapterPath, seed: 0, maxTasks: 100, windowTokens: 128, charsPerToken: unrelated.summary?.charsPerToken,
      });
      figures("unrelated", result);
      assert.equal(result.decision.keep, false, result.decision.reason);
      assert.ok(result.diff.editSimilarity.lo <= 0, JSON.stringify(result.diff.editSimilarity));
      assert.match(result.decision.reason, /^The adapter was not activated: on \d+ held-out completions, edit similarity .*95% interval .*activate this adapter anyway\.$/);
      // The same tasks and the same base completions as in the conventions run (both corpora are ASCII: one character
      // per token of the tiny model, so the same prompts): only the adapter differs.
      const same = conventions.evaluation!.tasks;
      assert.deepEqual(result.tasks.map((t) => [t.file, t.offset, t.expected, t.base]), same.map((t) => [t.file, t.offset, t.expected, t.base]));
    } finally {
      await engine.dispose();
    }
  });
});
