// The extension host's and the CLI's handle on the engine process (dist/engine.mjs, src/engine/main.ts).
// Requests and responses are checked against the one engine schema module on both sides of the channel.
import { fork, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { createInterface } from "node:readline";
import type { Readable } from "node:stream";
import type { z } from "zod";
import {
  EngineResponse,
  EngineResults,
  type CompleteResult,
  type EngineErrorCode,
  type EngineStats,
  type EngineStatus,
  type EngineMethod,
  type EngineRequest,
  type ModelInfo,
  type Segment,
} from "../protocol/engine";

export type EngineErrorCodeValue = z.infer<typeof EngineErrorCode>;

export class EngineError extends Error {
  constructor(
    readonly code: EngineErrorCodeValue,
    message: string,
  ) {
    super(message);
    this.name = "EngineError";
  }
}

type RequestInput = z.input<typeof EngineRequest>;
export type EngineParams<M extends EngineMethod> = Extract<RequestInput, { method: M }>["params"];
export type EngineResult<M extends EngineMethod> = z.infer<(typeof EngineResults)[M]>;

export interface EngineStartOptions {
  /** Path of the engine bundle, dist/engine.mjs. */
  enginePath: string;
  /** Receives the engine's stderr, line by line. */
  log?: (line: string) => void;
}

export interface CompleteParams {
  prompt: Segment[];
  adapterPath: string | null;
  maxTokens: number;
  stop?: string[];
  /**
   * Cancel every completion of this client still in flight before this one is sent, so at most one generation
   * runs and none wait behind it (inline completions: only the latest keystroke's request matters).
   */
  supersede?: boolean;
}

interface Pending {
  method: EngineMethod;
  resolve: (value: unknown) => void;
  reject: (err: EngineError) => void;
}

type ExitListener = (code: number | null, signal: string | null) => void;

const DISPOSE_GRACE_MS = 5000;

export class EngineClient {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  /** Ids of completion requests not yet answered. */
  private readonly completions = new Set<number>();
  private readonly exitListeners: ExitListener[] = [];
  private exited = false;
  private disposing = false;
  private readonly exitPromise: Promise<void>;

  private constructor(
    private readonly child: ChildProcess,
    private readonly log: (line: string) => void,
  ) {
    this.exitPromise = new Promise((resolve) => {
      child.once("exit", (code, signal) => {
        this.exited = true;
        const how = signal !== null ? `was killed by ${signal}` : `exited with code ${code}`;
        this.rejectAll(
          new EngineError(
            "internal",
            this.disposing
              ? "The engine was shut down before it answered."
              : `The engine process ${how} before it answered; the RepoTune log shows why it stopped.`,
          ),
        );
        for (const listener of this.exitListeners.splice(0)) {
          try {
            listener(code, signal);
          } catch (err) {
            this.log(`engine exit listener failed: ${String(err)}`);
          }
        }
        resolve();
      });
    });
    child.on("message", (message: unknown) => this.onMessage(message));
    // An IPC failure (e.g. writing to a channel that just closed) surfaces here; the exit handler does the cleanup.
    child.on("error", (err) => this.log(`engine process error: ${err.message}`));
  }

  static async start(opts: EngineStartOptions): Promise<EngineClient> {
    const log = opts.log ?? ((line: string) => process.stderr.write(`${line}\n`));
    if (!existsSync(opts.enginePath)) {
      throw new EngineError("internal", `The engine bundle ${opts.enginePath} does not exist. Build RepoTune (node esbuild.mjs) or reinstall the extension.`);
    }
    const child = fork(opts.enginePath, [], {
      serialization: "json",
      stdio: ["ignore", "pipe", "pipe", "ipc"],
      // The parent's flags (inspector ports, loaders of the extension host) must not leak into the engine.
      execArgv: [],
      // glibc gives each thread that allocates its own malloc arena, and memory freed in one is seldom returned: with
      // llama.cpp's threads, every adapter switch (a context freed, one made) left engine RSS higher, by about 170 MB
      // over 900 switches. One arena kept it flat at the same speed (bench/soak.mjs --churn). Other C libraries
      // ignore the variable; a value set by the user wins.
      env: { ...process.env, MALLOC_ARENA_MAX: process.env.MALLOC_ARENA_MAX ?? "1" },
    });
    forwardLines(child.stdout, log);
    forwardLines(child.stderr, log);
    await new Promise<void>((resolve, reject) => {
      child.once("spawn", resolve);
      child.once("error", (err) =>
        reject(new EngineError("internal", `Could not start the engine process (${opts.enginePath}): ${err.message}.`)),
      );
    });
    return new EngineClient(child, log);
  }

  /** The engine's process id, for diagnostics. */
  get pid(): number | undefined {
    return this.child.pid;
  }

  get alive(): boolean {
    return !this.exited && this.child.connected;
  }

  onExit(listener: ExitListener): void {
    if (this.exited) listener(this.child.exitCode, this.child.signalCode);
    else this.exitListeners.push(listener);
  }

  /** `vocabOnly`: the model's tokenizer alone (no weights, no GPU), for an engine that only tokenizes. */
  load(modelPath: string, gpu: "auto" | "off" = "auto", opts: { vocabOnly?: boolean } = {}): Promise<ModelInfo> {
    return this.request("load", { modelPath, gpu, vocabOnly: opts.vocabOnly ?? false });
  }

  async tokenize(items: Segment[][]): Promise<number[][]> {
    return (await this.request("tokenize", { items })).tokens;
  }

  async detokenize(tokens: number[]): Promise<string> {
    return (await this.request("detokenize", { tokens })).text;
  }

  /**
   * Aborting the signal rejects the promise at once with code "cancelled" and stops the generation in the engine
   * (within a token; the engine's status() tells when it stopped).
   */
  complete(p: CompleteParams, signal?: AbortSignal): Promise<CompleteResult> {
    if (signal?.aborted) return Promise.reject(new EngineError("cancelled", "The completion was cancelled before it started."));
    if (p.supersede) {
      for (const id of [...this.completions]) this.cancel(id, "The completion was superseded by a newer completion request.");
    }
    const { id, result } = this.send("complete", { prompt: p.prompt, adapterPath: p.adapterPath, maxTokens: p.maxTokens, stop: p.stop ?? [] });
    this.completions.add(id);
    const onAbort = (): void => this.cancel(id, "The completion was cancelled.");
    signal?.addEventListener("abort", onAbort, { once: true });
    return result.finally(() => {
      this.completions.delete(id);
      signal?.removeEventListener("abort", onAbort);
    });
  }

  /** Frees the model and its contexts in the engine (GPU memory included); the process stays up for a later load. */
  async release(): Promise<boolean> {
    return (await this.request("release", {})).released;
  }

  /** The loaded model and the engine's record of its latest completions; answered even while one runs. */
  status(): Promise<EngineStatus> {
    return this.request("status", {});
  }

  /** Live contexts and sequences, completions by outcome and the engine's memory; answered even while one runs. */
  stats(): Promise<EngineStats> {
    return this.request("stats", {});
  }

  request<M extends EngineMethod>(method: M, params: EngineParams<M>): Promise<EngineResult<M>> {
    return this.send(method, params).result;
  }

  /** Asks the engine to release the model and exit; kills it if it has not exited after a grace period. */
  async dispose(): Promise<void> {
    if (this.exited) return;
    this.disposing = true;
    if (this.alive) {
      this.request("dispose", {}).catch(() => undefined);
      const timer = new Promise<void>((resolve) => setTimeout(resolve, DISPOSE_GRACE_MS).unref());
      await Promise.race([this.exitPromise, timer]);
    }
    if (!this.exited) {
      this.log("the engine did not exit after dispose; killing it");
      this.child.kill("SIGKILL");
      await this.exitPromise;
    }
  }

  private send<M extends EngineMethod>(method: M, params: EngineParams<M>): { id: number; result: Promise<EngineResult<M>> } {
    const id = this.nextId++;
    const result = new Promise<EngineResult<M>>((resolve, reject) => {
      if (!this.alive) {
        reject(new EngineError("internal", "The engine process is not running (it exited or was shut down): start the engine again."));
        return;
      }
      this.pending.set(id, { method, resolve: resolve as (value: unknown) => void, reject });
      try {
        this.child.send({ id, method, params }, (err) => {
          if (err) this.settleError(id, new EngineError("internal", `Could not send the ${method} request to the engine: ${err.message}.`));
        });
      } catch (err) {
        this.settleError(id, new EngineError("internal", `Could not send the ${method} request to the engine: ${String(err)}.`));
      }
    });
    return { id, result };
  }

  // The caller hears at once; the engine's later "cancelled" answer finds no pending request and is dropped.
  private cancel(id: number, message: string): void {
    if (!this.pending.has(id)) return;
    this.settleError(id, new EngineError("cancelled", message));
    if (this.alive) this.request("cancel", { requestId: id }).catch(() => undefined);
  }

  private onMessage(message: unknown): void {
    const parsed = EngineResponse.safeParse(message);
    if (!parsed.success) {
      this.log(`ignoring a malformed message from the engine: ${JSON.stringify(message)?.slice(0, 300)}`);
      return;
    }
    const response = parsed.data;
    const pending = this.pending.get(response.id);
    if (pending === undefined) {
      // Id -1 answers a request the engine could not even read an id from. Cancelled requests were settled already.
      if (!response.ok && response.error.code !== "cancelled") this.log(`engine error for unknown request #${response.id}: ${response.error.message}`);
      return;
    }
    this.pending.delete(response.id);
    if (!response.ok) {
      pending.reject(new EngineError(response.error.code, response.error.message));
      return;
    }
    const result = EngineResults[pending.method].safeParse(response.result);
    if (result.success) pending.resolve(result.data);
    else pending.reject(new EngineError("internal", `The engine sent a malformed ${pending.method} result: ${result.error.message}`));
  }

  private settleError(id: number, err: EngineError): void {
    const pending = this.pending.get(id);
    if (pending === undefined) return;
    this.pending.delete(id);
    pending.reject(err);
  }

  private rejectAll(err: EngineError): void {
    const all = [...this.pending.values()];
    this.pending.clear();
    for (const p of all) p.reject(err);
  }
}

function forwardLines(stream: Readable | null, log: (line: string) => void): void {
  if (stream === null) return;
  createInterface({ input: stream, crlfDelay: Infinity }).on("line", log);
}
