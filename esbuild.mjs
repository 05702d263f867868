// Bundles every part of RepoTune. node-llama-cpp stays external: its native binaries cannot be bundled
// and it ships in the VSIX as a runtime dependency.
import * as esbuild from "esbuild";
import { readdirSync, existsSync, mkdirSync, copyFileSync } from "node:fs";
import { join } from "node:path";

const production = process.argv.includes("--production");
const common = { bundle: true, sourcemap: !production, minify: production, logLevel: "warning" };
// GitHub Linguist's data files (vendored/generated rules, languages, heuristics) are bundled as text, and
// secretlint's profiler is replaced by a no-op (src/core/dataset/secretlintProfiler.ts says why).
const node = {
  ...common, platform: "node", target: "node20", external: ["vscode", "node-llama-cpp"],
  loader: { ".yml": "text", ".rb": "text" },
  alias: { "@secretlint/profiler": "./src/core/dataset/secretlintProfiler.ts" },
};

function testEntries(dir, suffix) {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true })
    .map(String)
    .filter((f) => f.endsWith(suffix))
    .map((f) => join(dir, f));
}

const builds = [
  { ...node, format: "cjs", entryPoints: ["src/extension.ts"], outfile: "dist/extension.js" },
  { ...node, format: "cjs", entryPoints: ["src/cli.ts"], outfile: "dist/cli.js", banner: { js: "#!/usr/bin/env node" } },
  // Worker threads of the dataset step's file selection (src/core/dataset/select.ts finds it beside the bundle).
  { ...node, format: "cjs", entryPoints: ["src/core/dataset/selectWorker.ts"], outfile: "dist/selectWorker.js" },
  // node-llama-cpp is ESM-only, so the engine process is an ES module.
  { ...node, format: "esm", entryPoints: ["src/engine/main.ts"], outfile: "dist/engine.mjs",
    banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" } },
  { ...common, platform: "browser", format: "iife", target: "es2022",
    entryPoints: { run: "webview/run.ts", panel: "webview/panel.ts" }, outdir: "dist/webview",
    loader: { ".css": "css" } },
];
if (!production) {
  const unit = testEntries("test/unit", ".test.ts");
  if (unit.length) builds.push({ ...node, format: "cjs", entryPoints: unit, outdir: "out/test/unit", outbase: "test/unit" });
  const suite = testEntries("test/vscode/suite", ".ts");
  if (suite.length) builds.push({ ...node, format: "cjs", entryPoints: suite, outdir: "out/test/vscode/suite", outbase: "test/vscode/suite", external: ["vscode", "node-llama-cpp", "mocha"] });
}

await Promise.all(builds.map((b) => esbuild.build(b)));

// Codicons for the webviews: shipped in dist/ because node_modules dev dependencies stay out of the VSIX.
mkdirSync("dist/codicons", { recursive: true });
for (const f of ["codicon.css", "codicon.ttf"]) copyFileSync(join("node_modules/@vscode/codicons/dist", f), join("dist/codicons", f));
