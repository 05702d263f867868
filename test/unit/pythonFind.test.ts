// Where RepoTune looks for the Python that trains, with real interpreters: the configured one alone, else
// RepoTune's own environment, the Python extension's interpreter, then PATH; what kind of problem each failure is
// (each has its fix button); and the Python extension's API read through a fake of its exported object.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as path from "node:path";
import { PythonEnvError, findPython, interpreterFromPythonExtension } from "../../src/core/python";
import { python, removeDir, tempDir, trainerRoot } from "./support/pipeline";

let dir: string;
let bare: string;

before(() => {
  dir = tempDir("pythonfind");
  // A virtual environment of the torch Python does not see its packages: a Python without torch on any machine.
  execFileSync(python, ["-m", "venv", "--without-pip", path.join(dir, "venv")]);
  bare = path.join(dir, "venv", "bin", "python");
});
after(() => removeDir(dir));

const problemOf = async (p: Promise<unknown>) => {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof PythonEnvError, `not a PythonEnvError: ${String(err)}`);
    return { problem: err.problem, message: err.message };
  }
  assert.fail("no error");
};

describe("findPython", () => {
  test("each failure names its kind: no Python, no PyTorch", async () => {
    const missing = await problemOf(findPython(path.join(dir, "nope", "python3"), trainerRoot));
    assert.equal(missing.problem, "no_python");
    assert.match(missing.message, /not found.*Set up trainer environment/);
    const noTorch = await problemOf(findPython(bare, trainerRoot));
    assert.equal(noTorch.problem, "no_torch");
    assert.match(noTorch.message, /no PyTorch and NumPy/);
  });

  test("unset: RepoTune's environment first, then the Python extension's interpreter, then PATH", async () => {
    const asked: string[] = [];
    // RepoTune's environment (here one without torch) is tried first; the Python extension's comes next and trains.
    const found = await findPython(undefined, trainerRoot, {
      managed: bare,
      fromExtension: async () => {
        asked.push("extension");
        return python;
      },
    });
    assert.equal(found.python, python);
    assert.deepEqual(asked, ["extension"]);

    // A ready environment of RepoTune's own is used without asking the Python extension.
    const own = await findPython(undefined, trainerRoot, { managed: python, fromExtension: async () => assert.fail("asked the Python extension") });
    assert.equal(own.python, python);

    // A Python extension that throws is no reason to stop looking.
    const fallback = await findPython(undefined, trainerRoot, { fromExtension: async () => { throw new Error("activation failed"); } });
    assert.ok(fallback.selftest.ok);
  });

  test("a configured interpreter is the only one tried, even with RepoTune's environment ready", async () => {
    const r = await problemOf(findPython(bare, trainerRoot, { managed: python, fromExtension: async () => python }));
    assert.equal(r.problem, "no_torch");
    assert.ok(!r.message.includes(`${python} (`), "another interpreter was tried");
  });
});

describe("the Python extension's interpreter", () => {
  const uri = (fsPath: string) => ({ fsPath, scheme: "file" });

  test("current API: the active environment of the resource, resolved to its executable", async () => {
    const calls: unknown[] = [];
    const api = {
      ready: Promise.resolve(),
      environments: {
        getActiveEnvironmentPath(resource: unknown) {
          calls.push(resource);
          return { id: "venv-1", path: "/work/.venv" };
        },
        async resolveEnvironment(env: { id: string }) {
          assert.equal(env.id, "venv-1");
          return { executable: { uri: uri("/work/.venv/bin/python") } };
        },
      },
    };
    assert.equal(await interpreterFromPythonExtension(api, "folder-uri"), "/work/.venv/bin/python");
    assert.deepEqual(calls, ["folder-uri"]);
  });

  test("unresolvable: the path when it names an interpreter, else nothing", async () => {
    const api = (p: string) => ({ environments: { getActiveEnvironmentPath: () => ({ id: "x", path: p }), resolveEnvironment: async () => undefined } });
    assert.equal(await interpreterFromPythonExtension(api("/usr/bin/python3.12")), "/usr/bin/python3.12");
    assert.equal(await interpreterFromPythonExtension(api("/home/me/miniconda3/envs/ml")), undefined);
  });

  test("older API: settings.getExecutionDetails; and no API at all", async () => {
    const legacy = { settings: { getExecutionDetails: (r: unknown) => ({ execCommand: r === "res" ? ["/opt/py/bin/python", "-X"] : undefined }) } };
    assert.equal(await interpreterFromPythonExtension(legacy, "res"), "/opt/py/bin/python");
    assert.equal(await interpreterFromPythonExtension(legacy, "other"), undefined);
    for (const none of [undefined, null, 42, {}, { environments: {} }]) assert.equal(await interpreterFromPythonExtension(none), undefined);
  });
});
