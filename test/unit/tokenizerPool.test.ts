// Tokenizing on several engines (src/core/tokenizerPool.ts): real engine processes on the tiny model, one with the
// model and helpers that load only its vocabulary.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import * as path from "node:path";
import { EngineClient, EngineError } from "../../src/core/engineClient";
import { splitBySize, TokenizerPool } from "../../src/core/tokenizerPool";
import { trainingExample } from "../../src/core/promptFormat";
import type { Segment } from "../../src/protocol/engine";
import { enginePath, repoRoot } from "./support/pipeline";
import { useTinyEngine, type TinyEngine } from "./support/tinyEngine";

let tiny: TinyEngine;
useTinyEngine("pool", (t) => (tiny = t));

/** Training examples of this repository's own sources: specials, headers, code, unicode. */
function examples(): Segment[][] {
  const src = path.join(repoRoot, "src", "core");
  const out: Segment[][] = [];
  for (const f of readdirSync(src).filter((n) => n.endsWith(".ts")).sort()) {
    const text = readFileSync(path.join(src, f), "utf8") + "\n// ünïcödé ✓ 漢字\n";
    for (let at = 0; at + 400 < text.length; at += 997) {
      out.push(trainingExample(tiny.format, {
        prefix: text.slice(at, at + 300), middle: text.slice(at + 300, at + 340), suffix: text.slice(at + 340, at + 400), filePath: `src/core/${f}`, repoName: "repotune",
      }));
    }
  }
  return out;
}

test("the pool's tokens are the single engine's, in order, whichever engine made them", async () => {
  const items = examples();
  assert.ok(items.length > 100, `${items.length} examples`);
  const alone = await tiny.engine.tokenize(items);
  const logs: string[] = [];
  // Helpers start after the first call here (threshold 1 character), and join once they are ready.
  const pool = new TokenizerPool(tiny.engine, { enginePath, modelPath: tiny.modelPath, helpers: 2, startAfterChars: 1, log: (l) => logs.push(l) });
  try {
    assert.deepEqual(await pool.tokenize(items), alone, "before any helper is ready");
    const started = Date.now();
    while (pool.helperCount < 2 && Date.now() - started < 60_000) await new Promise((r) => setTimeout(r, 100));
    assert.equal(pool.helperCount, 2, `helpers did not start: ${logs.join("; ")}`);
    for (let i = 0; i < 3; i++) assert.deepEqual(await pool.tokenize(items), alone, "split among three engines");
    // Two calls in flight at once (the build sends the next batch before the last is back) keep their own order.
    const [a, b] = await Promise.all([pool.tokenize(items.slice(0, 50)), pool.tokenize(items.slice(50))]);
    assert.deepEqual([...a, ...b], alone);
    assert.deepEqual(await pool.tokenize([]), []);
    assert.deepEqual(await pool.tokenize(items.slice(0, 1)), alone.slice(0, 1));
    assert.ok(logs.some((l) => l.startsWith("Tokenizing on 3 engines")), logs.join("; "));
  } finally {
    await pool.dispose();
  }
  assert.equal(pool.helperCount, 0, "dispose stops the helpers");
});

test("a helper that dies is let go and its share is tokenized by the first engine; no tokens are lost", async () => {
  const items = examples();
  const alone = await tiny.engine.tokenize(items);
  const logs: string[] = [];
  const pool = new TokenizerPool(tiny.engine, { enginePath, modelPath: tiny.modelPath, helpers: 1, startAfterChars: 1, log: (l) => logs.push(l) });
  try {
    await pool.tokenize(items.slice(0, 2));
    const started = Date.now();
    while (pool.helperCount < 1 && Date.now() - started < 60_000) await new Promise((r) => setTimeout(r, 100));
    assert.equal(pool.helperCount, 1);
    // The helper is killed while a batch is on its way: the batch still comes back whole and right.
    const helper = (pool as unknown as { helpers: EngineClient[] }).helpers[0];
    const pending = pool.tokenize(items);
    assert.ok(helper.pid !== undefined);
    process.kill(helper.pid, "SIGKILL");
    assert.deepEqual(await pending, alone);
    assert.deepEqual(await pool.tokenize(items), alone, "and afterwards, on the first engine alone");
    assert.equal(pool.helperCount, 0);
  } finally {
    await pool.dispose();
  }
});

test("a small folder starts no helper, and errors of the input reach the caller as they would from one engine", async () => {
  const pool = new TokenizerPool(tiny.engine, { enginePath, modelPath: tiny.modelPath, helpers: 2 });
  try {
    const items = examples().slice(0, 20);
    assert.deepEqual(await pool.tokenize(items), await tiny.engine.tokenize(items));
    assert.equal(pool.helperCount, 0, "under the default threshold of characters, no helper");
    // A special token the vocabulary lacks is refused with the engine's own message.
    await assert.rejects(pool.tokenize([[{ text: "<|no_such_token|>", special: true }], [{ text: "x", special: false }]]), (err: unknown) => {
      assert.ok(err instanceof EngineError && err.code === "bad_request" && err.message.includes("<|no_such_token|>"), String(err));
      return true;
    });
  } finally {
    await pool.dispose();
  }
});

test("an engine that loaded only the vocabulary tokenizes like the full model and refuses to complete", async () => {
  const vocab = await EngineClient.start({ enginePath, log: () => undefined });
  try {
    const info = await vocab.load(tiny.modelPath, "off", { vocabOnly: true });
    assert.equal(info.vocabSize, tiny.info.vocabSize);
    assert.deepEqual(info.special, tiny.info.special);
    const items = examples().slice(0, 30);
    assert.deepEqual(await vocab.tokenize(items), await tiny.engine.tokenize(items));
    await assert.rejects(vocab.complete({ prompt: items[0], adapterPath: null, maxTokens: 4 }), (err: unknown) => {
      assert.ok(err instanceof EngineError && err.code === "not_loaded" && /Only the vocabulary/.test(err.message), String(err));
      return true;
    });
  } finally {
    await vocab.dispose();
  }
});

test("shares of about the same size, contiguous, covering every item", () => {
  assert.deepEqual(splitBySize([10, 10, 10, 10], 2), [[0, 2], [2, 4]]);
  assert.deepEqual(splitBySize([100, 1, 1, 1], 2), [[0, 1], [1, 4]]);
  assert.deepEqual(splitBySize([5], 3), [[0, 0], [0, 1], [1, 1]], "one item: in the share whose goal reaches its middle");
  assert.deepEqual(splitBySize([], 2), [[0, 0], [0, 0]]);
  for (const sizes of [[3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5], Array.from({ length: 97 }, (_, i) => (i * 37) % 11)]) {
    for (const n of [1, 2, 3, 4]) {
      const shares = splitBySize(sizes, n);
      assert.equal(shares.length, n);
      assert.equal(shares[0][0], 0);
      assert.equal(shares.at(-1)![1], sizes.length);
      for (let k = 1; k < n; k++) assert.equal(shares[k][0], shares[k - 1][1]);
    }
  }
});
