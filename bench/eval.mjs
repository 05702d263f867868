// Held-out evaluation throughput, and what it adds to a fine-tune: one real run of the pipeline (tune(): dataset,
// trainer, then the evaluation of base against base + adapter), timed phase by phase from its own events. Prints
// figures; asserts nothing. Run from the repository root after `node esbuild.mjs`: node bench/eval.mjs [options]
import { execFileSync } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { loadModules } from "./completionSetup.mjs";

const HELP = `node bench/eval.mjs [--model PATH] [--width 256] [--steps 100] [--seq-len 256] [--max-tasks 200]
  [--max-tokens 48] [--keep]

  --model PATH     a base GGUF to measure instead of the generated one (qwen2, --width wide, Q8_0)
  --width N        width of the generated model (2 layers)
  --steps N        training steps of the run
  --seq-len N      training sequence length, and the window of code around each evaluation cursor
  --max-tasks N    evaluation tasks (each is answered twice: base model, then adapter)
  --max-tokens N   tokens generated per completion (the extension's default is 48)
  --keep           keep the temporary folder (model, corpus, run)

The corpus is a copy of this repository's src/ folder, committed to a new git repository.`;

const { values: args } = parseArgs({
  options: {
    model: { type: "string" },
    width: { type: "string", default: "256" },
    steps: { type: "string", default: "100" },
    "seq-len": { type: "string", default: "256" },
    "max-tasks": { type: "string", default: "200" },
    "max-tokens": { type: "string", default: "48" },
    keep: { type: "boolean", default: false },
    help: { type: "boolean", short: "h" },
  },
});
if (args.help) {
  console.log(HELP);
  process.exit(0);
}

const repoRoot = process.cwd();
const enginePath = join(repoRoot, "dist", "engine.mjs");
const trainerRoot = join(repoRoot, "trainer");
const python = process.env.REPOTUNE_PYTHON || "/usr/bin/python3";
if (!existsSync(enginePath)) {
  console.error(`${enginePath} is missing: run \`node esbuild.mjs\` from the repository root first.`);
  process.exit(1);
}

// The pipeline under measurement, bundled as the tests are (esbuild.mjs builds no bench entries).
const { tune, evaluationTable } = await loadModules("eval", [
  `export { tune } from "./src/core/tune";`,
  `export { evaluationTable } from "./src/core/eval/report";`,
]);

const work = mkdtempSync(join(tmpdir(), "repotune-bench-eval-"));
try {
  await main();
} finally {
  if (args.keep) console.log(`\nkept ${work}`);
  else rmSync(work, { recursive: true, force: true });
}

async function main() {
  const modelPath = args.model ? resolve(args.model) : generateModel();
  const corpus = join(work, "repotune-src");
  cpSync(join(repoRoot, "src"), corpus, { recursive: true });
  const git = (...a) => execFileSync("git", ["-c", "user.name=bench", "-c", "user.email=bench@repotune.invalid", ...a], { cwd: corpus, stdio: "ignore" });
  git("init", "-q", "-b", "main");
  git("add", "-A");
  git("commit", "-q", "-m", "corpus");

  const phases = {};
  const started = Date.now();
  const result = await tune({
    folder: corpus, modelPath, python, trainerRoot, enginePath, runsRoot: join(work, "runs"),
    settings: { steps: Number(args.steps), seqLen: Number(args["seq-len"]), batch: 8, rank: 16 },
    evaluation: { maxTasks: Number(args["max-tasks"]), maxTokens: Number(args["max-tokens"]) },
    onEvent: (e) => {
      if (e.type === "phase") phases[e.phase] = e.time;
    },
  });
  if (result.status !== "done") throw new Error(`The run ended ${result.status}: ${result.error ?? result.decision?.reason}`);
  const e = result.evaluation;
  if (e === null) throw new Error(`No evaluation: ${result.decision?.reason}`);

  const s = (ms) => ms / 1000;
  const preparing = s(phases.training - phases.preparing);
  const training = s(phases.evaluating - phases.training);
  const evaluating = s(phases.done - phases.evaluating);
  const completions = 2 * e.taskCount;
  console.log(`model ${modelPath}; corpus ${result.summary.filesUsed} files of src/, ${result.summary.heldOutFiles ?? "?"} held out`);
  console.log(`run: ${s(Date.now() - started).toFixed(1)} s in all; preparing ${preparing.toFixed(1)} s, training ${training.toFixed(1)} s ` +
    `(${args.steps} steps, seq ${args["seq-len"]}), evaluating ${evaluating.toFixed(1)} s`);
  console.log(`evaluation: ${e.taskCount} tasks (${Object.entries(e.kinds).map(([k, n]) => `${k} ${n}`).join(", ")}), ${completions} completions ` +
    `in ${e.seconds.toFixed(1)} s: ${(e.taskCount / e.seconds).toFixed(1)} tasks/s, ${(completions / e.seconds).toFixed(1)} completions/s`);
  console.log(`evaluation phase (engine start and model load included) / training phase: ${(evaluating / training).toFixed(3)}`);
  console.log(`evaluation phase / whole run: ${(evaluating / s(Date.now() - started)).toFixed(3)}\n`);
  console.log(evaluationTable(e));
}

function generateModel() {
  const out = join(work, `qwen2-${args.width}-q8_0.gguf`);
  const env = { ...process.env, PYTHONPATH: trainerRoot };
  execFileSync(python, ["-m", "repotune_trainer", "tiny-model", "--arch", "qwen2", "--width", args.width, "--dtype", "q8_0", "--out", out], { env, stdio: ["ignore", "ignore", "inherit"] });
  return out;
}
