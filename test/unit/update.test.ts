// "Update adapter" for real: the tiny model, the real trainer and engine. A repository written in one convention is
// fine-tuned; then files in a second convention are committed and the adapter is updated from the first: the update
// trains on the changed files plus a replay sample, holds out changed files, starts from the parent (its step-0
// validation loss is the parent's, below the base model's on the same data) and records its parent. Run from the
// repository root after `node esbuild.mjs`.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile, execFileSync } from "node:child_process";
import { copyFileSync, appendFileSync } from "node:fs";
import * as path from "node:path";
import { tune, type TuneResult } from "../../src/core/tune";
import { updateAdapter } from "../../src/core/update";
import { EngineClient } from "../../src/core/engineClient";
import { promptFormatFor } from "../../src/core/promptFormat";
import { evaluate } from "../../src/core/eval/evaluate";
import { readDatasetFiles } from "../../src/core/dataset/write";
import { changedSince, updateSplit } from "../../src/core/dataset/updateSplit";
import { UserError } from "../../src/core/errors";
import { readManifest } from "../../src/core/runStore";
import type { RunEvent } from "../../src/protocol/run";
import { cliPath, enginePath, git, handlerSources, makeGitRepo, python, removeDir, tempDir, tinyModel, trainerRoot, writeFiles } from "./support/pipeline";

const FIRST = ["order", "invoice", "customer", "shipment", "ticket", "account", "payment", "refund", "coupon", "review"];
const VERBS = ["create", "update", "remove", "fetch"];
const SECOND = ["basket", "report", "session", "device", "channel", "profile", "address", "vendor"];


/** Convention two, added later: queries (select, log, return the row). */
function queries(nouns: string[]): Record<string, string> {
  const files: Record<string, string> = {};
  for (const noun of nouns) {
    const Noun = noun[0].toUpperCase() + noun.slice(1);
    const lines = [`// Queries for ${noun} rows.`, `import { db, log } from "../db";`, ""];
    for (const by of ["Id", "Owner", "Name", "Status"]) {
      lines.push(
        `export async function find${Noun}By${by}(value) {`,
        `  const row = await db.one("select * from ${noun}s where ${by.toLowerCase()} = $1", [value]);`,
        `  log.debug("${noun}s.findBy${by}", value);`,
        `  return row;`,
        "}",
        "",
      );
    }
    files[`src/queries/${noun}.js`] = lines.join("\n");
  }
  return files;
}

let dir: string;
let modelPath: string;
let repo: string;
let parent: TuneResult;
let updated: TuneResult;

before(async () => {
  dir = tempDir("update");
  modelPath = await tinyModel(path.join(dir, "cache"));
  repo = makeGitRepo(path.join(dir, "repo"), handlerSources(FIRST, VERBS));
});
after(() => removeDir(dir));

const common = () => ({
  modelPath, python, trainerRoot, enginePath, runsRoot: path.join(dir, "runs"), evaluation: { maxTasks: 40 },
});

describe("updating an adapter after new commits", () => {
  test("continues from the parent on the changed files and records it", { timeout: 240_000 }, async () => {
    let t = Date.now();
    parent = await tune({ ...common(), folder: repo, settings: { steps: 60, seqLen: 128, batch: 8, rank: 8 }, onEvent: () => undefined });
    assert.equal(parent.status, "done", parent.error ?? "");
    console.log(`parent: ${((Date.now() - t) / 1000).toFixed(1)} s, val loss ${parent.valLossBase?.toFixed(3)} -> ${parent.valLoss?.toFixed(3)}, ${parent.decision?.reason}`);
    const parentCommit = git(repo, "rev-parse", "HEAD").trim();

    writeFiles(repo, queries(SECOND));
    git(repo, "add", "-A");
    git(repo, "commit", "-q", "-m", "queries");

    const events: RunEvent[] = [];
    t = Date.now();
    // Other settings than the parent's: the update must use the parent's rank, alpha and sequence length anyway.
    updated = await updateAdapter({
      ...common(), folder: repo, parentAdapter: parent.adapterPath!, settings: { steps: 40, rank: 4, seqLen: 64, batch: 8 },
      onEvent: (e) => events.push(e),
    });
    assert.equal(updated.status, "done", updated.error ?? "");
    const e = updated.evaluation!;
    console.log(
      `update: ${((Date.now() - t) / 1000).toFixed(1)} s, val loss (parent at step 0) ${updated.valLossBase?.toFixed(3)} -> ${updated.valLoss?.toFixed(3)}; ` +
        `${e.taskCount} tasks, edit similarity base ${e.base.editSimilarity.mean.toFixed(3)}, adapter ${e.adapter.editSimilarity.mean.toFixed(3)}; ${updated.decision?.reason}`,
    );

    // The dataset: changed files plus a replay sample; held-out files among the changed ones.
    const s = updated.summary!;
    assert.equal(s.splitMethod, "update");
    assert.equal(s.changedFiles, SECOND.length);
    assert.equal(s.replayFiles, Math.round(0.3 * FIRST.length));
    assert.equal(s.filesUsed, SECOND.length + s.replayFiles!);
    const files = await readDatasetFiles(path.join(updated.runDir, "data"));
    const changed = Object.keys(queries(SECOND));
    assert.ok(files.val.length >= 1 && files.val.every((f) => changed.includes(f)), JSON.stringify(files.val));
    assert.equal(files.train.filter((f) => changed.includes(f)).length, SECOND.length - files.val.length);
    assert.ok(e.tasks.every((task) => files.val.includes(task.file)));

    // The trainer started from the parent, with its settings.
    const start = events.find((ev) => ev.type === "trainer" && ev.event.event === "start");
    assert.ok(start?.type === "trainer" && start.event.event === "start");
    assert.equal(start.event.init_adapter, parent.adapterPath);
    const manifest = await readManifest(updated.manifestPath!);
    const parentManifest = await readManifest(parent.manifestPath!);
    assert.equal(manifest.parentAdapter, parent.adapterPath);
    assert.equal(manifest.parentRunId, parent.runId);
    assert.equal(manifest.gitCommit, git(repo, "rev-parse", "HEAD").trim());
    assert.notEqual(manifest.gitCommit, parentCommit);
    assert.deepEqual([manifest.settings.rank, manifest.settings.alpha, manifest.settings.seqLen], [8, 16, 128]);
    assert.deepEqual(manifest.baseModel, parentManifest.baseModel);
    assert.deepEqual(manifest.decision, updated.decision);

    // Step 0 is base + parent: on the update's own validation data it is below the base model alone, which the
    // trainer measures here on the same data without --init-adapter.
    const out = execFileSync(python, ["-m", "repotune_trainer", "train", "--model", modelPath, "--data", path.join(updated.runDir, "data"),
      "--out", path.join(dir, "base-check"), "--adapter-out", path.join(dir, "base-check.gguf"), "--steps", "1", "--rank", "8", "--threads", "1"],
    { env: { ...process.env, PYTHONPATH: trainerRoot }, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
    const baseLoss = out.split("\n").filter(Boolean).map((l) => JSON.parse(l)).find((ev) => ev.event === "done").val_loss_base as number;
    console.log(`update data: base ${baseLoss.toFixed(3)}, base + parent ${updated.valLossBase!.toFixed(3)}, updated ${updated.valLoss!.toFixed(3)}`);
    assert.ok(updated.valLossBase! < baseLoss, `${updated.valLossBase} !< ${baseLoss}`);
    // The update learned the second convention: lower loss on its held-out files than the parent, and it completes
    // them better than the base model.
    assert.ok(updated.valLoss! < updated.valLossBase!);
    assert.ok(e.adapter.editSimilarity.mean > e.base.editSimilarity.mean);
    // ...and better than the parent it started from, on the same tasks.
    const engine = await EngineClient.start({ enginePath, log: () => undefined });
    try {
      const info = await engine.load(modelPath);
      const before = await evaluate({
        engine, modelInfo: info, format: promptFormatFor(info), folder: repo, files: files.val, split: files.split,
        adapterPath: parent.adapterPath!, seed: 0, maxTasks: 40, windowTokens: 128, charsPerToken: s.charsPerToken,
      });
      console.log(`held-out queries: edit similarity parent ${before.adapter.editSimilarity.mean.toFixed(3)}, updated ${e.adapter.editSimilarity.mean.toFixed(3)}`);
      assert.deepEqual(before.tasks.map((x) => [x.file, x.offset, x.expected]), e.tasks.map((x) => [x.file, x.offset, x.expected]));
      assert.ok(e.adapter.editSimilarity.mean > before.adapter.editSimilarity.mean);
    } finally {
      await engine.dispose();
    }
  });

  test("a different base model is refused, and so is an update with nothing changed", { timeout: 60_000 }, async () => {
    assert.ok(parent?.status === "done", "needs the parent run of the test above");
    const other = path.join(dir, "other.gguf");
    copyFileSync(modelPath, other);
    appendFileSync(other, Buffer.from([0]));
    const errors: RunEvent[] = [];
    const refused = await updateAdapter({ ...common(), modelPath: other, folder: repo, parentAdapter: parent.adapterPath!, onEvent: (e) => errors.push(e) });
    assert.equal(refused.status, "failed");
    assert.match(refused.error!, /trained on another base model .*Set repotune\.modelPath back to that model, or fine-tune from scratch/);
    assert.equal(errors.at(-1)?.type, "error");

    // A repository at the parent's own commit: nothing to update.
    const fresh = makeGitRepo(path.join(dir, "fresh"), handlerSources(FIRST.slice(0, 4), VERBS));
    const base = await tune({ ...common(), folder: fresh, settings: { steps: 2, seqLen: 64, batch: 4, rank: 4 }, evaluation: { maxTasks: 2 }, onEvent: () => undefined });
    assert.equal(base.status, "done", base.error ?? "");
    const nothing = await updateAdapter({ ...common(), folder: fresh, parentAdapter: base.adapterPath!, onEvent: () => undefined });
    assert.equal(nothing.status, "failed");
    assert.match(nothing.error!, /^Nothing to update: no file changed since the commit/);
  });
});

test("repotune update on the command line: one changed file, its end held out, the parent's model by default", { timeout: 120_000 }, async () => {
  assert.ok(updated?.status === "done", "needs the update run above");
  writeFiles(repo, queries(["invoice"]));
  git(repo, "add", "-A");
  git(repo, "commit", "-q", "-m", "one more");
  const runs = path.join(dir, "runs");
  const run = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile(process.execPath, [cliPath, "update", repo, "--adapter", updated.adapterPath!, "--runs", runs, "--steps", "10", "--max-tasks", "10"],
      { env: { ...process.env, REPOTUNE_PYTHON: python, REPOTUNE_MODEL: "" }, maxBuffer: 16 << 20 },
      (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === "number" ? err.code : 1) : 0, stdout, stderr }));
  });
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stdout, /update: 1 files changed since the adapter's commit, \d+ earlier files replayed/);
  const adapter = /done in .*: adapter (\S+)/.exec(run.stdout)?.[1];
  assert.ok(adapter, run.stdout);
  const manifest = await readManifest(path.join(path.dirname(adapter), "manifest.json"));
  assert.equal(manifest.parentAdapter, updated.adapterPath);
  assert.equal(manifest.dataset.splitMethod, "update");
  assert.equal(manifest.dataset.changedFiles, 1);
  assert.equal(manifest.baseModel.sha256, (await readManifest(updated.manifestPath!)).baseModel.sha256);
  const files = await readDatasetFiles(path.join(path.dirname(adapter), "data"));
  assert.deepEqual(files.val, ["src/queries/invoice.js"]);
  assert.equal(files.split, "one-file");
  assert.ok(files.train.includes("src/queries/invoice.js"));
});

test("changed files: committed since, modified and untracked; an unknown commit says to fine-tune from scratch", async () => {
  const root = makeGitRepo(path.join(dir, "changes"), { "a.js": "let a = 1;\n", "b.js": "let b = 2;\n", "c.js": "let c = 3;\n" });
  const first = git(root, "rev-parse", "HEAD").trim();
  writeFiles(root, { "d.js": "let d = 4;\n" });
  git(root, "add", "-A");
  git(root, "commit", "-q", "-m", "d");
  writeFiles(root, { "a.js": "let a = 10;\n", "e.js": "let e = 5;\n" });
  assert.deepEqual([...(await changedSince(root, first))].sort(), ["a.js", "d.js", "e.js"]);
  await assert.rejects(changedSince(root, "0123456789abcdef0123456789abcdef01234567"), (err: Error) =>
    err instanceof UserError && /is not in this repository any more .*Fine-tune from scratch/.test(err.message));

  // The replay sample: a seeded choice of the unchanged files, 30% of them and at least one; held out: changed only.
  const usable = Array.from({ length: 20 }, (_, i) => ({ path: `f${i}.js`, chars: 100 }));
  const changed = new Set(["f3.js", "f7.js", "f11.js"]);
  const one = updateSplit(usable, changed, null, { seed: 0, valFraction: 0.1 });
  assert.equal(one.replay.length, Math.round(0.3 * 17));
  assert.ok(one.replay.every((p) => !changed.has(p)));
  assert.deepEqual(updateSplit(usable, changed, null, { seed: 0, valFraction: 0.1 }), one);
  assert.notDeepEqual(updateSplit(usable, changed, null, { seed: 1, valFraction: 0.1 }).replay, one.replay);
  assert.ok(one.heldOut.length >= 1 && one.heldOut.length < 3 && one.heldOut.every((p) => changed.has(p)));
  assert.equal(updateSplit(usable.slice(0, 4), new Set(["f0.js"]), null, { seed: 0, valFraction: 0.1, replayFraction: 0.01 }).replay.length, 1);
  assert.throws(() => updateSplit(usable, new Set(["image.png"]), null, { seed: 0, valFraction: 0.1 }), /Nothing to update: the 1 files changed/);
});
