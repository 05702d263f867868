// RepoTune in a folder the user has not trusted (Restricted Mode): nothing that trains runs, each such command
// says why and how to trust the folder, the workspace's hostile settings are ignored, and completions from an
// adapter trained beforehand (by the CLI, test/vscode/run.mjs --untrusted) keep working.
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import * as vscode from "vscode";
import type { RepoTuneApi } from "../../../../src/extension";
import expectations from "../../../fixtures/expectations.json";
import { assertHostileSettingsIgnored, hostileSettings } from "../hostile";

const { prefix: PREFIX, marker: MARKER } = expectations["sample-repo"];
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The text of the extension's log file (its "RepoTune" output channel), under the logs folder the launcher names. */
function extensionLog(): string {
  const logs = process.env.REPOTUNE_TEST_LOGS;
  assert.ok(logs, "REPOTUNE_TEST_LOGS is not set: run this suite through test/vscode/run.mjs --untrusted");
  const found = fs.readdirSync(logs, { recursive: true }).map(String).filter((f) => f.endsWith(path.join("repotune.repotune", "RepoTune.log")));
  return found.map((f) => fs.readFileSync(path.join(logs, f), "utf8")).join("\n");
}

/** The log line matching `pattern`, waited for: VS Code writes log files a moment after the line is logged. */
async function waitForLog(pattern: RegExp, timeoutMs = 15_000): Promise<string> {
  const started = Date.now();
  for (;;) {
    const text = extensionLog();
    const line = text.split("\n").find((l) => pattern.test(l));
    if (line) return line;
    if (Date.now() - started > timeoutMs) assert.fail(`the extension's log has no line matching ${pattern}; it ends with:\n${text.slice(-2000)}`);
    await sleep(250);
  }
}

suite("RepoTune in an untrusted folder", () => {
  let api: RepoTuneApi;
  const adapter = process.env.REPOTUNE_TEST_ADAPTER ?? "";

  suiteSetup(async () => {
    // First: in a trusted window every assertion below would pass for the wrong reason or not apply.
    assert.equal(vscode.workspace.isTrusted, false, "this window's folder must be untrusted (Restricted Mode)");
    const extension = vscode.extensions.getExtension<RepoTuneApi>("repotune.repotune");
    assert.ok(extension, "the extension is not loaded in Restricted Mode");
    api = await extension.activate();
    assert.ok(adapter && fs.existsSync(adapter), `no adapter was trained for this window (REPOTUNE_TEST_ADAPTER=${adapter})`);
  });

  test("declares limited support, and the settings naming programs as restricted", () => {
    const pkg = vscode.extensions.getExtension("repotune.repotune")!.packageJSON;
    const trust = pkg.capabilities.untrustedWorkspaces;
    assert.equal(trust.supported, "limited");
    assert.match(trust.description, /completions/i);
    for (const key of ["repotune.modelPath", "repotune.pythonPath"]) assert.ok(trust.restrictedConfigurations.includes(key), key);
  });

  test("each command that trains is refused, says why and how to trust the folder, and starts nothing", async () => {
    const { ranLog } = hostileSettings();
    const phase = api.state().phase;
    const commands: [string, string, unknown[]][] = [
      ["repotune.fineTune", "Fine-tuning", []],
      ["repotune.updateAdapter", "Updating an adapter", [adapter]],
      ["repotune.resumeTraining", "Resuming a training run", [path.dirname(adapter)]],
      ["repotune.retryWithSuggestedSettings", "Retrying a run with the suggested settings", []],
    ];
    for (const [id, action, args] of commands) {
      const result = await vscode.commands.executeCommand(id, ...args);
      assert.equal(result ?? null, null, `${id} returned ${JSON.stringify(result)}`);
      const line = await waitForLog(new RegExp(`${action} is off in Restricted Mode`));
      console.log(`${id}: ${line}`);
      assert.match(line, /not trusted/);
      assert.match(line, /Manage Workspace Trust/, "the message does not say how to trust the folder");
      assert.equal(api.state().phase, phase, `${id} started a run`);
    }
    // The notification's button runs this command: it must exist in this VS Code.
    assert.ok((await vscode.commands.getCommands(true)).includes("workbench.trust.manage"), "VS Code has no workbench.trust.manage");
    assert.equal(fs.existsSync(ranLog), false, "the workspace's interpreter ran");
  });

  test("a script calling the API directly is refused as well", async () => {
    const result = await api.runFineTune();
    assert.equal(result, null, "a run started in Restricted Mode");
    assert.equal(api.state().phase, "failed");
    assert.match(api.state().error ?? "", /trusted/i);
  });

  test("the workspace's interpreter and model settings are ignored", () => {
    assertHostileSettingsIgnored();
  });

  test("completions from an adapter chosen before keep working", async () => {
    await vscode.commands.executeCommand("repotune.chooseAdapter", adapter);
    assert.equal(api.state().activeAdapter, adapter);
    const withAdapter = await api.engineComplete(PREFIX, "", "active");
    const withoutAdapter = await api.engineComplete(PREFIX, "", "none");
    console.log(`with adapter: ${JSON.stringify(withAdapter)}; base model alone: ${JSON.stringify(withoutAdapter)}`);
    assert.ok(withAdapter.startsWith(MARKER), `with the adapter the completion was ${JSON.stringify(withAdapter)}`);
    assert.ok(!withoutAdapter.includes(MARKER), `the base model alone produced the marker: ${JSON.stringify(withoutAdapter)}`);

    // And in the editor, through the inline completion provider.
    const folder = vscode.workspace.workspaceFolders![0];
    const file = vscode.Uri.joinPath(folder.uri, "src", "scratch.js");
    await vscode.workspace.fs.writeFile(file, new Uint8Array());
    const editor = await vscode.window.showTextDocument(file);
    await vscode.commands.executeCommand("type", { text: PREFIX });
    const started = Date.now();
    while (editor.document.getText() === PREFIX && Date.now() - started < 60_000) {
      await vscode.commands.executeCommand("editor.action.inlineSuggest.trigger");
      await sleep(1_000);
      await vscode.commands.executeCommand("editor.action.inlineSuggest.commit");
    }
    const text = editor.document.getText();
    console.log(`editor after accepting the inline suggestion (${Date.now() - started} ms): ${JSON.stringify(text)}`);
    assert.ok(text.startsWith(PREFIX + MARKER), `the accepted inline suggestion gave ${JSON.stringify(text)}`);
    assert.equal(fs.existsSync(hostileSettings().ranLog), false, "the workspace's interpreter ran");
  });
});
