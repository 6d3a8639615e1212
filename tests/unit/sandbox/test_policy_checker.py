"""The stack policy's pure checker: one resolved model in (shaped like `docker compose config
--format json` prints it), violations out. Host paths are real directories and symlinks in
tmp_path, resolved by the checker's own realpath."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ktrdr.cli.sandbox.policy.checker import StackFacts, Violation, check, overridden
from ktrdr.cli.sandbox.policy.rules import RULES
from ktrdr.cli.sandbox.slots.ports import ports_for_slot

PROJECT = "ktrdr--feat-a-c0ffee42"
OWNER_LABELS = {
    "ktrdr.owner": "c0ffee42",
    "ktrdr.instance": "ktrdr--feat-a",
    "ktrdr.slot": "4",
    "ktrdr.owner-home": "/home/dev/.ktrdr",
    "ktrdr.checkout": "/work/ktrdr--feat-a",
}


@pytest.fixture
def facts(tmp_path: Path) -> StackFacts:
    worktree = tmp_path / "ktrdr--feat-a"
    (worktree / "ktrdr").mkdir(parents=True)
    shared = tmp_path / "home" / "shared"
    (shared / "data").mkdir(parents=True)
    (tmp_path / "other-worktree").mkdir()
    return StackFacts(
        worktree=worktree,
        shared_dir=shared,
        ports=frozenset(ports_for_slot(4).all_ports().values()),
        project=PROJECT,
        labels={**OWNER_LABELS, "ktrdr.checkout": str(worktree)},
    )


def model(service: dict[str, Any] | None = None, **top: Any) -> dict[str, Any]:
    """A resolved model with one service `app` (plus what `top` adds or replaces)."""
    app = {"image": "ktrdr-app:dev", "networks": {"default": None}, **(service or {})}
    return {
        "name": PROJECT,
        "services": {"app": app},
        "networks": {"default": {"name": f"{PROJECT}_default", "ipam": {}}},
        **top,
    }


def bind(source: Path | str, target: str = "/mnt") -> dict[str, Any]:
    return {"type": "bind", "source": str(source), "target": target, "bind": {}}


def rules(found: list[Violation]) -> list[str]:
    return [v.rule for v in found]


def test_a_plain_service_passes(facts: StackFacts) -> None:
    assert check(model(), facts) == []


# --- unknown keys (the allowlist) ---------------------------------------------------------------
def test_a_service_key_nobody_reviewed_is_refused(facts: StackFacts) -> None:
    found = check(model({"runtime": "runc", "group_add": ["docker"]}), facts)
    assert [(v.key, v.rule) for v in found] == [
        ("runtime", "unknown-key"),
        ("group_add", "unknown-key"),
    ]


def test_an_unknown_top_level_key_is_refused_and_x_extensions_are_not(facts: StackFacts) -> None:
    found = check(model(**{"x-app": {"any": 1}, "models": {}}), facts)
    assert [(v.kind, v.key, v.rule) for v in found] == [("stack", "models", "unknown-key")]


def test_a_build_ssh_forward_is_an_unknown_build_key(facts: StackFacts) -> None:
    build = {"context": str(facts.worktree), "ssh": ["default"]}
    assert [(v.key, v.rule) for v in check(model({"build": build}), facts)] == [
        ("build.ssh", "unknown-key")
    ]


def test_env_file_is_refused_because_compose_reads_it_from_the_host(facts: StackFacts) -> None:
    found = check(model({"env_file": [{"path": "/work/other/.env.sandbox"}]}), facts)
    assert rules(found) == ["unknown-key"]


# --- bind mounts --------------------------------------------------------------------------------
def test_binds_inside_the_worktree_the_worktree_itself_and_the_shared_dir_pass(
    facts: StackFacts,
) -> None:
    mounts = [
        bind(facts.worktree / "ktrdr", "/app/ktrdr"),
        bind(facts.worktree, "/src"),
        bind(facts.shared_dir / "data", "/shared/data"),
        {"type": "volume", "source": "db-data", "target": "/var/lib/postgresql/data"},
        {"type": "tmpfs", "target": "/tmp"},
    ]
    assert check(model({"volumes": mounts}), facts) == []


def test_a_bind_of_another_worktree_is_refused(facts: StackFacts, tmp_path: Path) -> None:
    found = check(model({"volumes": [bind(tmp_path / "other-worktree", "/p")]}), facts)
    assert found == [
        Violation("service", "app", "volumes", str(tmp_path / "other-worktree"), "bind-mount")
    ]


def test_a_bind_that_climbs_out_with_dotdot_is_refused(facts: StackFacts) -> None:
    source = f"{facts.worktree}/ktrdr/../../other-worktree"
    assert rules(check(model({"volumes": [bind(source)]}), facts)) == ["bind-mount"]


def test_a_symlink_in_the_worktree_pointing_outside_is_refused(
    facts: StackFacts, tmp_path: Path
) -> None:
    link = facts.worktree / "innocent"
    link.symlink_to(tmp_path / "other-worktree")
    assert rules(check(model({"volumes": [bind(link)]}), facts)) == ["bind-mount"]


def test_a_directory_whose_name_starts_like_the_worktree_is_outside(
    facts: StackFacts, tmp_path: Path
) -> None:
    sibling = tmp_path / "ktrdr--feat-a-evil"
    sibling.mkdir()
    assert rules(check(model({"volumes": [bind(sibling)]}), facts)) == ["bind-mount"]


def test_a_volume_whose_driver_opts_bind_a_host_path_is_refused(
    facts: StackFacts, tmp_path: Path
) -> None:
    volumes = {
        "loot": {
            "name": f"{PROJECT}_loot",
            "driver_opts": {"type": "none", "o": "bind", "device": str(tmp_path)},
        },
        "own": {
            "name": f"{PROJECT}_own",
            "driver_opts": {"type": "none", "o": "bind", "device": str(facts.worktree)},
        },
    }
    found = check(model(volumes=volumes), facts)
    assert [(v.kind, v.name, v.key, v.rule) for v in found] == [
        ("volume", "loot", "driver_opts.device", "bind-mount")
    ]


def test_an_unknown_mount_type_is_refused(facts: StackFacts) -> None:
    mount = {"type": "npipe", "source": r"\\.\pipe\docker_engine", "target": "/p"}
    assert rules(check(model({"volumes": [mount]}), facts)) == ["unknown-key"]


# --- the Docker socket --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "source", ["/var/run/docker.sock", "/run/containerd/containerd.sock", "/run/podman.sock"]
)
def test_an_engine_socket_is_refused_by_its_own_rule(facts: StackFacts, source: str) -> None:
    found = check(model({"volumes": [bind(source, "/var/run/docker.sock")]}), facts)
    assert rules(found) == ["docker-socket"]  # one violation: not also bind-mount


def test_a_symlink_to_the_socket_inside_the_worktree_is_still_the_socket(
    facts: StackFacts, tmp_path: Path
) -> None:
    socket_file = tmp_path / "run" / "docker.sock"
    socket_file.parent.mkdir()
    socket_file.write_text("")  # stands for the engine's socket: only its name matters
    link = facts.worktree / "cache"
    link.symlink_to(socket_file)
    assert rules(check(model({"volumes": [bind(link)]}), facts)) == ["docker-socket"]


def test_a_socket_named_file_inside_the_worktree_is_refused_too(facts: StackFacts) -> None:
    source = facts.worktree / "docker.sock"
    assert rules(check(model({"volumes": [bind(source)]}), facts)) == ["docker-socket"]


# --- privileges, namespaces, capabilities -------------------------------------------------------
def test_privileged_is_refused_and_privileged_false_is_not(facts: StackFacts) -> None:
    assert rules(check(model({"privileged": True}), facts)) == ["privileged"]
    assert check(model({"privileged": False}), facts) == []


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("network_mode", "host"),
        ("network_mode", "container:someone-elses-db"),
        ("network_mode", "bridge"),
        ("network_mode", "service:not-in-this-project"),
        ("pid", "host"),
        ("pid", "container:abc"),
        ("ipc", "host"),
        ("uts", "host"),
        ("userns_mode", "host"),
        ("cgroup", "host"),
    ],
)
def test_host_and_foreign_namespaces_are_refused(facts: StackFacts, key: str, value: str) -> None:
    found = check(model({key: value}), facts)
    assert [(v.key, v.value, v.rule) for v in found] == [(key, value, "host-namespace")]


@pytest.mark.parametrize(
    ("key", "value"),
    [("network_mode", "none"), ("network_mode", "service:app"), ("ipc", "private")],
)
def test_namespaces_inside_the_project_pass(facts: StackFacts, key: str, value: str) -> None:
    assert check(model({key: value}), facts) == []


def test_added_capabilities_are_refused_and_dropped_ones_are_not(facts: StackFacts) -> None:
    found = check(model({"cap_add": ["SYS_ADMIN"], "cap_drop": ["ALL"]}), facts)
    assert [(v.key, v.value, v.rule) for v in found] == [("cap_add", "SYS_ADMIN", "capabilities")]


def test_devices_and_device_rules_and_reservations_are_refused(facts: StackFacts) -> None:
    service = {
        "devices": [{"source": "/dev/sda", "target": "/dev/sda", "permissions": "rwm"}],
        "device_cgroup_rules": ["a *:* rwm"],
        "deploy": {"resources": {"reservations": {"devices": [{"capabilities": ["gpu"]}]}}},
    }
    found = check(model(service), facts)
    assert [(v.key, v.rule) for v in found] == [
        ("devices", "devices"),
        ("device_cgroup_rules", "devices"),
        ("deploy.resources.reservations.devices", "devices"),
    ]
    assert found[0].value == "/dev/sda:/dev/sda:rwm"


def test_security_opt_beyond_no_new_privileges_is_refused(facts: StackFacts) -> None:
    service = {"security_opt": ["no-new-privileges:true", "seccomp:unconfined"]}
    found = check(model(service), facts)
    assert [(v.value, v.rule) for v in found] == [("seccomp:unconfined", "security-opt")]


def test_sysctls_are_refused(facts: StackFacts) -> None:
    found = check(model({"sysctls": {"kernel.shm_rmid_forced": "1"}}), facts)
    assert [(v.value, v.rule) for v in found] == [("kernel.shm_rmid_forced=1", "sysctls")]


# --- published ports ----------------------------------------------------------------------------
def port(published: str | None, host_ip: str | None = "127.0.0.1") -> dict[str, Any]:
    spec: dict[str, Any] = {"mode": "ingress", "target": 8000, "protocol": "tcp"}
    if host_ip is not None:
        spec["host_ip"] = host_ip
    if published is not None:
        spec["published"] = published
    return spec


def test_a_slot_port_on_loopback_passes(facts: StackFacts) -> None:
    p = ports_for_slot(4)
    assert check(model({"ports": [port(str(p.api)), port(str(p.worker_base + 9))]}), facts) == []


@pytest.mark.parametrize(
    ("published", "host_ip"),
    [
        ("8003", "127.0.0.1"),  # slot 3's API port: another instance's
        (str(8004), "0.0.0.0"),
        (str(8004), None),  # no host_ip: every address
        (str(8004), ""),
        (None, "127.0.0.1"),  # any free port the engine picks
        ("8004-8005", "127.0.0.1"),
    ],
)
def test_a_port_off_the_slot_or_off_loopback_is_refused(
    facts: StackFacts, published: str | None, host_ip: str | None
) -> None:
    assert rules(check(model({"ports": [port(published, host_ip)]}), facts)) == ["published-port"]


def test_expose_publishes_nothing_and_passes(facts: StackFacts) -> None:
    assert check(model({"expose": ["9000"]}), facts) == []


# --- resources the instance does not own --------------------------------------------------------
def test_external_networks_and_volumes_are_refused(facts: StackFacts) -> None:
    found = check(
        model(
            {"volumes": [{"type": "volume", "source": "theirs", "target": "/d"}]},
            volumes={"theirs": {"name": "ktrdr--other-c0ffee42_db-data", "external": True}},
            networks={"default": {"name": "bridge", "external": True}},
        ),
        facts,
    )
    assert [(v.kind, v.value, v.rule) for v in found] == [
        ("volume", "ktrdr--other-c0ffee42_db-data", "external-resource"),
        ("network", "bridge", "external-resource"),
    ]


def test_a_name_other_than_the_project_default_is_refused(facts: StackFacts) -> None:
    found = check(
        model(
            volumes={"db-data": {"name": "ktrdr--other-c0ffee42_db-data"}},
            networks={"default": {"name": "ktrdr--other-c0ffee42_default"}},
        ),
        facts,
    )
    assert [(v.kind, v.key, v.rule) for v in found] == [
        ("volume", "name", "resource-name"),
        ("network", "name", "resource-name"),
    ]


def test_a_remote_instance_may_use_this_homes_shared_volumes_only(facts: StackFacts) -> None:
    from dataclasses import replace

    remote = replace(facts, remote=True)
    own = {"shared-data": {"name": "ktrdr-shared-c0ffee42-data", "external": True}}
    other = {"shared-data": {"name": "ktrdr-shared-deadbeef-data", "external": True}}
    assert check(model(volumes=own), remote) == []
    assert rules(check(model(volumes=own), facts)) == ["external-resource"]  # local: refused
    assert rules(check(model(volumes=other), remote)) == ["external-resource"]


def test_container_name_is_refused(facts: StackFacts) -> None:
    assert rules(check(model({"container_name": "ktrdr-backend"}), facts)) == ["container-name"]


def test_links_and_volumes_from_outside_the_project_are_refused(facts: StackFacts) -> None:
    service = {
        "links": ["app:self", "db"],
        "external_links": ["redis"],
        "volumes_from": ["app", "service:app:ro", "container:their-db", "elsewhere"],
    }
    found = check(model(service), facts)
    assert [(v.key, v.value, v.rule) for v in found] == [
        ("links", "db", "foreign-link"),
        ("external_links", "redis", "foreign-link"),
        ("volumes_from", "container:their-db", "foreign-link"),
        ("volumes_from", "elsewhere", "foreign-link"),
    ]


def test_config_and_secret_files_outside_the_worktree_are_refused(
    facts: StackFacts, tmp_path: Path
) -> None:
    found = check(
        model(
            configs={
                "own": {"file": str(facts.worktree / "ktrdr" / "app.yml")},
                "inline": {"content": "x"},
            },
            secrets={"key": {"file": str(tmp_path / "other-worktree" / ".env.sandbox")}},
        ),
        facts,
    )
    assert [(v.kind, v.name, v.rule) for v in found] == [("secret", "key", "host-file")]


def test_a_watch_path_outside_the_worktree_is_refused(facts: StackFacts, tmp_path: Path) -> None:
    develop = {"watch": [{"action": "sync", "path": str(tmp_path), "target": "/app"}]}
    assert rules(check(model({"develop": develop}), facts)) == ["host-file"]


def test_build_contexts_outside_the_worktree_are_refused(facts: StackFacts, tmp_path: Path) -> None:
    build = {
        "context": str(tmp_path / "other-worktree"),
        "dockerfile": "Dockerfile",
        "additional_contexts": {"src": str(facts.worktree), "home": str(tmp_path / "home")},
    }
    found = check(model({"build": build}), facts)
    assert [(v.key, v.rule) for v in found] == [
        ("build.context", "build-context"),
        ("build.dockerfile", "build-context"),
        ("build.additional_contexts.home", "build-context"),
    ]
    own = {"context": str(facts.worktree), "dockerfile": "Dockerfile", "args": {"A": "1"}}
    assert check(model({"build": own}), facts) == []


# --- owner labels -------------------------------------------------------------------------------
def test_the_instances_own_labels_pass_on_services_volumes_and_networks(facts: StackFacts) -> None:
    labels = {**facts.labels, "ktrdr.test": "0", "ktrdr.worker-type": "backtest"}
    found = check(
        model(
            {"labels": labels},
            volumes={"db-data": {"name": f"{PROJECT}_db-data", "labels": labels}},
            networks={"default": {"name": f"{PROJECT}_default", "labels": labels}},
        ),
        facts,
    )
    assert found == []


def test_an_empty_checkout_label_passes(facts: StackFacts) -> None:
    labels = {**facts.labels, "ktrdr.checkout": "", "ktrdr.owner-home": ""}
    assert check(model({"labels": labels}), facts) == []


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("ktrdr.instance", "ktrdr--other"),
        ("ktrdr.owner", "deadbeef"),
        ("ktrdr.slot", "3"),
        ("ktrdr.checkout", "/work/ktrdr--other"),
        ("ktrdr.shared-data", "1"),
        ("com.docker.compose.project", "ktrdr--other-c0ffee42"),
    ],
)
def test_labels_claiming_another_owner_are_refused_everywhere(
    facts: StackFacts, key: str, value: str
) -> None:
    labels = {**facts.labels, key: value}
    found = check(
        model(
            {"labels": labels},
            volumes={"db-data": {"name": f"{PROJECT}_db-data", "labels": labels}},
            networks={"default": {"name": f"{PROJECT}_default", "labels": labels}},
        ),
        facts,
    )
    assert [(v.kind, v.value, v.rule) for v in found] == [
        (kind, f"{key}={value}", "owner-label") for kind in ("service", "volume", "network")
    ]


# --- overrides ----------------------------------------------------------------------------------
def test_allow_lets_one_rule_through_and_no_other(facts: StackFacts, tmp_path: Path) -> None:
    from dataclasses import replace

    hostile = model({"volumes": [bind("/var/run/docker.sock"), bind(tmp_path / "other-worktree")]})
    allowed = replace(facts, allow=frozenset({"docker-socket"}))
    assert rules(check(hostile, allowed)) == ["bind-mount"]
    assert rules(overridden(hostile, allowed)) == ["docker-socket"]
    both = replace(facts, allow=frozenset({"docker-socket", "bind-mount"}))
    assert check(hostile, both) == []


def test_every_rule_says_what_it_refuses_and_why() -> None:
    for name, rule in RULES.items():
        assert name == name.lower().replace(" ", "-")
        assert rule.refuses
        assert rule.why
        assert not rule.why.endswith(".")


def test_values_are_shown_on_one_line(facts: StackFacts) -> None:
    found = check(model({"container_name": "a\nb" + "c" * 300}), facts)
    assert "\n" not in found[0].value
    assert len(found[0].value) <= 120
