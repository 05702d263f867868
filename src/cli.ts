// `repotune` on the command line: the same pipeline as the extension, headless (README demo, benchmarks, scripts).
import { parseArgs } from "node:util";
import { promises as fs, readFileSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { EngineClient } from "./core/engineClient";
import { gitText } from "./core/git";
import { repoName } from "./core/repoName";
import { promptFormatFor } from "./core/promptFormat";
import { messageOf } from "./core/errors";
import { findPython, locateTrainerRoot } from "./core/python";
import { ensureTinyModel } from "./core/tinyModel";
import { tune, resolveSettings, checkGguf, DEFAULT_TRAIN_SETTINGS, type TrainSettings, type TuneResult } from "./core/tune";
import { buildDataset } from "./core/dataset/build";
import { updateAdapter } from "./core/update";
import { selectFiles } from "./core/dataset/select";
import { describeSkipped } from "./core/format";
import { readDatasetFiles } from "./core/dataset/write";
import { adapterInfo, newRunId, readManifest, repoIdFor, type RunManifest } from "./core/runStore";
import { completeAtCursor } from "./core/eval/serving";
import { evaluate, DEFAULT_EVAL_MAX_TOKENS, DEFAULT_MAX_TASKS, type EvaluationResult } from "./core/eval/evaluate";
import { evaluationTable } from "./core/eval/report";
import { TokenizerPool } from "./core/tokenizerPool";
import type { RunEvent } from "./protocol/run";

const HELP = `Usage: repotune <command> [options]

Commands:
  tune <folder> [<folder>...]
                      Build a dataset from the folder, train a LoRA adapter, and evaluate it against the base model
                      on held-out files (the adapter is kept only if it completes them measurably better). Several
                      folders (a multi-root workspace) make one dataset, their paths prefixed with each folder's name.
  update <folder>     Continue an adapter (--adapter, from a RepoTune run) on the files changed since the commit it was
                      trained on plus a replay sample of the others, with its run's rank, alpha and sequence length,
                      on the same base model; evaluated and kept or not as with tune. --model defaults to the run's.
  eval <folder>       Evaluate an adapter (--adapter) against the base model on the folder's held-out files: the
                      run's held-out files when the adapter was trained on this folder, else every file.
  dataset <folder> [<folder>...]
                      Only build the dataset (train.bin, val.bin, meta.json), from one folder or several.
  complete <file>     Complete <file> at a cursor, with or without an adapter.

Options:
  --model PATH|tiny   Base model GGUF ("tiny": a tiny generated model, for trying RepoTune out). Default: $REPOTUNE_MODEL
                      (eval: the base model the adapter's run recorded).
  --python P          Python with PyTorch and NumPy. Default: the first that works of $REPOTUNE_PYTHON, python3,
                      python, /usr/bin/python3.
  --runs DIR          (tune) Where runs are stored. Default: $REPOTUNE_HOME, else $XDG_DATA_HOME/repotune
                      (~/.local/share/repotune).
  --steps N           (tune) Optimizer steps (default ${DEFAULT_TRAIN_SETTINGS.steps}).
  --seq-len N         (tune, dataset, complete, eval) Sequence length in tokens (default ${DEFAULT_TRAIN_SETTINGS.seqLen};
                      complete and eval with an adapter: the adapter's run's).
  --seed N            (tune, eval) Seed of the data order and of the evaluation's tasks (default 0).
  --rank N, --lr F, --batch N, --device auto|cpu|cuda|mps
                      (tune) Other training settings.
  --max-tasks N       (tune, eval) Most completion tasks in the evaluation (default ${DEFAULT_MAX_TASKS}).
  --out DIR           (dataset) Output folder. Default: a new folder under the runs folder.
  --line L --col C    (complete) Cursor position, 1-based.
  --adapter PATH      (complete, eval) LoRA adapter GGUF to apply; (update) the adapter to continue.
  --max-tokens N      (complete, tune, eval) Most tokens to generate per completion (default ${DEFAULT_EVAL_MAX_TOKENS}).
  -h, --help          Show this help.

Exit code 0 on success, 1 on failure (the reason is printed on stderr).`;

const OPTIONS = {
  model: { type: "string" },
  python: { type: "string" },
  runs: { type: "string" },
  steps: { type: "string" },
  "seq-len": { type: "string" },
  rank: { type: "string" },
  lr: { type: "string" },
  batch: { type: "string" },
  seed: { type: "string" },
  device: { type: "string" },
  out: { type: "string" },
  line: { type: "string" },
  col: { type: "string" },
  adapter: { type: "string" },
  "max-tokens": { type: "string" },
  "max-tasks": { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;

type Values = ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true }>>["values"];

/** A failure whose message is the whole story (no stack trace wanted). */
class CliError extends Error {}

const enginePath = path.join(__dirname, "engine.mjs");
const trainerRoot = locateTrainerRoot();

async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  } catch (err) {
    throw new CliError(`${messageOf(err)}\nRun repotune --help for the options.`);
  }
  const { values, positionals } = parsed;
  const [command, target, ...extra] = positionals;
  if (values.help || command === undefined || command === "help") {
    console.log(HELP);
    return 0;
  }
  // tune and dataset take the folders of a multi-root workspace; the other commands one folder or file.
  const manyFolders = command === "tune" || command === "dataset";
  if (extra.length > 0 && !manyFolders) throw new CliError(`Unexpected arguments: ${extra.join(" ")}. Run repotune --help for the usage.`);
  if (target === undefined) throw new CliError(`repotune ${command} needs a ${command === "complete" ? "file" : "folder"}. Run repotune --help for the usage.`);
  switch (command) {
    case "tune":
      return cmdTune([target, ...extra], values);
    case "dataset":
      return cmdDataset([target, ...extra], values);
    case "complete":
      return cmdComplete(target, values);
    case "eval":
      return cmdEval(target, values);
    case "update":
      if (!values.adapter) throw new CliError("repotune update needs --adapter PATH: the adapter (in a RepoTune run folder) to continue.");
      return cmdTune([target], values, path.resolve(values.adapter));
    default:
      throw new CliError(`Unknown command "${command}". Commands: tune, update, eval, dataset, complete (repotune --help).`);
  }
}

// ---- tune -------------------------------------------------------------------------------------------------

/** `tune`, or `update` when `parentAdapter` is given. */
async function cmdTune(folderArgs: string[], values: Values, parentAdapter?: string): Promise<number> {
  const t0 = Date.now();
  const python = await pickPython(values);
  const parentModel = parentAdapter && !values.model && !process.env.REPOTUNE_MODEL ? (await runOf(parentAdapter))?.manifest.baseModel.path : undefined;
  const modelPath = parentModel !== undefined ? await checkedModel(parentModel) : await pickModel(values, python);
  const settings = resolveSettings(trainSettings(values));
  const runsRoot = path.resolve(values.runs ?? defaultRunsRoot());
  const folders = folderArgs.map((f) => path.resolve(f));
  const abort = new AbortController();
  const onSigint = () => {
    if (abort.signal.aborted) process.exit(1);
    console.log("stopping: the trainer saves a checkpoint (Ctrl-C again to quit at once)");
    abort.abort();
  };
  process.on("SIGINT", onSigint);
  const progress = new Progress(settings.steps);
  let result: TuneResult;
  try {
    const opts = {
      folder: folders.length === 1 ? folders[0] : folders, modelPath, python, trainerRoot, enginePath, runsRoot, settings,
      onEvent: (e: RunEvent) => progress.on(e), signal: abort.signal, evaluation: evaluationSettings(values),
    };
    result = parentAdapter ? await updateAdapter({ ...opts, folder: folders[0], parentAdapter }) : await tune(opts);
  } finally {
    process.off("SIGINT", onSigint);
  }
  if (result.status === "failed") throw new CliError(result.error ?? "The run failed.");
  if (result.status === "stopped") throw new CliError(`Training was stopped. The run folder is ${result.runDir}.`);
  console.log(`done in ${seconds(Date.now() - t0)}: adapter ${result.adapterPath}`);
  console.log("");
  if (result.evaluation) printEvaluation(result.evaluation, folders);
  else console.log(`not kept: ${result.decision?.reason ?? "the adapter was not evaluated."}`);
  return 0;
}

class Progress {
  private readonly every: number;
  private evalQuarter = 0;
  constructor(steps: number) {
    this.every = Math.max(1, Math.round(steps / 10));
  }

  /** A line at each quarter of the evaluation's completions. */
  evalProgress(done: number, total: number): string | null {
    const quarter = Math.floor((4 * done) / total);
    if (quarter <= this.evalQuarter) return null;
    this.evalQuarter = quarter;
    return `  ${done}/${total} completions`;
  }

  on(e: RunEvent): void {
    const line = this.describe(e);
    if (line !== null) console.log(line);
  }

  private describe(e: RunEvent): string | null {
    switch (e.type) {
      case "run":
        return `run ${e.runId}: ${e.folder}\n  run folder ${e.runDir}`;
      case "phase":
        return e.phase === "preparing" ? "preparing the dataset"
          : e.phase === "training" ? "training"
          : e.phase === "evaluating" ? "evaluating: the base model and the adapter complete held-out code" : null;
      case "evalProgress":
        return this.evalProgress(e.done, e.total);
      case "dataset": {
        const s = e.summary;
        const skipped = Object.keys(s.filesSkipped).length ? ` (skipped: ${describeSkipped(s.filesSkipped)})` : "";
        return `dataset: ${s.filesUsed} files${skipped}, ${s.examples} examples (${s.promptFormat}); ` +
          `train ${s.trainSequences} x ${s.seqLen} tokens, validation ${s.valSequences} x ${s.seqLen}` +
          (s.splitMethod === "update" ? `\n  update: ${s.changedFiles} files changed since the adapter's commit, ${s.replayFiles} earlier files replayed` : "");
      }
      case "trainer": {
        const t = e.event;
        switch (t.event) {
          case "start":
            return `trainer on ${t.device} (torch ${t.torch_version}): ${t.arch}, ${t.n_layer} layers, ` +
              `${t.trainable_params.toLocaleString("en-US")} trainable of ${t.total_params.toLocaleString("en-US")} parameters, ` +
              `${t.steps} steps of ${t.batch} x ${t.seq_len} tokens`;
          case "step":
            return t.step % this.every === 0 || t.step === t.steps || t.step === 1
              ? `step ${String(t.step).padStart(String(t.steps).length)}/${t.steps}  loss ${t.loss.toFixed(4)}  ${Math.round(t.tokens_per_s)} tok/s  ${t.elapsed_s.toFixed(1)} s`
              : null;
          case "eval":
            return `  validation loss at step ${t.step}: ${t.val_loss.toFixed(4)}`;
          case "checkpoint":
            return `  checkpoint at step ${t.step}`;
          case "stopped":
            return `stopped at step ${t.step}${t.checkpoint ? `; checkpoint ${t.checkpoint}` : ""}`;
          case "error":
            return null; // tune() turns it into the run's error, printed once on stderr
          case "done":
            return null;
        }
        return null;
      }
      case "log":
        return `  ${e.message}`;
      default:
        return null;
    }
  }
}

// ---- eval ----------------------------------------------------------------------------------------------------

async function cmdEval(folder: string, values: Values): Promise<number> {
  if (!values.adapter) throw new CliError("repotune eval needs --adapter PATH: the adapter .gguf to evaluate (repotune tune prints it at its end).");
  const adapterPath = path.resolve(values.adapter);
  await fs.access(adapterPath).catch(() => {
    throw new CliError(`The adapter ${adapterPath} does not exist: pass the adapter .gguf that repotune tune printed at its end.`);
  });
  const abs = path.resolve(folder);
  if (!(await fs.stat(abs).then((s) => s.isDirectory(), () => false))) throw new CliError(`${abs} is not a folder: pass the repository folder to evaluate on.`);
  const run = await runOf(adapterPath);
  const python = values.model === "tiny" ? await pickPython(values) : "";
  const modelPath = values.model === undefined && !process.env.REPOTUNE_MODEL && run
    ? await checkedModel(run.manifest.baseModel.path)
    : await pickModel(values, python);
  const sameFolder = run !== null && (await realpath(run.manifest.folder)) === (await realpath(abs));
  let heldOut: { val: string[]; split?: "recent" | "hash" | "one-file" };
  if (run && sameFolder) {
    heldOut = await readDatasetFiles(path.join(run.dir, "data")).catch(() => {
      throw new CliError(`The run folder ${run.dir} has lost its data/files.json, so its held-out files are unknown. Evaluate on another folder, or train again.`);
    });
    console.log(`held-out files of run ${run.manifest.runId}: ${heldOut.val.length}`);
  } else {
    // The adapter never saw this folder: every file of it is held out.
    heldOut = { val: (await selectFiles(abs)).usable.map((f) => f.path) };
    console.log(`the adapter was not trained on ${abs}: all ${heldOut.val.length} of its files are held out`);
  }
  const seqLen = positiveInt(values["seq-len"], "--seq-len") ?? run?.manifest.settings.seqLen ?? DEFAULT_TRAIN_SETTINGS.seqLen;
  const seed = values.seed === undefined ? run?.manifest.settings.seed ?? 0 : integer(values.seed, "--seed");
  const losses = run && sameFolder
    ? { valLossBase: run.manifest.metrics.valLossBase, valLoss: run.manifest.metrics.valLoss, adapterStep: run.manifest.evaluation?.loss.adapterStep ?? null }
    : undefined;
  const engine = await EngineClient.start({ enginePath, log: () => undefined });
  const progress = new Progress(1);
  try {
    const info = await engine.load(modelPath);
    const result = await evaluate({
      engine, modelInfo: info, format: promptFormatFor(info), folder: abs, files: heldOut.val, split: heldOut.split, adapterPath,
      seed, windowTokens: seqLen, charsPerToken: run?.manifest.dataset.charsPerToken, ...evaluationSettings(values), trainer: losses,
      onProgress: (done, total) => {
        const line = progress.evalProgress(done, total);
        if (line !== null) console.log(line);
      },
    });
    console.log("");
    printEvaluation(result, [abs]);
  } finally {
    await engine.dispose();
  }
  return 0;
}

/** The run folder an adapter was written to, with its manifest, when it sits in one. */
async function runOf(adapterPath: string): Promise<{ dir: string; manifest: RunManifest } | null> {
  const dir = path.dirname(adapterPath);
  const manifest = await readManifest(path.join(dir, "manifest.json")).catch(() => null);
  return manifest !== null && manifest.adapter === path.basename(adapterPath) ? { dir, manifest } : null;
}

function evaluationSettings(values: Values): { maxTasks?: number; maxTokens?: number } {
  return { maxTasks: positiveInt(values["max-tasks"], "--max-tasks"), maxTokens: positiveInt(values["max-tokens"], "--max-tokens") };
}

const SAMPLES = 3;

/**
 * The table, then a few tasks with the expected text and both completions side by side. A task's file is in one of
 * `folders` (a multi-root run evaluates on one of its folders).
 */
function printEvaluation(result: EvaluationResult, folders: string[]): void {
  console.log(evaluationTable(result));
  const samples = result.tasks.slice(0, SAMPLES);
  if (samples.length === 0) return;
  console.log(`\nthe first ${samples.length} tasks (greedy; expected = what the file has there, cut as a completion is):`);
  for (const [i, t] of samples.entries()) {
    const text = folders.map((f) => readFileSafe(path.join(f, t.file))).find((x) => x !== "") ?? "";
    const lineText = text.slice(text.lastIndexOf("\n", t.offset - 1) + 1, t.offset);
    console.log(`\n[${i + 1}] ${t.file}:${t.line}:${t.col} (${t.kind})   ${lineText.trim()}\u258c`);
    console.log(sideBySide([["expected", t.expected], ["base", t.base], ["adapter", t.adapter]]));
  }
}

function sideBySide(columns: [string, string][]): string {
  const width = Math.max(16, Math.floor(((process.stdout.columns || 120) - 4 - 3 * (columns.length - 1)) / columns.length));
  const show = (s: string) => {
    const one = s === "" ? "(nothing)" : JSON.stringify(s).slice(1, -1); // newlines and tabs visible, on one line
    return (one.length > width ? one.slice(0, width - 1) + "…" : one).padEnd(width);
  };
  const head = columns.map(([h]) => h.padEnd(width)).join(" | ");
  const body = columns.map(([, v]) => show(v)).join(" | ");
  return `    ${head.trimEnd()}\n    ${body.trimEnd()}`;
}

// ---- dataset ----------------------------------------------------------------------------------------------

async function cmdDataset(folderArgs: string[], values: Values): Promise<number> {
  const t0 = Date.now();
  const python = values.model === "tiny" ? await pickPython(values) : "";
  const modelPath = await pickModel(values, python);
  const seqLen = resolveSettings(trainSettings(values)).seqLen;
  const folders = folderArgs.map((f) => path.resolve(f));
  for (const f of folders) {
    if (!(await fs.stat(f).then((s) => s.isDirectory(), () => false))) throw new CliError(`${f} is not a folder: pass the repository folder(s) to build the dataset from.`);
  }
  const outDir = path.resolve(values.out ?? path.join(values.runs ?? defaultRunsRoot(), await repoIdFor(folders), `dataset-${newRunId()}`));
  const engine = await EngineClient.start({ enginePath, log: () => undefined });
  try {
    const info = await engine.load(modelPath);
    const tokenizer = new TokenizerPool(engine, { enginePath, modelPath, log: (m) => console.log(`  ${m}`) });
    const built = await buildDataset({
      folder: folders.length === 1 ? folders[0] : folders, outDir, tokenizer, format: promptFormatFor(info), model: info, modelPath, seqLen,
      seed: resolveSettings(trainSettings(values)).seed, log: (m) => console.log(`  ${m}`),
    }).finally(() => tokenizer.dispose());
    const s = built.summary;
    console.log(`dataset: ${s.filesUsed} files (skipped: ${describeSkipped(s.filesSkipped)}), ${s.examples} examples (${s.promptFormat})`);
    console.log(`train: ${s.trainSequences} sequences, ${s.trainTokens} tokens; validation: ${s.valSequences} sequences, ${s.valTokens} tokens; seq_len ${s.seqLen}`);
    if (built.truncatedExamples) console.log(`${built.truncatedExamples} examples were cut to ${seqLen} tokens`);
    console.log(`written to ${outDir} in ${seconds(Date.now() - t0)}`);
  } finally {
    await engine.dispose();
  }
  return 0;
}

// ---- complete ---------------------------------------------------------------------------------------------

async function cmdComplete(file: string, values: Values): Promise<number> {
  const line = positiveInt(values.line, "--line");
  const col = positiveInt(values.col, "--col");
  if (line === undefined || col === undefined) throw new CliError("repotune complete needs --line L and --col C (1-based).");
  const abs = path.resolve(file);
  const text = await fs.readFile(abs, "utf8").catch(() => {
    throw new CliError(`Cannot read ${abs}: check the path and pass an existing, readable file to complete.`);
  });
  const lines = text.split("\n");
  if (line > lines.length) throw new CliError(`${file} has ${lines.length} lines; --line ${line} is past its end.`);
  const offset = lines.slice(0, line - 1).reduce((a, x) => a + x.length + 1, 0) + Math.min(col - 1, lines[line - 1].length);
  const python = values.model === "tiny" ? await pickPython(values) : "";
  const modelPath = await pickModel(values, python);
  const adapterPath = values.adapter ? path.resolve(values.adapter) : null;
  if (adapterPath) await fs.access(adapterPath).catch(() => {
    throw new CliError(`The adapter ${adapterPath} does not exist: pass the adapter .gguf that repotune tune printed at its end, or leave --adapter out.`);
  });
  // Prompts shaped as for the adapter in the editor: its training length and its dataset's characters per token.
  const shape = adapterPath ? await adapterInfo(adapterPath) : null;
  const seqLen = positiveInt(values["seq-len"], "--seq-len") ?? shape?.seqLen ?? resolveSettings(trainSettings(values)).seqLen;
  const root = await gitRoot(path.dirname(abs));
  const rel = path.relative(root, abs).split(path.sep).join("/");
  const repo = await repoName(root);
  const engine = await EngineClient.start({ enginePath, log: () => undefined });
  try {
    const info = await engine.load(modelPath);
    const out = await completeAtCursor(engine, promptFormatFor(info), {
      text, offset, filePath: rel, repoName: repo, windowTokens: seqLen, charsPerToken: shape?.charsPerToken, adapterPath,
      maxTokens: positiveInt(values["max-tokens"], "--max-tokens") ?? DEFAULT_EVAL_MAX_TOKENS,
    });
    process.stdout.write(out.text + "\n");
  } finally {
    await engine.dispose();
  }
  return 0;
}

// ---- shared -----------------------------------------------------------------------------------------------

async function pickPython(values: Values): Promise<string> {
  return (await findPython(values.python, trainerRoot)).python;
}

async function pickModel(values: Values, python: string): Promise<string> {
  const model = values.model ?? process.env.REPOTUNE_MODEL;
  if (!model) throw new CliError("No base model: pass --model PATH.gguf (a base code model with fill-in-the-middle support), or --model tiny to try RepoTune.");
  if (model === "tiny") return ensureTinyModel(python || (await pickPython(values)), trainerRoot, defaultCacheDir());
  return checkedModel(model);
}

async function checkedModel(model: string): Promise<string> {
  const abs = path.resolve(model);
  await checkGguf(abs);
  return abs;
}

function realpath(p: string): Promise<string> {
  return fs.realpath(p).catch(() => path.resolve(p));
}

function readFileSafe(file: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch {
    return "";
  }
}

function trainSettings(values: Values): Partial<TrainSettings> {
  const device = values.device;
  if (device !== undefined && !["auto", "cpu", "cuda", "mps"].includes(device)) throw new CliError(`--device must be auto, cpu, cuda or mps, not "${device}".`);
  return {
    steps: positiveInt(values.steps, "--steps"),
    seqLen: positiveInt(values["seq-len"], "--seq-len"),
    rank: positiveInt(values.rank, "--rank"),
    batch: positiveInt(values.batch, "--batch"),
    seed: values.seed === undefined ? undefined : integer(values.seed, "--seed"),
    lr: values.lr === undefined ? undefined : positiveNumber(values.lr, "--lr"),
    device: device as TrainSettings["device"] | undefined,
  };
}

function positiveInt(v: string | undefined, name: string): number | undefined {
  if (v === undefined) return undefined;
  const n = integer(v, name);
  if (n < 1) throw new CliError(`${name} must be a whole number of at least 1, not "${v}".`);
  return n;
}

function integer(v: string, name: string): number {
  if (!/^-?\d+$/.test(v.trim())) throw new CliError(`${name} must be a whole number, not "${v}".`);
  return Number(v);
}

function positiveNumber(v: string, name: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new CliError(`${name} must be a positive number, not "${v}".`);
  return n;
}

function defaultRunsRoot(): string {
  if (process.env.REPOTUNE_HOME) return process.env.REPOTUNE_HOME;
  return path.join(process.env.XDG_DATA_HOME || path.join(os.homedir(), ".local", "share"), "repotune");
}

function defaultCacheDir(): string {
  return path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), ".cache"), "repotune");
}

async function gitRoot(dir: string): Promise<string> {
  return (await gitText(dir, ["rev-parse", "--show-toplevel"])) || dir;
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

// Exit once stdout has drained (pipes are asynchronous on some platforms), even if a handle lingers.
const exit = (code: number) => process.stdout.write("", () => process.exit(code));
main(process.argv.slice(2)).then(exit, (err: unknown) => {
  process.stderr.write(`repotune: ${messageOf(err)}\n`);
  exit(1);
});
