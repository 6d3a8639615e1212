#!/usr/bin/env bash
# Build every image the stack needs from Debian packages and PyPI, no registry
# (`make images-offline`). `offline-images.sh remote-host` builds only the tests' second Docker host
# (ktrdr-remote-host:dev, scripts/remote-engine.sh) and its Debian base. Each image carries a label with a hash of its build inputs (and of its
# parent image); an image whose label matches is skipped, so a second run takes seconds.
# Names: docker/images-offline.env. Build logs: $LOG_DIR/<image>.log.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBIAN_IMAGE=ktrdr-offline/debian:bookworm
PYTHON_BASE_IMAGE=ktrdr-offline/python-base:bookworm
APP_IMAGE=ktrdr-app:dev
REMOTE_HOST_IMAGE=ktrdr-remote-host:dev
SUITE=bookworm
LOG_DIR="${KTRDR_IMAGES_LOG_DIR:-/tmp/ktrdr-offline-images}"
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
# In the images the host bundle lives where no package (ca-certificates' postinst) rewrites it.
IMAGE_CA_BUNDLE=/usr/local/share/ktrdr/host-ca-bundle.crt
HASH_LABEL=ktrdr.inputs-hash
mkdir -p "$LOG_DIR"
# One build at a time per machine (parallel `make test` runs would race on the same tags).
exec 9>"$LOG_DIR/.lock"
flock 9

say() { echo "offline-images: $*" >&2; }
die() { echo "Error: $*" >&2; exit 1; }
now() { date +%s.%N; }
since() { python3 -c "print(f'{$(now) - $1:.1f}s')"; }

command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1 ||
  die "no Docker engine answers 'docker info'; run 'make docker' (scripts/docker-engine.sh) first"
# Docker's newer clients default to BuildKit, which needs buildx; the classic builder needs nothing.
if ! docker buildx version >/dev/null 2>&1; then export DOCKER_BUILDKIT=0; fi

hash_paths() { # hash of file names + contents under the given paths (caches and bytecode excluded)
  find "$@" -type f ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 | LC_ALL=C sort -z |
    xargs -0 sha256sum | sha256sum | cut -c1-20
}
hash_text() { sha256sum | cut -c1-20; }
image_id() { docker image inspect -f '{{.Id}}' "$1" 2>/dev/null || true; }
image_hash() { docker image inspect -f "{{ index .Config.Labels \"$HASH_LABEL\" }}" "$1" 2>/dev/null || true; }
up_to_date() { [[ "$(image_hash "$1")" == "$2" ]]; }
log_of() { echo "$LOG_DIR/$(echo "$1" | tr '/:' '__').log"; }

# build NAME HASH docker-build-args... : classic `docker build`, output to a log, skipped if current.
build() {
  local name=$1 hash=$2 t0 log
  shift 2
  t0=$(now)
  log=$(log_of "$name")
  if up_to_date "$name" "$hash"; then
    say "$name: up to date ($(since "$t0"))"
    return
  fi
  say "$name: building (log: $log)"
  if ! docker build --label "$HASH_LABEL=$hash" -t "$name" "$@" >"$log" 2>&1; then
    tail -n 25 "$log" >&2
    die "building $name failed; full log: $log"
  fi
  say "$name: built ($(since "$t0"))"
}

# --- Debian base: debootstrap + the host's CA bundle, pip index settings and apt sources ---------
host_is_suite() { [[ -r /etc/os-release ]] && grep -qx "VERSION_CODENAME=$SUITE" /etc/os-release; }

write_base_files() { # into $1: etc/pip.conf, etc/apt/sources.list*, the CA bundle
  local dir=$1
  mkdir -p "$dir/etc/ssl/certs" "$dir/etc/apt/sources.list.d" "$dir${IMAGE_CA_BUNDLE%/*}"
  if [[ -r "$CA_BUNDLE" ]]; then
    cp "$CA_BUNDLE" "$dir$CA_BUNDLE"
    cp "$CA_BUNDLE" "$dir$IMAGE_CA_BUNDLE"
  fi
  if host_is_suite; then
    [[ -f /etc/apt/sources.list ]] && cp /etc/apt/sources.list "$dir/etc/apt/sources.list"
    find /etc/apt/sources.list.d -maxdepth 1 \( -name '*.sources' -o -name '*.list' \) \
      -exec cp {} "$dir/etc/apt/sources.list.d/" \;
  else
    printf 'deb http://deb.debian.org/debian %s main\ndeb http://deb.debian.org/debian-security %s-security main\n' \
      "$SUITE" "$SUITE" >"$dir/etc/apt/sources.list"
  fi
  # The host's pip settings, minus what only exists on the host (local paths, file:// indexes).
  python3 - "$dir/etc/pip.conf" "$IMAGE_CA_BUNDLE" <<'PY'
import configparser, os, sys
from pathlib import Path

out, ca = sys.argv[1], sys.argv[2]
home = Path.home()
files = ["/etc/xdg/pip/pip.conf", "/etc/pip.conf", home / ".pip/pip.conf",
         home / ".config/pip/pip.conf", os.environ.get("PIP_CONFIG_FILE", "")]
cfg = configparser.ConfigParser()
cfg.read([str(f) for f in files if f])
settings = dict(cfg["global"]) if cfg.has_section("global") else {}
for key in ("index-url", "extra-index-url", "trusted-host", "timeout", "default-timeout"):
    env = os.environ.get("PIP_" + key.upper().replace("-", "_"))
    if env:
        settings[key] = env
keep = {"cert": ca}
for key in ("index-url", "extra-index-url"):
    urls = [u for u in settings.get(key, "").split() if u.startswith(("http://", "https://"))]
    if urls:
        keep[key] = " ".join(urls)
for key in ("trusted-host", "timeout"):
    if settings.get(key):
        keep[key] = settings[key]
if settings.get("default-timeout") and "timeout" not in keep:
    keep["timeout"] = settings["default-timeout"]
Path(out).write_text("[global]\n" + "".join(f"{k} = {v}\n" for k, v in keep.items()))
PY
  # Services never start inside image builds (postinst scripts ask policy-rc.d).
  mkdir -p "$dir/usr/sbin"
  printf '#!/bin/sh\nexit 101\n' >"$dir/usr/sbin/policy-rc.d"
  chmod 755 "$dir/usr/sbin/policy-rc.d"
}

build_debian_base() {
  local t0 files hash mirror root
  t0=$(now)
  command -v debootstrap >/dev/null 2>&1 ||
    die "debootstrap is missing; run 'make docker' (it installs it) or apt-get install debootstrap"
  files=$(mktemp -d)
  write_base_files "$files"
  hash=$( (echo "debian-base v2 $SUITE" && cd "$files" && hash_paths .) | hash_text)
  if up_to_date "$DEBIAN_IMAGE" "$hash"; then
    rm -rf "$files"
    say "$DEBIAN_IMAGE: up to date ($(since "$t0"))"
    return
  fi
  mirror=
  if host_is_suite; then # the host's Debian mirror (first http(s) .../debian entry)
    mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.sources \
      /etc/apt/sources.list.d/*.list 2>/dev/null |
      grep -oE '^(URIs:|deb) +https?://[^ ]+/debian/?( |$)' | grep -oE 'https?://[^ ]+' |
      head -1 || true)
  fi
  mirror=${mirror:-http://deb.debian.org/debian}
  root=$(mktemp -d /var/tmp/ktrdr-debootstrap.XXXXXX)
  local log
  log=$(log_of "$DEBIAN_IMAGE")
  say "$DEBIAN_IMAGE: debootstrap --variant=minbase $SUITE from $mirror (log: $log)"
  if ! debootstrap --variant=minbase "$SUITE" "$root" "$mirror" >"$log" 2>&1; then
    tail -n 25 "$log" >&2
    rm -rf "$root" "$files"
    die "debootstrap failed; full log: $log"
  fi
  # The host's sources replace debootstrap's single line (else apt warns about duplicates).
  rm -f "$root/etc/apt/sources.list"
  cp -a "$files/." "$root/"
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$files"
  tar -C "$root" -c . | docker import \
    --change "LABEL $HASH_LABEL=$hash" \
    --change "ENV PIP_CERT=$IMAGE_CA_BUNDLE" \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV DEBIAN_FRONTEND=noninteractive' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' - "$DEBIAN_IMAGE" >>"$log"
  rm -rf "$root"
  say "$DEBIAN_IMAGE: built ($(since "$t0"))"
}

# --- the rest: docker build, hash = build context + parent image id ------------------------------
build_offline() { # build_offline NAME DIR PARENT_ARG PARENT_IMAGE
  local name=$1 dir=$2 arg=$3 parent=$4
  build "$name" "$( (hash_paths "$dir" && image_id "$parent") | hash_text)" \
    --build-arg "$arg=$parent" "$dir"
}

T0=$(now)
case "${1:-all}" in
  all) ;;
  remote-host)
    build_debian_base
    build_offline "$REMOTE_HOST_IMAGE" docker/offline/remote-host DEBIAN_IMAGE "$DEBIAN_IMAGE"
    docker image prune -f --filter "label=$HASH_LABEL" >/dev/null
    say "$REMOTE_HOST_IMAGE ready ($(since "$T0") total)"
    exit 0
    ;;
  *) die "unknown argument '$1'; usage: offline-images.sh [remote-host]" ;;
esac
build_debian_base
build_offline ktrdr-offline/postgres:15 docker/offline/postgres DEBIAN_IMAGE "$DEBIAN_IMAGE"
build_offline "$PYTHON_BASE_IMAGE" docker/offline/python-base DEBIAN_IMAGE "$DEBIAN_IMAGE"
build_offline ktrdr-offline/prometheus:2 docker/offline/prometheus DEBIAN_IMAGE "$DEBIAN_IMAGE"
build_offline ktrdr-offline/grafana-standin:1 docker/offline/grafana-standin \
  PYTHON_BASE_IMAGE "$PYTHON_BASE_IMAGE"
build_offline ktrdr-offline/jaeger-standin:1 docker/offline/jaeger-standin \
  PYTHON_BASE_IMAGE "$PYTHON_BASE_IMAGE"
build "$APP_IMAGE" \
  "$( (hash_paths Dockerfile .dockerignore pyproject.toml ktrdr tests &&
    image_id "$PYTHON_BASE_IMAGE") | hash_text)" \
  --build-arg "BASE_IMAGE=$PYTHON_BASE_IMAGE" .
# Replaced images of ours that no tag points at any more.
docker image prune -f --filter "label=$HASH_LABEL" >/dev/null
say "all offline images ready ($(since "$T0") total)"
