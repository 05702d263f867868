#!/usr/bin/env bash
# Prepares everything `npm test` needs on a Debian 12 machine, and does nothing when all of it is already there.
# Real VS Code cannot be downloaded offline, so the extension is tested in code-server (VS Code in the browser,
# from npm) driven by Debian's chromium: see shared/notes/offline-vscode-tests.md for why each step is as it is.
#
# Tools too big for the repo (Node 24, code-server: ~800 MB) live in a cache outside it:
#   ${REPOTUNE_TOOLS:-$HOME/.cache/repotune-tools}
# and the layout of that cache is written to tools.json there, which test/lib/tools.mjs reads.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOLS=${REPOTUNE_TOOLS:-$HOME/.cache/repotune-tools}
NODE_MAJOR=24
CODE_SERVER_VERSION=4.139.1
APT_PACKAGES=(python3-torch python3-numpy python3-pytest python3-venv libopenblas0-pthread chromium libkrb5-dev git g++ make)

say() { printf '[setup] %s\n' "$*" >&2; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

# --- Debian packages -------------------------------------------------------------------------------------------
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if ((${#missing[@]})); then
  say "installing Debian packages: ${missing[*]}"
  sudo=()
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || die "these Debian packages are missing and installing them needs root: ${missing[*]}. Run test/setup.sh as root, or install them with apt-get."
    sudo=(sudo)
  fi
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# --- Node 24 and code-server, cached outside the repo ----------------------------------------------------------
command -v npm >/dev/null || die "npm is not on PATH. Install Node.js 20 or newer (with npm) first."
mkdir -p "$TOOLS"
NODE_DIR="$TOOLS/node$NODE_MAJOR"
CS_DIR="$TOOLS/code-server-$CODE_SERVER_VERSION"
NODE_BIN="$NODE_DIR/node_modules/.bin"
CS_BIN="$CS_DIR/node_modules/.bin/code-server"

# The stamp is written last, so an interrupted install is redone from scratch on the next run instead of being
# trusted half-finished. (Installed in place, not moved afterwards: native modules may remember their path.)
install_tool() { # name dir spec [extra env...]
  local name=$1 dir=$2 spec=$3; shift 3
  [ -f "$dir/.installed" ] && [ "$(cat "$dir/.installed")" = "$spec" ] && return 0
  say "installing $spec into $dir (one time)"
  rm -rf "$dir"
  mkdir -p "$dir"
  (env "$@" npm install --prefix "$dir" --no-audit --no-fund --loglevel=error "$spec") \
    || die "installing $name failed (see the npm output above). It needs the npm registry; check the network and run test/setup.sh again."
  echo "$spec" >"$dir/.installed"
}

install_tool node "$NODE_DIR" "node@$NODE_MAJOR"
node_version=$("$NODE_BIN/node" --version) || die "the cached Node at $NODE_BIN/node does not run; delete $NODE_DIR and run test/setup.sh again."
[[ $node_version == v$NODE_MAJOR.* ]] || die "expected Node $NODE_MAJOR in $NODE_DIR, found $node_version; delete $NODE_DIR and run test/setup.sh again."

# code-server's native modules must be built against Node 24's headers (it refuses to load them otherwise),
# hence Node 24 first on PATH and node-gyp pointed at the headers that the node package ships.
NODE_HEADERS=$(ls -d "$NODE_DIR"/node_modules/node/node_modules/node-linux-* 2>/dev/null | head -n1)
[ -n "$NODE_HEADERS" ] || die "no Node headers found under $NODE_DIR/node_modules/node/node_modules; delete $NODE_DIR and run test/setup.sh again."
install_tool code-server "$CS_DIR" "code-server@$CODE_SERVER_VERSION" \
  "PATH=$NODE_BIN:$PATH" "npm_config_nodedir=$NODE_HEADERS"
[ -x "$CS_BIN" ] || die "code-server was installed but $CS_BIN is missing; delete $CS_DIR and run test/setup.sh again."

cat >"$TOOLS/tools.json.tmp" <<EOF
{
  "nodeBin": "$NODE_BIN",
  "nodeVersion": "$node_version",
  "codeServer": "$CS_BIN",
  "codeServerVersion": "$CODE_SERVER_VERSION",
  "chromium": "$(command -v chromium || echo /usr/bin/chromium)"
}
EOF
mv "$TOOLS/tools.json.tmp" "$TOOLS/tools.json"

# --- the project's npm dependencies ----------------------------------------------------------------------------
cd "$ROOT"
STAMP=node_modules/.repotune-lock-sha256
lock_hash=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$lock_hash" ]; then
  # A tree installed before this stamp existed is kept when npm agrees that it matches package.json: wiping a
  # working node_modules would break every other process using it.
  if [ -d node_modules ] && [ ! -f "$STAMP" ] && npm ls --depth=0 >/dev/null 2>&1; then
    say "node_modules matches package.json; recording it"
  else
    say "installing npm dependencies (npm ci)"
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund \
      || die "npm ci failed (see above). Check that package-lock.json matches package.json and that the npm registry is reachable."
  fi
  echo "$lock_hash" >"$STAMP"
fi
say "ready (tools in $TOOLS)"
