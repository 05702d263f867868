// The dataset step: discovery (git and plain folders), file filtering, FIM spans, splitting, packing, and a real
// dataset built with the engine's tokenizer on the tiny model. Run from the repository root after `node esbuild.mjs`.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, readFileSync, rmSync, statSync, symlinkSync, unlinkSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { listFiles } from "../../src/core/dataset/discover";
import { buildDataset, readUsableFiles } from "../../src/core/dataset/build";
import { cursorWindow, fimSpans } from "../../src/core/dataset/fim";
import { fitExample, FLAG_NO_LOSS, FLAG_START, pack, PAD } from "../../src/core/dataset/pack";
import { rng } from "../../src/core/dataset/random";
import { splitFiles, splitOneFile } from "../../src/core/dataset/split";
import { DatasetFiles, readTokens } from "../../src/core/dataset/write";
import { DatasetMeta } from "../../src/protocol/dataset";
import { EngineClient } from "../../src/core/engineClient";
import { promptFormatFor, type PromptFormat } from "../../src/core/promptFormat";
import type { ModelInfo } from "../../src/protocol/engine";
import { enginePath, git, makeGitRepo, removeDir, sampleSources, tempDir, tinyModel, writeFiles } from "./support/pipeline";

const PNG = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0x0d, 0x49, 0x48, 0x44, 0x52, 0, 0, 0, 1, 0, 0, 0, 1, 8, 6, 0, 0, 0]);
const LATIN1 = Buffer.from("caf\xe9 cr\xe8me br\xfbl\xe9e\nno UTF-8 here, only Latin-1 \xe0 la carte\n".repeat(4), "latin1");

describe("discovery in a git repository", () => {
  let dir: string;
  before(() => {
    dir = tempDir("git");
    makeGitRepo(dir, {
      ".gitignore": "build/\n*.log\n",
      "src/main.ts": "export const main = 1;\n",
      "src/deleted.ts": "export const gone = true;\n",
      "assets/logo.png": PNG,
      "big.txt": "x".repeat(1024 * 1024 + 1) + "\n",
      "latin1.txt": LATIN1,
      "empty.txt": "",
      "blank.txt": "  \n\n",
    });
    // Untracked but not ignored: git would commit it, so RepoTune learns from it.
    writeFiles(dir, { "notes/todo.md": "# Todo\n- ship\n", "build/out.js": "ignored();\n", "debug.log": "ignored\n" });
    // Tracked, then deleted from the working tree: listed by git, but unreadable.
    unlinkSync(path.join(dir, "src/deleted.ts"));
  });
  after(() => removeDir(dir));

  test("lists tracked and untracked-not-ignored files, never ignored ones", async () => {
    const listing = await listFiles(dir);
    assert.equal(listing.source, "git");
    assert.ok(listing.paths.includes("src/main.ts"));
    assert.ok(listing.paths.includes("notes/todo.md"), "untracked, not ignored");
    assert.ok(listing.paths.includes(".gitignore"));
    assert.ok(!listing.paths.includes("build/out.js"));
    assert.ok(!listing.paths.includes("debug.log"));
  });

  test("skips binary, too large, non-UTF-8, empty and unreadable files, counted by reason", async () => {
    const { usable, skipped } = await readUsableFiles(dir);
    assert.deepEqual(usable.map((f) => f.path).sort(), [".gitignore", "notes/todo.md", "src/main.ts"]);
    assert.deepEqual(skipped, { binary: 1, too_large: 1, not_utf8: 1, empty: 2, unreadable: 1 });
    assert.equal(usable.find((f) => f.path === "src/main.ts")?.text, "export const main = 1;\n");
  });

  test("lists paths relative to a subfolder when the folder is inside the repository", async () => {
    const listing = await listFiles(path.join(dir, "src"));
    assert.equal(listing.source, "git");
    assert.deepEqual(listing.paths, ["deleted.ts", "main.ts"]);
  });
});

describe("discovery outside git", () => {
  let dir: string;
  before(() => {
    dir = tempDir("walk");
    writeFiles(dir, {
      ".gitignore": "*.log\nbuild/\n",
      "a.ts": "export const a = 1;\n",
      "debug.log": "ignored\n",
      "build/out.js": "ignored();\n",
      "sub/.gitignore": "local.txt\n!keep.log\n",
      "sub/b.py": "b = 2\n",
      "sub/local.txt": "ignored by the nested .gitignore\n",
      "sub/keep.log": "re-included by the nested .gitignore\n",
      "sub/deeper/c.go": "package c\n",
      "node_modules/dep/index.js": "module.exports = 1;\n",
      "data.bin": PNG,
    });
    // A loop (sub/loop -> ..) and a link to a file: neither is followed.
    symlinkSync("..", path.join(dir, "sub", "loop"));
    symlinkSync(path.join(dir, "a.ts"), path.join(dir, "link.ts"));
  });
  after(() => removeDir(dir));

  test("honours nested .gitignore files, including negations, and survives a symlink loop", async () => {
    const listing = await listFiles(dir);
    assert.equal(listing.source, "walk");
    assert.deepEqual(listing.paths, [".gitignore", "a.ts", "data.bin", "sub/.gitignore", "sub/b.py", "sub/deeper/c.go", "sub/keep.log"]);
    assert.deepEqual(listing.skipped, { symlink: 2 });
  });

  test("filters what the walk found", async () => {
    const { usable, skipped, listed } = await readUsableFiles(dir);
    assert.equal(listed, 9);
    assert.equal(usable.length, 6);
    assert.deepEqual(skipped, { symlink: 2, binary: 1 });
  });

  test("leaves out excluded folders (a runs folder inside the workspace)", async () => {
    const { usable } = await readUsableFiles(dir, undefined, [path.join(dir, "sub"), path.join(dir, "..", "elsewhere")]);
    assert.deepEqual(usable.map((f) => f.path).sort(), [".gitignore", "a.ts"]);
  });
});

describe("FIM spans", () => {
  const text = readFileSync(path.join(process.cwd(), "src", "core", "dataset", "fim.ts"), "utf8");

  test("are contiguous pieces of the file, within the window, and the same for the same seed", () => {
    const window = 400;
    const spans = fimSpans(text, 40, window, rng(7));
    assert.equal(spans.length, 40);
    for (const s of spans) {
      assert.ok(s.middle.length > 0, "a middle is never empty");
      assert.equal(text.slice(s.start - s.prefix.length, s.start + s.middle.length + s.suffix.length), s.prefix + s.middle + s.suffix);
      assert.ok(s.prefix.length + s.middle.length + s.suffix.length <= window, "prefix + middle + suffix fit the window");
    }
    assert.deepEqual(fimSpans(text, 40, window, rng(7)), spans);
    assert.notDeepEqual(fimSpans(text, 40, window, rng(8)), spans);
    // Middles come from the whole file, in order, one per stretch of lines.
    assert.ok(spans.every((s, i) => i === 0 || s.start >= spans[i - 1].start));
    assert.ok(spans[spans.length - 1].start > text.length / 2);
  });

  test("cut the prefix at a line start and keep whole lines of suffix when there is more text than fits", () => {
    const spans = fimSpans(text, 20, 300, rng(1)).filter((s) => s.start - s.prefix.length > 0 && s.prefix.includes("\n"));
    assert.ok(spans.length > 0);
    for (const s of spans) assert.equal(text[s.start - s.prefix.length - 1], "\n");
  });

  test("some spans leave the suffix out, as at the end of what is being written, and give the prefix the room", () => {
    const window = 300;
    const spans = fimSpans(text, 80, window, rng(3));
    const open = spans.filter((s) => s.openEnd);
    assert.ok(open.length >= 8 && open.length <= 32, `${open.length} of 80 spans are open-ended; about a quarter expected`);
    for (const s of open) {
      assert.equal(s.suffix, "");
      assert.equal(text.slice(s.start - s.prefix.length, s.start + s.middle.length), s.prefix + s.middle, "the middle is still the true continuation");
      if (s.start - s.prefix.length > 0) assert.ok(s.prefix.length + s.middle.length > window / 2, "the suffix's share goes to the prefix");
    }
    assert.ok(spans.some((s) => !s.openEnd && s.suffix.length > 0));
  });

  test("a cursor window never splits a surrogate pair", () => {
    const emoji = "const smile = \"😀😀😀\";\n".repeat(20);
    for (let at = 0; at < emoji.length; at++) {
      const { prefix, suffix } = cursorWindow(emoji, at, 50);
      assert.ok(!/[\ud800-\udbff]$/.test(prefix) && !/^[\udc00-\udfff]/.test(suffix));
    }
  });
});

describe("split", () => {
  test("holds out at least one file and keeps at least one for training", () => {
    assert.deepEqual(splitFiles(["only.ts"]), { train: ["only.ts"], val: [] });
    const two = splitFiles(["a.ts", "b.ts"]);
    assert.equal(two.train.length, 1);
    assert.equal(two.val.length, 1);
    const many = Array.from({ length: 200 }, (_, i) => `src/file${i}.ts`);
    const s = splitFiles(many);
    assert.ok(s.val.length >= 10 && s.val.length <= 35, `about 10% held out, got ${s.val.length}`);
    assert.equal(s.train.length + s.val.length, 200);
    assert.deepEqual(splitFiles([...many].reverse()).val.sort(), [...s.val].sort(), "depends only on the paths");
  });

  test("with one file, holds out its last examples", () => {
    const examples = [5, 1, 9, 3].map((start) => ({ start }));
    const s = splitOneFile(examples);
    assert.deepEqual(s.val.map((e) => e.start), [9]);
    assert.deepEqual(s.train.map((e) => e.start), [1, 3, 5]);
  });
});

describe("packing", () => {
  test("puts each example whole into the first sequence with room, flags its start and pads the rest", () => {
    const examples = [[1, 2, 3], [4, 5, 6, 7], [8], [9, 10]];
    const p = pack(examples, 4);
    assert.equal(p.sequences, 3);
    assert.equal(p.tokens, 10);
    // [1,2,3] opens sequence 0, [4..7] does not fit there and opens 1, [8] fills 0, [9,10] opens 2.
    assert.deepEqual([...p.data], [1, 2, 3, 8, 4, 5, 6, 7, 9, 10, PAD, PAD]);
    assert.deepEqual([...p.flags], [FLAG_START, 0, 0, FLAG_START, FLAG_START, 0, 0, 0, FLAG_START, 0, 0, 0]);
  });

  test("flags the no-loss tokens, keeps every token once, and refuses an example longer than a sequence", () => {
    const p = pack([[7, 1, 7], [2, 7]], 8, new Set([7]));
    assert.deepEqual([...p.data], [7, 1, 7, 2, 7, PAD, PAD, PAD]);
    assert.deepEqual([...p.flags], [FLAG_START | FLAG_NO_LOSS, 0, FLAG_NO_LOSS, FLAG_START, FLAG_NO_LOSS, 0, 0, 0]);
    assert.throws(() => pack([[1, 2, 3]], 2), /does not fit/);
    assert.equal(pack([], 8).sequences, 0);
  });

  test("packs many examples with little padding, each whole and in order within its sequence", () => {
    const r = rng(5);
    const examples = Array.from({ length: 2000 }, (_, i) => Array.from({ length: r.int(1, 60) }, () => i));
    const p = pack(examples, 64);
    const total = examples.reduce((n, e) => n + e.length, 0);
    assert.equal(p.tokens, total);
    assert.ok(p.sequences * 64 < total * 1.05, `padding under 5% (${p.sequences * 64} slots for ${total} tokens)`);
    // Every example's tokens are contiguous, start at a FLAG_START, and never straddle two sequences.
    for (let i = 0; i < examples.length; i++) {
      const at = p.data.indexOf(i);
      assert.equal(p.flags[at] & FLAG_START, FLAG_START);
      assert.equal(Math.floor(at / 64), Math.floor((at + examples[i].length - 1) / 64));
      assert.ok(examples[i].every((_, k) => p.data[at + k] === i));
    }
  });

  test("an over-long example keeps its head", () => {
    assert.deepEqual(fitExample([1, 2, 3, 4, 5], 3), { tokens: [1, 2, 3], truncated: true });
    assert.deepEqual(fitExample([1, 2], 3), { tokens: [1, 2], truncated: false });
  });
});

describe("a dataset built with the engine and the tiny model", () => {
  let dir: string;
  let engine: EngineClient;
  let info: ModelInfo;
  let format: PromptFormat;
  let modelPath: string;
  let repo: string;
  let fimPrefixId: number;

  before(async () => {
    dir = tempDir("dataset");
    modelPath = await tinyModel(path.join(dir, "cache"));
    engine = await EngineClient.start({ enginePath, log: () => undefined });
    info = await engine.load(modelPath);
    format = promptFormatFor(info);
    [[fimPrefixId]] = await engine.tokenize([[{ text: "<|fim_prefix|>", special: true }]]);
    repo = makeGitRepo(path.join(dir, "repo"), { ...sampleSources(6), "logo.png": PNG });
  });
  after(async () => {
    await engine?.dispose();
    removeDir(dir);
  });

  const build = (outDir: string, seqLen = 128, seed = 0) =>
    buildDataset({ folder: repo, outDir, tokenizer: engine, format, model: info, modelPath, seqLen, seed });

  test("writes train.bin, val.bin and meta.json as the trainer expects", async () => {
    const out = path.join(dir, "data");
    const built = await build(out);
    const meta = DatasetMeta.parse(JSON.parse(readFileSync(path.join(out, "meta.json"), "utf8")));
    assert.deepEqual(meta, built.meta);
    assert.equal(meta.seq_len, 128);
    assert.equal(meta.vocab_size, info.vocabSize);
    assert.equal(meta.prompt_format, "qwen2.5-coder");
    assert.equal(meta.summary.filesUsed, 7);
    assert.deepEqual(meta.summary.filesSkipped, { binary: 1 });
    assert.ok(meta.train_sequences > 0 && meta.val_sequences > 0);
    assert.equal(statSync(path.join(out, "train.bin")).size, meta.train_sequences * 128 * 4);
    assert.equal(statSync(path.join(out, "val.bin")).size, meta.val_sequences * 128 * 4);

    const train = await readTokens(path.join(out, "train.bin"));
    const val = await readTokens(path.join(out, "val.bin"));
    for (const [tokens, real] of [[train, meta.summary.trainTokens], [val, meta.summary.valTokens]] as const) {
      assert.equal(tokens.filter((t) => t !== PAD).length, real);
      assert.ok(tokens.every((t) => t === PAD || (t >= 0 && t < info.vocabSize)));
      for (let row = 0; row < tokens.length; row += 128) {
        const seq = tokens.slice(row, row + 128);
        const firstPad = seq.indexOf(PAD);
        if (firstPad !== -1) assert.ok(seq.slice(firstPad).every((t) => t === PAD), "padding only at a sequence's tail");
      }
    }
    // Every example is one FIM prompt: counting prefix tokens counts the examples, none lost, none cut.
    assert.equal(built.truncatedExamples, 0);
    const prefixes = [...train, ...val].filter((t) => t === fimPrefixId).length;
    assert.equal(prefixes, meta.summary.examples);
    // One flag byte per token: each example starts at a FLAG_START (its BOS or FIM prefix, never a target), the FIM
    // sentinels are never targets, and the end-of-middle token is (it teaches where to stop).
    const flags = [readFileSync(path.join(out, "train.flags")), readFileSync(path.join(out, "val.flags"))];
    const all = [...train, ...val];
    const allFlags = [...flags[0], ...flags[1]];
    assert.equal(flags[0].length, train.length);
    assert.equal(allFlags.filter((f) => f & FLAG_START).length, meta.summary.examples);
    const idOf = async (text: string) => (await engine.tokenize([[{ text, special: true }]]))[0][0];
    const [mid, eot] = [await idOf("<|fim_middle|>"), await idOf("<|endoftext|>")];
    all.forEach((t, i) => {
      if (t === fimPrefixId || t === mid) assert.ok(allFlags[i] & FLAG_NO_LOSS, "FIM sentinels are not targets");
      if (t === eot || t === PAD) assert.equal(allFlags[i] & FLAG_NO_LOSS, 0);
      if (allFlags[i] & FLAG_START) assert.ok(allFlags[i] & FLAG_NO_LOSS, "an example starts with BOS or a sentinel");
    });
  });

  test("keeps held-out files out of the training tokens", async () => {
    const out = path.join(dir, "data-split");
    await build(out);
    const files = DatasetFiles.parse(JSON.parse(readFileSync(path.join(out, "files.json"), "utf8")));
    assert.ok(files.val.length >= 1 && files.train.length >= 1);
    assert.deepEqual([...files.train, ...files.val].sort(), Object.keys(sampleSources(6)).sort());
    const text = async (f: string) => engine.detokenize([...(await readTokens(path.join(out, f)))].filter((t) => t !== PAD));
    const [trainText, valText] = [await text("train.bin"), await text("val.bin")];
    for (const f of files.val) {
      assert.ok(valText.includes(`<|file_sep|>${f}\n`), `${f} is in val.bin`);
      assert.ok(!trainText.includes(`<|file_sep|>${f}\n`), `${f} is not in train.bin`);
    }
    for (const f of files.train) assert.ok(trainText.includes(`<|file_sep|>${f}\n`), `${f} is in train.bin`);
    assert.ok(trainText.includes("<|fim_prefix|>") && trainText.includes("<|fim_middle|>") && trainText.includes("<|endoftext|>"));
  });

  test("is deterministic for a seed and changes with it", async () => {
    await build(path.join(dir, "d1"), 96, 3);
    await build(path.join(dir, "d2"), 96, 3);
    await build(path.join(dir, "d3"), 96, 4);
    const bytes = (d: string) => readFileSync(path.join(dir, d, "train.bin"));
    assert.ok(bytes("d1").equals(bytes("d2")));
    assert.ok(!bytes("d1").equals(bytes("d3")));
  });

  test("with a single file, holds out some of its examples", async () => {
    const one = path.join(dir, "one");
    mkdirSync(one);
    writeFileSync(path.join(one, "only.ts"), sampleSources(1)["src/widget.ts"]);
    const built = await buildDataset({ folder: one, outDir: path.join(dir, "one-data"), tokenizer: engine, format, model: info, modelPath, seqLen: 64, seed: 0 });
    assert.equal(built.summary.filesUsed, 1);
    assert.ok(built.summary.trainSequences >= 1 && built.summary.valSequences >= 1);
    assert.deepEqual(built.files, { train: ["only.ts"], val: ["only.ts"] });
  });

  test("a folder without usable text says so", async () => {
    const binaries = path.join(dir, "binaries");
    writeFiles(binaries, { "a.png": PNG, "b.txt": LATIN1 });
    await assert.rejects(
      buildDataset({ folder: binaries, outDir: path.join(dir, "bin-data"), tokenizer: engine, format, model: info, modelPath, seqLen: 64, seed: 0 }),
      /The folder has no text files RepoTune can learn from: all 2 files were skipped \(binary 1, not utf8 1\)/,
    );
    rmSync(binaries, { recursive: true });
  });

  test("git's view decides, even for files the walk would take", async () => {
    git(repo, "rm", "-q", "--cached", "src/store.ts");
    writeFileSync(path.join(repo, ".git", "info", "exclude"), "src/store.ts\n");
    const { usable } = await readUsableFiles(repo);
    assert.ok(!usable.some((f) => f.path === "src/store.ts"));
    git(repo, "add", "-f", "src/store.ts");
  });
});
