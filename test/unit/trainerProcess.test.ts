// How the trainer process is started and read (src/core/trainerProcess.ts), with a real Python: it gets an argument
// list (no shell) and a minimal environment without the user's secrets, and whatever garbage it prints between its
// events is reported and skipped without ending the run. A stand-in `repotune_trainer` package in a temporary
// folder plays the trainer, so that it can print its environment and the garbage; it is started by the same code.
import { test } from "node:test";
import * as assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { MALFORMED_PREVIEW_CHARS, MAX_EVENT_LINE_BYTES, runTrainer } from "../../src/core/trainerProcess";
import type { TrainerEvent } from "../../src/protocol/trainer";
import { python } from "./support/pipeline";

/** A folder holding a `repotune_trainer` package whose `__main__` is `main`. */
function standInTrainer(main: string): { root: string; dispose: () => void } {
  const root = mkdtempSync(path.join(tmpdir(), "repotune-standin-"));
  mkdirSync(path.join(root, "repotune_trainer"));
  writeFileSync(path.join(root, "repotune_trainer", "__init__.py"), "");
  writeFileSync(path.join(root, "repotune_trainer", "__main__.py"), main);
  return { root, dispose: () => rmSync(root, { recursive: true, force: true }) };
}

/** Sets environment variables for the duration of `fn`, as if VS Code or the shell had them. */
async function withEnv<T>(vars: Record<string, string>, fn: () => Promise<T>): Promise<T> {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  Object.assign(process.env, vars);
  try {
    return await fn();
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

const SECRETS = {
  AWS_SECRET_ACCESS_KEY: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYPLANTED",
  GITHUB_TOKEN: "ghp_planted0000000000000000000000000000",
  OPENAI_API_KEY: "sk-planted",
  NPM_TOKEN: "npm_planted",
  SSH_AUTH_SOCK: "/tmp/planted-agent.sock",
  // VS Code's own: a child that inherited it would run Electron as Node, and the IPC hook reaches the window.
  ELECTRON_RUN_AS_NODE: "1",
  VSCODE_IPC_HOOK_CLI: "/tmp/planted-vscode.sock",
};
const NEEDED = {
  CUDA_VISIBLE_DEVICES: "1",
  PYTORCH_CUDA_ALLOC_CONF: "expandable_segments:True",
  OMP_NUM_THREADS: "2",
  LANG: "C.UTF-8",
};

test("the trainer gets its arguments verbatim, without a shell, and an environment without secrets", async () => {
  const marker = path.join(tmpdir(), `repotune-shell-ran-${process.pid}`);
  const { root, dispose } = standInTrainer(`
import json, os, sys
out = sys.argv[-1]
with open(out, "w") as f:
    json.dump({"argv": sys.argv[1:-1], "env": dict(os.environ), "cwd": os.getcwd(), "path0": sys.path[0]}, f)
`);
  try {
    const report = path.join(root, "report.json");
    // Each would run `touch` if a shell saw it.
    const args = [`; touch ${marker} #`, `$(touch ${marker})`, `\`touch ${marker}\``, `a b | touch ${marker}`, "*", "it's \"quoted\"", "é ✓", report];
    const exit = await withEnv({ ...SECRETS, ...NEEDED }, () =>
      runTrainer({ python, trainerRoot: root, args, onEvent: () => undefined, onMalformed: () => undefined }),
    );
    assert.equal(exit.spawnError, null);
    assert.equal(exit.code, 0, `the stand-in failed: ${exit.stderrTail}`);
    const seen = JSON.parse(readFileSync(report, "utf8")) as { argv: string[]; env: Record<string, string>; cwd: string; path0: string };
    console.log(`the trainer's environment: ${Object.keys(seen.env).sort().join(" ")}`);

    assert.deepEqual(seen.argv, args.slice(0, -1), "an argument was changed on the way");
    assert.equal(existsSync(marker), false, "a shell ran an argument");
    for (const key of Object.keys(SECRETS)) assert.equal(seen.env[key], undefined, `${key} reached the trainer`);
    // Nor under another name (the short flag values aside, which other variables share).
    for (const value of Object.values(SECRETS).filter((v) => v.length > 8)) {
      assert.ok(!Object.values(seen.env).some((v) => v.includes(value)), `the value of a secret reached the trainer`);
    }
    for (const [key, value] of Object.entries(NEEDED)) assert.equal(seen.env[key], value, `${key} did not reach the trainer`);
    assert.equal(seen.env.PATH, process.env.PATH);
    assert.equal(seen.env.PYTHONPATH, root, "PYTHONPATH is not the trainer folder alone");
    // Started in the trainer folder, never in the repository being trained on (whose files could shadow modules).
    assert.equal(seen.cwd, root);
    // Nothing beyond what Python, PyTorch and the GPU runtimes read.
    const allowed = /^(PATH|HOME|USER|LANG|LC_\w+|TMPDIR|TMP|TEMP|PYTHON\w*|CUDA_\w+|HIP_\w+|ROCR_\w+|HSA_\w+|PYTORCH_\w+|NCCL_\w+|TORCH_HOME|OMP_\w+|MKL_\w+|OPENBLAS_\w+|LD_LIBRARY_PATH|DYLD_LIBRARY_PATH|VIRTUAL_ENV|CONDA_PREFIX|PYENV_\w+|USERPROFILE|SYSTEMROOT|APPDATA|LOCALAPPDATA)$/;
    const extra = Object.keys(seen.env).filter((k) => !allowed.test(k));
    assert.deepEqual(extra, [], `variables beyond the trainer's needs: ${extra.join(", ")}`);
  } finally {
    dispose();
    rmSync(marker, { force: true });
  }
});

test("garbage on the trainer's stdout is reported and skipped, and the events around it arrive", async () => {
  const hugeBytes = 5 * MAX_EVENT_LINE_BYTES;
  const { root, dispose } = standInTrainer(`
import json, os, sys, time
out = sys.stdout.buffer
def event(**e):
    out.write(json.dumps(e).encode() + b"\\n"); out.flush()
def raw(b):
    out.write(b); out.flush()
step = dict(event="step", steps=2, loss=1.5, lr=0.001, tokens_per_s=100.0, elapsed_s=0.1)
event(**step, step=1)
raw(b"Some library printed this to stdout\\n")
raw(b'{"event": "step", "step": "one"}\\n')                    # JSON, not an event of the schema
raw(b'{"event": "teleport", "step": 1}\\n')                    # an event that does not exist
raw(b'[1, 2, 3]\\nnull\\n"a string"\\n')
raw(b'{"__proto__": {"polluted": true}, "constructor": {"prototype": {"polluted": true}}, "event": "step"}\\n')
raw(b"x" * ${hugeBytes} + b"\\n")                              # a huge line, in many chunks
raw(b'{"event": "eval", "step": 1, "val_loss": 2.0, "pad": "' + b"y" * (${MAX_EVENT_LINE_BYTES} + 10) + b'"}\\n')
raw(bytes(b for b in range(256) if b != 10) + b"\\n")          # binary garbage
raw(b"\\xff\\xfe{\\x00\\x00}\\n")
raw(b"\\n   \\n")                                                # blank lines: nothing to report
ev = json.dumps(dict(**step, step=2)).encode()
raw(ev[:10]); time.sleep(0.05); raw(ev[10:] + b"\\r\\n")      # an event in two writes, with a CRLF
event(event="done", step=2, adapter="/tmp/a.gguf", val_loss_base=2.0, val_loss=1.0)
raw(b"a last line without a newline")
`);
  try {
    const events: TrainerEvent[] = [];
    const malformed: { line: string; reason: string }[] = [];
    const exit = await runTrainer({
      python, trainerRoot: root, args: [],
      onEvent: (e) => events.push(e),
      onMalformed: (line, reason) => malformed.push({ line, reason }),
    });
    for (const m of malformed) console.log(`skipped (${m.reason.slice(0, 120)}): ${JSON.stringify(m.line.slice(0, 60))}… ${m.line.length} chars`);
    assert.equal(exit.code, 0, exit.stderrTail);
    assert.deepEqual(events.map((e) => [e.event, "step" in e ? e.step : null]), [["step", 1], ["step", 2], ["done", 2]]);
    assert.equal(exit.final?.event, "done");

    assert.equal(malformed.length, 12, "every garbage line is reported once");
    assert.match(malformed[0].reason, /not JSON/);
    assert.equal(malformed[0].line, "Some library printed this to stdout");
    assert.match(malformed[1].reason, /step/);
    assert.match(malformed[2].reason, /event/);
    const huge = malformed[7];
    assert.match(huge.reason, new RegExp(`a line of ${hugeBytes} bytes`));
    assert.ok(huge.line.length <= MALFORMED_PREVIEW_CHARS + 40, `the report holds ${huge.line.length} characters of the huge line`);
    const longEvent = Buffer.byteLength('{"event": "eval", "step": 1, "val_loss": 2.0, "pad": "') + MAX_EVENT_LINE_BYTES + 10 + 2;
    assert.match(malformed[8].reason, new RegExp(`a line of ${longEvent} bytes`), "an over-long event is not taken");
    assert.ok(malformed.every((m) => m.line.length <= MALFORMED_PREVIEW_CHARS + 40), "a report was not cut short");
    assert.equal(malformed.at(-1)?.line, "a last line without a newline");
    // Keys named __proto__ or constructor in a line change no object of the extension.
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
  } finally {
    dispose();
  }
});
