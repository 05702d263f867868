// The dataset build's work spread over threads and done in the background: examples made in worker threads
// (examples.ts, through dist/selectWorker.js) give the same bytes as examples made in the building thread; lines of
// examples.jsonl assembled from a head and a tail are exampleLine's; a token store that spills in the background
// reads back what was added. Datasets are built with the engine's tokenizer on the tiny model. Run from the
// repository root after `node esbuild.mjs`.
import { before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { buildDataset, DatasetAborted, type BuildDatasetOptions } from "../../src/core/dataset/build";
import { exampleLine, exampleLineHeadJson, exampleLineTail, type ExampleRecord } from "../../src/core/dataset/report";
import { pack, packedBlocks, planPacking, TokenStore } from "../../src/core/dataset/pack";
import { rng } from "../../src/core/dataset/random";
import { sameFormat } from "../../src/core/dataset/examples";
import { ExampleLine } from "../../src/protocol/dataset";
import type { EngineClient } from "../../src/core/engineClient";
import type { PromptFormat } from "../../src/core/promptFormat";
import type { ModelInfo } from "../../src/protocol/engine";
import { makeGitRepo, removeDir, sampleSources, tempDir } from "./support/pipeline";
import { useTinyEngine } from "./support/tinyEngine";

const WORKER = path.join(process.cwd(), "dist", "selectWorker.js");

let dir: string;
let engine: EngineClient;
let info: ModelInfo;
let format: PromptFormat;
let modelPath: string;

useTinyEngine("workers", (tiny) => ({ dir, modelPath, engine, info, format } = tiny));

/** Every file of a built dataset folder, by name. */
function folderBytes(out: string): Map<string, Buffer> {
  return new Map(readdirSync(out).sort().map((f) => [f, readFileSync(path.join(out, f))]));
}

function sameFolders(a: string, b: string): void {
  const left = folderBytes(a);
  const right = folderBytes(b);
  assert.deepEqual([...right.keys()], [...left.keys()]);
  for (const [name, bytes] of left) assert.ok(bytes.equals(right.get(name)!), `${name} differs between the two builds`);
}

async function build(folder: string, name: string, extra: Partial<BuildDatasetOptions>): Promise<string> {
  const outDir = path.join(dir, name);
  await buildDataset({ folder, outDir, tokenizer: engine, format, model: info, modelPath, seqLen: 96, seed: 3, ...extra });
  return outDir;
}

describe("examples made in worker threads", () => {
  let repo: string;
  before(() => {
    assert.ok(existsSync(WORKER), `${WORKER} is missing: run node esbuild.mjs first`);
    repo = makeGitRepo(path.join(dir, "repo"), {
      ...sampleSources(24),
      // Three bytes a character in the tiny model's byte vocabulary, and after the files whose characters per token
      // are sampled (by name): denser than the sample, so that examples come out longer than the sequence length and
      // are narrowed (in the building thread, from the file read again).
      "z/labels.ts": Array.from({ length: 60 }, (_, i) => `export const 標籤${i} = "項目編號${i}，建立於${i}時";`).join("\n") + "\n",
      "z/notes.md": Array.from({ length: 30 }, (_, i) => `Note ${i}: “quoted” text, a tab\there, a backslash \\ and an emoji 🙂.`).join("\n") + "\n",
    });
  });

  test("give the same bytes as examples made in the building thread, with one worker or several", async () => {
    const here = await build(repo, "here", { workers: 0, exampleWorkers: 0 });
    const one = await build(repo, "one", { workers: 0, exampleWorkers: 1, workerScript: WORKER });
    const three = await build(repo, "three", { workers: 2, exampleWorkers: 3, workerScript: WORKER });
    sameFolders(here, one);
    sameFolders(here, three);
    const lines = readFileSync(path.join(here, "examples.jsonl"), "utf8").trim().split("\n").map((l) => ExampleLine.parse(JSON.parse(l)));
    assert.ok(lines.length > 100, `${lines.length} examples`);
    assert.ok(lines.some((l) => l.file === "z/labels.ts" && l.prompt.includes("標籤")), "the dense file has examples");
    assert.ok(lines.some((l) => l.split === "val") && lines.some((l) => l.split === "train"));
  });

  test("a single file (its end held out) gives the same bytes too", async () => {
    const single = makeGitRepo(path.join(dir, "single"), { "src/only.ts": sampleSources(1)["src/widget.ts"] });
    const here = await build(single, "single-here", { workers: 0, exampleWorkers: 0 });
    const there = await build(single, "single-there", { workers: 0, exampleWorkers: 2, workerScript: WORKER });
    sameFolders(here, there);
    const lines = readFileSync(path.join(there, "examples.jsonl"), "utf8").trim().split("\n").map((l) => ExampleLine.parse(JSON.parse(l)));
    assert.ok(lines.some((l) => l.split === "val") && lines.some((l) => l.split === "train"), "the one file's end is validation");
  });

  test("a file that changed after the secret scan is left out, in worker threads as in the building thread", async () => {
    const changing = makeGitRepo(path.join(dir, "changing"), sampleSources(8));
    // Not a real key: the shape of one, which the scan would have caught had it been there when files were selected.
    const planted = `AKIA${"Q7".repeat(8)}`;
    for (const [name, exampleWorkers] of [["changed-here", 0], ["changed-there", 2]] as const) {
      writeFileSync(path.join(changing, "src/gadget.ts"), sampleSources(8)["src/gadget.ts"]);
      let calls = 0;
      // The first call measures characters per token, after selection and before any example is made.
      const tokenizer = {
        tokenize: (items: Parameters<EngineClient["tokenize"]>[0]) => {
          if (++calls === 1) writeFileSync(path.join(changing, "src/gadget.ts"), `export const key = "${planted}";\n`);
          return engine.tokenize(items);
        },
      };
      const outDir = path.join(dir, name);
      const built = await buildDataset({ folder: changing, outDir, tokenizer, format, model: info, modelPath, seqLen: 96, seed: 3, workers: 0, exampleWorkers, workerScript: WORKER });
      const warnings = built.summary.warnings ?? [];
      assert.ok(warnings.some((w) => /^1 files changed or went away while the dataset was built/.test(w)), warnings.join(" | "));
      for (const [file, bytes] of folderBytes(outDir)) assert.ok(!bytes.includes(planted), `${file} holds the planted key`);
      const lines = readFileSync(path.join(outDir, "examples.jsonl"), "utf8").trim().split("\n").map((l) => ExampleLine.parse(JSON.parse(l)));
      assert.ok(!lines.some((l) => l.file === "src/gadget.ts"));
    }
    sameFolders(path.join(dir, "changed-here"), path.join(dir, "changed-there"));
  });

  test("a build stopped while workers make examples stops them and leaves nothing behind", async () => {
    const outDir = path.join(dir, "stopped");
    const stop = new AbortController();
    let calls = 0;
    // Stops at the second batch of examples (the first call measures characters per token).
    const tokenizer = { tokenize: (items: Parameters<EngineClient["tokenize"]>[0]) => (++calls === 3 && stop.abort(), engine.tokenize(items)) };
    await assert.rejects(
      buildDataset({ folder: repo, outDir, tokenizer, format, model: info, modelPath, seqLen: 96, seed: 3, signal: stop.signal, workers: 0, exampleWorkers: 2, workerScript: WORKER }),
      DatasetAborted,
    );
    assert.ok(calls >= 3, `the tokenizer was asked ${calls} times`);
    assert.deepEqual(readdirSync(outDir), [], "nothing left in the output folder");
  });

  test("a missing worker script is reported with what to do, and nothing is left behind", async () => {
    const out = path.join(dir, "missing");
    await assert.rejects(
      buildDataset({ folder: repo, outDir: out, tokenizer: engine, format, model: info, modelPath, seqLen: 96, seed: 3, workers: 0, exampleWorkers: 1, workerScript: path.join(dir, "nope.js") }),
      /worker script .*nope\.js is missing; rebuild RepoTune/,
    );
    assert.deepEqual(existsSync(out) ? readdirSync(out) : [], []);
  });

  test("the model's own format is recognised; another one keeps examples in the building thread", () => {
    assert.equal(sameFormat(format, info), true);
    const other: PromptFormat = { ...format, fim: (input) => [{ text: `>>${input.prefix}`, special: false }] };
    assert.equal(sameFormat(other, info), false);
  });
});

describe("lines of examples.jsonl in two parts", () => {
  test("head and tail are exampleLine's text", () => {
    const records: ExampleRecord[] = [
      { split: "train", file: "src/a.ts", kind: "lines", openEnd: false, start: 0, prompt: "const a = 1;\n", middle: "b();\n", tokens: 12, truncated: false },
      { split: "val", file: "dir/ü \"q\".md", kind: "next-token", openEnd: true, start: 123456, prompt: "", middle: "tab\t nl\n nul\u0000 \u2028 🙂 \\", tokens: 256, truncated: true },
      { split: "train", file: "x", kind: "block", openEnd: false, start: 7, prompt: "<|fim_prefix|>", middle: "", tokens: 0, truncated: false },
    ];
    for (const r of records) {
      const head = exampleLineHeadJson(r);
      assert.equal(head.slice(0, -1) + exampleLineTail(r.tokens, r.truncated), exampleLine(r));
    }
  });
});

describe("a token store spilling in the background", () => {
  test("reads back what was added once settled, and refuses to read before", async () => {
    const r = rng(11);
    const examples = Array.from({ length: 2000 }, (_, i) => Array.from({ length: r.int(1, 60) }, (_, k) => 10 + ((i * 5 + k) % 400)));
    const order = Array.from(examples.keys()).reverse();
    const whole = pack(order.map((i) => examples[i]), 64, new Set([10]));
    const spillDir = tempDir("background-store");
    const spill = path.join(spillDir, "tokens.tmp");
    const store = new TokenStore(64, { path: spill, memoryChunks: 2, background: true }, 256);
    try {
      for (const e of examples) store.add(e);
      const plan = planPacking(store, order, 64);
      assert.equal(plan.sequences, whole.sequences);
      // Right after adding, chunks are still on their way to the file.
      assert.throws(() => [...packedBlocks(store, plan, new Set([10]), 1000)], /before the store was settled/);
      await store.settled();
      const data = new Int32Array(plan.sequences * 64);
      const flags = new Uint8Array(plan.sequences * 64);
      for (const block of packedBlocks(store, plan, new Set([10]), 29)) {
        data.set(block.data, block.firstSequence * 64);
        flags.set(block.flags, block.firstSequence * 64);
      }
      assert.deepEqual(data, whole.data);
      assert.deepEqual(flags, whole.flags);
    } finally {
      await store.disposeWhenSettled();
      assert.deepEqual(readdirSync(spillDir), [], "the spill file is removed");
      removeDir(spillDir);
    }
  });
});
