// Entry point of the suite for a folder opened untrusted, in Restricted Mode (test/vscode/run.mjs --untrusted).
import { runTestsIn } from "../index";

export function run(): Promise<void> {
  return runTestsIn(__dirname);
}
