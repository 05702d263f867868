// Soak: minutes of inline completion requests at typing speed through the provider's own modules (the scheduler with
// its debounce, cache and cancellation, the generator with its prompt shapes and completeAtCursor, the engine host and
// its engine process), switching the adapter every minute. Prints per minute the engine's and this process's memory, latency and counts, and at the end
// the growth of each memory figure and the engine's live contexts and sequences (see bench/README.md).
// Run from the repository root after `node esbuild.mjs`: node bench/soak.mjs [--minutes 10]. Asserts nothing.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { coreFiles, enginePath, generateModel, loadModules, percentile, requireBuiltEngine, trainAdapter } from "./completionSetup.mjs";
import { mulberry32 } from "./random.mjs";

const HELP = `node bench/soak.mjs [--minutes 10] [--adapters 2] [--switch-seconds 60] [--width 512] [--model PATH]
  [--adapter PATH]... [--debounce 150] [--max-tokens 48] [--seed 1] [--churn 120] [--keep]

  --minutes N         how long to type (default 10)
  --adapters N        adapters trained here (2 steps each on different files); the soak serves them and the base
                      model alone in turn, switching every --switch-seconds
  --width N           width of the generated qwen2 model (Q8_0), as bench/completion.mjs makes it
  --model PATH        a base GGUF to soak instead (the trainer must support its architecture)
  --adapter PATH      an adapter for the model to serve instead of training them (repeat for each; with its run's
                      manifest.json beside it, prompts are cut as its training examples were)
  --debounce MS       the provider's debounce (the setting repotune.completions.debounceMs, default 150)
  --max-tokens N      tokens per completion (repotune.completions.maxTokens, default 48)
  --seed N            the typist's random choices (keystroke intervals, pauses, accepted suggestions)
  --churn N           after the typing, N adapter switches back to back, one completion each (default 120; 0: none)
  --keep              keep the temporary folder (model, adapters)`;

const { values: args } = parseArgs({
  options: {
    minutes: { type: "string", default: "10" },
    adapters: { type: "string", default: "2" },
    "switch-seconds": { type: "string", default: "60" },
    width: { type: "string", default: "512" },
    model: { type: "string" },
    adapter: { type: "string", multiple: true },
    debounce: { type: "string", default: "150" },
    "max-tokens": { type: "string", default: "48" },
    seed: { type: "string", default: "1" },
    churn: { type: "string", default: "120" },
    keep: { type: "boolean", default: false },
    help: { type: "boolean", short: "h" },
  },
});
if (args.help) {
  console.log(HELP);
  process.exit(0);
}
const minutes = Number(args.minutes);
const switchMs = Number(args["switch-seconds"]) * 1000;
const debounceMs = Number(args.debounce);
const maxTokens = Number(args["max-tokens"]);
requireBuiltEngine();

// The heap is measured after a full collection, so that growth means memory still referenced, not garbage.
setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc");

const { EngineHost, CompletionScheduler, CompletionGenerator, tune } = await loadModules("soak", [
  `export { EngineHost } from "./src/core/engineHost";`,
  `export { CompletionScheduler } from "./src/core/completionScheduler";`,
  `export { CompletionGenerator } from "./src/core/completionGenerator";`,
  `export { tune } from "./src/core/tune";`,
]);

const work = mkdtempSync(join(tmpdir(), "repotune-bench-soak-"));
let host = null;
const adapterNames = new Map();

async function main() {
  const modelPath = args.model ? resolve(args.model) : generateModel(work, args.width);
  const files = coreFiles();
  const adapters = (args.adapter ?? []).map((a) => resolve(a));
  for (let i = 0; adapters.length < Number(args.adapters) && !args.adapter; i++) {
    // Different files and seeds: different adapter files, as successive runs of a workspace would write.
    const picked = [0, 1, 2].map((k) => files[(i * 3 + k) % files.length]);
    adapters.push(await trainAdapter(tune, { modelPath, files: picked, dir: join(work, `adapter-${i}`), steps: 2, seqLen: 256, seed: i }));
  }
  // Each adapter in turn, then the base model alone: every switch makes the engine dispose a context and create one.
  const rotation = [...adapters, null];
  adapters.forEach((a, i) => adapterNames.set(a, i + 1));

  const engineLog = [];
  host = new EngineHost({ enginePath, log: (line) => engineLog.push(line) });
  const { info } = await host.ready(modelPath);
  console.log(`model ${modelPath}: ${info.arch}, backend ${info.gpu ?? "CPU"}; ${adapters.length} adapters and the base model in turn, switching every ${switchMs / 1000} s`);
  console.log(`typing for ${minutes} min: a keystroke every 80-150 ms (15% hesitations of 150-350 ms), pauses of 0.4-1.5 s, debounce ${debounceMs} ms, ${maxTokens} tokens per completion\n`);

  const provider = soakProvider(modelPath);
  const typist = new Typist(files, Number(args.seed));
  const started = performance.now();
  let adapterIndex = 0;
  let nextSwitch = switchMs;
  const minutesOut = [];
  let minute = newMinute(rotation[0]);
  let nextMinute = 60_000;
  let previous = null;
  const requests = new Set();

  header();
  while (performance.now() - started < minutes * 60_000) {
    const now = performance.now() - started;
    if (now >= nextSwitch) {
      adapterIndex = (adapterIndex + 1) % rotation.length;
      // As the provider does when the active adapter changes: its answers are for the other adapter.
      provider.scheduler.clear();
      nextSwitch += switchMs;
    }
    if (now >= nextMinute) {
      await Promise.all(requests);
      minutesOut.push(await closeMinute(minute, minutesOut.length + 1, provider, modelPath));
      minute = newMinute(rotation[adapterIndex]);
      nextMinute += 60_000;
    }
    const { doc, pauseMs } = typist.keystroke(previous?.shown);
    previous?.token.cancel();
    const request = provider.request(doc, rotation[adapterIndex], minute);
    previous = request;
    requests.add(request.done);
    void request.done.finally(() => requests.delete(request.done));
    await sleep(pauseMs);
  }
  previous?.token.cancel();
  await Promise.all(requests);
  minutesOut.push(await closeMinute(minute, minutesOut.length + 1, provider, modelPath));
  await summary(minutesOut, provider, rotation, engineLog, modelPath);
  if (Number(args.churn) > 0) await churn(Number(args.churn), rotation, modelPath, files);
}

/**
 * Adapter switches back to back, each with one completion: a context created and one disposed per switch, far more
 * than the soak's one a minute. A leak per context shows as engine memory that grows with the count.
 */
async function churn(count, rotation, modelPath, files) {
  const engine = await host.ready(modelPath);
  const { client } = engine;
  const generator = new CompletionGenerator();
  const doc = files[0];
  const offset = Math.floor(doc.text.length / 2);
  const before = await client.stats();
  const samples = [];
  for (let i = 1; i <= count; i++) {
    await generator.generate(engine, {
      text: doc.text, offset, filePath: doc.path, repoName: "repotune", adapterPath: rotation[i % rotation.length], maxTokens,
    }, new AbortController().signal);
    if (i % Math.max(1, Math.floor(count / 6)) === 0 || i === count) samples.push(`${i}: ${(vmRss(client.pid) / 1048576).toFixed(1)} MB`);
  }
  const after = await client.stats();
  console.log(
    `\nchurn: ${count} adapter switches back to back, one completion each (${after.contextsCreated - before.contextsCreated} contexts created); ` +
      `engine RSS after ${samples.join(", ")}; live at the end: ${after.contexts} contexts, ${after.sequences} sequences`,
  );
}

/**
 * The provider (src/completion/provider.ts) without VS Code: its scheduler and its generator, keyed and called as it
 * does; the file is at the root of a workspace folder named "repotune".
 */
function soakProvider(modelPath) {
  const scheduler = new CompletionScheduler({ debounceMs: () => debounceMs });
  const generator = new CompletionGenerator();
  return {
    scheduler,
    request(doc, adapterPath, minute) {
      const token = new Token();
      const key = { scope: `${modelPath}\u0000${adapterPath ?? ""}\u0000${doc.path}`, prefix: doc.before, suffix: doc.after };
      const trace = { outcome: "" };
      const t0 = performance.now();
      minute.requests++;
      const generate = async (signal) => {
        try {
          const engine = await host.ready(modelPath);
          return await generator.generate(engine, {
            text: doc.before + doc.after, offset: doc.before.length, filePath: doc.path, repoName: "repotune", adapterPath, maxTokens,
          }, signal);
        } catch (err) {
          if (signal.aborted) minute.aborted++;
          else minute.errors.push(String(err?.message ?? err));
          return undefined;
        }
      };
      const entry = { token, shown: undefined, done: null };
      let settled = false;
      entry.done = scheduler.request(key, generate, token, false, trace).then((text) => {
        settled = true;
        if (token.cancelled) return;
        const ms = performance.now() - t0;
        minute.latency.push(ms);
        if (trace.outcome.startsWith("generated")) minute.generatedLatency.push(ms);
        entry.shown = text;
      }, (err) => {
        settled = true;
        minute.errors.push(String(err?.message ?? err));
      });
      token.onCancellationRequested(() => {
        if (!settled) minute.editorCancels++;
      });
      return entry;
    },
  };
}

/** vscode.CancellationToken as the editor uses it: cancelled when the next keystroke asks again. */
class Token {
  cancelled = false;
  listeners = new Set();
  get isCancellationRequested() {
    return this.cancelled;
  }
  onCancellationRequested(listener) {
    this.listeners.add(listener);
    return { dispose: () => this.listeners.delete(listener) };
  }
  cancel() {
    if (this.cancelled) return;
    this.cancelled = true;
    for (const l of [...this.listeners]) l();
    this.listeners.clear();
  }
}

/**
 * Retypes stretches of this repository's TypeScript: a stretch of a file is cut out and typed back a character at a
 * time (the indentation after a newline at once, as the editor's auto-indent puts it) every 80-150 ms, hesitating
 * 150-350 ms now and then, pausing 0.4-1.5 s at line ends and between some words; after a pause with a suggestion
 * shown, it sometimes types the suggestion's first characters instead.
 */
class Typist {
  constructor(files, seed) {
    this.files = files;
    this.random = mulberry32(seed);
    this.doc = null;
    this.pending = "";
    this.typedAlong = 0;
  }

  keystroke(shown) {
    if (this.doc === null || this.pending.length === 0) this.startStretch();
    const r = this.random;
    let typed;
    if (this.typedAlong > 0 && shown && shown.length > 0) {
      typed = shown[0];
      this.typedAlong--;
    } else {
      this.typedAlong = 0;
      typed = this.pending[0];
      if (typed === "\n") typed += this.pending.slice(1).match(/^[ \t]*/)[0];
      this.pending = this.pending.slice(typed.length);
    }
    this.doc.before += typed;
    const atPause = typed.startsWith("\n") || (typed === " " && r() < 0.15);
    if (atPause && r() < 0.3) this.typedAlong = 1 + Math.floor(r() * 6);
    // Now and then a hesitation longer than the debounce: a generation starts and the next keystroke supersedes it.
    const pauseMs = atPause ? 400 + r() * 1100 : r() < 0.15 ? 150 + r() * 200 : 80 + r() * 70;
    return { doc: { ...this.doc }, pauseMs };
  }

  startStretch() {
    const r = this.random;
    const file = this.files[Math.floor(r() * this.files.length)];
    const lines = file.text.split("\n");
    const line = Math.floor(r() * lines.length);
    const start = lines.slice(0, line).join("\n").length + (line > 0 ? 1 : 0);
    const length = 200 + Math.floor(r() * 400);
    this.pending = file.text.slice(start, start + length);
    this.rest = file.text.slice(start + length);
    this.doc = { path: file.path, before: file.text.slice(0, start), after: this.rest };
    if (this.pending.length === 0) this.startStretch();
  }
}

function newMinute(adapterPath) {
  return { adapterPath, requests: 0, editorCancels: 0, aborted: 0, latency: [], generatedLatency: [], errors: [], sched: null, engine: null };
}

// Totals at the end of the previous minute, so that each row shows the minute's own counts.
let totals = { generations: 0, fromCache: 0, engineCancels: 0 };

async function closeMinute(m, index, provider, modelPath) {
  const { client } = await host.ready(modelPath);
  const stats = await client.stats();
  gc();
  const memory = process.memoryUsage();
  const engineRss = vmRss(client.pid);
  const sched = { ...provider.scheduler.stats };
  const row = {
    index,
    adapter: m.adapterPath === null ? "base" : `adapter ${adapterNames.get(m.adapterPath)}`,
    requests: m.requests,
    answered: m.latency.length,
    generations: sched.generations - totals.generations,
    fromCache: sched.cacheHits + sched.joined - totals.fromCache,
    editorCancels: m.editorCancels,
    engineCancels: stats.completions.cancelled - totals.engineCancels,
    p50: percentile(m.latency, 50),
    p95: percentile(m.latency, 95),
    genP50: percentile(m.generatedLatency, 50),
    genP95: percentile(m.generatedLatency, 95),
    engineRss,
    heapUsed: memory.heapUsed,
    rss: memory.rss,
    contexts: stats.contexts,
    sequences: stats.sequences,
    errors: m.errors,
  };
  totals = { generations: sched.generations, fromCache: sched.cacheHits + sched.joined, engineCancels: stats.completions.cancelled };
  printRow(row);
  return row;
}

function header() {
  console.log(
    "min  serving     reqs  answered  gens  cache  cancels(editor/engine)  p50 ms  p95 ms  gen p50  gen p95  " +
      "engine RSS  bench heap  bench RSS  contexts/seqs",
  );
}

function printRow(r) {
  const mb = (b) => `${(b / 1048576).toFixed(1)} MB`.padStart(10);
  const ms = (x) => (Number.isNaN(x) ? "-" : x.toFixed(0)).padStart(7);
  console.log(
    `${String(r.index).padStart(3)}  ${r.adapter.padEnd(10)} ${String(r.requests).padStart(5)} ${String(r.answered).padStart(9)} ` +
      `${String(r.generations).padStart(5)} ${String(r.fromCache).padStart(6)}  ${`${r.editorCancels}/${r.engineCancels}`.padStart(22)} ` +
      `${ms(r.p50)} ${ms(r.p95)}  ${ms(r.genP50)}  ${ms(r.genP95)}  ${mb(r.engineRss)}  ${mb(r.heapUsed)} ${mb(r.rss)}  ` +
      `${r.contexts}/${r.sequences}`,
  );
  for (const e of new Set(r.errors)) console.log(`     error (${r.errors.filter((x) => x === e).length}x): ${e}`);
}

async function summary(rows, provider, rotation, engineLog, modelPath) {
  const adapterCount = rotation.length - 1;
  const first = rows[0];
  const last = rows.at(-1);
  const { client } = await host.ready(modelPath);
  const stats = await client.stats();
  const sched = provider.scheduler.stats;
  const growth = (key, from = first) => {
    const d = last[key] - from[key];
    return `${(from[key] / 1048576).toFixed(1)} -> ${(last[key] / 1048576).toFixed(1)} MB (${d >= 0 ? "+" : ""}${(d / 1048576).toFixed(1)} MB, ` +
      `${d >= 0 ? "+" : ""}${((100 * d) / from[key]).toFixed(1)}%)`;
  };
  // node-llama-cpp keeps each adapter applied once for the model's lifetime (by design: a retrained adapter gets a
  // new path), so the engine grows until every adapter has been served once; a leak goes on growing after that.
  const allServed = rows.find((r) => r.index * 60_000 >= (rotation.length - 1) * switchMs + 1);
  console.log(`\ngrowth, minute 1 against minute ${last.index} (memory at the end of each minute; this process's heap after a full GC):`);
  console.log(`  engine RSS   ${growth("engineRss")}`);
  if (allServed && allServed !== last) {
    console.log(`  engine RSS   ${growth("engineRss", allServed)} from minute ${allServed.index}, the first to end after every adapter and the base model were served`);
  }
  console.log(`  bench heap   ${growth("heapUsed")}`);
  console.log(`  bench RSS    ${growth("rss")}`);
  console.log(`  p95 latency  ${first.p95.toFixed(0)} -> ${last.p95.toFixed(0)} ms (generated answers: ${first.genP95.toFixed(0)} -> ${last.genP95.toFixed(0)} ms)`);
  const all = rows.reduce((a, r) => ({ requests: a.requests + r.requests, answered: a.answered + r.answered, editor: a.editor + r.editorCancels, engine: a.engine + r.engineCancels }), { requests: 0, answered: 0, editor: 0, engine: 0 });
  console.log(
    `\n${all.requests} requests, ${all.answered} answered, ${sched.generations} generations (most running at once: ${sched.maxRunning}), ` +
      `${sched.cacheHits} answered from the cache, ${sched.joined} joined a completion in flight, ${sched.abandoned} stopped when abandoned; ` +
      `${all.editor} cancelled by the next keystroke, ${all.engine} generations cancelled in the engine`,
  );
  console.log(
    `engine at the end: ${stats.contexts} live contexts, ${stats.sequences} live sequences (${stats.contextsCreated} created in all, one per adapter switch), ` +
      `${stats.adapters} of ${adapterCount} adapters applied, ${stats.inFlight} completions in flight; completions done ${stats.completions.done}, ` +
      `cancelled ${stats.completions.cancelled}, failed ${stats.completions.failed}`,
  );
  const restarts = engineLog.filter((l) => /restart|exited|killed/i.test(l));
  if (restarts.length) console.log(`engine log: ${restarts.slice(0, 5).join(" | ")}`);
}

function vmRss(pid) {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = Number(status.match(/^VmRSS:\s+(\d+)\s+kB/m)?.[1]);
  return kb * 1024;
}

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

try {
  await main();
} finally {
  await host?.dispose();
  if (args.keep) console.log(`\nkept ${work}`);
  else rmSync(work, { recursive: true, force: true });
}
