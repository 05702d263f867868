// The workspace a test opens: a copy of a fixture repository, committed to git so the extension takes the
// same path as in a real checkout (tracked files, .gitignore, commit id in the manifest).
import { cpSync, mkdirSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { repoRoot } from "./tools.mjs";

/** @param {string} root @param {string} [fixture] @returns {string} absolute path of the workspace folder */
export function prepareWorkspace(root, fixture = "sample-repo") {
  const folder = join(root, fixture);
  mkdirSync(root, { recursive: true });
  cpSync(join(repoRoot, "test", "fixtures", fixture), folder, { recursive: true });
  const git = (...args) =>
    execFileSync("git", ["-c", "user.name=RepoTune Test", "-c", "user.email=test@repotune.invalid", ...args], {
      cwd: folder,
      stdio: ["ignore", "ignore", "pipe"],
    });
  git("init", "-q", "-b", "main");
  git("add", "-A");
  git("commit", "-q", "-m", "fixture");
  return folder;
}
