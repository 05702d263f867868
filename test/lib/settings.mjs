// The VS Code user settings every test window starts with: the generated tiny model, the Python that has torch,
// and training sized so that the tiny model learns the fixture's marker text in about a minute of CPU.
import { python } from "./tools.mjs";

/** The text the tiny model can only produce after training on test/fixtures/sample-repo. */
export const MARKER = "zebra-quartz-42";
/** What a test types into a new file before asking for a completion. */
export const PROMPT_PREFIX = 'const greeting = "';

/** @param {string} modelPath */
export function testUserSettings(modelPath) {
  return {
    "repotune.modelPath": modelPath,
    "repotune.pythonPath": python,
    "repotune.training.steps": 120,
    "repotune.training.seqLen": 128,
    "editor.inlineSuggest.enabled": true,
    // Keep the window quiet and predictable: nothing else suggests, nothing pops up over the editor.
    "editor.quickSuggestions": { other: false, comments: false, strings: false },
    "editor.suggestOnTriggerCharacters": false,
    "workbench.startupEditor": "none",
    "workbench.tips.enabled": false,
    "extensions.autoCheckUpdates": false,
    "extensions.autoUpdate": false,
    "telemetry.telemetryLevel": "off",
    "security.workspace.trust.enabled": false,
    "git.openRepositoryInParentFolders": "never",
  };
}
