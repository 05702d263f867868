// An adapter is activated only on the base model it fits, with real files: a RepoTune adapter trained on the tiny
// model, the same model with other weights (another seed: same shapes, another SHA-256), a model of another width,
// the adapter copied out of its run folder (no manifest: shapes decide), and a model file passed as an adapter.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { tune } from "../../src/core/tune";
import { adapterMismatch } from "../../src/core/adapterCheck";
import { enginePath, makeGitRepo, python, removeDir, sampleSources, tempDir, tinyModel, trainerRoot } from "./support/pipeline";

let dir: string;
let modelPath: string;
let adapterPath: string;

function tinyVariant(file: string, ...args: string[]): string {
  execFileSync(python, ["-m", "repotune_trainer", "tiny-model", "--arch", "llama", "--out", file, ...args], {
    env: { ...process.env, PYTHONPATH: trainerRoot },
  });
  return file;
}

before(async () => {
  dir = tempDir("adapter-check");
  modelPath = await tinyModel(path.join(dir, "cache"));
  const repo = makeGitRepo(path.join(dir, "repo"), sampleSources(4));
  const result = await tune({
    folder: repo, modelPath, python, trainerRoot, enginePath, runsRoot: path.join(dir, "runs"),
    settings: { steps: 2, seqLen: 64, batch: 2, rank: 4 }, evaluation: { maxTasks: 4 }, onEvent: () => undefined,
  });
  assert.equal(result.status, "done", result.error ?? "");
  adapterPath = result.adapterPath!;
});
after(() => removeDir(dir));

describe("an adapter fits only the base model it was trained on", () => {
  test("a RepoTune adapter on its own base model fits", async () => {
    assert.equal(await adapterMismatch(adapterPath, modelPath), null);
  });

  test("the same architecture and shapes with other weights do not: the manifest's SHA-256 differs", async () => {
    const other = tinyVariant(path.join(dir, "other-seed.gguf"), "--seed", "7");
    const why = await adapterMismatch(adapterPath, other);
    assert.match(why ?? "", /was trained on .*not on other-seed\.gguf.*Set repotune\.modelPath back to/s);
  });

  test("without a manifest, the shapes decide", async () => {
    const loose = path.join(dir, "loose-adapter.gguf");
    copyFileSync(adapterPath, loose);
    assert.equal(await adapterMismatch(loose, modelPath), null, "a foreign adapter that fits was refused");
    const wide = tinyVariant(path.join(dir, "wide.gguf"), "--width", "128");
    assert.match((await adapterMismatch(loose, wide)) ?? "", /does not fit its .* shape in wide\.gguf: it was made for another model/);
  });

  test("a damaged manifest beside the adapter refuses it: its base model cannot be told", async () => {
    const runDir = path.join(dir, "damaged-run");
    mkdirSync(runDir);
    const copy = path.join(runDir, path.basename(adapterPath));
    copyFileSync(adapterPath, copy);
    writeFileSync(path.join(runDir, "manifest.json"), '{"format": "repotune-run", "vers');
    // The same adapter with no manifest at all fits (shapes decide); a manifest that is there but unreadable does not.
    assert.match((await adapterMismatch(copy, modelPath)) ?? "", /manifest\.json\) cannot be read .*cannot tell which base model/);
  });

  test("a model file, a missing file and a file that is not GGUF are refused with what to do", async () => {
    assert.match((await adapterMismatch(modelPath, modelPath)) ?? "", /is not a LoRA adapter .* Choose an adapter file/);
    assert.match((await adapterMismatch(path.join(dir, "gone.gguf"), modelPath)) ?? "", /does not exist/);
    const notGguf = path.join(dir, "notes.gguf");
    execFileSync("sh", ["-c", `echo 'not a gguf' > '${notGguf}'`]);
    assert.match((await adapterMismatch(notGguf, modelPath)) ?? "", /is not a readable GGUF LoRA adapter/);
  });
});
