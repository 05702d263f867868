// `node dist/cli.js` as a user runs it: real engine, real trainer, the tiny model generated into a temp cache.
// Run from the repository root after `node esbuild.mjs`.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { DatasetMeta } from "../../src/protocol/dataset";
import { readManifest } from "../../src/core/runStore";
import { cliPath, makeGitRepo, python, removeDir, sampleSources, tempDir, writeFiles } from "./support/pipeline";

let dir: string;
let repo: string;

interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

function cli(args: string[]): Promise<CliRun> {
  const env = {
    ...process.env,
    REPOTUNE_PYTHON: python,
    XDG_CACHE_HOME: path.join(dir, "cache"),
    REPOTUNE_HOME: path.join(dir, "home"),
  };
  return new Promise((resolve) => {
    execFile(process.execPath, [cliPath, ...args], { env, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

before(() => {
  dir = tempDir("cli");
  repo = makeGitRepo(path.join(dir, "repo"), sampleSources(6));
});
after(() => removeDir(dir));

describe("repotune CLI", () => {
  test("--help describes the commands and exits 0", async () => {
    const r = await cli(["--help"]);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /^Usage: repotune <command>/);
    for (const c of ["tune <folder>", "eval <folder>", "dataset <folder>", "complete <file>", "--model PATH|tiny", "--seq-len", "--max-tasks N"]) assert.ok(r.stdout.includes(c), c);
  });

  test("mistakes exit 1 with the reason on stderr", async () => {
    const unknown = await cli(["frobnicate", "."]);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /^repotune: Unknown command "frobnicate"/);
    const badOption = await cli(["tune", repo, "--bogus"]);
    assert.equal(badOption.code, 1);
    assert.match(badOption.stderr, /Unknown option '--bogus'/);
    const badNumber = await cli(["tune", repo, "--model", "tiny", "--steps", "ten"]);
    assert.equal(badNumber.code, 1);
    assert.match(badNumber.stderr, /--steps must be a whole number, not "ten"/);
    const noModel = await cli(["tune", repo]);
    assert.equal(noModel.code, 1);
    assert.match(noModel.stderr, /No base model: pass --model PATH\.gguf/);
    const notGguf = path.join(dir, "not-a-model.gguf");
    writeFileSync(notGguf, "hello");
    const bad = await cli(["tune", repo, "--model", notGguf]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /is not a GGUF model/);
    assert.equal(bad.stdout, "");
    const noAdapter = await cli(["eval", repo, "--model", "tiny"]);
    assert.equal(noAdapter.code, 1);
    assert.match(noAdapter.stderr, /^repotune: repotune eval needs --adapter PATH/);
    const missingAdapter = await cli(["eval", repo, "--adapter", path.join(dir, "nope.gguf")]);
    assert.equal(missingAdapter.code, 1);
    assert.match(missingAdapter.stderr, /The adapter .*nope\.gguf does not exist/);
  });

  test("dataset writes only the data", async () => {
    const out = path.join(dir, "data");
    const r = await cli(["dataset", repo, "--model", "tiny", "--out", out, "--seq-len", "64"]);
    assert.equal(r.code, 0, r.stderr);
    const meta = DatasetMeta.parse(JSON.parse(readFileSync(path.join(out, "meta.json"), "utf8")));
    assert.equal(meta.seq_len, 64);
    assert.equal(meta.summary.filesUsed, 7);
    assert.match(r.stdout, new RegExp(`dataset: 7 files \\(skipped: none\\), ${meta.summary.examples} examples \\(qwen2\\.5-coder\\)`));
    assert.ok(existsSync(path.join(out, "train.bin")) && existsSync(path.join(out, "val.bin")));
    assert.ok(!existsSync(path.join(dir, "home")), "no run was created");
  });

  test("dataset takes several folders (a multi-root workspace), their paths prefixed with each folder's name", async () => {
    const second = makeGitRepo(path.join(dir, "second"), { "lib/util.ts": "export const twice = (n: number): number => 2 * n;\n", "lib/names.ts": "export const names = [\"a\", \"b\"];\n" });
    const out = path.join(dir, "data-two");
    const r = await cli(["dataset", repo, second, "--model", "tiny", "--out", out, "--seq-len", "64"]);
    assert.equal(r.code, 0, r.stderr);
    const meta = DatasetMeta.parse(JSON.parse(readFileSync(path.join(out, "meta.json"), "utf8")));
    assert.equal(meta.summary.filesUsed, 9);
    const files = JSON.parse(readFileSync(path.join(out, "files.json"), "utf8")) as { train: string[]; val: string[] };
    const all = [...files.train, ...files.val].sort();
    assert.ok(all.includes("second/lib/util.ts") && all.includes("repo/src/store.ts"), all.join(" "));
    assert.ok(all.every((p) => p.startsWith("repo/") || p.startsWith("second/")), all.join(" "));
    const missing = await cli(["dataset", repo, path.join(dir, "nowhere"), "--model", "tiny", "--out", path.join(dir, "data-none")]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /nowhere is not a folder/);
  });

  test("tune trains and evaluates the adapter on held-out files; eval and complete agree with it", { timeout: 300_000 }, async () => {
    const r = await cli(["tune", repo, "--model", "tiny", "--steps", "30", "--seq-len", "64", "--max-tasks", "30"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, "");
    assert.match(r.stdout, /^run \d{8}T\d{9}Z-[0-9a-f]{6}: /);
    assert.match(r.stdout, /\ndataset: 7 files, \d+ examples \(qwen2\.5-coder\); train \d+ x 64 tokens, validation \d+ x 64/);
    assert.match(r.stdout, /\nstep 30\/30 {2}loss \d+\.\d{4}/);
    assert.match(r.stdout, /\nevaluating: the base model and the adapter complete held-out code\n {2}\d+\/60 completions\n/);

    // The evaluation table: the three metrics with intervals, the trainer's losses, each language, the decision.
    assert.match(r.stdout, /\nheld-out evaluation: 30 completions in \d+ files? \(.*\); window 64 tokens, up to 48 generated; [\d.]+ s\n/);
    const row = (name: string) => new RegExp(`\\n${name} +(\\S+) \\((\\S+)\\) +(\\S+) \\((\\S+)\\) +([+−]\\S+)( points)? \\(([+−]\\S+) to ([+−]\\S+)\\)\\n`).exec(r.stdout);
    for (const name of ["exact match", "edit similarity", "accepted chars"]) assert.ok(row(name), `no ${name} row in\n${r.stdout}`);
    const loss = /\nvalidation loss +(\d+\.\d+) \(ppl [\d.]+\) +(\d+\.\d+) \(ppl [\d.]+\) +−\d+\.\d%, best step \d+\n/.exec(r.stdout);
    assert.ok(loss, r.stdout);
    assert.ok(Number(loss[2]) < Number(loss[1]), "30 steps on this repository lower the held-out loss");
    assert.match(r.stdout, /\nTypeScript +30 +\d+\.\d% +\d+\.\d% +[+−]\d+\.\d points/);
    const decision = /\n(kept|not kept): (.*)\n/.exec(r.stdout);
    assert.ok(decision, r.stdout);

    const adapter = /done in [\d.]+ s: adapter (\S+\.gguf)/.exec(r.stdout)?.[1];
    assert.ok(adapter && existsSync(adapter));
    assert.ok(adapter.startsWith(path.join(dir, "home")), "runs go under $REPOTUNE_HOME");
    // What was printed is what the run recorded (the table rounds; the manifest has the exact interval).
    const manifest = await readManifest(path.join(path.dirname(adapter), "manifest.json"));
    assert.ok(manifest.evaluation && manifest.decision);
    assert.equal(decision[1] === "kept", manifest.decision.keep);
    assert.equal(decision[2], manifest.decision.reason);
    assert.equal(manifest.decision.keep, manifest.evaluation.diff.editSimilarity.lo > 0);

    // Three tasks, each with expected / base / adapter side by side.
    const samples = [...r.stdout.matchAll(/\n\[(\d)\] (\S+):(\d+):(\d+) \((line|next-line|block)\) .*\n {4}expected +\| base +\| adapter\n {4}(.*)\n/g)];
    assert.deepEqual(samples.map((m) => m[1]), ["1", "2", "3"]);

    // `repotune eval` on the same folder takes the run's held-out files, model, window and seed: the same numbers.
    const e = await cli(["eval", repo, "--adapter", adapter, "--max-tasks", "30"]);
    assert.equal(e.code, 0, e.stderr);
    assert.match(e.stdout, /^held-out files of run \S+: \d+\n/);
    const again = /\nedit similarity .*\n/.exec(e.stdout)?.[0];
    assert.equal(again, /\nedit similarity .*\n/.exec(r.stdout)?.[0]);
    assert.equal(/\n(kept|not kept): .*\n/.exec(e.stdout)?.[0], decision[0]);

    // On a folder it was not trained on, every file is held out.
    const other = path.join(dir, "other");
    writeFiles(other, { "lib/a.ts": sampleSources(1)["src/widget.ts"], "lib/b.ts": sampleSources(2)["src/gadget.ts"] });
    const o = await cli(["eval", other, "--adapter", adapter, "--max-tasks", "12"]);
    assert.equal(o.code, 0, o.stderr);
    assert.match(o.stdout, /^the adapter was not trained on .*other: all 2 of its files are held out\n/);
    assert.match(o.stdout, /\nheld-out evaluation: 12 completions in 2 files /);

    // `complete` at a task's cursor, in the file as the task had it (the rest of the line taken out), with the same
    // adapter and window, prints the completion the evaluation got: both go through the serving path.
    const sample = samples.find((m) => m[5] !== "block");
    assert.ok(sample, "no single-line task among the samples");
    const [, , file, line, col, , rowText] = sample;
    const adapted = rowText.split(" | ").map((c) => c.trimEnd())[2];
    const lines = readFileSync(path.join(repo, file), "utf8").split("\n");
    lines[Number(line) - 1] = lines[Number(line) - 1].slice(0, Number(col) - 1);
    writeFileSync(path.join(repo, file), lines.join("\n"));
    const c = await cli(["complete", path.join(repo, file), "--line", line, "--col", col, "--model", "tiny", "--adapter", adapter, "--seq-len", "64"]);
    assert.equal(c.code, 0, c.stderr);
    const printed = c.stdout.replace(/\n$/, "");
    const completion = printed === "" ? "(nothing)" : JSON.stringify(printed).slice(1, -1);
    assert.ok(completion.startsWith(adapted.replace(/…$/, "")), `complete printed ${completion}, the evaluation showed ${adapted}`);
  });
});
