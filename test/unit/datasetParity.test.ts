// A training example and the completion prompt at the same cursor are the same tokens: the adapter is asked exactly
// what it learned from. Examples come from a real dataset build (train.bin / val.bin and examples.jsonl), prompts from
// the completion path (completionWindow, the prompt format, the engine's tokenizer and its BOS rule), both with the
// tiny model in the real engine. Run from the repository root after `node esbuild.mjs`.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { buildDataset, type BuiltDataset } from "../../src/core/dataset/build";
import { cursorWindow, windowCharsFor } from "../../src/core/dataset/fim";
import { FLAG_START, PAD } from "../../src/core/dataset/pack";
import { readTokens } from "../../src/core/dataset/write";
import { completionWindow } from "../../src/core/completionWindow";
import type { EngineClient } from "../../src/core/engineClient";
import type { PromptFormat } from "../../src/core/promptFormat";
import { repoName } from "../../src/core/repoName";
import { ExampleLine } from "../../src/protocol/dataset";
import type { ModelInfo } from "../../src/protocol/engine";
import { makeGitRepo, removeDir, sampleSources, tempDir } from "./support/pipeline";
import { startTinyEngine } from "./support/tinyEngine";

const SEQ_LEN = 128;

let dir: string;
let engine: EngineClient;
let info: ModelInfo;
let format: PromptFormat;
let modelPath: string;

/** A built dataset with what the checks read back: its examples and its packed examples by split. */
interface Built {
  sources: Record<string, string>;
  repoLabel: string;
  built: BuiltDataset;
  examples: ExampleLine[];
  /** Every packed example, as its token ids joined by ",". */
  packed: Record<"train" | "val", Set<string>>;
}

async function buildFrom(name: string, sources: Record<string, string>): Promise<Built> {
  const repo = makeGitRepo(path.join(dir, name), sources);
  const out = path.join(dir, `${name}-data`);
  const built = await buildDataset({ folder: repo, outDir: out, tokenizer: engine, format, model: info, modelPath, seqLen: SEQ_LEN, seed: 0 });
  const examples = readFileSync(path.join(out, "examples.jsonl"), "utf8").trim().split("\n").map((l) => ExampleLine.parse(JSON.parse(l)));
  return { sources, repoLabel: await repoName(repo), built, examples, packed: { train: await examplesIn(out, "train"), val: await examplesIn(out, "val") } };
}

let ascii: Built;
let mixed: Built;

before(async () => {
  dir = tempDir("parity");
  ({ modelPath, engine, info, format } = await startTinyEngine(dir));
  ascii = await buildFrom("ascii", sampleSources(6));
  mixed = await buildFrom("mixed", {
    ...sampleSources(6),
    // Accented text is two bytes, so two tokens, per character in the tiny model's byte vocabulary: this file's
    // characters per token differ from the repository's.
    "src/labels.ts": Array.from({ length: 40 }, (_, i) => `export const libellé${i} = "élément numéro ${i}, créé à ${i} h";`).join("\n") + "\n",
  });
});
after(async () => {
  await engine?.dispose();
  removeDir(dir);
});

/** The examples of a packed split: from each FLAG_START to the next start, padding or the end of its sequence. */
async function examplesIn(out: string, split: "train" | "val"): Promise<Set<string>> {
  const tokens = await readTokens(path.join(out, `${split}.bin`));
  const flags = readFileSync(path.join(out, `${split}.flags`));
  const found = new Set<string>();
  for (let i = 0; i < tokens.length; i++) {
    if (!(flags[i] & FLAG_START)) continue;
    let j = i + 1;
    while (j < tokens.length && j % SEQ_LEN !== 0 && tokens[j] !== PAD && !(flags[j] & FLAG_START)) j++;
    found.add([...tokens.subarray(i, j)].join(","));
  }
  return found;
}

/** The file as it reads when the cursor is at the example's start: the middle not written yet. */
function fileBefore(b: Built, e: ExampleLine): string {
  const text = b.sources[e.file];
  return e.openEnd ? text.slice(0, e.start) : text.slice(0, e.start) + text.slice(e.start + e.middle.length);
}

async function assertSameTokens(b: Built, e: ExampleLine, window: { prefix: string; suffix: string }): Promise<void> {
  const prompt = format.fim({ ...window, filePath: e.file, repoName: b.repoLabel });
  // What the engine generates from: BOS when the model asks for one, then the prompt's tokens.
  const [tokens, middle, end] = await engine.tokenize([prompt, [{ text: e.middle, special: false }], [format.endOfMiddle]]);
  const ask = info.addBos && info.bos !== null ? [info.bos, ...tokens] : tokens;
  const example = [...ask, ...middle, ...end];
  const where = `${e.file} at ${e.start} (${e.kind}${e.openEnd ? ", open end" : ""})`;
  assert.equal(e.tokens, example.length, `${where}: the example is as long as the completion prompt plus its middle`);
  assert.ok(b.packed[e.split].has(example.join(",")), `${where}: the packed example starts with the completion prompt's tokens`);
  assert.equal(e.prompt, prompt.map((s) => s.text).join(""));
}

describe("a training example and a completion prompt at the same cursor", () => {
  test("are the same tokens, through completionWindow, for every FIM example of a file", async () => {
    const file = "src/widget.ts";
    const fim = ascii.examples.filter((e) => e.file === file && e.kind !== "next-token");
    assert.ok(fim.length >= 20, `${fim.length} examples`);
    assert.ok(fim.some((e) => e.openEnd) && fim.some((e) => !e.openEnd));
    assert.ok(ascii.sources[file].length > windowCharsFor(SEQ_LEN, 1, file, ascii.repoLabel) * 3, "the file is longer than a prompt: windows are cut");
    for (const e of fim) await assertSameTokens(ascii, e, await completionWindow(engine, fileBefore(ascii, e), e.start, SEQ_LEN, e.file, ascii.repoLabel));
  });

  test("are the same tokens where a file's characters per token differ, with the dataset's characters per token", async () => {
    // completionWindow measures characters per token around the cursor; the dataset measured them on the repository.
    // Given the dataset's figure (summary.charsPerToken), the completion window is the example's.
    const cpt = mixed.built.summary.charsPerToken!;
    const labels = mixed.sources["src/labels.ts"];
    const [own] = await engine.tokenize([[{ text: labels, special: false }]]);
    assert.ok(cpt < 1 && labels.length / own.length < cpt - 0.05, `labels.ts: ${labels.length / own.length} characters per token, the repository ${cpt}`);
    for (const file of ["src/labels.ts", "src/widget.ts"]) {
      const fim = mixed.examples.filter((e) => e.file === file && e.kind !== "next-token");
      assert.ok(fim.length >= 10);
      for (const e of fim) await assertSameTokens(mixed, e, cursorWindow(fileBefore(mixed, e), e.start, windowCharsFor(SEQ_LEN, cpt, e.file, mixed.repoLabel)));
    }
  });

  test("a next-token example is BOS and the file's text, nothing else", async () => {
    const plain = ascii.examples.filter((e) => e.kind === "next-token").slice(0, 10);
    assert.ok(plain.length > 0);
    for (const e of plain) {
      const [text] = await engine.tokenize([[{ text: e.middle, special: false }]]);
      assert.ok(ascii.packed[e.split].has([info.bos!, ...text].join(",")), `${e.file} at ${e.start}`);
      assert.equal(e.tokens, text.length + 1);
    }
  });
});
