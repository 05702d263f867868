#!/usr/bin/env node
// Builds one VSIX per platform (`vsce package --target`), each carrying only its platform's llama.cpp binaries.
//
// node-llama-cpp finds its prebuilt binaries in optional packages (@node-llama-cpp/<platform>), and npm installs only
// those of the machine it runs on. So each VSIX is packaged from a staging folder: the files `vsce ls` would ship from
// this tree, without any @node-llama-cpp/* package, plus the packages listed for the target in
// src/core/binaries/packages.json ("shipped"), copied from node_modules when installed here, else fetched with
// `npm pack` (which checks the tarball against the registry's integrity; the lockfile's integrity is checked too).
// CUDA builds (300+ MB) are never shipped: the extension downloads them on first use (src/core/binaries/install.ts).
//
//   npm run package                                      every target, into vsix/
//   npm run package -- --target linux-x64 --out F.vsix   one target, nothing downloaded when its binaries are installed
//   npm run package -- --out F.vsix                      this machine's target (what `vsce package` did before)
//   options: --target T (repeatable), --out-dir DIR, --skip-build (dist/ already built with --production)
import { execFileSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import * as tar from "tar";
import { summarizeVsix, formatSummary } from "./vsixSummary.mjs";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const table = JSON.parse(readFileSync(join(root, "src/core/binaries/packages.json"), "utf8"));
const npm = process.platform === "win32" ? "npm.cmd" : "npm";

const vsce = join(root, "node_modules/@vscode/vsce/vsce");
// Thrown rather than exiting, so that a staging folder is removed on the way out.
class PackageError extends Error {}
const lock = JSON.parse(readFileSync(join(root, "package-lock.json"), "utf8")).packages;
const cacheDir = join(root, "node_modules/.cache/repotune-package");

try {
  await main();
} catch (err) {
  if (!(err instanceof PackageError)) throw err;
  console.error(`package: ${err.message}`);
  process.exitCode = 1;
}

async function main() {
  const { values } = parseArgs({
    options: {
      target: { type: "string", multiple: true },
      out: { type: "string" },
      "out-dir": { type: "string", default: "vsix" },
      "skip-build": { type: "boolean", default: false },
    },
  });
  const targets = values.target ?? (values.out !== undefined ? [`${process.platform}-${process.arch}`] : Object.keys(table.shipped));
  for (const t of targets) {
    if (!table.shipped[t]) fail(`There is no binary list for target "${t}". Targets: ${Object.keys(table.shipped).join(", ")}.`);
  }
  if (values.out !== undefined && targets.length !== 1) fail("--out names one VSIX: give exactly one --target with it, or use --out-dir.");
  const installed = JSON.parse(readFileSync(join(root, "node_modules/node-llama-cpp/package.json"), "utf8")).version;
  if (installed !== table.nodeLlamaCpp) {
    fail(`node_modules has node-llama-cpp ${installed}, but src/core/binaries/packages.json lists the binaries of ${table.nodeLlamaCpp}. Update that file (names, integrities and sizes from \`npm view @node-llama-cpp/<name>@${installed} dist\`).`);
  }

  const started = Date.now();
  if (!values["skip-build"]) run(process.execPath, ["esbuild.mjs", "--production"], root);
  // What a plain `vsce package` would ship from this tree (.vscodeignore applied, production dependencies only).
  const files = execFileSync(process.execPath, [vsce, "ls"], { cwd: root, encoding: "utf8", maxBuffer: 64 << 20 })
    .split(/\r?\n/)
    .filter((f) => f !== "" && !f.startsWith("node_modules/@node-llama-cpp/"));
  const manifest = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
  const results = [];
  for (const target of targets) {
    const out = values.out !== undefined ? resolve(values.out) : join(resolve(values["out-dir"]), `${manifest.name}-${target}-${manifest.version}.vsix`);
    results.push(await packageTarget(target, files, manifest, out));
  }
  console.log(`\n${results.length} VSIX in ${((Date.now() - started) / 1000).toFixed(0)} s:`);
  for (const r of results) console.log(`  ${r.target.padEnd(13)} ${mb(statSync(r.out).size).padStart(9)}  ${shown(r.out)}`);
}

/** Stages the tree's files plus the target's binary packages, packages them, checks and reports the VSIX. */
async function packageTarget(target, files, manifest, out) {
  const started = Date.now();
  const stage = mkdtempSync(join(tmpdir(), `repotune-vsix-${target}-`));
  try {
    for (const f of files) {
      mkdirSync(dirname(join(stage, f)), { recursive: true });
      cpSync(join(root, f), join(stage, f));
    }
    // Already built: vsce must not run the build again in a folder without sources.
    const { "vscode:prepublish": _prepublish, ...scripts } = manifest.scripts;
    writeFileSync(join(stage, "package.json"), JSON.stringify({ ...manifest, scripts }, null, 2));
    cpSync(join(root, ".vscodeignore"), join(stage, ".vscodeignore"));
    const fetched = [];
    for (const name of table.shipped[target]) fetched.push(await stagePackage(name, stage));
    mkdirSync(dirname(out), { recursive: true });
    rmSync(out, { force: true });
    run(process.execPath, [vsce, "package", "--target", target, "--out", out], stage);
    const summary = await summarizeVsix(out);
    checkBinaries(summary, target);
    const seconds = (Date.now() - started) / 1000;
    console.log(formatSummary(target, out, summary, fetched, seconds));
    return { target, out, summary, fetched, seconds };
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
}

/** Copies an installed binary package, or fetches it, into the staging folder; says where it came from. */
async function stagePackage(name, stage) {
  const dest = join(stage, "node_modules", name);
  const local = join(root, "node_modules", name);
  const expected = lock[`node_modules/${name}`];
  if (!expected?.integrity) fail(`package-lock.json has no entry for ${name}: run npm install, which records every platform's binary package.`);
  if (existsSync(join(local, "package.json")) && JSON.parse(readFileSync(join(local, "package.json"), "utf8")).version === table.nodeLlamaCpp) {
    cpSync(local, dest, { recursive: true });
    return { name, from: "node_modules", bytes: null };
  }
  const short = name.split("/")[1];
  const file = join(cacheDir, `node-llama-cpp-${short}-${table.nodeLlamaCpp}.tgz`);
  let downloaded = false;
  if (!existsSync(file)) {
    mkdirSync(cacheDir, { recursive: true });
    const packed = JSON.parse(execFileSync(npm, ["pack", `${name}@${table.nodeLlamaCpp}`, "--json", "--pack-destination", cacheDir], { cwd: cacheDir, encoding: "utf8", shell: process.platform === "win32" }));
    if (packed[0].integrity !== expected.integrity) {
      rmSync(join(cacheDir, packed[0].filename), { force: true });
      fail(`The registry's ${name}@${table.nodeLlamaCpp} (${packed[0].integrity}) is not the one package-lock.json pinned (${expected.integrity}). Nothing was packaged.`);
    }
    if (join(cacheDir, packed[0].filename) !== file) renameSync(join(cacheDir, packed[0].filename), file);
    downloaded = true;
  }
  mkdirSync(dest, { recursive: true });
  await tar.x({ file, cwd: dest, strip: 1 });
  return { name, from: downloaded ? "registry" : "cache", bytes: statSync(file).size };
}

/** A VSIX without its platform's addon would install fine and fail on the first completion. */
function checkBinaries(summary, target) {
  for (const name of table.shipped[target]) {
    if (!summary.files.some((f) => f.startsWith(`extension/node_modules/${name}/bins/`) && f.endsWith("/llama-addon.node"))) {
      fail(`The ${target} VSIX lacks ${name}'s llama-addon.node: check .vscodeignore.`);
    }
  }
  const foreign = summary.binaryPackages.filter((p) => !table.shipped[target].includes(p.name));
  if (foreign.length > 0) fail(`The ${target} VSIX carries binaries of other platforms: ${foreign.map((p) => p.name).join(", ")}.`);
}

function run(cmd, args, cwd) {
  execFileSync(cmd, args, { cwd, stdio: ["ignore", "inherit", "inherit"] });
}

function shown(file) {
  const rel = relative(process.cwd(), file);
  return rel.startsWith("..") ? file : rel;
}

function mb(bytes) {
  return `${(bytes / 1e6).toFixed(1)} MB`;
}

function fail(message) {
  throw new PackageError(message);
}
