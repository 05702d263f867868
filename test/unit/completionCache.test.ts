import { test } from "node:test";
import assert from "node:assert/strict";
import { CompletionCache } from "../../src/core/completionCache";

const key = (prefix: string, suffix = "\n}", scope = "m|a") => ({ scope, prefix, suffix });

test("the same place answers from the cache; another scope, suffix or place does not", () => {
  const c = new CompletionCache();
  c.put(key("const x = "), '"zebra";');
  assert.equal(c.get(key("const x = ")), '"zebra";');
  assert.equal(c.get(key("const x = ", "\n}", "m|other")), undefined);
  assert.equal(c.get(key("const x = ", "changed")), undefined);
  assert.equal(c.get(key("const y = ")), undefined);
});

test("typing what the completion proposes answers with the rest of it; typing something else does not", () => {
  const c = new CompletionCache();
  c.put(key("const x = "), '"zebra";');
  assert.equal(c.get(key('const x = "ze')), 'bra";');
  assert.equal(c.get(key('const x = "zebra";')), undefined, "typed to its end: nothing left, the model is asked at the new place");
  assert.equal(c.get(key('const x = "zo')), undefined);
  // Deleting back past the original cursor is a different place.
  assert.equal(c.get(key("const x =")), undefined);
});

test("long prefixes: only the tail is compared, and typing is matched against the text before it", () => {
  const c = new CompletionCache();
  const long = "a".repeat(10_000) + "\nfoo(";
  c.put(key(long), "1, 2)");
  assert.equal(c.get(key(long + "1, ")), "2)");
  assert.equal(c.get(key("b" + long.slice(1) + "1, ")), "2)", "a change far above the cursor is outside the tail");
  assert.equal(c.get(key(long.slice(0, -1) + "((1")), undefined);
});

test("least recently used entries go first", () => {
  const c = new CompletionCache(2);
  c.put(key("a"), "1");
  c.put(key("b"), "2");
  assert.equal(c.get(key("a")), "1"); // a is now the most recent
  c.put(key("c"), "3");
  assert.equal(c.get(key("b")), undefined);
  assert.equal(c.get(key("a")), "1");
  assert.equal(c.get(key("c")), "3");
});

test("a request in flight serves typing into it, and its result is cached when it arrives", async () => {
  const c = new CompletionCache<string>();
  let resolve!: (t: string | undefined) => void;
  const inFlight = new Promise<string | undefined>((r) => (resolve = r));
  c.track(key("let v = "), inFlight, "generation 1");
  const joined = c.joinPending(key("let v = 4"));
  const other = c.joinPending(key("let v = 9"));
  assert.ok(joined && other);
  assert.equal(joined.handle, "generation 1", "the joiner learns which request it waits for");
  assert.equal(c.joinPending(key("let w = ")), undefined);
  resolve("42;");
  assert.equal(await joined.text, "2;");
  assert.equal(await other.text, undefined, "the completion does not start with what was typed");
  await new Promise((r) => setImmediate(r));
  assert.equal(c.get(key("let v = ")), "42;");
  assert.equal(c.joinPending(key("let v = 4")), undefined, "no longer in flight");
});

test("a failed request is forgotten", async () => {
  const c = new CompletionCache();
  const failing = Promise.reject(new Error("engine died"));
  c.track(key("x"), failing);
  await assert.rejects(c.joinPending(key("x"))!.text);
  await new Promise((r) => setImmediate(r));
  assert.equal(c.joinPending(key("x")), undefined);
  assert.equal(c.get(key("x")), undefined);
});

test("exactOnly (an explicit request) takes only answers made for exactly this place", async () => {
  const c = new CompletionCache();
  c.put(key("const x = "), '"zebra";');
  assert.equal(c.get(key('const x = "ze'), true), undefined);
  assert.equal(c.get(key("const x = "), true), '"zebra";');
  let resolve!: (t: string | undefined) => void;
  c.track(key("let v = "), new Promise<string | undefined>((r) => (resolve = r)));
  assert.equal(c.joinPending(key("let v = 4"), true), undefined);
  const same = c.joinPending(key("let v = "), true);
  assert.ok(same);
  resolve("42;");
  assert.equal(await same.text, "42;");
});
