// When inline completion requests generate, and which answer each gets. Free of VS Code (tested in unit tests with
// real timers and real promises); the provider builds the key and the generation.
//
// Typing must never wait on the model: a request first looks for an answer it already has (the cache, or a
// completion in flight that the user is typing into or asks for again), then waits out the debounce, and only the
// newest request generates; a newer one aborts the generation still running, so two never run at once.
//
// The editor cancels a request as soon as it asks the next one (every keystroke, every Alt+\): a generation is
// stopped only when nobody waits for it any more, after a moment in which the next request can take it over.
import { CompletionCache, type CompletionKey } from "./completionCache";

/** The part of vscode.CancellationToken used here. */
export interface CancelToken {
  readonly isCancellationRequested: boolean;
  onCancellationRequested(listener: () => void): { dispose(): void };
}

/** What became of one request, for the debug log. */
export interface Trace {
  outcome: string;
}

/** Generates the completion for the request's key; `signal` aborts it. Undefined: nothing to propose. */
export type Generate = (signal: AbortSignal, trace: Trace) => Promise<string | undefined>;

/** A generation in flight and how many requests wait for it (the one that started it, and those that joined it). */
interface Generation {
  abort: AbortController;
  settled: Promise<unknown>;
  waiters: number;
}

export interface SchedulerOptions {
  /** Read at each request (a setting). */
  debounceMs: () => number;
  /** How long a generation nobody waits for any more keeps running, for a request that follows at once. */
  abandonedGraceMs?: number;
}

const ABANDONED_GRACE_MS = 500;

export class CompletionScheduler {
  private latest = 0;
  private generating: Generation | null = null;
  private readonly cache = new CompletionCache<Generation>();
  /** For tests: a burst of keystrokes must start few generations, and never two at once. */
  readonly stats = { requests: 0, generations: 0, running: 0, maxRunning: 0, cacheHits: 0, joined: 0, abandoned: 0 };

  constructor(private readonly opts: SchedulerOptions) {}

  /**
   * The text to show for `key`, or undefined. `fresh` (an explicit request): only an answer made for exactly this
   * place, not one reused from before the last keystrokes (a FIM prompt with the typed text in its prefix is not the
   * prompt that produced it).
   */
  async request(key: CompletionKey, generate: Generate, token?: CancelToken, fresh = false, trace: Trace = { outcome: "" }): Promise<string | undefined> {
    this.stats.requests++;
    const cached = this.cache.get(key, fresh);
    if (cached !== undefined) {
      this.stats.cacheHits++;
      trace.outcome = "from the cache";
      return cached || undefined;
    }
    // The debounce starts now and runs while a joined completion is awaited: when that one cannot serve this request,
    // the time spent waiting for it counts towards the debounce instead of coming before it.
    const ticket = ++this.latest;
    const debounced = new Promise((r) => setTimeout(r, this.opts.debounceMs()));
    // A request in flight that this one extends by typing (or asks again for exactly): its answer if it starts with
    // what was typed since; else (it did not, or it was stopped) this request asks for itself.
    const joined = this.cache.joinPending(key, fresh, (g) => !g.abort.signal.aborted);
    if (joined) {
      this.stats.joined++;
      const hold = joined.handle && this.hold(joined.handle, token);
      const text = await joined.text.catch(() => undefined).finally(() => hold?.dispose());
      if (text !== undefined) {
        trace.outcome = "joined a completion in flight";
        return text || undefined;
      }
      if (token?.isCancellationRequested) {
        trace.outcome = "joined a completion in flight that had nothing for it";
        return undefined;
      }
    }

    await debounced;
    if (token?.isCancellationRequested || ticket !== this.latest) {
      trace.outcome = ticket !== this.latest ? "a newer request came during the debounce" : "cancelled during the debounce";
      return undefined;
    }
    trace.outcome = "generated";

    // Only the newest request generates: one still running was for text the user has typed past. It is aborted
    // and waited for (the engine stops within a token), so that two generations never run at once.
    const previous = this.generating;
    const mine: Generation = { abort: new AbortController(), settled: Promise.resolve(), waiters: 0 };
    const hold = this.hold(mine, token);
    const result = (async () => {
      if (previous) {
        previous.abort.abort();
        await previous.settled;
      }
      if (mine.abort.signal.aborted || ticket !== this.latest) {
        trace.outcome = "superseded before generating";
        return undefined;
      }
      this.stats.generations++;
      this.stats.running++;
      this.stats.maxRunning = Math.max(this.stats.maxRunning, this.stats.running);
      try {
        return await generate(mine.abort.signal, trace);
      } finally {
        this.stats.running--;
      }
    })();
    mine.settled = result.catch(() => undefined);
    this.generating = mine;
    this.cache.track(key, result, mine);
    try {
      return (await result) || undefined;
    } finally {
      hold.dispose();
      if (this.generating === mine) this.generating = null;
    }
  }

  /** Forgets every answer (another adapter or model serves now). */
  clear(): void {
    this.cache.clear();
  }

  dispose(): void {
    this.generating?.abort.abort();
  }

  /**
   * Counts `token`'s request among those waiting for `g` until disposed. When the last one is cancelled, `g` is
   * stopped after the grace period unless another request has joined it by then.
   */
  private hold(g: Generation, token?: CancelToken): { dispose(): void } {
    g.waiters++;
    let held = true;
    const release = (): void => {
      if (!held) return;
      held = false;
      if (--g.waiters > 0) return;
      const timer = setTimeout(() => {
        if (g.waiters > 0 || g.abort.signal.aborted) return;
        this.stats.abandoned++;
        g.abort.abort();
      }, this.opts.abandonedGraceMs ?? ABANDONED_GRACE_MS);
      void g.settled.then(() => clearTimeout(timer));
    };
    const sub = token?.onCancellationRequested(release);
    return {
      // Done waiting without being cancelled: the generation has settled, there is nothing to stop.
      dispose: () => {
        sub?.dispose();
        if (held) {
          held = false;
          g.waiters--;
        }
      },
    };
  }
}
