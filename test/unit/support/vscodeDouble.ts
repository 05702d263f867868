// The few parts of the `vscode` module that the webview shell (src/views/webviewHtml.ts) touches, for unit tests
// that run it under plain Node, where `vscode` does not exist. Only module resolution is replaced: the code under
// test runs as written. Install before the module under test is first imported (with a dynamic import()).
import Module from "node:module";
import * as posix from "node:path/posix";

export interface FakeUri { readonly path: string; toString(): string }

export const executed: unknown[][] = [];

const vscodeDouble = {
  Uri: {
    file: (p: string): FakeUri => ({ path: p, toString: () => `file://${p}` }),
    joinPath: (base: FakeUri, ...segments: string[]): FakeUri => vscodeDouble.Uri.file(posix.join(base.path, ...segments)),
  },
  commands: {
    executeCommand: async (...args: unknown[]) => {
      executed.push(args);
      return undefined;
    },
  },
};

type Loader = (request: string, ...rest: unknown[]) => unknown;
const mod = Module as unknown as { _load: Loader };

export function installVscodeDouble(): void {
  const load = mod._load;
  if ((load as { double?: true }).double) return;
  const wrapped: Loader = function (this: unknown, request, ...rest) {
    return request === "vscode" ? vscodeDouble : load.call(this, request, ...rest);
  };
  mod._load = Object.assign(wrapped, { double: true as const });
}

/** A webview as the extension sees it: its resource URIs, and the listener messages from its page reach. */
export function fakeWebview() {
  const listeners: ((m: unknown) => void)[] = [];
  return {
    cspSource: "https://*.vscode-cdn.net",
    asWebviewUri: (uri: FakeUri) => ({ toString: () => `https://file%2B.vscode-resource.vscode-cdn.net${uri.path}` }),
    onDidReceiveMessage: (listener: (m: unknown) => void) => {
      listeners.push(listener);
      return { dispose: () => listeners.splice(listeners.indexOf(listener), 1) };
    },
    /** What the page's `postMessage` delivers (VS Code structured-clones it: plain data). */
    receive: (m: unknown) => listeners.forEach((l) => l(m)),
  };
}
