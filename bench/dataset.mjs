// Dataset build throughput on a generated repository: files/s and MB/s of file selection and of the whole dataset
// build (tokenization excluded, then included), side by side with a plain read of the same files, each phase's CPU
// time (its main thread's apart) and peak memory, and the build's time by step. Prints figures; asserts nothing.
// Run from the repository root after `node esbuild.mjs`: node bench/dataset.mjs [options]
import { execFileSync, fork } from "node:child_process";
import { generateKeyPairSync, randomBytes } from "node:crypto";
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, writeSync } from "node:fs";
import { promises as fsp } from "node:fs";
import { createRequire } from "node:module";
import { availableParallelism, loadavg, tmpdir } from "node:os";
import { dirname, extname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { mulberry32 } from "./random.mjs";

const HELP = `node bench/dataset.mjs [--files 50000] [--kb 10] [--seed 1] [--seq-len 256] [--phases LIST] [--repo DIR]
  [--src DIR] [--keep]

  --files N      files in the generated repository (about 2% of them copies, vendored, minified, generated,
                 binary or holding a planted secret)
  --kb N         mean size of a generated file, in KB (sizes vary about tenfold around it)
  --seed N       seed of the generated content (the planted secrets are random every run)
  --seq-len N    the dataset's sequence length (RepoTune's default is 256)
  --phases LIST  comma-separated, any of: plain (git ls-files + reading each file), select (file selection
                 alone, as the build does it), standin (the whole build, a stand-in tokenizer in place of the engine), engine (the whole
                 build, the engine's tokenizer with the tiny model), floor (after standin: the per-file checks
                 alone on one thread, then the stand-in build's output bytes written; the least any build must do).
                 Default: all five.
  --repo DIR     measure this repository instead of generating one (a generated one is kept with --keep)
  --src DIR      measure the sources in DIR instead of ./src (to compare a change against a copy of the old code)
  --keep         keep the temporary folder (repository, datasets, tiny model)

Each phase runs in its own process, so that its peak RSS is its own; the plain read runs first and last (the
ratio uses their mean). The engine runs in a process of its own: its peak RSS is reported beside the build's.`;

const { values: args } = parseArgs({
  options: {
    files: { type: "string", default: "50000" },
    kb: { type: "string", default: "10" },
    seed: { type: "string", default: "1" },
    "seq-len": { type: "string", default: "256" },
    phases: { type: "string", default: "plain,select,standin,engine,floor" },
    repo: { type: "string" },
    src: { type: "string", default: "src" },
    keep: { type: "boolean", default: false },
    help: { type: "boolean", short: "h" },
    // Internal: one phase, run in a child process.
    phase: { type: "string" },
    work: { type: "string" },
  },
});

const repoRoot = process.cwd();
const libDir = join(repoRoot, "out", "bench");
const libPath = join(libDir, "dataset-lib.cjs");

// ---- The parent: generate, build the library, run each phase in a child, print the table ----

async function main() {
  if (args.help) {
    console.log(HELP);
    return;
  }
  const phases = args.phases.split(",").map((p) => p.trim());
  for (const p of phases) if (!["plain", "select", "standin", "engine", "floor"].includes(p)) fail(`Unknown phase "${p}"; see --help.`);
  const enginePath = join(repoRoot, "dist", "engine.mjs");
  // The stand-in build also loads the model once, for its prompt format and special tokens.
  if ((phases.includes("engine") || phases.includes("standin")) && !existsSync(enginePath)) fail(`${enginePath} is missing: run \`node esbuild.mjs\` from the repository root first.`);
  const work = mkdtempSync(join(tmpdir(), "repotune-bench-dataset-"));
  try {
    await bundleLibrary(resolve(args.src));
    const repo = args.repo ? resolve(args.repo) : join(work, "repo");
    let planted = null;
    if (!args.repo) {
      const t0 = performance.now();
      planted = generateRepository(repo, Number(args.files), Number(args.kb) * 1024, Number(args.seed));
      console.log(`Generated ${planted.files.toLocaleString("en")} files (${mb(planted.bytes)} MB) in ${seconds(t0).toFixed(1)} s: ${planted.summary}.`);
    }
    let modelPath = null;
    if (phases.includes("engine") || phases.includes("standin")) {
      const { ensureTinyModel } = createRequire(import.meta.url)(libPath);
      modelPath = await ensureTinyModel(process.env.REPOTUNE_PYTHON || "/usr/bin/python3", join(repoRoot, "trainer"), join(work, "cache"));
    }
    writeFileSync(join(work, "setup.json"), JSON.stringify({ repo, work, enginePath, modelPath, seqLen: Number(args["seq-len"]) }));

    const results = {};
    const order = phases.includes("plain") ? ["plain", ...phases.filter((p) => p !== "plain"), "plain"] : phases;
    for (const phase of order) {
      process.stdout.write(`Running ${phase}... `);
      const r = await child(phase, work);
      console.log(r.failed ? `failed: ${r.failed}` : `${r.seconds.toFixed(2)} s`);
      if (phase === "plain" && results.plain) results.plain2 = r;
      else results[phase] = r;
    }
    report(results, planted);
  } finally {
    if (args.keep) console.log(`Kept ${work}`);
    else rmSync(work, { recursive: true, force: true });
  }
}

/** The dataset code under measurement, bundled as esbuild.mjs bundles it (esbuild.mjs builds no bench entries). */
async function bundleLibrary(src) {
  const esbuild = await import("esbuild");
  mkdirSync(libDir, { recursive: true });
  const node = {
    bundle: true, platform: "node", target: "node20", format: "cjs", logLevel: "warning", external: ["vscode", "node-llama-cpp"],
    loader: { ".yml": "text", ".rb": "text" }, alias: { "@secretlint/profiler": join(src, "core/dataset/secretlintProfiler.ts") },
    // Packages come from this checkout's node_modules, also for sources outside it (--src).
    nodePaths: [join(repoRoot, "node_modules")],
  };
  await esbuild.build({
    ...node,
    stdin: {
      contents: [
        `export { buildDataset } from ${JSON.stringify(join(src, "core/dataset/build"))};`,
        // A namespace: sources from before selectRecords existed (--src) have only selectFiles.
        `export * as select from ${JSON.stringify(join(src, "core/dataset/select"))};`,
        `export { EngineClient } from ${JSON.stringify(join(src, "core/engineClient"))};`,
        // As tune does: engines with the vocabulary alone join the first one on a large folder (absent in older sources).
        existsSync(join(src, "core/tokenizerPool.ts")) ? `export * as pool from ${JSON.stringify(join(src, "core/tokenizerPool"))};` : "export const pool = {};",
        `export { promptFormatFor } from ${JSON.stringify(join(src, "core/promptFormat"))};`,
        `export { ensureTinyModel } from ${JSON.stringify(join(src, "core/tinyModel"))};`,
        // The floor phase: the per-file checks every build makes, called one by one.
        `export { contentReason, languageOf } from ${JSON.stringify(join(src, "core/dataset/classify"))};`,
        `export { triggeredRules } from ${JSON.stringify(join(src, "core/dataset/secretPrefilter"))};`,
        `export { fingerprint } from ${JSON.stringify(join(src, "core/dataset/dedupe"))};`,
      ].join("\n"),
      resolveDir: repoRoot,
      loader: "ts",
      sourcefile: "bench-dataset-lib.ts",
    },
    outfile: libPath,
  });
  // selectFiles finds its worker script beside the running bundle, as it finds dist/selectWorker.js in the extension.
  await esbuild.build({ ...node, entryPoints: [join(src, "core/dataset/selectWorker.ts")], outfile: join(libDir, "selectWorker.js") });
}

function child(phase, work) {
  return new Promise((resolvePhase) => {
    const p = fork(fileURLToPath(import.meta.url), ["--phase", phase, "--work", work], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
    let result = null;
    p.on("message", (m) => (result = m));
    // A phase that dies (out of memory, the engine stopping) is reported as such; the others still run.
    p.on("exit", (code, signal) => resolvePhase(result ?? { failed: `exited with ${signal ?? `code ${code}`} before reporting (its error is printed above)` }));
  });
}

// ---- One phase, in its own process ----

async function runPhase(phase, setup) {
  const lib = createRequire(import.meta.url)(libPath);
  const { repo } = setup;
  const cpu0 = process.cpuUsage();
  const main0 = mainThreadCpuSeconds();
  let result;
  if (phase === "plain") {
    const t0 = performance.now();
    const { files, bytes } = await plainRead(repo);
    result = { files, bytes, seconds: seconds(t0) };
  } else if (phase === "floor") {
    result = await floorPhase(lib, setup);
  } else if (phase === "select") {
    // What the build selects with: lengths and fingerprints (selectRecords), or the texts in older sources.
    const t0 = performance.now();
    const selection = await (lib.select.selectRecords ?? lib.select.selectFiles)(repo);
    result = { seconds: seconds(t0), usable: selection.usable.length, listed: selection.listed, skipped: selection.skipped, secretFindings: selection.secretFindings };
  } else {
    result = await buildPhase(lib, setup, phase === "engine");
  }
  result.maxRssBytes = process.resourceUsage().maxRSS * 1024;
  // CPU time, as well as seconds: on a machine shared with other jobs the seconds follow the load, the CPU time
  // much less. The process's counts all of its threads (workers, libuv's pool writing files); the main thread's is
  // what cannot run in parallel. The phase's setup (the engine's start and load) is in both.
  const cpu = process.cpuUsage(cpu0);
  result.cpuSeconds = (cpu.user + cpu.system) / 1e6;
  const main1 = mainThreadCpuSeconds();
  result.mainCpuSeconds = main0 !== null && main1 !== null ? main1 - main0 : null;
  process.send(result, () => process.disconnect());
}

/** CPU seconds of this process's main thread so far (Linux /proc), or null where it cannot be read. */
function mainThreadCpuSeconds() {
  try {
    const fields = readFileSync(`/proc/self/task/${process.pid}/stat`, "utf8").split(") ")[1].split(" ");
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return null;
  }
}

/** `git ls-files` and every file read (16 reads in flight, decoded as UTF-8): the least any build of the folder does. */
async function plainRead(repo) {
  const paths = execFileSync("git", ["ls-files", "-z"], { cwd: repo, maxBuffer: 1 << 30 }).toString("utf8").split("\0").filter(Boolean);
  const decoder = new TextDecoder("utf-8");
  let next = 0;
  let bytes = 0;
  const reader = async () => {
    while (next < paths.length) {
      const b = await fsp.readFile(join(repo, paths[next++]));
      bytes += b.length;
      decoder.decode(b);
    }
  };
  await Promise.all(Array.from({ length: 16 }, reader));
  return { files: paths.length, bytes };
}

/**
 * The least work any build that keeps this issue's promises must do, measured part by part on one thread: every file
 * read and decoded (as the plain read), classified (language, generated, minified, data-heavy), scanned for secrets
 * (only the prefilter: the full scan runs on the few files it flags) and fingerprinted for dedupe (SHA-256 and
 * MinHash), then the bytes the stand-in build wrote (examples.jsonl with every example's text, tokens, flags)
 * written once to one file, without fsync. Nothing else: no dedupe decisions, split, examples, tokens or packing.
 * Its CPU seconds over the machine's cores is the best any build could do here with every core busy all the time.
 */
async function floorPhase(lib, setup) {
  const paths = execFileSync("git", ["ls-files", "-z"], { cwd: setup.repo, maxBuffer: 1 << 30 }).toString("utf8").split("\0").filter(Boolean);
  const decoder = new TextDecoder("utf-8");
  const parts = { "read and decode": 0, classify: 0, "secret prefilter": 0, fingerprint: 0, "write outputs": 0 };
  const cpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1e6; };
  const t0 = performance.now();
  let bytes = 0;
  for (const rel of paths) {
    let c = cpu();
    let text;
    try {
      const b = readFileSync(join(setup.repo, rel));
      bytes += b.length;
      text = decoder.decode(b);
    } catch {
      continue;
    }
    let d = cpu();
    parts["read and decode"] += d - c;
    const language = lib.languageOf(rel, text);
    lib.contentReason(rel, text, language);
    c = cpu();
    parts.classify += c - d;
    lib.triggeredRules(text, extname(rel));
    d = cpu();
    parts["secret prefilter"] += d - c;
    lib.fingerprint(text);
    parts.fingerprint += cpu() - d;
  }
  // The stand-in build's output size, when it ran; written a megabyte at a time and then removed.
  const built = join(setup.work, "data-standin");
  const outBytes = existsSync(built) ? readdirSync(built).reduce((n, f) => n + statSync(join(built, f)).size, 0) : 0;
  if (outBytes > 0) {
    const c = cpu();
    const target = join(setup.work, "floor-write.bin");
    const chunk = Buffer.alloc(1 << 20, 97);
    const fd = openSync(target, "w");
    for (let left = outBytes; left > 0; left -= chunk.length) writeSync(fd, chunk, 0, Math.min(chunk.length, left));
    closeSync(fd);
    rmSync(target);
    parts["write outputs"] = cpu() - c;
  }
  const total = Object.values(parts).reduce((a, b) => a + b, 0);
  return { seconds: seconds(t0), files: paths.length, bytes, outBytes, parts, floorCpu: total };
}

/**
 * Stands in for the engine's tokenizer: one token per 4 characters of text (about what code tokenizers give), one per
 * special token. It takes the engine, and only the engine, out of the measurement.
 */
function standInTokenizer() {
  const specials = new Map();
  const idOf = (text) => {
    if (!specials.has(text)) specials.set(text, 1000 + specials.size);
    return specials.get(text);
  };
  return {
    async tokenize(items) {
      return items.map((segments) => {
        let n = 0;
        for (const s of segments) n += s.special ? 1 : Math.ceil(s.text.length / 4);
        // Arrays of numbers, as the engine's answers arrive (JSON over IPC).
        const out = new Array(n);
        let k = 0;
        for (const s of segments) {
          if (s.special) out[k++] = idOf(s.text);
          else for (let i = 0; i < s.text.length; i += 4) out[k++] = 10 + (k & 0x3ff);
        }
        return out;
      });
    },
  };
}

async function buildPhase(lib, setup, withEngine) {
  const engineLog = [];
  const engine = await lib.EngineClient.start({ enginePath: setup.enginePath, log: (line) => engineLog.push(line) });
  engine.onExit((code, signal) => {
    if (code !== 0 || signal) console.error(`The engine stopped (${signal ?? `code ${code}`}); its last lines:\n${engineLog.slice(-10).join("\n")}`);
  });
  const started = performance.now();
  const info = await engine.load(setup.modelPath);
  const loadSeconds = seconds(started);
  // Both builds need the model's facts (prompt format, special tokens); only the second its tokenizer.
  if (!withEngine) await engine.dispose();
  let engineRss = null;
  const lines = [];
  let built;
  let buildSeconds;
  const pool = withEngine && lib.pool.TokenizerPool ? new lib.pool.TokenizerPool(engine, { enginePath: setup.enginePath, modelPath: setup.modelPath, log: (line) => lines.push(line) }) : null;
  try {
    const t0 = performance.now();
    built = await lib.buildDataset({
      folder: setup.repo,
      outDir: join(setup.work, withEngine ? "data-engine" : "data-standin"),
      tokenizer: withEngine ? (pool ?? engine) : standInTokenizer(),
      format: lib.promptFormatFor(info),
      model: info,
      modelPath: setup.modelPath,
      seqLen: setup.seqLen,
      seed: 0,
      log: (line) => lines.push(line),
    });
    buildSeconds = seconds(t0);
  } finally {
    await pool?.dispose();
    if (withEngine) {
      engineRss = peakRssOf(engine.pid);
      await engine.dispose();
    }
  }
  const timing = lines.find((l) => l.startsWith("Time by step:"));
  const steps = timing
    ? Object.fromEntries([...timing.matchAll(/([a-z ]+?) ([0-9.]+) s/g)].map((m) => [m[1].trim(), Number(m[2])]))
    : null;
  const s = built.summary;
  return {
    seconds: buildSeconds,
    loadSeconds,
    steps,
    engineRssBytes: withEngine ? engineRss : null,
    filesUsed: s.filesUsed,
    skipped: s.filesSkipped,
    duplicates: s.duplicates,
    examples: s.examples,
    tokens: s.trainTokens + s.valTokens,
    charsPerToken: s.charsPerToken,
    tokenizing: lines.find((l) => /^Tokenizing on|tokenizing engine/.test(l)) ?? null,
  };
}

/** Peak resident memory of another process (Linux /proc), or null where it cannot be read. */
function peakRssOf(pid) {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

// ---- The table ----

function report(r, planted) {
  const failed = Object.entries(r).filter(([, res]) => res.failed);
  for (const [name] of failed) delete r[name];
  const plainRuns = [r.plain, r.plain2].filter(Boolean);
  const bytes = plainRuns[0]?.bytes ?? null;
  const files = plainRuns[0]?.files ?? r.select?.listed ?? null;
  const plainSeconds = plainRuns.length ? plainRuns.reduce((a, p) => a + p.seconds, 0) / plainRuns.length : null;
  console.log("");
  console.log(`Repository: ${files?.toLocaleString("en") ?? "?"} files, ${bytes ? mb(bytes) : "?"} MB. Machine: ${availableParallelism()} cores, load average ${loadavg().map((l) => l.toFixed(2)).join(" ")}.`);
  const rows = [["phase", "seconds", "files/s", "MB/s", "x plain read", "CPU s (main thread)", "peak RSS"]];
  const row = (name, res) => {
    if (!res) return;
    rows.push([
      name,
      res.seconds.toFixed(2),
      files ? Math.round(files / res.seconds).toLocaleString("en") : "?",
      bytes ? (bytes / 1e6 / res.seconds).toFixed(1) : "?",
      plainSeconds ? (plainSeconds / res.seconds).toFixed(2) : "-",
      res.cpuSeconds === undefined ? "-" : `${res.cpuSeconds.toFixed(1)} (${res.mainCpuSeconds?.toFixed(1) ?? "?"})`,
      `${mb(res.maxRssBytes)} MB` + (res.engineRssBytes ? ` (+ engine ${mb(res.engineRssBytes)} MB)` : ""),
    ]);
  };
  plainRuns.forEach((p, i) => row(`plain read${plainRuns.length > 1 ? (i ? " (last)" : " (first)") : ""}`, p));
  row("file selection alone", r.select);
  row("build, tokenization excluded *", r.standin);
  row("build, tokenization included", r.engine);
  const widths = rows[0].map((_, c) => Math.max(...rows.map((x) => x[c].length)));
  for (const x of rows) console.log(x.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join("  "));
  for (const [name, res] of failed) console.log(`${name}: failed, ${res.failed}`);
  console.log("* a stand-in tokenizer (one token per 4 characters, no engine) takes the engine out of the measurement;");
  console.log("  the engine (tiny model, byte-level vocabulary) is started and loaded before the clock starts in both builds.");

  const builds = [["tokenization excluded", r.standin], ["tokenization included", r.engine]].filter(([, b]) => b);
  if (builds.length) {
    const stepNames = [...new Set(builds.flatMap(([, b]) => Object.keys(b.steps ?? {})))];
    console.log("");
    console.log(`Time by step (s): ${stepNames.join(" | ")}`);
    for (const [name, b] of builds) {
      console.log(`  ${name}: ${stepNames.map((s) => b.steps?.[s]?.toFixed(2) ?? "-").join(" | ")}`);
      console.log(`    ${b.filesUsed.toLocaleString("en")} files used, skipped ${JSON.stringify(b.skipped)}, duplicates ${JSON.stringify(b.duplicates)}, ` +
        `${b.examples.toLocaleString("en")} examples, ${b.tokens.toLocaleString("en")} tokens (${b.charsPerToken.toFixed(2)} characters per token); engine load ${b.loadSeconds.toFixed(2)} s` +
        (b.tokenizing ? `; ${b.tokenizing}` : ""));
    }
  }
  if (r.select) console.log(`Selection: ${r.select.usable.toLocaleString("en")} usable, skipped ${JSON.stringify(r.select.skipped)}, secrets by rule ${JSON.stringify(r.select.secretFindings)}`);
  if (planted) {
    const found = r.select?.skipped.secret ?? r.standin?.skipped.secret ?? r.engine?.skipped.secret;
    if (found !== undefined) console.log(`Planted secrets: ${planted.secrets}, files left out for a secret: ${found}${found === planted.secrets ? "" : "  <-- MISMATCH"}`);
  }
  if (r.floor) {
    const f = r.floor;
    const cores = availableParallelism();
    const best = f.floorCpu / cores;
    console.log("");
    console.log(
      `Floor (one thread, the per-file checks alone, then the stand-in build's ${mb(f.outBytes)} MB of outputs written): ` +
        Object.entries(f.parts).map(([k, v]) => `${k} ${v.toFixed(2)}`).join(", ") + ` CPU-s; ${f.floorCpu.toFixed(2)} CPU-s in all.`,
    );
    if (plainSeconds)
      console.log(
        `  On ${cores} cores, all busy all the time, that alone takes ${best.toFixed(2)} s: ${(plainSeconds / best).toFixed(2)} x the plain read at best ` +
          `(the build's other work, examples, tokens, packing, dedupe and split, adds to it).`,
      );
  }
  if (r.standin && plainSeconds) {
    const ratio = plainSeconds / r.standin.seconds;
    console.log(`Target (build without tokenization at least half the speed of the plain read): ${ratio >= 0.5 ? "met" : "missed"} (${ratio.toFixed(2)}).`);
  }
}

// ---- The generated repository ----

/**
 * A repository of `count` files of about `meanBytes` each, committed: source files in several languages, mostly
 * unique (identifiers, structure and comments drawn from a seeded generator), with a few exact and near copies,
 * vendored, minified, generated and binary files, a lockfile, and three files holding secrets made at run time.
 */
function generateRepository(root, count, meanBytes, seed) {
  const rand = mulberry32(seed);
  const words = vocabulary(rand);
  const pick = (list) => list[Math.floor(rand() * list.length)];
  const g = { rand, pick, words, ident: (parts = 2) => identifier(rand, words, parts) };
  const few = (share) => Math.max(1, Math.round(count * share));
  const special = { exact: few(0.01), near: few(0.005), vendored: few(0.005), minified: few(0.002), generated: few(0.003), binary: few(0.003) };
  const secrets = plantedSecrets(rand, g);
  const plain = count - Object.values(special).reduce((a, b) => a + b, 0) - secrets.length - 1;
  if (plain < 10) fail("--files is too small for the mix of files; use at least 100.");

  const written = [];
  let bytes = 0;
  const write = (rel, content) => {
    const abs = join(root, rel);
    mkdirSync(dirname(abs), { recursive: true });
    writeFileSync(abs, content);
    bytes += Buffer.byteLength(content);
    written.push(rel);
  };
  const modules = Array.from({ length: Math.max(4, Math.round(plain / 200)) }, () => g.ident(1));
  const sources = [];
  for (let i = 0; i < plain; i++) {
    const lang = pickWeighted(rand, LANGUAGES);
    const size = Math.round(meanBytes * Math.exp((rand() - 0.5) * 2.4) * 0.77);
    const dir = `${lang.root}/${modules[i % modules.length]}/${modules[(i * 7 + 3) % modules.length]}`;
    const rel = `${dir}/${g.ident(2).replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)}_${i}${lang.ext}`;
    const text = lang.file(g, Math.max(300, size));
    write(rel, text);
    sources.push([rel, text]);
  }
  for (let i = 0; i < special.exact; i++) {
    const [rel, text] = sources[Math.floor(rand() * sources.length)];
    write(`copies/${i}/${rel.slice(rel.lastIndexOf("/") + 1)}`, text);
  }
  for (let i = 0; i < special.near; i++) {
    const [rel, text] = sources[Math.floor(rand() * sources.length)];
    const lines = text.split("\n");
    lines[Math.floor(lines.length / 2)] += ` // ${g.ident(3)}`;
    write(`legacy/${i}/${rel.slice(rel.lastIndexOf("/") + 1)}`, lines.join("\n"));
  }
  for (let i = 0; i < special.vendored; i++) write(`vendor/${g.ident(1)}/${g.ident(1)}_${i}.go`, LANGUAGES.find((l) => l.ext === ".go").file(g, meanBytes));
  for (let i = 0; i < special.minified; i++) write(`web/static/chunk-${i}.js`, minified(g, meanBytes * 3));
  for (let i = 0; i < special.generated; i++) {
    write(`api/gen/${g.ident(1)}_${i}.go`, `// Code generated by protoc-gen-go. DO NOT EDIT.\n\n` + LANGUAGES.find((l) => l.ext === ".go").file(g, meanBytes));
  }
  for (let i = 0; i < special.binary; i++) {
    write(`assets/img/${g.ident(1)}_${i}.png`, Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), Buffer.from(Array.from({ length: 4096 }, () => Math.floor(rand() * 256)))]));
  }
  write("package-lock.json", JSON.stringify({ lockfileVersion: 3, packages: Object.fromEntries(Array.from({ length: 200 }, () => [`node_modules/${g.ident(1)}`, { version: "1.0.0", integrity: `sha512-${randomBytes(48).toString("base64")}` }])) }, null, 2));
  for (const [rel, text] of secrets) write(rel, text);

  execFileSync("git", ["init", "-q", "-b", "main"], { cwd: root });
  execFileSync("git", ["add", "-A"], { cwd: root });
  execFileSync("git", ["-c", "user.name=RepoTune Bench", "-c", "user.email=bench@repotune.invalid", "commit", "-q", "-m", "generated"], { cwd: root });
  const summary = `${LANGUAGES.length} languages, ${special.exact} exact and ${special.near} near copies, ${special.vendored} vendored, ${special.minified} minified, ` +
    `${special.generated} generated, ${special.binary} binary, 1 lockfile, ${secrets.length} with a secret`;
  return { files: written.length, bytes, summary, secrets: secrets.length };
}

/** Secrets of real shapes, random every run, so that none sits in this repository as a literal. */
function plantedSecrets(rand, g) {
  const upper = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  const alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  const draw = (alphabet, n) => Array.from(randomBytes(n), (b) => alphabet[b % alphabet.length]).join("");
  const rsa = generateKeyPairSync("rsa", { modulusLength: 1024, privateKeyEncoding: { type: "pkcs1", format: "pem" }, publicKeyEncoding: { type: "spki", format: "pem" } }).privateKey;
  return [
    ["deploy/aws.ini", `[default]\naws_access_key_id = AKIA${draw(upper, 16)}\naws_secret_access_key = ${draw(alnum, 40)}\nregion = eu-west-1\n`],
    ["scripts/release.ts", `import { Octokit } from "@octokit/rest";\n\nconst client = new Octokit({ auth: "ghp_${draw(alnum, 36)}" });\nexport const ${g.ident(2)} = () => client.repos.listReleases({ owner: "acme", repo: "${g.ident(1)}" });\n`],
    ["certs/server.key", rsa],
  ];
}

const COMMON_WORDS = ("user order item cache config request response handler client server session token key value index count total " +
  "name path file buffer stream event queue task job worker pool record entry field table query result error status state " +
  "parse format render update create delete load save read write open close start stop build check validate resolve fetch " +
  "send receive encode decode merge split filter map reduce sort find match compute apply retry limit offset page size time date").split(" ");
const SYLLABLES = "ba be bi bo bu ca ce co da de di do fa fe fi ga ge go ha he hi ka ke ki ko la le li lo lu ma me mi mo na ne ni no pa pe pi po ra re ri ro sa se si so ta te ti to va ve vi vo za ze zo ar er or an en in on al el il ul ex ax ox".split(" ");

/** Common programming words and a few thousand made-up ones: identifiers repeat within a file, rarely across files. */
function vocabulary(rand) {
  const made = new Set();
  while (made.size < 4000) {
    let w = "";
    const n = 2 + Math.floor(rand() * 2);
    for (let i = 0; i < n; i++) w += SYLLABLES[Math.floor(rand() * SYLLABLES.length)];
    made.add(w);
  }
  return [...COMMON_WORDS, ...made];
}

function identifier(rand, words, parts) {
  let id = "";
  for (let i = 0; i < parts; i++) {
    const w = rand() < 0.5 ? COMMON_WORDS[Math.floor(rand() * COMMON_WORDS.length)] : words[Math.floor(rand() * words.length)];
    id += i === 0 ? w : w[0].toUpperCase() + w.slice(1);
  }
  return id;
}

const snake = (id) => id.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
const pascal = (id) => id[0].toUpperCase() + id.slice(1);

function sentence(g, n = 6 + Math.floor(g.rand() * 10)) {
  const s = Array.from({ length: n }, () => g.pick(g.words)).join(" ");
  return s[0].toUpperCase() + s.slice(1) + ".";
}

/** Units (functions, classes, sections) until the file reaches its size. */
function fill(size, header, unit) {
  let out = header;
  while (out.length < size) out += unit() + "\n";
  return out;
}

const LANGUAGES = [
  {
    ext: ".ts", root: "src", weight: 25,
    file: (g, size) => fill(size, `import { ${pascal(g.ident(2))} } from "./${g.ident(1)}";\nimport * as ${g.ident(1)} from "../${g.ident(1)}/${g.ident(1)}";\n\n`, () => {
      const name = g.ident(2), arg = g.ident(1), T = pascal(g.ident(2));
      const r = g.rand();
      if (r < 0.2) return `export interface ${T} {\n${Array.from({ length: 3 + Math.floor(g.rand() * 6) }, () => `  ${g.ident(2)}: ${g.pick(["string", "number", "boolean", "string[]", `${pascal(g.ident(1))} | null`])};`).join("\n")}\n}\n`;
      if (r < 0.3) return `export const ${snake(name).toUpperCase()} = {\n  key: "${g.ident(2)}",\n  label: "${sentence(g, 3)}",\n  apiKey: process.env.${snake(g.ident(2)).toUpperCase()} ?? "",\n  retries: ${Math.floor(g.rand() * 9)},\n};\n`;
      return `/** ${sentence(g)} */\nexport function ${name}(${arg}: ${T}[], limit = ${Math.floor(g.rand() * 100)}): number {\n  let ${g.ident(1)}Total = 0;\n  for (const ${g.ident(1)} of ${arg}) {\n    if (${arg}.length > limit) break;\n    ${g.ident(1)}Total += ${g.rand() < 0.5 ? `${g.ident(1)}.length` : Math.floor(g.rand() * 1000)};\n  }\n  // ${sentence(g)}\n  return ${g.ident(1)}Total * ${Math.floor(g.rand() * 10) + 1};\n}\n`;
    }),
  },
  {
    ext: ".js", root: "web", weight: 10,
    file: (g, size) => fill(size, `"use strict";\nconst ${g.ident(1)} = require("${g.ident(1)}");\n\n`, () => {
      const name = g.ident(2), arg = g.ident(1);
      return `// ${sentence(g)}\nfunction ${name}(${arg}, options = {}) {\n  const ${g.ident(1)} = ${arg}.filter((x) => x.${g.ident(1)} !== ${Math.floor(g.rand() * 50)});\n  if (options.${g.ident(1)}) {\n    return ${g.ident(1)}.map((x) => ({ ...x, ${g.ident(1)}: "${g.ident(2)}" }));\n  }\n  return ${arg}.slice(0, ${Math.floor(g.rand() * 20) + 1});\n}\nmodule.exports.${name} = ${name};\n`;
    }),
  },
  {
    ext: ".py", root: "service", weight: 20,
    file: (g, size) => fill(size, `"""${sentence(g)}"""\nimport ${g.ident(1)}\nfrom ${g.ident(1)} import ${snake(g.ident(2))}\n\n`, () => {
      const name = snake(g.ident(2)), arg = snake(g.ident(1));
      if (g.rand() < 0.25) {
        return `class ${pascal(g.ident(2))}:\n    """${sentence(g)}"""\n\n    def __init__(self, ${arg}, ${snake(g.ident(1))}=None):\n        self.${arg} = ${arg}\n        self.${snake(g.ident(1))} = ${Math.floor(g.rand() * 100)}\n\n    def ${name}(self):\n        return [x for x in self.${arg} if x > ${Math.floor(g.rand() * 10)}]\n\n`;
      }
      return `def ${name}(${arg}, ${snake(g.ident(1))}=${Math.floor(g.rand() * 10)}):\n    """${sentence(g)}"""\n    ${snake(g.ident(1))} = {}\n    for ${snake(g.ident(1))} in ${arg}:\n        if not ${snake(g.ident(1))}:\n            continue\n        ${snake(g.ident(1))}.setdefault("${g.ident(1)}", []).append(${Math.floor(g.rand() * 100)})\n    return sorted(${arg})\n\n`;
    }),
  },
  {
    ext: ".go", root: "cmd", weight: 10,
    file: (g, size) => fill(size, `package ${g.ident(1).toLowerCase()}\n\nimport (\n\t"fmt"\n\t"strings"\n)\n\n`, () => {
      const name = pascal(g.ident(2)), T = pascal(g.ident(2));
      if (g.rand() < 0.3) return `// ${T} ${sentence(g)}\ntype ${T} struct {\n${Array.from({ length: 2 + Math.floor(g.rand() * 5) }, () => `\t${pascal(g.ident(2))} ${g.pick(["string", "int", "bool", "[]string", "map[string]int"])}`).join("\n")}\n}\n`;
      return `// ${name} ${sentence(g)}\nfunc ${name}(${g.ident(1)} []string, ${g.ident(1)} int) (string, error) {\n\tif len(${g.ident(1)}) == 0 {\n\t\treturn "", fmt.Errorf("${sentence(g, 4)}")\n\t}\n\treturn strings.Join(${g.ident(1)}, "${g.pick([",", ";", "/", "-"])}"), nil\n}\n`;
    }),
  },
  {
    ext: ".rs", root: "crates", weight: 8,
    file: (g, size) => fill(size, `use std::collections::HashMap;\n\n`, () => {
      const name = snake(g.ident(2)), T = pascal(g.ident(2));
      return `/// ${sentence(g)}\npub fn ${name}(${snake(g.ident(1))}: &[u32], ${snake(g.ident(1))}: usize) -> Option<u32> {\n    let mut ${snake(g.ident(1))}: HashMap<u32, usize> = HashMap::new();\n    for v in ${snake(g.ident(1))}.iter() {\n        *${snake(g.ident(1))}.entry(*v).or_insert(0) += ${Math.floor(g.rand() * 9) + 1};\n    }\n    ${snake(g.ident(1))}.into_iter().max_by_key(|(_, c)| *c).map(|(k, _)| k)\n}\n\npub struct ${T} {\n    pub ${snake(g.ident(1))}: String,\n}\n`;
    }),
  },
  {
    ext: ".java", root: "java", weight: 8,
    file: (g, size) => {
      const T = pascal(g.ident(2));
      return fill(size, `package com.${g.ident(1).toLowerCase()}.${g.ident(1).toLowerCase()};\n\nimport java.util.List;\n\npublic class ${T} {\n`, () => {
        const name = g.ident(2);
        return `    /** ${sentence(g)} */\n    public int ${name}(List<Integer> ${g.ident(1)}) {\n        int ${g.ident(1)} = ${Math.floor(g.rand() * 100)};\n        for (int i = 0; i < ${g.ident(1)}.size(); i++) {\n            ${g.ident(1)} += i * ${Math.floor(g.rand() * 10)};\n        }\n        return ${g.ident(1)};\n    }\n`;
      }) + "}\n";
    },
  },
  {
    ext: ".c", root: "native", weight: 7,
    file: (g, size) => fill(size, `#include <stdio.h>\n#include <stdlib.h>\n#include "${snake(g.ident(1))}.h"\n\n`, () => {
      const name = snake(g.ident(2));
      return `/* ${sentence(g)} */\nstatic int ${name}(const int *${snake(g.ident(1))}, size_t n)\n{\n    int acc = ${Math.floor(g.rand() * 100)};\n    for (size_t i = 0; i < n; i++) {\n        acc += ${snake(g.ident(1))}[i] * ${Math.floor(g.rand() * 10)};\n    }\n    return acc;\n}\n`;
    }),
  },
  {
    ext: ".md", root: "docs", weight: 5,
    file: (g, size) => fill(size, `# ${pascal(g.ident(2))}\n\n`, () => `## ${pascal(g.ident(1))} ${g.ident(1)}\n\n${sentence(g, 20)} ${sentence(g, 14)}\n${sentence(g, 18)}\n\n- \`${g.ident(2)}\`: ${sentence(g, 8)}\n- \`${g.ident(2)}\`: ${sentence(g, 8)}\n`),
  },
  {
    ext: ".yaml", root: "config", weight: 4,
    file: (g, size) => fill(size, `# ${sentence(g)}\n`, () => `${snake(g.ident(1))}:\n  ${snake(g.ident(1))}: ${g.ident(1)}\n  ${snake(g.ident(1))}: ${Math.floor(g.rand() * 1000)}\n  enabled: ${g.rand() < 0.5}\n  url: https://${g.ident(1)}.example.com/${g.ident(1)}\n`),
  },
  {
    ext: ".sh", root: "scripts", weight: 3,
    file: (g, size) => fill(size, `#!/usr/bin/env bash\nset -euo pipefail\n\n`, () => `# ${sentence(g)}\n${snake(g.ident(2))}() {\n  local ${snake(g.ident(1))}="$1"\n  if [[ -z "\${${snake(g.ident(1))}:-}" ]]; then\n    echo "${sentence(g, 4)}" >&2\n    return 1\n  fi\n  ${g.pick(["grep", "sed", "awk", "find"])} "$${snake(g.ident(1))}" | sort | uniq -c\n}\n`),
  },
];

function pickWeighted(rand, list) {
  const total = list.reduce((a, l) => a + l.weight, 0);
  let x = rand() * total;
  for (const l of list) if ((x -= l.weight) < 0) return l;
  return list[list.length - 1];
}

function minified(g, size) {
  let out = "";
  while (out.length < size) out += `function ${g.ident(1)}(a,b){return a.map(function(c){return c*b+${Math.floor(g.rand() * 99)}}).filter(function(d){return d>${Math.floor(g.rand() * 9)}})}var ${g.ident(1)}=${g.ident(1)}([1,2,3],4);`;
  return out + "\n";
}

function seconds(t0) {
  return (performance.now() - t0) / 1000;
}

function mb(bytes) {
  return (bytes / 1e6).toFixed(1);
}

function fail(message) {
  console.error(message);
  process.exit(1);
}

// Last, so that every constant above is defined before it runs.
if (args.phase) await runPhase(args.phase, JSON.parse(readFileSync(join(args.work, "setup.json"), "utf8")));
else await main();
