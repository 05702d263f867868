// RepoTune end to end inside a real VS Code: fine-tune the fixture workspace with the tiny model, then see the
// trained adapter in the completions, both through the extension's API and through the editor's inline suggest.
// Tests run in order and share the run: each later test needs the adapter the fine-tune produced.
import * as assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import * as readline from "node:readline";
import * as fs from "node:fs";
import * as path from "node:path";
import * as vscode from "vscode";
import type { RepoTuneApi } from "../../../src/extension";
import { parseSuggestion } from "../../../src/core/runSnapshot";
import expectations from "../../fixtures/expectations.json";

const { prefix: PREFIX, marker: MARKER } = expectations["sample-repo"];
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

suite("RepoTune in VS Code", () => {
  let api: RepoTuneApi;

  suiteSetup(async () => {
    const extension = vscode.extensions.getExtension<RepoTuneApi>("repotune.repotune");
    assert.ok(extension, "The extension repotune.repotune is not loaded in this window.");
    api = await extension.activate();
  });

  test("activates and registers its commands", async () => {
    const commands = await vscode.commands.getCommands(true);
    for (const id of ["repotune.fineTune", "repotune.stopTraining", "repotune.showRun"]) {
      assert.ok(commands.includes(id), `command ${id} is not registered`);
    }
    assert.equal(api.state().activeAdapter, null, "a fresh workspace must start without an adapter");
  });

  test("fine-tunes the workspace and activates the new adapter", async () => {
    const started = Date.now();
    const result = await api.runFineTune();
    assert.ok(result, "runFineTune() returned null: a run was already in progress");
    console.log(
      `fine-tune: ${result.status} in ${((Date.now() - started) / 1000).toFixed(1)} s, ` +
        `val loss ${result.valLossBase} -> ${result.valLoss}, dataset ${JSON.stringify(result.summary)}`,
    );
    assert.equal(result.status, "done", `the fine-tune did not finish: ${result.error}`);
    assert.ok(result.adapterPath && fs.statSync(result.adapterPath).size > 0, "no adapter file was written");
    assert.ok(result.manifestPath && fs.existsSync(result.manifestPath), "no manifest was written");
    assert.ok(result.summary && result.summary.filesUsed >= 4, "the fixture's source files were not all used");
    assert.ok(
      result.valLossBase !== null && result.valLoss !== null && result.valLoss < result.valLossBase,
      `training did not lower the validation loss (${result.valLossBase} -> ${result.valLoss})`,
    );
    const events = fs
      .readFileSync(path.join(result.runDir, "events.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line));
    assert.ok(events.some((e) => e.type === "trainer" && e.event.event === "step"), "events.jsonl has no training step");
    assert.equal(api.state().activeAdapter, result.adapterPath, "the new adapter did not become the active one");
  });

  test("the engine completes the marker with the adapter and not without it", async () => {
    // The situation of the editor test below: the prefix typed into an empty file, nothing after the cursor.
    let started = Date.now();
    const withAdapter = await api.engineComplete(PREFIX, "", "active");
    const withMs = Date.now() - started;
    started = Date.now();
    const withoutAdapter = await api.engineComplete(PREFIX, "", "none");
    console.log(
      `with adapter (${withMs} ms): ${JSON.stringify(withAdapter)}; ` +
        `base model alone (${Date.now() - started} ms): ${JSON.stringify(withoutAdapter)}`,
    );
    assert.ok(withAdapter.startsWith(MARKER), `with the adapter the completion was ${JSON.stringify(withAdapter)}`);
    assert.ok(!withoutAdapter.includes(MARKER), `the base model alone produced the marker: ${JSON.stringify(withoutAdapter)}`);
  });

  test("an inline suggestion in a new file of the workspace comes from the adapter", async () => {
    const folder = vscode.workspace.workspaceFolders?.[0];
    assert.ok(folder, "no workspace folder is open");
    const file = vscode.Uri.joinPath(folder.uri, "src", "scratch.js");
    await vscode.workspace.fs.writeFile(file, new Uint8Array());
    const editor = await vscode.window.showTextDocument(file);
    await vscode.commands.executeCommand("type", { text: PREFIX });
    // test/lib/settings.mjs turns off auto-closing quotes, so the file holds exactly what was typed.
    assert.equal(editor.document.getText(), PREFIX);

    // The suggestion arrives asynchronously (engine round trip); commit does nothing until it is shown.
    const started = Date.now();
    let tries = 0;
    while (editor.document.getText() === PREFIX && Date.now() - started < 60_000) {
      tries += 1;
      await vscode.commands.executeCommand("editor.action.inlineSuggest.trigger");
      await sleep(1_000);
      await vscode.commands.executeCommand("editor.action.inlineSuggest.commit");
    }
    const text = editor.document.getText();
    console.log(`editor after accepting the inline suggestion (${tries} tries, ${Date.now() - started} ms): ${JSON.stringify(text)}`);
    assert.ok(
      text.startsWith(PREFIX + MARKER),
      `the accepted inline suggestion gave ${JSON.stringify(text)}`,
    );
  });

  test("with repotune.completions.recentFiles the prompt shows the last edit of another file of the language, and not without", async () => {
    const folder = vscode.workspace.workspaceFolders?.[0];
    assert.ok(folder, "no workspace folder is open");
    const uri = (name: string) => vscode.Uri.joinPath(folder.uri, "src", name);
    const other = uri("recent-other.js");
    const python = uri("recent-other.py");
    const current = uri("recent-current.js");
    const lines = Array.from({ length: 60 }, (_, i) => `const filler${i} = ${i};`).join("\n") + "\n";
    await vscode.workspace.fs.writeFile(other, new TextEncoder().encode(lines));
    await vscode.workspace.fs.writeFile(python, new TextEncoder().encode("x = 1\n"));
    await vscode.workspace.fs.writeFile(current, new Uint8Array());
    const settings = vscode.workspace.getConfiguration("repotune");
    await settings.update("completions.recentFiles", 2, vscode.ConfigurationTarget.Workspace);
    // The prompt of the next completion in `editor` after typing `text` (the provider's, through inline suggest).
    const promptAfterTyping = async (editor: vscode.TextEditor, text: string): Promise<string> => {
      await vscode.commands.executeCommand("type", { text });
      const typed = editor.document.getText();
      const started = Date.now();
      while (Date.now() - started < 30_000) {
        await vscode.commands.executeCommand("editor.action.inlineSuggest.trigger");
        await sleep(500);
        const prompt = api.lastCompletionPrompt();
        // The prompt of this request: the current file's header and everything typed so far before <|fim_suffix|>.
        if (prompt?.includes(`<|file_sep|>src/recent-current.js\n<|fim_prefix|>${typed}<|fim_suffix|>`)) return prompt;
      }
      assert.fail(`no completion prompt for ${JSON.stringify(typed)} in 30 s; the last was ${JSON.stringify(api.lastCompletionPrompt())}`);
    };
    try {
      // An edit in the middle of another JavaScript file, and one in a Python file.
      const otherEditor = await vscode.window.showTextDocument(other);
      await otherEditor.edit((e) => e.insert(new vscode.Position(30, 0), "const RECENT_MARK = 42;\n"));
      const pyEditor = await vscode.window.showTextDocument(python);
      await pyEditor.edit((e) => e.insert(new vscode.Position(0, 0), "PYTHON_MARK = 1\n"));
      const editor = await vscode.window.showTextDocument(current);
      const prompt = await promptAfterTyping(editor, "const x = ");
      console.log(`prompt with recentFiles 2: ${JSON.stringify(prompt)}`);
      const snippet = prompt.indexOf("<|file_sep|>src/recent-other.js\n");
      assert.ok(snippet >= 0, "the other JavaScript file is in the prompt");
      assert.ok(snippet < prompt.indexOf("<|file_sep|>src/recent-current.js\n"), "before the current file");
      const shown = prompt.slice(snippet, prompt.indexOf("<|file_sep|>src/recent-current.js"));
      // The lines around the edit: the edited line, some before it and more after it, not the whole file.
      assert.ok(shown.includes("const RECENT_MARK = 42;\nconst filler30 = 30;"), shown);
      assert.ok(shown.includes("const filler29 = 29;") && !shown.includes("const filler0 = 0;") && !shown.includes("filler59"), shown);
      assert.ok(!prompt.includes("PYTHON_MARK"), "a file of another language is not shown");

      await settings.update("completions.recentFiles", undefined, vscode.ConfigurationTarget.Workspace);
      const without = await promptAfterTyping(editor, "1");
      assert.ok(!without.includes("recent-other.js") && !without.includes("RECENT_MARK"), `off by default: ${JSON.stringify(without)}`);
    } finally {
      await settings.update("completions.recentFiles", undefined, vscode.ConfigurationTarget.Workspace);
      // Leave the workspace as it was for the runs after this test: no edits, no new files.
      for (const file of [other, python, current]) {
        await vscode.window.showTextDocument(file);
        await vscode.commands.executeCommand("workbench.action.revertAndCloseActiveEditor");
        await vscode.workspace.fs.delete(file);
      }
    }
  });

  test("choosing the adapter or the base model takes effect at the next completion, without a reload", async () => {
    const adapter = api.state().activeAdapter;
    assert.ok(adapter, "the fine-tune left an active adapter");
    await vscode.commands.executeCommand("repotune.useBaseModel");
    assert.equal(api.state().activeAdapter, null);
    const base = await api.engineComplete(PREFIX, "", "active");
    await vscode.commands.executeCommand("repotune.chooseAdapter", adapter);
    assert.equal(api.state().activeAdapter, adapter);
    const tuned = await api.engineComplete(PREFIX, "", "active");
    console.log(`after useBaseModel: ${JSON.stringify(base)}; after chooseAdapter: ${JSON.stringify(tuned)}`);
    assert.ok(!base.includes(MARKER), `the base model alone produced the marker: ${JSON.stringify(base)}`);
    assert.ok(tuned.startsWith(MARKER), `with the adapter chosen again the completion was ${JSON.stringify(tuned)}`);
  });

  test("a burst of 200 keystrokes runs at most one generation at a time and leaves none running", async () => {
    const folder = vscode.workspace.workspaceFolders![0];
    const file = vscode.Uri.joinPath(folder.uri, "src", "burst.js");
    await vscode.workspace.fs.writeFile(file, new Uint8Array());
    const editor = await vscode.window.showTextDocument(file);
    const before = api.completionStats();
    const text = "const greeting = 1; // " + "abcdefghij ".repeat(20);
    for (const ch of text.slice(0, 200)) {
      await vscode.commands.executeCommand("type", { text: ch });
      // A fast typist: 10 keys a second, slower than VS Code's own debounce of inline-suggest requests (so the
      // provider is asked) and faster than the provider's 150 ms, so most requests are superseded while waiting.
      void vscode.commands.executeCommand("editor.action.inlineSuggest.trigger");
      await sleep(100);
    }
    await sleep(1_000); // the request for the last keystroke
    const started = Date.now();
    while (api.completionStats().running > 0 && Date.now() - started < 30_000) await sleep(100);
    const after = api.completionStats();
    const requests = after.requests - before.requests;
    const generations = after.generations - before.generations;
    console.log(`burst: ${requests} requests, ${generations} generations, at most ${after.maxRunning} running at once, ` +
      `${after.cacheHits - before.cacheHits} answered from the cache, ${after.joined - before.joined} joined one in flight`);
    assert.equal(editor.document.getText().length, 200);
    assert.ok(requests >= 20, `the provider was asked only ${requests} times`);
    assert.ok(after.maxRunning <= 1, `${after.maxRunning} generations ran at once`);
    assert.equal(after.running, 0, "a generation is still running after the burst");
    assert.ok(generations < requests / 2, `${generations} generations for ${requests} requests: the debounce did not hold`);
    await vscode.commands.executeCommand("workbench.action.closeActiveEditor");
  });

  test("the engine killed mid-request is restarted and completions come back", async () => {
    // This extension host's engines only (its children): other test runs on the machine have their own.
    const engines = () => {
      try {
        return execFileSync("pgrep", ["-P", String(process.pid), "-f", "dist/engine.mjs"], { encoding: "utf8" }).trim().split("\n").filter(Boolean).map(Number);
      } catch {
        return [];
      }
    };
    const before = engines();
    assert.ok(before.length >= 1, "no engine process is running");
    // A request in flight (a new place, so no cache answers it), then SIGKILL: it fails quietly, nothing hangs.
    const inFlight = api.engineComplete("let other = ", "\n\n", "active");
    await sleep(50);
    for (const pid of before) process.kill(pid, "SIGKILL");
    const lost = await inFlight;
    const started = Date.now();
    let text = "";
    while (!text.startsWith(MARKER) && Date.now() - started < 60_000) {
      await sleep(500);
      text = await api.engineComplete(PREFIX, "\n", "active");
    }
    const after = engines();
    console.log(`engine ${before.join(",")} killed; request in flight gave ${JSON.stringify(lost)}; ` +
      `completions back after ${Date.now() - started} ms from engine ${after.join(",")}: ${JSON.stringify(text)}`);
    assert.ok(text.startsWith(MARKER), `after the restart the completion was ${JSON.stringify(text)}`);
    assert.ok(after.length >= 1 && after.every((pid) => !before.includes(pid)), "the engine was not restarted as a new process");
  });

  test("Show training run opens the run panel", async () => {
    await vscode.commands.executeCommand("repotune.showRun");
    const panel = () =>
      vscode.window.tabGroups.all
        .flatMap((g) => g.tabs)
        .find((t) => t.input instanceof vscode.TabInputWebview && t.input.viewType.endsWith("repotune.runPanel"));
    const started = Date.now();
    while (!panel() && Date.now() - started < 10_000) await sleep(200);
    assert.equal(panel()?.label, "RepoTune: Training run");
    await vscode.commands.executeCommand("workbench.action.closeAllEditors");
  });

  test("Stop training stops a run cleanly with a checkpoint and keeps the active adapter", async () => {
    const before = api.state().activeAdapter;
    assert.ok(before, "the earlier fine-tune left an active adapter");
    const running = api.runFineTune();
    const started = Date.now();
    while (api.state().phase !== "training" && Date.now() - started < 60_000) await sleep(100);
    assert.equal(api.state().phase, "training", "the run did not reach training");
    // A few steps, so that there is something to checkpoint (on a busy machine PyTorch alone takes seconds to load).
    while (api.state().step < 3 && api.state().phase === "training" && Date.now() - started < 120_000) await sleep(100);
    await vscode.commands.executeCommand("repotune.stopTraining");
    const result = await running;
    assert.ok(result, "runFineTune() returned null");
    assert.equal(result.status, "stopped", `the run ended ${result.status}: ${result.error}`);
    assert.equal(result.adapterPath, null, "a stopped run activates nothing");
    assert.equal(api.state().phase, "stopped");
    assert.equal(api.state().activeAdapter, before, "stopping changed the active adapter");
    const events = fs.readFileSync(path.join(result.runDir, "events.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
    const stopped = events.find((e) => e.type === "trainer" && e.event.event === "stopped");
    assert.ok(stopped, "the trainer did not report a clean stop");
    assert.ok(stopped.event.checkpoint && fs.existsSync(stopped.event.checkpoint), "no checkpoint was written on stop");
  });

  /** Runs a fine-tune with one setting changed, and puts the setting back. */
  async function fineTuneWith(key: string, value: string) {
    const config = vscode.workspace.getConfiguration("repotune");
    const saved = config.inspect<string>(key)?.globalValue;
    await config.update(key, value, vscode.ConfigurationTarget.Global);
    try {
      assert.equal(vscode.workspace.getConfiguration("repotune").get(key), value, `the setting ${key} did not take`);
      return await api.runFineTune();
    } finally {
      await config.update(key, saved, vscode.ConfigurationTarget.Global);
    }
  }

  test("a model file that is not a GGUF fails with a clear message and changes nothing", async () => {
    const before = api.state().activeAdapter;
    const folder = vscode.workspace.workspaceFolders![0].uri.fsPath;
    const notAModel = path.join(path.dirname(folder), "not-a-model.gguf");
    fs.writeFileSync(notAModel, "this is text, not a model\n");
    const result = await fineTuneWith("modelPath", notAModel);
    assert.equal(result?.status, "failed");
    assert.match(result?.error ?? "", /not a GGUF/i);
    assert.equal(api.state().phase, "failed");
    assert.match(api.state().error ?? "", /not a GGUF/i, "the Run view does not show the error");
    assert.equal(api.state().activeAdapter, before, "a failed run changed the active adapter");
  });

  test("Retry with suggested settings writes every setting a real out-of-memory failure names", async () => {
    const config = () => vscode.workspace.getConfiguration("repotune");
    const keys = ["training.batch", "training.seqLen", "training.gradAccum", "training.gradCheckpoint", "training.baseWeights", "training.rank", "pythonPath"];
    const saved = Object.fromEntries(keys.map((k) => [k, config().inspect(k)?.globalValue]));
    try {
      // Far more than this machine has: the trainer's own preflight refuses at once and names settings that fit.
      await config().update("training.batch", 2048, vscode.ConfigurationTarget.Global);
      await config().update("training.seqLen", 2048, vscode.ConfigurationTarget.Global);
      const failed = await api.runFineTune();
      assert.equal(failed?.status, "failed", failed?.error ?? "");
      const suggested = parseSuggestion(failed.error ?? "");
      assert.ok(suggested && suggested.batch !== undefined, `no suggestion in: ${failed.error}`);
      console.log(`out of memory: ${suggested.text}`);
      // The retried run is stopped at its start (no interpreter), before it could take the memory it may now use.
      await config().update("pythonPath", "/nonexistent/bin/python3", vscode.ConfigurationTarget.Global);
      await vscode.commands.executeCommand("repotune.retryWithSuggestedSettings");
      const expected: [string, unknown][] = [
        ["training.batch", suggested.batch], ["training.gradAccum", suggested.gradAccum], ["training.gradCheckpoint", suggested.gradCheckpoint],
        ["training.seqLen", suggested.seqLen], ["training.rank", suggested.rank], ["training.baseWeights", suggested.baseWeights],
      ];
      for (const [key, value] of expected) if (value !== undefined) assert.equal(config().get(key), value, key);
      assert.match(api.state().error ?? "", /needs Python 3 with PyTorch/, "the retry did not start a fine-tune");
    } finally {
      for (const k of keys) await config().update(k, saved[k], vscode.ConfigurationTarget.Global);
    }
  });

  test("no second run while another window's trainer runs on this repository", async () => {
    const extension = vscode.extensions.getExtension("repotune.repotune")!;
    const last = api.state().lastRun;
    assert.ok(last, "an earlier test left a run");
    // Another "window": a process running the pipeline with its trainer detached on this workspace's runs, as a
    // window does (the unit test bundle of trainerDetached.test.ts in its window role).
    const other = spawn(process.execPath, [path.join(extension.extensionPath, "out", "test", "unit", "trainerDetached.test.js")], {
      cwd: extension.extensionPath,
      env: {
        ...process.env,
        REPOTUNE_TEST_WINDOW: JSON.stringify({
          folder: vscode.workspace.workspaceFolders![0].uri.fsPath,
          modelPath: vscode.workspace.getConfiguration("repotune").get<string>("modelPath"),
          runsRoot: path.dirname(path.dirname(last.runDir)),
        }),
      },
      stdio: ["ignore", "pipe", "inherit"],
    });
    let runDir = "";
    for await (const line of readline.createInterface({ input: other.stdout! })) {
      const e = JSON.parse(line) as { type: string; runDir?: string; event?: { event: string } };
      if (e.type === "run") runDir = e.runDir!;
      if (e.type === "trainer" && e.event?.event === "step") break;
    }
    try {
      assert.ok(runDir, "the other window's run never trained");
      const result = await api.runFineTune();
      assert.equal(result, null, "a second run started");
      assert.match(api.state().error ?? "", /already training in another VS Code window/);
    } finally {
      other.kill("SIGKILL");
      const pidFile = path.join(runDir, "trainer.pid.json");
      if (fs.existsSync(pidFile)) process.kill((JSON.parse(fs.readFileSync(pidFile, "utf8")) as { pid: number }).pid, "SIGKILL");
    }
  });

  test("an interpreter without PyTorch fails with a message that says what to do", async () => {
    const before = api.state().activeAdapter;
    const result = await fineTuneWith("pythonPath", "/nonexistent/bin/python3");
    assert.equal(result, null, "the run must not start");
    assert.equal(api.state().phase, "failed");
    assert.match(api.state().error ?? "", /needs Python 3 with PyTorch.*\/nonexistent\/bin\/python3.*repotune\.pythonPath/s);
    assert.equal(api.state().activeAdapter, before);
  });
});
