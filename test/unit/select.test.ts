// Which files a dataset learns from: secrets never (planted at test time with real shapes, none of them may appear in
// anything selectFiles returns or prints), generated/vendored/lockfile/minified/binary/data files skipped with their
// reason, listings that survive loops and unreadable files, and the user's include/exclude patterns. The secret
// prefilter (secretPrefilter.ts) is proven against the full scan: it fires for a secret of every rule's kind, and
// the prefiltered scan finds exactly what the full scan finds on every text file under node_modules.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { generateKeyPairSync, randomBytes, randomInt } from "node:crypto";
import { chmodSync, existsSync, readdirSync, readFileSync, symlinkSync, unlinkSync } from "node:fs";
import * as path from "node:path";
import { lintSource } from "@secretlint/core";
import { creator as recommendedPreset } from "@secretlint/secretlint-rule-preset-recommend";
import { selectFiles, selectRecords, type Selection } from "../../src/core/dataset/select";
import { fingerprint } from "../../src/core/dataset/dedupe";
import { findSecrets, findSecretsWith, SECRET_RULES } from "../../src/core/dataset/secrets";
import { DERIVED_FROM_PRESET, OWN_TRIGGERS, PRESET_TRIGGERS, triggeredRules } from "../../src/core/dataset/secretPrefilter";
import { languageOf } from "../../src/core/dataset/classify";
import { git, makeGitRepo, removeDir, tempDir, writeFiles } from "./support/pipeline";
import { BASE62, BASE64, CLEAN, UPPER_DIGITS, base64url, digits, key, opensshKey, password, plantSecrets, random, type Planted } from "./support/plantedSecrets";

/** The worker bundle that `node esbuild.mjs` writes; the extension and the CLI find it beside themselves in dist/. */
const WORKER = path.join(process.cwd(), "dist", "selectWorker.js");

function workerScript(): string {
  assert.ok(existsSync(WORKER), `${WORKER} is missing: run node esbuild.mjs first`);
  return WORKER;
}

/** Runs selectFiles and gathers everything it returned or printed, as one string to search. */
async function selectCapturing(folder: string, opts: Parameters<typeof selectFiles>[1] = {}): Promise<{ result: Selection; output: string }> {
  const printed: string[] = [];
  const saved = { log: console.log, info: console.info, warn: console.warn, error: console.error, debug: console.debug };
  const out = process.stdout.write.bind(process.stdout);
  const err = process.stderr.write.bind(process.stderr);
  const capture = (...args: unknown[]) => void printed.push(args.map(String).join(" "));
  Object.assign(console, { log: capture, info: capture, warn: capture, error: capture, debug: capture });
  process.stdout.write = ((chunk: unknown) => (printed.push(String(chunk)), true)) as typeof process.stdout.write;
  process.stderr.write = ((chunk: unknown) => (printed.push(String(chunk)), true)) as typeof process.stderr.write;
  try {
    const result = await selectFiles(folder, opts);
    return { result, output: JSON.stringify(result) + "\n" + printed.join("\n") };
  } finally {
    Object.assign(console, saved);
    process.stdout.write = out;
    process.stderr.write = err;
  }
}

describe("secrets", () => {
  let dir: string;
  let planted: Planted;
  before(() => {
    dir = tempDir("secrets");
    planted = plantSecrets();
    makeGitRepo(dir, { ...planted.files, ...CLEAN });
  });
  after(() => removeDir(dir));

  test("each planted secret is found by the rule for its kind", async () => {
    for (const [rel, expected] of Object.entries(planted.rules)) {
      if (expected.includes("dotenv")) continue; // left out by name, never read
      assert.deepEqual(await findSecrets(rel, planted.files[rel]), expected, rel);
    }
  });

  test("no file with a secret is usable, the counts are right, and no secret appears in anything returned or printed", async () => {
    const { result, output } = await selectCapturing(dir);
    const usable = result.usable.map((f) => f.path).sort();
    assert.deepEqual(usable, Object.keys(CLEAN).sort(), "exactly the clean files are usable");
    const secretFiles = Object.keys(planted.files).length;
    assert.equal(result.secretsExcluded, secretFiles);
    assert.deepEqual(result.skipped, { secret: secretFiles });
    assert.equal(result.listed, secretFiles + Object.keys(CLEAN).length);
    const expected: Record<string, number> = {};
    for (const rules of Object.values(planted.rules)) for (const r of rules) expected[r] = (expected[r] ?? 0) + 1;
    assert.deepEqual(result.secretFindings, Object.fromEntries(Object.entries(expected).sort(([a], [b]) => (a < b ? -1 : 1))));
    for (const value of planted.values) assert.ok(!output.includes(value), "a planted secret appears in selectFiles' output");
  });

  test("worker threads find the same secrets and leak none of them", async () => {
    const here = await selectFiles(dir, { workers: 0 });
    const { result, output } = await selectCapturing(dir, { workers: 2, workerScript: workerScript() });
    assert.deepEqual(result, here);
    for (const value of planted.values) assert.ok(!output.includes(value));
  });

  test("the dataset step's selection (lengths and fingerprints, no text) leaves out the same files, in worker threads too", async () => {
    const texts = await selectFiles(dir, { workers: 0 });
    for (const workers of [0, 2]) {
      const { usable, ...counts } = await selectRecords(dir, { workers, workerScript: workerScript() });
      assert.deepEqual(usable.map((f) => f.path), texts.usable.map((f) => f.path));
      const { usable: _, ...expected } = texts;
      assert.deepEqual(counts, expected);
    }
  });

  test("include never re-admits a file with a secret", async () => {
    const { result, output } = await selectCapturing(dir, { include: ["*", "**/*", ".env", "keys/"] });
    assert.deepEqual(result.usable.map((f) => f.path).sort(), Object.keys(CLEAN).sort());
    assert.equal(result.secretsExcluded, Object.keys(planted.files).length);
    for (const value of planted.values) assert.ok(!output.includes(value));
  });
});

const PNG = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0x0d, 0x49, 0x48, 0x44, 0x52, 0, 0, 0, 1, 0, 0, 0, 1, 8, 6, 0, 0, 0]);
const LATIN1 = Buffer.from("caf\xe9 cr\xe8me br\xfbl\xe9e\nno UTF-8 here, only Latin-1 \xe0 la carte\n".repeat(4), "latin1");
const MAX_BYTES = 64 * 1024;

/** Ordinary code, the kind of file RepoTune learns from. */
function code(name: string, lines = 30): string {
  const out = [`// ${name}: part of the inventory service.`];
  for (let i = 0; i < lines; i++) out.push(`export function ${name}${i}(items: number[]): number {`, `  return items.reduce((a, b) => a + b * ${i}, 0);`, "}");
  return out.join("\n") + "\n";
}

const minifiedJs = Array.from({ length: 40 }, (_, i) => `function a${i}(b,c){return b.map(function(d){return d*c+${i}}).filter(function(e){return e>${i}})}var x${i}=a${i}([1,2,3],${i});`).join("") + "\n";

/** Files each skipped for one reason, and the clean ones that must stay usable. */
const KINDS: Record<string, Record<string, string | Buffer>> = {
  generated: {
    "api/service.go": "// Code generated by protoc-gen-go-grpc. DO NOT EDIT.\n\npackage api\n\nfunc Serve() {}\n",
    "proto/user.pb.go": "package proto\n\ntype User struct{ Name string }\n",
    "web/vendor-free.min.js": minifiedJs,
    "dist/bundle.js": code("bundle"),
    "src/schema.ts": "/**\n * @generated by relay-compiler\n */\nexport const schema = {};\n",
    "lib/compiled.js": code("compiled") + "//# sourceMappingURL=compiled.js.map\n",
    "gen/Parser.java": "/* This file was automatically generated by ANTLR; do not modify. */\npublic class Parser {}\n",
  },
  vendored: {
    "vendor/github.com/acme/lib/lib.go": "package lib\n\nfunc Helper() int { return 1 }\n",
    "third_party/zlib/adler32.c": "unsigned long adler32(unsigned long a) { return a; }\n",
    "node_modules/left-pad/index.js": "module.exports = function leftPad(s, n) { return s.padStart(n); };\n",
  },
  lockfile: {
    "package-lock.json": '{\n  "lockfileVersion": 3\n}\n',
    "yarn.lock": "# yarn lockfile v1\n",
    "pnpm-lock.yaml": "lockfileVersion: '9.0'\n",
    "rust/Cargo.lock": "version = 3\n",
    "poetry.lock": "# This file is automatically @generated by Poetry\n",
    "Gemfile.lock": "GEM\n  specs:\n",
    "go.sum": "golang.org/x/text v0.3.0 h1:abc=\n",
    "composer.lock": '{ "packages": [] }\n',
  },
  minified: {
    "assets/app.js": minifiedJs,
    "src/table.ts": "export const TABLE = [" + Array.from({ length: 600 }, (_, i) => `"k${i}"`).join(",") + "];\n",
  },
  binary: { "assets/logo.png": PNG },
  not_utf8: { "docs/latin1.txt": LATIN1 },
  too_large: { "src/huge.ts": code("huge", 1200) },
  data_heavy: { "data/points.csv": "x,y\n" + Array.from({ length: 200 }, (_, i) => `${(i * 0.731).toFixed(4)},${(i * 1.37).toFixed(4)}`).join("\n") + "\n" },
  usable: {
    "src/inventory.ts": code("inventory"),
    "src/types.d.ts": "export interface Item { id: number; name: string }\n",
    "src/cache/lru.ts": code("lru"),
    "native/vec.h": "#ifndef VEC_H\n#define VEC_H\nstruct vec { double x, y; };\ndouble vec_len(struct vec v);\n#endif\n",
    "native/vec.rs": "use std::ops::Add;\n\npub struct Vec2 { pub x: f64, pub y: f64 }\n",
    "README.md": "# Inventory\n\nA small service.\n",
    "scripts/build": "#!/usr/bin/env python3\nprint('build')\n",
  },
};

describe("files that are not the user's own code", () => {
  let dir: string;
  before(() => {
    dir = tempDir("kinds");
    makeGitRepo(dir, Object.assign({}, ...Object.values(KINDS)));
    // A committed symlink loop and a tracked file deleted from the working tree: neither stops the listing.
    symlinkSync(".", path.join(dir, "loop"));
    writeFiles(dir, { "gone.ts": "export const gone = 1;\n" });
    git(dir, "add", "loop", "gone.ts");
    git(dir, "commit", "-q", "-m", "loop");
    unlinkSync(path.join(dir, "gone.ts"));
  });
  after(() => removeDir(dir));

  test("each is skipped with its reason; symlinks and unreadable files are counted, not fatal", async () => {
    const { usable, skipped, listed } = await selectFiles(dir, { maxFileBytes: MAX_BYTES });
    assert.deepEqual(usable.map((f) => f.path).sort(), Object.keys(KINDS.usable).sort());
    const expected: Record<string, number> = { symlink: 1, unreadable: 1 };
    for (const [reason, files] of Object.entries(KINDS)) if (reason !== "usable") expected[reason] = Object.keys(files).length;
    assert.deepEqual(skipped, Object.fromEntries(Object.entries(expected).sort(([a], [b]) => (a < b ? -1 : 1))));
    assert.equal(listed, usable.length + Object.values(skipped).reduce((a, b) => a + b, 0));
  });

  test("usable files are counted by language, with their bytes", async () => {
    const { usable, languages } = await selectFiles(dir, { maxFileBytes: MAX_BYTES });
    const bytes = (paths: string[]) => paths.reduce((n, p) => n + Buffer.byteLength(usable.find((f) => f.path === p)!.text), 0);
    assert.deepEqual(languages, {
      C: { files: 1, bytes: bytes(["native/vec.h"]) },
      Markdown: { files: 1, bytes: bytes(["README.md"]) },
      Python: { files: 1, bytes: bytes(["scripts/build"]) },
      Rust: { files: 1, bytes: bytes(["native/vec.rs"]) },
      TypeScript: { files: 3, bytes: bytes(["src/inventory.ts", "src/types.d.ts", "src/cache/lru.ts"]) },
    });
  });

  test("worker threads judge every file as the selecting thread does", async () => {
    const here = await selectFiles(dir, { maxFileBytes: MAX_BYTES, workers: 0 });
    for (const workers of [1, 3]) assert.deepEqual(await selectFiles(dir, { maxFileBytes: MAX_BYTES, workers, workerScript: workerScript() }), here);
  });

  test("records carry each usable file's length and fingerprint, the same from worker threads", async () => {
    const texts = await selectFiles(dir, { maxFileBytes: MAX_BYTES, workers: 0 });
    const here = await selectRecords(dir, { maxFileBytes: MAX_BYTES, workers: 0 });
    assert.deepEqual(
      here.usable,
      texts.usable.map((f) => ({ path: f.path, chars: f.text.length, fingerprint: fingerprint(f.text) })),
    );
    assert.ok(here.usable.some((f) => f.fingerprint.signature !== null), "some file is long enough for a signature");
    for (const workers of [1, 3]) assert.deepEqual(await selectRecords(dir, { maxFileBytes: MAX_BYTES, workers, workerScript: workerScript() }), here);
  });

  test("aborting while workers judge stops them and rejects with the signal's reason", async () => {
    const controller = new AbortController();
    const selecting = selectFiles(dir, { workers: 2, workerScript: workerScript(), signal: controller.signal });
    setImmediate(() => controller.abort());
    await assert.rejects(selecting, { name: "AbortError" });
  });

  test("a language comes from Linguist's names, extensions, shebangs and heuristics", () => {
    assert.equal(languageOf("Makefile", "all:\n"), "Makefile");
    assert.equal(languageOf("src/a.tsx", "export {};\n"), "TSX");
    assert.equal(languageOf("bin/tool", "#!/usr/bin/env node\n"), "JavaScript");
    assert.equal(languageOf("inc/a.h", "@interface Foo : NSObject\n@end\n"), "Objective-C");
    assert.equal(languageOf("inc/a.h", "#include <vector>\nnamespace x { class A {}; }\n"), "C++");
    assert.equal(languageOf("notes.unknownext", "hello\n"), null);
  });
});

describe("listing outside git", () => {
  let dir: string;
  before(() => {
    dir = tempDir("walk-select");
    writeFiles(dir, { ".gitignore": "build/\n", "a.ts": code("a"), "build/out.js": "ignored();\n", "sub/b.py": "def b():\n    return 2\n" });
    symlinkSync("..", path.join(dir, "sub", "loop"));
    symlinkSync(path.join(dir, "missing.ts"), path.join(dir, "dangling.ts"));
    execFileSync("mkfifo", [path.join(dir, "pipe")]);
  });
  after(() => removeDir(dir));

  test("a symlink loop, a dangling link and a named pipe are counted, and the walk goes on", async () => {
    const { usable, skipped } = await selectFiles(dir);
    assert.deepEqual(usable.map((f) => f.path).sort(), ["a.ts", "sub/b.py"]);
    // .gitignore is vendored by Linguist's rules.
    assert.deepEqual(skipped, { not_a_file: 1, symlink: 2, vendored: 1 });
  });

  test("an unreadable file is counted (as root, which reads everything, the file stays readable and usable)", async () => {
    const file = path.join(dir, "locked.ts");
    writeFiles(dir, { "locked.ts": code("locked") });
    chmodSync(file, 0o000);
    try {
      const { usable, skipped } = await selectFiles(dir);
      const root = process.getuid?.() === 0;
      assert.equal(usable.some((f) => f.path === "locked.ts"), root);
      assert.equal(skipped.unreadable ?? 0, root ? 0 : 1);
    } finally {
      chmodSync(file, 0o644);
      unlinkSync(file);
    }
  });
});

describe("the user's includes and excludes", () => {
  let dir: string;
  before(() => {
    dir = tempDir("userrules");
    makeGitRepo(dir, {
      ".repotuneignore": "# drafts are not ours to learn from\nscratch/\n*.gen.ts\n!keep.gen.ts\n",
      "src/main.ts": code("main"),
      "src/api.gen.ts": code("api"),
      "src/keep.gen.ts": code("keep"),
      "scratch/idea.ts": code("idea"),
      "docs/guide.md": "# Guide\n\nHow to use it.\n",
      "src/old/legacy.ts": code("legacy"),
      "src/old/keep.ts": code("oldkeep"),
      "vendor/ourlib/util.go": "package ourlib\n\nfunc Util() int { return 2 }\n",
      "vendor/other/x.go": "package other\n",
      "runs/run-1/log.txt": "a runs folder inside the workspace\n",
      ".env": `API_TOKEN=${random(BASE62, 32)}\n`,
    });
  });
  after(() => removeDir(dir));

  test(".repotuneignore, exclude and include patterns decide, and include re-admits vendored and excluded files", async () => {
    const { usable, skipped } = await selectFiles(dir, {
      exclude: [path.join(dir, "runs")],
      excludeGlobs: ["docs/", "src/old/"],
      include: ["vendor/ourlib/", "src/old/keep.ts", ".env"],
    });
    assert.deepEqual(usable.map((f) => f.path).sort(), [".repotuneignore", "src/keep.gen.ts", "src/main.ts", "src/old/keep.ts", "vendor/ourlib/util.go"]);
    assert.deepEqual(skipped, { secret: 1, user_excluded: 4, vendored: 1 });
  });

  test("an aborted selection stops with the signal's reason", async () => {
    const controller = new AbortController();
    controller.abort();
    await assert.rejects(selectFiles(dir, { signal: controller.signal }), { name: "AbortError" });
  });
});

// ---- The secret prefilter ----

const LOWER = "abcdefghijklmnopqrstuvwxyz";
const HEX = "0123456789abcdef";
const TOKEN_CHARS = BASE62 + "_-";

/** 1Password's `ops_` token: base64 of a JSON object whose length is 1 mod 3, so that "}" encodes as "fQ==". */
function opsToken(): string {
  let json = JSON.stringify({ email: `${random(LOWER, 12)}@1passwordserviceaccounts.lcl`, secretKey: random(BASE62, 40), srpX: randomBytes(32).toString("hex"), pad: "" });
  while (json.length % 3 !== 1) json = json.replace('"pad":"', '"pad":"x');
  return "ops_" + Buffer.from(json).toString("base64");
}

/** A Google service-account key file, as the console downloads it (JSON, the PEM key with escaped line breaks). */
function gcpKeyFile(): string {
  const pem = generateKeyPairSync("rsa", { modulusLength: 1024, privateKeyEncoding: { type: "pkcs8", format: "pem" }, publicKeyEncoding: { type: "spki", format: "pem" } }).privateKey;
  return JSON.stringify({ type: "service_account", project_id: "acme", private_key_id: randomBytes(20).toString("hex"), private_key: pem, client_email: "ci@acme.iam.gserviceaccount.com" }, null, 2) + "\n";
}

interface RuleSample {
  rule: string;
  rel: string;
  text: string;
}

/**
 * For every rule (secretlint's preset and ours), secrets of each kind it knows, generated fresh, in the kind of file
 * they are found in. Spellings the prefilter must not miss are among them: upper-case URLs (rules that ignore case),
 * JSON \u escapes, every token prefix.
 */
function oneOfEachRule(): RuleSample[] {
  const sample = (rule: string, rel: string, text: string): RuleSample => ({ rule, rel, text });
  const gcp = gcpKeyFile();
  const webhook = `https://hooks.slack.com/services/T${random(BASE62, 10)}/B${random(BASE62, 10)}/${random(BASE62, 24)}`;
  const dbPassword = password();
  const samples = [
    sample("aws", "deploy/keys.ini", `aws_access_key_id = AKIA${random(UPPER_DIGITS, 16)}\n`),
    sample("aws", "deploy/env.sh", `export AWS_SECRET_ACCESS_KEY=${key(BASE64, 40)}\n`),
    sample("aws", "deploy/account.yaml", `aws_account_id: "${digits(12)}"\n`),
    sample("gcp", "secrets/sa.json", gcp),
    sample("gcp", "secrets/escaped-name.json", gcp.replace('"private_key_id"', '"\\u0070rivate_key_id"')),
    sample("gcp", "secrets/escaped-key.json", gcp.replace(/PRIVATE KEY/g, "PRIVATE\\u0020KEY")),
    sample("privatekey", "keys/id_rsa", generateKeyPairSync("rsa", { modulusLength: 1024, privateKeyEncoding: { type: "pkcs1", format: "pem" }, publicKeyEncoding: { type: "spki", format: "pem" } }).privateKey),
    sample("privatekey", "keys/deploy_key", opensshKey()),
    sample("npm", "src/publish.ts", `const NPM = "npm_${random(BASE62, 36)}";\n`),
    sample("npm", "package.json", JSON.stringify({ name: "x", repository: `https://${random(HEX, 40)}:x-oauth-basic@github.com/acme/x.git` }, null, 2) + "\n"),
    sample("npm", ".npmrc", `//registry.npmjs.org/:_authToken=${random(BASE62, 36)}\n`),
    sample("basicauth", "scripts/fetch.py", `URL = "https://deploy:${random(BASE62, 14)}@files.acme-corp.com/releases"\n`),
    sample("slack", "bot/config.ts", `export const SLACK = "xoxb-${digits(11)}-${digits(12)}-${random(BASE62, 24)}";\n`),
    sample("slack", "bot/hooks.ts", `export const HOOK = "${webhook}";\n`),
    sample("slack", "bot/HOOKS.txt", `${webhook.toUpperCase()}\n`),
    sample("sendgrid", "mail/send.js", `const key = "SG.${random(BASE62, 22)}.${random(BASE62, 43)}";\n`),
    ...["shpat", "shpss", "shpca", "shppa"].map((p) => sample("shopify", `shop/${p}.ts`, `const t = "${p}_${random(BASE62, 32)}";\n`)),
    ...["ghp", "gho", "ghu", "ghs", "ghr"].map((p) => sample("github", `ci/${p}.yaml`, `token: ${p}_${random(BASE62, 36)}\n`)),
    sample("github", "ci/fine.yaml", `token: github_pat_${random(BASE62 + "_", 82)}\n`),
    sample("gitlab", "ci/gitlab.yaml", `token: glpat-${random(TOKEN_CHARS, 20)}\n`),
    sample("grafana", "ops/grafana.ts", `const cloud = "glc_${random(BASE64, 60)}";\n`),
    sample("grafana", "ops/grafana-sa.ts", `const sa = "glsa_${random(BASE62, 32)}_${random(HEX, 8)}";\n`),
    sample("openai", "ai/openai.py", `client = OpenAI(api_key="sk-proj-${random(BASE62, 74)}T3BlbkFJ${random(BASE62, 74)}")\n`),
    sample("openai", "ai/legacy.py", `openai.api_key = "sk-${random(BASE62, 20)}T3BlbkFJ${random(BASE62, 20)}"\n`),
    sample("anthropic", "ai/claude.py", `client = Anthropic(api_key="sk-ant-api03-${random(BASE62, 93)}AA")\n`),
    sample("groq", "ai/groq.py", `GROQ = "gsk_${random(BASE62, 52)}"\n`),
    sample("huggingface", "ai/hf.py", `HF = "hf_${random(BASE62.slice(0, 52), 34)}"\n`),
    sample("linear", "tools/linear.ts", `const LINEAR = "lin_api_${random(BASE62, 40)}";\n`),
    sample("notion", "tools/notion.ts", `const NOTION = "ntn_${digits(11)}${random(BASE62, 35)}";\n`),
    sample("1password", "tools/op.sh", `export OP_SERVICE_ACCOUNT_TOKEN=${opsToken()}\n`),
    sample("database-connection-string", "config/mongo.js", `module.exports = "mongodb+srv://svc:${dbPassword}@cluster0.example.net/app";\n`),
    sample("database-connection-string", "config/mysql.yaml", `url: jdbc:mysql://app:${dbPassword}@db.internal:3306/app\n`),
    sample("database-connection-string", "config/pg.rb", `DATABASE_URL = "postgresql://app:${dbPassword}@db.internal:5432/app"\n`),
    sample("database-connection-string", "config/PG.txt", `POSTGRES://APP:${dbPassword}@DB.INTERNAL:5432/APP\n`),
    sample("hashicorp-vault", "ops/vault.hcl", `token = "hvs.${random(TOKEN_CHARS, 95)}"\n`),
    sample("hashicorp-vault", "ops/batch.hcl", `token = "hvb.${random(TOKEN_CHARS, 150)}"\n`),
    sample("hashicorp-vault", "ops/recovery.hcl", `token = "hvr.${random(TOKEN_CHARS, 95)}"\n`),
    ...["vcp", "vci", "vca", "vcr", "vck"].map((p) => sample("vercel", `deploy/${p}.ts`, `const t = "${p}_${random(BASE62, 24)}";\n`)),
    sample("databricks", "jobs/run.py", `TOKEN = "dapi${random(HEX, 32)}"\n`),
    sample("docker", "ci/docker.sh", `echo dckr_pat_${random(TOKEN_CHARS, 27)} | docker login --password-stdin\n`),
    sample("figma", "design/figma.ts", `const FIGMA = "figd_${random(TOKEN_CHARS, 40)}";\n`),
    sample("assigned-secret", "src/payments.ts", `const apiKey = "${key(BASE62, 32)}";\n`),
    sample("assigned-secret", "config/db.ini", `[database]\npassword = ${password()}\n`),
    sample("assigned-secret", "src/Auth.java", `private static final String CLIENT_SECRET="${key(BASE62, 24)}";\n`),
    sample("assigned-secret", "settings/local.py", `ADMIN_PASSWORD_ = "${password()}"\n`),
    sample("jwt", "src/session.ts", `export const session = "${base64url({ alg: "HS256", typ: "JWT" })}.${base64url({ sub: digits(8) })}.${randomBytes(32).toString("base64url")}";\n`),
    sample("pem-private-key", "keys/server.pem", generateKeyPairSync("ec", { namedCurve: "P-256", privateKeyEncoding: { type: "sec1", format: "pem" }, publicKeyEncoding: { type: "spki", format: "pem" } }).privateKey),
  ];
  return samples;
}

const extOf = (rel: string) => (path.basename(rel).lastIndexOf(".") > 0 ? path.extname(rel) : "");

/** Every regular text file under node_modules up to 256 KB (about 14,000 here), with its path below node_modules. */
function nodeModulesTexts(): { rel: string; text: string }[] {
  const root = path.join(process.cwd(), "node_modules");
  if (!existsSync(root)) return [];
  const utf8 = new TextDecoder("utf-8", { fatal: true });
  const out: { rel: string; text: string }[] = [];
  for (const entry of readdirSync(root, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const abs = path.join(entry.parentPath, entry.name);
    const bytes = readFileSync(abs);
    if (bytes.length === 0 || bytes.length > 256 * 1024 || bytes.subarray(0, 8000).includes(0)) continue;
    try {
      out.push({ rel: path.relative(root, abs).split(path.sep).join("/"), text: utf8.decode(bytes) });
    } catch {
      // Not UTF-8: selectFiles never scans such a file either.
    }
  }
  return out;
}

describe("the secret prefilter", () => {
  test("covers exactly the rules that run, derived from the preset version installed", () => {
    const covered = [...Object.keys(PRESET_TRIGGERS), ...Object.keys(OWN_TRIGGERS)].sort();
    assert.deepEqual(covered, [...SECRET_RULES]);
    const installed = JSON.parse(readFileSync(path.join(process.cwd(), "node_modules/@secretlint/secretlint-rule-preset-recommend/package.json"), "utf8")).version;
    assert.equal(installed, DERIVED_FROM_PRESET, "secretlint's preset changed: re-derive the triggers in secretPrefilter.ts from its rule sources");
  });

  test("fires for every secret planted in the selection tests", () => {
    const planted = plantSecrets();
    for (const [rel, expected] of Object.entries(planted.rules)) {
      if (expected.includes("dotenv")) continue; // left out by name, never scanned
      const fired = triggeredRules(planted.files[rel], extOf(rel));
      for (const rule of expected) assert.ok(fired.includes(rule), `${rel}: the prefilter missed ${rule} (fired: ${fired.join(", ") || "none"})`);
    }
  });

  test("fires for a secret of every kind each rule knows, which the full scan finds", async () => {
    const samples = oneOfEachRule();
    assert.deepEqual([...new Set(samples.map((s) => s.rule))].sort(), [...SECRET_RULES], "a sample for every rule");
    for (const { rule, rel, text } of samples) {
      assert.ok((await findSecretsWith(SECRET_RULES, rel, text)).includes(rule), `${rel}: the full scan should find ${rule}; the sample is wrong`);
      assert.ok(triggeredRules(text, extOf(rel)).includes(rule), `${rel}: the prefilter missed ${rule}`);
      assert.ok((await findSecrets(rel, text)).includes(rule), `${rel}: the prefiltered scan missed ${rule}`);
    }
  });

  test("a secretlint-disable comment does not hide a secret", async () => {
    const token = `ghp_${random(BASE62, 36)}`;
    for (const comment of ["// secretlint-disable", "// secretlint-disable-next-line", "/* secretlint-disable github */"]) {
      assert.deepEqual(await findSecrets("src/client.ts", `${comment}\nconst auth = "${token}";\n`), ["github"], comment);
    }
  });

  test("registering the preset's rules one by one finds what the preset itself finds", async () => {
    const samples = oneOfEachRule();
    const presetConfig = {
      rules: [{ id: recommendedPreset.meta.id, rule: recommendedPreset, rules: [{ id: "@secretlint/secretlint-rule-aws", options: { enableIDScanRule: true } }] }],
    };
    for (const { rel, text } of [...samples, ...Object.entries(CLEAN).map(([rel, text]) => ({ rel, text }))]) {
      const viaPreset = await lintSource({ source: { content: text, filePath: rel, ext: extOf(rel), contentType: "text" }, options: { config: presetConfig, maskSecrets: true, noPhysicFilePath: true } });
      const expected = [...new Set(viaPreset.messages.map((m) => m.ruleId.replace("@secretlint/secretlint-rule-", "")))].sort();
      const presetOnly = SECRET_RULES.filter((r) => r in PRESET_TRIGGERS);
      const found = await findSecretsWith(presetOnly, rel, text);
      assert.deepEqual(found, expected, rel);
    }
  });

  test("the prefiltered scan finds exactly what the full scan finds, on planted secrets and every text file under node_modules", async () => {
    const corpus = nodeModulesTexts();
    assert.ok(corpus.length > 1000, `node_modules should hold thousands of text files here (found ${corpus.length}); run npm ci`);
    const samples = oneOfEachRule();
    const planted = plantSecrets();
    // Each secret also inside real files, at a random place: after a letter, mid-line, at the start or end.
    const implanted = samples.flatMap((s, i) =>
      [0, 1, 2].map((k) => {
        const host = corpus[(i * 131 + k * 977) % corpus.length];
        const at = k === 0 ? 0 : k === 1 ? host.text.length : randomInt(host.text.length + 1);
        return { rel: k === 2 ? s.rel : host.rel, text: host.text.slice(0, at) + s.text + host.text.slice(at) };
      }),
    );
    const texts = [
      ...samples,
      ...implanted,
      ...Object.entries(planted.files).map(([rel, text]) => ({ rel, text })),
      ...Object.entries(CLEAN).map(([rel, text]) => ({ rel, text })),
      ...corpus,
    ];
    let withSecrets = 0;
    let skipped = 0;
    for (const { rel, text } of texts) {
      const full = await findSecretsWith(SECRET_RULES, rel, text);
      assert.deepEqual(await findSecrets(rel, text), full, rel);
      if (full.length > 0) withSecrets++;
      if (triggeredRules(text, extOf(rel)).length === 0) skipped++;
    }
    assert.ok(withSecrets >= samples.length + implanted.length, `the corpus holds secrets (${withSecrets} texts)`);
    assert.ok(skipped > corpus.length / 2, `most files skip the scan (${skipped} of ${texts.length})`);
  });
});
