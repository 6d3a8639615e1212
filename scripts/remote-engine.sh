#!/usr/bin/env bash
# A second Docker engine for the tests that is really another host, reached only over SSH.
#
#   remote-engine.sh up [--id ID] [--no-images] [--no-cache]   prints the context name (stdout)
#   remote-engine.sh down ID|CONTEXT          remove it: container, network, volume, context, key
#   remote-engine.sh address|drop-ssh|block-ssh|unblock-ssh ID|CONTEXT
#   remote-engine.sh exec ID|CONTEXT CMD...   run CMD on the remote host (docker exec, not SSH)
#   remote-engine.sh sweep                    remove stale ones (dead owner, or older than max age)
#   remote-engine.sh purge-cache              remove the kept image cache volume
#
# The remote is a container of ktrdr-remote-host:dev (`offline-images.sh remote-host`) on its own
# labelled bridge network (own network namespace and address, no published port), with its own
# root filesystem (it cannot see /work) and dockerd + sshd inside; the client reaches it through
# `docker context create ktrdr-remote-ID --docker host=ssh://ktrdr-remote-ID`, resolved by
# /etc/ssh/ssh_config.d/ktrdr-remote-ID.conf (fresh ed25519 key in a temp dir; ~/.ssh untouched).
# Everything carries the label ktrdr.test-remote-engine=ID. Root only (writes /etc/ssh).
# The stack's images (docker/images-offline.env) are loaded into the remote engine. Its data root
# is one kept volume (label ktrdr.test-remote-engine-cache) when no other remote uses it, so the
# next `up` only loads changed images; emptied of containers, volumes and networks at up and down.
# Exit status 3: this machine cannot run such a host (the tests skip, or fail when CI is set).
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=ktrdr-remote-host:dev
LABEL=ktrdr.test-remote-engine
OWNER_LABEL=ktrdr.test-remote-engine.owner
KEYDIR_LABEL=ktrdr.test-remote-engine.keydir
CACHE_LABEL=ktrdr.test-remote-engine-cache
CACHE_VOLUME=ktrdr-remote-engine-cache
PREFIX=ktrdr-remote-
SSH_CONFIG_DIR=/etc/ssh/ssh_config.d
LOCK=/run/lock/ktrdr-remote-engine.lock
MAX_AGE=${KTRDR_REMOTE_ENGINE_MAX_AGE:-43200}  # seconds; older remotes of dead runs are stale
READY_WAIT=${KTRDR_REMOTE_ENGINE_WAIT:-90}
# Capabilities Docker 20.10 grants with --privileged, by bit number.
CAPS=(CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP LINUX_IMMUTABLE
  NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER SYS_MODULE SYS_RAWIO
  SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG
  MKNOD LEASE AUDIT_WRITE AUDIT_CONTROL SETFCAP MAC_OVERRIDE MAC_ADMIN SYSLOG WAKE_ALARM
  BLOCK_SUSPEND AUDIT_READ)

say() { echo "remote-engine: $*" >&2; }
die() { echo "Error: $*" >&2; exit 1; }
cannot() { echo "Error: $*" >&2; exit 3; }  # this machine cannot host a remote engine
now() { date +%s.%N; }
since() { python3 -c "print(f'{$(now) - $1:.1f}s')"; }

name_of() { # ID or ktrdr-remote-ID -> ktrdr-remote-ID
  local id=${1#"$PREFIX"}
  [[ "$id" =~ ^[a-z0-9][a-z0-9-]{0,30}$ ]] || die "bad remote engine id '$1' (a-z, 0-9, -)"
  echo "$PREFIX$id"
}
running() { [[ "$(docker inspect -f '{{.State.Running}}' "$1" 2>/dev/null)" == true ]]; }
inner() { docker exec "$1" docker "${@:2}"; } # the remote's own docker CLI, not over SSH
address_of() {
  docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$1" 2>/dev/null
}

# --- how to run a privileged container here ---------------------------------------------------
# --privileged asks for every capability; an engine whose own bounding set lacks one (some VMs
# drop CAP_SYS_RESOURCE) refuses it. Then: every capability it has, no seccomp/AppArmor, unmasked
# /proc; the entrypoint remounts /sys and the cgroup hierarchies writable.
privilege_args() {
  local pid bnd missing=() bit
  pid=$(pidof dockerd 2>/dev/null | cut -d' ' -f1 || true)
  bnd=$(awk '/^CapBnd/ {print $2}' "/proc/${pid:-self}/status" 2>/dev/null || true)
  bnd=${bnd:-3fffffffff}
  for bit in "${!CAPS[@]}"; do
    (((0x$bnd >> bit) & 1)) || missing+=("--cap-drop" "${CAPS[$bit]}")
  done
  if ((${#missing[@]} == 0)); then
    echo --privileged
  else
    echo --cap-add ALL "${missing[@]}" --security-opt seccomp=unconfined \
      --security-opt apparmor=unconfined --security-opt systempaths=unconfined --cgroupns private
  fi
}

# --- stale remotes ----------------------------------------------------------------------------
owner_alive() { # "pid:starttime" of the process that owns a remote (empty: none recorded)
  local owner=$1 pid start
  [[ -n "$owner" ]] || return 1
  pid=${owner%%:*} start=${owner#*:}
  [[ -r "/proc/$pid/stat" ]] && [[ "$(cut -d' ' -f22 "/proc/$pid/stat")" == "$start" ]]
}

sweep() { # remove remotes whose owner is dead, or without owner and older than MAX_AGE
  local name owner created age
  for name in $(docker ps -a --filter "label=$LABEL" --format '{{.Names}}'); do
    read -r owner created < <(docker inspect -f \
      "{{or (index .Config.Labels \"$OWNER_LABEL\") \"-\"}} {{.Created}}" "$name" 2>/dev/null) ||
      continue
    [[ "$owner" == - ]] && owner=
    age=$(($(date +%s) - $(date -d "$created" +%s)))
    owner_alive "$owner" && continue
    if [[ -n "$owner" ]] || ((age > MAX_AGE)); then
      say "removing stale $name (owner ${owner:-none}, ${age}s old)"
      down "$name" || true
    fi
  done
  # Halves left by a run killed between steps: a context or ssh config (older than 10 minutes,
  # so not one an `up` is writing now) whose container is gone.
  for name in $( (docker context ls -q 2>/dev/null | grep "^$PREFIX" || true) &&
    find "$SSH_CONFIG_DIR" -maxdepth 1 -name "$PREFIX*.conf" -printf '%f\n' 2>/dev/null |
    sed 's/\.conf$//' | sort -u); do
    docker container inspect "$name" >/dev/null 2>&1 && continue
    [[ -n "$(find "$SSH_CONFIG_DIR/$name.conf" -mmin -10 2>/dev/null)" ]] && continue
    say "removing stale context and ssh config $name"
    docker context rm -f "$name" >/dev/null 2>&1 || true
    rm -f "$SSH_CONFIG_DIR/$name.conf"
  done
  local kind field created
  for kind in network volume; do
    field=.CreatedAt && [[ "$kind" == network ]] && field=.Created
    for name in $(docker "$kind" ls -q --filter "label=$LABEL"); do
      docker container inspect "$name" >/dev/null 2>&1 && continue
      [[ -n "$(docker ps -aq --filter "$kind=$name")" ]] && continue
      created=$(docker "$kind" inspect -f "{{$field}}" "$name" 2>/dev/null) || continue
      (($(date +%s) - $(date -d "${created% UTC}" +%s) > 600)) || continue
      say "removing stale $kind $name"
      docker "$kind" rm "$name" >/dev/null 2>&1 || true
    done
  done
}

# --- up ---------------------------------------------------------------------------------------
start_container() { # NAME VOLUME PUBKEY OWNER KEYDIR
  local name=$1 volume=$2
  # shellcheck disable=SC2046
  docker run -d --name "$name" --hostname "$name" --init \
    --label "$LABEL=${name#"$PREFIX"}" --label "$OWNER_LABEL=$4" --label "$KEYDIR_LABEL=$5" \
    --network "$name" -v "$volume:/var/lib/docker" \
    -e "KTRDR_REMOTE_AUTHORIZED_KEY=$3" $(privilege_args) "$IMAGE" >/dev/null
}

# CACHE NAME PUBKEY OWNER KEYDIR: the container up and its dockerd answering; prints its volume.
# Status 3: the engine refused the container; 1: dockerd inside did not start.
start_remote() {
  local cache=$1 name=$2 volume=$2
  { exec 9>"$LOCK"; } 2>/dev/null || exec 9>"/tmp/${LOCK##*/}"
  flock 9 # the kept data root goes to one remote at a time
  if ((cache)) && [[ -z "$(docker ps -aq --filter "volume=$CACHE_VOLUME")" ]]; then
    volume=$CACHE_VOLUME
    docker volume create --label "$CACHE_LABEL=1" "$volume" >/dev/null
  else
    docker volume create --label "$LABEL=${name#"$PREFIX"}" "$volume" >/dev/null
  fi
  start_container "$name" "$volume" "${@:3}" || return 3 # the engine refused (stderr above)
  exec 9>&-
  wait_ready "$name" || return 1
  echo "$volume"
}

wait_ready() { # NAME: the remote's dockerd answers
  local name=$1 deadline=$(($(date +%s) + READY_WAIT))
  until inner "$name" info >/dev/null 2>&1; do
    if ! running "$name" || (($(date +%s) >= deadline)); then
      docker logs --tail 15 "$name" >&2 2>&1 || true
      return 1
    fi
    sleep 0.3
  done
}

empty_engine() { # NAME: no containers, volumes or networks of earlier runs (images stay)
  local ids
  ids=$(inner "$1" ps -aq)
  [[ -z "$ids" ]] || inner "$1" rm -f -v $ids >/dev/null
  inner "$1" volume prune -f >/dev/null
  inner "$1" network prune -f >/dev/null
}

write_ssh_config() { # NAME ADDRESS KEY
  cat >"$SSH_CONFIG_DIR/$1.conf.tmp" <<EOF
# Written by ktrdr scripts/remote-engine.sh for a test engine; removed by its \`down\`.
Host $1
  HostName $2
  User root
  IdentityFile $3
  IdentitiesOnly yes
  StrictHostKeyChecking no
  UserKnownHostsFile /dev/null
  LogLevel ERROR
  ConnectTimeout 10
  ServerAliveInterval 5
  ServerAliveCountMax 3
EOF
  mv "$SSH_CONFIG_DIR/$1.conf.tmp" "$SSH_CONFIG_DIR/$1.conf"
  [[ "$(ssh -G "$1" | awk '/^hostname / {print $2}')" == "$2" ]] ||
    cannot "ssh does not read $SSH_CONFIG_DIR/*.conf (no 'Include' in /etc/ssh/ssh_config)"
}

load_images() { # NAME: the images KTRDR_IMAGES=offline uses, those the remote lacks or has older
  local name=$1 image local_id todo=() t0
  t0=$(now)
  for image in $(sed -nE 's/^KTRDR_[A-Z_]+_IMAGE=(.+)$/\1/p' docker/images-offline.env); do
    local_id=$(docker image inspect -f '{{.Id}}' "$image" 2>/dev/null) ||
      cannot "image $image is missing here; run 'make images-offline' (or up --no-images)"
    [[ "$(inner "$name" image inspect -f '{{.Id}}' "$image" 2>/dev/null)" == "$local_id" ]] ||
      todo+=("$image")
  done
  if ((${#todo[@]} == 0)); then
    say "images: all present on the remote ($(since "$t0"))"
    return
  fi
  say "images: loading ${todo[*]}"
  docker save "${todo[@]}" | docker exec -i "$name" docker load -q >/dev/null
  inner "$name" image prune -f >/dev/null
  say "images: loaded ${#todo[@]} ($(since "$t0"))"
}

up() {
  local id="" images=1 cache=1 name keydir volume owner t0 address
  while (($#)); do
    case $1 in
      --id) id=$2; shift 2 ;;
      --no-images) images=0; shift ;;
      --no-cache) cache=0; shift ;;
      *) die "unknown option '$1' for up" ;;
    esac
  done
  t0=$(now)
  [[ "$(id -u)" == 0 ]] || cannot "remote-engine.sh needs root (it writes $SSH_CONFIG_DIR)"
  command -v ssh >/dev/null 2>&1 || cannot "no ssh client; apt-get install openssh-client"
  [[ -d "$SSH_CONFIG_DIR" ]] || cannot "$SSH_CONFIG_DIR is missing (not Debian's openssh-client?)"
  docker info >/dev/null 2>&1 || cannot "no Docker engine answers; run 'make docker'"
  name=$(name_of "${id:-$(head -c4 /dev/urandom | od -An -tx1 | tr -d ' \n')}")
  docker inspect "$name" >/dev/null 2>&1 && die "$name already exists ('$0 down $name' first)"
  sweep
  # A failure (or Ctrl-C) from here on removes what this `up` made so far.
  trap 'down "$name" >/dev/null 2>&1' EXIT
  bash scripts/offline-images.sh remote-host
  # Owner: the process that asked (pytest sets KTRDR_REMOTE_ENGINE_OWNER_PID); gone = stale.
  local opid=${KTRDR_REMOTE_ENGINE_OWNER_PID:-}
  owner=""
  [[ -n "$opid" && -r "/proc/$opid/stat" ]] && owner="$opid:$(cut -d' ' -f22 "/proc/$opid/stat")"
  keydir=$(mktemp -d "${TMPDIR:-/tmp}/$name.XXXXXX")
  trap 'down "$name" >/dev/null 2>&1; rm -rf "$keydir"' EXIT
  ssh-keygen -q -t ed25519 -N '' -C "$name" -f "$keydir/id_ed25519"
  docker network create --label "$LABEL=${name#"$PREFIX"}" "$name" >/dev/null
  set -- "$name" "$(cat "$keydir/id_ed25519.pub")" "$owner" "$keydir"
  local rc=0
  volume=$(start_remote "$cache" "$@") || rc=$?
  if ((rc == 1 && cache)); then # a kept data root dockerd cannot use: drop it, once
    say "dockerd did not start on the kept data root $CACHE_VOLUME; removing it, starting afresh"
    docker rm -f "$name" >/dev/null 2>&1
    docker volume rm -f "$CACHE_VOLUME" >/dev/null 2>&1 || true
    rc=0 && volume=$(start_remote 0 "$@") || rc=$?
  fi
  case $rc in
    0) ;;
    3) cannot "the local engine refused to run $IMAGE (its error is above)" ;;
    *) cannot "dockerd inside $name did not start (log above); are privileged containers usable?" ;;
  esac
  say "$name: dockerd up on $volume ($(since "$t0"))"
  empty_engine "$name"
  address=$(address_of "$name")
  write_ssh_config "$name" "$address" "$keydir/id_ed25519"
  docker context rm -f "$name" >/dev/null 2>&1 || true
  docker context create "$name" --description "ktrdr test remote engine" \
    --docker "host=ssh://$name" >/dev/null 2>"$keydir/context.err" ||
    die "docker context create $name failed: $(cat "$keydir/context.err")"
  docker --context "$name" info >/dev/null || die "docker --context $name info failed over SSH"
  ((images)) && load_images "$name"
  trap - EXIT
  say "$name: ready at $address, context $name ($(since "$t0") total)"
  echo "$name"
}

# --- down and the hooks -----------------------------------------------------------------------
down() {
  local name keydir
  name=$(name_of "$1")
  keydir=$(docker inspect -f "{{index .Config.Labels \"$KEYDIR_LABEL\"}}" "$name" 2>/dev/null) || true
  docker context rm -f "$name" >/dev/null 2>&1 || true
  rm -f "$SSH_CONFIG_DIR/$name.conf" "$SSH_CONFIG_DIR/$name.conf.tmp"
  if running "$name"; then
    empty_engine "$name" 2>/dev/null || true
    docker stop -t 20 "$name" >/dev/null 2>&1 || true # dockerd shuts down cleanly (kept volume)
  fi
  docker rm -f "$name" >/dev/null 2>&1 || true
  docker volume rm -f "$name" >/dev/null 2>&1 || true
  docker network rm "$name" >/dev/null 2>&1 || true
  [[ "$keydir" == */"$name".* && -d "$keydir" ]] && rm -rf "$keydir"
  say "$name: removed"
}

block_rule() { echo INPUT -p tcp --dport 22 -m comment --comment ktrdr-block-ssh -j DROP; }

main() {
  local cmd=${1:-}
  shift || true
  case $cmd in
    up) up "$@" ;;
    down) down "${1:?usage: down ID}" ;;
    sweep) sweep ;;
    purge-cache)
      [[ -z "$(docker ps -aq --filter "volume=$CACHE_VOLUME")" ]] ||
        die "$CACHE_VOLUME is in use by a running remote engine; 'down' it first"
      docker volume rm -f "$CACHE_VOLUME" >/dev/null && say "$CACHE_VOLUME removed" ;;
    address) address_of "$(name_of "${1:?usage: address ID}")" ;;
    exec) docker exec -i "$(name_of "${1:?usage: exec ID CMD...}")" "${@:2}" ;;
    drop-ssh) # end every SSH connection (sshd's per-connection children); the listener stays
      docker exec "$(name_of "${1:?usage: drop-ssh ID}")" \
        sh -c 'pkill -KILL -P "$(cat /run/sshd.pid)" || true' ;;
    block-ssh) # drop every packet to port 22 (open connections hang, new ones time out)
      docker exec "$(name_of "${1:?usage: block-ssh ID}")" iptables -I $(block_rule) ;;
    unblock-ssh)
      docker exec "$(name_of "${1:?usage: unblock-ssh ID}")" \
        sh -c "while iptables -D $(block_rule) 2>/dev/null; do :; done" ;;
    *) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
  esac
}

main "$@"
