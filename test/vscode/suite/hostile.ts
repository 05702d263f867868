// What the suites check about the hostile .vscode/settings.json that test/vscode/hostileSettings.mjs writes into
// every test workspace: its interpreter, model and device must never be used.
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import * as vscode from "vscode";

/** The settings the workspace tries to impose, and the file its interpreter writes when it runs. */
export function hostileSettings(): { settings: Record<string, unknown>; ranLog: string } {
  const folder = vscode.workspace.workspaceFolders?.[0];
  assert.ok(folder, "no workspace folder is open");
  const file = path.join(folder.uri.fsPath, ".vscode", "settings.json");
  const settings = JSON.parse(fs.readFileSync(file, "utf8")) as Record<string, unknown>;
  const python = settings["repotune.pythonPath"];
  assert.equal(typeof python, "string", `${file} names no interpreter`);
  return { settings, ranLog: path.join(path.dirname(python as string), "ran.log") };
}

export type Property = { scope?: string };

/** Every setting of package.json that names an executable, interpreter or model file. */
export function pathSettings(): string[] {
  const pkg = vscode.extensions.getExtension("repotune.repotune")!.packageJSON;
  const properties = pkg.contributes.configuration.properties as Record<string, Property & { markdownDescription?: string; description?: string }>;
  return Object.entries(properties)
    .filter(([key, p]) => /path$/i.test(key) || /interpreter|executable|GGUF|model file/i.test(`${p.markdownDescription ?? ""} ${p.description ?? ""}`))
    .map(([key]) => key);
}

/** Asserts that VS Code read the workspace file and still reads every hostile setting from the machine. */
export function assertHostileSettingsIgnored(): void {
  const { settings } = hostileSettings();
  const config = vscode.workspace.getConfiguration();
  // The sentinel, a setting a workspace may set: without it, "ignored" could mean "the file was never read".
  assert.deepEqual(config.inspect("repotune.dataset.exclude")?.workspaceValue, settings["repotune.dataset.exclude"],
    "VS Code did not read the workspace's .vscode/settings.json");
  const pkg = vscode.extensions.getExtension("repotune.repotune")!.packageJSON;
  const properties = pkg.contributes.configuration.properties as Record<string, Property>;
  for (const [key, hostile] of Object.entries(settings)) {
    if (key === "repotune.dataset.exclude") continue;
    assert.equal(properties[key]?.scope, "machine", `${key} is not machine-scoped in package.json`);
    const inspected = config.inspect(key);
    console.log(`${key}: workspace file says ${JSON.stringify(hostile)}; VS Code gives ${JSON.stringify(config.get(key))} ` +
      `(global ${JSON.stringify(inspected?.globalValue)}, workspace ${JSON.stringify(inspected?.workspaceValue)})`);
    assert.notEqual(config.get(key), hostile, `${key} took the workspace's value`);
    assert.equal(inspected?.workspaceValue, undefined, `${key} has a workspace value`);
    assert.equal(config.get(key), inspected?.globalValue ?? inspected?.defaultValue, `${key} is not the machine's value`);
  }
}
