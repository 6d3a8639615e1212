#!/usr/bin/env bash
# The README's two set-up commands: `bash scripts/bootstrap.sh demo` and `... test`.
# A fresh Debian/Ubuntu machine may lack `make`, the venv module, or (Ubuntu 22.04) a Python
# >= 3.11: install what is missing with apt (as root), then hand over to `make TARGET`.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "bootstrap: $*" >&2; }
die() { echo "Error: $*" >&2; exit 1; }

[[ $# -ge 1 ]] || { echo "Error: usage: bash scripts/bootstrap.sh demo|test|<make target>" >&2; exit 2; }

apt_install() {
  [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null ||
    die "missing: $*; install it (Debian/Ubuntu: sudo apt-get install $*) and retry"
  say "installing $* (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  if [[ -z ${APT_UPDATED:-} ]]; then
    apt-get update -qq || die "apt-get update failed: check the network/proxy and retry"
    APT_UPDATED=1
  fi
  apt-get install -y -qq "$@" >/dev/null || die "apt-get install $* failed (see above)"
}

python_ok() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; }

pick_python() {
  local candidate
  for candidate in "${PYTHON:-}" python3 python3.13 python3.12 python3.11; do
    if [[ -n $candidate ]] && command -v "$candidate" >/dev/null && python_ok "$candidate"; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

command -v make >/dev/null || apt_install make
command -v git >/dev/null || apt_install git

if ! PYTHON=$(pick_python); then
  # Ubuntu 22.04 ships 3.10; its python3.11 package is the supported way up.
  apt_install python3.11 python3.11-venv
  PYTHON=$(pick_python) || die "no Python >= 3.11 found after installing python3.11"
fi
if ! "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null; then
  version=$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
  apt_install "python${version}-venv"
fi

say "make $* (Python: $("$PYTHON" --version 2>&1))"
exec make --no-print-directory PYTHON="$PYTHON" "$@"
