// The held-out split and duplicates on real folders: recency in a git repository whose commits have controlled dates,
// a hash outside git, and copies of held-out files kept out of training. Datasets are built with the engine's
// tokenizer on the tiny model. Run from the repository root after `node esbuild.mjs`.
import { before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { buildDataset } from "../../src/core/dataset/build";
import { changeTimes, chooseHeldOut, holdOutOrder } from "../../src/core/dataset/split";
import { DatasetFiles, readTokens } from "../../src/core/dataset/write";
import type { EngineClient } from "../../src/core/engineClient";
import type { PromptFormat } from "../../src/core/promptFormat";
import { ExampleLine } from "../../src/protocol/dataset";
import type { ModelInfo } from "../../src/protocol/engine";
import { writeFiles } from "./support/pipeline";
import { useTinyEngine } from "./support/tinyEngine";
import { code, datedRepo, day, gitAt } from "./support/datedRepo";

let dir: string;
let engine: EngineClient;
let info: ModelInfo;
let format: PromptFormat;
let modelPath: string;

useTinyEngine("split", (tiny) => ({ dir, modelPath, engine, info, format } = tiny));

const build = (folder: string, out: string, seed = 0) =>
  buildDataset({ folder, outDir: path.join(dir, out), tokenizer: engine, format, model: info, modelPath, seqLen: 128, seed });

const examplesOf = (out: string) =>
  readFileSync(path.join(dir, out, "examples.jsonl"), "utf8").trim().split("\n").map((l) => ExampleLine.parse(JSON.parse(l)));

describe("held out by recency in git", () => {
  let repo: string;
  const files: Record<string, string> = {};
  before(() => {
    repo = path.join(dir, "dated");
    // 30 files of about the same size, file i committed on day i; then an old file edited and committed last, a
    // tracked file edited and not committed, and a new untracked file.
    for (let i = 0; i < 30; i++) files[`src/m${String(i).padStart(2, "0")}.ts`] = code(i);
    datedRepo(repo, files);
    files["src/m03.ts"] += "export const edited = true;\n";
    writeFileSync(path.join(repo, "src/m03.ts"), files["src/m03.ts"]);
    gitAt(repo, day(40), "commit", "-q", "-am", "edit m03");
    files["src/m05.ts"] += "// not committed yet\n";
    writeFileSync(path.join(repo, "src/m05.ts"), files["src/m05.ts"]);
    files["src/new.ts"] = code(99);
    writeFileSync(path.join(repo, "src/new.ts"), files["src/new.ts"]);
  });

  test("change times come from one bounded git log and git status, relative to the folder", async () => {
    const { times, warning } = await changeTimes(repo);
    assert.equal(warning, null);
    assert.ok(times);
    assert.equal(times.get("src/m00.ts"), Date.parse(day(0)) / 1000);
    assert.equal(times.get("src/m29.ts"), Date.parse(day(29)) / 1000);
    assert.equal(times.get("src/m03.ts"), Date.parse(day(40)) / 1000, "the newest commit that touched a file counts");
    assert.equal(times.get("src/m05.ts"), Infinity, "uncommitted edits are newest");
    assert.equal(times.get("src/new.ts"), Infinity, "untracked files are newest");
    const sub = await changeTimes(path.join(repo, "src"));
    assert.equal(sub.times?.get("m29.ts"), Date.parse(day(29)) / 1000, "paths are relative to a subfolder");
    assert.equal(sub.times?.get("new.ts"), Infinity);
    assert.deepEqual(await changeTimes(path.join(dir, "cache")), { times: null, warning: null }, "outside git: no times");
  });

  test("the most recently changed files are held out: about a tenth of the characters, at least three files", async () => {
    const built = await build(repo, "dated-data");
    assert.equal(built.files.split, "recent");
    assert.equal(built.summary.splitMethod, "recent");
    const newest = ["src/m05.ts", "src/new.ts"]; // uncommitted: tie, in hash order
    const byDate = ["src/m03.ts", ...Array.from({ length: 29 }, (_, k) => 29 - k).filter((i) => i !== 3).map((i) => `src/m${String(i).padStart(2, "0")}.ts`)];
    const held = built.report.split.heldOut;
    assert.deepEqual(new Set(held.slice(0, 2)), new Set(newest));
    assert.deepEqual(held.slice(2), byDate.slice(0, held.length - 2), "then newest commit first");
    const total = Object.values(files).reduce((n, t) => n + t.length, 0);
    const heldChars = held.reduce((n, f) => n + files[f].length, 0);
    assert.equal(built.report.split.heldOutChars, heldChars);
    assert.equal(built.report.split.totalChars, total);
    assert.ok(held.length >= 3);
    assert.ok(heldChars >= 0.1 * total, `${heldChars} of ${total} characters held out`);
    assert.ok(heldChars - files[held[held.length - 1]].length < 0.1 * total, "and no more files than that takes");
    assert.deepEqual(built.files.val, [...held].sort());
    assert.deepEqual(built.files.train, Object.keys(files).filter((f) => !held.includes(f)).sort());
    const onDisk = DatasetFiles.parse(JSON.parse(readFileSync(path.join(dir, "dated-data", "files.json"), "utf8")));
    assert.deepEqual(onDisk, built.files);
    for (const e of examplesOf("dated-data")) assert.equal(e.split, held.includes(e.file) ? "val" : "train");
  });
});

describe("held out by hash outside git", () => {
  test("the same files whatever the seed, chosen by a hash of each path", async () => {
    const plain = path.join(dir, "plain");
    const files: Record<string, string> = {};
    for (let i = 0; i < 20; i++) files[`lib/p${i}.py`] = code(200 + i);
    writeFiles(plain, files);
    const a = await build(plain, "plain-a", 1);
    const b = await build(plain, "plain-b", 2);
    assert.equal(a.files.split, "hash");
    assert.equal(a.report.split.method, "hash");
    assert.deepEqual(a.files, b.files, "the split does not depend on the seed");
    const expected = chooseHeldOut(holdOutOrder(Object.keys(files), null).map((p) => ({ path: p, chars: files[p].length }))).val;
    assert.deepEqual(a.report.split.heldOut, expected);
    assert.ok(expected.length >= 3);
    assert.notDeepEqual([...expected].sort(), Object.keys(files).sort().slice(0, expected.length), "not simply the first names");
  });
});

describe("duplicates and the held-out files", () => {
  test("a near copy of a held-out file is left out of training, so no training example holds its code", async () => {
    const repo = path.join(dir, "copies");
    const files: Record<string, string> = {};
    for (let i = 0; i < 12; i++) files[`src/f${i}.ts`] = code(300 + i);
    // The newest file holds code found nowhere else but in an older near copy (a few tokens changed) and an older
    // exact copy of another file.
    const secretSauce = Array.from({ length: 30 }, (_, k) => `export const uniqueHeldOutName${k} = computeHeldOut(${k});`).join("\n") + "\n";
    files["old/near-copy.ts"] = secretSauce.replace("computeHeldOut(3)", "computeHeldOut(33)").replace("computeHeldOut(20)", "other(20)");
    files["old/exact-copy.ts"] = files["src/f4.ts"];
    files["src/newest.ts"] = secretSauce;
    datedRepo(repo, files);

    const built = await build(repo, "copies-data");
    const held = built.report.split.heldOut;
    assert.equal(held[0], "src/newest.ts", "the newest file is held out");
    const removed = built.report.duplicates.removed;
    const near = removed.find((d) => d.file === "old/near-copy.ts");
    assert.ok(near, JSON.stringify(removed));
    assert.deepEqual([near.of, near.kind, near.ofHeldOut], ["src/newest.ts", "near", true]);
    assert.ok(near.similarity >= 0.85 && near.similarity < 1);
    const exact = removed.find((d) => d.kind === "exact");
    assert.ok(exact && [exact.file, exact.of].sort().join() === ["old/exact-copy.ts", "src/f4.ts"].join(), JSON.stringify(removed));
    assert.deepEqual(built.summary.duplicates, { exact: 1, near: 1, ofHeldOut: held.includes(exact.of) ? 2 : 1 });
    assert.equal(built.summary.filesUsed, Object.keys(files).length - 2);
    assert.ok(!built.files.train.includes("old/near-copy.ts") && !built.files.val.includes("old/near-copy.ts"));
    assert.ok(!built.files.train.includes(exact.file) && !built.files.val.includes(exact.file));

    // Nothing of the held-out code reaches training: not in any training example's text, not in train.bin.
    const examples = examplesOf("copies-data");
    assert.ok(examples.some((e) => e.split === "val" && (e.prompt + e.middle).includes("uniqueHeldOutName")));
    for (const e of examples.filter((x) => x.split === "train")) assert.ok(!(e.prompt + e.middle).includes("HeldOut"), `${e.file} at ${e.start}`);
    const trainText = await engine.detokenize([...(await readTokens(path.join(dir, "copies-data", "train.bin")))].filter((t) => t >= 0));
    assert.ok(!trainText.includes("HeldOut"));
  });
});
