// Completion latency, measured side by side in one run (see bench/README.md):
//   1. the provider path (completion window + prompt format + EngineClient over IPC + cleanCompletion, no VS Code)
//      against raw node-llama-cpp in this process generating from the same prompt tokens;
//   2. the provider path with a LoRA adapter (trained here by the real pipeline) against without;
//   3. a re-request after typing one character against the same request made cold, through the provider's scheduler
//      (its cache and in-flight reuse) and serving path: typing the suggestion's next character, and typing another
//      one (the engine's KV cache reused up to the typed character).
// Run from the repository root after `node esbuild.mjs`: node bench/completion.mjs [options]. Prints figures and
// ratios; asserts nothing about time.
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { getLlama, LlamaCompletion, LlamaLogLevel } from "node-llama-cpp";
import { coreFiles, enginePath, generateModel, loadModules, percentile, randomAdapter, requireBuiltEngine, trainAdapter } from "./completionSetup.mjs";

const HELP = `node bench/completion.mjs [--model PATH] [--width 512 | --shape NAME] [--requests 60] [--typing 30]
  [--max-tokens 48] [--seq-len 256] [--steps 2] [--keep]

  --model PATH    a base GGUF to measure instead of the generated one (qwen2, --width wide, Q8_0); an adapter is
                  still trained on it here, so it must be an architecture the trainer supports
  --width N       the generated model's width (2 layers, 267-token vocabulary: per-operation costs weigh more than
                  in a real model)
  --shape NAME    generate a model with a real model's shapes instead, random weights: qwen2.5-coder-0.5b or
                  qwen2.5-coder-1.5b (RepoTune's default); its adapter trains on 64-token sequences, batch 1.
                  Random weights this deep predict the same token everywhere (attention averages the positions),
                  so every request then generates exactly --gen-tokens tokens without stop strings, on all sides,
                  and the scheduler's part (which needs suggestions) is left out
  --gen-tokens N  tokens each request generates with --shape (default 20, about a rest-of-line suggestion)
  --random-adapter  an adapter of the trained one's shape (rank 16 on every matrix, F32) with random values,
                  written by the trainer's writer, instead of training one (for --shape on a CPU: minutes saved)
  --requests N    cursor positions for the provider-against-raw and adapter-against-base comparisons
  --typing N      positions for the typing comparison
  --max-tokens N  tokens generated per completion (the extension's default is 48)
  --seq-len N     the window of code around the cursor, in tokens (the provider's default is 256)
  --steps N       training steps for the adapter (trained on 3 files of src/core)
  --keep          keep the temporary folder (model, adapter, runs)`;

const { values: args } = parseArgs({
  options: {
    model: { type: "string" },
    width: { type: "string", default: "512" },
    shape: { type: "string" },
    "gen-tokens": { type: "string", default: "20" },
    "random-adapter": { type: "boolean", default: false },
    requests: { type: "string", default: "60" },
    typing: { type: "string", default: "30" },
    "max-tokens": { type: "string", default: "48" },
    "seq-len": { type: "string", default: "256" },
    steps: { type: "string", default: "2" },
    keep: { type: "boolean", default: false },
    help: { type: "boolean", short: "h" },
  },
});
if (args.help) {
  console.log(HELP);
  process.exit(0);
}
const requests = Number(args.requests);
const typingRequests = Number(args.typing);
// With a real model's shapes every request does a fixed amount of work: genTokens tokens, no stop strings.
const fixedWork = Boolean(args.shape);
const maxTokens = fixedWork ? Number(args["gen-tokens"]) : Number(args["max-tokens"]);
const seqLen = Number(args["seq-len"]);
requireBuiltEngine();

const { EngineClient, promptFormatFor, completionWindow, DensityCache, cleanCompletion, completionMode, completeAtCursor, CompletionScheduler, tune, snippetAround } =
  await loadModules("completion", [
    `export { EngineClient } from "./src/core/engineClient";`,
    `export { promptFormatFor } from "./src/core/promptFormat";`,
    `export { completionWindow, DensityCache } from "./src/core/completionWindow";`,
    `export { cleanCompletion, completionMode } from "./src/core/completionText";`,
    `export { completeAtCursor } from "./src/core/eval/serving";`,
    `export { CompletionScheduler } from "./src/core/completionScheduler";`,
    `export { snippetAround } from "./src/core/recentEdits";`,
    `export { tune } from "./src/core/tune";`,
  ]);

const work = mkdtempSync(join(tmpdir(), "repotune-bench-completion-"));
const engines = [];
let rawLlama = null;
try {
  await main();
} finally {
  for (const engine of engines) await engine.dispose();
  await rawLlama?.dispose();
  if (args.keep) console.log(`\nkept ${work}`);
  else rmSync(work, { recursive: true, force: true });
}

async function main() {
  const started = Date.now();
  const t0 = Date.now();
  const modelPath = args.model ? resolve(args.model) : generateModel(work, args.width, args.shape ?? null);
  if (!args.model) console.log(`generated ${modelPath} (${(statSync(modelPath).size / 1e6).toFixed(0)} MB) in ${((Date.now() - t0) / 1000).toFixed(0)} s`);

  // Code to complete: this repository's own TypeScript core; the adapter trains on three of those files.
  const files = coreFiles();
  // A real model's shapes train and evaluate slowly on a CPU (1 step and its evaluation of 94 short sequences took
  // 4.5 minutes at 0.5B): with --random-adapter, an adapter of the same shape with random values.
  const adapterPath = args["random-adapter"]
    ? randomAdapter(modelPath, join(work, "random-adapter.gguf"))
    : await trainAdapter(tune, { modelPath, dir: work, steps: Number(args.steps), ...(args.shape
      ? { files: [...files].sort((a, b) => a.text.length - b.text.length).slice(0, 3), seqLen: 64, batch: 1, evaluation: { maxTasks: 2, maxTokens: 8 } }
      : { files: files.slice(0, 3), seqLen, batch: 4 }) });

  const log = (line) => {
    if (/error|warn|failed/i.test(line)) console.error(`  ${line}`);
  };
  const base = await EngineClient.start({ enginePath, log });
  engines.push(base);
  const tuned = await EngineClient.start({ enginePath, log });
  engines.push(tuned);
  const info = await base.load(modelPath);
  await tuned.load(modelPath);
  const format = promptFormatFor(info);
  const raw = await rawGenerator(modelPath);
  console.log(
    `model ${modelPath}: ${info.arch}, backend ${info.gpu ?? "CPU"} (${info.gpuLayers}/${info.totalLayers} layers on the GPU in the engine; ` +
      `${raw.gpu || "CPU"}, ${raw.gpuLayers} in process), ${raw.threads} threads`,
  );
  console.log(
    `${fixedWork ? `exactly ${maxTokens} tokens generated per request, no stop strings` : `maxTokens ${maxTokens}`}, window ${seqLen} tokens, ` +
      `${requests} positions, ${typingRequests} typing positions\n`,
  );
  const stops = fixedWork ? [] : format.stopStrings;

  // The provider's path, timed from the request to the text an inline completion would show.
  // As src/completion/provider.ts: characters per token measured once per file (DensityCache), not per request.
  const densities = new Map();
  const densityOf = (engine) => densities.get(engine) ?? densities.set(engine, new DensityCache()).get(engine);
  async function provider(engine, adapter, doc, offset, tokens = maxTokens, context = undefined) {
    const t0 = performance.now();
    const { prefix, suffix } = await completionWindow(engine, doc.text, offset, seqLen, doc.path, "repotune", densityOf(engine));
    const prompt = format.fim({ prefix, suffix, filePath: doc.path, repoName: "repotune", context });
    const result = await engine.complete({ prompt, adapterPath: adapter, maxTokens: tokens, stop: stops, supersede: true });
    const text = cleanCompletion(result.text, { prefix, suffix, singleLine: completionMode(prefix, suffix) === "line" });
    return { ms: performance.now() - t0, text, result, prompt };
  }

  const positions = pickPositions(files, requests + 3);
  // Warm-up (not counted): first requests pay for context creation and lazy initialisation on every path.
  for (const p of positions.slice(0, 3)) {
    const b = await provider(base, null, p.doc, p.offset);
    await provider(tuned, adapterPath, p.doc, p.offset);
    await raw.generate((await base.tokenize([b.prompt]))[0], stops);
  }

  const providerMs = [];
  const rawMs = [];
  const adapterMs = [];
  let same = 0;
  let generated = 0;
  let promptTokens = 0;
  let evaluated = 0;
  for (const [i, p] of positions.slice(3).entries()) {
    // The raw side gets the prompt tokens the provider path builds (made here, untimed).
    const { prefix, suffix } = await completionWindow(base, p.doc.text, p.offset, seqLen, p.doc.path, "repotune", densityOf(base));
    const [tokens] = await base.tokenize([format.fim({ prefix, suffix, filePath: p.doc.path, repoName: "repotune" })]);
    // The order alternates, so that no side always runs right after another's burst of work.
    let a, b, r;
    if (i % 2 === 0) {
      r = await raw.generate(tokens, stops);
      b = await provider(base, null, p.doc, p.offset);
      a = await provider(tuned, adapterPath, p.doc, p.offset);
    } else {
      a = await provider(tuned, adapterPath, p.doc, p.offset);
      b = await provider(base, null, p.doc, p.offset);
      r = await raw.generate(tokens, stops);
    }
    providerMs.push(b.ms);
    rawMs.push(r.ms);
    adapterMs.push(a.ms);
    if (r.text === b.result.text) same++;
    generated += b.result.tokens;
    promptTokens += b.result.promptTokens;
    evaluated += b.result.evaluatedTokens;
  }
  const n = positions.length - 3;
  console.log(`provider path against raw node-llama-cpp (same prompt tokens, greedy; same text in ${same}/${n}):`);
  console.log(
    `  prompts ${(promptTokens / n).toFixed(0)} tokens on average (${(evaluated / n).toFixed(0)} evaluated, the rest shared with the previous ` +
      `position's prompt), ${(generated / n).toFixed(1)} tokens generated`,
  );
  row("provider path", providerMs);
  row("raw in-process", rawMs);
  ratio("overhead ratio provider/raw", providerMs, rawMs, "<= 1.15");
  console.log("\nwith the adapter against without (provider path, same positions, one engine each):");
  row("base model", providerMs);
  row("base + adapter", adapterMs);
  ratio("adapter/base", adapterMs, providerMs, "<= 1.2");
  // The adapter changes what is generated, and so how many tokens: the same work on both sides isolates its cost.
  // Same prompts, exactly maxTokens generated (no stop strings), the order alternating. (With --shape, above was.)
  const fixed = { base: [], tuned: [], equal: 0, tokens: 0 };
  for (const [i, p] of (fixedWork ? [] : positions.slice(3)).entries()) {
    const { prefix, suffix } = await completionWindow(base, p.doc.text, p.offset, seqLen, p.doc.path, "repotune", densityOf(base));
    const prompt = format.fim({ prefix, suffix, filePath: p.doc.path, repoName: "repotune" });
    const timed = async (engine, adapter) => {
      const t0 = performance.now();
      const result = await engine.complete({ prompt, adapterPath: adapter, maxTokens, stop: [], supersede: true });
      return { ms: performance.now() - t0, tokens: result.tokens };
    };
    const sides = i % 2 === 0 ? [[base, null], [tuned, adapterPath]] : [[tuned, adapterPath], [base, null]];
    const [x, y] = [await timed(...sides[0]), await timed(...sides[1])];
    const [b, a] = i % 2 === 0 ? [x, y] : [y, x];
    fixed.base.push(b.ms);
    fixed.tuned.push(a.ms);
    if (a.tokens === b.tokens) fixed.equal++;
    fixed.tokens += b.tokens;
  }
  if (!fixedWork) console.log(
    `  the same work on both sides (the same prompts, no stop strings: ${(fixed.tokens / n).toFixed(1)} tokens generated on average, ` +
      `as many on both sides in ${fixed.equal}/${n}):`,
  );
  if (!fixedWork) {
    row("base model, same work", fixed.base);
    row("base + adapter, same work", fixed.tuned);
    ratio("adapter/base, same work", fixed.tuned, fixed.base, "<= 1.2");
  }

  // Typing: the line after the cursor is being written, and one more character is typed. Measured for the whole
  // completion and for the prompt alone (1 token: the time to the first token, where reuse saves its time).
  const typing = { warm: [], cold: [], warm1: [], cold1: [], warmEval: [], coldEval: [], differ: 0, tokens: [] };
  const typed = pickPositions(files, typingRequests, 7);
  for (const [i, p] of typed.entries()) {
    const { before, after } = typingAt(p);
    const other = files[(files.indexOf(p.doc) + 1) % files.length];
    for (const tokens of [maxTokens, 1]) {
      // Cold: the request before was for another file, so only the repository header is shared.
      await provider(base, null, other, Math.floor(other.text.length / 2), tokens);
      const cold = await provider(base, null, after, p.offset + 1, tokens);
      // Warm: the request before was at the same place, one character earlier.
      await provider(base, null, before, p.offset, tokens);
      const warm = await provider(base, null, after, p.offset + 1, tokens);
      if (tokens === 1) {
        typing.warm1.push(warm.ms);
        typing.cold1.push(cold.ms);
        continue;
      }
      if (warm.result.text !== cold.result.text) typing.differ++;
      typing.tokens.push(cold.result.tokens);
      typing.warm.push(warm.ms);
      typing.cold.push(cold.ms);
      typing.warmEval.push(warm.result.evaluatedTokens / warm.result.promptTokens);
      typing.coldEval.push(cold.result.evaluatedTokens / cold.result.promptTokens);
    }
  }
  console.log("\nre-request after typing one character against the same request cold:");
  console.log(
    `  prompt tokens evaluated: ${pct(median(typing.warmEval))} of the prompt after typing (reused up to the typed character; ` +
      `the suffix after it is evaluated again), ${pct(median(typing.coldEval))} cold (medians); ` +
      `completions that differ between the two: ${typing.differ}/${typed.length}`,
  );
  row(`after typing, ${maxTokens} tokens`, typing.warm);
  row(`cold, ${maxTokens} tokens`, typing.cold);
  ratio(`typing/cold, whole completion`, typing.warm, typing.cold, "< 0.5");
  row("after typing, 1 token", typing.warm1);
  row("cold, 1 token", typing.cold1);
  ratio("typing/cold, prompt only (first token)", typing.warm1, typing.cold1, "< 0.5");
  const perToken = (median(typing.cold) - median(typing.cold1)) / Math.max(1, median(typing.tokens) - 1);
  console.log(
    `  where the time goes (medians): cold, ${median(typing.cold1).toFixed(1)} ms to the first token and ${perToken.toFixed(2)} ms for each of ` +
      `the ${median(typing.tokens)} tokens after it; after typing, ${median(typing.warm1).toFixed(1)} ms to the first token and the same ` +
      `generation: reuse saves prompt evaluation only, so the whole completion's ratio can reach 0.5 only where the prompt ` +
      `costs more than the tokens generated`,
  );

  await typingWithSnippets(base, files, provider);
  if (fixedWork) console.log("\nthe scheduler's part is left out with --shape: this model's suggestions are empty (see --help)");
  else await typingThroughScheduler(base, format, files, densityOf(base), provider);
  console.log(`\ntotal ${((Date.now() - started) / 1000).toFixed(0)} s`);
}

/**
 * Snippets of two recently edited files in the prompt (repotune.completions.recentFiles 2: the lines around the
 * middle of the next two files, as src/core/recentEdits.ts cuts them): what they cost a cold request, and whether
 * typing still reuses the prompt (the snippets come first and do not change while the user types in this file).
 */
async function typingWithSnippets(engine, files, provider) {
  const s = { coldWithout: [], coldWith: [], warmWith: [], warmEval: [], coldEval: [], promptWithout: [], promptWith: [] };
  const typed = pickPositions(files, typingRequests, 7);
  for (const [i, p] of typed.entries()) {
    const { before, after } = typingAt(p);
    const k = files.indexOf(p.doc);
    const [a, b] = [files[(k + 2) % files.length], files[(k + 3) % files.length]];
    const context = [a, b].map((f) => {
      const lines = f.text.split("\n");
      return { path: f.path, text: snippetAround(lines, Math.floor(lines.length / 2)) };
    });
    const elsewhere = files[(k + 1) % files.length];
    const cold = async (ctx) => {
      await provider(engine, null, elsewhere, Math.floor(elsewhere.text.length / 2));
      return provider(engine, null, after, p.offset + 1, maxTokens, ctx);
    };
    for (const side of i % 2 === 0 ? ["without", "with"] : ["with", "without"]) {
      const r = await cold(side === "with" ? context : undefined);
      s[side === "with" ? "coldWith" : "coldWithout"].push(r.ms);
      s[side === "with" ? "promptWith" : "promptWithout"].push(r.result.promptTokens);
      if (side === "with") s.coldEval.push(r.result.evaluatedTokens / r.result.promptTokens);
    }
    await provider(engine, null, before, p.offset, maxTokens, context);
    const warm = await provider(engine, null, after, p.offset + 1, maxTokens, context);
    s.warmWith.push(warm.ms);
    s.warmEval.push(warm.result.evaluatedTokens / warm.result.promptTokens);
  }
  console.log(
    `\nwith snippets of two recently edited files in the prompt (prompts ${median(s.promptWith)} tokens against ${median(s.promptWithout)} ` +
      `without, medians; ${typed.length} positions):`,
  );
  row("cold, without snippets", s.coldWithout);
  row("cold, with snippets", s.coldWith);
  ratio("cold with/without snippets", s.coldWith, s.coldWithout, "none: their cost");
  console.log(`  prompt tokens evaluated with snippets: ${pct(median(s.warmEval))} after typing, ${pct(median(s.coldEval))} cold (medians)`);
  row("after typing, with snippets", s.warmWith);
  ratio("typing/cold, with snippets", s.warmWith, s.coldWith, "< 0.5");
}

/**
 * Typing as the inline completion provider serves it: its scheduler (debounce 0 here, the same for both sides; the
 * cache of answers and of completions in flight) over the serving path (completeAtCursor). At each position the user
 * has seen the suggestion for the place before and types one character: the suggestion's next one (it reads on), or
 * the file's own next character where that differs (the suggestion was wrong). Against the same request cold: a
 * scheduler without answers, and the engine's KV cache last used for another file.
 */
async function typingThroughScheduler(engine, format, files, density, provider) {
  const along = { warm: [], cold: [], fromCache: 0, sameAsCold: 0 };
  const other = { warm: [], cold: [], fromCache: 0 };
  const positions = pickPositions(files, typingRequests, 11);
  let noSuggestion = 0;
  const serve = async (scheduler, doc, offset) => {
    const generate = async (signal) =>
      (await completeAtCursor(engine, format, {
        text: doc.text, offset, filePath: doc.path, repoName: "repotune", windowTokens: seqLen, charsPerToken: null, maxTokens, adapterPath: null,
      }, { signal, density, supersede: true })).text;
    const trace = { outcome: "" };
    const key = { scope: "bench", prefix: doc.text.slice(0, offset), suffix: doc.text.slice(offset) };
    const t0 = performance.now();
    const text = await scheduler.request(key, generate, undefined, false, trace);
    return { ms: performance.now() - t0, text: text ?? "", cached: trace.outcome === "from the cache" };
  };
  const newScheduler = () => new CompletionScheduler({ debounceMs: () => 0 });
  for (const [i, p] of positions.entries()) {
    const { before } = typingAt(p);
    const typedDoc = (c) => ({ path: p.doc.path, text: before.text.slice(0, p.offset) + c + before.text.slice(p.offset) });
    const elsewhere = files[(files.indexOf(p.doc) + 1) % files.length];
    const cold = async (doc) => {
      await provider(engine, null, elsewhere, Math.floor(elsewhere.text.length / 2));
      return serve(newScheduler(), doc, p.offset + 1);
    };
    const shown = (await serve(newScheduler(), before, p.offset)).text;
    const fileChar = p.doc.text[p.offset];
    const cases = [];
    if (shown.length >= 2) cases.push({ doc: typedDoc(shown[0]), into: along });
    else noSuggestion++;
    if (fileChar !== shown[0]) cases.push({ doc: typedDoc(fileChar), into: other });
    // Alternating which side goes first; warm: the suggestion at `before` was the last thing the engine generated.
    for (const side of i % 2 === 0 ? ["cold", "warm"] : ["warm", "cold"]) {
      for (const c of cases) {
        if (side === "cold") {
          const r = await cold(c.doc);
          c.into.cold.push(r.ms);
          c.coldText = r.text;
          continue;
        }
        const scheduler = newScheduler();
        await serve(scheduler, before, p.offset);
        const r = await serve(scheduler, c.doc, p.offset + 1);
        c.into.warm.push(r.ms);
        if (r.cached) c.into.fromCache++;
        c.warmText = r.text;
      }
    }
    for (const c of cases) if (c.into === along && c.warmText === c.coldText) along.sameAsCold++;
  }
  console.log(
    `\nthe same through the provider's scheduler (debounce 0 on both sides) and completeAtCursor, ${positions.length} positions ` +
      `(${noSuggestion} without a suggestion of 2 or more characters):`,
  );
  console.log(
    `  typing the suggestion's next character (${along.warm.length} positions; answered from the scheduler's cache ${along.fromCache}/${along.warm.length}, ` +
      `the rest of the suggestion equals the cold completion in ${along.sameAsCold}/${along.warm.length}):`,
  );
  if (along.warm.length > 0) {
    row("after typing", along.warm);
    row("cold", along.cold);
    ratio("typing/cold, whole completion", along.warm, along.cold, "< 0.5");
  }
  console.log(`  typing another character (${other.warm.length} positions; answered from the cache ${other.fromCache}/${other.warm.length}):`);
  if (other.warm.length > 0) {
    row("after typing", other.warm);
    row("cold", other.cold);
    ratio("typing/cold, whole completion", other.warm, other.cold, "< 0.5");
  }
}

// node-llama-cpp in this process, set up as the engine sets up its context (src/engine/engine.ts).
async function rawGenerator(modelPath) {
  rawLlama = await getLlama({ gpu: "auto", build: "never", logLevel: LlamaLogLevel.warn });
  const model = await rawLlama.loadModel({ modelPath, gpuLayers: "auto" });
  const threads = rawLlama.gpu === false ? Math.max(1, rawLlama.cpuMathCores - 1) : undefined;
  const context = await model.createContext({ contextSize: { max: 4096 }, sequences: 1, ...(threads ? { threads } : {}) });
  const completion = new LlamaCompletion({ contextSequence: context.getSequence() });
  const stopsFor = (stop) =>
    stop.map((s) => {
      const t = model.tokenize(s, true);
      return t.length === 1 && model.isSpecialToken(t[0]) ? [t[0]] : [s];
    });
  return {
    gpu: rawLlama.gpu,
    gpuLayers: model.gpuLayers,
    threads: context.currentThreads,
    async generate(tokens, stop) {
      const t0 = performance.now();
      const text = await completion.generateCompletion(tokens, {
        maxTokens,
        temperature: 0,
        repeatPenalty: false,
        customStopTriggers: stopsFor(stop),
        disableContextShift: true,
        contextShiftSize: maxTokens,
      });
      return { ms: performance.now() - t0, text };
    },
  };
}

/**
 * A line being written at position `p`: the document with the rest of the line gone (`before`, the cursor at
 * p.offset) and with one more character of it typed (`after`, the cursor at p.offset + 1).
 */
function typingAt(p) {
  const lineEnd = p.doc.text.indexOf("\n", p.offset);
  const end = lineEnd < 0 ? p.doc.text.length : lineEnd;
  return {
    before: { path: p.doc.path, text: p.doc.text.slice(0, p.offset) + p.doc.text.slice(end) },
    after: { path: p.doc.path, text: p.doc.text.slice(0, p.offset + 1) + p.doc.text.slice(end) },
  };
}

/** `count` cursor positions spread over the files: inside a line of code, after its first few characters. */
function pickPositions(files, count, salt = 0) {
  const out = [];
  const lines = files.flatMap((doc) => {
    const found = [];
    let at = 0;
    for (const line of doc.text.split("\n")) {
      const indent = line.length - line.trimStart().length;
      if (line.trim().length >= 24) found.push({ doc, offset: at + indent + Math.floor((line.length - indent) / 3) });
      at += line.length + 1;
    }
    return found;
  });
  for (let i = 0; i < count; i++) out.push(lines[Math.floor(((i + 0.5 + salt / 13) * lines.length) / count) % lines.length]);
  return out;
}

function median(values) {
  return percentile(values, 50);
}

function row(label, ms) {
  console.log(`  ${label.padEnd(26)} p50 ${percentile(ms, 50).toFixed(1).padStart(7)} ms   p95 ${percentile(ms, 95).toFixed(1).padStart(7)} ms`);
}

function ratio(label, a, b, target) {
  const r50 = percentile(a, 50) / percentile(b, 50);
  const r95 = percentile(a, 95) / percentile(b, 95);
  console.log(`  ${label}: ${r50.toFixed(2)} at p50, ${r95.toFixed(2)} at p95 (target ${target})`);
}

function pct(x) {
  return `${(100 * x).toFixed(0)}%`;
}
