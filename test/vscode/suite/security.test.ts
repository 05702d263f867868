// A hostile repository's .vscode/settings.json (written by test/vscode/hostileSettings.mjs) names its own
// interpreter and model: in a trusted window VS Code must still ignore them, because those settings are
// machine-scoped, and a fine-tune must run the machine's interpreter on the machine's model. Runs after
// repotune.test.js (files run in name order), whose fine-tunes also ran with this file in place.
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import * as vscode from "vscode";
import type { RepoTuneApi } from "../../../src/extension";
import { assertHostileSettingsIgnored, hostileSettings, pathSettings, type Property } from "./hostile";

suite("Settings that name programs ignore the workspace", () => {
  let api: RepoTuneApi;

  suiteSetup(async () => {
    api = await vscode.extensions.getExtension<RepoTuneApi>("repotune.repotune")!.activate();
    assert.equal(vscode.workspace.isTrusted, true, "this suite is about a trusted window");
  });

  test("every setting naming an interpreter or model file is machine-scoped and restricted", () => {
    const keys = pathSettings();
    const pkg = vscode.extensions.getExtension("repotune.repotune")!.packageJSON;
    const properties = pkg.contributes.configuration.properties as Record<string, Property>;
    const restricted: string[] = pkg.capabilities.untrustedWorkspaces.restrictedConfigurations;
    console.log(`settings naming programs or model files: ${keys.join(", ")}`);
    assert.ok(keys.includes("repotune.modelPath") && keys.includes("repotune.pythonPath"), `found only ${keys.join(", ")}`);
    for (const key of keys) {
      assert.equal(properties[key].scope, "machine", `${key} is not machine-scoped`);
      assert.ok(restricted.includes(key), `${key} is not in capabilities.untrustedWorkspaces.restrictedConfigurations`);
    }
  });

  test("the workspace's interpreter, model and device are ignored, and a fine-tune runs the machine's", async () => {
    assertHostileSettingsIgnored();
    const { settings, ranLog } = hostileSettings();
    const machineModel = vscode.workspace.getConfiguration("repotune").get<string>("modelPath");

    // A short run: it resolves the interpreter and the model, and its trainer must start. The adapter in use
    // before is put back afterwards, whatever the run decides.
    const before = api.state().activeAdapter;
    const config = vscode.workspace.getConfiguration("repotune");
    const savedSteps = config.inspect<number>("training.steps")?.globalValue;
    await config.update("training.steps", 4, vscode.ConfigurationTarget.Global);
    let result;
    try {
      result = await api.runFineTune();
    } finally {
      await config.update("training.steps", savedSteps, vscode.ConfigurationTarget.Global);
      await vscode.commands.executeCommand(before ? "repotune.chooseAdapter" : "repotune.useBaseModel", before);
    }
    assert.ok(result, "runFineTune() returned null");
    assert.equal(result.status, "done", `the run ended ${result.status}: ${result.error}`);
    assert.equal(api.state().modelPath, machineModel, "the run did not use the machine's model");
    assert.notEqual(api.state().modelPath, settings["repotune.modelPath"]);
    const events = fs.readFileSync(path.join(result.runDir, "events.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
    const start = events.find((e) => e.type === "trainer" && e.event.event === "start");
    assert.ok(start, "the machine's interpreter did not start the trainer");
    console.log(`the run's trainer started on ${start.event.device} with ${start.event.steps} steps`);
    assert.equal(fs.existsSync(ranLog), false, `the workspace's interpreter ran: ${fs.existsSync(ranLog) ? fs.readFileSync(ranLog, "utf8") : ""}`);
    // The sentinel took effect in the run as well: the dataset left out the workspace's .vscode/ folder.
    assert.ok((result.summary?.filesSkipped.user_excluded ?? 0) >= 1, `the workspace's dataset.exclude was not applied: ${JSON.stringify(result.summary?.filesSkipped)}`);
    assert.equal(api.state().activeAdapter, before);
  });
});
