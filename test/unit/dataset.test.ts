// The dataset step: discovery (git and plain folders), file filtering, FIM spans, splitting, packing, and a real
// dataset built with the engine's tokenizer on the tiny model. Run from the repository root after `node esbuild.mjs`.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, unlinkSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { listFiles } from "../../src/core/dataset/discover";
import { buildDataset, DatasetAborted } from "../../src/core/dataset/build";
import { selectFiles } from "../../src/core/dataset/select";
import { cursorWindow, DEFAULT_MIX, fimSpans, narrowSpan, type Budget } from "../../src/core/dataset/fim";
import { findDuplicates, fingerprint, jaccard, NEAR_DUPLICATE_JACCARD, shingles } from "../../src/core/dataset/dedupe";
import { fitExample, FLAG_NO_LOSS, FLAG_START, pack, packedBlocks, PAD, planPacking, TokenStore } from "../../src/core/dataset/pack";
import { rng } from "../../src/core/dataset/random";
import { chooseHeldOut, holdOutOrder, splitOneFile } from "../../src/core/dataset/split";
import { epochsAt, recommendedSteps } from "../../src/core/dataset/report";
import { DatasetFiles, readTokens } from "../../src/core/dataset/write";
import { DatasetMeta, DatasetReport, ExampleLine } from "../../src/protocol/dataset";
import type { EngineClient } from "../../src/core/engineClient";
import type { PromptFormat } from "../../src/core/promptFormat";
import type { ModelInfo } from "../../src/protocol/engine";
import { git, makeGitRepo, removeDir, sampleSources, tempDir, writeFiles } from "./support/pipeline";
import { startTinyEngine } from "./support/tinyEngine";

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
    const { usable, skipped } = await selectFiles(dir);
    // .gitignore is tooling, not code: linguist's vendor rules leave it out.
    assert.deepEqual(usable.map((f) => f.path).sort(), ["notes/todo.md", "src/main.ts"]);
    assert.deepEqual(skipped, { binary: 1, too_large: 1, not_utf8: 1, empty: 2, unreadable: 1, vendored: 1 });
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
    const { usable, skipped, listed } = await selectFiles(dir);
    assert.equal(listed, 9);
    assert.deepEqual(usable.map((f) => f.path), ["a.ts", "sub/b.py", "sub/deeper/c.go", "sub/keep.log"]);
    assert.deepEqual(skipped, { symlink: 2, binary: 1, vendored: 2 });
  });

  test("leaves out excluded folders (a runs folder inside the workspace)", async () => {
    const { usable } = await selectFiles(dir, { exclude: [path.join(dir, "sub"), path.join(dir, "..", "elsewhere")] });
    assert.deepEqual(usable.map((f) => f.path).sort(), ["a.ts"]);
  });
});

describe("FIM spans", () => {
  const text = readFileSync(path.join(process.cwd(), "src", "core", "dataset", "fim.ts"), "utf8");
  const budget: Budget = { prompt: 300, middle: 100, plain: 400 };
  const fimOnly = { ...DEFAULT_MIX, nextToken: 0 };

  test("are contiguous pieces of the file, within the budget, and the same for the same seed", () => {
    const spans = fimSpans(text, 40, budget, rng(7), fimOnly);
    assert.equal(spans.length, 40);
    for (const s of spans) {
      assert.ok(s.middle.length > 0, "a middle is never empty");
      assert.equal(text.slice(s.start - s.prefix.length, s.start + s.middle.length + s.suffix.length), s.prefix + s.middle + s.suffix);
      assert.ok(s.prefix.length + s.suffix.length <= budget.prompt, "prefix + suffix fit the prompt budget");
      assert.ok(s.middle.length <= budget.middle, "the middle fits its budget");
    }
    assert.deepEqual(fimSpans(text, 40, budget, rng(7), fimOnly), spans);
    assert.notDeepEqual(fimSpans(text, 40, budget, rng(8), fimOnly), spans);
    // Middles come from the whole file, in order, one per stretch of lines.
    assert.ok(spans.every((s, i) => i === 0 || s.start >= spans[i - 1].start));
    assert.ok(spans[spans.length - 1].start > text.length / 2);
  });

  test("an example's prompt is the completion prompt at its cursor in the file without the middle", () => {
    // Training cuts prefix and suffix around the middle as a completion cuts them around the cursor in the file as it
    // read before the middle was written: the same characters, for every kind and for open ends.
    const spans = fimSpans(text, 200, budget, rng(11), fimOnly);
    for (const s of spans) {
      const end = s.start + s.middle.length;
      const before = s.openEnd ? text.slice(0, s.start) : text.slice(0, s.start) + text.slice(end);
      assert.deepEqual(cursorWindow(before, s.start, budget.prompt), { prefix: s.prefix, suffix: s.suffix }, `span at ${s.start} (${s.kind})`);
    }
  });

  test("cut the prefix at a line start and keep whole lines of suffix when there is more text than fits", () => {
    const spans = fimSpans(text, 20, budget, rng(1), fimOnly).filter((s) => s.start - s.prefix.length > 0 && s.prefix.includes("\n"));
    assert.ok(spans.length > 0);
    for (const s of spans) assert.equal(text[s.start - s.prefix.length - 1], "\n");
  });

  test("some spans leave the suffix out, as at the end of what is being written, and give the prefix the room", () => {
    const spans = fimSpans(text, 80, budget, rng(3), fimOnly);
    const open = spans.filter((s) => s.openEnd);
    assert.ok(open.length >= 8 && open.length <= 32, `${open.length} of 80 spans are open-ended; about a quarter expected`);
    for (const s of open) {
      assert.equal(s.suffix, "");
      assert.equal(text.slice(s.start - s.prefix.length, s.start + s.middle.length), s.prefix + s.middle, "the middle is still the true continuation");
      if (s.start - s.prefix.length > 0) assert.ok(s.prefix.length > budget.prompt / 2, "the suffix's share goes to the prefix");
    }
    assert.ok(spans.some((s) => !s.openEnd && s.suffix.length > 0));
  });

  test("draw kinds by the mix: rest of line ends at the line's end, blocks end at a blank line or a dedent", () => {
    const spans = fimSpans(text, 400, budget, rng(5));
    const count = (k: string) => spans.filter((s) => s.kind === k).length;
    // Rest-of-line and block draws that cannot be had at their line fall back to lines, so those two come out a
    // little under their weight and lines over it.
    assert.ok(count("rest-of-line") > 0.3 * 400 && count("rest-of-line") <= 0.5 * 400, `rest of line ${count("rest-of-line")}`);
    assert.ok(count("block") > 0.08 * 400 && count("block") <= 0.3 * 400, `block ${count("block")}`);
    assert.ok(count("next-token") > 0.05 * 400 && count("next-token") < 0.15 * 400, `next token ${count("next-token")}`);
    const indent = (line: string) => (line.trim() === "" ? -1 : line.length - line.trimStart().length);
    for (const s of spans) {
      const end = s.start + s.middle.length;
      if (s.kind === "rest-of-line") {
        assert.ok(!s.middle.includes("\n"), "rest of line stays in its line");
        assert.ok(end === text.length || text[end] === "\n" || s.middle.length >= budget.middle - 1, "and runs to its end unless the line is too long");
      }
      if (s.kind === "block") {
        assert.ok(s.middle.endsWith("\n") || end === text.length);
        assert.ok(s.middle.split("\n").length >= 3, "a block is at least two lines");
        const lineStart = text.lastIndexOf("\n", s.start - 1) + 1;
        const firstIndent = indent(text.slice(lineStart, text.indexOf("\n", lineStart)));
        const after = text.slice(end, text.indexOf("\n", end) === -1 ? undefined : text.indexOf("\n", end));
        assert.ok(end === text.length || indent(after) === -1 || indent(after) < firstIndent, `block at ${s.start} ends at a blank line or a dedent, then ${JSON.stringify(after)}`);
        for (const line of s.middle.split("\n").slice(1, -1)) assert.ok(indent(line) >= firstIndent, "no line inside a block is less indented than its first");
      }
      if (s.kind === "next-token") {
        assert.equal(s.prefix + s.suffix, "", "plain text has no prompt");
        assert.equal(s.middle, text.slice(s.start, end));
        assert.ok(s.middle.length <= budget.plain);
        assert.ok(s.start === 0 || text[s.start - 1] === "\n", "plain text starts at a line");
      }
    }
    const onlyPlain = fimSpans(text, 10, budget, rng(5), { restOfLine: 0, lines: 0, block: 0, nextToken: 1 });
    assert.ok(onlyPlain.every((s) => s.kind === "next-token"));
  });

  test("a narrowed span keeps its cursor and cuts its prompt the same way", () => {
    for (const s of fimSpans(text, 60, budget, rng(9))) {
      const n = narrowSpan(text, s, budget, 0.5);
      assert.equal(n.start, s.start);
      assert.ok(n.middle.length > 0 && s.middle.startsWith(n.middle));
      if (s.kind === "next-token") continue;
      assert.ok(n.prefix.length + n.suffix.length <= budget.prompt * 0.5);
      const end = n.start + n.middle.length;
      const before = n.openEnd ? text.slice(0, n.start) : text.slice(0, n.start) + text.slice(end);
      assert.deepEqual(cursorWindow(before, n.start, Math.floor(budget.prompt * 0.5)), { prefix: n.prefix, suffix: n.suffix });
    }
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
  const sized = (paths: string[], chars = 100) => paths.map((p) => ({ path: p, chars }));

  test("holds out about a tenth of the characters, at least three files, and keeps at least one for training", () => {
    assert.deepEqual(chooseHeldOut(sized(["only.ts"])), { train: ["only.ts"], val: [] });
    const two = chooseHeldOut(sized(["a.ts", "b.ts"]));
    assert.equal(two.val.length, 1);
    assert.equal(two.train.length, 1);
    const many = Array.from({ length: 200 }, (_, i) => `src/file${i}.ts`);
    const s = chooseHeldOut(sized(many));
    assert.deepEqual(s.val, many.slice(0, 20), "the first files in order, until a tenth of the characters");
    assert.equal(s.train.length, 180);
    // Few large files: the file minimum wins over the fraction.
    assert.deepEqual(chooseHeldOut(sized(many.slice(0, 12))).val, many.slice(0, 3));
    // One file is most of the code: it stays in training and the next ones are held out.
    const lopsided = [{ path: "huge.ts", chars: 3000 }, ...sized(many.slice(0, 40))];
    assert.deepEqual(chooseHeldOut(lopsided).val, many.slice(0, 7));
  });

  test("orders files newest first by change time, ties and unknown times by a hash of the path", () => {
    const paths = ["a.ts", "b.ts", "c.ts", "d.ts", "e.ts"];
    const times = new Map([["a.ts", 100], ["b.ts", 300], ["c.ts", Infinity], ["e.ts", 300]]);
    const order = holdOutOrder(paths, times);
    assert.equal(order[0], "c.ts", "uncommitted changes are newest");
    assert.deepEqual(new Set(order.slice(1, 3)), new Set(["b.ts", "e.ts"]));
    assert.deepEqual(order.slice(3), ["a.ts", "d.ts"], "a file with no time in the history read is oldest");
    assert.deepEqual(holdOutOrder([...paths].reverse(), times), order, "the order does not depend on the listing's");
    const byHash = holdOutOrder(paths, null);
    assert.deepEqual(holdOutOrder([...paths].reverse(), null), byHash);
    assert.notDeepEqual(byHash, [...paths].sort(), "outside git the order is a hash, not the names");
  });

  test("with one file, holds out its last examples", () => {
    const examples = [5, 1, 9, 3].map((start) => ({ start }));
    const s = splitOneFile(examples, (e) => e.start);
    assert.deepEqual(s.val.map((e) => e.start), [9]);
    assert.deepEqual(s.train.map((e) => e.start), [1, 3, 5]);
  });
});

describe("training length", () => {
  test("recommends steps that show the data about three times, within bounds", () => {
    assert.equal(recommendedSteps(400, 8), 150);
    assert.equal(epochsAt(400, 150, 8), 3);
    assert.equal(recommendedSteps(10, 8), 20, "at least 20 steps");
    assert.equal(recommendedSteps(1_000_000, 8), 2000, "at most 2000 steps: a large repository sees part of its data");
    assert.equal(epochsAt(0, 100, 8), 0);
  });
});

describe("duplicates", () => {
  /** Code-like text: `lines` statements over a vocabulary of identifiers, from a seed. */
  const code = (seed: number, lines = 80) => {
    const r = rng(seed);
    const w = () => `name${r.int(0, 400)}`;
    return Array.from({ length: lines }, () => `  const ${w()} = ${w()}(${w()}, ${r.int(0, 99)});`).join("\n") + "\n";
  };
  /** `text` with `n` of its identifiers replaced, spread over the file. */
  const edit = (text: string, n: number) => {
    const words = text.split(/(\bname\d+\b)/);
    const idx = words.map((_, i) => i).filter((i) => i % 2 === 1);
    for (let k = 0; k < n; k++) words[idx[Math.floor((k * idx.length) / n)]] = `edited${k}`;
    return words.join("");
  };

  test("exact copies and copies with a few tokens changed are found; the first in order is kept", () => {
    const a = code(1);
    const files = [
      { path: "a.ts", text: a },
      { path: "b.ts", text: code(2) },
      { path: "copy-of-a.ts", text: a },
      { path: "edited-a.ts", text: edit(a, 3) },
      { path: "rewritten-a.ts", text: edit(a, 60) },
    ];
    const { kept, duplicates } = findDuplicates(files);
    assert.deepEqual(kept.map((f) => f.path), ["a.ts", "b.ts", "rewritten-a.ts"]);
    assert.deepEqual(duplicates.map((d) => [d.path, d.of, d.kind]), [["copy-of-a.ts", "a.ts", "exact"], ["edited-a.ts", "a.ts", "near"]]);
    const near = duplicates[1].similarity;
    assert.ok(near >= NEAR_DUPLICATE_JACCARD && near < 1);
    assert.equal(near, jaccard(shingles(a), shingles(files[3].text)), "the similarity is the exact Jaccard of the shingles");
    assert.ok(jaccard(shingles(a), shingles(files[4].text)) < NEAR_DUPLICATE_JACCARD);
    // Re-indenting does not make a file different.
    assert.equal(jaccard(shingles(a), shingles(a.replace(/^ {2}/gm, "\t\t"))), 1);
    assert.equal(findDuplicates([files[3], files[0]]).kept[0].path, "edited-a.ts", "order decides which copy stays");
  });

  test("finds every near copy just over the threshold among 2,000 files, the same way every time", () => {
    const files = Array.from({ length: 2000 }, (_, i) => ({ path: `src/f${i}.ts`, text: code(100 + i, 40) }));
    const planted: string[] = [];
    for (let k = 0; k < 40; k++) {
      const original = files[k * 37].text;
      // The most edits that keep the copy at Jaccard >= 0.85: the hardest near duplicates to find.
      let n = 1;
      while (jaccard(shingles(original), shingles(edit(original, n + 1))) >= NEAR_DUPLICATE_JACCARD) n++;
      files.push({ path: `copies/c${k}.ts`, text: edit(original, n) });
      planted.push(`copies/c${k}.ts`);
    }
    const first = findDuplicates(files);
    assert.deepEqual(first.duplicates.map((d) => d.path).sort(), planted.sort());
    assert.ok(first.duplicates.every((d) => d.similarity >= NEAR_DUPLICATE_JACCARD && d.similarity < 0.9));
    assert.deepEqual(findDuplicates(files), first);
  });

  test("a fingerprint's signature agrees with another's about as often as their shingles overlap", () => {
    const a = code(7, 400);
    const same = (x: Int32Array, y: Int32Array) => x.reduce((n, v, k) => n + (v === y[k] ? 1 : 0), 0) / x.length;
    const sig = (text: string) => fingerprint(text).signature!;
    assert.deepEqual(fingerprint(a.replace(/^ {2}/gm, "\t")).signature, sig(a), "white space changes nothing");
    assert.notEqual(fingerprint(a.replace(/^ {2}/gm, "\t")).digest, fingerprint(a).digest, "the digest is of the exact text");
    for (const n of [5, 40, 200]) {
      const b = edit(a, n);
      const j = jaccard(shingles(a), shingles(b));
      assert.ok(Math.abs(same(sig(a), sig(b)) - j) < 0.15, `${n} edits: Jaccard ${j.toFixed(2)}, signatures agree on ${same(sig(a), sig(b)).toFixed(2)}`);
    }
    assert.ok(same(sig(a), sig(code(8, 400))) < 0.15, "unrelated files rarely agree");
    // Too short for its similarity to mean much: no signature, so never a near copy (exact copies still are).
    assert.equal(fingerprint("export { a } from './a';\n").signature, null);
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

  test("tokens kept on disk past the memory chunks, packed a block at a time, give the same sequences as all in memory", () => {
    const r = rng(9);
    const examples = Array.from({ length: 3000 }, (_, i) => Array.from({ length: r.int(1, 60) }, (_, k) => 10 + ((i * 7 + k) % 500)));
    // Shuffled, as training examples are before packing: the store is read in another order than written.
    const order = Array.from(examples.keys());
    for (let i = order.length - 1; i > 0; i--) {
      const j = r.int(0, i);
      [order[i], order[j]] = [order[j], order[i]];
    }
    const whole = pack(order.map((i) => examples[i]), 64, new Set([10, 11]));
    const dir = tempDir("store");
    const spill = path.join(dir, "tokens.tmp");
    // Chunks of 256 tokens, two in memory: most of the 90,000 tokens go to the file.
    const store = new TokenStore(64, { path: spill, memoryChunks: 2 }, 256);
    try {
      for (const e of examples) store.add(e.slice(1), e[0]);
      assert.ok(statSync(spill).size > 256 * 4 * 100, "the store spilled to its file");
      const plan = planPacking(store, order, 64);
      assert.equal(plan.sequences, whole.sequences);
      const data = new Int32Array(plan.sequences * 64);
      const flags = new Uint8Array(plan.sequences * 64);
      let next = 0;
      for (const block of packedBlocks(store, plan, new Set([10, 11]), 37)) {
        assert.equal(block.firstSequence, next);
        data.set(block.data, block.firstSequence * 64);
        flags.set(block.flags, block.firstSequence * 64);
        next += block.data.length / 64;
      }
      assert.deepEqual(data, whole.data);
      assert.deepEqual(flags, whole.flags);
    } finally {
      store.dispose();
      assert.deepEqual(readdirSync(dir), [], "dispose removes the file");
      removeDir(dir);
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
    ({ modelPath, engine, info, format } = await startTinyEngine(dir));
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
    // Every FIM example has one FIM prefix token and every example one FLAG_START: none lost, none cut.
    assert.equal(built.truncatedExamples, 0);
    const prefixes = [...train, ...val].filter((t) => t === fimPrefixId).length;
    assert.equal(prefixes, meta.summary.examples - built.report.examples.byKind["next-token"]);
    assert.ok(built.report.examples.byKind["next-token"] > 0, "plain next-token examples are part of the default mix");
    // One flag byte per token: each example starts at a FLAG_START (its BOS, never a target), the FIM sentinels are
    // never targets, and the end-of-middle token is (it teaches where to stop).
    const flags = [readFileSync(path.join(out, "train.flags")), readFileSync(path.join(out, "val.flags"))];
    const all = [...train, ...val];
    const allFlags = [...flags[0], ...flags[1]];
    assert.equal(flags[0].length, train.length);
    assert.equal(allFlags.filter((f) => f & FLAG_START).length, meta.summary.examples);
    const idOf = async (text: string) => (await engine.tokenize([[{ text, special: true }]]))[0][0];
    const [mid, eot] = [await idOf("<|fim_middle|>"), await idOf("<|endoftext|>")];
    assert.ok(info.addBos && info.bos !== null, "the tiny model asks for BOS, as Qwen2.5-Coder's GGUF does");
    all.forEach((t, i) => {
      if (t === fimPrefixId || t === mid) assert.ok(allFlags[i] & FLAG_NO_LOSS, "FIM sentinels are not targets");
      if (t === eot || t === PAD) assert.equal(allFlags[i] & FLAG_NO_LOSS, 0);
      if (allFlags[i] & FLAG_START) assert.ok(t === info.bos && allFlags[i] & FLAG_NO_LOSS, "an example starts with BOS, not a target");
    });
  });

  test("writes examples.jsonl with the text of every example and report.json with what was built", async () => {
    const out = path.join(dir, "data-report");
    const built = await build(out);
    const lines = readFileSync(path.join(out, "examples.jsonl"), "utf8").split("\n");
    assert.equal(lines.pop(), "", "one JSON object per line, each ending with a newline");
    const examples = lines.map((l) => ExampleLine.parse(JSON.parse(l)));
    assert.equal(examples.length, built.summary.examples);
    const files = DatasetFiles.parse(JSON.parse(readFileSync(path.join(out, "files.json"), "utf8")));
    const sources = sampleSources(6);
    const val = new Set(files.val);
    for (const e of examples) {
      const text = sources[e.file];
      assert.equal(e.split, val.has(e.file) ? "val" : "train");
      assert.equal(text.slice(e.start, e.start + e.middle.length), e.middle, "the middle is the file's text at its offset");
      if (e.kind === "next-token") {
        assert.equal(e.prompt, "");
        continue;
      }
      // The prompt, special tokens as text: headers, then the code before the cursor, then the code after the middle.
      const m = /^<\|repo_name\|>([^\n]*)\n<\|file_sep\|>([^\n]*)\n<\|fim_prefix\|>([\s\S]*)<\|fim_suffix\|>([\s\S]*)<\|fim_middle\|>$/.exec(e.prompt);
      assert.ok(m, e.prompt);
      assert.deepEqual([m[1], m[2]], [path.basename(repo), e.file]);
      assert.ok(text.slice(0, e.start).endsWith(m[3]), "the prefix ends at the cursor");
      assert.ok(text.slice(e.start + e.middle.length).startsWith(m[4]), "the suffix starts after the middle");
      if (e.openEnd) assert.equal(m[4], "");
    }
    // Token counts per example add up to the tokens packed on each side.
    const sum = (split: string) => examples.filter((e) => e.split === split).reduce((n, e) => n + e.tokens, 0);
    assert.equal(sum("train"), built.summary.trainTokens);
    assert.equal(sum("val"), built.summary.valTokens);
    const byKind = { "rest-of-line": 0, lines: 0, block: 0, "next-token": 0 };
    for (const e of examples) byKind[e.kind]++;

    const report = DatasetReport.parse(JSON.parse(readFileSync(path.join(out, "report.json"), "utf8")));
    assert.deepEqual(report, built.report);
    assert.deepEqual(report.files, { listed: 8, used: 7, skipped: { binary: 1 } });
    assert.deepEqual(report.examples.byKind, byKind);
    assert.equal(report.examples.train, examples.filter((e) => e.split === "train").length);
    assert.equal(report.examples.val, examples.filter((e) => e.split === "val").length);
    assert.equal(report.examples.openEnd, examples.filter((e) => e.openEnd).length);
    assert.deepEqual(report.examples.mix, DEFAULT_MIX);
    assert.deepEqual(report.tokens, { train: built.summary.trainTokens, val: built.summary.valTokens, charsPerToken: built.summary.charsPerToken });
    assert.deepEqual(report.sequences, { train: built.summary.trainSequences, val: built.summary.valSequences, seqLen: 128 });
    assert.equal(report.split.method, "hash", "one commit says nothing of recency: the path hash decides");
    assert.deepEqual([...report.split.heldOut].sort(), files.val);
    assert.equal(report.split.totalChars, Object.values(sources).reduce((n, t) => n + t.length, 0));
    assert.equal(report.split.heldOutChars, files.val.reduce((n, f) => n + sources[f].length, 0));
    assert.deepEqual(report.duplicates, { exact: 0, near: 0, ofHeldOut: 0, removed: [] });
    assert.deepEqual(report.secrets, { filesExcluded: 0, findings: {} });
    assert.deepEqual(report.warnings, built.summary.warnings);
    // The summary the UI shows carries the same facts.
    assert.equal(built.summary.splitMethod, "hash");
    assert.equal(built.summary.heldOutFiles, files.val.length);
    assert.deepEqual(built.summary.duplicates, { exact: 0, near: 0, ofHeldOut: 0 });
  });

  test("keeps held-out files out of the training tokens", async () => {
    const out = path.join(dir, "data-split");
    await build(out);
    const files = DatasetFiles.parse(JSON.parse(readFileSync(path.join(out, "files.json"), "utf8")));
    assert.ok(files.val.length >= 1 && files.train.length >= 1);
    assert.equal(files.split, "hash");
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

  test("is deterministic for a seed, byte for byte in every file, and changes with it", async () => {
    await build(path.join(dir, "d1"), 96, 3);
    await build(path.join(dir, "d2"), 96, 3);
    await build(path.join(dir, "d3"), 96, 4);
    const names = ["train.bin", "train.flags", "val.bin", "val.flags", "meta.json", "files.json", "examples.jsonl", "report.json"];
    assert.deepEqual(readdirSync(path.join(dir, "d1")).sort(), [...names].sort(), "these files and no temporary ones");
    const bytes = (d: string, f: string) => readFileSync(path.join(dir, d, f));
    for (const f of names) assert.ok(bytes("d1", f).equals(bytes("d2", f)), `${f} is the same in two builds`);
    assert.ok(!bytes("d1", "train.bin").equals(bytes("d3", "train.bin")));
    assert.ok(!bytes("d1", "examples.jsonl").equals(bytes("d3", "examples.jsonl")));
    assert.ok(bytes("d1", "files.json").equals(bytes("d3", "files.json")), "the held-out files do not depend on the seed");
  });

  test("with a single file, holds out some of its examples", async () => {
    const one = path.join(dir, "one");
    mkdirSync(one);
    writeFileSync(path.join(one, "only.ts"), sampleSources(1)["src/widget.ts"]);
    const built = await buildDataset({ folder: one, outDir: path.join(dir, "one-data"), tokenizer: engine, format, model: info, modelPath, seqLen: 64, seed: 0 });
    assert.equal(built.summary.filesUsed, 1);
    assert.ok(built.summary.trainSequences >= 1 && built.summary.valSequences >= 1);
    assert.deepEqual(built.files, { train: ["only.ts"], val: ["only.ts"], split: "one-file" });
    assert.equal(built.summary.splitMethod, "one-file");
    const lines = readFileSync(path.join(dir, "one-data", "examples.jsonl"), "utf8").trim().split("\n").map((l) => ExampleLine.parse(JSON.parse(l)));
    const lastTrain = Math.max(...lines.filter((e) => e.split === "train").map((e) => e.start));
    assert.ok(lines.filter((e) => e.split === "val").every((e) => e.start >= lastTrain), "the file's last examples are held out");
  });

  test("a small repository gets more examples per file, a warning and recommended steps, never a failure", async () => {
    const small = path.join(dir, "small");
    writeFiles(small, { "a.py": "def add(a, b):\n    return a + b\n", "b.py": "def sub(a, b):\n    return a - b\n", "c.py": "x = add(1, 2)\n" });
    const built = await buildDataset({ folder: small, outDir: path.join(dir, "small-data"), tokenizer: engine, format, model: info, modelPath, seqLen: 128, seed: 0, batch: 4 });
    const s = built.summary;
    assert.ok(s.trainTokens > 0 && s.trainTokens < 20_000);
    assert.equal(built.report.examples.perFileScale, 8, "as many more examples as the cap allows for so little code");
    assert.ok(s.examples > 3 * 2 * 2, `${s.examples} examples from 3 one-line files`);
    assert.equal(s.recommendedSteps, Math.max(20, Math.ceil((3 * s.trainSequences) / 4)));
    assert.equal(s.warnings?.length, 1);
    assert.match(s.warnings![0], new RegExp(`This repository is small: ${s.trainTokens.toLocaleString("en-US")} training tokens, under 20,000\\. RepoTune drew 8 times more examples .* Train for about ${s.recommendedSteps} steps`));
    assert.deepEqual(built.report.warnings, s.warnings);
    // The sample repository is not small at seq_len 128: no warning, one draw per stretch.
    const normal = await build(path.join(dir, "normal-data"));
    assert.ok(normal.summary.trainTokens >= 20_000, `${normal.summary.trainTokens} training tokens`);
    assert.deepEqual(normal.summary.warnings, []);
    assert.equal(normal.report.examples.perFileScale, 1);
  });

  test("a build stopped while it tokenizes leaves no temporary file behind", async () => {
    const outDir = path.join(dir, "stopped");
    const stop = new AbortController();
    let calls = 0;
    // Stops at the second batch of examples (the first call measures characters per token).
    const tokenizer = { tokenize: (items: Parameters<EngineClient["tokenize"]>[0]) => (++calls === 3 && stop.abort(), engine.tokenize(items)) };
    await assert.rejects(
      buildDataset({ folder: repo, outDir, tokenizer, format, model: info, modelPath, seqLen: 64, seed: 0, signal: stop.signal, mix: { restOfLine: 1, lines: 0, block: 0, nextToken: 0 } }),
      DatasetAborted,
    );
    assert.ok(calls >= 3, `the tokenizer was asked ${calls} times`);
    assert.deepEqual(readdirSync(outDir), [], "nothing left in the output folder");
  });

  test("an invalid mix of example kinds says what is wrong", async () => {
    await assert.rejects(
      buildDataset({ folder: repo, outDir: path.join(dir, "bad-mix"), tokenizer: engine, format, model: info, modelPath, seqLen: 64, seed: 0, mix: { restOfLine: 0, lines: 0, block: 0, nextToken: 0 } }),
      /The mix of example kinds is invalid: at least one weight must be above 0/,
    );
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
    const { usable } = await selectFiles(repo);
    assert.ok(!usable.some((f) => f.path === "src/store.ts"));
    git(repo, "add", "-f", "src/store.ts");
  });
});
