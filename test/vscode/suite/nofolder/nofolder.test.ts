// RepoTune in a VS Code window with no folder open: nothing to learn from, and the user is told what to do.
import * as assert from "node:assert/strict";
import * as vscode from "vscode";
import type { RepoTuneApi } from "../../../../src/extension";

suite("RepoTune without a folder", () => {
  test("Fine-tune on this repo says to open a folder, and nothing crashes", async () => {
    assert.equal(vscode.workspace.workspaceFolders, undefined, "this window must have no folder");
    const extension = vscode.extensions.getExtension<RepoTuneApi>("repotune.repotune");
    assert.ok(extension, "the extension is not loaded");
    const api = await extension.activate();
    assert.equal(await vscode.commands.executeCommand("repotune.fineTune"), null, "no run may start");
    assert.equal(api.state().phase, "failed");
    assert.match(api.state().error ?? "", /Open a folder first.*File > Open Folder/);
    assert.equal(api.state().activeAdapter, null);
    // The extension keeps working after the refusal: the run panel still opens.
    await vscode.commands.executeCommand("repotune.showRun");
  });
});
