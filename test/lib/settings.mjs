// The VS Code user settings every test window starts with: the generated tiny model, the Python that has torch,
// and training sized so that the tiny model learns the fixture's marker text in about a minute of CPU.
import { python } from "./tools.mjs";

/** @param {string} modelPath */
export function testUserSettings(modelPath) {
  return {
    "repotune.modelPath": modelPath,
    "repotune.pythonPath": python,
    // Measured on test/fixtures/sample-repo (2 CPU cores, ~45 s of training): with fewer steps or a lower rank
    // the random tiny model does not yet complete `const greeting = "` with the marker in a new file.
    "repotune.training.steps": 600,
    "repotune.training.seqLen": 128,
    "repotune.training.rank": 64,
    "repotune.training.learningRate": 0.005,
    // Runs start without waiting for the plan dialog (the UI test clicks it on its first run).
    "repotune.training.confirmPlan": false,
    "editor.inlineSuggest.enabled": true,
    // Training middles never end just before a closing quote (a middle is the rest of a line or whole lines), so
    // the tiny model has not learned to complete with an auto-inserted `"` after the cursor; a real model has.
    "editor.autoClosingQuotes": "never",
    "editor.autoClosingBrackets": "never",
    // Keep the window quiet and predictable: nothing else suggests, nothing pops up over the editor.
    "editor.quickSuggestions": { other: false, comments: false, strings: false },
    "editor.suggestOnTriggerCharacters": false,
    "workbench.startupEditor": "none",
    "workbench.secondarySideBar.defaultVisibility": "hidden",
    "chat.disableAIFeatures": true,
    "workbench.tips.enabled": false,
    "extensions.autoCheckUpdates": false,
    "extensions.autoUpdate": false,
    "telemetry.telemetryLevel": "off",
    "security.workspace.trust.enabled": false,
    "git.openRepositoryInParentFolders": "never",
  };
}
