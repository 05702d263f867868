// "RepoTune: Choose base model" in a real VS Code, downloading from a real HTTP server on 127.0.0.1 that stands in
// for Hugging Face (HF_ENDPOINT, the mirror variable RepoTune honours): the model lands once in global storage and
// becomes repotune.modelPath; a file whose SHA-256 is wrong is refused and changes nothing.
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import * as vscode from "vscode";
import type { RepoTuneApi } from "../../../src/extension";
import { CATALOG } from "../../../src/core/models/catalog";
import { startModelServer } from "../../lib/modelServer.mjs";

suite("Choose base model", () => {
  let original: string | undefined;
  let served: Buffer;
  let server: Awaited<ReturnType<typeof startModelServer>>;
  const savedEndpoint = process.env.HF_ENDPOINT;
  const config = () => vscode.workspace.getConfiguration("repotune");

  suiteSetup(async () => {
    const extension = vscode.extensions.getExtension<RepoTuneApi>("repotune.repotune");
    assert.ok(extension);
    await extension.activate();
    original = config().get<string>("modelPath");
    assert.ok(original && fs.existsSync(original), `the test settings name no model file: ${original}`);
    // The tiny model, served under the catalog's file names: a real GGUF the engine and trainer can use.
    served = fs.readFileSync(original);
    server = await startModelServer(served);
    process.env.HF_ENDPOINT = server.url("").replace(/\/$/, "");
  });

  suiteTeardown(async () => {
    await config().update("modelPath", original, vscode.ConfigurationTarget.Global);
    if (savedEndpoint === undefined) delete process.env.HF_ENDPOINT;
    else process.env.HF_ENDPOINT = savedEndpoint;
    await server?.close();
  });

  test("a model from the list is downloaded once into global storage and becomes repotune.modelPath", async () => {
    const model = CATALOG.find((m) => m.sha256 === null);
    assert.ok(model, "every catalog model has a checksum: this test needs one without (the tiny model stands in)");
    const chosen = await vscode.commands.executeCommand<string | undefined>("repotune.chooseModel", model.id);
    assert.ok(chosen, "the command returned no model path");
    assert.equal(path.basename(chosen), model.fileName);
    assert.equal(config().get("modelPath"), chosen, "repotune.modelPath is not the downloaded file");
    assert.ok(fs.readFileSync(chosen).equals(served), "the downloaded bytes differ from the served file");
    assert.ok(!fs.existsSync(`${chosen}.partial`), "a .partial file was left");
    const gets = server.requests.filter((r) => r.method === "GET").length;
    assert.equal(gets, 1);

    // Chosen again (another workspace, another day): the file in global storage is used, nothing is fetched.
    assert.equal(await vscode.commands.executeCommand("repotune.chooseModel", model.id), chosen);
    assert.equal(server.requests.filter((r) => r.method === "GET").length, gets, "the model was downloaded twice");
  });

  test("a download whose SHA-256 does not match is refused: no file kept, the setting unchanged", async () => {
    const model = CATALOG.find((m) => m.sha256 !== null);
    assert.ok(model);
    const before = config().get<string>("modelPath");
    const chosen = await vscode.commands.executeCommand<string | undefined>("repotune.chooseModel", model.id);
    assert.equal(chosen, undefined, "a file with the wrong checksum was accepted");
    assert.equal(config().get("modelPath"), before);
    const dir = path.dirname(before!);
    assert.ok(!fs.existsSync(path.join(dir, model.fileName)) && !fs.existsSync(path.join(dir, `${model.fileName}.partial`)), "the corrupted download was kept");
  });

  test("Check trainer environment reports the Python, PyTorch, device and memory that train", async () => {
    const t = await vscode.commands.executeCommand<{ ok: boolean; torch: string; device: string; memory_total: number } | undefined>("repotune.checkEnvironment");
    assert.ok(t?.ok, "the self-test did not pass");
    assert.ok(t.torch, "no PyTorch version");
    assert.equal(t.device, "cpu", "this machine has no GPU: the self-test must say cpu");
    assert.ok(t.memory_total > 1e9, `memory_total ${t.memory_total}`);
  });

  test("the walkthrough's buttons run registered commands and its pages exist", async () => {
    const extension = vscode.extensions.getExtension("repotune.repotune")!;
    const registered = new Set(await vscode.commands.getCommands(true));
    const steps = (extension.packageJSON.contributes.walkthroughs as { steps: { description: string; media: { markdown: string }; completionEvents?: string[] }[] }[])
      .flatMap((w) => w.steps);
    assert.ok(steps.length >= 4);
    for (const step of steps) {
      const commands = [...step.description.matchAll(/\(command:([\w.]+)\)/g)].map((m) => m[1]!)
        .concat((step.completionEvents ?? []).filter((e) => e.startsWith("onCommand:")).map((e) => e.slice("onCommand:".length)));
      assert.ok(commands.length > 0, `a step with no command: ${step.description}`);
      for (const c of commands) assert.ok(registered.has(c), `the walkthrough names ${c}, which is not a registered command`);
      assert.ok(fs.existsSync(path.join(extension.extensionPath, step.media.markdown)), `missing ${step.media.markdown}`);
    }
  });
});
