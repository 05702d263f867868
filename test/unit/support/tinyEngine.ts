// The engine on the tiny model, as the dataset tests use it: the model generated under `dir`/cache (once per test
// file) and loaded in one engine process, with its prompt format.
import * as path from "node:path";
import { after, before } from "node:test";
import { EngineClient } from "../../../src/core/engineClient";
import { promptFormatFor, type PromptFormat } from "../../../src/core/promptFormat";
import type { ModelInfo } from "../../../src/protocol/engine";
import { enginePath, removeDir, tempDir, tinyModel } from "./pipeline";

export interface TinyEngine {
  modelPath: string;
  engine: EngineClient;
  info: ModelInfo;
  format: PromptFormat;
}

export async function startTinyEngine(dir: string): Promise<TinyEngine> {
  const modelPath = await tinyModel(path.join(dir, "cache"));
  const engine = await EngineClient.start({ enginePath, log: () => undefined });
  const info = await engine.load(modelPath);
  return { modelPath, engine, info, format: promptFormatFor(info) };
}

/**
 * For a whole test file: a temporary folder named after `name` and the tiny engine in it, handed to `use` before the
 * first test; the engine stopped and the folder removed after the last.
 */
export function useTinyEngine(name: string, use: (tiny: TinyEngine & { dir: string }) => void): void {
  let dir: string | undefined;
  let engine: EngineClient | undefined;
  before(async () => {
    dir = tempDir(name);
    const tiny = await startTinyEngine(dir);
    engine = tiny.engine;
    use({ ...tiny, dir });
  });
  after(async () => {
    await engine?.dispose();
    removeDir(dir);
  });
}
