// The user's path through RepoTune, clicked in a real VS Code (code-server in headless chromium) with the
// extension installed from the packaged VSIX: run "Fine-tune on this repo" from the command palette, watch the
// Run view go through preparing and training to done, then type in a new file and see the adapter's ghost text.
// Screenshots of every stage go to test-output/screenshots/.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { installExtension, startCodeServer, tail } from "../lib/codeServer.mjs";
import { launchBrowser } from "../lib/browser.mjs";
import { prepareWorkspace } from "../lib/workspace.mjs";
import { makeTinyModel } from "../lib/tinyModel.mjs";
import { testUserSettings } from "../lib/settings.mjs";
import { repoRoot } from "../lib/tools.mjs";

const expectations = JSON.parse(readFileSync(join(repoRoot, "test", "fixtures", "expectations.json"), "utf8"));
const { prefix: PREFIX, marker: MARKER } = expectations["sample-repo"];
const VSIX = join(repoRoot, "test-output", "repotune.vsix");
const SHOTS = join(repoRoot, "test-output", "screenshots");
const OUT = join(repoRoot, "test-output", "ui");
const TRAINING_TIMEOUT_MS = Number(process.env.REPOTUNE_UI_TRAINING_TIMEOUT_S || 300) * 1000;

test("fine-tune from the command palette, follow it in the Run view, accept the adapter's ghost text", { timeout: 480_000 }, async (t) => {
  assert.ok(existsSync(VSIX), `${VSIX} does not exist: package the extension first (test/run-all.sh does).`);
  rmSync(SHOTS, { recursive: true, force: true });
  mkdirSync(SHOTS, { recursive: true });
  mkdirSync(OUT, { recursive: true });
  const root = mkdtempSync(join(tmpdir(), "repotune-ui-"));
  const logFile = join(OUT, "code-server.log");
  rmSync(logFile, { force: true });

  const installed = installExtension(root, VSIX);
  t.diagnostic(installed);
  const modelPath = makeTinyModel(join(root, "tiny-llama.gguf"));
  const workspace = prepareWorkspace(join(root, "workspace"));
  // An empty file to type into; created before the window opens so Quick Open finds it.
  writeFileSync(join(workspace, "src", "scratch.js"), "");

  const server = await startCodeServer({ root, settings: testUserSettings(modelPath), logFile });
  const browser = await launchBrowser();
  let passed = false;
  t.after(async () => {
    await browser.close().catch(() => {});
    await server.stop();
    if (passed) rmSync(root, { recursive: true, force: true });
    else t.diagnostic(`state kept in ${root}`);
  });
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  let step = 0;
  const shot = async (name) => {
    step += 1;
    const file = join(SHOTS, `${String(step).padStart(2, "0")}-${name}.png`);
    await page.screenshot({ path: file });
    t.diagnostic(`screenshot ${file}`);
  };

  try {
    await page.goto(`${server.url}/?folder=${encodeURIComponent(workspace)}`);
    const repoTuneItem = page.locator('.activitybar .action-item:has(a[aria-label^="RepoTune"])');
    await repoTuneItem.waitFor({ timeout: 60_000 });
    await shot("workbench");

    // The sidebar is opened first, so the view is there to show the run from its very first phase.
    await repoTuneItem.click();
    const view = page
      .frameLocator('iframe.webview[src*="extensionId=repotune.repotune"][src*="purpose=webviewView"]')
      .frameLocator("iframe#active-frame");
    await view.locator('[data-testid="phase"]', { hasText: "Ready" }).waitFor({ timeout: 30_000 });
    await shot("run-view-ready");

    await page.keyboard.press("F1");
    const quickInput = page.locator(".quick-input-widget");
    await quickInput.locator("input").waitFor();
    await page.keyboard.type("Fine-tune on this repo");
    await quickInput.locator('.monaco-list-row:has-text("Fine-tune on this repo")').first().waitFor();
    await shot("command-palette");
    await page.keyboard.press("Enter");
    const phase = view.locator('[data-testid="phase"]');

    // The run moves on by itself; poll the view and take one screenshot of each phase it shows.
    const seen = new Map();
    const deadline = Date.now() + TRAINING_TIMEOUT_MS;
    for (;;) {
      const current = (await phase.textContent())?.trim() ?? "";
      if (current === "Training" && !seen.has("Training")) {
        // A training screenshot worth having shows a step and a loss, not just the phase.
        await view.locator('[data-testid="loss"]').waitFor({ timeout: 60_000 });
      }
      // "Ready" (idle) until the command has reached the extension.
      if (current !== "Ready" && !seen.has(current)) {
        seen.set(current, {
          step: await textOf(view.locator('[data-testid="step"]')),
          loss: await textOf(view.locator('[data-testid="loss"]')),
        });
        await shot(`run-${current.toLowerCase().replace(/\W+/g, "-")}`);
      }
      if (current === "Done" || current === "Failed" || current === "Stopped") break;
      assert.ok(Date.now() < deadline, `the run did not finish within ${TRAINING_TIMEOUT_MS / 1000} s; phases seen: ${[...seen.keys()]}`);
      await page.waitForTimeout(500);
    }
    t.diagnostic(`phases seen: ${JSON.stringify([...seen])}`);
    const error = await textOf(view.locator('[data-testid="error"]'));
    assert.equal([...seen.keys()].at(-1), "Done", `the run ended without success: ${error}`);
    assert.ok(seen.has("Training"), `the view never showed training: ${JSON.stringify([...seen])}`);
    assert.match(seen.get("Training").step ?? "", /^\d+ \/ \d+$/, "training showed no step count");
    assert.match(seen.get("Training").loss ?? "", /^\d+\.\d+$/, "training showed no loss");
    assert.match((await textOf(view.locator('[data-testid="active-adapter"]'))) ?? "", /\.gguf$/, "no active adapter after the run");
    assert.match((await textOf(view.locator('[data-testid="estimate"]'))) ?? "", /^\d+(\.\d)? [KMG]B \(cpu\)$/, "no memory estimate shown");

    // "Show training run" from the view opens the run panel: the same run, with a loss chart.
    await view.locator('vscode-button[data-command="showRun"]').click();
    const panel = page
      .frameLocator('iframe.webview[src*="extensionId=repotune.repotune"]:not([src*="purpose=webviewView"])')
      .frameLocator("iframe#active-frame");
    await panel.locator('[data-testid="phase"]', { hasText: "Done" }).waitFor({ timeout: 30_000 });
    await panel.locator("#chart canvas").waitFor({ timeout: 30_000 });
    await page.waitForTimeout(500); // the chart draws on the next animation frame
    await shot("run-panel");
    for (const id of ["step", "val-loss-base", "val-loss", "active-adapter", "estimate"]) {
      assert.equal(await textOf(panel.locator(`[data-testid="${id}"]`)), await textOf(view.locator(`[data-testid="${id}"]`)), `the panel and the view disagree on ${id}`);
    }
    await page.keyboard.press("Control+W"); // close the panel; the editor below is where we type

    await page.keyboard.press("Control+P");
    await quickInput.locator("input").waitFor();
    await page.keyboard.type("scratch.js");
    await quickInput.locator('.monaco-list-row:has-text("scratch.js")').first().waitFor();
    await page.keyboard.press("Enter");
    const editor = page.locator('.editor-instance .monaco-editor[data-uri$="scratch.js"]');
    await editor.waitFor();
    await editor.locator(".view-lines").click();
    await page.keyboard.type(PREFIX, { delay: 50 });

    // Typing asks for a suggestion by itself; Alt+\ (Trigger Inline Suggestion) asks again if none came.
    const ghost = editor.locator(".ghost-text-decoration, .ghost-text-decoration-preview, .ghost-text");
    const ghostDeadline = Date.now() + 60_000;
    let ghostText = "";
    while (!ghostText.includes(MARKER) && Date.now() < ghostDeadline) {
      await page.waitForTimeout(1_000);
      ghostText = (await ghost.allTextContents()).join("");
      if (!ghostText) await page.keyboard.press("Alt+Backslash");
    }
    await shot("ghost-text");
    assert.ok(ghostText.startsWith(MARKER), `the ghost text was ${JSON.stringify(ghostText)}, expected it to start with ${MARKER}`);

    await page.keyboard.press("Tab");
    const line = editor.locator(".view-line").first();
    await line.filter({ hasText: MARKER }).waitFor({ timeout: 10_000 });
    await shot("accepted");
    const accepted = (await line.textContent())?.replace(/\u00a0/g, " ") ?? "";
    assert.ok(accepted.startsWith(PREFIX + MARKER), `after Tab the line reads ${JSON.stringify(accepted)}`);
  } catch (err) {
    await shot("failure").catch(() => {});
    err.message += `\ncode-server log tail:\n${tail(logFile, 20)}`;
    throw err;
  }
  passed = true;
});

/** Text of an element inside the webview, or null when it is not shown. */
async function textOf(locator) {
  if ((await locator.count()) === 0) return null;
  return (await locator.first().textContent())?.trim() ?? null;
}
