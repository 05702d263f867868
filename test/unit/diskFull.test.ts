// Disk full while the extension writes a run's files: the manifest (writeManifest, atomic.ts's writeJsonAtomic, as
// evaluation.json and the dataset's meta.json), and events.jsonl appended line by line (atomic.ts's appendWhole).
// On a real 64 KB tmpfs filled up (where this machine lets the test mount one), and everywhere through a write that
// fails with ENOSPC half way (the node:fs call the module makes, replaced for the test). Each failure must say the
// disk is full and what to do, leave the previous file byte-identical and no temporary file behind.
import { after, before, describe, test, mock } from "node:test";
import assert from "node:assert/strict";
import * as fsSync from "node:fs";
import nodeFs from "node:fs"; // the module object itself, whose functions the module under test looks up when called
import { execFileSync } from "node:child_process";
import { promises as fs } from "node:fs";
import * as path from "node:path";
import { appendWhole, DiskFullError, writeJsonAtomic } from "../../src/core/atomic";
import { readManifest, runPaths, writeManifest, type RunManifest } from "../../src/core/runStore";
import { trainerFailure } from "../../src/core/trainerFailure";
import type { TrainerExit } from "../../src/core/trainerProcess";
import { removeDir, tempDir } from "./support/pipeline";

const manifest: RunManifest = {
  format: "repotune-run", version: 1, runId: "r1", repoId: "0123456789abcdef", folder: "/repo",
  created: "2026-11-29T12:00:00.000Z", finished: "2026-11-29T12:05:00.000Z", status: "done",
  baseModel: { path: "/models/tiny.gguf", size: 1000, sha256: "a".repeat(64) }, gitCommit: null,
  dataset: {
    filesUsed: 3, filesSkipped: {}, examples: 10, trainSequences: 8, valSequences: 2, trainTokens: 800, valTokens: 200,
    seqLen: 64, promptFormat: "qwen2.5-coder",
  },
  settings: { steps: 6, seqLen: 64, rank: 4, alpha: 8, lr: 0.003, batch: 4, gradAccum: 1, gradCheckpoint: false, baseWeights: "auto", seed: 0, device: "cpu" },
  metrics: { steps: 6, valLossBase: 5, valLoss: 4, trainLoss: 4.2, device: "cpu", trainSeconds: 3 },
  adapter: "adapter-r1.gguf", checkpoint: null,
};

/** A disk that can be made full and freed again; `root` is where the test writes. */
interface Disk {
  root: string;
  fill(): void;
  free(): void;
}

function tmpfsDisk(): Disk | string {
  const root = tempDir("diskfull-tmpfs");
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", root], { stdio: "pipe" });
  } catch (err) {
    removeDir(root);
    return `cannot mount a tmpfs here (${String((err as { stderr?: Buffer }).stderr ?? err).trim()}); the injected failures cover it`;
  }
  const filler = path.join(root, "filler");
  return {
    root,
    fill() {
      const fd = fsSync.openSync(filler, "w");
      try {
        for (;;) fsSync.writeSync(fd, Buffer.alloc(4096));
      } catch (err) {
        assert.equal((err as NodeJS.ErrnoException).code, "ENOSPC");
      } finally {
        fsSync.closeSync(fd);
      }
      // One page left: room for a temporary file's name, not for its contents.
      fsSync.truncateSync(filler, Math.max(0, fsSync.statSync(filler).size - 4096));
    },
    free() {
      fsSync.rmSync(filler);
    },
  };
}

function unmount(root: string): void {
  execFileSync("umount", ["-l", root]);
  removeDir(root);
}

const enospc = (syscall: string) => Object.assign(new Error(`ENOSPC: no space left on device, ${syscall}`), { code: "ENOSPC", errno: -28, syscall });

/** The writes atomic.ts makes write half their bytes, then fail as a full disk does, while `full`. */
function injectedDisk(root: string): Disk {
  const mocks: Array<{ mock: { restore(): void } }> = [];
  return {
    root,
    fill() {
      const open = nodeFs.promises.open.bind(nodeFs.promises);
      mocks.push(mock.method(nodeFs.promises, "open", async (...args: Parameters<typeof fs.open>) => {
        const handle = await open(...args);
        const writeFile = handle.writeFile.bind(handle);
        handle.writeFile = async (data: string | Uint8Array) => {
          await writeFile(Buffer.from(data).subarray(0, 100));
          throw enospc("write");
        };
        return handle;
      }));
      const writeFileSync = nodeFs.writeFileSync;
      mocks.push(mock.method(nodeFs, "writeFileSync", (fd: number, data: string) => {
        writeFileSync(fd, Buffer.from(data).subarray(0, 10));
        throw enospc("write");
      }));
    },
    free() {
      for (const m of mocks.splice(0)) m.mock.restore();
    },
  };
}

function listing(dir: string): string[] {
  return fsSync.readdirSync(dir).filter((n) => n !== "filler").sort();
}

function assertDiskFull(err: unknown, file: string, existed: boolean): true {
  assert.ok(err instanceof DiskFullError, String(err));
  assert.equal(err.code, "ENOSPC");
  assert.match(err.message, new RegExp(`^The disk is full: RepoTune could not write ${file.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")} \\(no space left on device; [0-9.]+ (B|KB|MB|GB|TB) free there\\)\\. `));
  assert.match(err.message, existed ? /The file is unchanged\./ : /Nothing was half-written\./);
  assert.match(err.message, new RegExp(`Free space on the disk that holds ${path.dirname(file).replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")}, then try again\\.$`));
  return true;
}

function diskFullCases(name: string, makeDisk: () => Disk | string, release: (d: Disk) => void): void {
  describe(`disk full (${name})`, () => {
    let disk: Disk | string;
    before(() => { disk = makeDisk(); });
    after(() => { if (typeof disk !== "string") release(disk); });

    test("a manifest that cannot be written leaves the previous one readable and byte-identical", async (t) => {
      if (typeof disk === "string") return t.skip(disk);
      const d = disk;
      const file = path.join(d.root, "run1", "manifest.json");
      await writeManifest(file, manifest);
      const previous = fsSync.readFileSync(file);
      d.fill();
      try {
        // A bigger manifest than one free page holds (the evaluation summary grows it in real runs).
        const bigger = { ...manifest, folder: "/repo/" + "x".repeat(20_000) };
        await assert.rejects(writeManifest(file, bigger), (err) => assertDiskFull(err, file, true));
        await assert.rejects(writeJsonAtomic(path.join(d.root, "run1", "evaluation.json"), { tasks: "y".repeat(20_000) }),
          (err) => assertDiskFull(err, path.join(d.root, "run1", "evaluation.json"), false));
      } finally {
        d.free();
      }
      assert.deepEqual(fsSync.readFileSync(file), previous);
      assert.deepEqual(listing(path.join(d.root, "run1")), ["manifest.json"]);
      assert.deepEqual(await readManifest(file), manifest);
      // Once space is free the same write goes through.
      await writeManifest(file, { ...manifest, status: "stopped" });
      assert.equal((await readManifest(file)).status, "stopped");
    });

    test("an event line that cannot be appended leaves the events file as it was, and the next append is whole", async (t) => {
      if (typeof disk === "string") return t.skip(disk);
      const d = disk;
      const file = path.join(d.root, "events.jsonl");
      const line = (i: number, pad = 0) => JSON.stringify({ type: "log", time: i, message: "m".repeat(pad) }) + "\n";
      for (let i = 0; i < 5; i++) appendWhole(file, line(i));
      const previous = fsSync.readFileSync(file);
      d.fill();
      try {
        assert.throws(() => appendWhole(file, line(5, 20_000)), (err) => assertDiskFull(err, file, true));
      } finally {
        d.free();
      }
      assert.deepEqual(fsSync.readFileSync(file), previous);
      appendWhole(file, line(6));
      const times = fsSync.readFileSync(file, "utf8").trimEnd().split("\n").map((l) => (JSON.parse(l) as { time: number }).time);
      assert.deepEqual(times, [0, 1, 2, 3, 4, 6]);
    });
  });
}

diskFullCases("a real 64 KB tmpfs", tmpfsDisk, (d) => unmount(d.root));
diskFullCases("ENOSPC injected half way through the write", () => injectedDisk(tempDir("diskfull-injected")), (d) => {
  d.free();
  removeDir(d.root);
});

test("errors other than a full disk pass through unchanged, with no temporary file left", async () => {
  const dir = tempDir("atomic-other");
  try {
    fsSync.mkdirSync(path.join(dir, "target.json")); // a folder where the file should go: rename fails with EISDIR
    await assert.rejects(writeJsonAtomic(path.join(dir, "target.json"), { a: 1 }), (err: NodeJS.ErrnoException) => {
      assert.ok(!(err instanceof DiskFullError));
      assert.match(String(err.code), /^(EISDIR|ENOTEMPTY|EEXIST)$/);
      return true;
    });
    assert.deepEqual(fsSync.readdirSync(dir), ["target.json"]);
  } finally {
    removeDir(dir);
  }
});

describe("a trainer that ended without a word", () => {
  const exit = (over: Partial<TrainerExit> = {}): TrainerExit => ({ code: null, signal: "SIGKILL", final: null, aborted: false, spawnError: null, stderrTail: "", ...over } as TrainerExit);

  test("on a full disk is reported as a full disk, with the checkpoint to resume from", async (t) => {
    const disk = tmpfsDisk();
    if (typeof disk === "string") return t.skip(disk);
    try {
      const paths = runPaths(disk.root, "repo", "run1");
      fsSync.mkdirSync(path.join(paths.runDir, "checkpoints"), { recursive: true });
      fsSync.writeFileSync(path.join(paths.runDir, "checkpoints", "step-000004.pt"), "x");
      disk.fill();
      const err = await trainerFailure(exit(), paths);
      assert.match(err.message, /^The trainer was killed by SIGKILL: the disk that holds .*run1 is full \(\d+(\.\d+)? [KMG]?B free\)\. Free space on it, then resume\. The newest checkpoint \(step-000004\.pt\) is kept/);
    } finally {
      unmount(disk.root);
    }
  });

  test("with room on the disk: how it ended, the log's last lines and where the full log is", async () => {
    const dir = tempDir("trainer-failure");
    try {
      const paths = runPaths(dir, "repo", "run1");
      fsSync.mkdirSync(paths.runDir, { recursive: true });
      const err = await trainerFailure(exit({ code: 3, signal: null, stderrTail: "a\nb\nSegmentation fault\n" }), paths);
      assert.equal(err.message, `The trainer exited with code 3 without finishing:\na\nb\nSegmentation fault\nThe full log is in ${paths.trainerLogPath}.`);
    } finally {
      removeDir(dir);
    }
  });
});
