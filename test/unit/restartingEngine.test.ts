// The evaluation's engine killed for real (SIGKILL to the engine process, as the OOM killer would): the request in
// flight and the ones after it are answered by a new engine, with the same greedy completions; too many deaths fail
// with a message, and nothing hangs.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import * as path from "node:path";
import { RestartingEngine } from "../../src/core/eval/restartingEngine";
import { EngineError } from "../../src/core/engineClient";
import { promptFormatFor } from "../../src/core/promptFormat";
import { enginePath, removeDir, tempDir, tinyModel } from "./support/pipeline";

let dir: string;
let modelPath: string;

before(async () => {
  dir = tempDir("restarting-engine");
  modelPath = await tinyModel(path.join(dir, "cache"));
});
after(() => removeDir(dir));

/** The engine processes this test process started (children running dist/engine.mjs). */
function engineChildren(): number[] {
  const pids: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === process.pid && readFileSync(`/proc/${name}/cmdline`, "utf8").includes("engine.mjs")) pids.push(Number(name));
    } catch {
      // gone while we looked
    }
  }
  return pids;
}

function killEngines(): void {
  const pids = engineChildren();
  assert.equal(pids.length, 1, `expected one engine process, found ${pids.length}`);
  process.kill(pids[0]!, "SIGKILL");
}

describe("the evaluation's engine restarts when its process dies", () => {
  test("a request in flight and the ones after it get the same answers from a new engine", { timeout: 120_000 }, async () => {
    const logs: string[] = [];
    const engine = await RestartingEngine.start({ enginePath, log: (l) => logs.push(l) }, modelPath);
    try {
      const format = promptFormatFor(engine.info);
      const ask = (prefix: string) => engine.complete({ prompt: format.fim({ prefix, suffix: "\n" }), adapterPath: null, maxTokens: 16 });
      const prefixes = ["const a = ", "function f(x) {\n  return ", "let total = 0;\nfor (const x of xs) "];
      const before = [];
      for (const p of prefixes) before.push((await ask(p)).text);

      const inFlight = ask(prefixes[0]!);
      killEngines();
      assert.equal((await inFlight).text, before[0], "the request in flight was not answered again");
      for (const [i, p] of prefixes.entries()) assert.equal((await ask(p)).text, before[i]);
      assert.equal(engine.restarts, 1);
      assert.ok(logs.some((l) => /died during the evaluation; starting a new one/.test(l)), logs.join("\n"));
      const tokens = await engine.tokenize([[{ text: "const", special: false }]]);
      assert.ok(tokens[0]!.length > 0);
    } finally {
      await engine.dispose();
    }
    assert.deepEqual(engineChildren(), [], "an engine process outlived dispose()");
  });

  test("an engine that keeps dying fails the evaluation with a message, without hanging", { timeout: 120_000 }, async () => {
    const engine = await RestartingEngine.start({ enginePath }, modelPath);
    const format = promptFormatFor(engine.info);
    const ask = () => engine.complete({ prompt: format.fim({ prefix: "const a = ", suffix: "\n" }), adapterPath: null, maxTokens: 8 });
    try {
      for (let i = 0; i < 3; i++) {
        killEngines();
        await ask();
      }
      assert.equal(engine.restarts, 3);
      killEngines();
      await assert.rejects(ask(), (err: unknown) => err instanceof EngineError && /died 4 times during the evaluation/.test(err.message));
    } finally {
      await engine.dispose().catch(() => undefined);
    }
  });
});
