// The user's path through RepoTune, clicked in a real VS Code (code-server in headless chromium) with the extension
// installed from the packaged VSIX, every state drawn from real runs of the tiny model and real failures:
//   ready -> a model file that is not a GGUF (failed) -> fine-tune from the command palette (preparing, training,
//   evaluating, done) -> the training report -> the adapters list -> the adapter's ghost text -> another run, the
//   window reloaded mid-run (the trainer goes on, the view follows it again) -> stop -> resume -> the trainer killed
//   -> delete the active adapter.
// Each state is screenshotted in the dark and the light theme (test-output/screenshots/), and the numbers the
// webviews show are checked against the run's events.jsonl.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { installExtension, startCodeServer, tail } from "../lib/codeServer.mjs";
import { launchBrowser } from "../lib/browser.mjs";
import { prepareWorkspace } from "../lib/workspace.mjs";
import { makeTinyModel } from "../lib/tinyModel.mjs";
import { testUserSettings } from "../lib/settings.mjs";
import { repoRoot } from "../lib/tools.mjs";
import {
  THEMES, applySettings, findProcesses, fmt, readEvents, reportPanel, runCommand, runDirs, runView, textOf, textsAtOnce,
} from "../lib/workbench.mjs";

const expectations = JSON.parse(readFileSync(join(repoRoot, "test", "fixtures", "expectations.json"), "utf8"));
const { prefix: PREFIX, marker: MARKER } = expectations["sample-repo"];
const VSIX = join(repoRoot, "test-output", "repotune.vsix");
const SHOTS = join(repoRoot, "test-output", "screenshots");
const OUT = join(repoRoot, "test-output", "ui");
/** RepoTune's log lines from every extension host of this window's session, oldest first. */
function extensionLog(userData) {
  const files = readdirSync(join(userData, "logs"), { recursive: true })
    .filter((f) => String(f).endsWith(join("repotune.repotune", "RepoTune.log")))
    .map((f) => join(userData, "logs", String(f)));
  return files.sort().flatMap((f) => readFileSync(f, "utf8").split("\n"));
}

const TRAINING_TIMEOUT_MS = Number(process.env.REPOTUNE_UI_TRAINING_TIMEOUT_S || 300) * 1000;

test("every state of a run in the Run view and the report, from real runs and real failures", { timeout: 600_000 }, async (t) => {
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
  const notAModel = join(root, "not-a-model.gguf");
  writeFileSync(notAModel, "this is text, not a model\n");
  const workspace = prepareWorkspace(join(root, "workspace"));
  // An empty file to type into; created before the window opens so Quick Open finds it.
  writeFileSync(join(workspace, "src", "scratch.js"), "");
  // "off" is what VS Code 1.139 migrates `false` to: written as such, the workbench has nothing to rewrite.
  const settings = {
    ...testUserSettings(modelPath), "extensions.autoUpdate": "off", "workbench.colorTheme": THEMES.dark,
    // The first run shows its plan and waits for Start, as it does for a user.
    "repotune.training.confirmPlan": true,
  };

  // The extension's debug lines: each inline completion request and what became of it (a missing ghost text is
  // explained in the failure message).
  const server = await startCodeServer({ root, settings, logFile, logLevels: ["debug"] });
  const userData = server.dirs.userData;
  const browser = await launchBrowser();
  let passed = false;
  t.after(async () => {
    await browser.close().catch(() => {});
    await server.stop();
    if (passed) rmSync(root, { recursive: true, force: true });
    else t.diagnostic(`state kept in ${root}`);
  });
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  const view = runView(page);
  const phase = view.locator('[data-testid="phase"]');
  let shots = 0;
  const shot = async (name) => {
    shots += 1;
    const file = join(SHOTS, `${String(shots).padStart(2, "0")}-${name}.png`);
    await page.screenshot({ path: file });
    t.diagnostic(`screenshot ${file}`);
  };
  let current = settings;
  const setTheme = async (theme) => {
    current = { ...current, "workbench.colorTheme": THEMES[theme] };
    await applySettings(page, userData, current);
    await page.waitForTimeout(400); // webviews get the new colours in a message after the workbench
  };
  /** Dark, then light (when the state still holds, for a state that passes by itself), then back to dark. */
  const shootBoth = async (name, stillThere = async () => true) => {
    await shot(`${name}-dark`);
    await setTheme("light");
    if (await stillThere()) await shot(`${name}-light`);
    else t.diagnostic(`${name} ended before its light screenshot`);
    await setTheme("dark");
  };
  const phaseIs = (label) => async () => ((await phase.textContent())?.trim() ?? "") === label;
  const text = (id, frame = view) => textOf(frame.locator(`[data-testid="${id}"]`));
  const newestRun = () => runDirs(userData).at(-1);
  const deferred = [];
  const softly = async (fn) => {
    try {
      await fn();
    } catch (err) {
      deferred.push(err);
      t.diagnostic(`deferred failure: ${err.message}`);
      await shot("deferred-failure").catch(() => {});
    }
  };
  const step = async (name, fn) => {
    const started = Date.now();
    await fn();
    t.diagnostic(`${name}: ${((Date.now() - started) / 1000).toFixed(1)} s`);
  };

  try {
    await step("ready", async () => {
      await page.goto(`${server.url}/?folder=${encodeURIComponent(workspace)}`);
      const repoTuneItem = page.locator('.activitybar .action-item:has(a[aria-label^="RepoTune"])');
      await repoTuneItem.waitFor({ timeout: 60_000 });
      await repoTuneItem.click();
      await view.locator('[data-testid="phase"]', { hasText: "Ready" }).waitFor({ timeout: 30_000 });
      // The next run's settings and the trainer's memory estimate for them on the detected device.
      await view.locator('[data-testid="next-memory"]', { hasText: /\d/ }).waitFor({ timeout: 60_000 });
      assert.equal(await text("next-device"), "cpu (auto)");
      assert.equal(await text("next-steps"), "600");
      assert.equal(await text("next-seq-len"), "128");
      assert.equal(await text("next-rank"), "64");
      assert.equal(await text("next-lr"), "0.005");
      assert.match((await text("next-memory")) ?? "", /^\d+(\.\d)? [KMG]B$/);
      assert.equal(await text("next-time"), "–", "no run has measured this device yet");
      assert.ok(await text("no-adapters"), "a fresh workspace lists no adapter");
      await shootBoth("ready");
    });

    await step("failed: not a GGUF model", async () => {
      current = { ...current, "repotune.modelPath": notAModel };
      await applySettings(page, userData, current);
      // The view follows the settings: the next run's model changes when the extension host has the new value.
      await view.locator('[data-testid="next-model"]', { hasText: basename(notAModel) }).waitFor({ timeout: 15_000 });
      await view.locator('vscode-button[data-command="fineTune"]').click();
      await view.locator('[data-testid="phase"]', { hasText: "Failed" }).waitFor({ timeout: 60_000 });
      const events = readEvents(newestRun());
      const error = events.findLast((e) => e.type === "error");
      assert.ok(error, "the failed run's events file has no error event");
      assert.match(error.message, /not a GGUF/);
      assert.equal(await text("error"), error.message, "the view shows the error of the events file");
      assert.equal(await view.locator('vscode-button[data-command="openErrorSetting"]').count(), 1, "no button to open the setting that fixes it");
      await shootBoth("failed-bad-model");
      current = { ...current, "repotune.modelPath": modelPath };
      await applySettings(page, userData, current);
      await view.locator('[data-testid="next-model"]', { hasText: basename(modelPath) }).waitFor({ timeout: 15_000 });
      await runCommand(page, "Notifications: Clear All Notifications");
    });

    let runDir;
    await step("fine-tune: preparing, training, evaluating, done", async () => {
      await runCommand(page, "Fine-tune on this repo");
      // The failed run stays on screen until the command reaches the extension and the new run starts.
      await view.locator('[data-testid="phase"]:not(:text-is("Failed"))').waitFor({ timeout: 30_000 });
      const seen = new Set();
      let training = null;
      let planShown = null;
      const dialog = page.locator(".monaco-dialog-box");
      const deadline = Date.now() + TRAINING_TIMEOUT_MS;
      for (;;) {
        if (planShown === null && await dialog.isVisible()) {
          // The plan, once the data is prepared: the values set in settings as given, the rest planned.
          planShown = await dialog.locator(".dialog-message-detail").innerText();
          assert.match((await dialog.locator(".dialog-message-text").textContent()) ?? "", /Fine-tune with this plan\?/);
          assert.match(planShown, /600 steps \([\d.]+ passes over the data\), rank 64, 128-token sequences, batch \d+/);
          assert.match(planShown, /Peak memory about [\d.]+ GiB of [\d.]+ GiB available on the CPU/);
          assert.match(planShown, /batch 8\./, "the planned micro-batch");
          await view.locator('[data-testid="status"]', { hasText: "Start the training plan shown, or edit it." }).waitFor({ timeout: 10_000 });
          await shot("plan-dialog");
          // Edit: the micro-batch to 4; the plan keeps 8 sequences a step through accumulation, with a new estimate.
          await dialog.locator(".monaco-button", { hasText: "Edit Plan" }).click();
          const quickInput = page.locator(".quick-input-widget");
          await quickInput.locator('.monaco-list-row:has-text("Micro-batch")').first().waitFor({ timeout: 10_000 });
          await page.keyboard.type("Micro-batch");
          await page.keyboard.press("Enter");
          await quickInput.locator(".quick-input-box input").fill("4");
          await page.keyboard.press("Enter");
          await quickInput.locator('.monaco-list-row:has-text("4 (set by you)")').first().waitFor({ timeout: 60_000 });
          await shot("plan-edit");
          await page.keyboard.type("Done");
          await quickInput.locator('.monaco-list-row:has-text("Done")').first().waitFor({ timeout: 10_000 });
          await page.keyboard.press("Enter");
          await dialog.waitFor({ timeout: 30_000 });
          planShown = await dialog.locator(".dialog-message-detail").innerText();
          assert.match(planShown, /batch 4 x 2 accumulated\./, "the dialog shows the edited plan");
          await dialog.locator(".monaco-button", { hasText: "Start Training" }).click();
        }
        const now = (await phase.textContent())?.trim() ?? "";
        if (now === "Training" && !seen.has(now)) {
          // A training screenshot worth having shows a hundred steps, a loss and the chart.
          await view.locator('[data-testid="step"]', { hasText: /^\d{3,} \// }).waitFor({ timeout: 60_000 });
          await view.locator("#chart canvas").waitFor({ timeout: 10_000 });
          const shown = await textsAtOnce(view, ["step", "loss", "tokens-per-s", "elapsed", "eta", "memory"]);
          training = { step: shown.step, loss: shown.loss, tokensPerS: shown["tokens-per-s"], elapsed: shown.elapsed, eta: shown.eta, memory: shown.memory };
        }
        if (["Preparing data", "Training", "Evaluating", "Done", "Failed", "Stopped"].includes(now) && !seen.has(now)) {
          seen.add(now);
          await shootBoth(`run-${now.toLowerCase().replace(/\W+/g, "-")}`, phaseIs(now));
        }
        if (now === "Done" || now === "Failed" || now === "Stopped") break;
        assert.ok(Date.now() < deadline, `the run did not finish within ${TRAINING_TIMEOUT_MS / 1000} s; phases seen: ${[...seen]}`);
        await page.waitForTimeout(300);
      }
      t.diagnostic(`phases seen: ${[...seen].join(", ")}; training showed ${JSON.stringify(training)}`);
      assert.equal([...seen].at(-1), "Done", `the run ended without success: ${await text("error")}`);
      assert.ok(training, "the view never showed training");
      runDir = newestRun();
      const events = readEvents(runDir);
      const trainerEvents = events.filter((e) => e.type === "trainer").map((e) => e.event);
      const plan = events.find((e) => e.type === "plan");
      assert.ok(planShown !== null, "the plan dialog never showed");
      assert.ok(plan, "the events file has no plan");
      assert.equal(plan.edited, true);
      assert.deepEqual([plan.batch, plan.gradAccum, plan.rank, plan.steps], [4, 2, 64, 600]);
      const started = trainerEvents.find((e) => e.event === "start");
      assert.deepEqual([started?.batch, started?.grad_accum], [4, 2], "the trainer got the edited plan");
      assert.equal(planShown.replace(/\s+/g, " ").trim(), plan.lines.join(" "), "the dialog showed another plan than the run trained with");
      assert.equal(await text("plan"), plan.lines[1]);

      // What training showed is what the trainer reported at that step.
      const [, shownStep, shownSteps] = /^(\d+) \/ (\d+)$/.exec(training.step ?? "") ?? [];
      const atStep = trainerEvents.find((e) => e.event === "step" && e.step === Number(shownStep));
      assert.ok(atStep, `the view showed step ${training.step}, which the events file does not have`);
      assert.equal(Number(shownSteps), atStep.steps);
      assert.equal(training.loss, fmt.num(atStep.loss));
      assert.equal(training.tokensPerS, fmt.int(atStep.tokens_per_s));
      assert.match(training.elapsed ?? "", /^\d+ (s|m \d\d s)$/);
      assert.match(training.eta ?? "", /^\d+ (s|m \d\d s)$/);
      assert.match(training.memory ?? "", /^\d+(\.\d)? [KMG]B peak estimated of \d+(\.\d)? [KMG]B free$/);

      // The end of the run: every number against the events file.
      const start = trainerEvents.find((e) => e.event === "start");
      const lastStep = trainerEvents.findLast((e) => e.event === "step");
      const done = trainerEvents.find((e) => e.event === "done");
      const dataset = events.find((e) => e.type === "dataset").summary;
      const evaluation = events.find((e) => e.type === "evaluation")?.evaluation;
      const adapter = events.find((e) => e.type === "adapter");
      assert.equal(await text("step"), `${done.step} / ${start.steps}`);
      assert.equal(await text("loss"), fmt.num(lastStep.loss));
      assert.equal(await text("tokens-per-s"), fmt.int(lastStep.tokens_per_s));
      assert.equal(await text("val-loss-base"), fmt.num(done.val_loss_base));
      assert.equal(await text("val-loss"), fmt.num(done.val_loss));
      assert.ok(evaluation, "the run was not evaluated");
      assert.equal(await text("edit-similarity"), `${fmt.pct(evaluation.base.editSimilarity.mean)} → ${fmt.pct(evaluation.adapter.editSimilarity.mean)}`);
      assert.equal(await text("gain"), `${fmt.signedPct(evaluation.diff.editSimilarity.mean)} points (95%: ${fmt.signedPct(evaluation.diff.editSimilarity.lo)} to ${fmt.signedPct(evaluation.diff.editSimilarity.hi)})`);
      assert.equal(await text("exact-match"), `${fmt.pct(evaluation.base.exactMatch.mean)} → ${fmt.pct(evaluation.adapter.exactMatch.mean)}`);
      assert.equal(await text("status"), evaluation.decision.reason);
      assert.equal(await text("adapter"), basename(adapter.adapterPath));
      // Activation follows the run's last event (the evaluation kept the adapter).
      await view.locator('[data-testid="active-adapter"]', { hasText: basename(adapter.adapterPath) }).waitFor({ timeout: 10_000 });
      assert.equal(await text("files-used"), fmt.int(dataset.filesUsed));
      assert.equal(await text("train-tokens"), fmt.int(dataset.trainTokens));
      assert.equal(await text("secrets-excluded"), `${dataset.filesSkipped.secret ?? 0} files`);
      // Now the window has measured this device, the next run has a time estimate.
      await view.locator('[data-testid="next-time"]', { hasText: /^about / }).waitFor({ timeout: 30_000 });
      await runCommand(page, "Notifications: Clear All Notifications");
      await setTheme("highContrast");
      await shot("run-done-high-contrast");
      await setTheme("dark");
    });

    await step("training report", async () => {
      await runCommand(page, "Notifications: Clear All Notifications");
      // Keyboard only: the button takes focus and Enter opens the report.
      await view.locator('vscode-button[data-command="showRun"]').focus();
      await page.keyboard.press("Enter");
      const panel = reportPanel(page);
      await panel.locator('[data-testid="phase"]', { hasText: "Done" }).waitFor({ timeout: 30_000 });
      for (const id of ["chart-loss", "chart-lr", "chart-tps"]) await panel.locator(`[data-testid="${id}"] canvas`).first().waitFor({ timeout: 30_000 });
      await page.waitForTimeout(500); // the charts draw on the next animation frame
      const events = readEvents(runDir);
      assert.equal(await text("run-id", panel), basename(runDir));
      for (const id of ["step", "loss", "val-loss-base", "val-loss", "edit-similarity", "gain", "exact-match"]) {
        assert.equal(await text(id, panel), await text(id), `the report and the view disagree on ${id}`);
      }
      // The event log: every event of the file except steps (charted) and evaluation progress.
      const logged = events.filter((e) => !(e.type === "trainer" && e.event.event === "step") && e.type !== "evalProgress");
      assert.equal(await panel.locator('[data-testid="log-line"]').count(), logged.length, "the event log does not hold the file's events");
      // Hyperparameters and device, from the trainer's start event and the manifest.
      const start = events.find((e) => e.type === "trainer" && e.event.event === "start").event;
      const manifest = JSON.parse(readFileSync(join(runDir, "manifest.json"), "utf8"));
      assert.equal(await text("hp-steps", panel), String(start.steps));
      assert.equal(await text("hp-rank", panel), String(manifest.settings.rank));
      assert.equal(await text("hp-lr", panel), String(manifest.settings.lr));
      assert.equal(await text("dev-device", panel), start.device);
      assert.equal(await text("decision", panel), events.find((e) => e.type === "evaluation").evaluation.decision.reason);
      assert.equal(await panel.locator('[data-testid="evaluation-table"] tbody tr').count(), 3);
      await shootBoth("report");
      await setTheme("highContrast");
      await shot("report-high-contrast");
      await setTheme("dark");

      // The dataset table: filter by reason, sort by column; counts from the run's report.json.
      const report = JSON.parse(readFileSync(join(runDir, "data", "report.json"), "utf8"));
      const rows = panel.locator('[data-testid="dataset-row"]');
      await panel.locator("#dataset").scrollIntoViewIfNeeded();
      const all = await rows.count();
      assert.ok(all >= 1 + report.split.heldOut.length, `the dataset table has ${all} rows`);
      const filter = panel.locator('[data-testid="reason-filter"]');
      await filter.click();
      await panel.locator('vscode-single-select [role="option"], vscode-single-select li', { hasText: "held out for evaluation" }).first().click();
      await panel.locator('[data-testid="dataset-row"]').first().waitFor();
      assert.equal(await rows.count(), report.split.heldOut.length, "filtering by reason shows the held-out files");
      for (let i = 0; i < (await rows.count()); i++) assert.equal(await rows.nth(i).locator("td").first().textContent(), "held out for evaluation");
      await shootBoth("report-dataset-filtered");
      await panel.locator('button[data-sort="detail"]').click();
      assert.equal(await panel.locator('th:has(button[data-sort="detail"])').getAttribute("aria-sort"), "ascending");
      const details = await panel.locator('[data-testid="dataset-row"] td.detail').allTextContents();
      assert.deepEqual(details, [...details].sort((a, b) => a.localeCompare(b)), "sorting by detail did not sort");
      await panel.locator("#log").scrollIntoViewIfNeeded();
      await shootBoth("report-log");
      await page.keyboard.press("Control+W");
    });

    await step("adapters", async () => {
      const adapter = view.locator('[data-testid="adapter-item"]');
      assert.equal(await adapter.count(), 1);
      const evaluation = readEvents(runDir).find((e) => e.type === "evaluation").evaluation;
      const adapterPath = readEvents(runDir).find((e) => e.type === "adapter").adapterPath;
      assert.equal(await text("adapter-gain"), `${fmt.signedPct(evaluation.diff.editSimilarity.mean)} pts`);
      assert.equal(await text("adapter-size"), fmt.bytes(statSync(adapterPath).size));
      assert.equal(await view.locator('[data-testid="adapter-active"]').count(), 1);
      // Icon-only buttons are named for screen readers.
      for (const label of await view.locator("vscode-toolbar-button").evaluateAll((els) => els.map((e) => e.getAttribute("label")))) {
        assert.ok(label && label.length > 8, `an icon button without a label: ${label}`);
      }
      await view.locator('vscode-toolbar-button[data-command="deactivateAdapter"]').click();
      await view.locator('[data-testid="active-adapter"]', { hasText: "none (base model only)" }).waitFor({ timeout: 10_000 });
      assert.equal(await view.locator('[data-testid="adapter-active"]').count(), 0);
      await shootBoth("adapter-inactive");
      await view.locator('vscode-toolbar-button[data-adapter-action="activate"]').click();
      await view.locator('[data-testid="active-adapter"]', { hasText: basename(adapterPath) }).waitFor({ timeout: 10_000 });
    });

    // The completions are not this test's subject, but the user's path ends in them: a failure here is reported at the
    // end, after the states that follow (which do not depend on it) were checked too.
    await step("ghost text from the adapter", () => softly(async () => {
      const quickInput = page.locator(".quick-input-widget");
      await page.keyboard.press("Control+P");
      await quickInput.locator("input").waitFor();
      await page.keyboard.type("scratch.js");
      await quickInput.locator('.monaco-list-row:has-text("scratch.js")').first().waitFor();
      await page.keyboard.press("Enter");
      const editor = page.locator('.editor-instance .monaco-editor[data-uri$="scratch.js"]');
      await editor.waitFor();
      await editor.locator(".view-lines").click();
      await page.keyboard.type(PREFIX, { delay: 50 });
      // Typing asks for a suggestion by itself; Alt+\ (Trigger Inline Suggestion) asks again if none came, or asks
      // afresh for this exact place when the one shown was reused from a request made a keystroke earlier.
      const ghost = editor.locator(".ghost-text-decoration, .ghost-text-decoration-preview, .ghost-text");
      const ghostDeadline = Date.now() + 60_000;
      let ghostText = "";
      while (!ghostText.includes(MARKER) && Date.now() < ghostDeadline) {
        await page.waitForTimeout(1_000);
        ghostText = (await ghost.allTextContents()).join("");
        if (!ghostText.includes(MARKER)) {
          if (ghostText) await page.keyboard.press("Escape");
          await page.keyboard.press("Alt+Backslash");
        }
      }
      await shot("ghost-text");
      assert.ok(
        ghostText.startsWith(MARKER),
        `the ghost text was ${JSON.stringify(ghostText)}, expected it to start with ${MARKER}; the extension's completion log:\n` +
          extensionLog(userData).filter((l) => /completion|\[engine\]/.test(l)).slice(-40).join("\n"),
      );
      await page.keyboard.press("Tab");
      const line = editor.locator(".view-line").first();
      await line.filter({ hasText: MARKER }).waitFor({ timeout: 10_000 });
      const accepted = (await line.textContent())?.replace(/\u00a0/g, " ") ?? "";
      assert.ok(accepted.startsWith(PREFIX + MARKER), `after Tab the line reads ${JSON.stringify(accepted)}`);
      // At the debug log level each request says what became of it.
      const shownLines = extensionLog(userData).filter((l) => /\[debug\] completion (automatic|invoked) at \d+:\d+: .*\d+ chars shown/.test(l));
      assert.ok(shownLines.length > 0, "no debug log line says a completion was shown");
      t.diagnostic(`last completion: ${shownLines.at(-1)?.replace(/^.*\[debug\] /, "")}`);
    }));
    await page.keyboard.press("Escape");

    let secondRun;
    await step("window reloaded mid-run: the trainer goes on and the view follows it again; Stop checkpoints", async () => {
      // Long enough that the run is still training after the reload (it no longer stops the trainer).
      current = { ...current, "repotune.training.steps": 5000, "repotune.training.confirmPlan": false };
      await applySettings(page, userData, current);
      await view.locator('[data-testid="next-steps"]', { hasText: "5000" }).waitFor({ timeout: 30_000 });
      await view.locator('vscode-button[data-command="fineTune"]').click();
      await view.locator('[data-testid="phase"]', { hasText: "Training" }).waitFor({ timeout: 60_000 });
      await view.locator('[data-testid="step"]', { hasText: /^([5-9]|\d\d+) \// }).waitFor({ timeout: 60_000 });
      secondRun = newestRun();
      assert.notEqual(secondRun, runDir);
      const trainers = findProcesses(["repotune_trainer", "train", secondRun]);
      assert.equal(trainers.length, 1, `expected one trainer process, found ${trainers.length}`);
      const beforeReload = Number((await text("step"))?.split(" ")[0]);
      await page.reload();
      const repoTuneItem = page.locator('.activitybar .action-item:has(a[aria-label^="RepoTune"])');
      await repoTuneItem.waitFor({ timeout: 60_000 });
      // The reloaded window restores the RepoTune side bar by itself, or not: open it only when its container is not
      // the active one (a click on the active one would close the side bar).
      for (const until = Date.now() + 60_000; Date.now() < until && (await view.locator('[data-testid="phase"]').count()) === 0;) {
        if (!(await repoTuneItem.evaluate((el) => el.classList.contains("checked")))) await repoTuneItem.click();
        await page.waitForTimeout(1_000);
      }
      // The same trainer process, followed again: the new window writes its next steps into the run's history, and
      // the view shows them.
      await view.locator('[data-testid="phase"]', { hasText: "Training" }).waitFor({ timeout: 60_000 });
      const followed = (events) => events.findIndex((e) => e.type === "log" && /following it again/.test(e.message));
      for (const until = Date.now() + 60_000; followed(readEvents(secondRun)) < 0 && Date.now() < until;) await page.waitForTimeout(250);
      const atFollow = readEvents(secondRun);
      const from = followed(atFollow);
      assert.ok(from >= 0, "the events file does not say the window followed the trainer again");
      const stepsBefore = atFollow.slice(0, from).filter((e) => e.type === "trainer" && e.event.event === "step").map((e) => e.event.step);
      const lastBefore = Math.max(beforeReload, ...stepsBefore);
      let afterReload = 0;
      for (const until = Date.now() + 60_000; afterReload <= lastBefore && Date.now() < until; await page.waitForTimeout(250)) {
        afterReload = Number((await text("step"))?.split(" ")[0]) || 0;
      }
      assert.ok(afterReload > lastBefore, `the view shows step ${afterReload}; the history before the reload ended at ${lastBefore}`);
      const stepsAfter = readEvents(secondRun).slice(from).filter((e) => e.type === "trainer" && e.event.event === "step").map((e) => e.event.step);
      assert.ok(stepsAfter.length > 0 && stepsAfter[0] === lastBefore + 1, `steps after the reload start at ${stepsAfter[0]}, the history before it ended at ${lastBefore}`);
      assert.deepEqual(findProcesses(["repotune_trainer", "train", secondRun]), trainers, "the reload did not keep the trainer process");
      await shootBoth("training-after-reload", phaseIs("Training"));
      await view.locator('vscode-button[data-command="stop"]').click();
      await view.locator('[data-testid="phase"]', { hasText: "Stopped" }).waitFor({ timeout: 60_000 });
      const events = readEvents(secondRun);
      const stopped = events.findLast((e) => e.type === "trainer" && e.event.event === "stopped")?.event;
      assert.ok(stopped?.checkpoint && existsSync(stopped.checkpoint), `Stop did not leave a checkpoint: ${JSON.stringify(events.at(-1))}`);
      assert.ok(stopped.step >= afterReload, `stopped at step ${stopped.step}, before the step shown after the reload (${afterReload})`);
      assert.equal(await text("status"), `Stopped at step ${stopped.step} of ${events.find((e) => e.type === "trainer" && e.event.event === "start").event.steps}; a checkpoint at step ${stopped.step} can be resumed.`);
      const resume = view.locator('vscode-button[data-command="resume"]');
      assert.equal(await resume.getAttribute("disabled"), null, `Resume is disabled: ${await resume.getAttribute("title")}`);
      await shootBoth("stopped-after-reload");
    });

    await step("resume, then the trainer killed", async () => {
      const before = readEvents(secondRun).findLast((e) => e.type === "trainer" && e.event.event === "stopped").event.step;
      await view.locator('vscode-button[data-command="resume"]').click();
      await view.locator('[data-testid="status"]', { hasText: `(resumed from ${before})` }).waitFor({ timeout: 60_000 });
      await view.locator('[data-testid="step"]', { hasText: new RegExp(`^(${before + 5}|${before + 6}|${before + 7}|${before + 8}|${before + 9}|\\d{3,}) /`) }).waitFor({ timeout: 60_000 });
      await shootBoth("training-resumed", phaseIs("Training"));
      // The report opened mid-run draws the whole history, the attempt before the reload included; closing it
      // leaves the run going.
      await view.locator('vscode-button[data-command="showRun"]').click();
      const panel = reportPanel(page);
      await panel.locator('[data-testid="phase"]', { hasText: "Training" }).waitFor({ timeout: 30_000 });
      await panel.locator('[data-testid="chart-loss"] canvas').first().waitFor({ timeout: 30_000 });
      const log = (await panel.locator('[data-testid="event-log"]').textContent()) ?? "";
      assert.match(log, new RegExp(`Training stopped at step ${before}, checkpoint`), "the report lost the attempt before the stop");
      assert.match(log, /Resuming from step-\d+\.pt\./);
      await shot("report-mid-run-dark");
      await page.keyboard.press("Control+W");
      const atClose = Number((await text("step"))?.split(" ")[0]);
      await view.locator('[data-testid="step"]', { hasText: new RegExp(`^(?!${atClose} )\\d+ /`) }).waitFor({ timeout: 30_000 });
      assert.equal(await text("phase"), "Training", "closing the report stopped the run");
      const pids = findProcesses(["repotune_trainer", "train", "--resume", secondRun]);
      assert.equal(pids.length, 1, `expected one resumed trainer process, found ${pids.length}`);
      process.kill(pids[0], "SIGKILL");
      await view.locator('[data-testid="phase"]', { hasText: "Failed" }).waitFor({ timeout: 30_000 });
      const error = readEvents(secondRun).findLast((e) => e.type === "error");
      assert.match(error.message, /killed by SIGKILL/);
      assert.equal(await text("error"), error.message);
      assert.equal(await view.locator('vscode-button[data-command="resume"]').count(), 1, "a killed run with a checkpoint offers Resume");
      assert.equal(await view.locator('vscode-button[data-command="fineTune"]').count(), 1, "a failed run offers Retry");
      await shootBoth("failed-killed-trainer");
    });

    await step("delete the active adapter", async () => {
      const adapterPath = readEvents(runDir).find((e) => e.type === "adapter").adapterPath;
      await view.locator(`vscode-toolbar-button[data-adapter-action="delete"]`).click();
      const dialog = page.locator(".monaco-dialog-box");
      await dialog.waitFor({ timeout: 10_000 });
      assert.match((await dialog.textContent()) ?? "", /serves this workspace's completions now/);
      await shot("delete-active-adapter-asks");
      await dialog.locator(".monaco-button", { hasText: "Delete and Use Base Model" }).click();
      await view.locator('[data-testid="no-adapters"]').waitFor({ timeout: 10_000 });
      assert.equal(await text("active-adapter"), "none (base model only)");
      assert.ok(!existsSync(adapterPath), "the adapter file is still there");
      assert.ok(existsSync(join(runDir, "events.jsonl")), "deleting the adapter removed its run's report");
      await shootBoth("adapter-deleted");
    });
    if (deferred.length) throw deferred[0];
  } catch (err) {
    await shot("failure").catch(() => {});
    err.message += `\ncode-server log tail:\n${tail(logFile, 20)}`;
    throw err;
  }
  passed = true;
});
