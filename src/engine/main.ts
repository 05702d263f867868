// The engine process: forked by EngineClient (src/core/engineClient.ts), it serves EngineRequests arriving over Node
// IPC. It runs apart from the extension host so that a crash in native model code cannot take VS Code down.
// stdout is unused; logs go to stderr, which the client forwards to its log.
import { resolve } from "node:path";
import { z } from "zod";
import { EngineRequest, type EngineResponse } from "../protocol/engine";
import { Engine } from "./engine";
import { EngineFailure, toFailure } from "./errors";

const log = (line: string): void => {
  process.stderr.write(`[engine ${process.pid}] ${line}\n`);
};

interface InFlight {
  controller: AbortController;
  adapterPath: string | null;
}

const engine = new Engine(log);
const completions = new Map<number, InFlight>();
let shuttingDown = false;

function main(): void {
  if (process.send === undefined) {
    log("The engine must be started by RepoTune with child_process.fork (it talks over an IPC channel); exiting.");
    process.exit(1);
  }
  process.on("message", (raw: unknown) => void handle(raw));
  // The parent closed the channel (it exited, crashed or disposed us): never outlive it.
  process.on("disconnect", () => void shutdown(0));
  process.on("unhandledRejection", (reason) => log(`unhandled rejection: ${describe(reason)}`));
  log("ready");
}

async function handle(raw: unknown): Promise<void> {
  const parsed = EngineRequest.safeParse(raw);
  if (!parsed.success) {
    await send({
      id: idOf(raw),
      ok: false,
      error: { code: "bad_request", message: `The engine received a malformed request and ignored it: ${z.prettifyError(parsed.error)}` },
    });
    return;
  }
  const request = parsed.data;
  let response: EngineResponse;
  try {
    response = { id: request.id, ok: true, result: await dispatch(request) };
  } catch (err) {
    const failure = toFailure(err);
    if (failure.code === "internal") log(`${request.method} #${request.id} failed: ${describe(err)}`);
    response = { id: request.id, ok: false, error: { code: failure.code, message: failure.message } };
  }
  await send(response);
  if (request.method === "dispose") await shutdown(0);
}

async function dispatch(request: EngineRequest): Promise<unknown> {
  switch (request.method) {
    case "load":
      return engine.load(request.params.modelPath, request.params.gpu, request.params.vocabOnly);
    case "tokenize":
      return { tokens: await engine.tokenize(request.params.items) };
    case "detokenize":
      return { text: await engine.detokenize(request.params.tokens) };
    case "complete":
      return complete(request.id, request.params);
    case "cancel": {
      const entry = completions.get(request.params.requestId);
      entry?.controller.abort(new EngineFailure("cancelled", "The completion was cancelled by the client."));
      return { cancelled: entry !== undefined };
    }
    case "release":
      // A generation in progress would hold the context until its end: the memory is wanted now.
      cancelAll("The engine is releasing the model (another job needs the memory).");
      return { released: await engine.release() };
    case "status":
      return engine.status();
    case "stats": {
      const memory = process.memoryUsage();
      return { ...engine.stats(), inFlight: completions.size, rssBytes: memory.rss, heapUsedBytes: memory.heapUsed };
    }
    case "dispose":
      cancelAll("The engine is shutting down.");
      await engine.dispose();
      return {};
  }
}

async function complete(id: number, params: Extract<EngineRequest, { method: "complete" }>["params"]): Promise<unknown> {
  if (completions.has(id)) throw new EngineFailure("bad_request", `A completion with request id ${id} is already running: give every request its own id.`);
  // Inline completions are requested on every keystroke: a newer request for the same context makes older ones
  // useless, and stopping them frees the context for it. A request for another adapter waits its turn instead.
  const adapterPath = params.adapterPath === null ? null : resolve(params.adapterPath);
  for (const [otherId, other] of completions) {
    if (other.adapterPath === adapterPath) {
      other.controller.abort(new EngineFailure("cancelled", `The completion was superseded by a newer completion request (#${id}).`));
      completions.delete(otherId);
    }
  }
  const entry: InFlight = { controller: new AbortController(), adapterPath };
  completions.set(id, entry);
  try {
    return await engine.complete(params, entry.controller.signal, id);
  } finally {
    if (completions.get(id) === entry) completions.delete(id);
  }
}

function cancelAll(why: string): void {
  for (const entry of completions.values()) entry.controller.abort(new EngineFailure("cancelled", why));
  completions.clear();
}

function send(response: EngineResponse): Promise<void> {
  return new Promise((resolve) => {
    if (!process.connected || process.send === undefined) return resolve();
    process.send(response, undefined, {}, (err) => {
      if (err) log(`could not send the response to #${response.id}: ${err.message}`);
      resolve();
    });
  });
}

async function shutdown(code: number): Promise<void> {
  if (shuttingDown) return;
  shuttingDown = true;
  cancelAll("The engine is shutting down.");
  // Native teardown must not keep an orphan alive: exit regardless after a grace period.
  setTimeout(() => process.exit(code), 2000);
  try {
    await engine.dispose();
  } catch (err) {
    log(`dispose failed: ${describe(err)}`);
  }
  if (process.connected) process.disconnect();
  process.exit(code);
}

function idOf(raw: unknown): number {
  const id = typeof raw === "object" && raw !== null ? (raw as { id?: unknown }).id : undefined;
  return typeof id === "number" && Number.isInteger(id) ? id : -1;
}

function describe(err: unknown): string {
  return err instanceof Error ? (err.stack ?? err.message) : String(err);
}

main();
