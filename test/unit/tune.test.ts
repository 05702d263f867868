// The whole pipeline for real: the engine bundle tokenizes, the Python trainer trains the tiny model, and the run
// folder holds what the extension and the CLI read back. Run from the repository root after `node esbuild.mjs`.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { tune, resolveSettings, trainerArgs, type TuneOptions, type TuneResult } from "../../src/core/tune";
import { runPaths } from "../../src/core/runStore";
import { summaryOf } from "../../src/core/eval/evaluate";
import { readEvents, readManifest, repoIdFor } from "../../src/core/runStore";
import { findPython } from "../../src/core/python";
import { DatasetMeta } from "../../src/protocol/dataset";
import { RunEvent } from "../../src/protocol/run";
import { enginePath, git, makeGitRepo, python, removeDir, sampleSources, tempDir, tinyModel, trainerRoot, writeFiles } from "./support/pipeline";

let dir: string;
let modelPath: string;
let repo: string;

before(async () => {
  dir = tempDir("tune");
  modelPath = await tinyModel(path.join(dir, "cache"));
  repo = makeGitRepo(path.join(dir, "repo"), sampleSources(6));
});
after(() => removeDir(dir));

async function run(overrides: Partial<TuneOptions> = {}): Promise<{ result: TuneResult; events: RunEvent[] }> {
  const events: RunEvent[] = [];
  const result = await tune({
    folder: repo,
    modelPath,
    python,
    trainerRoot,
    enginePath,
    runsRoot: path.join(dir, "runs"),
    settings: { steps: 6, seqLen: 64, batch: 4, rank: 4 },
    // A short evaluation: these tests are about the pipeline; test/unit/evalGate.test.ts is about the gate.
    evaluation: { maxTasks: 20 },
    onEvent: (e) => events.push(e),
    ...overrides,
  });
  return { result, events };
}

function phases(events: RunEvent[]): string[] {
  return events.flatMap((e) => (e.type === "phase" ? [e.phase] : []));
}

describe("tune, end to end on the tiny model", () => {
  test("writes an adapter, a manifest and the event log of the run", async () => {
    const { result, events } = await run();
    assert.equal(result.status, "done", result.error ?? "");
    assert.equal(result.error, null);
    assert.deepEqual(phases(events), ["preparing", "training", "evaluating", "done"]);

    // The run folder: <runsRoot>/<repoId>/<runId>/, a new adapter name per run.
    assert.equal(path.dirname(path.dirname(result.runDir)), path.join(dir, "runs"));
    assert.equal(path.basename(path.dirname(result.runDir)), await repoIdFor(repo));
    assert.equal(result.adapterPath, path.join(result.runDir, `adapter-${result.runId}.gguf`));
    assert.equal(readFileSync(result.adapterPath!).subarray(0, 4).toString("latin1"), "GGUF");

    const manifest = await readManifest(result.manifestPath!);
    assert.equal(manifest.status, "done");
    assert.equal(manifest.runId, result.runId);
    assert.equal(manifest.adapter, path.basename(result.adapterPath!));
    assert.equal(manifest.baseModel.size, readFileSync(modelPath).length);
    assert.match(manifest.baseModel.sha256, /^[0-9a-f]{64}$/);
    assert.equal(manifest.gitCommit, git(repo, "rev-parse", "HEAD").trim());
    assert.deepEqual(manifest.settings, resolveSettings({ steps: 6, seqLen: 64, batch: 4, rank: 4 }));
    assert.equal(manifest.metrics.steps, 6);
    assert.equal(manifest.metrics.valLossBase, result.valLossBase);
    assert.equal(manifest.metrics.valLoss, result.valLoss);
    assert.deepEqual(manifest.dataset, result.summary);
    assert.ok(result.valLossBase !== null && result.valLoss !== null);

    // After training, the adapter is evaluated on held-out completions and the decision recorded with its numbers.
    const evaluation = result.evaluation;
    assert.ok(evaluation, `no evaluation: ${result.decision?.reason}`);
    assert.equal(evaluation.taskCount, 20);
    assert.equal(evaluation.settings.windowTokens, 64);
    assert.ok(result.decision && typeof result.decision.keep === "boolean");
    assert.equal(result.decision.keep, evaluation.diff.editSimilarity.lo > 0);
    assert.match(result.decision.reason, /on 20 (held-out )?completions, edit similarity \d+\.\d% with the adapter against \d+\.\d% for the base model/);
    assert.deepEqual(manifest.evaluation, summaryOf(evaluation));
    assert.deepEqual(manifest.decision, result.decision);
    assert.equal(manifest.parentAdapter, null);
    assert.ok(existsSync(path.join(result.runDir, "evaluation.json")));

    // events.jsonl holds exactly what onEvent saw, each line a valid RunEvent.
    const logged = await readEvents(path.join(result.runDir, "events.jsonl"));
    assert.deepEqual(logged, events.map((e) => RunEvent.parse(e)));
    const trainerEvents = events.flatMap((e) => (e.type === "trainer" ? [e.event.event] : []));
    assert.equal(trainerEvents[0], "start");
    for (const e of events) if (e.type === "trainer") assert.ok(e.event.v === 1 && e.event.run_id === result.runId, `event without version or run id: ${JSON.stringify(e.event)}`);
    assert.equal(trainerEvents.filter((e) => e === "step").length, 6);
    assert.equal(trainerEvents.at(-1), "done");
    assert.ok(events.some((e) => e.type === "adapter" && e.adapterPath === result.adapterPath));
    assert.ok(events.some((e) => e.type === "evaluation"));
    // The trainer's memory estimate comes before training, for the device the run uses.
    const estimate = events.findIndex((e) => e.type === "estimate");
    assert.ok(estimate >= 0 && estimate < events.findIndex((e) => e.type === "trainer"), "no memory estimate before training");
    const e = events[estimate];
    assert.ok(e.type === "estimate" && e.device === "cpu" && e.peakBytes > 100e6, `estimate ${JSON.stringify(e)}`);

    const meta = DatasetMeta.parse(JSON.parse(readFileSync(path.join(result.runDir, "data", "meta.json"), "utf8")));
    assert.equal(meta.seq_len, 64);
    assert.equal(meta.model_path, modelPath);
  });

  test("several folders make one dataset, and the run is stored under the id of the set", async () => {
    const other = makeGitRepo(path.join(dir, "other"), sampleSources(3));
    const { result } = await run({ folder: [repo, other] });
    assert.equal(result.status, "done", result.error ?? "");
    assert.equal(path.basename(path.dirname(result.runDir)), await repoIdFor([repo, other]));
    const files = JSON.parse(readFileSync(path.join(result.runDir, "data", "files.json"), "utf8")) as { train: string[]; val: string[] };
    const all = [...files.train, ...files.val];
    // other's four files are copies of four of repo's: the copies are left out, the paths say which folder each is from.
    assert.ok(all.every((p) => p.startsWith("repo/") || p.startsWith("other/")), all.join(" "));
    assert.equal(result.summary?.duplicates?.exact, 4);
    assert.ok(result.evaluation !== null && result.evaluation.tasks.length > 0, "the held-out files were evaluated");
    // Every held-out file is asked about under its prefixed path, as its training examples were written.
    const asked = new Set(result.evaluation.tasks.map((t) => t.file));
    assert.ok([...asked].every((f) => files.val.includes(f)), [...asked].join(" "));
  });

  test("a second run gets a new run folder and a new adapter name", async () => {
    const a = (await run()).result;
    const b = (await run()).result;
    assert.equal(a.status, "done");
    assert.equal(b.status, "done");
    assert.notEqual(a.runId, b.runId);
    assert.ok(a.runId < b.runId, "run ids sort by time");
    assert.notEqual(a.adapterPath, b.adapterPath);
    assert.ok(existsSync(a.adapterPath!) && existsSync(b.adapterPath!));
  });

  test("aborting while training stops the trainer cleanly: status stopped, with a checkpoint", { timeout: 120_000 }, async () => {
    const abort = new AbortController();
    const events: RunEvent[] = [];
    const { result } = await run({
      settings: { steps: 5000, seqLen: 64, batch: 4, rank: 4 },
      signal: abort.signal,
      onEvent: (e) => {
        events.push(e);
        if (e.type === "trainer" && e.event.event === "step" && e.event.step === 2) abort.abort();
      },
    });
    assert.equal(result.status, "stopped", result.error ?? "");
    assert.equal(result.adapterPath, null);
    assert.deepEqual(phases(events), ["preparing", "training", "stopped"]);
    const stopped = events.find((e) => e.type === "trainer" && e.event.event === "stopped");
    assert.ok(stopped?.type === "trainer" && stopped.event.event === "stopped", "the trainer reported that it stopped");
    assert.ok(stopped.event.checkpoint !== null && existsSync(stopped.event.checkpoint), "and saved a checkpoint");
    const manifest = await readManifest(result.manifestPath!);
    assert.equal(manifest.status, "stopped");
    assert.equal(manifest.adapter, null);
    assert.equal(manifest.checkpoint, stopped.event.checkpoint);
    assert.ok(manifest.metrics.steps >= 2 && manifest.metrics.steps < 5000);
  });

  test("aborting while evaluating keeps the adapter on disk but does not keep it, and says why", async () => {
    const abort = new AbortController();
    const events: RunEvent[] = [];
    const { result } = await run({
      signal: abort.signal,
      onEvent: (e) => {
        events.push(e);
        if (e.type === "evalProgress") abort.abort();
      },
    });
    assert.equal(result.status, "done", result.error ?? "");
    assert.ok(result.adapterPath && existsSync(result.adapterPath));
    assert.equal(result.evaluation, null);
    assert.equal(result.decision?.keep, false);
    assert.match(result.decision?.reason ?? "", /^The evaluation on held-out code was stopped before it finished, so the adapter was not activated; you can activate it anyway\.$/);
    assert.deepEqual(phases(events), ["preparing", "training", "evaluating", "done"]);
    const manifest = await readManifest(result.manifestPath!);
    assert.equal(manifest.evaluation, null);
    assert.deepEqual(manifest.decision, result.decision);
  });

  test("an evaluation that cannot run leaves the adapter not kept, with the reason", async () => {
    const gone = makeGitRepo(path.join(dir, "vanishing"), sampleSources(6));
    const events: RunEvent[] = [];
    const { result } = await run({
      folder: gone,
      // The held-out files disappear between training and evaluation.
      onEvent: (e) => {
        events.push(e);
        if (e.type === "phase" && e.phase === "evaluating") rmSync(path.join(gone, "src"), { recursive: true, force: true });
      },
    });
    assert.equal(result.status, "done", result.error ?? "");
    assert.equal(result.evaluation, null);
    assert.equal(result.decision?.keep, false);
    assert.match(result.decision?.reason ?? "", /^The adapter could not be evaluated on held-out code: None of the \d+ held-out files could be read in .*vanishing, so there is nothing to evaluate the adapter on\. It was not activated; you can activate it anyway\.$/);
    assert.ok(events.some((e) => e.type === "log" && e.message === result.decision?.reason), "the reason is in the run's log");
  });

  test("aborting before training starts ends the run as stopped, without starting the trainer", async () => {
    const abort = new AbortController();
    const events: RunEvent[] = [];
    const { result } = await run({
      signal: abort.signal,
      onEvent: (e) => {
        events.push(e);
        if (e.type === "phase" && e.phase === "preparing") abort.abort();
      },
    });
    assert.equal(result.status, "stopped");
    assert.ok(!events.some((e) => e.type === "trainer"));
    assert.ok(!existsSync(path.join(result.runDir, "trainer.log")));
  });
});

describe("tune, with inputs it cannot use", () => {
  function assertFailed(result: TuneResult, events: RunEvent[], pattern: RegExp, action?: string): void {
    assert.equal(result.status, "failed");
    assert.match(result.error ?? "", pattern);
    const error = events.find((e) => e.type === "error");
    assert.ok(error && error.type === "error");
    assert.equal(error.message, result.error);
    assert.equal(error.action, action);
    assert.deepEqual(phases(events), ["preparing", "failed"]);
    assert.ok(!events.some((e) => e.type === "trainer"), "the trainer never started");
  }

  test("an empty folder", async () => {
    const empty = path.join(dir, "empty");
    mkdirSync(empty);
    const { result, events } = await run({ folder: empty });
    assertFailed(result, events, /has no files to learn from\. Open the folder of a code repository/);
  });

  test("a folder without text files", async () => {
    const binaries = path.join(dir, "binaries");
    writeFiles(binaries, { "a.bin": Buffer.from([0, 1, 2, 3, 0, 0, 255, 0]), "empty.txt": "" });
    const { result, events } = await run({ folder: binaries });
    assertFailed(result, events, /^The folder has no text files RepoTune can learn from: all 2 files were skipped \(binary 1, empty 1\)/);
  });

  test("a model path that is not a GGUF file", async () => {
    const notGguf = path.join(dir, "model.bin");
    writeFileSync(notGguf, "PK\x03\x04 this is a zip, not a model");
    const { result, events } = await run({ modelPath: notGguf });
    assertFailed(result, events, /is not a GGUF model .* Set repotune\.modelPath to a \.gguf file/, "repotune.modelPath");
    const missing = await run({ modelPath: path.join(dir, "nope.gguf") });
    assertFailed(missing.result, missing.events, /does not exist or cannot be read/, "repotune.modelPath");
  });

  test("a Python without PyTorch", async () => {
    // A virtual environment of the torch Python does not see its packages: a Python without torch on any machine.
    const venv = path.join(dir, "venv");
    execFileSync(python, ["-m", "venv", "--without-pip", venv]);
    const bare = path.join(venv, "bin", "python");
    assert.throws(() => execFileSync(bare, ["-c", "import torch"], { stdio: "ignore" }), "the venv has no torch");
    const { result, events } = await run({ python: bare });
    assertFailed(result, events, /cannot train \(no PyTorch and NumPy.*\)\. .*Install PyTorch .*set repotune\.pythonPath/, "repotune.pythonPath");
  });

  test("findPython uses a configured interpreter only, and otherwise finds one with PyTorch", async () => {
    const saved = process.env.REPOTUNE_PYTHON;
    process.env.REPOTUNE_PYTHON = python;
    try {
      const bare = path.join(dir, "venv", "bin", "python");
      await assert.rejects(findPython(bare, trainerRoot), (err: Error) => {
        assert.match(err.message, /found none\. Tried: \S+venv\/bin\/python \(.+\)\. .*set repotune\.pythonPath/);
        assert.ok(!err.message.includes(python + " ("), "no other interpreter is tried when one is configured");
        return true;
      });
      const found = await findPython(undefined, trainerRoot);
      assert.equal(found.python, python);
      assert.ok(found.selftest.ok && found.selftest.torch !== null && found.selftest.numpy !== null);
    } finally {
      if (saved === undefined) delete process.env.REPOTUNE_PYTHON;
      else process.env.REPOTUNE_PYTHON = saved;
    }
  });

  test("files of the folder RepoTune runs from cannot shadow the trainer's modules", async () => {
    const hostile = path.join(dir, "hostile");
    mkdirSync(hostile, { recursive: true });
    for (const m of ["json", "numpy", "torch"]) writeFileSync(path.join(hostile, `${m}.py`), "raise SystemExit('shadowed')\n");
    const cwd = process.cwd();
    process.chdir(hostile);
    try {
      const found = await findPython(python, trainerRoot);
      assert.ok(found.selftest.ok, "the selftest ran the workspace's numpy.py/torch.py instead of the real modules");
    } finally {
      process.chdir(cwd);
    }
  });

  test("invalid settings", async () => {
    const { result, events } = await run({ settings: { steps: 0 } });
    assertFailed(result, events, /training settings are invalid \(steps/);
  });

  test("a trainer error is passed on with the trainer's own message", { skip: process.platform === "darwin" && "MPS may exist here" }, async () => {
    const { result, events } = await run({ settings: { steps: 2, seqLen: 64, device: "mps" } });
    assert.equal(result.status, "failed");
    assert.match(result.error ?? "", /^Training failed: --device mps was requested but this PyTorch has no Apple MPS support\./);
    assert.deepEqual(phases(events), ["preparing", "training", "failed"]);
  });
});

test("the trainer gets the micro-batch, accumulation, checkpointing and base-weight settings", () => {
  const args = trainerArgs("/models/m.gguf", runPaths("/runs", "repo", "run1"), resolveSettings({ batch: 4, gradAccum: 16, gradCheckpoint: true, baseWeights: "q4_0" }));
  const value = (flag: string) => args[args.indexOf(flag) + 1];
  assert.equal(value("--batch"), "4");
  assert.equal(value("--grad-accum"), "16");
  assert.equal(value("--base-weights"), "q4_0");
  assert.ok(args.includes("--grad-checkpoint"));
  assert.ok(!trainerArgs("/models/m.gguf", runPaths("/runs", "repo", "run1"), resolveSettings()).includes("--grad-checkpoint"), "checkpointing is off unless asked for");
});
