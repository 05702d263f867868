// `node dist/cli.js` as a user runs it: real engine, real trainer, the tiny model generated into a temp cache.
// Run from the repository root after `node esbuild.mjs`.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { DatasetMeta } from "../../src/protocol/dataset";
import { cliPath, makeGitRepo, python, removeDir, sampleSources, tempDir } from "./support/pipeline";

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
    for (const c of ["tune <folder>", "dataset <folder>", "complete <file>", "--model PATH|tiny", "--seq-len"]) assert.ok(r.stdout.includes(c), c);
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

  test("tune trains, then compares base and adapter on held-out files; complete agrees with it", { timeout: 300_000 }, async () => {
    const r = await cli(["tune", repo, "--model", "tiny", "--steps", "30", "--seq-len", "64"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, "");
    assert.match(r.stdout, /^run \d{8}T\d{9}Z-[0-9a-f]{6}: /);
    assert.match(r.stdout, /\ndataset: 7 files, \d+ examples \(qwen2\.5-coder\); train \d+ x 64 tokens, validation \d+ x 64/);
    assert.match(r.stdout, /\nstep 30\/30 {2}loss \d+\.\d{4}/);

    const loss = /validation loss on held-out files: base (\d+\.\d+) -> adapter (\d+\.\d+) \(-\d+\.\d%\)/.exec(r.stdout);
    assert.ok(loss, r.stdout);
    assert.ok(Number(loss[2]) < Number(loss[1]), "30 steps on this repository lower the held-out loss");

    const adapter = /done in [\d.]+ s: adapter (\S+\.gguf)/.exec(r.stdout)?.[1];
    assert.ok(adapter && existsSync(adapter));
    assert.ok(adapter.startsWith(path.join(dir, "home")), "runs go under $REPOTUNE_HOME");

    // Three cursors, each with expected / base / adapter side by side.
    const samples = [...r.stdout.matchAll(/\n\[(\d)\] (\S+):(\d+):(\d+) .*\n {4}expected +\| base +\| adapter\n {4}(.*)\n/g)];
    assert.deepEqual(samples.map((m) => m[1]), ["1", "2", "3"]);
    const [, , file, line, col, row] = samples[0];
    const [expected, , adapted] = row.split(" | ").map((c) => c.trimEnd());
    const source = readFileSync(path.join(repo, file), "utf8").split("\n")[Number(line) - 1];
    assert.ok(JSON.stringify(source.slice(Number(col) - 1)).slice(1, -1).startsWith(expected.replace(/…$/, "")));

    // `complete` at the same place, with the line taken out as the summary did and the same adapter, gives the
    // completion shown in the summary.
    const lines = readFileSync(path.join(repo, file), "utf8").split("\n");
    lines[Number(line) - 1] = lines[Number(line) - 1].slice(0, Number(col) - 1);
    writeFileSync(path.join(repo, file), lines.join("\n"));
    const c = await cli(["complete", path.join(repo, file), "--line", line, "--col", col, "--model", "tiny", "--adapter", adapter, "--seq-len", "64"]);
    assert.equal(c.code, 0, c.stderr);
    const printed = c.stdout.replace(/\n$/, "");
    const completion = printed === "" ? "(nothing)" : JSON.stringify(printed).slice(1, -1);
    assert.ok(completion.startsWith(adapted.replace(/…$/, "")), `complete printed ${completion}, the summary showed ${adapted}`);
  });
});
