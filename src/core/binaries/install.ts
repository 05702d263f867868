// Downloads and installs node-llama-cpp binary packages (the CUDA builds) into global storage.
//
// The tarball is fetched with the models' resumable downloader (models/download.ts: a broken or cancelled download
// continues from "<file>.partial" with an HTTP Range request), then checked against the integrity pinned in
// packages.json (the one package-lock.json records, so a mirror or proxy cannot substitute other binaries), unpacked
// into a temporary folder, checked, and renamed into place: a package folder is either whole or absent.
import { createHash } from "node:crypto";
import { createReadStream, promises as fs } from "node:fs";
import * as path from "node:path";
import * as tar from "tar";
import { formatBytes } from "../format";
import { DownloadError, downloadModel } from "../models/download";
import { DEFAULT_REGISTRY, isInstalled, packageDir, tarballUrl, type BinaryPackage } from "../binaries";
import { processAlive } from "../processAlive";

export interface InstallProgress {
  /** The package being downloaded, its position (from 1) and the number of packages to fetch. */
  name: string;
  index: number;
  count: number;
  /** Bytes of this package's tarball on disk so far (the resumed part included), and its size. */
  receivedBytes: number;
  totalBytes: number;
  /** Bytes of every package to fetch, and how many of them are on disk so far. */
  allReceivedBytes: number;
  allBytes: number;
  /** Bytes of this tarball kept from an interrupted download. */
  resumedFrom: number;
}

export interface InstallOptions {
  /** Global storage folder for binaries (packages go to <root>/<version>/node_modules). */
  root: string;
  packages: BinaryPackage[];
  /** npm registry or mirror; default registry.npmjs.org. */
  registry?: string;
  onProgress?: (p: InstallProgress) => void;
  signal?: AbortSignal;
}

export interface InstalledPackage {
  name: string;
  dir: string;
  /** 0 when the package was already installed; else the tarball bytes fetched by this call. */
  fetchedBytes: number;
  resumedFrom: number;
}

export type BinariesErrorCode = "network" | "http" | "disk" | "cancelled" | "incomplete" | "integrity" | "bad_package" | "busy";

export class BinariesError extends Error {
  constructor(readonly code: BinariesErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "BinariesError";
  }
}

const WHAT = "llama.cpp's CUDA build";

export async function installBinaries(opts: InstallOptions): Promise<InstalledPackage[]> {
  const registry = opts.registry?.trim() || DEFAULT_REGISTRY;
  await fs.mkdir(opts.root, { recursive: true }).catch((err: NodeJS.ErrnoException) => {
    throw new BinariesError("disk", `${WHAT} cannot be stored in ${opts.root} (${err.code ?? err.message}). Check that this folder is writable.`, { cause: err });
  });
  const release = await lock(opts.root);
  try {
    const done: InstalledPackage[] = [];
    const todo: BinaryPackage[] = [];
    for (const pkg of opts.packages) {
      if (await isInstalled(opts.root, pkg)) done.push({ name: pkg.name, dir: packageDir(opts.root, pkg), fetchedBytes: 0, resumedFrom: 0 });
      else todo.push(pkg);
    }
    const allBytes = todo.reduce((n, p) => n + p.size, 0);
    let before = 0;
    for (const [i, pkg] of todo.entries()) {
      const fetched = await fetchTarball(pkg, registry, opts, (p) =>
        opts.onProgress?.({
          name: pkg.name,
          index: i + 1,
          count: todo.length,
          receivedBytes: p.receivedBytes,
          totalBytes: p.totalBytes ?? pkg.size,
          allReceivedBytes: before + p.receivedBytes,
          allBytes,
          resumedFrom: p.resumedFrom,
        }),
      );
      await verifyIntegrity(fetched.path, pkg);
      const dir = await unpack(fetched.path, pkg, opts.root);
      await fs.rm(fetched.path, { force: true });
      done.push({ name: pkg.name, dir, fetchedBytes: fetched.existing ? 0 : fetched.bytes - fetched.resumedFrom, resumedFrom: fetched.resumedFrom });
      before += pkg.size;
    }
    await removeOtherVersions(opts.root, opts.packages);
    return done;
  } finally {
    await release();
  }
}

async function fetchTarball(pkg: BinaryPackage, registry: string, opts: InstallOptions, onProgress: Parameters<typeof downloadModel>[0]["onProgress"]) {
  const url = tarballUrl(registry, pkg);
  try {
    return await downloadModel({
      uri: url,
      dir: path.join(opts.root, "downloads"),
      fileName: `${pkg.name.split("/").pop()}-${pkg.version}.tgz`,
      // Checked below against npm's sha512 integrity instead.
      sha256: null,
      onProgress,
      signal: opts.signal,
    });
  } catch (err) {
    throw downloadFailure(err, pkg, url);
  }
}

// The downloader's messages speak of a model; these say what is being fetched and what to do about it.
function downloadFailure(err: unknown, pkg: BinaryPackage, url: string): Error {
  if (!(err instanceof DownloadError)) return err as Error;
  const host = new URL(url).host;
  const resumes = "Trying again continues where the download stopped; until then completions run on Vulkan or the CPU.";
  switch (err.code) {
    case "cancelled":
      return new BinariesError("cancelled", `The download of ${WHAT} was cancelled. ${resumes}`, { cause: err });
    case "http": {
      const status = /HTTP \d+[^)]*/.exec(err.message)?.[0] ?? "an error";
      return new BinariesError(
        "http",
        `${host} answered ${status} for ${url}. Set repotune.engine.binariesRegistry to an npm registry or mirror that serves ${pkg.name}@${pkg.version}.`,
        { cause: err },
      );
    }
    case "disk":
      return new BinariesError("disk", `${WHAT} (${formatBytes(pkg.size)} to download, about three times that unpacked) could not be written: ${err.message.replace(/the model/g, "it")}`, { cause: err });
    case "checksum":
    case "incomplete":
      return new BinariesError("incomplete", `The download of ${pkg.name} from ${host} ended before the whole file arrived. ${resumes}`, { cause: err });
    case "network":
      return new BinariesError(
        "network",
        `${WHAT} could not be downloaded from ${host}: the connection failed or broke off. Check the network or proxy, or set repotune.engine.binariesRegistry to a reachable npm mirror. ${resumes}`,
        { cause: err },
      );
  }
}

async function verifyIntegrity(file: string, pkg: BinaryPackage): Promise<void> {
  const expected = pkg.integrity.split(/\s+/).filter((s) => s.startsWith("sha512-")).map((s) => s.slice("sha512-".length));
  if (expected.length === 0) throw new BinariesError("integrity", `No sha512 integrity is pinned for ${pkg.name}: RepoTune will not install binaries it cannot check.`);
  const hash = createHash("sha512");
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  const actual = hash.digest("base64");
  if (!expected.includes(actual)) {
    await fs.rm(file, { force: true });
    throw new BinariesError(
      "integrity",
      `The downloaded ${pkg.name}@${pkg.version} is not the published package (its sha512 is ${actual}, expected ${expected[0]}), so it was deleted and nothing was installed. ` +
        "A proxy or mirror may have altered it: try again, or set repotune.engine.binariesRegistry to another npm mirror.",
    );
  }
}

async function unpack(tarball: string, pkg: BinaryPackage, root: string): Promise<string> {
  const dir = packageDir(root, pkg);
  const temp = `${dir}.unpacking-${process.pid}`;
  await fs.rm(temp, { recursive: true, force: true });
  try {
    await fs.mkdir(temp, { recursive: true });
    // npm tarballs hold one folder, "package/".
    await tar.x({ file: tarball, cwd: temp, strip: 1 });
    const manifest = JSON.parse(await fs.readFile(path.join(temp, "package.json"), "utf8")) as { name?: string; version?: string };
    if (manifest.name !== pkg.name || manifest.version !== pkg.version) {
      throw new BinariesError("bad_package", `The tarball fetched for ${pkg.name}@${pkg.version} holds ${manifest.name}@${manifest.version}. Nothing was installed.`);
    }
    await fs.rm(dir, { recursive: true, force: true });
    await fs.rename(temp, dir);
    return dir;
  } catch (err) {
    await fs.rm(temp, { recursive: true, force: true });
    await fs.rm(tarball, { force: true });
    if (err instanceof BinariesError) throw err;
    const e = err as NodeJS.ErrnoException;
    if (e.code === "ENOSPC" || e.code === "EDQUOT") {
      throw new BinariesError("disk", `The disk is full: ${pkg.name} (about ${formatBytes(pkg.size * 2.5)} unpacked) could not be unpacked into ${root}. Free some space and try again.`, { cause: err });
    }
    throw new BinariesError("bad_package", `${pkg.name} could not be unpacked into ${dir} (${e.message}). Nothing was installed; try again.`, { cause: err });
  }
}

/**
 * Builds for other node-llama-cpp versions (left by an earlier RepoTune) are hundreds of MB that nothing loads any
 * more: node-llama-cpp refuses binary packages of another version. A file still in use (Windows) stays until next time.
 */
async function removeOtherVersions(root: string, packages: BinaryPackage[]): Promise<void> {
  const keep = new Set(packages.map((p) => p.version));
  for (const entry of await fs.readdir(root).catch(() => [])) {
    if (/^\d+\.\d+\.\d+/.test(entry) && !keep.has(entry)) await fs.rm(path.join(root, entry), { recursive: true, force: true }).catch(() => undefined);
  }
  const downloads = path.join(root, "downloads");
  for (const entry of await fs.readdir(downloads).catch(() => [])) {
    const version = /-(\d+\.\d+\.\d+[^-]*?)\.tgz(\.partial)?$/.exec(entry)?.[1];
    if (version !== undefined && !keep.has(version)) await fs.rm(path.join(downloads, entry), { force: true }).catch(() => undefined);
  }
}

/**
 * One installer at a time per folder (two VS Code windows share global storage): the lock file holds the pid of its
 * owner, and a lock whose process is gone is taken over.
 */
async function lock(root: string): Promise<() => Promise<void>> {
  const file = path.join(root, "install.lock");
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const handle = await fs.open(file, "wx");
      await handle.writeFile(String(process.pid));
      await handle.close();
      return () => fs.rm(file, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      const owner = Number((await fs.readFile(file, "utf8").catch(() => "")).trim());
      if (Number.isInteger(owner) && owner > 0 && processAlive(owner)) {
        throw new BinariesError("busy", `Another RepoTune window (process ${owner}) is installing ${WHAT}; it is used once that finishes.`);
      }
      await fs.rm(file, { force: true });
    }
  }
  throw new BinariesError("busy", `The install lock ${file} could not be taken; delete it if no RepoTune window is installing ${WHAT}.`);
}

