// Multi-root workspaces: one dataset from two real git repositories, each selected with its own .gitignore and
// .repotuneignore, paths prefixed with each folder's name, each folder's repository name in its prompts' headers, the
// held-out split taken across both, and runs stored under an id of the set. Built with the engine's tokenizer on the
// tiny model. Run from the repository root after `node esbuild.mjs`.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import * as path from "node:path";
import { buildDataset } from "../../src/core/dataset/build";
import { datasetPathOf, datasetRoots, rootOf } from "../../src/core/dataset/roots";
import { selectFiles } from "../../src/core/dataset/select";
import { DatasetFiles } from "../../src/core/dataset/write";
import { repoIdFor } from "../../src/core/runStore";
import type { EngineClient } from "../../src/core/engineClient";
import type { PromptFormat } from "../../src/core/promptFormat";
import { DatasetReport, ExampleLine } from "../../src/protocol/dataset";
import type { ModelInfo } from "../../src/protocol/engine";
import { removeDir, tempDir } from "./support/pipeline";
import { startTinyEngine } from "./support/tinyEngine";
import { code, datedRepo } from "./support/datedRepo";

let dir: string;
let engine: EngineClient;
let info: ModelInfo;
let format: PromptFormat;
let modelPath: string;
/** Folders named "app" and "lib": app's commits are a year older than lib's. */
let app: string;
let lib: string;

before(async () => {
  dir = tempDir("roots");
  ({ modelPath, engine, info, format } = await startTinyEngine(dir));
  const appFiles: Record<string, string> = { "src/index.ts": code(1), "notes/todo.ts": code(2) };
  for (let i = 0; i < 9; i++) appFiles[`src/a${i}.ts`] = code(10 + i);
  app = datedRepo(path.join(dir, "app"), appFiles, 0, { ".gitignore": "build/\n", "build/out.ts": code(3), ".repotuneignore": "notes/\n" });
  const libFiles: Record<string, string> = { "src/index.ts": code(50), "notes/todo.ts": code(51) };
  for (let i = 0; i < 9; i++) libFiles[`src/b${i}.ts`] = code(60 + i);
  lib = datedRepo(path.join(dir, "lib"), libFiles, 400);
});
after(async () => {
  await engine?.dispose();
  removeDir(dir);
});

const build = (folder: string | string[], out: string, extra: Partial<Parameters<typeof buildDataset>[0]> = {}) =>
  buildDataset({ folder, outDir: path.join(dir, out), tokenizer: engine, format, model: info, modelPath, seqLen: 128, seed: 0, ...extra });

const read = (out: string, file: string) => readFileSync(path.join(dir, out, file), "utf8");

describe("a dataset of two folders", () => {
  test("selects each folder by its own rules and prefixes its paths with the folder's name", async () => {
    const built = await build([app, lib], "both");
    const files = DatasetFiles.parse(JSON.parse(read("both", "files.json")));
    const all = [...files.train, ...files.val];
    assert.equal(new Set(all).size, all.length, "every path is unique");
    for (const p of ["app/src/index.ts", "lib/src/index.ts", "app/src/a0.ts", "lib/src/b8.ts", "lib/notes/todo.ts"]) assert.ok(all.includes(p), p);
    // app's .repotuneignore leaves out its notes/ (lib has no such file and keeps its own), its .gitignore its build/.
    assert.ok(!all.some((p) => p.startsWith("app/notes/") || p.startsWith("app/build/")), all.join(" "));
    assert.ok(all.every((p) => p.startsWith("app/") || p.startsWith("lib/")), all.join(" "));
    // Counts add up over the folders, each selected as on its own.
    const [a, l] = [await selectFiles(app), await selectFiles(lib)];
    assert.equal(built.summary.filesUsed, a.usable.length + l.usable.length);
    const report = DatasetReport.parse(JSON.parse(read("both", "report.json")));
    assert.equal(report.files.listed, a.listed + l.listed);
    assert.equal(report.files.skipped.user_excluded, 1);
    for (const [reason, n] of Object.entries(report.files.skipped)) assert.equal(n, (a.skipped[reason] ?? 0) + (l.skipped[reason] ?? 0), reason);
  });

  test("each example names its folder's repository and its prefixed path in the prompt header", async () => {
    await build([app, lib], "headers");
    const lines = read("headers", "examples.jsonl").trim().split("\n").map((l) => ExampleLine.parse(JSON.parse(l)));
    const fim = lines.filter((e) => e.kind !== "next-token");
    assert.ok(fim.some((e) => e.file.startsWith("app/")) && fim.some((e) => e.file.startsWith("lib/")));
    for (const e of fim) {
      const repo = e.file.slice(0, e.file.indexOf("/"));
      assert.ok(e.prompt.startsWith(`<|repo_name|>${repo}\n<|file_sep|>${e.file}\n`), `${e.file}: ${JSON.stringify(e.prompt.slice(0, 80))}`);
    }
  });

  test("holds out the most recently changed files across both folders", async () => {
    const built = await build([app, lib], "split");
    const files = DatasetFiles.parse(JSON.parse(read("split", "files.json")));
    assert.equal(built.summary.splitMethod, "recent");
    assert.ok(files.val.length >= 3, files.val.join(" "));
    // lib's commits are all newer than app's: the newest of them are held out, lib's last commit first.
    assert.ok(files.val.every((p) => p.startsWith("lib/")), files.val.join(" "));
    assert.ok(files.val.includes("lib/src/b8.ts"), files.val.join(" "));
    const report = DatasetReport.parse(JSON.parse(read("split", "report.json")));
    assert.equal(report.split.heldOut[0], "lib/src/b8.ts");
  });

  test("one folder given as a list builds the very dataset of that folder alone, byte for byte", async () => {
    await build(app, "alone");
    await build([app], "listed");
    for (const f of readdirSync(path.join(dir, "alone"))) assert.equal(read("listed", f), read("alone", f), f);
    assert.ok(read("alone", "files.json").includes('"src/index.ts"'), "a single folder's paths have no prefix");
  });

  test("an adapter update takes one folder, and says so", async () => {
    await assert.rejects(build([app, lib], "update", { update: { sinceCommit: "HEAD" } }), /An adapter update follows one repository's commits; it cannot take several folders/);
  });
});

describe("folder names and run ids", () => {
  test("folders of the same name get -2, -3; the same folder twice counts once; one folder has no prefix", () => {
    const roots = datasetRoots(["/x/app", "/y/app", "/z/lib", "/y/app/", "/w/app"]);
    assert.deepEqual(roots.map((r) => r.prefix), ["app/", "app-2/", "lib/", "app-3/"]);
    assert.deepEqual(datasetRoots("/x/app"), [{ folder: "/x/app", prefix: "" }]);
    assert.deepEqual(datasetRoots(["/x/app", "/x/app"]), [{ folder: "/x/app", prefix: "" }]);
    assert.deepEqual(rootOf(roots, "app-2/src/a.ts"), { root: roots[1], rel: "src/a.ts" });
    assert.equal(rootOf(roots, "other/a.ts"), null);
    // From a file to its path in prompts: what completions in a multi-root workspace ask with.
    assert.deepEqual(datasetPathOf(roots, "/y/app/src/a.ts"), { root: roots[1], path: "app-2/src/a.ts" });
    assert.equal(datasetPathOf(roots, "/y/other.ts"), null);
    const nested = datasetRoots(["/m", "/m/sub"]);
    assert.equal(datasetPathOf(nested, "/m/sub/x.ts")?.path, "sub/x.ts");
    assert.equal(datasetPathOf(nested, "/m/x.ts")?.path, "m/x.ts");
    assert.equal(datasetPathOf(datasetRoots("/m"), "/m/src/x.ts")?.path, "src/x.ts");
  });

  test("a run id covers the set of folders, in any order; one folder keeps its own id", async () => {
    assert.equal(await repoIdFor([app, lib]), await repoIdFor([lib, app]));
    assert.notEqual(await repoIdFor([app, lib]), await repoIdFor(app));
    assert.notEqual(await repoIdFor([app, lib]), await repoIdFor(lib));
    assert.equal(await repoIdFor([app]), await repoIdFor(app));
    assert.equal(await repoIdFor([app, path.join(app, ".")]), await repoIdFor(app));
  });
});
