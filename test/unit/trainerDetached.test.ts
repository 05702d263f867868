// A window reload for real: a "window" (a child Node process running tune() with the trainer detached, as the
// extension does) is SIGKILLed mid-training, as a reload ends the extension host. The trainer goes on; the next
// "window" (this process) attaches to it and finishes the run: every step exactly once in the run's history, the
// adapter written, evaluated and kept as an uninterrupted run's would be.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import * as readline from "node:readline";
import { tune } from "../../src/core/tune";
import { resumeRun } from "../../src/core/resume";
import { readEvents } from "../../src/core/runStore";
import { attachTrainer, canAttach, otherFollower, trainerFiles, trainerRunning } from "../../src/core/trainerDetached";
import type { RunEvent } from "../../src/protocol/run";
import { enginePath, makeGitRepo, python, removeDir, sampleSources, tempDir, tinyModel, trainerRoot } from "./support/pipeline";

const ROLE = "REPOTUNE_TEST_WINDOW";

if (process.env[ROLE]) {
  // The first window: fine-tunes with the trainer detached and prints its events, until it is killed.
  const { folder, modelPath, runsRoot } = JSON.parse(process.env[ROLE]!) as { folder: string; modelPath: string; runsRoot: string };
  void tune({
    folder, modelPath, python, trainerRoot, enginePath, runsRoot, detached: true,
    settings: { steps: 150, seqLen: 64, batch: 4, rank: 4 }, evaluation: { maxTasks: 10 },
    onEvent: (e) => process.stdout.write(JSON.stringify(e) + "\n"),
  });
} else {
  let dir: string;
  let modelPath: string;
  let repo: string;

  before(async () => {
    dir = tempDir("detached");
    modelPath = await tinyModel(path.join(dir, "cache"));
    repo = makeGitRepo(path.join(dir, "repo"), sampleSources(6));
  });
  after(() => removeDir(dir));

  describe("following a trainer's events file", () => {
    test("events written while following arrive once, a runaway line is reported by its start and skipped, the end is seen", { timeout: 60_000 }, async () => {
      const runDir = path.join(dir, "follow");
      mkdirSync(runDir, { recursive: true });
      const files = trainerFiles(runDir);
      const step = (n: number, t: number) => JSON.stringify({ time: t, v: 1, event: "step", step: n, steps: 9, loss: 1 / n, lr: 0.1, tokens_per_s: 10, elapsed_s: n });
      writeFileSync(files.events, `${step(1, 1)}\n${step(2, 2)}\n`);
      // A real process whose command line names the trainer package and this run, as the trainer's does; it ends
      // after writing the rest of the file (a line of 3 MB, two more steps, the stop).
      const script = [
        "import sys, time, json",
        "time.sleep(1)",
        "f = open(sys.argv[1], 'a')",
        "f.write('x' * 3_000_000); f.flush(); time.sleep(0.5); f.write('y' * 10 + '\\n')",
        `f.write(${JSON.stringify(step(3, 3))} + '\\n' + ${JSON.stringify(step(4, 4))} + '\\n'); f.flush(); time.sleep(0.5)`,
        `f.write(json.dumps({"time": 5, "v": 1, "event": "stopped", "step": 4, "checkpoint": None}) + '\\n'); f.close()`,
      ].join("\n");
      const fake = spawn(python, ["-c", script, files.events, "repotune_trainer", runDir], { stdio: "ignore" });
      writeFileSync(files.pid, JSON.stringify({ pid: fake.pid, started: Date.now(), offset: 0 }));
      assert.ok(canAttach(runDir), "a live process naming the run is not attachable");
      const seen: number[] = [];
      const malformed: string[] = [];
      const exit = await attachTrainer(runDir, 1, {
        onEvent: (e) => seen.push(e.event === "step" ? e.step : -1),
        onMalformed: (line, reason) => malformed.push(`${line.length}:${reason}`),
      })!;
      assert.deepEqual(seen, [2, 3, 4, -1], "events before `seenUntil` came again, or some were lost");
      assert.equal(exit.final?.event, "stopped");
      assert.equal(malformed.length, 1, malformed.join("\n"));
      assert.match(malformed[0]!, /^1001:a line longer than any trainer event/);
      assert.ok(!existsSync(files.pid), "the pid file outlived the process");
    });
  });

  describe("a detached trainer outlives its window", () => {
    test("the window killed mid-training: the trainer goes on, the next window attaches and finishes the run", { timeout: 240_000 }, async () => {
      const runsRoot = path.join(dir, "runs");
      const window = spawn(process.execPath, [__filename], {
        env: { ...process.env, [ROLE]: JSON.stringify({ folder: repo, modelPath, runsRoot }) },
        stdio: ["ignore", "pipe", "inherit"],
      });
      let runDir = "";
      let killedAt = 0;
      for await (const line of readline.createInterface({ input: window.stdout! })) {
        const e = JSON.parse(line) as RunEvent;
        if (e.type === "run") runDir = e.runDir;
        if (e.type === "trainer" && e.event.event === "step" && e.event.step >= 5) {
          killedAt = e.event.step;
          // While that window lives, another one would see it follows the run (and leave the run to it).
          assert.equal(otherFollower(runDir), window.pid, "the lease does not name the window that follows the run");
          window.kill("SIGKILL");
          break;
        }
      }
      await new Promise((r) => window.once("exit", r));
      assert.ok(runDir && killedAt >= 5, "the first window never reached step 5");
      // The run's folder (the repository's code, an adapter that learned it) is the user's alone.
      for (const d of [runDir, path.dirname(runDir)]) assert.equal(statSync(d).mode & 0o077, 0, `${d} is open to others: ${(statSync(d).mode & 0o777).toString(8)}`);
      const pid = (JSON.parse(readFileSync(trainerFiles(runDir).pid, "utf8")) as { pid: number }).pid;
      assert.ok(trainerRunning(runDir), `the trainer (pid ${pid}) died with its window`);
      assert.ok(canAttach(runDir));
      assert.equal(otherFollower(runDir), undefined, "the killed window still counts as following the run");

      const attached: RunEvent[] = [];
      const result = await resumeRun({
        runDir, python, trainerRoot, enginePath, attach: true, detached: true, evaluation: { maxTasks: 10 },
        onEvent: (e) => attached.push(e),
      });
      assert.equal(result.status, "done", result.error ?? "");
      assert.ok(result.adapterPath && existsSync(result.adapterPath), "no adapter after the attached run finished");
      assert.ok(result.evaluation, "the attached run was not evaluated");
      assert.ok(attached.some((e) => e.type === "trainer" && e.event.event === "done"));
      assert.ok(!attached.some((e) => e.type === "trainer" && e.event.event === "start"), "events the first window saw came again");

      // One continuous history: every step once, in order, across both windows.
      const steps = (await readEvents(path.join(runDir, "events.jsonl")))
        .flatMap((e) => (e.type === "trainer" && e.event.event === "step" ? [e.event.step] : []));
      const last = steps.at(-1)!;
      assert.deepEqual(steps, Array.from({ length: last }, (_, i) => i + 1), "steps lost or repeated across the reload");
      assert.ok(last > killedAt, `the run ended at step ${last}, where the first window was killed (${killedAt})`);
      assert.ok(!existsSync(trainerFiles(runDir).pid), "the pid file outlived the trainer");
      assert.equal(canAttach(runDir), false, "a finished run still offers to attach");
    });
  });
}
