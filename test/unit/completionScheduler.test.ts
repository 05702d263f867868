// The scheduling of inline completion requests, with real timers: what the editor does (cancel a request as it asks
// the next one, at every keystroke and every Alt+\) against generations that take a while (an engine starting).
import { test } from "node:test";
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { CompletionScheduler, type CancelToken, type Generate, type Trace } from "../../src/core/completionScheduler";

const key = (prefix: string, suffix = "") => ({ scope: "model|adapter|file:///scratch.js", prefix, suffix });

/** What vscode.CancellationTokenSource does, for code that only sees the token. */
class TokenSource {
  private cancelled = false;
  private readonly listeners = new Set<() => void>();
  readonly token: CancelToken = {
    isCancellationRequested: false,
    onCancellationRequested: (listener) => {
      this.listeners.add(listener);
      return { dispose: () => this.listeners.delete(listener) };
    },
  };
  cancel(): void {
    if (this.cancelled) return;
    this.cancelled = true;
    (this.token as { isCancellationRequested: boolean }).isCancellationRequested = true;
    for (const l of [...this.listeners]) l();
  }
}

/** A generation that takes `ms` and answers `text`; stopped by its signal (as the engine is: nothing comes back). */
function slow(text: string, ms: number, log: string[] = []): Generate {
  return (signal) =>
    new Promise((resolve) => {
      log.push("started");
      const timer = setTimeout(() => {
        log.push("finished");
        resolve(text);
      }, ms);
      signal.addEventListener("abort", () => {
        clearTimeout(timer);
        log.push("aborted");
        resolve(undefined);
      }, { once: true });
    });
}

const scheduler = () => new CompletionScheduler({ debounceMs: () => 10, abandonedGraceMs: 200 });

test("a request the editor cancels as it asks again at the same place hands its generation over", async () => {
  const s = scheduler();
  const log: string[] = [];
  const gen = slow('zebra-quartz-42";', 300, log);
  const first = new TokenSource();
  const a = s.request(key('const greeting = "'), gen, first.token, true);
  await sleep(60); // generating (the engine is still starting)
  first.cancel();
  await sleep(30); // the editor's own debounce before it asks again
  const second = new TokenSource();
  const trace: Trace = { outcome: "" };
  const b = await s.request(key('const greeting = "'), gen, second.token, true, trace);
  assert.equal(b, 'zebra-quartz-42";');
  assert.equal(trace.outcome, "joined a completion in flight");
  await a;
  assert.deepEqual(log, ["started", "finished"], "one generation, not stopped");
  assert.equal(s.stats.generations, 1);
  assert.equal(s.stats.abandoned, 0);
});

test("typing into a completion in flight, each keystroke's request cancelled by the next, gets the rest of it", async () => {
  const s = scheduler();
  const log: string[] = [];
  const gen = slow('"zebra";', 300, log);
  let source = new TokenSource();
  const requests = [s.request(key("const x = "), gen, source.token)];
  await sleep(40);
  for (const typed of ['"', '"z', '"ze']) {
    source.cancel();
    source = new TokenSource();
    requests.push(s.request(key(`const x = ${typed}`), gen, source.token));
    await sleep(50); // a keystroke every 50 ms: well within the grace period
  }
  assert.equal(await requests.at(-1), 'bra";');
  assert.deepEqual(log, ["started", "finished"]);
  assert.equal(s.stats.generations, 1);
});

test("a generation that nobody waits for any more is stopped after the grace period", async () => {
  const s = scheduler();
  const log: string[] = [];
  const source = new TokenSource();
  const pending = s.request(key("let v = "), slow("42;", 5_000, log), source.token);
  await sleep(40);
  source.cancel();
  await sleep(100);
  assert.deepEqual(log, ["started"], "stopped before the grace period ended");
  assert.equal(await pending, undefined);
  assert.deepEqual(log, ["started", "aborted"]);
  assert.equal(s.stats.abandoned, 1);
  assert.equal(s.stats.running, 0);
});

test("a request whose completion in flight does not start with what was typed asks for itself", async () => {
  const s = scheduler();
  const first = s.request(key("let v = "), slow("42;", 100));
  await sleep(30);
  const trace: Trace = { outcome: "" };
  const second = await s.request(key("let v = 9"), slow("9;", 50), undefined, false, trace);
  assert.equal(await first, "42;");
  assert.equal(second, "9;");
  assert.equal(trace.outcome, "generated");
  assert.equal(s.stats.generations, 2);
});

test("waiting for a completion in flight that cannot serve counts towards the debounce", async () => {
  const s = new CompletionScheduler({ debounceMs: () => 300 });
  const first = s.request(key("let v = "), slow("42;", 600));
  await sleep(320); // past the first request's debounce: generating
  let finishedAt = 0;
  void first.then(() => (finishedAt = performance.now()));
  let startedAt = 0;
  const generate: Generate = async () => {
    startedAt = performance.now();
    return "9;";
  };
  const trace: Trace = { outcome: "" };
  assert.equal(await s.request(key("let v = 9"), generate, undefined, false, trace), "9;");
  assert.equal(trace.outcome, "generated");
  // It waited about 580 ms for the first completion, longer than its own 300 ms debounce: it generates at once.
  assert.ok(startedAt - finishedAt < 150, `generated ${(startedAt - finishedAt).toFixed(0)} ms after the joined completion ended`);
});

test("a completion typed to its end: the next request asks the model at the new place", async () => {
  const s = scheduler();
  assert.equal(await s.request(key("let v = "), slow("42;", 20)), "42;");
  assert.equal(await s.request(key("let v = 4"), slow("unused", 20)), "2;", "typing along: from the cache");
  const trace: Trace = { outcome: "" };
  assert.equal(await s.request(key("let v = 42;"), slow("\nlet w = 1;", 20), undefined, false, trace), "\nlet w = 1;");
  assert.equal(trace.outcome, "generated");
  assert.equal(s.stats.generations, 2);
});

test("a stopped generation is not joined: the next request at that place generates again", async () => {
  const s = scheduler();
  const log: string[] = [];
  const source = new TokenSource();
  const first = s.request(key("let v = "), slow("42;", 5_000, log), source.token);
  await sleep(30);
  source.cancel();
  await sleep(250); // past the grace period: stopped
  assert.equal(await first, undefined);
  const again = await s.request(key("let v = "), slow("42;", 20, log), undefined, true);
  assert.equal(again, "42;");
  assert.deepEqual(log, ["started", "aborted", "started", "finished"]);
});

test("a burst of requests at new places: the newest wins, and two generations never run at once", async () => {
  const s = scheduler();
  let source = new TokenSource();
  const answers: Promise<string | undefined>[] = [];
  for (let i = 0; i < 30; i++) {
    source.cancel();
    source = new TokenSource();
    // Each keystroke types something no completion proposed: no request can serve another.
    answers.push(s.request(key(`let v${i} = `), slow(`${i};`, 40), source.token));
    await sleep(i % 3 === 0 ? 60 : 5);
  }
  assert.equal(await answers.at(-1), "29;");
  await Promise.all(answers);
  assert.ok(s.stats.maxRunning <= 1, `${s.stats.maxRunning} generations ran at once`);
  assert.ok(s.stats.generations < 30, `${s.stats.generations} generations for 30 requests`);
  assert.equal(s.stats.running, 0);
});

test("an answer made for this place is reused; an explicit request does not reuse one from before the typing", async () => {
  const s = scheduler();
  assert.equal(await s.request(key("const x = "), slow('"zebra";', 10)), '"zebra";');
  const trace: Trace = { outcome: "" };
  assert.equal(await s.request(key('const x = "z'), slow("never", 10), undefined, false, trace), 'ebra";');
  assert.equal(trace.outcome, "from the cache");
  assert.equal(await s.request(key('const x = "z'), slow('ebra"; // explicit', 10), undefined, true), 'ebra"; // explicit');
  s.clear();
  assert.equal(await s.request(key("const x = "), slow('"other";', 10)), '"other";', "cleared: asked again");
  assert.equal(s.stats.generations, 3);
});
