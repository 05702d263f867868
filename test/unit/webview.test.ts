// The webview boundary: the HTML shell (src/views/webviewHtml.ts) allows only scripts carrying its nonce and has no
// inline handlers, and every message a webview posts is validated (src/protocol/webview.ts) before it can run a
// command; a malformed one is logged and ignored. webviewHtml.ts runs as written, with `vscode` resolved to the
// small double in support/vscodeDouble.ts.
import { test } from "node:test";
import * as assert from "node:assert/strict";
import { parseDocument, DomUtils } from "htmlparser2";
import type { Element } from "domhandler";
import { parseFromWebview } from "../../src/protocol/webview";
import { executed, fakeWebview, installVscodeDouble } from "./support/vscodeDouble";

installVscodeDouble();
const shell = import("../../src/views/webviewHtml.js");
type Shell = Awaited<typeof shell>;
const extensionUri = { path: "/ext/repotune", toString: () => "file:///ext/repotune" };

function render(html: Shell["webviewHtml"], script: "run" | "panel") {
  const webview = fakeWebview();
  const text = html(webview as never, extensionUri as never, script, "RepoTune Run");
  return { text, doc: parseDocument(text), webview };
}

/** The CSP's directives, name to sources. */
function csp(content: string): Map<string, string[]> {
  return new Map(content.split(";").map((d) => d.trim().split(/\s+/)).filter((d) => d[0]).map(([name, ...sources]) => [name, sources]));
}

test("the HTML has a strict CSP, scripts only with its nonce, and no inline handlers", async () => {
  const { webviewHtml } = await shell;
  for (const script of ["run", "panel"] as const) {
    const { text, doc, webview } = render(webviewHtml, script);
    const elements = DomUtils.findAll(() => true, doc.children) as Element[];
    const metas = elements.filter((e) => e.name === "meta" && e.attribs["http-equiv"]?.toLowerCase() === "content-security-policy");
    assert.equal(metas.length, 1, "one CSP meta tag");
    // The CSP must come before anything it governs.
    const first = elements.findIndex((e) => ["script", "link", "style", "img"].includes(e.name));
    assert.ok(elements.indexOf(metas[0]) < first, "the CSP comes after a resource");
    const policy = csp(metas[0].attribs.content);
    assert.deepEqual(policy.get("default-src"), ["'none'"]);
    const scriptSrc = policy.get("script-src") ?? [];
    assert.equal(scriptSrc.length, 1, `script-src allows more than a nonce: ${scriptSrc.join(" ")}`);
    const nonce = /^'nonce-([A-Za-z0-9+/=]+)'$/.exec(scriptSrc[0])?.[1];
    assert.ok(nonce, `script-src is ${scriptSrc[0]}, not a nonce`);
    assert.ok(Buffer.from(nonce, "base64").length >= 16, "the nonce has fewer than 128 bits");
    for (const [name, sources] of policy) {
      for (const bad of ["'unsafe-eval'", "*", "http:", "https:", "data:"]) {
        if (name === "img-src" && bad === "data:") continue;
        assert.ok(!sources.includes(bad), `${name} allows ${bad}`);
      }
      if (name !== "style-src") assert.ok(!sources.includes("'unsafe-inline'"), `${name} allows 'unsafe-inline'`);
    }

    const scripts = elements.filter((e) => e.name === "script");
    assert.ok(scripts.length >= 1, "the page has no script");
    for (const s of scripts) {
      assert.equal(s.attribs.nonce, nonce, "a script without the CSP's nonce");
      assert.ok(s.attribs.src, "an inline script");
      assert.equal(DomUtils.textContent(s).trim(), "", "a script with inline code");
    }
    for (const e of elements) {
      for (const [name, value] of Object.entries(e.attribs)) {
        assert.ok(!/^on/i.test(name), `<${e.name} ${name}>: an inline event handler`);
        assert.ok(!/^\s*javascript:/i.test(value), `<${e.name} ${name}="${value}">: a javascript: URL`);
        // Local resources only, through the webview's own URIs.
        if (name === "src" || name === "href") assert.ok(value.startsWith("https://file%2B.vscode-resource.vscode-cdn.net/ext/repotune/"), `<${e.name} ${name}="${value}"> is not a resource of the extension`);
      }
    }
    assert.ok(!/\son\w+\s*=/i.test(text), "an on…= attribute in the raw HTML");
    assert.ok(webview.cspSource && (policy.get("style-src") ?? []).includes(webview.cspSource), "styles are not limited to the webview's sources");
    // A fresh nonce each time: a nonce an attacker saw once must not work again.
    const again = render(webviewHtml, script).text;
    assert.ok(!again.includes(nonce), "the same nonce twice");
  }
});

/** Messages no webview of ours sends, each of which must be refused. */
const MALFORMED: [string, unknown][] = [
  ["undefined", undefined],
  ["null", null],
  ["a number", 42],
  ["a string", "ready"],
  ["an array", [{ type: "ready" }]],
  ["an empty object", {}],
  ["an unknown type", { type: "runShell", command: "rm -rf ~" }],
  ["a type of the wrong kind", { type: 1 }],
  ["a command missing", { type: "command" }],
  ["an unknown command", { type: "command", command: "rm -rf ~" }],
  ["an inherited name as command", { type: "command", command: "constructor" }],
  ["toString as command", { type: "command", command: "toString" }],
  ["a command of the wrong kind", { type: "command", command: ["fineTune"] }],
  ["an adapter action missing its path", { type: "adapter", action: "delete" }],
  ["an empty adapter path", { type: "adapter", action: "delete", adapterPath: "" }],
  ["an unknown adapter action", { type: "adapter", action: "__proto__", adapterPath: "/a.gguf" }],
  ["a huge adapter path", { type: "adapter", action: "delete", adapterPath: "/".repeat(10_000_000) }],
  ["an extra key", { type: "command", command: "fineTune", args: ["--evil"] }],
  ["a huge extra key", { type: "ready", ["k".repeat(5_000_000)]: 1 }],
  ["__proto__ as an own key", JSON.parse('{"type": "command", "command": "stop", "__proto__": {"polluted": true}}')],
  ["constructor.prototype", JSON.parse('{"type": "ready", "constructor": {"prototype": {"polluted": true}}}')],
];

test("parseFromWebview refuses every malformed message with a short reason", () => {
  for (const [what, message] of MALFORMED) {
    const r = parseFromWebview(message);
    assert.equal(r.ok, false, `${what} was accepted`);
    if (!r.ok) assert.ok(r.reason.length > 0 && r.reason.length <= 500, `${what}: a reason of ${r.reason.length} characters`);
  }
  assert.deepEqual(parseFromWebview({ type: "command", command: "stop" }), { ok: true, message: { type: "command", command: "stop" } });
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
});

test("a malformed message from a webview is logged and ignored; a valid one runs its command", async () => {
  const { onWebviewMessage, runWebviewCommand } = await shell;
  const webview = fakeWebview();
  const warnings: string[] = [];
  const handled: unknown[] = [];
  const log = { warn: (m: string) => warnings.push(m) };
  // As the Run view and the report panel wire it: validated messages go on to become commands.
  onWebviewMessage(webview as never, log as never, (m) => {
    handled.push(m);
    if (m.type !== "ready") runWebviewCommand(m, "repotune.modelPath");
  });
  executed.length = 0;

  for (const [, message] of MALFORMED) webview.receive(message);
  assert.deepEqual(handled, [], "a malformed message reached the handler");
  assert.deepEqual(executed, [], "a malformed message ran a command");
  assert.equal(warnings.length, MALFORMED.length, "not every malformed message was logged");
  assert.ok(warnings.every((w) => /malformed message/i.test(w)));
  assert.equal(({} as Record<string, unknown>).polluted, undefined, "Object.prototype was polluted");

  webview.receive({ type: "ready" });
  webview.receive({ type: "command", command: "stop" });
  webview.receive({ type: "command", command: "openErrorSetting" });
  webview.receive({ type: "adapter", action: "report", adapterPath: "/runs/repo/run-1/adapter-run-1.gguf" });
  assert.equal(handled.length, 4);
  assert.deepEqual(executed, [
    ["repotune.stopTraining"],
    ["workbench.action.openSettings", "repotune.modelPath"],
    ["repotune.openRunReport", "/runs/repo/run-1"],
  ]);
  assert.equal(warnings.length, MALFORMED.length, "a valid message was logged as malformed");
});
