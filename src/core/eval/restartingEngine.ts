// The engine the held-out evaluation runs on: if its process dies mid-evaluation (a crash, the OOM killer, a user's
// kill), a new one is started and the request that failed is asked again, so minutes of evaluation are not lost to
// one crash. A second death in a row on the same request, or more than MAX_RESTARTS in all, fails the evaluation
// with a message that says so (the adapter is kept on disk, not activated).
import type { CompleteResult, ModelInfo, Segment } from "../../protocol/engine";
import { EngineClient, EngineError, type EngineStartOptions } from "../engineClient";
import type { CompletionEngine } from "./serving";

const MAX_RESTARTS = 3;

export class RestartingEngine implements CompletionEngine {
  restarts = 0;

  private constructor(
    private client: EngineClient,
    readonly info: ModelInfo,
    private readonly start: EngineStartOptions,
    private readonly modelPath: string,
  ) {}

  /** Starts the engine process and loads `modelPath` into it. */
  static async start(opts: EngineStartOptions, modelPath: string): Promise<RestartingEngine> {
    const client = await EngineClient.start(opts);
    try {
      return new RestartingEngine(client, await client.load(modelPath), opts, modelPath);
    } catch (err) {
      await client.dispose().catch(() => undefined);
      throw err;
    }
  }

  tokenize(items: Segment[][]): Promise<number[][]> {
    return this.retrying(() => this.client.tokenize(items));
  }

  complete(p: Parameters<CompletionEngine["complete"]>[0], signal?: AbortSignal): Promise<CompleteResult> {
    return this.retrying(() => this.client.complete(p, signal));
  }

  async dispose(): Promise<void> {
    await this.client.dispose();
  }

  private async retrying<T>(request: () => Promise<T>): Promise<T> {
    try {
      return await request();
    } catch (err) {
      if (this.client.alive || (err instanceof EngineError && err.code === "cancelled")) throw err;
      if (this.restarts >= MAX_RESTARTS) {
        throw new EngineError("internal", `The engine process died ${this.restarts + 1} times during the evaluation; see engine.log in the run folder.`);
      }
      this.restarts++;
      this.start.log?.(`the engine process died during the evaluation; starting a new one (restart ${this.restarts} of at most ${MAX_RESTARTS})`);
      const client = await EngineClient.start(this.start);
      await client.load(this.modelPath);
      this.client = client;
      // Asked once more: if the new engine dies on the same request too, that error is the answer.
      return await request();
    }
  }
}
