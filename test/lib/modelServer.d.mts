// Types of modelServer.mjs, for the TypeScript tests that use it.
export interface ModelServer {
  /** The URL of `name` on the server (every path serves the same file, but /missing/... answers 404). */
  url(name: string): string;
  /** Every request received, in order. */
  requests: { method: string; range: string | null }[];
  setData(d: Buffer): void;
  close(): Promise<void>;
}

export function startModelServer(
  data: Buffer,
  options?: { cutAfterBytes?: number; cutRequests?: number; stallAfterBytes?: number },
): Promise<ModelServer>;
