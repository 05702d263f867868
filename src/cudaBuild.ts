// llama.cpp's CUDA build is too large to ship in the VSIX (core/binaries.ts). On a machine with an NVIDIA GPU and the
// CUDA runtime, RepoTune offers it once per start: a download into global storage with a cancellable progress
// notification (resumed when interrupted, checked against the sha512 RepoTune ships), after which the engine restarts
// on it. Until then completions run on Vulkan or the CPU, which the log says.
import * as path from "node:path";
import * as vscode from "vscode";
import type { Ctx } from "./ctx";
import { cudaAdvice, cudaMessage } from "./core/binaries";
import { BinariesError, installBinaries } from "./core/binaries/install";
import { formatBytes } from "./core/format";
import { messageOf } from "./core/errors";

const NEVER_KEY = "repotune.cudaBuild.neverAsk";

/** The folder downloaded engine binaries live in; the engine process reads it from its environment. */
export function binariesRoot(context: vscode.ExtensionContext): string {
  return path.join(context.globalStorageUri.fsPath, "binaries");
}

/** Checks (nvidia-smi, the CUDA runtime) and, where the CUDA build would be used, offers to download it. */
export async function offerCudaBuild(ctx: Ctx, opts: { ask: boolean }): Promise<void> {
  const context = ctx.extension;
  const root = binariesRoot(context);
  const advice = await cudaAdvice(root).catch(() => null);
  if (!advice) return;
  const note = cudaMessage(advice);
  if (note) ctx.log.info(note);
  if (advice.kind !== "download") {
    if (!opts.ask) void vscode.window.showInformationMessage(`RepoTune: ${note ?? "no NVIDIA GPU found: completions use the build shipped with RepoTune."}`);
    return;
  }
  if (opts.ask && context.globalState.get<boolean>(NEVER_KEY)) return;
  const download = `Download (${Math.round(advice.bytes / 1e6)} MB)`;
  const choice = await vscode.window.showInformationMessage(`RepoTune: ${note}`, download, "Not Now", ...(opts.ask ? ["Don't Ask Again"] : []));
  if (choice === "Don't Ask Again") await context.globalState.update(NEVER_KEY, true);
  if (choice !== download) return;
  await vscode.window.withProgress(
    { location: vscode.ProgressLocation.Notification, title: "RepoTune: downloading llama.cpp's CUDA build", cancellable: true },
    async (progress, token) => {
      const abort = new AbortController();
      token.onCancellationRequested(() => abort.abort());
      let shown = 0;
      try {
        await installBinaries({
          root, packages: advice.packages, signal: abort.signal,
          registry: vscode.workspace.getConfiguration("repotune").get<string>("engine.binariesRegistry") || undefined,
          onProgress: (p) => {
            const pct = (100 * p.allReceivedBytes) / Math.max(1, p.allBytes);
            progress.report({ increment: pct - shown, message: `${formatBytes(p.allReceivedBytes)} of ${formatBytes(p.allBytes)}` });
            shown = pct;
          },
        });
        // The engine loads a build once per process: the next one started uses CUDA.
        await ctx.engine.pause("switching to llama.cpp's CUDA build");
        await ctx.engine.resume();
        void vscode.window.showInformationMessage("RepoTune: llama.cpp's CUDA build is installed; completions now run on the GPU.");
      } catch (err) {
        ctx.log.warn(`CUDA build download: ${messageOf(err)}`);
        if (err instanceof BinariesError && err.code === "cancelled") {
          void vscode.window.showInformationMessage("RepoTune: download cancelled; it continues where it stopped next time.");
        } else {
          void vscode.window.showWarningMessage(`RepoTune: ${messageOf(err)}`, "Show Log").then((c) => c && ctx.log.show(true));
        }
      }
    },
  );
}
