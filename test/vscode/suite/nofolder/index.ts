// Entry point of the suite for a window without a folder (test/vscode/run.mjs --no-folder).
import { runTestsIn } from "../index";

export function run(): Promise<void> {
  return runTestsIn(__dirname);
}
