// Owns the engine process for a window: starts it on first use, loads the configured base model once, and
// restarts it with backoff when it dies, so that completions come back without a reload.
import { EngineClient } from "./engineClient";
import type { ModelInfo } from "../protocol/engine";

export type EngineState =
  | { kind: "stopped" }
  | { kind: "loading"; modelPath: string }
  | { kind: "ready"; modelPath: string; info: ModelInfo }
  | { kind: "crashed"; message: string; retryAt: number }
  | { kind: "failed"; modelPath: string; message: string };

export interface EngineHostOptions {
  enginePath: string;
  log: (line: string) => void;
  onState?: (s: EngineState) => void;
}

const BACKOFF_MS = [500, 2_000, 5_000, 15_000];

export class EngineHost {
  private client: EngineClient | undefined;
  private loading: Promise<{ client: EngineClient; info: ModelInfo }> | undefined;
  private loadedPath: string | undefined;
  private crashes = 0;
  private retryAt = 0;
  private disposed = false;
  private _state: EngineState = { kind: "stopped" };

  constructor(private readonly opts: EngineHostOptions) {}

  get state(): EngineState {
    return this._state;
  }

  private setState(s: EngineState): void {
    this._state = s;
    this.opts.onState?.(s);
  }

  /** The engine with `modelPath` loaded. Throws (quickly) while the engine is down and waiting to restart. */
  async ready(modelPath: string): Promise<{ client: EngineClient; info: ModelInfo }> {
    if (this.disposed) throw new Error("RepoTune is shutting down.");
    if (this.loading && this.loadedPath === modelPath) return this.loading;
    if (Date.now() < this.retryAt) {
      throw new Error(`The completion engine stopped unexpectedly; restarting in ${Math.ceil((this.retryAt - Date.now()) / 1000)} s.`);
    }
    // A start still in flight (another model path) finishes first, so its engine is disposed, never orphaned.
    const prior = this.loading;
    this.loadedPath = modelPath;
    this.loading = this.start(modelPath, prior);
    this.loading.catch(() => {
      if (this.loadedPath === modelPath) this.loading = undefined;
    });
    return this.loading;
  }

  private async start(modelPath: string, prior?: Promise<unknown>): Promise<{ client: EngineClient; info: ModelInfo }> {
    await prior?.catch(() => undefined);
    this.setState({ kind: "loading", modelPath });
    const previous = this.client;
    this.client = undefined;
    await previous?.dispose().catch(() => undefined);
    let client: EngineClient;
    try {
      client = await EngineClient.start({ enginePath: this.opts.enginePath, log: this.opts.log });
    } catch (err) {
      this.setState({ kind: "failed", modelPath, message: err instanceof Error ? err.message : String(err) });
      throw err;
    }
    if (this.disposed) {
      await client.dispose().catch(() => undefined);
      throw new Error("RepoTune is shutting down.");
    }
    this.client = client;
    client.onExit((code, signal) => {
      if (this.client !== client || this.disposed) return;
      this.client = undefined;
      this.loading = undefined;
      const wait = BACKOFF_MS[Math.min(this.crashes, BACKOFF_MS.length - 1)];
      this.crashes++;
      this.retryAt = Date.now() + wait;
      const message = `The completion engine exited (${signal ?? `code ${code}`}); it restarts on the next request after ${wait} ms.`;
      this.opts.log(message);
      this.setState({ kind: "crashed", message, retryAt: this.retryAt });
    });
    try {
      const info = await client.load(modelPath);
      this.crashes = 0;
      this.setState({ kind: "ready", modelPath, info });
      return { client, info };
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      this.setState({ kind: "failed", modelPath, message });
      throw err;
    }
  }

  /** The running engine if one is loaded, without starting anything. */
  current(): EngineClient | undefined {
    return this._state.kind === "ready" ? this.client : undefined;
  }

  async dispose(): Promise<void> {
    this.disposed = true;
    const c = this.client;
    this.client = undefined;
    await c?.dispose().catch(() => undefined);
  }
}
