// Recent completions, so that asking again at the same place, or after typing what the completion proposed, answers
// at once without the engine; and the requests in flight, so that typing into a completion still being generated
// waits for it instead of starting (and cancelling) another.

export interface CompletionKey {
  /** What serves the completion: model and adapter. A different scope never shares results. */
  scope: string;
  /** Everything before the cursor (only its tail is kept). */
  prefix: string;
  /** Everything after the cursor (only its head is kept). */
  suffix: string;
}

interface Entry {
  scope: string;
  prefixLength: number;
  prefixTail: string;
  suffixHead: string;
}

const PREFIX_TAIL = 2048;
const SUFFIX_HEAD = 512;
/** Typing further than this into a completion is treated as a new request. */
const MAX_TYPED = 256;

/** A request in flight that another can wait for: its eventual text, and what the caller tracked it with. */
export interface Pending<H> {
  text: Promise<string | undefined>;
  handle: H | undefined;
}

/** `H`: what the caller keeps with a request in flight (the provider: its generation, to count who waits for it). */
export class CompletionCache<H = unknown> {
  // A Map iterates in insertion order: re-inserting on use makes it an LRU.
  private readonly done = new Map<string, Entry & { text: string }>();
  private readonly pending = new Set<Entry & { result: Promise<string | undefined>; handle: H | undefined }>();

  constructor(private readonly capacity = 64) {}

  /**
   * The text to show at `key` from a finished completion, or undefined when there is none to reuse. `exactOnly`: only
   * one asked at exactly this place, not one asked before the last keystrokes.
   */
  get(key: CompletionKey, exactOnly = false): string | undefined {
    const id = keyId(key);
    const exact = this.done.get(id);
    if (exact) {
      this.done.delete(id);
      this.done.set(id, exact);
      return exact.text;
    }
    if (exactOnly) return undefined;
    for (const e of [...this.done.values()].reverse()) {
      const typed = typedSince(e, key);
      const left = typed === null ? undefined : rest(e.text, typed);
      if (left !== undefined) return left;
    }
    return undefined;
  }

  put(key: CompletionKey, text: string): void {
    const id = keyId(key);
    this.done.delete(id);
    this.done.set(id, { ...entryOf(key), text });
    while (this.done.size > this.capacity) this.done.delete(this.done.keys().next().value as string);
  }

  /** Registers a request in flight; its result is cached when it arrives. */
  track(key: CompletionKey, result: Promise<string | undefined>, handle?: H): void {
    const entry = { ...entryOf(key), result, handle };
    this.pending.add(entry);
    void result.then(
      (text) => text !== undefined && this.put(key, text),
      () => undefined,
    ).finally(() => this.pending.delete(entry));
  }

  /**
   * A request in flight that this one only extends by typing: its eventual text with the typed characters removed
   * (undefined if the completion does not start with them). Undefined when no request in flight can serve this one;
   * `usable` passes over requests by what they were tracked with (e.g. one already stopped).
   */
  joinPending(key: CompletionKey, exactOnly = false, usable: (handle: H) => boolean = () => true): Pending<H> | undefined {
    for (const e of this.pending) {
      const typed = typedSince(e, key);
      if (typed === null || (exactOnly && typed !== "") || (e.handle !== undefined && !usable(e.handle))) continue;
      return {
        text: e.result.then((text) => (text === undefined ? undefined : rest(text, typed))),
        handle: e.handle,
      };
    }
    return undefined;
  }

  clear(): void {
    this.done.clear();
  }
}

/**
 * What is left of a completion after `typed`, or undefined when it does not start with it. A completion typed to its
 * end has nothing left: the cursor is at a new place, where the model is asked again.
 */
function rest(text: string, typed: string): string | undefined {
  if (typed === "") return text;
  return text.length > typed.length && text.startsWith(typed) ? text.slice(typed.length) : undefined;
}

function entryOf(key: CompletionKey): Entry {
  return {
    scope: key.scope,
    prefixLength: key.prefix.length,
    prefixTail: key.prefix.slice(-PREFIX_TAIL),
    suffixHead: key.suffix.slice(0, SUFFIX_HEAD),
  };
}

function keyId(key: CompletionKey): string {
  const e = entryOf(key);
  return `${e.scope}\u0000${e.prefixLength}\u0000${e.prefixTail}\u0000${e.suffixHead}`;
}

/** What was typed at the cursor since `e` was asked (possibly ""), or null if `key` is not `e` plus typing. */
function typedSince(e: Entry, key: CompletionKey): string | null {
  if (key.scope !== e.scope || key.suffix.slice(0, SUFFIX_HEAD) !== e.suffixHead) return null;
  const n = key.prefix.length - e.prefixLength;
  if (n < 0 || n > MAX_TYPED) return null;
  const before = key.prefix.slice(0, key.prefix.length - n);
  if (before.slice(-PREFIX_TAIL) !== e.prefixTail) return null;
  return key.prefix.slice(key.prefix.length - n);
}
