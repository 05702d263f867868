// Types of pythonIndex.mjs, for the TypeScript tests that use it.
export interface Wheel {
  project: string;
  path: string;
  size: number;
  sha256: string;
}

export interface PythonIndex {
  /** The index's "simple" URL, for pip's and uv's --index-url. */
  url: string;
  /** Every request path received, in order. */
  requests: string[];
  /** Settles once the stalled download has sent its bytes. */
  stalled: Promise<void>;
  close(): Promise<void>;
}

export function buildWheels(options?: { dir?: string; python?: string }): Wheel[];

export function startPythonIndex(
  wheels: Wheel[],
  options?: { omit?: string[]; stallProject?: string; stallAfterBytes?: number },
): Promise<PythonIndex>;
