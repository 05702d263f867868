// Model downloads for real: a generated tiny GGUF served over HTTP on 127.0.0.1, including a connection dropped
// half-way (the next attempt continues with a Range request), a corrupted file, and a cancel.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { downloadModel, DownloadError, partialPath, resolveModelUri, type DownloadProgress } from "../../src/core/models/download";
import { removeDir, tempDir, tinyModel } from "./support/pipeline";
import { startModelServer, type ModelServer } from "../lib/modelServer.mjs";

let dir: string;
let model: Buffer;
let sha256: string;

before(async () => {
  dir = tempDir("download");
  model = readFileSync(await tinyModel(path.join(dir, "cache")));
  sha256 = createHash("sha256").update(model).digest("hex");
});
after(() => removeDir(dir));

async function withServer(options: object, body: (s: ModelServer) => Promise<void>): Promise<void> {
  const server: ModelServer = await startModelServer(model, options);
  try {
    await body(server);
  } finally {
    await server.close();
  }
}

describe("downloadModel", () => {
  test("downloads the whole file, checks its SHA-256, reports progress and renames it into place", async () => {
    await withServer({}, async (server) => {
      const models = path.join(dir, "plain");
      const progress: DownloadProgress[] = [];
      const r = await downloadModel({ uri: server.url("tiny.gguf"), dir: models, fileName: "tiny.gguf", sha256, onProgress: (p) => progress.push(p) });
      assert.equal(r.path, path.join(models, "tiny.gguf"));
      assert.deepEqual(readFileSync(r.path), model);
      assert.equal(r.sha256, sha256);
      assert.equal(r.resumedFrom, 0);
      assert.equal(existsSync(partialPath(r.path)), false, "no partial file is left behind");
      assert.equal(progress.at(-1)?.receivedBytes, model.length);
      assert.equal(progress.at(-1)?.totalBytes, model.length);
      assert.deepEqual(server.requests.map((q) => q.range), [null]);

      // Stored once: asking again fetches nothing.
      const again = await downloadModel({ uri: server.url("tiny.gguf"), dir: models, fileName: "tiny.gguf", sha256 });
      assert.equal(again.existing, true);
      assert.equal(server.requests.length, 1);
    });
  });

  test("a download cut off part-way fails with a network error and continues from the partial file with a Range request", async () => {
    const cut = Math.floor(model.length / 3);
    await withServer({ cutAfterBytes: cut }, async (server) => {
      const models = path.join(dir, "resume");
      const target = path.join(models, "tiny.gguf");
      await assert.rejects(
        downloadModel({ uri: server.url("tiny.gguf"), dir: models, fileName: "tiny.gguf", sha256 }),
        (err: unknown) => err instanceof DownloadError && err.code === "network" && /continues/.test(err.message),
      );
      // What had been read and written when the connection broke is kept (chunks still in flight when a stream
      // errors are dropped, so it can be less than what the server sent, never more).
      const kept = statSync(partialPath(target)).size;
      assert.ok(kept > 0 && kept <= cut, `kept ${kept} of the ${cut} bytes sent`);
      assert.deepEqual(readFileSync(partialPath(target)), model.subarray(0, kept));
      assert.equal(existsSync(target), false);

      const r = await downloadModel({ uri: server.url("tiny.gguf"), dir: models, fileName: "tiny.gguf", sha256 });
      assert.equal(r.resumedFrom, kept);
      assert.deepEqual(server.requests.map((q) => q.range), [null, `bytes=${kept}-`]);
      assert.deepEqual(readFileSync(target), model, "the resumed file is byte for byte the served one");
      assert.equal(r.sha256, sha256);
      assert.equal(existsSync(partialPath(target)), false);
    });
  });

  test("a corrupted file is rejected, deleted, and the error says so", async () => {
    const corrupted = Buffer.from(model);
    corrupted[Math.floor(corrupted.length / 2)] ^= 0xff;
    await withServer({}, async (server) => {
      server.setData(corrupted);
      const models = path.join(dir, "corrupt");
      await assert.rejects(
        downloadModel({ uri: server.url("tiny.gguf"), dir: models, fileName: "tiny.gguf", sha256 }),
        (err: unknown) => err instanceof DownloadError && err.code === "checksum" && /corrupted/.test(err.message) && err.message.includes(sha256),
      );
      assert.equal(existsSync(path.join(models, "tiny.gguf")), false);
      assert.equal(existsSync(partialPath(path.join(models, "tiny.gguf"))), false, "the corrupted bytes are not kept for a resume");
    });
  });

  test("cancel leaves a resumable partial file and no final file; the next attempt completes it", async () => {
    const stall = Math.floor(model.length / 2);
    await withServer({ stallAfterBytes: stall }, async (server) => {
      const models = path.join(dir, "cancel");
      const target = path.join(models, "tiny.gguf");
      const controller = new AbortController();
      await assert.rejects(
        downloadModel({
          uri: server.url("tiny.gguf"), dir: models, fileName: "tiny.gguf", sha256, signal: controller.signal,
          onProgress: (p) => {
            if (p.receivedBytes >= stall) controller.abort();
          },
        }),
        (err: unknown) => err instanceof DownloadError && err.code === "cancelled",
      );
      assert.equal(existsSync(target), false);
      const kept = statSync(partialPath(target)).size;
      assert.ok(kept > 0 && kept <= stall, `kept ${kept} of ${stall}`);
      assert.deepEqual(readFileSync(partialPath(target)), model.subarray(0, kept));
      const r = await downloadModel({ uri: server.url("tiny.gguf"), dir: models, fileName: "tiny.gguf", sha256 });
      assert.equal(r.resumedFrom, kept);
      assert.equal(server.requests.at(-1)?.range, `bytes=${kept}-`);
      assert.deepEqual(readFileSync(target), model);
    });
  });

  test("a partial file longer than the remote one (the file changed) is dropped and the download starts over", async () => {
    await withServer({}, async (server) => {
      const models = path.join(dir, "longer");
      const target = path.join(models, "tiny.gguf");
      mkdirSync(models, { recursive: true });
      writeFileSync(partialPath(target), Buffer.alloc(model.length + 10, 7));
      const r = await downloadModel({ uri: server.url("tiny.gguf"), dir: models, fileName: "tiny.gguf", sha256 });
      assert.equal(r.resumedFrom, 0);
      assert.deepEqual(readFileSync(target), model);
      assert.equal(server.requests.at(-2)?.range, `bytes=${model.length + 10}-`);
    });
  });

  test("an unreachable server is a network error that says what to check", async () => {
    const server: ModelServer = await startModelServer(model);
    const url = server.url("tiny.gguf");
    await server.close();
    await assert.rejects(
      downloadModel({ uri: url, dir: path.join(dir, "down"), fileName: "tiny.gguf", sha256 }),
      (err: unknown) => err instanceof DownloadError && err.code === "network" && /ECONNREFUSED/.test(err.message) && /network connection/.test(err.message),
    );
  });

  test("an HTTP error is reported with its status and a way out, and writes nothing", async () => {
    await withServer({}, async (server) => {
      const models = path.join(dir, "missing");
      await assert.rejects(
        downloadModel({ uri: server.url("missing/x.gguf"), dir: models, fileName: "x.gguf", sha256: null }),
        (err: unknown) => err instanceof DownloadError && err.code === "http" && /HTTP 404/.test(err.message) && /own GGUF/.test(err.message),
      );
      assert.equal(existsSync(partialPath(path.join(models, "x.gguf"))), false);
    });
  });
});

describe("resolveModelUri", () => {
  test("turns node-llama-cpp's hf: URIs into Hugging Face download URLs", () => {
    assert.equal(
      resolveModelUri("hf:ggml-org/Qwen2.5-Coder-1.5B-Q8_0-GGUF/qwen2.5-coder-1.5b-q8_0.gguf"),
      "https://huggingface.co/ggml-org/Qwen2.5-Coder-1.5B-Q8_0-GGUF/resolve/main/qwen2.5-coder-1.5b-q8_0.gguf",
    );
    assert.equal(resolveModelUri("hf:a/b/dir/f.gguf#v2"), "https://huggingface.co/a/b/resolve/v2/dir/f.gguf");
    assert.equal(resolveModelUri("http://127.0.0.1:8080/m.gguf"), "http://127.0.0.1:8080/m.gguf");
    // The setting wins over the environment variable.
    assert.equal(resolveModelUri("hf:a/b/f.gguf", "http://mirror.test/hf/"), "http://mirror.test/hf/a/b/resolve/main/f.gguf");
    assert.throws(() => resolveModelUri("hf:just-a-repo"), /hf:<user>\/<repository>\/<file>\.gguf/);
  });

  test("a Hugging Face mirror in HF_ENDPOINT serves the hf: URIs", () => {
    const saved = process.env.HF_ENDPOINT;
    process.env.HF_ENDPOINT = "http://127.0.0.1:9/mirror/";
    try {
      assert.equal(resolveModelUri("hf:a/b/f.gguf"), "http://127.0.0.1:9/mirror/a/b/resolve/main/f.gguf");
    } finally {
      if (saved === undefined) delete process.env.HF_ENDPOINT;
      else process.env.HF_ENDPOINT = saved;
    }
  });
});
