// The engine on the tiny model, as the dataset tests use it: the model generated under `dir`/cache (once per test
// file) and loaded in one engine process, with its prompt format.
import * as path from "node:path";
import { EngineClient } from "../../../src/core/engineClient";
import { promptFormatFor, type PromptFormat } from "../../../src/core/promptFormat";
import type { ModelInfo } from "../../../src/protocol/engine";
import { enginePath, tinyModel } from "./pipeline";

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
