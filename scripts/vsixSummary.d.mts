export interface VsixSummary {
  bytes: number;
  files: string[];
  unpackedBytes: number;
  targetPlatform: string | null;
  parts: { name: string; files: number; unpackedBytes: number; packedBytes: number }[];
  binaryPackages: { name: string; version: string | null; files: number; unpackedBytes: number; addon: boolean }[];
}
export function summarizeVsix(file: string): Promise<VsixSummary>;
export function formatSummary(
  target: string,
  out: string,
  summary: VsixSummary,
  fetched: { name: string; from: "node_modules" | "registry" | "cache"; bytes: number | null }[],
  seconds: number,
): string;
