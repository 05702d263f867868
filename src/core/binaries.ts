// The llama.cpp builds too large to ship in a VSIX (CUDA: two npm packages of 140-180 MB each per platform), fetched
// on first use into global storage (src/core/binaries/install.ts), and how the engine makes node-llama-cpp use them.
//
// node-llama-cpp 3.21.1 has no option or environment variable for a binary's path: it finds a prebuilt build by
// importing its optional package by name (`import("@node-llama-cpp/linux-x64-cuda")`, and "-ext" for the CUDA 12
// fallback backend, in dist/bindings/utils/compileLLamaCpp.js) and asking it for its bins folder, which it uses only
// when the package's version equals its own. So the packages are laid out as npm would install them, under
// <root>/<version>/node_modules/@node-llama-cpp/, and the engine registers a module resolve hook (node:module
// register) that resolves just those names as if they were imported from <root>/<version>/: Node's own resolution
// (package.json exports included) finds them there. Nothing is written into the extension's folder, which may be
// read-only and is replaced on every update.
import { execFile } from "node:child_process";
import { promises as fs } from "node:fs";
import { register } from "node:module";
import * as path from "node:path";
import { pathToFileURL } from "node:url";
import table from "./binaries/packages.json";

export interface BinaryPackage {
  /** npm name, e.g. @node-llama-cpp/linux-x64-cuda */
  name: string;
  version: string;
  /** npm's Subresource Integrity string of the tarball ("sha512-<base64>"), as package-lock.json records it. */
  integrity: string;
  /** Tarball bytes. */
  size: number;
}

/** The node-llama-cpp release the binaries belong to: node-llama-cpp refuses binary packages of another version. */
export const NODE_LLAMA_CPP_VERSION: string = table.nodeLlamaCpp;
export const DEFAULT_REGISTRY = "https://registry.npmjs.org";

/** The CUDA packages for this platform, to download on first use; empty where node-llama-cpp has no CUDA build. */
export function cudaPackages(platform: string = process.platform, arch: string = process.arch): BinaryPackage[] {
  const list = (table.onFirstUse as Record<string, { name: string; integrity: string; size: number }[]>)[`${platform}-${arch}`] ?? [];
  return list.map((p) => ({ ...p, version: NODE_LLAMA_CPP_VERSION }));
}

/** The tarball's address in an npm registry (or a mirror with the same layout). */
export function tarballUrl(registry: string, pkg: BinaryPackage): string {
  const base = (registry.trim() || DEFAULT_REGISTRY).replace(/\/+$/, "");
  const short = pkg.name.split("/").pop();
  return `${base}/${pkg.name}/-/${short}-${pkg.version}.tgz`;
}

/** Where a package is installed: the layout npm gives it, so that Node's resolution finds it. */
export function packageDir(root: string, pkg: BinaryPackage): string {
  return path.join(root, pkg.version, "node_modules", ...pkg.name.split("/"));
}

/** An installed package's folder appears only whole (renamed into place after extraction and checks). */
export async function isInstalled(root: string, pkg: BinaryPackage): Promise<boolean> {
  try {
    const manifest = JSON.parse(await fs.readFile(path.join(packageDir(root, pkg), "package.json"), "utf8")) as { name?: string; version?: string };
    return manifest.name === pkg.name && manifest.version === pkg.version;
  } catch {
    return false;
  }
}

export async function installedPackages(root: string, packages: BinaryPackage[] = cudaPackages()): Promise<BinaryPackage[]> {
  const found = await Promise.all(packages.map((p) => isInstalled(root, p)));
  return packages.filter((_, i) => found[i]);
}

// Runs on Node's loader thread: it sees only the names and the folder passed in `data`.
const RESOLVE_HOOK = `
let names = new Set();
let parentURL;
export function initialize(data) { names = new Set(data.names); parentURL = data.parentURL; }
export async function resolve(specifier, context, nextResolve) {
  return nextResolve(specifier, names.has(specifier) ? { ...context, parentURL } : context);
}`;

let registered: BinaryPackage[] | null = null;

/**
 * Makes this process's imports of the packages installed in `root` resolve there; returns them. Call it before
 * node-llama-cpp's getLlama(). Only the first call in a process registers: both a CPU and a CUDA build ship a
 * libggml-base.so of the same name, and loading a second build into a process that holds the first is not something
 * to rely on, so a build installed during an engine's life is used by the next engine process.
 */
export async function useInstalledBinaries(root: string, packages: BinaryPackage[] = cudaPackages()): Promise<BinaryPackage[]> {
  if (registered !== null) return registered;
  const installed = await installedPackages(root, packages);
  if (installed.length > 0) {
    // The file need not exist: only its folder matters, where resolution starts looking for node_modules.
    const parentURL = pathToFileURL(path.join(root, installed[0].version, "repotune-binaries.js")).href;
    register(`data:text/javascript,${encodeURIComponent(RESOLVE_HOOK)}`, { data: { names: installed.map((p) => p.name), parentURL } });
  }
  registered = installed;
  return installed;
}

/** NVIDIA GPUs that nvidia-smi lists (names); empty when it is missing or fails (no driver, no GPU). */
export function nvidiaGpus(): Promise<string[]> {
  return new Promise((resolve) => {
    execFile("nvidia-smi", ["--query-gpu=name", "--format=csv,noheader"], { timeout: 10_000, windowsHide: true }, (err, stdout) => {
      resolve(err ? [] : stdout.split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== ""));
    });
  });
}

export type CudaAdvice =
  /** No CUDA build of node-llama-cpp for this platform (macOS, ARM), or no NVIDIA GPU: nothing to do. */
  | { kind: "none" }
  /** An NVIDIA GPU, but llama.cpp's CUDA build would not load without the CUDA runtime libraries. */
  | { kind: "no-runtime"; gpus: string[] }
  /** Worth downloading: these packages, this many bytes. */
  | { kind: "download"; gpus: string[]; packages: BinaryPackage[]; bytes: number }
  | { kind: "installed"; gpus: string[] };

/**
 * Whether node-llama-cpp finds the NVIDIA driver and the CUDA runtime libraries: only then does it try a CUDA build
 * at all (getLlamaGpuTypes("supported") includes "cuda"). Imported on demand: node-llama-cpp is an ES module.
 */
export async function cudaRuntimeFound(): Promise<boolean> {
  const { getLlamaGpuTypes } = await import("node-llama-cpp");
  return (await getLlamaGpuTypes("supported")).includes("cuda");
}

/**
 * Whether this machine would run completions on CUDA once the CUDA packages are in `root` (null: no folder for
 * downloaded binaries was given, so none are installed).
 */
export async function cudaAdvice(root: string | null, packages: BinaryPackage[] = cudaPackages(), cudaRuntime = cudaRuntimeFound): Promise<CudaAdvice> {
  if (packages.length === 0) return { kind: "none" };
  const gpus = await nvidiaGpus();
  if (gpus.length === 0) return { kind: "none" };
  const installed = root === null ? [] : await installedPackages(root, packages);
  if (installed.length === packages.length) return { kind: "installed", gpus };
  if (!(await cudaRuntime())) return { kind: "no-runtime", gpus };
  const todo = packages.filter((p) => !installed.includes(p));
  return { kind: "download", gpus, packages: todo, bytes: todo.reduce((n, p) => n + p.size, 0) };
}

/** What to tell the user about CUDA on this machine; `running` names what completions run on instead. */
export function cudaMessage(advice: CudaAdvice, running = "Vulkan or the CPU"): string | null {
  switch (advice.kind) {
    case "none":
      return null;
    case "no-runtime":
      return (
        `${advice.gpus[0]} found, but not the CUDA runtime libraries (libcudart and libcublas, version 12 or 13) that llama.cpp's CUDA build needs: ` +
        `completions run on ${running}. Install the NVIDIA CUDA Toolkit (or its runtime libraries) to run them on CUDA.`
      );
    case "download":
      return (
        `${advice.gpus[0]} found, but llama.cpp's CUDA build is not installed yet: completions run on ${running} until it is ` +
        `(${Math.round(advice.bytes / 1e6)} MB, downloaded once into RepoTune's global storage and used by the next engine started).`
      );
    case "installed":
      return (
        `llama.cpp's CUDA build is installed, but llama.cpp did not start on ${advice.gpus[0]}: completions run on ${running}. ` +
        "The llama.cpp lines above say why; an NVIDIA driver too old for the CUDA runtime is the usual cause (update the driver)."
      );
  }
}

/**
 * For the engine's log, once node-llama-cpp has chosen a build: why an NVIDIA GPU is not used through CUDA, or null
 * when CUDA is in use or there is no NVIDIA GPU.
 */
export async function cudaNote(root: string | null, usedGpu: string | false): Promise<string | null> {
  if (usedGpu === "cuda") return null;
  return cudaMessage(await cudaAdvice(root), usedGpu === false ? "the CPU" : usedGpu === "vulkan" ? "Vulkan" : usedGpu);
}
