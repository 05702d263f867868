// Which secret rules could report anything in a text, decided by a few passes of regular expressions (one for all of
// secretlint's preset), so that the scan (about 30 patterns, most files clean) runs only where a rule could fire,
// and then only those rules.
//
// Each rule below has a trigger: a pattern that every text the rule reports in must contain. A trigger is the
// rule's own pattern with what only narrows a match taken out (lookarounds, \b, bounds on lengths, optional
// prefixes, the checks made after a match), so a text with no trigger is one the rule reports nothing in. Where a
// rule matches case-insensitively (the `i` flag), its trigger spells each letter both ways (`anyCase`), which is the
// same thing for ASCII: JavaScript's non-Unicode `i` never folds another character onto an ASCII letter. Rules see
// the text with a leading byte-order mark removed; no trigger is anchored, so that changes nothing here.
//
// The triggers of secretlint's recommended preset were derived from its 12.0.0 sources
// (node_modules/@secretlint/secretlint-rule-preset-recommend/module/index.js, one section per rule). A preset of
// another version, or with a rule not listed here, is scanned in full (secrets.ts checks), and the tests fail
// until the new rules' triggers are written.

/** The preset version whose rule sources these triggers were derived from. */
export const DERIVED_FROM_PRESET = "12.0.0";

interface Trigger {
  /** Regular expression sources (no flags); the rule may fire when any of them matches. */
  patterns: string[];
  /** A rule that also decides by file extension (the same `ext` secretlint is given). */
  byExtension?: (ext: string, text: string) => boolean;
}

/** Letters in both cases, everything else escaped: the non-Unicode `i` flag's meaning, for one part of a pattern. */
function anyCase(literal: string): string {
  return literal.replace(/[a-zA-Z]|[.*+?^${}()|[\]\\/-]/g, (c) => (/[a-zA-Z]/.test(c) ? `[${c.toLowerCase()}${c.toUpperCase()}]` : `\\${c}`));
}

/**
 * Credentials in a connection URL, as database-connection-string requires them: `user:password@` right after
 * `scheme://` (each of its three patterns skips a match whose username or password group is empty).
 */
const URL_CREDENTIALS = String.raw`:\/\/[^:\/\s]+:[^@\/\s]+@`;

/** Triggers of secretlint's recommended preset, by rule id without the "@secretlint/secretlint-rule-" prefix. */
export const PRESET_TRIGGERS: Readonly<Record<string, Trigger>> = {
  // Access key ids (scanned because secrets.ts sets enableIDScanRule):
  //   \b(A3T[A-Z0-9]|AKIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|ASIA)[A-Z0-9]{16}\b
  // secret access keys:
  //   ["']?(?:AWS|aws|Aws)?_?(?:SECRET|secret|Secret)_?(?:ACCESS|access|Access)_?(?:KEY|key|Key)["']?\s*(?::|=>|=)\s*["']?([A-Za-z0-9/\+=]{40})["']?\b
  // account ids:
  //   ("|')?(AWS|aws|Aws)?_?(ACCOUNT|account|Account)_?(ID|id|Id)?("|')?\s*(:|=>|=)\s*("|')?[0-9]{4}\-?[0-9]{4}\-?[0-9]{4}("|')?\b
  aws: {
    patterns: [
      "(?:A3T[A-Z0-9]|AKIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|ASIA)[A-Z0-9]{16}",
      String.raw`(?:SECRET|secret|Secret)_?(?:ACCESS|access|Access)_?(?:KEY|key|Key)["']?\s*(?::|=>|=)\s*["']?[A-Za-z0-9/+=]{40}`,
      String.raw`(?:ACCOUNT|account|Account)_?(?:ID|id|Id)?["']?\s*(?::|=>|=)\s*["']?[0-9]{4}-?[0-9]{4}-?[0-9]{4}`,
    ],
  },
  // Looks only at `.p12` files (read from disk by path, so always scanned) and `.json` files, which it parses
  // whole: it reports when the top-level keys "private_key_id" and "private_key" are there and the latter's value
  // matches /-----BEGIN\s?(DSA|RSA|EC|PGP|OPENSSH)?\s?PRIVATE KEY/. JSON may spell any of those letters as \uXXXX,
  // so a file with such an escape is scanned too.
  gcp: {
    patterns: [],
    byExtension: (ext, text) =>
      ext === ".p12" ||
      (ext === ".json" && (text.includes("\\u") || (text.includes("private_key_id") && text.includes("PRIVATE KEY")))),
  },
  // -----BEGIN[ ]?(?:(?:RSA|DSA|EC|OPENSSH|PGP) )?PRIVATE KEY(?: BLOCK)?-----\n?([A-Za-z0-9+/=\s\\]{100,10000})...
  privatekey: { patterns: ["-----BEGIN ?(?:(?:RSA|DSA|EC|OPENSSH|PGP) )?PRIVATE KEY"] },
  // In package.json: https?:\/\/(.{1,256}):x-oauth-basic@github.com\/ ; in .npmrc: _authToken=([^$].*) ;
  // anywhere: (?<!\p{L})npm_[A-Za-z0-9_]{36}(?![A-Za-z0-9_])
  npm: { patterns: [":x-oauth-basic@github", "_authToken=", "npm_[A-Za-z0-9_]{36}"] },
  // (?<protocol>(?:https?|ftp|ftps)):\/\/(?<user>[-a-zA-Z0-9_]{1,256}):(?<password>[-a-zA-Z0-9_]{1,256})@...
  basicauth: { patterns: [String.raw`:\/\/[-\w]+:[-\w]+@`] },
  // \b(?:xoxb|xoxp|xapp|xoxa|xoxo|xoxr)-(?:\d-)?(?:[a-zA-Z0-9]{1,40}-)+[a-zA-Z0-9]{1,40}\b and, with the i flag,
  // https:\/\/hooks\.slack\.com\/services\/T[a-zA-Z0-9]{1,40}\/B...
  slack: { patterns: ["(?:xoxb|xoxp|xapp|xoxa|xoxo|xoxr)-", anyCase("hooks.slack.com/services/t")] },
  // (?<!\p{L})SG\.\w{1,128}\.\w{1,128}([-_]?)\w{1,128}(?!\w)
  sendgrid: { patterns: [String.raw`SG\.\w+\.\w`] },
  // (?<!\p{L})(shppa|shpca|shpat|shpss)_[a-zA-Z0-9]{32,64}(?![a-zA-Z0-9])
  shopify: { patterns: ["shp(?:pa|ca|at|ss)_[a-zA-Z0-9]{32}"] },
  // (?<!\p{L})(?<type>ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9_]{36}(?![A-Za-z0-9_]) and
  // (?<!\p{L})(?<type>github_pat)_[A-Za-z0-9_]{82}(?![A-Za-z0-9_])
  github: { patterns: ["gh[pousr]_[A-Za-z0-9_]{36}", "github_pat_[A-Za-z0-9_]{82}"] },
  // (?<!\p{L})glpat-[A-Za-z0-9_-]{20,128}(?![A-Za-z0-9_-])
  gitlab: { patterns: ["glpat-[A-Za-z0-9_-]{20}"] },
  // (?<!\p{L})glc_[A-Za-z0-9+/]{32,400}={0,2}(?!...) and (?<!\p{L})glsa_[A-Za-z0-9]{32}_[A-Fa-f0-9]{8}(?!...)
  grafana: { patterns: ["glc_[A-Za-z0-9+/]{32}", "glsa_[A-Za-z0-9]{32}_"] },
  // sk-(?:proj|svcacct|admin)-(?:[A-Za-z0-9_-]{74}|[A-Za-z0-9_-]{58})T3BlbkFJ...|sk-[a-zA-Z0-9]{20}T3BlbkFJ[a-zA-Z0-9]{20}
  openai: { patterns: [String.raw`sk-[\w-]+T3BlbkFJ`] },
  // (?<!\p{L})sk-ant-api0\d-[A-Za-z0-9_-]{90,128}AA(?![A-Za-z0-9_-])
  anthropic: { patterns: [String.raw`sk-ant-api0\d-`] },
  // (?<!\p{L})gsk_[a-zA-Z0-9]{52}(?![a-zA-Z0-9])
  groq: { patterns: ["gsk_[a-zA-Z0-9]{52}"] },
  // (?<!\p{L})hf_[a-zA-Z]{34}(?![a-zA-Z])
  huggingface: { patterns: ["hf_[a-zA-Z]{34}"] },
  // (?<!\p{L})lin_api_[a-zA-Z0-9_]{32,128}(?![a-zA-Z0-9_])
  linear: { patterns: ["lin_api_[a-zA-Z0-9_]{32}"] },
  // (?<!\p{L})ntn_[0-9]{11}[A-Za-z0-9]{35}(?![A-Za-z0-9])
  notion: { patterns: ["ntn_[0-9]{11}"] },
  // (?<!\p{L})ops_(ey[A-Za-z0-9+/=]{100,1280}fQ={0,2})(?![A-Za-z0-9+/=])
  "1password": { patterns: ["ops_ey"] },
  // With the i flag: mongodb(?:\+srv)?:\/\/ , (?:jdbc:)?mysql(?:x)?:\/\/ and postgres(?:ql)?:\/\/ , each followed by
  // (?:(?<username>[^:\/\s]{1,100}):(?<password>[^@\/\s]{1,200})@)? (a match without both is skipped).
  "database-connection-string": {
    patterns: [
      `${anyCase("mongodb")}(?:${anyCase("+srv")})?${URL_CREDENTIALS}`,
      `${anyCase("mysql")}[xX]?${URL_CREDENTIALS}`,
      `${anyCase("postgres")}(?:${anyCase("ql")})?${URL_CREDENTIALS}`,
    ],
  },
  // (?<!\p{L})hvs\.[A-Za-z0-9_-]{90,120}(?!...), hvb\.[A-Za-z0-9_-]{138,300}, hvr\.[A-Za-z0-9_-]{90,120}
  "hashicorp-vault": { patterns: [String.raw`hv[sbr]\.[A-Za-z0-9_-]{90}`] },
  // (?<!\p{L})(?<prefix>vcp|vci|vca|vcr|vck)_[A-Za-z0-9]{20,60}(?![A-Za-z0-9])
  vercel: { patterns: ["vc[piark]_[A-Za-z0-9]{20}"] },
  // (?<!\p{L})dapi[A-Fa-f0-9]{32}(?:-[0-9])?(?![A-Fa-f0-9])
  databricks: { patterns: ["dapi[A-Fa-f0-9]{32}"] },
  // (?<!\p{L})dckr_pat_[a-zA-Z0-9_-]{27}(?![a-zA-Z0-9_-])
  docker: { patterns: ["dckr_pat_[a-zA-Z0-9_-]{27}"] },
  // (?<!\p{L})figd_[A-Za-z0-9_-]{40,200}(?![A-Za-z0-9_-])
  figma: { patterns: ["figd_[A-Za-z0-9_-]{40}"] },
};

/**
 * Triggers of RepoTune's own rules, by rule id, derived from secrets.ts: a change to one of those rules must change
 * its trigger (the tests plant a secret of every kind each rule knows).
 */
export const OWN_TRIGGERS: Readonly<Record<string, Trigger>> = {
  // findAssignedSecrets reports a name whose last word (camelCase and separators split, lower-cased) is a password
  // or key word (each ends with one of the words below; a name may go on with "_", "." or "-"), followed by ASSIGNING
  // /^[ \t]*["']?[ \t]*[:=!]/, the rest of an OPERATOR (":=", "=>", "===", "!==", "==", "!=", "=", ":") and
  // blanks, then a value of at least MIN_PASSWORD (6) characters with no white space: quoted, or, in the files
  // where values need no quotes, a run of /[^\s"'`,;#]/.
  "assigned-secret": {
    patterns: [
      `(?:${["pass", "password", "passwd", "passphrase", "pwd", "secret", "token", "credential", "credentials", "key"].map(anyCase).join("|")})` +
        String.raw`[_.-]*[ \t]*["']?[ \t]*[:=!][=>]{0,2}[ \t]*(?:["'\x60]\S{6}|[^\s"'\x60,;#]{6})`,
    ],
  },
  // \beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{20,}
  jwt: { patterns: [String.raw`eyJ[\w-]{10,}\.eyJ`] },
  // -----BEGIN ([A-Z0-9 ]*)PRIVATE KEY( BLOCK)?-----([\s\S]{40,20000}?)-----END
  "pem-private-key": { patterns: ["-----BEGIN [A-Z0-9 ]*PRIVATE KEY"] },
};

interface Compiled {
  rule: string;
  pattern: RegExp | null;
  byExtension?: Trigger["byExtension"];
}

function compile(triggers: Readonly<Record<string, Trigger>>): Compiled[] {
  return Object.entries(triggers).map(([rule, t]) => ({ rule, pattern: t.patterns.length > 0 ? new RegExp(t.patterns.join("|")) : null, byExtension: t.byExtension }));
}

const fires = (c: Compiled, text: string, ext: string): boolean => (c.pattern?.test(text) ?? false) || (c.byExtension?.(ext, text) ?? false);

const OWN = compile(OWN_TRIGGERS);
const PRESET = compile(PRESET_TRIGGERS);
/** Every preset trigger as one alternation: it matches somewhere exactly when one of them does. */
const PRESET_ANY = new RegExp(Object.values(PRESET_TRIGGERS).flatMap((t) => t.patterns).join("|"));
const PRESET_BY_EXTENSION = PRESET.filter((c) => c.byExtension);

/**
 * The rules (ids as in PRESET_TRIGGERS and OWN_TRIGGERS) that could report something in this text; empty for most
 * files. `ext` is the file's extension as secretlint is given it (".json", or "" for none).
 */
export function triggeredRules(text: string, ext: string): string[] {
  const rules = OWN.filter((c) => fires(c, text, ext)).map((c) => c.rule);
  // One pass rejects the usual file for all of the preset's rules. When it matches, each rule's triggers are tested
  // on their own: an alternation stops at the first alternative that matches at a position, which could hide
  // another rule's match there.
  if (PRESET_ANY.test(text) || PRESET_BY_EXTENSION.some((c) => fires(c, text, ext))) {
    for (const c of PRESET) if (fires(c, text, ext)) rules.push(c.rule);
  }
  return rules;
}
