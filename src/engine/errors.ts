// Failures the engine reports to its client. Each carries a protocol error code and a message that says what
// happened and what the user can do about it; anything else that escapes is reported as "internal".
import type { z } from "zod";
import type { EngineErrorCode } from "../protocol/engine";

export type ErrorCode = z.infer<typeof EngineErrorCode>;

export class EngineFailure extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
    this.name = "EngineFailure";
  }
}

export function toFailure(err: unknown): EngineFailure {
  if (err instanceof EngineFailure) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new EngineFailure("internal", `The engine failed unexpectedly: ${message}`);
}
