"""The policy's rules by name: what each refuses, why, and what the person can do. The names are
what `--allow RULE` takes and what docs/sandbox.md ("Stack policy") lists."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    refuses: str  # what the rule refuses (docs)
    why: str  # the reason, as the refusal says it


RULES: dict[str, Rule] = {
    "unknown-key": Rule(
        "a service, volume, network or top-level key the policy does not know to be safe",
        "only keys known to be safe are accepted, so a key nobody reviewed is refused",
    ),
    "bind-mount": Rule(
        "a bind mount (or a volume whose driver_opts bind a host path) outside the instance's "
        "worktree and this home's shared data dir",
        "it would expose host files the instance does not own (another worktree, your home)",
    ),
    "docker-socket": Rule(
        "any mount of docker.sock, containerd.sock or podman.sock, even through a symlink",
        "the Docker socket gives full control of the engine",
    ),
    "privileged": Rule("privileged: true", "a privileged container is root on the host"),
    "host-namespace": Rule(
        "network_mode, pid, ipc, uts, userns_mode or cgroup set to host or container:*",
        "it shares the host's (or another container's) namespace",
    ),
    "capabilities": Rule(
        "cap_add beyond the allowlist", "extra capabilities weaken the container's isolation"
    ),
    "devices": Rule(
        "devices, device_cgroup_rules, device reservations beyond the allowlist",
        "it gives the container host devices",
    ),
    "security-opt": Rule(
        "security_opt beyond the allowlist",
        "it can switch off seccomp, AppArmor or SELinux confinement",
    ),
    "sysctls": Rule("sysctls beyond the allowlist", "it changes kernel settings"),
    "published-port": Rule(
        "a published port not among the slot's ports, or not bound to 127.0.0.1",
        "it would take another instance's port or expose the stack beyond this machine",
    ),
    "external-resource": Rule(
        "a network, volume, config or secret with external: true",
        "the instance does not own it (it may be another instance's)",
    ),
    "resource-name": Rule(
        "a network or volume name other than compose's default <project>_<key>",
        "a chosen name can reach another project's network or volume",
    ),
    "container-name": Rule(
        "container_name", "a fixed name collides across instances and can take another's name"
    ),
    "foreign-link": Rule(
        "volumes_from, links or external_links to anything outside the project",
        "it reaches another project's containers or their volumes",
    ),
    "host-file": Rule(
        "configs or secrets with a file outside the worktree; develop.watch paths outside it",
        "it would copy host files the instance does not own into a container",
    ),
    "build-context": Rule(
        "a build context, additional context or Dockerfile outside the worktree",
        "it would copy host files the instance does not own into an image",
    ),
    "owner-label": Rule(
        "ktrdr.* labels other than the instance's own owner labels (and com.docker.compose.*)",
        "a resource labelled as another instance's would be acted on as that instance's",
    ),
}

# Service keys that give a container nothing beyond its own sandbox. Keys with their own rule
# (volumes, ports, cap_add, …) are checked by that rule; every other key is refused.
SAFE_SERVICE_KEYS = frozenset(
    {
        "image", "command", "entrypoint", "environment", "labels", "networks", "expose",
        "depends_on", "restart", "pull_policy", "profiles", "working_dir", "user",
        "healthcheck", "stop_signal", "stop_grace_period", "tty", "stdin_open", "init",
        "hostname", "domainname", "read_only", "tmpfs", "shm_size", "mem_limit",
        "mem_reservation", "memswap_limit", "cpus", "cpu_shares", "pids_limit", "ulimits",
        "extra_hosts", "dns", "dns_search", "platform", "scale", "cap_drop", "configs",
        "secrets", "attach",
    }
)  # fmt: skip
CHECKED_SERVICE_KEYS = frozenset(
    {
        "volumes", "ports", "build", "develop", "deploy", "privileged", "network_mode", "pid",
        "ipc", "uts", "userns_mode", "cgroup", "cap_add", "devices", "device_cgroup_rules",
        "security_opt", "sysctls", "container_name", "volumes_from", "links",
        "external_links",
    }
)  # fmt: skip
SAFE_BUILD_KEYS = frozenset(
    {"context", "dockerfile", "dockerfile_inline", "args", "target", "additional_contexts",
     "pull", "no_cache", "labels", "tags", "platforms", "shm_size"}
)  # fmt: skip
SAFE_DEPLOY_KEYS = frozenset({"replicas", "resources", "restart_policy", "labels"})
SAFE_VOLUME_KEYS = frozenset({"name", "labels", "external", "driver", "driver_opts"})
SAFE_NETWORK_KEYS = frozenset(
    {"name", "labels", "external", "driver", "ipam", "internal", "attachable", "enable_ipv6"}
)
SAFE_TOP_LEVEL_KEYS = frozenset({"name", "services", "volumes", "networks", "configs", "secrets"})
MOUNT_TYPES = frozenset({"bind", "volume", "tmpfs"})

# The allowlists of the rules that take one (empty: nothing is allowed).
ALLOWED_CAPABILITIES: frozenset[str] = frozenset()
ALLOWED_DEVICES: frozenset[str] = frozenset()
ALLOWED_SECURITY_OPT = frozenset({"no-new-privileges", "no-new-privileges:true"})
ALLOWED_SYSCTLS: frozenset[str] = frozenset()

SOCKET_NAMES = ("docker.sock", "containerd.sock", "podman.sock")
OWNER_LABELS = ("ktrdr.owner", "ktrdr.instance", "ktrdr.slot", "ktrdr.owner-home", "ktrdr.checkout")
# Other ktrdr.* labels the stack sets, with any value.
FREE_KTRDR_LABELS = frozenset({"ktrdr.test", "ktrdr.worker-type"})
# Labels a resource may leave empty (older env files write no checkout).
MAY_BE_EMPTY = frozenset({"ktrdr.owner-home", "ktrdr.checkout"})


def unknown_rules(names: frozenset[str] | set[str]) -> list[str]:
    return sorted(set(names) - set(RULES))
