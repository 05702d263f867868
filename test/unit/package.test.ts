// `npm run package` for real, on a target whose binaries are installed here (no network): the VSIX carries that
// platform's llama.cpp build and no other, says its target platform, and holds what the extension runs.
// Run from the repository root after `node esbuild.mjs` (the script packages dist/ as it is, with --skip-build).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as path from "node:path";
import { summarizeVsix, type VsixSummary } from "../../scripts/vsixSummary.mjs";
import { removeDir, tempDir } from "./support/pipeline";

const script = path.join(process.cwd(), "scripts/package.mjs");

function runPackage(args: string[]) {
  return spawnSync(process.execPath, [script, "--skip-build", ...args], { encoding: "utf8" });
}

describe("scripts/package.mjs", () => {
  let dir: string;
  let out: string;
  let summary: VsixSummary;
  let stdout: string;

  before(async () => {
    dir = tempDir("package");
    out = path.join(dir, "arm64.vsix");
    const r = runPackage(["--target", "linux-arm64", "--out", out]);
    assert.equal(r.status, 0, r.stderr + r.stdout);
    stdout = r.stdout;
    summary = await summarizeVsix(out);
  });
  after(() => removeDir(dir));

  test("the linux-arm64 VSIX carries linux-arm64's llama.cpp build and no other platform's", () => {
    assert.equal(summary.targetPlatform, "linux-arm64");
    assert.deepEqual(summary.binaryPackages.map((p) => [p.name, p.version, p.addon]), [["@node-llama-cpp/linux-arm64", "3.21.1", true]]);
    assert.ok(!summary.files.some((f) => /@node-llama-cpp\/(linux-x64|linux-armv7l|win|mac)/.test(f)), "no other platform's binaries");
  });

  test("it holds the extension, the engine, the trainer and node-llama-cpp, and no sources or tests", () => {
    for (const f of ["extension/package.json", "extension/dist/extension.js", "extension/dist/engine.mjs", "extension/trainer/repotune_trainer/__main__.py", "extension/node_modules/node-llama-cpp/package.json"]) {
      assert.ok(summary.files.includes(f), `${f} is missing`);
    }
    assert.ok(!summary.files.some((f) => /^extension\/(src|test|scripts|trainer\/tests)\//.test(f) || f.endsWith(".map")), "sources, tests and maps stay out");
    assert.ok(!summary.files.includes("extension/node_modules/node-llama-cpp/llama/gitRelease.bundle"));
  });

  test("it reports the VSIX's size and contents", () => {
    assert.match(stdout, /linux-arm64: .*arm64\.vsix\n {2}[\d.]+ MB packed, [\d.]+ MB unpacked, \d+ files, TargetPlatform linux-arm64/);
    assert.match(stdout, /@node-llama-cpp\/linux-arm64@3\.21\.1 {2}[\d.]+ MB, \d+ files, llama-addon\.node yes {2}from node_modules/);
    assert.equal(summary.bytes > 1e6 && summary.bytes < 30e6, true, `${summary.bytes} bytes`);
  });

  test("an unknown target or an --out for several targets is refused with what to do", () => {
    const unknown = runPackage(["--target", "solaris-sparc"]);
    assert.equal(unknown.status, 1);
    assert.match(unknown.stderr, /no binary list for target "solaris-sparc"\. Targets: linux-x64, linux-arm64/);
    const two = runPackage(["--target", "linux-x64", "--target", "linux-arm64", "--out", path.join(dir, "x.vsix")]);
    assert.equal(two.status, 1);
    assert.match(two.stderr, /--out names one VSIX/);
  });
});
