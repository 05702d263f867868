// Owns the engine process for a window: starts it on first use, loads the configured base model once, restarts it
// with backoff when it dies, and frees its memory while training needs the GPU. While the engine is down, paused or
// restarting, calls fail at once with code "unavailable": completions never wait on the engine coming back.
import { basename } from "node:path";
import { EngineClient, EngineError } from "./engineClient";
import type { ModelInfo } from "../protocol/engine";

export type EngineState =
  /** Nothing started yet, or shut down. */
  | { kind: "stopped" }
  /** Starting the process or loading the model, on first use, after a model change, or on resume. */
  | { kind: "starting"; modelPath: string }
  | { kind: "ready"; modelPath: string; info: ModelInfo }
  /** The process died; a new one starts at retryAt (null: starting now). */
  | { kind: "restarting"; modelPath: string; reason: string; retryAt: number | null; attempt: number }
  /** The model is released (e.g. training uses the GPU) until resume(). */
  | { kind: "paused"; modelPath: string | null; reason: string }
  /** The model could not be loaded, or the process could not start; retry() or another model tries again. */
  | { kind: "failed"; modelPath: string; reason: string };

export interface EngineBackoff {
  /** Wait before the first restart; doubled after each crash that follows. */
  initialMs: number;
  maxMs: number;
  /** An engine that ran this long before dying restarts after initialMs again. */
  healthyMs: number;
}

export interface EngineHostOptions {
  enginePath: string;
  log: (line: string) => void;
  onState?: (s: EngineState) => void;
  /** GPU use of the engine: "auto" picks CUDA, Vulkan or Metal when present, else the CPU. */
  gpu?: "auto" | "off";
  backoff?: Partial<EngineBackoff>;
  /** How long a release may take before the process is killed instead (its memory is then freed by the OS). */
  releaseTimeoutMs?: number;
}

export interface ReadyEngine {
  client: EngineClient;
  info: ModelInfo;
}

const DEFAULT_BACKOFF: EngineBackoff = { initialMs: 500, maxMs: 30_000, healthyMs: 60_000 };
const RELEASE_TIMEOUT_MS = 10_000;

export class EngineHost {
  private client: EngineClient | null = null;
  private loaded: ReadyEngine | null = null;
  /** The model completions asked for last: what a restart or a resume loads again. */
  private wanted: string | null = null;
  private starting: { modelPath: string; promise: Promise<ReadyEngine> } | null = null;
  private failure: EngineError | null = null;
  private pausedFor: string | null = null;
  private restartTimer: NodeJS.Timeout | null = null;
  private crashes = 0;
  private readyAt = 0;
  private disposed = false;
  // Starting, loading, releasing and shutting down change the one engine process: one at a time, in order.
  private lifecycle: Promise<unknown> = Promise.resolve();
  private readonly listeners = new Set<(s: EngineState) => void>();
  private readonly backoff: EngineBackoff;
  private _state: EngineState = { kind: "stopped" };

  constructor(private readonly opts: EngineHostOptions) {
    this.backoff = { ...DEFAULT_BACKOFF, ...opts.backoff };
  }

  get state(): EngineState {
    return this._state;
  }

  onDidChangeState(listener: (s: EngineState) => void): { dispose(): void } {
    this.listeners.add(listener);
    return { dispose: () => this.listeners.delete(listener) };
  }

  /**
   * The engine with `modelPath` loaded. The first call (and one after a model change or resume()) waits for the
   * model to load; while the engine is paused, restarting or failed it throws an EngineError at once.
   */
  ready(modelPath: string): Promise<ReadyEngine> {
    if (this.disposed) return Promise.reject(unavailable("RepoTune is shutting down."));
    if (this.pausedFor !== null) return Promise.reject(unavailable(`Completions are paused: ${this.pausedFor}.`));
    const s = this._state;
    if (s.kind === "restarting") return Promise.reject(unavailable(describeEngineState(s)));
    if (s.kind === "failed" && s.modelPath === modelPath && this.failure !== null) return Promise.reject(this.failure);
    if (s.kind === "ready" && s.modelPath === modelPath && this.loaded !== null && this.loaded.client.alive) return Promise.resolve(this.loaded);
    if (this.starting !== null && this.starting.modelPath === modelPath) return this.starting.promise;
    this.wanted = modelPath;
    return this.bringUp(modelPath);
  }

  /** The running engine if a model is loaded, without starting anything. */
  current(): EngineClient | undefined {
    return this._state.kind === "ready" ? this.loaded?.client : undefined;
  }

  /**
   * Frees the engine's model and GPU memory for another job (training) and answers nothing until resume().
   * Resolves once the memory is released. The reason completes "Completions are paused: ...".
   */
  async pause(reason: string): Promise<void> {
    if (this.disposed) return;
    this.pausedFor = reason;
    this.cancelRestart();
    this.setState({ kind: "paused", modelPath: this.wanted, reason });
    await this.exclusive(async () => {
      const client = this.client;
      this.loaded = null;
      if (client === null || !client.alive) return;
      const released = client.release().then(
        () => true,
        () => false,
      );
      const timedOut = new Promise<false>((resolve) => setTimeout(() => resolve(false), this.opts.releaseTimeoutMs ?? RELEASE_TIMEOUT_MS).unref());
      if (!(await Promise.race([released, timedOut])) && client.alive) {
        this.opts.log("the engine did not release its model in time; stopping it so that its memory is freed");
        this.client = null;
        await client.dispose();
      }
    });
  }

  /** Loads the model again after pause(); completions come back once it is loaded. */
  async resume(): Promise<void> {
    if (this.disposed || this.pausedFor === null) return;
    this.pausedFor = null;
    this.crashes = 0;
    this.failure = null;
    if (this.wanted === null) {
      this.setState({ kind: "stopped" });
      return;
    }
    await this.bringUp(this.wanted).catch(() => undefined);
  }

  /** Tries a failed model again (e.g. after the file was replaced). */
  async retry(): Promise<void> {
    const s = this._state;
    if (this.disposed || s.kind !== "failed") return;
    this.failure = null;
    await this.bringUp(s.modelPath).catch(() => undefined);
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    this.cancelRestart();
    this.setState({ kind: "stopped" });
    await this.exclusive(async () => {
      const client = this.client;
      this.client = null;
      this.loaded = null;
      await client?.dispose().catch(() => undefined);
    });
  }

  private bringUp(modelPath: string, restart = false): Promise<ReadyEngine> {
    const promise = this.exclusive(() => this.load(modelPath, restart));
    const entry = { modelPath, promise };
    this.starting = entry;
    void promise
      .catch(() => undefined)
      .finally(() => {
        if (this.starting === entry) this.starting = null;
      });
    return promise;
  }

  private async load(modelPath: string, restart: boolean): Promise<ReadyEngine> {
    if (this.disposed) throw unavailable("RepoTune is shutting down.");
    if (this.pausedFor !== null) throw unavailable(`Completions are paused: ${this.pausedFor}.`);
    if (!restart) this.setState({ kind: "starting", modelPath });
    let client = this.client;
    if (client === null || !client.alive) {
      try {
        client = await EngineClient.start({ enginePath: this.opts.enginePath, log: this.opts.log });
      } catch (err) {
        throw this.fail(modelPath, err);
      }
      this.client = client;
      const started = client;
      client.onExit((code, signal) => this.onExit(started, code, signal));
    }
    try {
      const info = await client.load(modelPath, this.opts.gpu ?? "auto");
      // A pause or shutdown that came while loading wins: its own step releases the model next.
      if (this.pausedFor !== null || this.disposed) throw unavailable(`Completions are paused: ${this.pausedFor ?? "shutting down"}.`);
      this.loaded = { client, info };
      this.readyAt = Date.now();
      this.failure = null;
      this.setState({ kind: "ready", modelPath, info });
      return this.loaded;
    } catch (err) {
      if (err instanceof EngineError && err.code === "unavailable") throw err;
      // The process died while loading: onExit has scheduled the restart.
      if (!client.alive) throw unavailable(describeEngineState(this._state));
      throw this.fail(modelPath, err);
    }
  }

  private onExit(client: EngineClient, code: number | null, signal: string | null): void {
    if (client !== this.client) return;
    this.client = null;
    this.loaded = null;
    if (this.disposed || this.pausedFor !== null || this.wanted === null) return;
    if (this.readyAt > 0 && Date.now() - this.readyAt >= this.backoff.healthyMs) this.crashes = 0;
    this.readyAt = 0;
    const wait = Math.min(this.backoff.maxMs, this.backoff.initialMs * 2 ** this.crashes);
    this.crashes++;
    const modelPath = this.wanted;
    const how = signal !== null ? `was killed by ${signal}` : `exited with code ${code}`;
    const reason = `The completion engine ${how}; the RepoTune log shows why.`;
    this.opts.log(`${reason} Restarting it in ${wait} ms (attempt ${this.crashes}).`);
    this.setState({ kind: "restarting", modelPath, reason, retryAt: Date.now() + wait, attempt: this.crashes });
    this.restartTimer = setTimeout(() => {
      this.restartTimer = null;
      this.setState({ kind: "restarting", modelPath, reason, retryAt: null, attempt: this.crashes });
      this.bringUp(modelPath, true).catch(() => undefined);
    }, wait);
    this.restartTimer.unref();
  }

  private fail(modelPath: string, err: unknown): EngineError {
    const failure = err instanceof EngineError ? err : new EngineError("internal", err instanceof Error ? err.message : String(err));
    this.failure = failure;
    this.setState({ kind: "failed", modelPath, reason: failure.message });
    return failure;
  }

  private cancelRestart(): void {
    if (this.restartTimer !== null) clearTimeout(this.restartTimer);
    this.restartTimer = null;
  }

  private exclusive<T>(task: () => Promise<T>): Promise<T> {
    const run = this.lifecycle.then(task, task);
    this.lifecycle = run.catch(() => undefined);
    return run;
  }

  private setState(s: EngineState): void {
    this._state = s;
    this.opts.onState?.(s);
    for (const listener of this.listeners) {
      try {
        listener(s);
      } catch (err) {
        this.opts.log(`engine state listener failed: ${String(err)}`);
      }
    }
  }
}

/** One line for a status bar tooltip or a log: what the engine is doing and, when it is not serving, why. */
export function describeEngineState(s: EngineState, now = Date.now()): string {
  switch (s.kind) {
    case "stopped":
      return "Engine: not started.";
    case "starting":
      return `Engine: loading ${basename(s.modelPath)}…`;
    case "ready": {
      const where =
        s.info.gpu != null
          ? `${s.info.gpu.toUpperCase()}, ${s.info.gpuLayers ?? "?"} of ${s.info.totalLayers ?? "?"} layers on the GPU`
          : "the CPU";
      return `Engine: ${basename(s.modelPath)} on ${where}.`;
    }
    case "restarting": {
      const when = s.retryAt === null ? "now" : `in ${Math.max(0, Math.ceil((s.retryAt - now) / 1000))} s`;
      return `${s.reason} Restarting ${when} (attempt ${s.attempt}); completions are off until then.`;
    }
    case "paused":
      return `Completions are paused: ${s.reason}.`;
    case "failed":
      return `Engine failed: ${s.reason}`;
  }
}

function unavailable(message: string): EngineError {
  return new EngineError("unavailable", message);
}
