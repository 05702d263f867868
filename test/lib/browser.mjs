// Headless Debian chromium for driving code-server (playwright-core downloads no browser of its own).
import { chromium } from "playwright-core";
import { readTools } from "./tools.mjs";

const FLAGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--disable-dev-shm-usage",
];

/** A fresh profile each time: playwright's launch() uses a new temporary one. */
export async function launchBrowser() {
  return chromium.launch({ executablePath: readTools().chromium, headless: true, args: FLAGS });
}
