#!/usr/bin/env bash
# Everything `npm test` checks, in order, stopping at the first failure. Each stage prints a header and its time.
# Nothing is skipped: a stage whose files are missing fails and says what is missing.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# The Python with PyTorch; the `python3` first on PATH may lack it (shared/notes, brief).
export REPOTUNE_PYTHON=${REPOTUNE_PYTHON:-/usr/bin/python3}
VSIX=test-output/repotune.vsix

START=$SECONDS
CURRENT=""
stage() {
  CURRENT=$1
  STAGE_START=$SECONDS
  printf '\n===== %s (at %ds) =====\n' "$1" $((SECONDS - START))
}
done_stage() { printf '===== %s: ok in %ds =====\n' "$CURRENT" $((SECONDS - STAGE_START)); }
trap 'status=$?; [ $status -ne 0 ] && [ -n "$CURRENT" ] && printf "\n===== %s: FAILED (exit %d) after %ds; total %ds =====\n" "$CURRENT" $status $((SECONDS - STAGE_START)) $((SECONDS - START)) >&2' EXIT

need() { # path what-it-is
  [ -e "$1" ] && return 0
  printf 'Missing %s: %s does not exist.\n' "$2" "$1" >&2
  exit 1
}

stage "setup"
bash test/setup.sh
done_stage

stage "build"
node esbuild.mjs
need dist/extension.js "the extension bundle (node esbuild.mjs)"
need dist/engine.mjs "the engine bundle (node esbuild.mjs)"
need out/test/vscode/suite/index.js "the extension-host suite bundle (test/vscode/suite)"
done_stage

stage "typecheck"
npx tsc -p . --noEmit
done_stage

stage "unit tests"
need out/test/unit "the unit test bundles (test/unit/**/*.test.ts)"
node --test out/test/unit/
done_stage

stage "trainer tests (pytest)"
need trainer/tests "the trainer's tests"
"$REPOTUNE_PYTHON" -m pytest -q trainer/tests
done_stage

stage "parity (PyTorch vs llama.cpp)"
need test/parity/parity.test.mjs "the parity test"
node test/parity/parity.test.mjs
done_stage

# code-server here and in CI; desktop VS Code (@vscode/test-electron) where it can be downloaded.
RUNNER=${REPOTUNE_VSCODE_RUNNER:-code-server}
stage "extension-host tests ($RUNNER)"
VSCODE_RUN=test/vscode/run.mjs
[ "$RUNNER" = electron ] && VSCODE_RUN=test/vscode/run-electron.mjs
node "$VSCODE_RUN"
node "$VSCODE_RUN" --no-folder --tests out/test/vscode/suite/nofolder/index.js
node "$VSCODE_RUN" --untrusted --tests out/test/vscode/suite/untrusted/index.js
done_stage

# Packaged before the UI tests, which install the extension from this VSIX as a user would.
stage "package (vsce)"
mkdir -p test-output
rm -f "$VSIX"
npm run package -- --target linux-x64 --out "$VSIX" </dev/null
need "$VSIX" "the packaged extension"
printf 'packaged %s (%s)\n' "$VSIX" "$(du -h "$VSIX" | cut -f1)"
done_stage

stage "UI tests (code-server + chromium)"
need test/ui "the UI tests"
node --test --test-concurrency=1 test/ui/
done_stage

CURRENT=""
printf '\n===== all stages passed in %ds =====\n' $((SECONDS - START))
