// Tokenizing a large dataset on more than one core. llama.cpp tokenizes on the engine's one thread, and a dataset
// build of a large repository spends most of its time there; this adds engines that load only the model's
// vocabulary (no weights, no GPU: llama.cpp's vocab_only) and splits each batch among all of them, in order. The
// tokens are the same whichever engine makes them: the same vocabulary and code (test/unit/tokenizerPool.test.ts).
import { availableParallelism } from "node:os";
import type { Segment } from "../protocol/engine";
import type { Tokenizer } from "./dataset/build";
import { EngineClient } from "./engineClient";
import { messageOf } from "./errors";

/** Characters the first engine tokenizes alone before helpers start: a small folder never starts one. */
const START_AFTER_CHARS = 4_000_000;
/** Helpers at most, whatever the cores: each is a process of its own, with the vocabulary in memory. */
const MAX_HELPERS = 3;

export interface TokenizerPoolOptions {
  enginePath: string;
  modelPath: string;
  /** Engines added beside the first (default: one per core beyond the first, at most MAX_HELPERS). */
  helpers?: number;
  startAfterChars?: number;
  log?: (line: string) => void;
}

export class TokenizerPool implements Tokenizer {
  private helpers: EngineClient[] = [];
  private starting: Promise<void> | null = null;
  private chars = 0;
  private disposed = false;
  private readonly wanted: number;

  constructor(private readonly first: Tokenizer, private readonly opts: TokenizerPoolOptions) {
    this.wanted = Math.max(0, Math.min(MAX_HELPERS, opts.helpers ?? availableParallelism() - 1));
  }

  /** Helpers running now (for tests and the log). */
  get helperCount(): number {
    return this.helpers.filter((h) => h.alive).length;
  }

  async tokenize(items: Segment[][]): Promise<number[][]> {
    const sizes = items.map((segments) => segments.reduce((n, s) => n + s.text.length, 0));
    this.chars += sizes.reduce((a, b) => a + b, 0);
    // Started in the background: batches go on to the first engine until a helper is ready.
    if (this.starting === null && this.wanted > 0 && this.chars >= (this.opts.startAfterChars ?? START_AFTER_CHARS)) {
      this.starting = this.startHelpers();
    }
    const ready = this.helpers.filter((h) => h.alive);
    if (ready.length === 0 || items.length < 2) return this.first.tokenize(items);
    // Contiguous shares of about the same number of characters, one per engine, put back together in order.
    const shares = splitBySize(sizes, ready.length + 1);
    const parts = await Promise.all(
      shares.map(([from, to], k) => (k === 0 ? this.first.tokenize(items.slice(from, to)) : this.onHelper(ready[k - 1], items.slice(from, to)))),
    );
    return parts.flat();
  }

  /** A helper that fails (it died, or ran out of memory) is let go, and its share goes to the first engine. */
  private async onHelper(helper: EngineClient, items: Segment[][]): Promise<number[][]> {
    if (items.length === 0) return [];
    try {
      return await helper.tokenize(items);
    } catch (err) {
      if (this.helpers.includes(helper)) {
        this.helpers = this.helpers.filter((h) => h !== helper);
        this.opts.log?.(`A tokenizing engine failed (${messageOf(err)}); the others go on.`);
        void helper.dispose().catch(() => undefined);
      }
      return this.first.tokenize(items);
    }
  }

  private async startHelpers(): Promise<void> {
    const started = Date.now();
    for (let i = 0; i < this.wanted && !this.disposed; i++) {
      let helper: EngineClient | null = null;
      try {
        helper = await EngineClient.start({ enginePath: this.opts.enginePath, log: () => undefined });
        await helper.load(this.opts.modelPath, "off", { vocabOnly: true });
      } catch (err) {
        // Tokenizing goes on with the engines there are.
        this.opts.log?.(`A second tokenizing engine could not start (${messageOf(err)}); tokenizing on ${this.helpers.length + 1}.`);
        await helper?.dispose().catch(() => undefined);
        return;
      }
      if (this.disposed) {
        await helper.dispose();
        return;
      }
      this.helpers.push(helper);
    }
    if (this.helpers.length > 0) this.opts.log?.(`Tokenizing on ${this.helpers.length + 1} engines (${this.helpers.length} started in ${Date.now() - started} ms).`);
  }

  /** Stops the helpers (not the first engine, which belongs to the caller). */
  async dispose(): Promise<void> {
    this.disposed = true;
    await this.starting;
    const helpers = this.helpers;
    this.helpers = [];
    await Promise.all(helpers.map((h) => h.dispose().catch(() => undefined)));
  }
}

/** `count` contiguous [from, to) ranges of `sizes` holding about the same total each (some may be empty). */
export function splitBySize(sizes: readonly number[], count: number): [number, number][] {
  const total = sizes.reduce((a, b) => a + b, 0);
  const out: [number, number][] = [];
  let from = 0;
  let sum = 0;
  for (let k = 1; k <= count; k++) {
    const goal = (total * k) / count;
    let to = from;
    while (to < sizes.length && (k === count || sum + sizes[to] / 2 <= goal)) sum += sizes[to++];
    out.push([from, to]);
    from = to;
  }
  return out;
}
