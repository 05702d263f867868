// Driving the workbench in code-server from playwright: the RepoTune view and panel (webviews in nested iframes),
// commands, the colour theme, screenshots in dark and light, and the run folders the extension writes.
import { readFileSync, readdirSync, statSync, writeFileSync, existsSync } from "node:fs";
import { join } from "node:path";

// The ids VS Code 1.139 uses; it rewrites the older "Default Dark Modern" into the settings file, which would race
// with the test's own writes.
export const THEMES = { dark: "Dark Modern", light: "Light Modern", highContrast: "Default High Contrast" };
const THEME_KIND = { "Dark Modern": "vs-dark", "Light Modern": "vs", "Default High Contrast": "hc-black" };

/** The Run view's document (a webview view) and the report panel's (a webview panel). */
export function runView(page) {
  return page.frameLocator('iframe.webview[src*="extensionId=repotune.repotune"][src*="purpose=webviewView"]').frameLocator("iframe#active-frame");
}

export function reportPanel(page) {
  return page.frameLocator('iframe.webview[src*="extensionId=repotune.repotune"]:not([src*="purpose=webviewView"])').frameLocator("iframe#active-frame");
}

/** Runs a command by its title from the command palette. */
export async function runCommand(page, title) {
  await page.keyboard.press("F1");
  const quickInput = page.locator(".quick-input-widget");
  await quickInput.locator("input").waitFor();
  await page.keyboard.type(title);
  await quickInput.locator(`.monaco-list-row:has-text("${title}")`).first().waitFor();
  await page.keyboard.press("Enter");
}

/**
 * Writes the user settings (both scopes code-server reads, as startCodeServer does) and waits until the window
 * applied the colour theme: the workbench's classes say which kind of theme is on.
 */
export async function applySettings(page, userDataDir, settings) {
  for (const scope of ["User", "Machine"]) writeFileSync(join(userDataDir, scope, "settings.json"), JSON.stringify(settings, null, 2));
  const kind = THEME_KIND[settings["workbench.colorTheme"]] ?? "vs-dark";
  await page.locator(`.monaco-workbench.${kind}`).waitFor({ timeout: 15_000 });
}

/**
 * The texts of several test ids read at one instant (a running trainer updates the view several times a second,
 * so reading them one by one could mix two steps). Ids not shown are null.
 */
export async function textsAtOnce(frame, ids) {
  return frame.locator("body").evaluate((body, wanted) => {
    const out = {};
    for (const id of wanted) out[id] = body.querySelector(`[data-testid="${id}"]`)?.textContent?.trim() ?? null;
    return out;
  }, ids);
}

/** Text of an element, or null when it is not shown. */
export async function textOf(locator) {
  if ((await locator.count()) === 0) return null;
  return (await locator.first().textContent())?.trim() ?? null;
}

/** Where the extension keeps its runs in this code-server's state (the remote extension host's global storage). */
export function runsRoot(userDataDir) {
  return join(userDataDir, "User", "globalStorage", "repotune.repotune", "runs");
}

/** Run folders of every repository, oldest first (run ids sort by time). */
export function runDirs(userDataDir) {
  const root = runsRoot(userDataDir);
  if (!existsSync(root)) return [];
  return readdirSync(root)
    .flatMap((repo) => readdirSync(join(root, repo)).map((id) => ({ id, dir: join(root, repo, id) })))
    .filter((r) => statSync(r.dir).isDirectory())
    .sort((a, b) => (a.id < b.id ? -1 : 1))
    .map((r) => r.dir);
}

export function readEvents(runDir) {
  return readFileSync(join(runDir, "events.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
}

/** The processes whose command line holds every one of `needles` (read from /proc, as ps does). */
export function findProcesses(needles) {
  const pids = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    let cmdline;
    try {
      cmdline = readFileSync(`/proc/${name}/cmdline`, "utf8").split("\0").join(" ");
    } catch {
      continue; // it exited while we looked
    }
    if (needles.every((n) => cmdline.includes(n))) pids.push(Number(name));
  }
  return pids;
}

/** Formats as the webviews do (webview/common.ts), so the test compares the text a user reads with the events. */
export const fmt = {
  num: (x, digits = 3) => x.toFixed(digits),
  int: (x) => Math.round(x).toLocaleString("en-US"),
  pct: (x) => `${(x * 100).toFixed(1)}%`,
  signedPct: (x) => `${x >= 0 ? "+" : "−"}${(Math.abs(x) * 100).toFixed(1)}`,
  bytes: (n) => {
    const units = ["B", "KB", "MB", "GB", "TB"];
    let i = 0;
    for (; n >= 1024 && i < units.length - 1; i++) n /= 1024;
    return `${Number.isInteger(n) || n >= 100 ? Math.round(n) : n.toFixed(1)} ${units[i]}`;
  },
};
