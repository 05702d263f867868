// What the completion benchmarks (completion.mjs, soak.mjs) share: the TypeScript modules under measurement bundled
// as the tests are, a generated model of realistic shapes, adapters trained by the real pipeline, and percentiles.
import { execFileSync } from "node:child_process";
import { cpSync, existsSync, readdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import * as esbuild from "esbuild";

export const repoRoot = process.cwd();
export const enginePath = join(repoRoot, "dist", "engine.mjs");
export const trainerRoot = join(repoRoot, "trainer");
export const python = process.env.REPOTUNE_PYTHON || "/usr/bin/python3";

export function requireBuiltEngine() {
  if (!existsSync(enginePath)) {
    console.error(`${enginePath} is missing: run \`node esbuild.mjs\` from the repository root first.`);
    process.exit(1);
  }
}

/** Bundles `exports` (lines of `export { ... } from "./src/..."`) and loads them (esbuild.mjs builds no bench entries). */
export async function loadModules(name, exports) {
  const libPath = join(repoRoot, "out", "bench", `${name}-lib.cjs`);
  await esbuild.build({
    stdin: { contents: exports.join("\n"), resolveDir: repoRoot, loader: "ts", sourcefile: `bench-${name}-lib.ts` },
    bundle: true,
    platform: "node",
    target: "node20",
    format: "cjs",
    external: ["vscode", "node-llama-cpp"],
    // As esbuild.mjs: Linguist's data files load as text, secretlint's profiler is the no-op.
    loader: { ".yml": "text", ".rb": "text" },
    alias: { "@secretlint/profiler": "./src/core/dataset/secretlintProfiler.ts" },
    outfile: libPath,
    logLevel: "warning",
  });
  return createRequire(import.meta.url)(libPath);
}

/**
 * A qwen2 model, Q8_0, written by the trainer's generator (random weights, the tiny byte-level vocabulary): either
 * `width` wide with the tiny model's 2 layers and 267 tokens, or a real model's shapes (`shape`, one of the trainer's
 * `tiny-model --shape` names: every layer, head and FFN size, the vocabulary padded to its real size).
 */
export function generateModel(dir, width, shape = null) {
  const out = join(dir, `qwen2-${shape ?? width}-q8_0.gguf`);
  const env = { ...process.env, PYTHONPATH: trainerRoot };
  const size = shape ? ["--shape", shape] : ["--width", String(width)];
  execFileSync(python, ["-m", "repotune_trainer", "tiny-model", "--arch", "qwen2", ...size, "--dtype", "q8_0", "--out", out], {
    env,
    stdio: ["ignore", "ignore", "inherit"],
  });
  return out;
}

/** This repository's TypeScript core: the code the benchmarks complete and the adapters train on. */
export function coreFiles() {
  const core = join(repoRoot, "src", "core");
  return readdirSync(core)
    .filter((f) => f.endsWith(".ts"))
    .sort()
    .map((f) => ({ path: f, text: readFileSync(join(core, f), "utf8") }));
}

/**
 * An adapter trained by the real pipeline (`tune`) on `files` for a few steps: it has the real shape (rank 16 on
 * every matrix) and a manifest, and what it learns does not matter to latency or memory.
 */
export async function trainAdapter(tune, { modelPath, files, dir, steps, seqLen, batch = 4, seed = 0, evaluation }) {
  const t0 = Date.now();
  const corpus = join(dir, "corpus");
  for (const f of files) cpSync(join(repoRoot, "src", "core", f.path), join(corpus, f.path));
  const result = await tune({
    folder: corpus,
    modelPath,
    python,
    trainerRoot,
    enginePath,
    runsRoot: join(dir, "runs"),
    settings: { steps, seqLen, batch, gradAccum: 1, rank: 16, seed },
    evaluation,
    onEvent: () => undefined,
  });
  if (result.status !== "done" || result.adapterPath === null) throw new Error(`Training the adapter failed: ${result.error ?? result.status}`);
  console.log(
    `adapter ${result.adapterPath}: ${steps} steps in ${((Date.now() - t0) / 1000).toFixed(0)} s, validation loss ` +
      `${result.valLossBase?.toFixed(3)} -> ${result.valLoss?.toFixed(3)}`,
  );
  return result.adapterPath;
}

/**
 * An adapter of the trained ones' shape (rank 16 on every matrix the trainer adapts, F32, alpha 32), random values,
 * written by the trainer's own writer: the same file for llama.cpp at no training cost (a real model's shapes train
 * and evaluate at tens of tokens a second on a CPU). No manifest: the engine path needs none.
 */
export function randomAdapter(modelPath, out, rank = 16) {
  const script = `
import sys, torch
from repotune_trainer.gguf import GGUFReader
from repotune_trainer.model import LORA_TARGETS
from repotune_trainer.adapter import write_adapter
model, out, rank = sys.argv[1], sys.argv[2], int(sys.argv[3])
r = GGUFReader(model)
g = torch.Generator().manual_seed(0)
state = {}
for name, t in r.tensors.items():
    parts = name.split(".")
    if len(parts) == 4 and parts[0] == "blk" and parts[2] in LORA_TARGETS and parts[3] == "weight":
        n_out, n_in = t.shape
        state[name + ".lora_a"] = torch.randn(rank, n_in, generator=g) / n_in ** 0.5
        state[name + ".lora_b"] = torch.randn(n_out, rank, generator=g) * 0.01
write_adapter(out, r.architecture, 2.0 * rank, state, "random")
print(len(state) // 2)
`;
  const env = { ...process.env, PYTHONPATH: trainerRoot };
  const matrices = execFileSync(python, ["-c", script, modelPath, out, String(rank)], { env, encoding: "utf8" }).trim();
  console.log(`adapter ${out}: random, rank ${rank} on ${matrices} matrices`);
  return out;
}

export function percentile(values, p) {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}
