// Bad inputs: each is refused, or skipped with a reason, in plain words, and nothing else changes. Covered here:
// hostile file names (newlines, quotes, backslashes, terminal escapes, HTML, special-token text, bytes that are not
// UTF-8), a 2 GB file, a 100,000-line file with a 10 MB line, a run manifest that is not valid JSON, and a broken
// model file given to the whole pipeline. Covered elsewhere, per function: truncated, foreign and unsupported GGUF
// files and models without FIM tokens (modelValidate.test.ts), adapters for another base model
// (adapterCheck.test.ts), malformed trainer output (trainerProcess.test.ts).
// Run from the repository root after `node esbuild.mjs`.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { closeSync, copyFileSync, existsSync, ftruncateSync, mkdirSync, openSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { buildDataset, type BuildDatasetOptions } from "../../src/core/dataset/build";
import { DatasetFiles } from "../../src/core/dataset/write";
import type { EngineClient } from "../../src/core/engineClient";
import type { PromptFormat } from "../../src/core/promptFormat";
import { listAdapters, repoIdFor } from "../../src/core/runStore";
import { tune } from "../../src/core/tune";
import { updateAdapter } from "../../src/core/update";
import { ExampleLine } from "../../src/protocol/dataset";
import type { ModelInfo } from "../../src/protocol/engine";
import type { RunEvent } from "../../src/protocol/run";
import { enginePath, git, python, sampleSources, trainerRoot, writeFiles } from "./support/pipeline";
import { useTinyEngine } from "./support/tinyEngine";

let dir: string;
let engine: EngineClient;
let info: ModelInfo;
let format: PromptFormat;
let modelPath: string;

useTinyEngine("bad-inputs", (tiny) => ({ dir, modelPath, engine, info, format } = tiny));

const build = (folder: string, outDir: string, extra: Partial<BuildDatasetOptions> = {}) =>
  buildDataset({ folder, outDir, tokenizer: engine, format, model: info, modelPath, seqLen: 128, seed: 0, ...extra });

/** Bytes this process has read through read(2) and friends so far (Linux). */
function bytesRead(): number {
  return Number(/^rchar: (\d+)$/m.exec(readFileSync("/proc/self/io", "utf8"))![1]);
}

/** A small code base in `folder`, committed when `withGit`. */
function codeBase(folder: string, withGit: boolean, extra: () => void = () => undefined): string {
  mkdirSync(folder, { recursive: true });
  writeFiles(folder, sampleSources(4));
  extra();
  if (withGit) {
    git(folder, "init", "-q");
    git(folder, "add", "-A");
    git(folder, "commit", "-qm", "code");
  }
  return folder;
}

describe("file names", () => {
  // Each usable, each a different kind of trouble for a line-based log, a shell, a terminal, HTML, or the prompt.
  const names = [
    "with\nnewline.ts",
    "carriage\rreturn.ts",
    'double"quote.ts',
    "single'quote.ts",
    "back\\slash.ts",
    "\u001b[31mred\u001b[0m.ts",
    "<img src=x onerror=alert(1)>.ts",
    "<|fim_prefix|>special.ts",
    "$(touch pwned).ts",
  ];
  // "café.ts" in Latin-1: a valid Linux file name that no JavaScript string names exactly.
  const latin1 = Buffer.from("caf\xe9.ts", "latin1");

  for (const withGit of [true, false]) {
    test(`${withGit ? "in git" : "outside git"}: odd names are learned from under their exact name, a name that is not UTF-8 is skipped with its reason`, async () => {
      const root = path.join(dir, withGit ? "names-git" : "names-walk");
      codeBase(root, withGit, () => {
        names.forEach((name, i) => writeFileSync(path.join(root, name), `export const value${i} = ${JSON.stringify(name)};\n`.repeat(12)));
        writeFileSync(Buffer.concat([Buffer.from(root + path.sep), latin1]), "export const cafe = 1;\n".repeat(12));
      });
      const out = path.join(dir, `names-out-${withGit}`);
      const built = await build(root, out);

      assert.deepEqual(built.summary.filesSkipped, { name_not_utf8: 1 });
      const files = DatasetFiles.parse(JSON.parse(readFileSync(path.join(out, "files.json"), "utf8")));
      const listed = [...files.train, ...files.val];
      for (const name of names) assert.ok(listed.includes(name), `${JSON.stringify(name)} is in files.json under its exact name`);
      assert.equal(listed.length, names.length + 5);
      assert.ok(!listed.some((p) => p.includes("\ufffd")), "no name decoded with replacement characters");

      // examples.jsonl stays one example per line whatever the names hold, and names each file exactly.
      const lines = readFileSync(path.join(out, "examples.jsonl"), "utf8").trimEnd().split("\n");
      const examples = lines.map((l) => ExampleLine.parse(JSON.parse(l)));
      assert.equal(examples.length, built.summary.examples);
      for (const name of names) assert.ok(examples.some((e) => e.file === name), `${JSON.stringify(name)} has examples`);

      // A name that spells a special token is text in the prompt's file header, never the token itself: each FIM
      // example holds exactly one FIM prefix token.
      const [[fimPrefix]] = await engine.tokenize([[{ text: "<|fim_prefix|>", special: true }]]);
      const tokens = new Int32Array(readFileSync(path.join(out, "train.bin")).buffer.slice(0));
      const fimExamples = examples.filter((e) => e.split === "train" && e.kind !== "next-token").length;
      assert.equal(tokens.filter((t) => t === fimPrefix).length, fimExamples);
    });
  }
});

describe("files too big to learn from", () => {
  test("a 2 GB file is skipped as too large at once, without reading it (in git and outside)", async (t) => {
    for (const withGit of [true, false]) {
      const root = codeBase(path.join(dir, `huge-${withGit}`), withGit, () => undefined);
      // Sparse: 2 GiB long, nothing on disk. Untracked in git (git add would hash it all), as a freshly generated
      // file is: git lists it without reading it.
      const fd = openSync(path.join(root, "huge.ts"), "w");
      ftruncateSync(fd, 2 ** 31);
      closeSync(fd);
      const readBefore = bytesRead();
      const started = Date.now();
      const built = await build(root, path.join(dir, `huge-out-${withGit}`));
      const read = bytesRead() - readBefore;
      assert.deepEqual(built.summary.filesSkipped, { too_large: 1 });
      assert.equal(built.summary.filesUsed, 5);
      assert.ok(read < 50e6, `read ${read} bytes: the 2 GB file was read`);
      assert.ok(Date.now() - started < 20_000, `took ${Date.now() - started} ms`);
      t.diagnostic(`${withGit ? "git" : "walk"}: built in ${Date.now() - started} ms, ${(read / 1e6).toFixed(1)} MB read`);
    }
  });

  test("a 100,000-line file with one 10 MB line: too large by default; within a raised limit minified; included on purpose, learned from in bounded memory", async (t) => {
    const root = codeBase(path.join(dir, "long-line"), true, () => {
      const lines: string[] = [];
      for (let i = 0; i < 100_000; i++) lines.push(i === 50_000 ? `const blob = "${"ab1/".repeat(2_500_000)}";` : `export const line${i} = ${i};`);
      writeFileSync(path.join(dir, "long-line", "generated.ts"), lines.join("\n") + "\n");
    });
    assert.ok(statSync(path.join(root, "generated.ts")).size > 10e6);

    const byDefault = await build(root, path.join(dir, "long-default"));
    assert.deepEqual(byDefault.summary.filesSkipped, { too_large: 1 });

    const raised = 32 * 1024 * 1024;
    const limited = await build(root, path.join(dir, "long-raised"), { maxFileBytes: raised });
    assert.deepEqual(limited.summary.filesSkipped, { minified: 1 });

    let peak = 0;
    const sample = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 10);
    const rssBefore = process.memoryUsage().rss;
    const started = Date.now();
    try {
      const included = await build(root, path.join(dir, "long-included"), { maxFileBytes: raised, include: ["generated.ts"] });
      assert.deepEqual(included.summary.filesSkipped, {});
      assert.equal(included.summary.filesUsed, 6);
      const examples = readFileSync(path.join(dir, "long-included", "examples.jsonl"), "utf8").trimEnd().split("\n").map((l) => ExampleLine.parse(JSON.parse(l)));
      const ofIt = examples.filter((e) => e.file === "generated.ts");
      assert.ok(ofIt.length > 0, "the included file gave examples");
      // Every example fits its sequence: the 10 MB line is cut to the window, never tokenized whole.
      assert.ok(examples.every((e) => e.tokens <= 128 && e.prompt.length + e.middle.length < 10_000), "an example holds the whole long line");
    } finally {
      clearInterval(sample);
    }
    // The file is 13 MB of text (26 MB as a JavaScript string); a few copies of it at most, not one per example.
    assert.ok(peak - rssBefore < 400e6, `peak memory grew by ${((peak - rssBefore) / 1e6).toFixed(0)} MB`);
    assert.ok(Date.now() - started < 60_000, `took ${Date.now() - started} ms`);
    t.diagnostic(`included: built in ${Date.now() - started} ms, peak memory +${((peak - rssBefore) / 1e6).toFixed(0)} MB`);
  });
});

describe("a run manifest that is not valid JSON", () => {
  test("an update from that run is refused with what to do, and no run is started; the adapters list leaves it out", async () => {
    const runsRoot = path.join(dir, "manifest-runs");
    const folder = codeBase(path.join(dir, "manifest-repo"), true);
    const runDir = path.join(runsRoot, await repoIdFor(folder), "20261129T120000000Z-abcdef");
    mkdirSync(runDir, { recursive: true });
    const adapter = path.join(runDir, "adapter-20261129T120000000Z-abcdef.gguf");
    copyFileSync(modelPath, adapter); // the bytes do not matter: the manifest is read first
    const broken = '{"format": "repotune-run", "version": 1, "runId": "20261129T120000000Z-abc';
    writeFileSync(path.join(runDir, "manifest.json"), broken);
    const before = readdirSync(runsRoot, { recursive: true }).sort();

    const events: RunEvent[] = [];
    const result = await updateAdapter({
      folder, modelPath, python, trainerRoot, enginePath, runsRoot, parentAdapter: adapter, onEvent: (e) => events.push(e),
    });
    assert.equal(result.status, "failed");
    assert.match(result.error ?? "", /has no readable RepoTune manifest beside it .*manifest\.json.*Fine-tune from scratch instead\./);
    assert.deepEqual(events.map((e) => e.type), ["error"]);
    assert.deepEqual(readdirSync(runsRoot, { recursive: true }).sort(), before, "no run folder was made");
    assert.equal(readFileSync(path.join(runDir, "manifest.json"), "utf8"), broken);

    assert.deepEqual(await listAdapters(runsRoot, await repoIdFor(folder)), []);
  });
});

describe("a model file that is not a usable GGUF, given to the whole pipeline", () => {
  test("a truncated model fails the run at once with what to do; no dataset, checkpoint or adapter is written", async (t) => {
    const folder = codeBase(path.join(dir, "model-repo"), true);
    const cut = path.join(dir, "cut.gguf");
    writeFileSync(cut, readFileSync(modelPath).subarray(0, Math.floor(statSync(modelPath).size / 2)));
    const runsRoot = path.join(dir, "model-runs");
    const events: RunEvent[] = [];
    const started = Date.now();
    const result = await tune({
      folder, modelPath: cut, python, trainerRoot, enginePath, runsRoot, settings: { steps: 2, seqLen: 64, batch: 2, rank: 4 },
      onEvent: (e) => events.push(e),
    });
    assert.equal(result.status, "failed");
    assert.match(result.error ?? "", /cut\.gguf/);
    assert.match(result.error ?? "", /repotune\.modelPath|[Cc]hoose|[Dd]ownload/, "says what to do");
    assert.equal(result.adapterPath, null);
    assert.ok(Date.now() - started < 30_000, `took ${Date.now() - started} ms`);
    assert.ok(!events.some((e) => e.type === "trainer"), "the trainer never started");
    t.diagnostic(result.error ?? "");
    if (result.runDir) {
      for (const made of ["data", "checkpoints", `adapter-${result.runId}.gguf`, "manifest.json"]) {
        assert.ok(!existsSync(path.join(result.runDir, made)), `${made} was written`);
      }
    }
  });
});
