// Entry point of the extension-host tests: VS Code loads this file (extensionTestsPath) and awaits run().
// Runs every *.test.js that esbuild put next to it.
import * as path from "node:path";
import { readdirSync } from "node:fs";
import Mocha from "mocha";

export function run(): Promise<void> {
  return runTestsIn(__dirname);
}

/** Runs every *.test.js in `dir` (not in its subfolders, which hold suites for other windows). */
export function runTestsIn(dir: string): Promise<void> {
  // Generous per-test timeout: a fine-tune of the fixture on 2 CPU cores takes minutes; test/vscode/run.mjs
  // guards the whole run with its own, shorter limit.
  const mocha = new Mocha({ ui: "tdd", color: false, timeout: 300_000 });
  for (const file of readdirSync(dir).filter((f) => f.endsWith(".test.js")).sort()) {
    mocha.addFile(path.join(dir, file));
  }
  return new Promise((resolve, reject) => {
    mocha.run((failures) => (failures > 0 ? reject(new Error(`${failures} extension-host test(s) failed.`)) : resolve()));
  });
}
