// What a VSIX holds, read from its zip directory: sizes by part, the llama.cpp binary packages, the target platform.
import { text } from "node:stream/consumers";
import yauzl from "yauzl";

/**
 * @param {string} file a .vsix
 * @returns {Promise<{ bytes: number, files: string[], unpackedBytes: number, targetPlatform: string | null,
 *   parts: { name: string, files: number, unpackedBytes: number, packedBytes: number }[],
 *   binaryPackages: { name: string, version: string | null, files: number, unpackedBytes: number, addon: boolean }[] }>}
 */
export async function summarizeVsix(file) {
  const zip = await yauzl.openPromise(file);
  const files = [];
  const parts = new Map();
  const packages = new Map();
  let unpackedBytes = 0;
  let manifest = "";
  const versions = new Map();
  try {
    for await (const entry of zip.eachEntry()) {
      if (entry.fileName.endsWith("/")) continue;
      files.push(entry.fileName);
      unpackedBytes += entry.uncompressedSize;
      const part = partOf(entry.fileName);
      const p = parts.get(part) ?? { name: part, files: 0, unpackedBytes: 0, packedBytes: 0 };
      p.files++;
      p.unpackedBytes += entry.uncompressedSize;
      p.packedBytes += entry.compressedSize;
      parts.set(part, p);
      const bin = /^extension\/node_modules\/(@node-llama-cpp\/[^/]+)\/(.*)$/.exec(entry.fileName);
      if (bin) {
        const b = packages.get(bin[1]) ?? { name: bin[1], version: null, files: 0, unpackedBytes: 0, addon: false };
        b.files++;
        b.unpackedBytes += entry.uncompressedSize;
        if (bin[2].endsWith("/llama-addon.node")) b.addon = true;
        packages.set(bin[1], b);
        if (bin[2] === "package.json") versions.set(bin[1], JSON.parse(await text(await zip.openReadStreamPromise(entry))).version);
      }
      if (entry.fileName === "extension.vsixmanifest") manifest = await text(await zip.openReadStreamPromise(entry));
    }
  } finally {
    zip.close();
  }
  const { size } = await import("node:fs/promises").then((fs) => fs.stat(file));
  return {
    bytes: size,
    files,
    unpackedBytes,
    targetPlatform: /TargetPlatform="([^"]+)"/.exec(manifest)?.[1] ?? null,
    parts: [...parts.values()].sort((a, b) => b.unpackedBytes - a.unpackedBytes),
    binaryPackages: [...packages.values()].map((b) => ({ ...b, version: versions.get(b.name) ?? null })),
  };
}

// The parts a reader cares about: our bundles, the trainer, node-llama-cpp, each binary package, other dependencies.
function partOf(name) {
  const m = /^extension\/(node_modules\/(?:@node-llama-cpp\/[^/]+|node-llama-cpp)|dist|media|trainer)\//.exec(name);
  if (m) return m[1];
  return name.startsWith("extension/node_modules/") ? "node_modules (other dependencies)" : "metadata and top-level files";
}

export function formatSummary(target, out, s, fetched, seconds) {
  const mb = (n) => `${(n / 1e6).toFixed(1)} MB`;
  const lines = [
    `\n${target}: ${out}`,
    `  ${mb(s.bytes)} packed, ${mb(s.unpackedBytes)} unpacked, ${s.files.length} files, TargetPlatform ${s.targetPlatform ?? "none"}, ${seconds.toFixed(0)} s`,
    "  binary packages:",
    ...s.binaryPackages.map((b) => {
      const f = fetched.find((x) => x.name === b.name);
      const source = f ? (f.from === "node_modules" ? "from node_modules" : `from the registry (${mb(f.bytes)} tarball${f.from === "cache" ? ", cached" : ""})`) : "";
      return `    ${b.name}@${b.version}  ${mb(b.unpackedBytes)}, ${b.files} files, llama-addon.node ${b.addon ? "yes" : "MISSING"}  ${source}`;
    }),
    "  contents (unpacked / packed):",
    ...s.parts.map((p) => `    ${p.name.padEnd(44)} ${mb(p.unpackedBytes).padStart(9)} ${mb(p.packedBytes).padStart(9)}  ${p.files} files`),
  ];
  return lines.join("\n");
}
