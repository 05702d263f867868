// A Python package index on 127.0.0.1 for the trainer-environment tests (there is no PyPI here): a PEP 503 "simple"
// index serving real wheels repacked at test time from the packages of the Python that has torch (Debian's
// python3-torch and python3-numpy), so `pip install torch numpy` in a fresh virtual environment really installs a
// PyTorch that trains. It can leave a project out (an index without torch) and stall a download (to cancel it).
import { createHash } from "node:crypto";
import { execFileSync } from "node:child_process";
import { createReadStream, existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";

/** The projects repacked: PyTorch, what `import torch` needs on 1.13 (typing_extensions), and NumPy. */
const PROJECTS = [
  { name: "torch", module: "torch", requires: ["typing_extensions"] },
  { name: "typing_extensions", module: "typing_extensions", requires: [] },
  { name: "numpy", module: "numpy", requires: [] },
];

// The wheel writer: the installed module's files (no bytecode caches) plus dist-info METADATA, WHEEL and RECORD
// (with the sha256 of every file, as pip checks nothing else but needs them listed). Stored, not deflated: 100 MB
// in a second, and the size of a local test index does not matter.
const WHEEL_WRITER = String.raw`
import base64, hashlib, importlib.metadata, importlib.util, json, os, sys, sysconfig, zipfile
spec = json.loads(sys.argv[1])
found = importlib.util.find_spec(spec["module"])
origin = found.origin
pure = origin.endswith(".py") and not found.submodule_search_locations
root = os.path.dirname(origin) if found.submodule_search_locations else origin
version = importlib.metadata.version(spec["name"]).replace("-", "_")
if pure:
    tag = "py3-none-any"
else:
    abi = "cp%d%d" % sys.version_info[:2]
    tag = "%s-%s-%s" % (abi, abi, sysconfig.get_platform().replace("-", "_").replace(".", "_"))
name = spec["name"].replace("-", "_")
wheel = "%s-%s-%s.whl" % (name, version, tag)
dist_info = "%s-%s.dist-info" % (name, version)
files = []
if os.path.isdir(root):
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for f in sorted(filenames):
            full = os.path.join(dirpath, f)
            # Debian links headers to /usr/include (some links dangle): a wheel holds files, and training needs no headers.
            if not f.endswith(".pyc") and os.path.isfile(full):
                files.append((full, os.path.relpath(full, os.path.dirname(root))))
else:
    files.append((root, os.path.basename(root)))
record = []
tmp = os.path.join(spec["out"], wheel + ".tmp")
def add(zf, arcname, data):
    zf.writestr(zipfile.ZipInfo(arcname, (2020, 1, 1, 0, 0, 0)), data)
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    record.append("%s,sha256=%s,%d" % (arcname, digest, len(data)))
with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:
    for full, arc in files:
        with open(full, "rb") as fh:
            add(zf, arc.replace(os.sep, "/"), fh.read())
    meta = "Metadata-Version: 2.1\nName: %s\nVersion: %s\n" % (spec["name"], version)
    meta += "".join("Requires-Dist: %s\n" % r for r in spec["requires"])
    add(zf, dist_info + "/METADATA", meta.encode())
    add(zf, dist_info + "/WHEEL", ("Wheel-Version: 1.0\nGenerator: repotune-test\nRoot-Is-Purelib: %s\nTag: %s\n" % ("true" if pure else "false", tag)).encode())
    record.append(dist_info + "/RECORD,,")
    zf.writestr(zipfile.ZipInfo(dist_info + "/RECORD", (2020, 1, 1, 0, 0, 0)), "\n".join(record) + "\n")
os.replace(tmp, os.path.join(spec["out"], wheel))
print(json.dumps({"project": spec["name"], "file": wheel}))
`;

/**
 * Builds the wheels once into `dir` (kept between runs: about 110 MB, a few seconds to make) and returns them.
 * @param {{ dir?: string, python?: string }} [options]
 * @returns {{ project: string, path: string, sha256: string }[]}
 */
export function buildWheels(options = {}) {
  // As test/lib/tools.mjs says (not imported: this file is also bundled into CommonJS tests, without import.meta).
  const python = options.python ?? (process.env.REPOTUNE_PYTHON || "/usr/bin/python3");
  const dir = options.dir ?? join(tmpdir(), "repotune-test-wheels");
  mkdirSync(dir, { recursive: true });
  const listFile = join(dir, "wheels.json");
  try {
    const listed = JSON.parse(readFileSync(listFile, "utf8"));
    if (listed.python === python && listed.wheels.every((w) => existsSync(w.path) && statSync(w.path).size === w.size)) return listed.wheels;
  } catch {
    // Not built yet, or by another Python: build.
  }
  const wheels = PROJECTS.map((p) => {
    const out = execFileSync(python, ["-c", WHEEL_WRITER, JSON.stringify({ ...p, out: dir })], { encoding: "utf8", maxBuffer: 1 << 20 });
    const { project, file } = JSON.parse(out.trim().split("\n").pop());
    const path = join(dir, file);
    const data = readFileSync(path);
    return { project, path, size: data.length, sha256: createHash("sha256").update(data).digest("hex") };
  });
  writeFileSync(`${listFile}.tmp`, JSON.stringify({ python, wheels }));
  renameSync(`${listFile}.tmp`, listFile);
  return wheels;
}

const normalize = (name) => name.toLowerCase().replace(/[-_.]+/g, "-");

/**
 * Serves `wheels` as a PEP 503 index: GET /simple/<project>/ lists its files, /files/<wheel> sends one.
 * @param {{ project: string, path: string, sha256: string }[]} wheels
 * @param {{ omit?: string[], stallProject?: string, stallAfterBytes?: number }} [options] leave projects out (404, as
 *   PyPI answers for an unknown project); send only `stallAfterBytes` of `stallProject`'s wheel and then nothing more
 * @returns {Promise<{ url: string, requests: string[], stalled: Promise<void>, close: () => Promise<void> }>}
 */
export async function startPythonIndex(wheels, options = {}) {
  const served = wheels.filter((w) => !(options.omit ?? []).map(normalize).includes(normalize(w.project)));
  const requests = [];
  let onStall = () => {};
  const stalled = new Promise((resolve) => (onStall = resolve));
  const server = createServer((req, res) => {
    const url = req.url ?? "/";
    requests.push(url);
    const simple = /^\/simple\/([^/]+)\/?$/.exec(url);
    if (url === "/simple/" || url === "/simple") {
      res.writeHead(200, { "content-type": "text/html" });
      return res.end(`<!DOCTYPE html><html><body>${served.map((w) => `<a href="/simple/${normalize(w.project)}/">${w.project}</a>`).join("\n")}</body></html>`);
    }
    if (simple) {
      const files = served.filter((w) => normalize(w.project) === normalize(simple[1]));
      if (!files.length) {
        res.writeHead(404, { "content-type": "text/plain" });
        return res.end("not found");
      }
      res.writeHead(200, { "content-type": "text/html" });
      const links = files.map((w) => `<a href="/files/${encodeURIComponent(basename(w.path))}#sha256=${w.sha256}">${basename(w.path)}</a>`);
      return res.end(`<!DOCTYPE html><html><body>\n${links.join("<br>\n")}\n</body></html>`);
    }
    const file = /^\/files\/([^/?#]+)$/.exec(url);
    const wheel = file && served.find((w) => basename(w.path) === decodeURIComponent(file[1]));
    if (!wheel) {
      res.writeHead(404, { "content-type": "text/plain" });
      return res.end("not found");
    }
    const size = statSync(wheel.path).size;
    res.writeHead(200, { "content-type": "application/octet-stream", "content-length": size });
    if (options.stallProject && normalize(options.stallProject) === normalize(wheel.project)) {
      // A download that hangs part-way: the installer waits until it is cancelled.
      createReadStream(wheel.path, { start: 0, end: (options.stallAfterBytes ?? 1 << 20) - 1 }).on("end", () => onStall()).pipe(res, { end: false });
      return;
    }
    createReadStream(wheel.path).pipe(res);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = /** @type {import("node:net").AddressInfo} */ (server.address());
  return {
    url: `http://127.0.0.1:${port}/simple/`,
    requests,
    stalled,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
