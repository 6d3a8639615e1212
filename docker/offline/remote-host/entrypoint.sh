#!/bin/sh
# Start sshd (key from $KTRDR_REMOTE_AUTHORIZED_KEY) and run dockerd in the foreground.
set -eu
# Without --privileged (an engine that may not grant every capability) /sys and the cgroup
# hierarchies come read-only; dockerd needs them writable (CAP_SYS_ADMIN allows the remount).
if grep -q ' /sys sysfs ro,' /proc/mounts; then mount -o remount,rw /sys; fi
grep ' cgroup ro,' /proc/mounts | cut -d' ' -f2 | while read -r dir; do
  mount -o remount,bind,rw "$dir"
done
ssh-keygen -A >/dev/null
if [ -n "${KTRDR_REMOTE_AUTHORIZED_KEY:-}" ]; then
  printf '%s\n' "$KTRDR_REMOTE_AUTHORIZED_KEY" >/root/.ssh/authorized_keys
  chmod 600 /root/.ssh/authorized_keys
fi
# A kept data root may hold a stale pid file from a killed container.
rm -f /var/run/docker.pid
/usr/sbin/sshd -E /var/log/sshd.log
exec dockerd --host=unix:///var/run/docker.sock
