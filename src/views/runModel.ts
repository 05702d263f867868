// What the Run view and the report panel draw, kept in one place for both: the run (this window's, live, or the
// workspace's last one read back from its events file), the settings and predicted cost of the next run, and the
// workspace's adapters. Changes are coalesced, so a fast trainer does not flood the webviews.
import * as vscode from "vscode";
import { promises as fs, watchFile, unwatchFile } from "node:fs";
import * as path from "node:path";
import type { Ctx } from "../ctx";
import type { RunController } from "../run";
import { RunEvent } from "../protocol/run";
import type { AdapterRow, NextRunSettings, RunFiles, RunSnapshot, WorkspaceInfo } from "../protocol/webview";
import { snapshotFromEvents } from "../core/runSnapshot";
import { secondsFromMeasured } from "../core/plan";
import { listAdapters, readManifest } from "../core/runStore";
import { resolveSettings } from "../core/tune";
import { checkPython } from "../core/python";
import { estimateMemory } from "../core/memoryEstimate";
import { readDatasetReport } from "../core/dataset/write";
import { messageOf } from "../core/errors";

/** Fired when adapters were deleted or changed on disk by a command, so the list is read again. */
export const adaptersChanged = new vscode.EventEmitter<void>();

/** The run controller's resume entry point (src/run.ts); absent in builds that do not have it. */
export interface Resumable {
  resume(runDir: string): Promise<unknown>;
}

export function canResume(run: RunController): run is RunController & Resumable {
  return typeof (run as Partial<Resumable>).resume === "function";
}

const TERMINAL = new Set(["done", "stopped", "failed"]);

/**
 * A run whose events file has not changed for this long while its last phase is still a working one is taken as
 * interrupted: the window that ran it closed without the trainer's clean stop (steps, evaluation progress and the
 * dataset step's log all write well within it).
 */
const STALE_MS = 20_000;

/** Reads a run's events file, skipping a line that does not parse (one being written as we read). */
export async function readRunEvents(eventsPath: string): Promise<RunEvent[]> {
  const text = await fs.readFile(eventsPath, "utf8");
  const out: RunEvent[] = [];
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    try {
      const r = RunEvent.safeParse(JSON.parse(line));
      if (r.success) out.push(r.data);
    } catch {
      // A partial last line: the next read has it whole.
    }
  }
  return out;
}

/** The newest run folder of a repository that has an events file, or null. Run ids sort by time. */
export async function latestRunDir(runsRoot: string, repoId: string): Promise<string | null> {
  const repoDir = path.join(runsRoot, repoId);
  const runs = (await fs.readdir(repoDir).catch(() => [] as string[])).sort().reverse();
  for (const id of runs) {
    const dir = path.join(repoDir, id);
    if (await fs.stat(path.join(dir, "events.jsonl")).then(() => true, () => false)) return dir;
  }
  return null;
}

/** report.json and the manifest's settings of a run folder, as far as they exist yet. */
export async function readRunFiles(runDir: string): Promise<RunFiles> {
  const report = await readDatasetReport(path.join(runDir, "data")).catch(() => null);
  const manifest = await readManifest(path.join(runDir, "manifest.json")).catch(() => null);
  return { report, settings: manifest ? { ...manifest.settings } : null, gitCommit: manifest?.gitCommit ?? null };
}

/** A run folder read back from disk, followed while its events file still grows (a run another window drives). */
export class DiskRun implements vscode.Disposable {
  private snapshot: RunSnapshot | null = null;
  private watching = false;
  private readonly changed = new vscode.EventEmitter<void>();
  readonly onDidChange = this.changed.event;
  private readonly eventsPath: string;

  constructor(readonly runDir: string) {
    this.eventsPath = path.join(runDir, "events.jsonl");
  }

  get current(): RunSnapshot | null {
    return this.snapshot;
  }

  async load(): Promise<RunSnapshot | null> {
    const events = await readRunEvents(this.eventsPath).catch(() => null);
    if (!events) return null;
    const read = snapshotFromEvents(events);
    // A run whose last phase is not final is still going somewhere (or its window is closing): follow the file.
    const open = !TERMINAL.has(read.phase);
    this.snapshot = open ? await this.interrupted(read) : read;
    if (open && !this.watching) {
      this.watching = true;
      watchFile(this.eventsPath, { interval: 500 }, () => void this.load().then(() => this.changed.fire()));
    } else if (!open && this.watching) {
      this.stopWatching();
    }
    return this.snapshot;
  }

  /** The run as interrupted when its file went quiet; checked again when it would go stale. */
  private async interrupted(s: RunSnapshot): Promise<RunSnapshot> {
    const mtime = await fs.stat(this.eventsPath).then((st) => st.mtimeMs, () => Date.now());
    const quiet = Date.now() - mtime;
    clearTimeout(this.staleTimer);
    if (quiet < STALE_MS) {
      this.staleTimer = setTimeout(() => void this.load().then(() => this.changed.fire()), STALE_MS - quiet + 100);
      return s;
    }
    const text = `Interrupted: no window is running this run (its events stopped at ${new Date(mtime).toISOString()}).`;
    return { ...s, phase: "stopped", endedAt: mtime, log: [...s.log, { time: mtime, kind: "interrupted", text }] };
  }

  private staleTimer: NodeJS.Timeout | undefined;

  private stopWatching(): void {
    if (!this.watching) return;
    this.watching = false;
    unwatchFile(this.eventsPath);
  }

  dispose(): void {
    clearTimeout(this.staleTimer);
    this.stopWatching();
    this.changed.dispose();
  }
}

export interface ViewState {
  run: RunSnapshot;
  workspace: WorkspaceInfo;
}

export class RunModel implements vscode.Disposable {
  private static readonly models = new WeakMap<RunController, RunModel>();

  /** One model per run controller, shared by the view and the panel. */
  static for(ctx: Ctx, run: RunController): RunModel {
    let model = RunModel.models.get(run);
    if (!model) {
      model = new RunModel(ctx, run);
      RunModel.models.set(run, model);
      ctx.extension.subscriptions.push(model);
    }
    return model;
  }

  private readonly changed = new vscode.EventEmitter<void>();
  readonly onDidChange = this.changed.event;
  private readonly subs: vscode.Disposable[] = [];
  private disk: DiskRun | null = null;
  private adapters: AdapterRow[] = [];
  private device: string | null = null;
  private peakBytes: number | null = null;
  private estimateNote: string | null = null;
  private estimateKey = "";
  private flushTimer: NodeJS.Timeout | undefined;
  private lastPhase: string;
  private loaded: Promise<void> | undefined;

  private constructor(private readonly ctx: Ctx, private readonly run: RunController) {
    this.lastPhase = run.snapshot.phase;
    this.subs.push(
      run.onDidChange((s) => {
        // The adapters list changes when a run ends; a run's end is also a good time for a new estimate.
        if (s.phase !== this.lastPhase && TERMINAL.has(s.phase)) void this.refreshAdapters().then(() => this.refreshEstimate(true));
        this.lastPhase = s.phase;
        this.fire();
      }),
      ctx.onDidChangeAdapter(() => void this.refreshAdapters()),
      adaptersChanged.event(() => void this.loadDisk().then(() => this.refreshAdapters())),
      vscode.workspace.onDidChangeConfiguration((e) => {
        if (!["repotune.training", "repotune.modelPath", "repotune.pythonPath"].some((k) => e.affectsConfiguration(k))) return;
        this.fire();
        void this.refreshEstimate(true);
      }),
      vscode.workspace.onDidChangeWorkspaceFolders(() => void this.reload()),
    );
  }

  /** Loads what is on disk the first time a webview asks. */
  ready(): Promise<void> {
    this.loaded ??= this.reload();
    return this.loaded;
  }

  private async reload(): Promise<void> {
    await this.loadDisk();
    await this.refreshAdapters();
    void this.refreshEstimate(false);
  }

  get folder(): string | null {
    return vscode.workspace.workspaceFolders?.[0]?.uri.fsPath ?? null;
  }

  private async repoDir(): Promise<string | null> {
    const repoId = await this.ctx.repoId();
    return repoId ? path.join(this.ctx.runsRoot, repoId) : null;
  }

  /** This window's run when it has one; else the workspace's last run, read back from its events file. */
  get runSnapshot(): RunSnapshot {
    const live = this.run.snapshot;
    if (live.phase !== "idle" || !this.disk?.current) return live;
    return { ...this.disk.current, activeAdapter: live.activeAdapter };
  }

  get isLive(): boolean {
    return this.run.snapshot.phase !== "idle" || !this.disk?.current;
  }

  state(): ViewState {
    return { run: this.runSnapshot, workspace: this.workspace() };
  }

  private workspace(): WorkspaceInfo {
    const settings = this.nextSettings();
    return {
      folder: this.folder,
      modelSetting: this.ctx.config.modelPath ?? null,
      settings,
      device: this.device,
      peakBytes: this.peakBytes,
      ...this.timeEstimate(settings),
      adapters: this.adapters.map((a) => ({ ...a, active: a.adapterPath === this.ctx.activeAdapter })),
      canResume: canResume(this.run),
      live: this.isLive,
    };
  }

  private nextSettings(): NextRunSettings | null {
    try {
      const configured = this.ctx.config.training;
      const s = resolveSettings(configured);
      const last = this.runSnapshot.dataset?.recommendedSteps ?? null;
      return {
        steps: configured.steps ?? null, stepsHint: configured.steps === undefined ? last : null,
        seqLen: s.seqLen, rank: s.rank, lr: s.lr, batch: s.batch, device: s.device,
        planned: (["seqLen", "rank", "batch"] as const).filter((k) => configured[k] === undefined),
      };
    } catch {
      return null;
    }
  }

  /**
   * The next run's time, from what the last run on the same device measured: its seconds per step scaled by the
   * tokens per step, plus its data preparation and evaluation times. Null before any run trained on this device.
   */
  private timeEstimate(settings: NextRunSettings | null): { seconds: number | null; estimateNote: string | null } {
    const note = this.estimateNote;
    const measured = (s: RunSnapshot | null | undefined) => (s?.trainer && s.trainSeconds !== null ? s : null);
    const last = measured(this.run.snapshot) ?? measured(this.disk?.current);
    const device = settings?.device === "auto" ? this.device : settings?.device;
    const trained = last ? last.step - (last.resumedFrom ?? 0) : 0;
    if (!settings || !last?.trainer || last.trainSeconds === null || trained <= 0 || (device && last.device !== device)) {
      return { seconds: null, estimateNote: note ?? "Time: measured by the first run on this device." };
    }
    const steps = settings.steps ?? settings.stepsHint ?? last.steps;
    // The plan's rule (src/core/plan.ts): time per trained token, measured, times the tokens the next run trains.
    const train = secondsFromMeasured(
      { device: last.device ?? "", trainSeconds: last.trainSeconds, steps: trained, tokensPerStep: last.trainer.seqLen * last.trainer.batch, params: null },
      { steps, tokensPerStep: settings.seqLen * settings.batch, params: null },
    );
    const t = last.phaseTimes;
    const prepare = t.preparing !== undefined && t.training !== undefined ? (t.training - t.preparing) / 1000 : 0;
    const evaluate = t.evaluating !== undefined && t.done !== undefined ? (t.done - t.evaluating) / 1000 : 0;
    return {
      seconds: train === null ? null : Math.round(prepare + train + evaluate),
      estimateNote: note ?? `Time: scaled from the last run (${trained} steps in ${Math.round(last.trainSeconds)} s on ${last.device}).`,
    };
  }

  /** The workspace's last run from disk (when this window has none of its own). */
  private async loadDisk(): Promise<void> {
    const repoDir = await this.repoDir();
    const runsRoot = this.ctx.runsRoot;
    const dir = repoDir ? await latestRunDir(runsRoot, path.basename(repoDir)) : null;
    if (this.disk?.runDir !== dir) {
      this.disk?.dispose();
      this.disk = dir ? new DiskRun(dir) : null;
      this.disk?.onDidChange(() => this.fire());
    }
    await this.disk?.load();
    this.fire();
  }

  async refreshAdapters(): Promise<void> {
    const folder = this.folder;
    if (!folder) {
      this.adapters = [];
      return this.fire();
    }
    const repoId = await this.ctx.repoId();
    const entries = repoId ? await listAdapters(this.ctx.runsRoot, repoId).catch(() => []) : [];
    this.adapters = await Promise.all(entries.map(async (a): Promise<AdapterRow> => {
      const runDir = path.dirname(a.adapterPath);
      const manifest = await readManifest(path.join(runDir, "manifest.json")).catch(() => null);
      const size = await fs.stat(a.adapterPath).then((s) => s.size, () => 0);
      const gain = manifest?.evaluation?.diff.editSimilarity ?? null;
      return {
        runId: a.runId, adapterPath: a.adapterPath, runDir, finished: a.finished, baseModel: path.basename(a.baseModelPath),
        sizeBytes: size, valLossBase: a.valLossBase, valLoss: a.valLoss,
        gain: gain ? { mean: gain.mean, lo: gain.lo, hi: gain.hi } : null, active: false,
      };
    }));
    this.fire();
  }

  /**
   * Asks the trainer's estimator for the next run's peak memory on the detected device. Skipped while a run trains
   * (it would take CPU from it) and when nothing it depends on changed.
   */
  private async refreshEstimate(force: boolean): Promise<void> {
    if (this.run.running) return;
    const settings = this.nextSettings();
    const key = JSON.stringify([this.ctx.config.modelPath, this.ctx.config.pythonPath, settings]);
    if (!force && key === this.estimateKey) return;
    this.estimateKey = key;
    if (!settings) {
      this.estimateNote = "The repotune.training settings are invalid; fix them to see an estimate.";
      return this.fire();
    }
    try {
      const python = await this.ctx.python();
      this.device ??= (await checkPython(python, this.ctx.trainerRoot)).device ?? "cpu";
      const device = settings.device === "auto" ? this.device : settings.device;
      const modelPath = await this.ctx.modelPath();
      const e = await estimateMemory({
        python, trainerRoot: this.ctx.trainerRoot, modelPath: path.resolve(modelPath),
        seqLen: settings.seqLen, batch: settings.batch, rank: settings.rank, device,
      });
      if (key !== this.estimateKey) return;
      this.peakBytes = e.total;
      this.estimateNote = null;
    } catch (err) {
      if (key !== this.estimateKey) return;
      this.peakBytes = null;
      this.estimateNote = `No estimate: ${messageOf(err)}`;
    }
    this.fire();
  }

  /** Coalesces changes: one update per 150 ms at most, the last state always sent. */
  private fire(): void {
    if (this.flushTimer) return;
    this.flushTimer = setTimeout(() => {
      this.flushTimer = undefined;
      this.changed.fire();
    }, 150);
  }

  dispose(): void {
    clearTimeout(this.flushTimer);
    this.disk?.dispose();
    this.subs.forEach((d) => d.dispose());
    this.changed.dispose();
  }
}
