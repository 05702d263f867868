// The engine process for real: dist/engine.mjs forked through EngineClient, node-llama-cpp's prebuilt CPU binaries,
// and a tiny GGUF model and LoRA adapters generated at test time by the trainer package.
// Run from the repository root after `node esbuild.mjs`.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, fork } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { EngineClient, EngineError } from "../../src/core/engineClient";
import { promptFormatFor, trainingExample, type PromptFormat } from "../../src/core/promptFormat";
import type { CompletionRecord, ModelInfo, Segment } from "../../src/protocol/engine";
import { writeRandomAdapter } from "./support/randomAdapter";

const repoRoot = process.cwd();
const enginePath = join(repoRoot, "dist", "engine.mjs");
const python = process.env.REPOTUNE_PYTHON || "/usr/bin/python3";
const trainerRoot = join(repoRoot, "trainer");

function runPython(args: string[]): string {
  return execFileSync(python, args, { env: { ...process.env, PYTHONPATH: trainerRoot }, encoding: "utf8" });
}

function isEngineError(code: string, pattern?: RegExp) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof EngineError, `expected an EngineError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (pattern) assert.match(err.message, pattern);
    return true;
  };
}

let dir: string;
let modelPath: string;
let adapterPath: string;
let transposedAdapterPath: string;
let qwenAdapterPath: string;
let notGgufPath: string;
const logs: string[] = [];

async function startEngine(): Promise<EngineClient> {
  return EngineClient.start({ enginePath, log: (line) => logs.push(line) });
}

before(() => {
  assert.ok(existsSync(enginePath), `${enginePath} is missing: run \`node esbuild.mjs\` first`);
  dir = mkdtempSync(join(tmpdir(), "repotune-engine-test-"));
  modelPath = join(dir, "tiny-llama.gguf");
  const printed = JSON.parse(runPython(["-m", "repotune_trainer", "tiny-model", "--arch", "llama", "--out", modelPath, "--seed", "0"]));
  assert.equal(printed.path, modelPath);
  adapterPath = join(dir, "adapter.gguf");
  transposedAdapterPath = join(dir, "adapter-transposed.gguf");
  qwenAdapterPath = join(dir, "adapter-qwen2.gguf");
  writeRandomAdapter(adapterPath, "llama");
  writeRandomAdapter(transposedAdapterPath, "llama", "transposed");
  writeRandomAdapter(qwenAdapterPath, "qwen2");
  notGgufPath = join(dir, "notes.gguf");
  writeFileSync(notGgufPath, "these are not model weights\n");
});

after(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe("engine with the tiny model", () => {
  let engine: EngineClient;
  let info: ModelInfo;
  let format: PromptFormat;
  const prompt = (): Segment[] => format.fim({ prefix: "def add(a, b):\n    return ", suffix: "\n\nprint(add(1, 2))\n", filePath: "math.py", repoName: "demo" });

  let loadMs = 0;

  before(async () => {
    engine = await startEngine();
    const started = performance.now();
    info = await engine.load(modelPath, "off");
    loadMs = performance.now() - started;
    format = promptFormatFor(info);
  });

  after(async () => {
    await engine.dispose();
  });

  test("load reports the model's FIM token texts, and the prompt format follows them", (t) => {
    t.diagnostic(`first load in a new engine (llama.cpp backend + model): ${loadMs.toFixed(0)} ms`);
    assert.equal(info.arch, "llama");
    assert.equal(info.path, modelPath);
    assert.deepEqual(info.special, { fimPrefix: "<|fim_prefix|>", fimSuffix: "<|fim_suffix|>", fimMiddle: "<|fim_middle|>", eot: "<|endoftext|>" });
    assert.equal(info.infillSupported, true);
    assert.equal(format.family, "qwen2.5-coder");
    assert.ok(info.vocabSize > 256, "a byte-level vocabulary has at least the 256 byte tokens");
    assert.ok(info.trainContextSize > 0);
    assert.notEqual(info.bos, null);
    assert.notEqual(info.eos, null);
    // Loaded with gpu "off": the CPU backend, nothing offloaded; the status bar shows these.
    assert.equal(info.gpu, null);
    assert.equal(info.gpuLayers, 0);
    assert.equal(info.totalLayers, 3, "2 blocks and the output layer, as llama.cpp counts them");
  });

  test("loading the same model again answers from the loaded model", async () => {
    assert.deepEqual(await engine.load(modelPath, "off"), info);
  });

  test("tokenize and detokenize round-trip plain text", async () => {
    const text = "def add(a, b):\n    return a + b  # ünïcödé ✓ <|fim_prefix|>\n";
    const [tokens] = await engine.tokenize([[{ text, special: false }]]);
    assert.ok(tokens.length > 0);
    assert.equal(await engine.detokenize(tokens), text);
    // No BOS is added by tokenize: callers place every token themselves.
    assert.notEqual(tokens[0], info.bos);
  });

  test("special segments become one token each; the same text as plain code does not", async () => {
    const example = trainingExample(format, { prefix: "x = ", suffix: "\n", middle: "1", filePath: "a.py", repoName: "demo" });
    const perSegment = await engine.tokenize(example.map((s) => [s]));
    const specialIds = new Set<number>();
    example.forEach((segment, i) => {
      if (!segment.special) return;
      assert.equal(perSegment[i].length, 1, `${segment.text} should be one token`);
      specialIds.add(perSegment[i][0]);
    });
    assert.equal(specialIds.size, new Set(example.filter((s) => s.special).map((s) => s.text)).size);
    const [whole] = await engine.tokenize([example]);
    assert.deepEqual(whole, perSegment.flat(), "a prompt tokenizes segment by segment");
    assert.equal(await engine.detokenize(whole), example.map((s) => s.text).join(""));

    const [asCode] = await engine.tokenize([[{ text: "<|fim_prefix|>", special: false }]]);
    assert.ok(asCode.length > 1);
    assert.ok(asCode.every((t) => !specialIds.has(t)), "code that spells a special token must not produce it");
  });

  test("a special segment the vocabulary lacks is refused", async () => {
    await assert.rejects(engine.tokenize([[{ text: "<fim_prefix>", special: true }]]), isEngineError("bad_request", /not in the vocabulary/));
  });

  test("detokenize refuses ids outside the vocabulary", async () => {
    assert.equal(typeof (await engine.detokenize([info.vocabSize - 1])), "string");
    await assert.rejects(engine.detokenize([info.vocabSize]), isEngineError("bad_request", /outside the model's vocabulary/));
    await assert.rejects(engine.detokenize([-1]), isEngineError("bad_request"));
  });

  test("complete is greedy: the same prompt gives the same text", async (t) => {
    const request = { prompt: prompt(), adapterPath: null, maxTokens: 24, stop: format.stopStrings };
    const started = performance.now();
    const first = await engine.complete(request);
    const elapsed = performance.now() - started;
    const second = await engine.complete(request);
    t.diagnostic(`completion of ${first.tokens} tokens: ${elapsed.toFixed(0)} ms (first), tiny model on CPU`);
    assert.deepEqual([second.text, second.tokens], [first.text, first.tokens]);
    assert.equal(first.adapterPath, null);
    assert.ok(first.tokens > 0);
    // node-llama-cpp may take one token more to finish a multi-byte character.
    assert.ok(first.tokens <= request.maxTokens + 1, `generated ${first.tokens} tokens for maxTokens ${request.maxTokens}`);
  });

  test("a stop string ends the completion before it", async () => {
    // The random tiny model emits many invalid UTF-8 bytes, which node-llama-cpp holds back while they might still
    // complete a stop string: pick a printable character that only valid text precedes.
    for (const code of ["def add(a, b):\n    return ", "// ", "# ", "a"]) {
      const request = { prompt: format.fim({ prefix: code, suffix: "" }), adapterPath: null, maxTokens: 24 };
      const full = await engine.complete(request);
      const chars = [...full.text];
      const at = chars.findIndex((c, i) => /^[ -~]$/.test(c) && chars.indexOf(c) === i && !chars.slice(0, i).includes("\uFFFD"));
      if (at < 0) continue;
      const stopped = await engine.complete({ ...request, stop: ["<|file_sep|>", chars[at]] });
      assert.equal(stopped.text, chars.slice(0, at).join(""));
      assert.ok(stopped.tokens < full.tokens);
      assert.equal((await engine.complete({ ...request, stop: ["never generated \u0000"] })).text, full.text);
      return;
    }
    assert.fail("none of the probe prompts gave a completion with a usable stop character");
  });

  test("an adapter changes the completion; switching back restores the base model's", async () => {
    const request = { prompt: prompt(), maxTokens: 16 };
    const base = await engine.complete({ ...request, adapterPath: null });
    const tuned = await engine.complete({ ...request, adapterPath });
    assert.equal(tuned.adapterPath, adapterPath);
    assert.notEqual(tuned.text, base.text, "the adapter must change what the model generates");
    assert.equal((await engine.complete({ ...request, adapterPath })).text, tuned.text);
    assert.equal((await engine.complete({ ...request, adapterPath: null })).text, base.text);
  });

  test("adapters that cannot apply are refused with bad_adapter, and the engine keeps serving", async () => {
    const request = { prompt: prompt(), maxTokens: 4 };
    await assert.rejects(engine.complete({ ...request, adapterPath: join(dir, "missing.gguf") }), isEngineError("bad_adapter", /does not exist/));
    await assert.rejects(engine.complete({ ...request, adapterPath: notGgufPath }), isEngineError("bad_adapter", /not a GGUF/));
    await assert.rejects(engine.complete({ ...request, adapterPath: modelPath }), isEngineError("bad_adapter", /not a LoRA adapter/));
    await assert.rejects(engine.complete({ ...request, adapterPath: qwenAdapterPath }), isEngineError("bad_adapter", /"qwen2" architecture/));
    await assert.rejects(engine.complete({ ...request, adapterPath: transposedAdapterPath }), isEngineError("bad_adapter", /could not apply/));
    assert.ok(engine.alive);
    assert.ok((await engine.complete({ ...request, adapterPath: null })).tokens > 0);
  });

  test("a model file that is not GGUF is refused with bad_model", async () => {
    await assert.rejects(engine.load(notGgufPath, "off"), isEngineError("bad_model", /not a GGUF model file.*choose a \.gguf/));
    await assert.rejects(engine.load(join(dir, "missing.gguf"), "off"), isEngineError("bad_model", /does not exist/));
    await assert.rejects(engine.load(adapterPath, "off"), isEngineError("bad_model", /is a LoRA adapter, not a base model/));
  });

  test("a prompt that extends the previous one evaluates only its new tokens", async (t) => {
    const base = [{ text: "def add(a, b):\n    return a + b\n", special: false }];
    const more = [{ text: "def add(a, b):\n    return a + b\n\ndef sub(a, b):\n", special: false }];
    const [baseTokens, moreTokens] = await engine.tokenize([base, more]);
    assert.deepEqual(moreTokens.slice(0, baseTokens.length), baseTokens, "the longer text tokenizes as the shorter one plus more");
    const bos = info.addBos ? 1 : 0;
    // maxTokens 1: the one generated token is sampled but never evaluated, so the context holds exactly the prompt.
    const first = await engine.complete({ prompt: base, adapterPath, maxTokens: 1 });
    const second = await engine.complete({ prompt: more, adapterPath, maxTokens: 1 });
    t.diagnostic(`first: ${first.evaluatedTokens}/${first.promptTokens} evaluated; extended: ${second.evaluatedTokens}/${second.promptTokens} evaluated`);
    assert.equal(second.promptTokens, moreTokens.length + bos);
    assert.equal(second.reusedTokens, baseTokens.length + bos);
    assert.equal(second.evaluatedTokens, moreTokens.length - baseTokens.length);
    const again = await engine.complete({ prompt: more, adapterPath, maxTokens: 1 });
    assert.deepEqual([again.evaluatedTokens, again.reusedTokens], [1, moreTokens.length + bos - 1], "the same prompt again evaluates its last token only");
  });

  test("typing one character in a FIM prefix reuses the prompt up to that character; the completion is the cold one", async (t) => {
    const input = { prefix: "import os\n\ndef add(a, b):\n    return a", suffix: "\n\n\ndef main():\n    print(add(1, 2))\n", filePath: "math.py", repoName: "demo" };
    const before = format.fim(input);
    const typed = format.fim({ ...input, prefix: `${input.prefix} ` });
    const [beforeTokens, typedTokens] = await engine.tokenize([before, typed]);
    const firstChange = typedTokens.findIndex((tok, i) => tok !== beforeTokens[i]);
    const bos = info.addBos ? 1 : 0;
    const request = { adapterPath: null, maxTokens: 12, stop: format.stopStrings };
    await engine.complete({ ...request, prompt: before });
    const warm = await engine.complete({ ...request, prompt: typed });
    t.diagnostic(
      `one character typed at the end of the prefix: ${warm.evaluatedTokens} of ${warm.promptTokens} prompt tokens evaluated, ` +
        `${warm.reusedTokens} reused (the suffix and the tokens after it are evaluated again)`,
    );
    assert.equal(warm.reusedTokens, firstChange + bos);
    assert.equal(warm.evaluatedTokens, typedTokens.length - firstChange);
    // Another adapter means another context: the same request then starts from an empty KV cache.
    await engine.complete({ ...request, prompt: typed, adapterPath });
    const cold = await engine.complete({ ...request, prompt: typed });
    assert.deepEqual([cold.evaluatedTokens, cold.reusedTokens], [typedTokens.length + bos, 0]);
    // Exact on this model's F32 weights (0 of 60 typing positions differed, measured). On quantized weights ggml's
    // kernels depend on the batch split, and a near-tie may then go the other way (8 of 60 on a random Q8_0 model).
    assert.equal(warm.text, cold.text, "a completion on a reused KV cache must equal the same completion made cold");
  });

  test("release frees the model and keeps the process; a load brings it back", async () => {
    const request = { prompt: prompt(), adapterPath: null, maxTokens: 8 };
    const before = await engine.complete(request);
    assert.equal(await engine.release(), true);
    assert.equal((await engine.status()).model, null);
    assert.ok(engine.alive);
    await assert.rejects(engine.complete(request), isEngineError("not_loaded"));
    assert.equal(await engine.release(), false, "nothing left to release");
    assert.deepEqual(await engine.load(modelPath, "off"), info);
    assert.equal((await engine.complete(request)).text, before.text);
  });

  test("a prompt that does not fit the context is refused", async () => {
    await assert.rejects(engine.complete({ prompt: prompt(), adapterPath: null, maxTokens: 1_000_000 }), isEngineError("bad_request", /do not fit/));
  });
});

describe("engine lifecycle", () => {
  // The tiny model keeps generating after a lone "a" on some seeds and stops early on others: probe for a prompt
  // that runs to the token limit, so that cancelling hits a generation in progress.
  async function longPrompt(engine: EngineClient): Promise<Segment[]> {
    for (const text of ["a", "{{{{", "the the the", "0", "x"]) {
      const prompt = [{ text, special: false }];
      const probe = await engine.complete({ prompt, adapterPath: null, maxTokens: 400 });
      if (probe.tokens >= 400) return prompt;
    }
    throw new Error("no probe prompt made the tiny model generate 400 tokens");
  }

  test("a model must be loaded first", async () => {
    const engine = await startEngine();
    try {
      await assert.rejects(engine.tokenize([[{ text: "x", special: false }]]), isEngineError("not_loaded", /load/));
    } finally {
      await engine.dispose();
    }
  });

  // The engine's record of a cancelled completion, once the generation has really ended.
  async function cancelledRecord(engine: EngineClient): Promise<CompletionRecord> {
    for (let i = 0; i < 100; i++) {
      const found = (await engine.status()).completions.find((c) => c.outcome === "cancelled");
      if (found) return found;
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error("the engine recorded no cancelled completion");
  }

  test("aborting the signal stops a long generation within a token; the engine keeps serving", async (t) => {
    const engine = await startEngine();
    try {
      await engine.load(modelPath, "off");
      const prompt = await longPrompt(engine);
      const controller = new AbortController();
      const pending = engine.complete({ prompt, adapterPath: null, maxTokens: 3000 }, controller.signal);
      let abortedAt = 0;
      setTimeout(() => {
        abortedAt = performance.now();
        controller.abort();
      }, 100);
      await assert.rejects(pending, isEngineError("cancelled"));
      const rejectedMs = performance.now() - abortedAt;
      const record = await cancelledRecord(engine);
      t.diagnostic(
        `cancelled after ${record.decodedTokens} tokens: ${record.tokensAfterCancel} decoded after the cancel, generation ended ` +
          `${record.msAfterCancel?.toFixed(2)} ms after it reached the engine; the caller heard ${rejectedMs.toFixed(2)} ms after abort()`,
      );
      assert.ok(record.decodedTokens > 1 && record.decodedTokens < 3000, `cancelled mid-generation (${record.decodedTokens} tokens)`);
      assert.ok(record.tokensAfterCancel !== null && record.tokensAfterCancel <= 1, `${record.tokensAfterCancel} tokens after the cancel`);
      assert.ok((await engine.complete({ prompt, adapterPath: null, maxTokens: 4 })).tokens > 0);
      const aborted = new AbortController();
      aborted.abort();
      await assert.rejects(engine.complete({ prompt, adapterPath: null, maxTokens: 4 }, aborted.signal), isEngineError("cancelled"));
    } finally {
      await engine.dispose();
    }
  });

  test("a newer completion for the same adapter supersedes the older one", async () => {
    const engine = await startEngine();
    try {
      await engine.load(modelPath, "off");
      const prompt = await longPrompt(engine);
      const alone = await engine.complete({ prompt, adapterPath: null, maxTokens: 8 });
      const older = engine.complete({ prompt, adapterPath: null, maxTokens: 3000 });
      const newer = engine.complete({ prompt, adapterPath: null, maxTokens: 8 });
      await assert.rejects(older, isEngineError("cancelled", /superseded/));
      assert.deepEqual(await newer, alone);
    } finally {
      await engine.dispose();
    }
  });

  test("supersede: a new completion cancels the one in flight at once, whatever its adapter", async () => {
    const engine = await startEngine();
    try {
      await engine.load(modelPath, "off");
      const prompt = await longPrompt(engine);
      const alone = await engine.complete({ prompt, adapterPath, maxTokens: 8 });
      const older = engine.complete({ prompt, adapterPath: null, maxTokens: 3000 });
      await new Promise((r) => setTimeout(r, 50));
      const started = performance.now();
      const newer = engine.complete({ prompt, adapterPath, maxTokens: 8, supersede: true });
      await assert.rejects(older, isEngineError("cancelled", /superseded/));
      assert.ok(performance.now() - started < 50, "the superseded caller hears at once");
      assert.equal((await newer).text, alone.text);
      const record = await cancelledRecord(engine);
      assert.ok(record.tokensAfterCancel !== null && record.tokensAfterCancel <= 1, `${record.tokensAfterCancel} tokens after the cancel`);
    } finally {
      await engine.dispose();
    }
  });

  test("stats: adapter switches keep one live context and sequence, cancels are counted, release frees them all", async () => {
    const engine = await startEngine();
    try {
      const empty = await engine.stats();
      assert.deepEqual(
        { ...empty, rssBytes: 0, heapUsedBytes: 0 },
        { contexts: 0, sequences: 0, contextsCreated: 0, adapters: 0, inFlight: 0, completions: { done: 0, cancelled: 0, failed: 0 }, rssBytes: 0, heapUsedBytes: 0 },
      );
      assert.ok(empty.rssBytes > empty.heapUsedBytes && empty.heapUsedBytes > 0, "the engine reports its own memory");
      await engine.load(modelPath, "off");
      const prompt = await longPrompt(engine);
      for (const adapter of [null, adapterPath, null, adapterPath]) await engine.complete({ prompt, adapterPath: adapter, maxTokens: 4 });
      const switched = await engine.stats();
      assert.deepEqual([switched.contexts, switched.sequences, switched.adapters], [1, 1, 1], "old contexts are disposed on each switch");
      // The longPrompt probes made the base model's context: then three switches, one new context each.
      assert.equal(switched.contextsCreated, 4);
      const controller = new AbortController();
      const pending = engine.complete({ prompt, adapterPath: null, maxTokens: 3000 }, controller.signal);
      const running = await engine.stats();
      assert.equal(running.inFlight, 1, "stats are answered while a completion runs");
      controller.abort();
      await assert.rejects(pending, isEngineError("cancelled"));
      let after = await engine.stats();
      // The client hears of the cancel at once; the engine ends the generation within a token after it.
      for (let i = 0; i < 100 && after.inFlight > 0; i++) {
        await new Promise((r) => setTimeout(r, 20));
        after = await engine.stats();
      }
      assert.equal(after.inFlight, 0);
      assert.equal(after.completions.cancelled, 1);
      assert.equal(after.completions.done, switched.completions.done);
      assert.ok(after.completions.done >= 5);
      await engine.release();
      const released = await engine.stats();
      assert.deepEqual([released.contexts, released.sequences, released.adapters], [0, 0, 0]);
    } finally {
      await engine.dispose();
    }
  });

  test("malformed IPC messages get bad_request and the engine stays alive", async () => {
    const child = fork(enginePath, [], { serialization: "json", execArgv: [], stdio: ["ignore", "ignore", "pipe", "ipc"] });
    const replies: unknown[] = [];
    const waiters: Array<() => void> = [];
    child.on("message", (m) => {
      replies.push(m);
      waiters.shift()?.();
    });
    const nextReply = () => new Promise<void>((resolve) => waiters.push(resolve));
    try {
      for (const bad of ["not an object", { id: 7, method: "explode", params: {} }, { id: 8, method: "complete", params: { prompt: "x" } }, { method: "load" }]) {
        const got = nextReply();
        child.send(bad);
        await got;
      }
      assert.deepEqual(replies.map((r) => (r as { id: number }).id), [-1, 7, 8, -1]);
      for (const r of replies) {
        const reply = r as { ok: boolean; error: { code: string; message: string } };
        assert.equal(reply.ok, false);
        assert.equal(reply.error.code, "bad_request");
        assert.match(reply.error.message, /malformed request/);
      }
      const got = nextReply();
      child.send({ id: 9, method: "tokenize", params: { items: [] } });
      await got;
      const last = replies.at(-1) as { id: number; ok: boolean; error: { code: string } };
      assert.deepEqual([last.id, last.ok, last.error.code], [9, false, "not_loaded"], "a well-formed request after the bad ones is served");
      assert.equal(child.exitCode, null);
    } finally {
      child.kill("SIGKILL");
    }
  });

  test("the engine exits when its parent disconnects (no orphans)", async () => {
    const child = fork(enginePath, [], { serialization: "json", execArgv: [], stdio: ["ignore", "ignore", "pipe", "ipc"] });
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
    await new Promise<void>((resolve) => child.once("spawn", resolve));
    child.disconnect();
    assert.equal(await exited, 0);
  });

  test("killing the engine rejects pending requests and fires onExit", async () => {
    const engine = await startEngine();
    await engine.load(modelPath, "off");
    const prompt = await longPrompt(engine);
    const exit = new Promise<[number | null, string | null]>((resolve) => engine.onExit((code, signal) => resolve([code, signal])));
    const pending = engine.complete({ prompt, adapterPath: null, maxTokens: 3000 });
    setTimeout(() => process.kill(engine.pid!, "SIGKILL"), 50);
    await assert.rejects(pending, isEngineError("internal", /killed by SIGKILL/));
    assert.deepEqual(await exit, [null, "SIGKILL"]);
    assert.equal(engine.alive, false);
    await assert.rejects(engine.tokenize([]), isEngineError("internal", /not running/));
    await engine.dispose();
  });

  test("the engine runs with one malloc arena (its memory stays flat across adapter switches)", { skip: process.platform !== "linux" }, async () => {
    const engine = await startEngine();
    try {
      const environ = readFileSync(`/proc/${engine.pid}/environ`, "utf8").split("\0");
      assert.ok(environ.includes(`MALLOC_ARENA_MAX=${process.env.MALLOC_ARENA_MAX ?? "1"}`), "glibc reads it when the process starts");
    } finally {
      await engine.dispose();
    }
  });

  test("dispose ends the engine process cleanly", async () => {
    const engine = await startEngine();
    await engine.load(modelPath, "off");
    const exit = new Promise<[number | null, string | null]>((resolve) => engine.onExit((code, signal) => resolve([code, signal])));
    await engine.dispose();
    assert.deepEqual(await exit, [0, null]);
    assert.equal(engine.alive, false);
  });

  test("starting from a missing bundle says how to build it", async () => {
    await assert.rejects(EngineClient.start({ enginePath: join(dir, "nope.mjs") }), isEngineError("internal", /esbuild/));
  });
});
