// CUDA builds on first use, for real: node-llama-cpp's CUDA packages, packed with `npm pack` from node_modules (without
// their 160-370 MB CUDA kernels, which cannot run here anyway), served over HTTP on 127.0.0.1, installed by
// installBinaries (fresh, interrupted and resumed, cancelled and resumed, corrupted, refused by the server), then
// found by node-llama-cpp's own binary resolution in another process, and reported by the real engine process.
// Run from the repository root after `node esbuild.mjs`.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import * as path from "node:path";
import { pathToFileURL } from "node:url";
import {
  cudaAdvice,
  cudaMessage,
  cudaPackages,
  installedPackages,
  isInstalled,
  NODE_LLAMA_CPP_VERSION,
  packageDir,
  tarballUrl,
  useInstalledBinaries,
  type BinaryPackage,
} from "../../src/core/binaries";
import { BinariesError, installBinaries, type InstallProgress } from "../../src/core/binaries/install";
import { EngineClient } from "../../src/core/engineClient";
import { startModelServer, type ModelServer } from "../lib/modelServer.mjs";
import { removeDir, tempDir, tinyModel } from "./support/pipeline";

const repoRoot = process.cwd();
const CHILD = "REPOTUNE_BINARIES_TEST_CHILD";

if (process.env[CHILD]) void resolveInChild();
else registerTests();

interface Packed {
  pkg: BinaryPackage;
  tarball: Buffer;
}

function registerTests(): void {
  let dir: string;
  let cuda: Packed;
  let ext: Packed;

  let fakeBin: string;
  const savedPath = process.env.PATH;

  before(() => {
    dir = tempDir("binaries");
    // nvidia-smi as an NVIDIA driver installs it, answering the query RepoTune makes: this machine has no GPU.
    fakeBin = path.join(dir, "fake-nvidia");
    mkdirSync(fakeBin, { recursive: true });
    writeFileSync(path.join(fakeBin, "nvidia-smi"), "#!/bin/sh\necho 'NVIDIA GeForce RTX 4090'\n");
    chmodSync(path.join(fakeBin, "nvidia-smi"), 0o755);
    cuda = packTrimmed("@node-llama-cpp/linux-x64-cuda", path.join(dir, "pack"));
    ext = packTrimmed("@node-llama-cpp/linux-x64-cuda-ext", path.join(dir, "pack"));
  });
  after(() => removeDir(dir));

  async function withServer(data: Buffer, options: object, body: (s: ModelServer) => Promise<void>): Promise<void> {
    const server: ModelServer = await startModelServer(data, options);
    try {
      await body(server);
    } finally {
      await server.close();
    }
  }

  /** The registry base of a model server: it serves its one file at every path. */
  const registryOf = (s: ModelServer) => s.url("").replace(/\/$/, "");

  function leftovers(root: string): string[] {
    const found: string[] = [];
    const walk = (d: string) => {
      for (const e of readdirSync(d, { withFileTypes: true })) {
        const p = path.join(d, e.name);
        found.push(path.relative(root, p));
        if (e.isDirectory()) walk(p);
      }
    };
    if (existsSync(root)) walk(root);
    return found;
  }

  describe("CUDA packages table", () => {
    test("pins node-llama-cpp's version and the integrities package-lock.json records", () => {
      const installed = JSON.parse(readFileSync(path.join(repoRoot, "node_modules/node-llama-cpp/package.json"), "utf8")).version;
      assert.equal(NODE_LLAMA_CPP_VERSION, installed, "src/core/binaries/packages.json must follow node-llama-cpp's version");
      const lock = JSON.parse(readFileSync(path.join(repoRoot, "package-lock.json"), "utf8")).packages;
      const all = [...cudaPackages("linux", "x64"), ...cudaPackages("win32", "x64")];
      assert.deepEqual(all.map((p) => p.name), [
        "@node-llama-cpp/linux-x64-cuda",
        "@node-llama-cpp/linux-x64-cuda-ext",
        "@node-llama-cpp/win-x64-cuda",
        "@node-llama-cpp/win-x64-cuda-ext",
      ]);
      for (const p of all) {
        assert.equal(lock[`node_modules/${p.name}`].integrity, p.integrity, p.name);
        assert.equal(lock[`node_modules/${p.name}`].version, p.version, p.name);
      }
      assert.deepEqual(cudaPackages("darwin", "arm64"), []);
      assert.deepEqual(cudaPackages("linux", "arm64"), []);
    });

    test("tarball addresses follow the npm registry layout, on a mirror too", () => {
      const [p] = cudaPackages("linux", "x64");
      assert.equal(tarballUrl("https://registry.npmjs.org", p), `https://registry.npmjs.org/@node-llama-cpp/linux-x64-cuda/-/linux-x64-cuda-${NODE_LLAMA_CPP_VERSION}.tgz`);
      assert.equal(tarballUrl("https://npm.example.com/repository/npm/ ", p), `https://npm.example.com/repository/npm/@node-llama-cpp/linux-x64-cuda/-/linux-x64-cuda-${NODE_LLAMA_CPP_VERSION}.tgz`);
      assert.equal(tarballUrl("", p), tarballUrl("https://registry.npmjs.org", p));
    });
  });

  describe("installBinaries", () => {
    test("downloads, checks the sha512 integrity, unpacks as npm lays it out, and reports progress", async () => {
      await withServer(cuda.tarball, {}, async (server) => {
        const root = path.join(dir, "fresh");
        // Left by an earlier RepoTune with another node-llama-cpp: useless now, and hundreds of MB.
        mkdirSync(path.join(root, "3.20.0/node_modules/@node-llama-cpp/linux-x64-cuda"), { recursive: true });
        mkdirSync(path.join(root, "downloads"), { recursive: true });
        writeFileSync(path.join(root, "downloads/linux-x64-cuda-ext-3.20.0.tgz.partial"), "old");
        const progress: InstallProgress[] = [];
        const done = await installBinaries({ root, registry: registryOf(server), packages: [cuda.pkg], onProgress: (p) => progress.push(p) });
        assert.deepEqual(done.map((d) => d.name), [cuda.pkg.name]);
        assert.equal(done[0].dir, path.join(root, NODE_LLAMA_CPP_VERSION, "node_modules", "@node-llama-cpp", "linux-x64-cuda"));
        assert.equal(done[0].fetchedBytes, cuda.tarball.length);
        assert.ok(await isInstalled(root, cuda.pkg));
        const addon = path.join(done[0].dir, "bins/linux-x64-cuda/llama-addon.node");
        assert.deepEqual(readFileSync(addon), readFileSync(path.join(repoRoot, "node_modules/@node-llama-cpp/linux-x64-cuda/bins/linux-x64-cuda/llama-addon.node")));
        const last = progress.at(-1)!;
        assert.equal(last.receivedBytes, cuda.tarball.length);
        assert.equal(last.allReceivedBytes, last.allBytes);
        assert.equal(last.index, 1);
        assert.equal(last.count, 1);
        // The tarball and the lock are gone; nothing but the installed package remains.
        assert.deepEqual(readdirSync(path.join(root, "downloads")), []);
        assert.deepEqual(readdirSync(root).sort(), [NODE_LLAMA_CPP_VERSION, "downloads"]);
        assert.ok(!existsSync(path.join(root, "install.lock")));
        assert.deepEqual(server.requests.map((r) => r.range), [null]);

        const again = await installBinaries({ root, registry: registryOf(server), packages: [cuda.pkg] });
        assert.equal(again[0].fetchedBytes, 0);
        assert.equal(server.requests.length, 1, "an installed package is not fetched again");
      });
    });

    test("a download that broke off continues where it stopped (HTTP Range) and installs", async () => {
      const cut = Math.floor(cuda.tarball.length / 3);
      await withServer(cuda.tarball, { cutAfterBytes: cut }, async (server) => {
        const root = path.join(dir, "resume");
        await assert.rejects(installBinaries({ root, registry: registryOf(server), packages: [cuda.pkg] }), (err: unknown) => {
          assert.ok(err instanceof BinariesError);
          assert.equal(err.code, "network");
          assert.match(err.message, /continues where the download stopped/);
          return true;
        });
        assert.equal(await isInstalled(root, cuda.pkg), false);
        const partial = path.join(root, "downloads", `linux-x64-cuda-${NODE_LLAMA_CPP_VERSION}.tgz.partial`);
        assert.equal(statSync(partial).size, cut);

        const done = await installBinaries({ root, registry: registryOf(server), packages: [cuda.pkg] });
        assert.equal(done[0].resumedFrom, cut);
        assert.equal(done[0].fetchedBytes, cuda.tarball.length - cut);
        assert.equal(server.requests.at(-1)?.range, `bytes=${cut}-`);
        assert.ok(await isInstalled(root, cuda.pkg));
        assert.ok(!existsSync(partial));
      });
    });

    test("a cancelled download keeps what arrived, and the next attempt finishes it", async () => {
      const stall = 64 * 1024;
      await withServer(cuda.tarball, { stallAfterBytes: stall }, async (server) => {
        const root = path.join(dir, "cancel");
        const controller = new AbortController();
        const attempt = installBinaries({
          root,
          registry: registryOf(server),
          packages: [cuda.pkg],
          signal: controller.signal,
          onProgress: (p) => {
            if (p.receivedBytes >= stall) controller.abort();
          },
        });
        await assert.rejects(attempt, (err: unknown) => err instanceof BinariesError && err.code === "cancelled" && /cancelled/.test(err.message));
        assert.equal(await isInstalled(root, cuda.pkg), false);
        assert.ok(!existsSync(path.join(root, "install.lock")), "a cancel releases the lock");
        const done = await installBinaries({ root, registry: registryOf(server), packages: [cuda.pkg] });
        assert.ok(done[0].resumedFrom >= stall, `resumed from ${done[0].resumedFrom}`);
        assert.ok(await isInstalled(root, cuda.pkg));
      });
    });

    test("a tarball that does not match the pinned integrity is deleted and nothing is installed", async () => {
      const corrupted = Buffer.from(cuda.tarball);
      corrupted[Math.floor(corrupted.length / 2)] ^= 0xff;
      await withServer(corrupted, {}, async (server) => {
        const root = path.join(dir, "corrupted");
        await assert.rejects(installBinaries({ root, registry: registryOf(server), packages: [cuda.pkg] }), (err: unknown) => {
          assert.ok(err instanceof BinariesError);
          assert.equal(err.code, "integrity");
          assert.match(err.message, /not the published package .*nothing was installed/);
          return true;
        });
        assert.deepEqual(leftovers(root), ["downloads"], "no package, no tarball, no partial file, no lock");
      });
    });

    test("a registry that does not serve the package is named, with the setting that changes it", async () => {
      await withServer(cuda.tarball, {}, async (server) => {
        const root = path.join(dir, "missing");
        await assert.rejects(installBinaries({ root, registry: server.url("missing"), packages: [cuda.pkg] }), (err: unknown) => {
          assert.ok(err instanceof BinariesError);
          assert.equal(err.code, "http");
          assert.match(err.message, /HTTP 404.*repotune\.engine\.binariesRegistry/);
          return true;
        });
        assert.equal(await isInstalled(root, cuda.pkg), false);
      });
    });

    test("one installer at a time: a live owner's lock is respected, a dead one's is taken over", async () => {
      await withServer(cuda.tarball, {}, async (server) => {
        const root = path.join(dir, "locked");
        mkdirSync(root, { recursive: true });
        writeFileSync(path.join(root, "install.lock"), String(process.ppid));
        await assert.rejects(installBinaries({ root, registry: registryOf(server), packages: [cuda.pkg] }), (err: unknown) => err instanceof BinariesError && err.code === "busy");
        assert.equal(server.requests.length, 0);
        // No process has this id (above the kernel's pid_max).
        writeFileSync(path.join(root, "install.lock"), "4194305");
        await installBinaries({ root, registry: registryOf(server), packages: [cuda.pkg] });
        assert.ok(await isInstalled(root, cuda.pkg));
      });
    });
  });

  describe("node-llama-cpp finds the installed CUDA build", () => {
    let root: string;

    before(async () => {
      root = path.join(dir, "resolve");
      const server = await startTarballServer(new Map([
        [new URL(tarballUrl("http://x", cuda.pkg)).pathname, cuda.tarball],
        [new URL(tarballUrl("http://x", ext.pkg)).pathname, ext.tarball],
      ]));
      try {
        await installBinaries({ root, registry: server.url, packages: [cuda.pkg, ext.pkg] });
      } finally {
        await server.close();
      }
    });

    test("its prebuilt-binary lookup resolves both packages to global storage once the hook is registered", () => {
      const found = resolveInOtherProcess(root, [cuda.pkg, ext.pkg], true);
      assert.equal(found.folderName, "linux-x64-cuda");
      assert.equal(found.binaryPath, path.join(packageDir(root, cuda.pkg), "bins/linux-x64-cuda/llama-addon.node"));
      assert.equal(found.extBackendsPath, path.join(packageDir(root, ext.pkg), "bins/linux-x64-cuda"));
      assert.ok(existsSync(found.binaryPath!));
    });

    test("without the hook the same lookup finds only what sits next to node-llama-cpp", () => {
      const found = resolveInOtherProcess(root, [cuda.pkg, ext.pkg], false);
      // This development tree has the CUDA packages in node_modules; a VSIX has none, and the lookup finds nothing.
      assert.equal(found.binaryPath, path.join(repoRoot, "node_modules/@node-llama-cpp/linux-x64-cuda/bins/linux-x64-cuda/llama-addon.node"));
    });

    test("the hook covers only installed packages: with the ext package missing, node-llama-cpp uses the main one alone", async () => {
      const partialRoot = path.join(dir, "resolve-main-only");
      cpSync(packageDir(root, cuda.pkg), packageDir(partialRoot, cuda.pkg), { recursive: true });
      assert.deepEqual((await installedPackages(partialRoot, [cuda.pkg, ext.pkg])).map((p) => p.name), [cuda.pkg.name]);
      const found = resolveInOtherProcess(partialRoot, [cuda.pkg, ext.pkg], true);
      assert.equal(found.binaryPath, path.join(packageDir(partialRoot, cuda.pkg), "bins/linux-x64-cuda/llama-addon.node"));
      // The ext package resolves from node_modules here (installed in this tree), so it is not asserted.
    });

    test("the engine process uses the installed packages and logs why completions are not on CUDA", async () => {
      const modelPath = await tinyModel(path.join(dir, "model"));
      process.env.PATH = `${fakeBin}${path.delimiter}${savedPath}`;
      process.env.REPOTUNE_BINARIES_DIR = root;
      const logs: string[] = [];
      let engine: EngineClient | undefined;
      try {
        engine = await EngineClient.start({ enginePath: path.join(repoRoot, "dist/engine.mjs"), log: (l) => logs.push(l) });
        const info = await engine.load(modelPath);
        assert.equal(info.gpu, null, "no GPU here: the CPU build serves");
      } finally {
        await engine?.dispose();
        delete process.env.REPOTUNE_BINARIES_DIR;
        process.env.PATH = savedPath;
      }
      const text = logs.join("\n");
      assert.match(text, /llama\.cpp builds from .*resolve: @node-llama-cpp\/linux-x64-cuda, @node-llama-cpp\/linux-x64-cuda-ext/);
      assert.match(text, /CUDA build is installed, but llama\.cpp did not start on NVIDIA GeForce RTX 4090: completions run on the CPU/);
    });
  });

  describe("what the user is told", () => {
    after(() => {
      process.env.PATH = savedPath;
    });

    test("no NVIDIA GPU (nvidia-smi absent): nothing to download, nothing said", async () => {
      process.env.PATH = "/nonexistent";
      const advice = await cudaAdvice(path.join(dir, "none"), cudaPackages("linux", "x64"), async () => true);
      assert.deepEqual(advice, { kind: "none" });
      assert.equal(cudaMessage(advice), null);
    });

    test("an NVIDIA GPU without the CUDA build: download both packages, 320 MB", async () => {
      process.env.PATH = `${fakeBin}${path.delimiter}${savedPath}`;
      const advice = await cudaAdvice(path.join(dir, "none"), cudaPackages("linux", "x64"), async () => true);
      assert.equal(advice.kind, "download");
      assert.ok(advice.kind === "download");
      assert.deepEqual(advice.gpus, ["NVIDIA GeForce RTX 4090"]);
      assert.equal(advice.bytes, 142850036 + 176679086);
      assert.match(cudaMessage(advice, "Vulkan")!, /RTX 4090 found, but llama\.cpp's CUDA build is not installed yet: completions run on Vulkan until it is \(320 MB/);
    });

    test("an NVIDIA GPU without the CUDA runtime libraries: no download, install the toolkit", async () => {
      process.env.PATH = `${fakeBin}${path.delimiter}${savedPath}`;
      const advice = await cudaAdvice(path.join(dir, "none"), cudaPackages("linux", "x64"), async () => false);
      assert.deepEqual(advice, { kind: "no-runtime", gpus: ["NVIDIA GeForce RTX 4090"] });
      assert.match(cudaMessage(advice)!, /libcudart and libcublas.*Install the NVIDIA CUDA Toolkit/);
    });

  });
}

/**
 * `npm pack` of an installed @node-llama-cpp package, less its files over 8 MB (the CUDA kernels), with the
 * integrity npm computed for it.
 */
function packTrimmed(name: string, out: string): Packed {
  const source = path.join(repoRoot, "node_modules", name);
  const copy = path.join(out, name.split("/")[1]);
  cpSync(source, copy, { recursive: true, filter: (f) => statSync(f).isDirectory() || statSync(f).size < 8e6 });
  const packed = JSON.parse(execFileSync("npm", ["pack", "--json", "--pack-destination", out], { cwd: copy, encoding: "utf8" })) as { filename: string; integrity: string }[];
  const tarball = readFileSync(path.join(out, packed[0].filename));
  // npm's integrity is the check installBinaries makes: the two must agree on the same bytes.
  assert.equal(packed[0].integrity, `sha512-${createHash("sha512").update(tarball).digest("base64")}`);
  return { pkg: { name, version: NODE_LLAMA_CPP_VERSION, integrity: packed[0].integrity, size: tarball.length }, tarball };
}

/** Serves several files by path (the model server serves one); enough for a fresh download. */
async function startTarballServer(files: Map<string, Buffer>): Promise<{ url: string; close: () => Promise<void> }> {
  const server = createServer((req, res) => {
    const body = files.get(new URL(req.url ?? "/", "http://x").pathname);
    if (!body) return void res.writeHead(404).end();
    res.writeHead(200, { "content-length": body.length }).end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

interface Resolution {
  folderName: string;
  binaryPath: string | null;
  extBackendsPath: string | null;
}

/** node-llama-cpp's lookup runs in a fresh process: module resolution and its hooks are per process. */
function resolveInOtherProcess(root: string, packages: BinaryPackage[], hook: boolean): Resolution {
  const out = execFileSync(process.execPath, [__filename], {
    env: { ...process.env, [CHILD]: JSON.stringify({ root, packages, hook }) },
    encoding: "utf8",
  });
  return JSON.parse(out.trim().split("\n").at(-1)!) as Resolution;
}

// The child: asks node-llama-cpp's own code (compileLLamaCpp.js, what getLlama calls for a prebuilt binary) where
// the CUDA build for linux-x64 is, as getLlama({ gpu: "cuda" }) would.
async function resolveInChild(): Promise<void> {
  const { root, packages, hook } = JSON.parse(process.env[CHILD]!) as { root: string; packages: BinaryPackage[]; hook: boolean };
  if (hook) await useInstalledBinaries(root, packages);
  const dist = pathToFileURL(path.join(repoRoot, "node_modules/node-llama-cpp/dist/")).href;
  const { getPrebuiltBinaryPath } = await import(`${dist}bindings/utils/compileLLamaCpp.js`);
  const { getBuildFolderNameForBuildOptions } = await import(`${dist}bindings/utils/getBuildFolderNameForBuildOptions.js`);
  const { builtinLlamaCppRelease } = await import(`${dist}bindings/utils/binariesGithubRelease.js`);
  const { builtinLlamaCppGitHubRepo } = await import(`${dist}config.js`);
  const buildOptions = {
    customCmakeOptions: new Map(),
    progressLogs: false,
    platform: "linux",
    arch: "x64",
    gpu: "cuda",
    llamaCpp: { repo: builtinLlamaCppGitHubRepo, release: builtinLlamaCppRelease },
  };
  const folderName = (await getBuildFolderNameForBuildOptions(buildOptions)).withoutCustomCmakeOptions as string;
  const found = (await getPrebuiltBinaryPath(buildOptions, folderName)) as { binaryPath: string; extBackendsPath?: string } | null;
  process.stdout.write(`${JSON.stringify({ folderName, binaryPath: found?.binaryPath ?? null, extBackendsPath: found?.extBackendsPath ?? null })}\n`);
}
