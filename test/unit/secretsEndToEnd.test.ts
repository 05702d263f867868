// Issue 9: secrets planted in a repository (many kinds, generated fresh) go through a whole fine-tune, and none of
// them is in anything the run leaves (dataset files, examples, report, events, logs, manifest, evaluation), nor in
// what the trained adapter completes where a secret stood.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync, readdirSync, statSync } from "node:fs";
import * as path from "node:path";
import { tune } from "../../src/core/tune";
import { cliPath, enginePath, makeGitRepo, python, removeDir, sampleSources, tempDir, tinyModel, trainerRoot } from "./support/pipeline";
import { CLEAN, plantSecrets, type Planted } from "./support/plantedSecrets";

let dir: string;
let repo: string;
let modelPath: string;
let planted: Planted;

before(async () => {
  dir = tempDir("secrets-e2e");
  modelPath = await tinyModel(path.join(dir, "cache"));
  planted = plantSecrets();
  repo = makeGitRepo(path.join(dir, "repo"), { ...sampleSources(6), ...planted.files, ...CLEAN });
});
after(() => removeDir(dir));

function filesUnder(root: string): string[] {
  return readdirSync(root, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => path.join(e.parentPath, e.name));
}

describe("planted secrets through a whole fine-tune", () => {
  test("no secret in any file of the run, and none in the adapter's completions where one stood", { timeout: 300_000 }, async () => {
    const result = await tune({
      folder: repo, modelPath, python, trainerRoot, enginePath, runsRoot: path.join(dir, "runs"),
      settings: { steps: 30, seqLen: 64, batch: 4, rank: 4 }, evaluation: { maxTasks: 10 }, onEvent: () => undefined,
    });
    assert.equal(result.status, "done", result.error ?? "");
    const report = JSON.parse(readFileSync(path.join(result.runDir, "data", "report.json"), "utf8")) as { secrets: { filesExcluded: number } };
    assert.equal(report.secrets.filesExcluded, Object.keys(planted.files).length, "not every file with a secret was excluded");

    const files = filesUnder(result.runDir);
    assert.ok(files.some((f) => f.endsWith("examples.jsonl")) && files.some((f) => f.endsWith("events.jsonl")), files.join("\n"));
    let bytes = 0;
    for (const file of files) {
      // Text and binary alike (token files, checkpoints, the adapter): a secret's characters would show as they are.
      const content = readFileSync(file).toString("latin1");
      bytes += statSync(file).size;
      for (const value of planted.values) assert.ok(!content.includes(value), `a planted secret is in ${path.relative(result.runDir, file)}`);
    }
    console.log(`${files.length} files (${bytes.toLocaleString("en-US")} bytes) of the run searched for ${planted.values.length} secrets`);

    // Where a secret stood in a file of the repository, the adapter completes something else.
    const places: [string, string][] = [["src/payments.ts", 'const apiKey = "'], ["src/github.ts", 'auth: "'], ["app/settings.py", "SECRET_KEY = '"], ["cmd/bot/main.go", 'var authToken = "']];
    for (const [file, before] of places) {
      const text = planted.files[file]!;
      const at = text.indexOf(before) + before.length;
      const line = text.slice(0, at).split("\n").length;
      const col = at - text.lastIndexOf("\n", at - 1);
      const completion = execFileSync(process.execPath, [cliPath, "complete", path.join(repo, file), "--line", String(line), "--col", String(col), "--model", modelPath, "--adapter", result.adapterPath!], {
        encoding: "utf8", env: { ...process.env, REPOTUNE_PYTHON: python },
      });
      for (const value of planted.values) assert.ok(!completion.includes(value.slice(0, 8)), `${file}: the adapter completed a planted secret: ${JSON.stringify(completion)}`);
    }
  });
});
