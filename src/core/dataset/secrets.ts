// Secrets never enter training data: a model that has seen a key can complete it. Every file that is otherwise
// usable is scanned with secretlint's recommended rules plus three of ours (below: assigned secrets, JSON Web Tokens,
// the PEM private keys secretlint misses), and dotenv files are left out by name. Only rule ids leave this module:
// never a message, a match or a range, since those hold the secret.
//
// Most files hold nothing a rule could report, and running every rule on every file was most of the cost of
// selecting files; secretPrefilter.ts finds, in one pass, the rules that could fire in a text, and only those run.
import { lintSource } from "@secretlint/core";
import { rules as presetRules } from "@secretlint/secretlint-rule-preset-recommend";
import presetPackage from "@secretlint/secretlint-rule-preset-recommend/package.json";
import type { SecretLintCoreConfig, SecretLintCoreConfigRule, SecretLintRuleCreator } from "@secretlint/types";
import { DERIVED_FROM_PRESET, OWN_TRIGGERS, PRESET_TRIGGERS, triggeredRules } from "./secretPrefilter";

const SECRETLINT_PREFIX = "@secretlint/secretlint-rule-";

/** Rule ids as reported: secretlint's without their package prefix ("aws", "github", "privatekey"), and ours. */
export const DOTENV_RULE = "dotenv";
export const ASSIGNED_SECRET_RULE = "assigned-secret";
export const JWT_RULE = "jwt";
export const PEM_PRIVATE_KEY_RULE = "pem-private-key";
const SECRETLINT_PRIVATE_KEY_RULE = "privatekey";

/**
 * `.env`, `.env.*`, `*.env` and `.envrc` hold local settings and keys by design, so they are secrets whatever their
 * content. Templates (`.env.example`, `.env.sample`, `.env.template`, `.env.dist`) are meant to be committed and
 * document variable names; they are scanned like any configuration file instead, so one with an empty or
 * placeholder value is usable and one with a real-looking value is not.
 */
const DOTENV_TEMPLATES = new Set(["example", "sample", "template", "dist"]);

export function isDotenvFile(rel: string): boolean {
  const name = rel.slice(rel.lastIndexOf("/") + 1).toLowerCase();
  if (name === ".env" || name === ".envrc") return true;
  if (name.startsWith(".env.")) return !DOTENV_TEMPLATES.has(name.slice(".env.".length));
  return name.endsWith(".env");
}

// ---- Assigned secrets ----
//
// secretlint's rules each know one provider's key format; none catches `password = "..."` or a random-looking
// string assigned to `api_key`, which is how most hand-made secrets appear in code and configuration. This rule
// looks for such assignments by name and judges the value by its shape.

/** Candidate names: found by a cheap scan, then judged by their last word(s). */
const NAME_HINT = /pass|pwd|secret|token|key|credential/gi;
const ASSIGNING = /^[ \t]*["']?[ \t]*[:=!]/;
/**
 * A name whose last word is one of these holds a password: a non-placeholder value of six characters or more with
 * a digit or punctuation in it (a plain word there is usually a label: "Passwort", "Contraseña").
 */
const PASSWORD_WORDS = new Set(["password", "passwd", "pwd", "pass", "passphrase"]);
/** A name whose last word is one of these holds a key or token: judged by randomness. */
const KEY_WORDS = new Set(["secret", "token", "apikey", "credential", "credentials"]);
/** ...or whose last two words are one of these ("API_KEY", "accessKey", "SECRET_KEY"). */
const KEY_PAIRS = new Set([
  "api key", "access key", "secret key", "private key", "auth key", "signing key", "encryption key", "master key",
  "client key", "app key", "service key", "session key", "account key", "storage key", "license key",
]);
/** Operators that bind a value to a name, comparisons included (`token == "..."` is a hard-coded secret too). */
const OPERATOR = /^[ \t]*["']?[ \t]*(?::=|=>|===|!==|==|!=|=|:)[ \t]*/;
/** Files where a value needs no quotes (`password: hunter22`, `API_KEY=abc`); elsewhere only string literals count. */
const UNQUOTED_VALUES = /\.(?:ya?ml|ini|cfg|conf|toml|properties|env|envrc|sh|bash|zsh|tfvars)$|(?:^|\/)(?:\.env[^/]*|Dockerfile[^/]*|Makefile|\.npmrc|\.pypirc)$/i;
/** Values that stand for a secret instead of being one: variables, templates, masks, examples. */
const PLACEHOLDER = /^(?:[$%!<{[(*.#-]|process\.env|os\.environ|env\.)|[<>{}]|xxxx|\.\.\.|\*\*\*|example|sample|dummy|placeholder|changeme|change[-_]me|replace|redacted|your[-_ ]|[-_]here$|^(?:none|null|nil|true|false|undefined|todo|tbd|test|secret|password|token)$/i;
const MIN_PASSWORD = 6;
const MIN_KEY = 16;
const MIN_KEY_ENTROPY = 3.5;

function wordsOf(name: string): string[] {
  return name
    .replace(/([a-z0-9])([A-Z])/g, "$1 $2")
    .toLowerCase()
    .split(/[^a-z0-9]+/)
    .filter((w) => w.length > 0);
}

type NameKind = "password" | "key" | null;

function nameKind(name: string): NameKind {
  const words = wordsOf(name);
  const last = words[words.length - 1] ?? "";
  if (PASSWORD_WORDS.has(last)) return "password";
  if (KEY_WORDS.has(last) || KEY_PAIRS.has(words.slice(-2).join(" "))) return "key";
  return null;
}

/** Shannon entropy in bits per character. */
function entropy(s: string): number {
  const counts = new Map<string, number>();
  for (const c of s) counts.set(c, (counts.get(c) ?? 0) + 1);
  let h = 0;
  for (const n of counts.values()) h -= (n / s.length) * Math.log2(n / s.length);
  return h;
}

function looksSecret(kind: Exclude<NameKind, null>, value: string): boolean {
  if (/\s/.test(value) || PLACEHOLDER.test(value)) return false;
  // Paths and URLs name where a secret is, not the secret (credentials inside URLs have secretlint's own rules).
  if (value.includes("://") || (value.includes("/") && value.includes(".")) || /^(?:~?\/|[A-Za-z]:\\)/.test(value)) return false;
  if (kind === "password") return value.length >= MIN_PASSWORD && /[0-9!-/:-@[-`{-~]/.test(value);
  return value.length >= MIN_KEY && /[0-9]/.test(value) && /[A-Za-z]/.test(value) && entropy(value) >= MIN_KEY_ENTROPY;
}

/** Start and end of each secret-looking value assigned to a secret-looking name. */
export function findAssignedSecrets(text: string, filePath: string): [number, number][] {
  const unquotedOk = UNQUOTED_VALUES.test(filePath);
  const found: [number, number][] = [];
  let nextFrom = 0;
  for (const hint of text.matchAll(NAME_HINT)) {
    if (hint.index < nextFrom) continue;
    let start = hint.index;
    let end = hint.index + hint[0].length;
    while (start > 0 && isNameChar(text.charCodeAt(start - 1))) start--;
    while (end < text.length && isNameChar(text.charCodeAt(end))) end++;
    nextFrom = end;
    // Most hints ("keys(", "keyof", "token)") are not assignments: the character after the name settles it cheaply.
    if (!ASSIGNING.test(text.slice(end, end + 4))) continue;
    const kind = nameKind(text.slice(start, end));
    if (!kind) continue;
    const op = OPERATOR.exec(text.slice(end, end + 16));
    if (!op) continue;
    const value = readValue(text, end + op[0].length, unquotedOk);
    if (value && looksSecret(kind, value.text)) found.push([value.start, value.start + value.text.length]);
  }
  return found;
}

/** [A-Za-z0-9_.-] */
function isNameChar(c: number): boolean {
  return (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || (c >= 48 && c <= 57) || c === 95 || c === 46 || c === 45;
}

function readValue(text: string, at: number, unquotedOk: boolean): { start: number; text: string } | null {
  const quote = text[at];
  if (quote === '"' || quote === "'" || quote === "`") {
    let i = at + 1;
    while (i < text.length && text[i] !== quote && text[i] !== "\n") i += text[i] === "\\" ? 2 : 1;
    return text[i] === quote ? { start: at + 1, text: text.slice(at + 1, i) } : null;
  }
  if (!unquotedOk) return null;
  const m = /^[^\s"'`,;#]+/.exec(text.slice(at, at + 512));
  return m ? { start: at, text: m[0] } : null;
}


// ---- JSON Web Tokens ----
//
// Not in secretlint's recommended rules. A signed JWT is a bearer credential until it expires; one is recognised by
// its three base64url parts whose first decodes to a JSON header naming an algorithm.

const JWT = /\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{20,}/g;

function isJwtHeader(part: string): boolean {
  try {
    const header: unknown = JSON.parse(Buffer.from(part, "base64url").toString("utf8"));
    return typeof header === "object" && header !== null && "alg" in header;
  } catch {
    return false;
  }
}

function hasJwt(text: string): boolean {
  for (const m of text.matchAll(JWT)) if (isJwtHeader(m[0].slice(0, m[0].indexOf(".")))) return true;
  return false;
}

// ---- PEM private keys secretlint misses ----
//
// secretlint's privatekey rule wants at least 100 base64 characters starting with "MI" (a DER length over 127
// bytes), so it passes over P-256 EC keys in SEC1 form ("MHc..."), Ed25519 keys in PKCS#8 ("MC4...", 64
// characters) and encrypted PKCS#8 keys. This rule takes any PEM private key block with a base64 body; a file where
// both rules fire is reported under secretlint's alone.

const PEM_PRIVATE_KEY = /-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY( BLOCK)?-----([\s\S]{40,20000}?)-----END /g;
const MIN_PEM_BODY = 40;

function isPemBody(raw: string): boolean {
  // Armor headers ("Proc-Type: 4,ENCRYPTED", PGP's "Version: ..."), PGP's "=XXXX" checksum line and JSON's escaped
  // line breaks are not key material.
  const body = raw
    .replace(/\\n/g, "\n")
    .split("\n")
    .filter((line) => !line.includes(":") && !line.trim().startsWith("="))
    .join("")
    .replace(/\s/g, "");
  return body.length >= MIN_PEM_BODY && /^[A-Za-z0-9+/]+=*$/.test(body);
}

function hasPemPrivateKey(text: string): boolean {
  for (const m of text.matchAll(PEM_PRIVATE_KEY)) if (isPemBody(m[3])) return true;
  return false;
}

// ---- Running the rules ----

/** Ours, run as plain functions: each says whether it finds a secret in the text (`rel` lets a rule judge by file type). */
const OWN_RULES: Record<string, (text: string, rel: string) => boolean> = {
  [ASSIGNED_SECRET_RULE]: (text, rel) => findAssignedSecrets(text, rel).length > 0,
  [JWT_RULE]: hasJwt,
  [PEM_PRIVATE_KEY_RULE]: hasPemPrivateKey,
};

/** The preset's rules by id without the package prefix, registered one by one so that any subset can run. */
const PRESET_RULES = new Map(presetRules.map((rule: SecretLintRuleCreator) => [rule.meta.id.slice(SECRETLINT_PREFIX.length), rule]));
/**
 * `secretlint-disable` comments are for committing, not for training: honouring them could teach a model a key that
 * someone marked as a known exception. (Disabling this rule inside the preset's options does not stop it: secretlint
 * 12 ignores `disabled` for a preset's own rules, so it is left out here.)
 */
PRESET_RULES.delete("filter-comments");
const PRESET_OPTIONS: Record<string, Record<string, unknown>> = {
  // An AWS access key id alone is enough to leave a file out; secretlint reports it only when asked.
  aws: { enableIDScanRule: true },
};

/** Every rule that can report, by the id findSecrets gives it. */
export const SECRET_RULES: readonly string[] = [...PRESET_RULES.keys(), ...Object.keys(OWN_RULES)].sort();

/**
 * The prefilter applies to exactly the preset it was derived from: with another version, or a rule it has no
 * trigger for, every rule runs on every file.
 */
const PREFILTER_APPLIES =
  presetPackage.version === DERIVED_FROM_PRESET &&
  sameMembers(SECRET_RULES, [...Object.keys(PRESET_TRIGGERS), ...Object.keys(OWN_TRIGGERS)]);

/**
 * The rules that found a secret in this text (each once), empty when it is clean. `rel` (the path within the
 * folder) lets rules judge by file type; nothing of the text is kept.
 */
export function findSecrets(rel: string, text: string): Promise<string[]> {
  return findSecretsWith(PREFILTER_APPLIES ? triggeredRules(text, extOf(rel)) : SECRET_RULES, rel, text);
}

/** findSecrets limited to some rules (ids of SECRET_RULES): without the prefilter, it is SECRET_RULES. */
export async function findSecretsWith(rules: readonly string[], rel: string, text: string): Promise<string[]> {
  const found = new Set<string>();
  // secretlint drops a leading byte-order mark before its rules see the text; ours see what its rules see.
  const content = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  for (const rule of rules) if (OWN_RULES[rule]?.(content, rel)) found.add(rule);
  const preset = rules.filter((r) => PRESET_RULES.has(r));
  if (preset.length > 0) {
    const result = await lintSource({
      source: { content: text, filePath: rel, ext: extOf(rel), contentType: "text" },
      options: { config: presetConfig(preset), maskSecrets: true, noPhysicFilePath: true },
    });
    for (const m of result.messages) found.add(m.ruleId.slice(SECRETLINT_PREFIX.length));
  }
  if (found.has(SECRETLINT_PRIVATE_KEY_RULE)) found.delete(PEM_PRIVATE_KEY_RULE);
  return [...found].sort();
}

/** A configuration per set of preset rules, made once: a few sets recur (most often one rule alone). */
const configs = new Map<string, SecretLintCoreConfig>();

function presetConfig(ids: string[]): SecretLintCoreConfig {
  const key = ids.join(" ");
  let config = configs.get(key);
  if (!config) {
    const rules: SecretLintCoreConfigRule[] = ids.map((id) => ({ id: SECRETLINT_PREFIX + id, rule: PRESET_RULES.get(id)!, options: PRESET_OPTIONS[id] }));
    config = { rules };
    configs.set(key, config);
  }
  return config;
}

function sameMembers(a: readonly string[], b: readonly string[]): boolean {
  const set = new Set(a);
  return set.size === new Set(b).size && b.every((x) => set.has(x));
}

function extOf(rel: string): string {
  const name = rel.slice(rel.lastIndexOf("/") + 1);
  const dot = name.lastIndexOf(".");
  return dot > 0 ? name.slice(dot) : "";
}
