#!/usr/bin/env bash
# Run a command with every core kept busy by a CPU hog, as on a machine where agents build and
# test beside the suite: `bash scripts/under-load.sh CMD...` (`make test-under-load`).
# One busy loop per core (KTRDR_LOAD_HOGS overrides), at the command's own priority, so the
# command gets about half of what it would alone. The hogs are this script's children and are
# killed when it exits, however it exits (the trap runs on errors, ctrl-c and TERM too).
set -euo pipefail

hogs=()
stop_hogs() {
  ((${#hogs[@]})) && kill "${hogs[@]}" 2>/dev/null
  wait "${hogs[@]}" 2>/dev/null || true
}
trap stop_hogs EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

count="${KTRDR_LOAD_HOGS:-$(nproc)}"
for ((i = 0; i < count; i++)); do
  # A shell loop rather than `yes >/dev/null`: pure user CPU, no syscalls, no other tool needed.
  bash -c 'while :; do :; done' &
  hogs+=("$!")
done
echo "under-load: $count busy loop(s) on $(nproc) core(s) (pids ${hogs[*]})" >&2
"$@"
