// Secrets of many kinds with real shapes, generated fresh at test time (no secret sits in this repository as a
// literal), and clean files that only talk about them: the selection tests and the end-to-end leak test share them.
import { generateKeyPairSync, randomBytes, randomInt } from "node:crypto";

export const BASE62 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
export const UPPER_DIGITS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
export const BASE64 = BASE62 + "+/";

export function random(alphabet: string, n: number): string {
  let s = "";
  for (let i = 0; i < n; i++) s += alphabet[randomInt(alphabet.length)];
  return s;
}
export const digits = (n: number) => random("0123456789", n);
export const base64url = (value: object) => Buffer.from(JSON.stringify(value)).toString("base64url");
/** A random key of `n` characters with at least one letter and one digit, ending in a letter or digit, as real keys do. */
export const key = (alphabet: string, n: number) => random(alphabet, n - 2) + random("abcdefghijklmnopqrstuvwxyz", 1) + digits(1);
/** A password with letters and digits, as a person or a generator would set one. */
export const password = () => random(BASE62, 12) + digits(3);

export function pemBody(pem: string): string {
  const lines = pem.trim().split("\n");
  return lines.slice(1, -1).join("");
}

/** An OpenSSH private key of the real layout (magic, then key material), random inside. */
export function opensshKey(): string {
  const body = Buffer.concat([Buffer.from("openssh-key-v1\0"), randomBytes(360)]).toString("base64");
  const lines = body.match(/.{1,70}/g) ?? [];
  return ["-----BEGIN OPENSSH PRIVATE KEY-----", ...lines, "-----END OPENSSH PRIVATE KEY-----", ""].join("\n");
}

export interface Planted {
  files: Record<string, string>;
  /** Rules expected to fire on each file. */
  rules: Record<string, string[]>;
  /** Every secret value planted (for private keys, the key material), to look for in the output. */
  values: string[];
}

/** A corpus with one kind of secret per file, generated fresh: no secret sits in this repository as a literal. */
export function plantSecrets(): Planted {
  const awsId = "AKIA" + random(UPPER_DIGITS, 16);
  const awsSecret = key(BASE64, 40);
  const ghp = "ghp_" + random(BASE62, 36);
  const ghPat = "github_pat_" + random(BASE62 + "_", 82);
  const slack = `xoxb-${digits(11)}-${digits(12)}-${random(BASE62, 24)}`;
  const rsa = generateKeyPairSync("rsa", { modulusLength: 1024, privateKeyEncoding: { type: "pkcs1", format: "pem" }, publicKeyEncoding: { type: "spki", format: "pem" } }).privateKey;
  const ec = generateKeyPairSync("ec", { namedCurve: "P-256", privateKeyEncoding: { type: "sec1", format: "pem" }, publicKeyEncoding: { type: "spki", format: "pem" } }).privateKey;
  const ed25519 = generateKeyPairSync("ed25519", { privateKeyEncoding: { type: "pkcs8", format: "pem" }, publicKeyEncoding: { type: "spki", format: "pem" } }).privateKey;
  const openssh = opensshKey();
  const envPassword = password();
  const envProdToken = random(BASE62, 32);
  const sampleKey = "sk_live_" + key(BASE62, 24);
  const yamlPassword = password();
  const jsonPassword = password();
  const iniPassword = password();
  const tsKey = key(BASE62, 32);
  const pyKey = randomBytes(32).toString("hex");
  const goToken = key(BASE64, 40);
  const jwt = `${base64url({ alg: "HS256", typ: "JWT" })}.${base64url({ sub: digits(8), name: random(BASE62, 8), iat: 1700000000 })}.${randomBytes(32).toString("base64url")}`;
  const dbPassword = password();
  const mongoPassword = password();

  const files: Record<string, string> = {
    "deploy/aws.ini": `[default]\naws_access_key_id = ${awsId}\naws_secret_access_key = ${awsSecret}\nregion = eu-west-1\n`,
    "src/github.ts": `export const client = new Octokit({ auth: "${ghp}" });\n`,
    "ci/release.yaml": `steps:\n  - run: gh release create\n    env:\n      GH_AUTH: ${ghPat}\n`,
    "scripts/notify.py": `import requests\n\nSLACK = "${slack}"\nrequests.post("https://slack.com/api/chat.postMessage", headers={"Authorization": f"Bearer {SLACK}"})\n`,
    "keys/id_rsa": rsa,
    "keys/server.pem": ec,
    "keys/deploy_key": openssh,
    "keys/signing.key": ed25519,
    ".env": `DATABASE_PASSWORD=${envPassword}\nPORT=3000\n`,
    "config/.env.production": `STRIPE_TOKEN=${envProdToken}\n`,
    ".env.sample": `PAYMENTS_API_KEY=${sampleKey}\nPORT=3000\n`,
    "config/database.yaml": `production:\n  adapter: postgresql\n  username: app\n  password: ${yamlPassword}\n`,
    "config/settings.json": JSON.stringify({ smtp: { host: "mail.internal", user: "robot", password: jsonPassword } }, null, 2) + "\n",
    "config/db.ini": `[database]\nhost = db.internal\npassword = ${iniPassword}\n`,
    "src/payments.ts": `const apiKey = "${tsKey}";\nexport const charge = (cents: number) => fetch("/charge", { headers: { "x-api-key": apiKey }, body: String(cents) });\n`,
    "app/settings.py": `DEBUG = False\nSECRET_KEY = '${pyKey}'\n`,
    "cmd/bot/main.go": `package main\n\nvar authToken = "${goToken}"\n\nfunc main() { run(authToken) }\n`,
    "src/session.ts": `export const session = "${jwt}";\n`,
    "config/repo.rb": `DATABASE_URL = "postgres://app:${dbPassword}@db.internal:5432/app"\n`,
    "config/mongo.js": `module.exports = { uri: "mongodb+srv://svc:${mongoPassword}@cluster0.mongodb.net/app" };\n`,
  };
  const rules: Record<string, string[]> = {
    // The secret access key is also a random value assigned to a key-like name.
    "deploy/aws.ini": ["assigned-secret", "aws"],
    "src/github.ts": ["github"],
    "ci/release.yaml": ["github"],
    "scripts/notify.py": ["slack"],
    "keys/id_rsa": ["privatekey"],
    // secretlint passes over P-256 keys in SEC1 form and Ed25519 keys; our PEM rule catches them.
    "keys/server.pem": ["pem-private-key"],
    "keys/deploy_key": ["privatekey"],
    "keys/signing.key": ["pem-private-key"],
    ".env": ["dotenv"],
    "config/.env.production": ["dotenv"],
    ".env.sample": ["assigned-secret"],
    "config/database.yaml": ["assigned-secret"],
    "config/settings.json": ["assigned-secret"],
    "config/db.ini": ["assigned-secret"],
    "src/payments.ts": ["assigned-secret"],
    "app/settings.py": ["assigned-secret"],
    "cmd/bot/main.go": ["assigned-secret"],
    "src/session.ts": ["jwt"],
    "config/repo.rb": ["database-connection-string"],
    "config/mongo.js": ["database-connection-string"],
  };
  const values = [awsId, awsSecret, ghp, ghPat, slack, pemBody(rsa).slice(64, 128), pemBody(ec).slice(40, 100), pemBody(openssh).slice(64, 128), pemBody(ed25519).slice(16, 64),
    envPassword, envProdToken, sampleKey, yamlPassword, jsonPassword, iniPassword, tsKey, pyKey, goToken, jwt, dbPassword, mongoPassword];
  return { files, rules, values };
}

/** Clean files that talk about passwords, keys and tokens without holding any: they must stay usable. */
export const CLEAN: Record<string, string> = {
  "docs/security.md":
    "# Security\n\nNever put a password in the code. Reset your password from the account page; the password field\n" +
    "accepts a passphrase of any length. API keys and tokens live in the vault, never in this repository.\n",
  "src/login.ts": [
    'import { z } from "zod";',
    "",
    "export const Login = z.object({ user: z.string(), password: z.string().min(12) });",
    'export const passwordLabel = "Password";',
    "export function check(password: string | undefined): void {",
    '  if (!password) throw new Error("password required");',
    "  const token = process.env.API_TOKEN;",
    '  const apiKey = config.get("api_key");',
    "  use(token, apiKey);",
    "}",
    "",
  ].join("\n"),
  ".env.example": "DATABASE_PASSWORD=\nSTRIPE_TOKEN=changeme\nPORT=3000\n",
  "config/app.yaml": "server:\n  port: 8080\n  password: ${DB_PASSWORD}\n  token: <your token here>\n",
  "src/tokenizer.py": 'TOKENIZER = "GPT2TokenizerFast"\nmax_tokens = 2048\nprimary_key = "id"\n',
};
