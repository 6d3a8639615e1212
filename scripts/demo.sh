#!/usr/bin/env bash
# `make demo`: from a fresh machine to a running sandbox named `demo`, ending at
# "Startability Gate: PASSED" with its URLs. Idempotent: a second run reuses everything.
#   1. the CLI (make setup)          4. shared data (ktrdr sandbox init-shared)
#   2. a Docker engine (make docker) 5. the instance `demo` (created once, then reused)
#   3. images: upstream when a registry answers, else the offline set (KTRDR_IMAGES=offline)
#   6. ktrdr sandbox up demo  (compose up + the Startability Gate)
set -euo pipefail
cd "$(dirname "$0")/.."

NAME="${KTRDR_DEMO_NAME:-demo}"
PROBE_IMAGE="${KTRDR_REGISTRY_PROBE_IMAGE:-python:3.12-slim}"
PROBE_TIMEOUT="${KTRDR_REGISTRY_PROBE_TIMEOUT:-20}"
KTRDR=.venv/bin/ktrdr
T0=$(date +%s)

say() { echo "demo: $*" >&2; }
die() { echo "Error: $*" >&2; exit 1; }

say "1/6 installing the CLI (make setup)"
# Two demos at once share this checkout's .venv: the second waits for the first's install.
if command -v flock >/dev/null 2>&1; then
  flock "$(git rev-parse --git-common-dir)/ktrdr-setup.lock" make --no-print-directory setup
else
  make --no-print-directory setup
fi

say "2/6 Docker engine + Compose v2 (make docker)"
bash scripts/docker-engine.sh || die "no Docker engine: see the message above, then re-run make demo"

# A registry that refuses (no network) answers at once; one that hangs is cut by the timeout.
if [[ -n "${KTRDR_IMAGES:-}" ]]; then
  say "3/6 images: KTRDR_IMAGES=${KTRDR_IMAGES} (from the environment)"
elif docker image inspect "$PROBE_IMAGE" >/dev/null 2>&1 ||
  timeout "$PROBE_TIMEOUT" docker pull -q "$PROBE_IMAGE" >/dev/null 2>&1; then
  export KTRDR_IMAGES=upstream
  say "3/6 images: a registry is reachable, using the pinned upstream images"
else
  export KTRDR_IMAGES=offline
  say "3/6 images: no registry reachable (docker pull $PROBE_IMAGE failed), building the" \
    "offline image set instead (make images-offline; Grafana and Jaeger are stand-ins)"
  bash scripts/offline-images.sh
fi
export KTRDR_IMAGES

say "4/6 shared data (ktrdr sandbox init-shared)"
"$KTRDR" sandbox init-shared

status=$("$KTRDR" sandbox status "$NAME" --json 2>/dev/null |
  .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["status"])' 2>/dev/null || true)
if [[ "$status" == stale ]]; then
  say "5/6 instance '$NAME' is registered but stale (its directory is gone): pruning it"
  "$KTRDR" sandbox prune
  status=""
fi
if [[ -n "$status" ]]; then
  say "5/6 instance '$NAME' exists ($status): reusing it"
else
  say "5/6 creating instance '$NAME' (a git worktree next to this checkout)"
  if ! "$KTRDR" sandbox create "$NAME"; then
    # Another demo running at the same moment may have created it first: then reuse it.
    "$KTRDR" sandbox status "$NAME" --json >/dev/null 2>&1 ||
      die "could not create instance '$NAME' (see above)"
    say "5/6 instance '$NAME' was created meanwhile (another run): reusing it"
  fi
fi

say "6/6 starting '$NAME' (ktrdr sandbox up)"
"$KTRDR" sandbox up "$NAME"
say "done in $(($(date +%s) - T0))s; next: cd into the instance and run make test-e2e"
