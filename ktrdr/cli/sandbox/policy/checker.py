"""The pure check: a resolved compose model (`docker compose config --format json`) and the
instance's facts in, the violations out. Nothing here runs a process or reads the instance's
files; host paths are resolved through `facts.realpath` (os.path.realpath unless given)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ktrdr.cli.sandbox.policy import rules as r

HOST_MODES = ("network_mode", "pid", "ipc", "uts", "userns_mode", "cgroup")


@dataclass(frozen=True)
class StackFacts:
    """What the home recorded about the instance: the only authority the check trusts."""

    worktree: Path
    shared_dir: Path
    ports: frozenset[int]  # host ports of the slot (on the engine)
    project: str
    labels: Mapping[str, str]  # the expected owner labels (rules.OWNER_LABELS)
    remote: bool = False
    allow: frozenset[str] = frozenset()  # rules a person chose to override
    realpath: Callable[[str], str] = os.path.realpath


@dataclass(frozen=True)
class Violation:
    kind: str  # service, volume, network, config, secret or stack
    name: str
    key: str
    value: str
    rule: str

    def to_json(self) -> dict[str, str]:
        return {
            "kind": self.kind,
            "name": self.name,
            "key": self.key,
            "value": self.value,
            "rule": self.rule,
        }


Found = Iterator[tuple[str, str, str]]  # (key, value, rule) of one resource


def check(model: Mapping[str, Any], facts: StackFacts) -> list[Violation]:
    """Every violation of the policy, minus the rules in `facts.allow` (see overridden)."""
    return [v for v in violations(model, facts) if v.rule not in facts.allow]


def overridden(model: Mapping[str, Any], facts: StackFacts) -> list[Violation]:
    """The violations a person let through with `--allow`."""
    return [v for v in violations(model, facts) if v.rule in facts.allow]


def violations(model: Mapping[str, Any], facts: StackFacts) -> list[Violation]:
    found: list[Violation] = []
    for key in model:
        if key not in r.SAFE_TOP_LEVEL_KEYS and not str(key).startswith("x-"):
            found.append(Violation("stack", "(top level)", str(key), "", "unknown-key"))
    services = _mapping(model.get("services"))
    sections: list[tuple[str, Mapping[str, Any], Callable[..., Found]]] = [
        ("service", services, _service),
        ("volume", _mapping(model.get("volumes")), _volume),
        ("network", _mapping(model.get("networks")), _network),
        ("config", _mapping(model.get("configs")), _file_object),
        ("secret", _mapping(model.get("secrets")), _file_object),
    ]
    for kind, section, checker in sections:
        for name, spec in section.items():
            for key, value, rule in checker(str(name), _mapping(spec), facts, set(services)):
                found.append(Violation(kind, str(name), key, _one_line(value), rule))
    return found


# --- services ----------------------------------------------------------------------------------
def _service(name: str, spec: Mapping[str, Any], facts: StackFacts, project: set[str]) -> Found:
    for key in spec:
        if key not in r.SAFE_SERVICE_KEYS and key not in r.CHECKED_SERVICE_KEYS:
            yield str(key), _text(spec[key]), "unknown-key"
    yield from _mounts(spec.get("volumes") or [], facts)
    yield from _ports(spec.get("ports") or [], facts)
    yield from _namespaces(spec, project)
    yield from _privileges(spec)
    yield from _links(spec, project)
    yield from _build(spec.get("build"), facts)
    yield from _develop(spec.get("develop"), facts)
    yield from _deploy(spec.get("deploy"))
    yield from _labels(spec.get("labels"), facts)
    if spec.get("container_name"):
        yield "container_name", str(spec["container_name"]), "container-name"


def _mounts(mounts: list[Any], facts: StackFacts) -> Found:
    for mount in mounts:
        if not isinstance(mount, Mapping):
            yield "volumes", str(mount), "unknown-key"  # config prints the long form only
            continue
        kind = str(mount.get("type", ""))
        source = str(mount.get("source") or "")
        if kind not in r.MOUNT_TYPES:
            yield "volumes", f"type {kind}: {source}", "unknown-key"
        elif kind == "bind":
            rule = host_path_rule(source, facts, shared_ok=True)
            if rule:
                yield "volumes", source, rule


def host_path_rule(source: str, facts: StackFacts, *, shared_ok: bool) -> str | None:
    """None for a host path the instance may mount; else the rule it breaks: docker-socket
    (by its name or its target's) or bind-mount (outside the worktree and shared dir)."""
    real = Path(facts.realpath(source)) if source else Path("/")
    if any(str(p).endswith(r.SOCKET_NAMES) for p in (Path(source), real)):
        return "docker-socket"
    allowed = [facts.worktree, *([facts.shared_dir] if shared_ok else [])]
    if any(real.is_relative_to(facts.realpath(str(a))) for a in allowed):
        return None
    return "bind-mount"


def _ports(ports: list[Any], facts: StackFacts) -> Found:
    for port in ports:
        if not isinstance(port, Mapping):
            yield "ports", str(port), "published-port"
            continue
        host_ip = str(port.get("host_ip") or "")
        published = str(port.get("published") or "")
        shown = f"{host_ip or '0.0.0.0'}:{published or '(any)'}:{port.get('target', '')}"
        slot_port = published.isdigit() and int(published) in facts.ports
        if host_ip != "127.0.0.1" or not slot_port:  # "" is every address
            yield "ports", shown, "published-port"


def _namespaces(spec: Mapping[str, Any], project: set[str]) -> Found:
    for key in HOST_MODES:
        value = str(spec.get(key) or "")
        if not value:
            continue
        mode, _, target = value.partition(":")
        if mode == "service":
            shared = target not in project  # another project's service
        elif key == "network_mode":
            shared = value != "none"  # host, container:*, bridge: outside the project
        else:
            shared = value == "host" or mode == "container"
        if shared:
            yield key, value, "host-namespace"


def _privileges(spec: Mapping[str, Any]) -> Found:
    if spec.get("privileged"):
        yield "privileged", "true", "privileged"
    lists: tuple[tuple[str, frozenset[str], str], ...] = (
        ("cap_add", r.ALLOWED_CAPABILITIES, "capabilities"),
        ("devices", r.ALLOWED_DEVICES, "devices"),
        ("device_cgroup_rules", frozenset(), "devices"),
        ("security_opt", r.ALLOWED_SECURITY_OPT, "security-opt"),
    )
    for key, allowed, rule in lists:
        for item in spec.get(key) or []:
            text = _device_text(item) if isinstance(item, Mapping) else str(item)
            if text not in allowed:
                yield key, text, rule
    sysctls = spec.get("sysctls") or {}
    items = sysctls.items() if isinstance(sysctls, Mapping) else ((s, "") for s in sysctls)
    for key, value in items:
        if str(key).partition("=")[0] not in r.ALLOWED_SYSCTLS:
            yield "sysctls", f"{key}={value}" if value != "" else str(key), "sysctls"


def _device_text(item: Mapping[str, Any]) -> str:
    return ":".join(str(item.get(k, "")) for k in ("source", "target", "permissions")).rstrip(":")


def _links(spec: Mapping[str, Any], project: set[str]) -> Found:
    for link in spec.get("links") or []:
        if str(link).partition(":")[0] not in project:
            yield "links", str(link), "foreign-link"
    for link in spec.get("external_links") or []:
        yield "external_links", str(link), "foreign-link"
    for source in spec.get("volumes_from") or []:
        text = str(source)
        mode, _, rest = text.partition(":")
        target = rest.partition(":")[0] if mode in ("service", "container") else mode
        if mode == "container" or target not in project:
            yield "volumes_from", text, "foreign-link"


def _build(build: Any, facts: StackFacts) -> Found:
    if build is None:
        return
    if not isinstance(build, Mapping):
        build = {"context": build}
    for key in build:
        if key not in r.SAFE_BUILD_KEYS:
            yield f"build.{key}", _text(build[key]), "unknown-key"
    context = str(build.get("context") or ".")
    if not _inside(context, facts):
        yield "build.context", context, "build-context"
    dockerfile = build.get("dockerfile")
    if dockerfile and not _inside(os.path.join(context, str(dockerfile)), facts):
        yield "build.dockerfile", str(dockerfile), "build-context"
    for extra, where in _mapping(build.get("additional_contexts")).items():
        if not _inside(str(where), facts):
            yield f"build.additional_contexts.{extra}", str(where), "build-context"


def _develop(develop: Any, facts: StackFacts) -> Found:
    for rule in _mapping(develop).get("watch") or []:
        path = str(_mapping(rule).get("path") or "")
        if not _inside(path, facts):
            yield "develop.watch.path", path, "host-file"


def _deploy(deploy: Any) -> Found:
    spec = _mapping(deploy)
    for key in spec:
        if key not in r.SAFE_DEPLOY_KEYS:
            yield f"deploy.{key}", _text(spec[key]), "unknown-key"
    reservations = _mapping(_mapping(spec.get("resources")).get("reservations"))
    if reservations.get("devices"):
        yield "deploy.resources.reservations.devices", _text(reservations["devices"]), "devices"


def _inside(path: str, facts: StackFacts) -> bool:
    """A local path inside the worktree (URLs, images and other services are not)."""
    if "://" in path or path.startswith(("git@", "service:")) or not os.path.isabs(path):
        return False
    real = Path(facts.realpath(path))
    return real.is_relative_to(facts.realpath(str(facts.worktree)))


# --- volumes, networks, configs, secrets ------------------------------------------------------
def _volume(name: str, spec: Mapping[str, Any], facts: StackFacts, _: set[str]) -> Found:
    yield from _unknown(spec, r.SAFE_VOLUME_KEYS)
    shared = f"ktrdr-shared-{facts.labels.get('ktrdr.owner', '')}-"
    remote_shared = facts.remote and str(spec.get("name", "")).startswith(shared)
    if spec.get("external") and not remote_shared:
        yield "external", str(spec.get("name") or name), "external-resource"
    elif not spec.get("external"):
        yield from _default_name(name, spec, facts)
    if spec.get("driver") not in (None, "", "local"):
        yield "driver", str(spec["driver"]), "unknown-key"
    options = _mapping(spec.get("driver_opts"))
    device = str(options.get("device") or "")
    is_bind = "bind" in str(options.get("o", "")).split(",") or options.get("type") == "none"
    if device or is_bind:
        rule = (
            host_path_rule(device, facts, shared_ok=True)
            if options.get("type") != "tmpfs"
            else None
        )
        if rule:
            yield "driver_opts.device", device or "(none)", rule
    yield from _labels(spec.get("labels"), facts)


def _network(name: str, spec: Mapping[str, Any], facts: StackFacts, _: set[str]) -> Found:
    yield from _unknown(spec, r.SAFE_NETWORK_KEYS)
    if spec.get("external"):
        yield "external", str(spec.get("name") or name), "external-resource"
    else:
        yield from _default_name(name, spec, facts)
    if spec.get("driver") not in (None, "", "bridge"):
        yield "driver", str(spec["driver"]), "unknown-key"
    yield from _labels(spec.get("labels"), facts)


def _file_object(name: str, spec: Mapping[str, Any], facts: StackFacts, _: set[str]) -> Found:
    if spec.get("external"):
        yield "external", str(spec.get("name") or name), "external-resource"
    file = spec.get("file")
    if file and not _inside(str(file), facts):
        yield "file", str(file), "host-file"


def _default_name(key: str, spec: Mapping[str, Any], facts: StackFacts) -> Found:
    name = str(spec.get("name") or "")
    if name and name != f"{facts.project}_{key}":
        yield "name", name, "resource-name"


def _labels(labels: Any, facts: StackFacts) -> Found:
    if isinstance(labels, list):
        labels = dict(str(item).partition("=")[::2] for item in labels)
    for key, value in _mapping(labels).items():
        key, text = str(key), str(value)
        if key.startswith("com.docker.compose."):
            yield "labels", f"{key}={text}", "owner-label"
        elif not key.startswith("ktrdr.") or key in r.FREE_KTRDR_LABELS:
            continue
        elif key not in r.OWNER_LABELS or not _same_label(key, text, facts):
            yield "labels", f"{key}={text}", "owner-label"


def _same_label(key: str, value: str, facts: StackFacts) -> bool:
    expected = str(facts.labels.get(key, ""))
    if value == expected or (not value and key in r.MAY_BE_EMPTY):
        return True
    if key in r.MAY_BE_EMPTY and value and expected:  # paths: the same directory counts
        return facts.realpath(value) == facts.realpath(expected)
    return False


def _unknown(spec: Mapping[str, Any], safe: frozenset[str]) -> Found:
    for key in spec:
        if key not in safe:
            yield str(key), _text(spec[key]), "unknown-key"


# --- helpers -----------------------------------------------------------------------------------
def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value

    return json.dumps(value, sort_keys=True, default=str)


def _one_line(value: str, limit: int = 120) -> str:
    flat = " ".join(value.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
