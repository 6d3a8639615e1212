"""What docker-compose.sandbox.yml says about the stack, read once per command.

`load(root)` parses the file into a small frozen `StackFile` (cached by path, mtime and size,
so every caller of one command shares one parse). It is the only source of the services, the
workers expected per type and the one-shot services: a service added to the compose file is
known everywhere without a second list to update.

Imported by `list`: yaml is imported only when a file is actually parsed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ktrdr.cli.sandbox.base.errors import SandboxError

COMPOSE_FILE = "docker-compose.sandbox.yml"
# A remote instance's override: its bind mounts as volumes (remote/stack.py writes it).
REMOTE_OVERRIDE_FILE = Path(".sandbox") / "compose.remote.yml"
WORKER_TYPE_LABEL = "ktrdr.worker-type"
# What the checked-in compose file declares, for a caller that has no file to read (its
# instance directory is gone): `migrate` runs once, `e2e-tests` only on demand.
FALLBACK_ONE_SHOT = frozenset({"migrate"})
FALLBACK_ON_DEMAND = frozenset({"e2e-tests"})


@dataclass(frozen=True)
class StackFile:
    """The facts of one compose file (see the module docstring)."""

    profiles: Mapping[str, tuple[str, ...]]  # every service -> its profiles (() = default)
    worker_services: Mapping[str, str]  # default-profile service -> its ktrdr.worker-type
    expected_workers: Mapping[str, int]  # worker type -> count (replicas counted)
    one_shot: frozenset[str]  # waited on with `service_completed_successfully` (migrations)

    @property
    def services(self) -> list[str]:
        """Every service, profiles included."""
        return sorted(self.profiles)

    @property
    def default_services(self) -> list[str]:
        """Services started by a plain `up` (no profile)."""
        return sorted(name for name, profiles in self.profiles.items() if not profiles)

    @property
    def on_demand(self) -> frozenset[str]:
        """Services behind a profile (`e2e-tests`): run on request, never part of `up`."""
        return frozenset(name for name, profiles in self.profiles.items() if profiles)

    @property
    def short_lived(self) -> frozenset[str]:
        """Services whose containers say nothing about whether the stack is up: the one-shot
        ones (exiting 0 is their success) and the on-demand ones."""
        return self.one_shot | self.on_demand


_cache: dict[tuple[str, int, int], StackFile] = {}


def override_args(root: Path) -> list[str]:
    """`-f <override>` when the instance has a remote override (appended to the compose argv)."""
    path = root / REMOTE_OVERRIDE_FILE
    return ["-f", str(path)] if path.is_file() else []


def load(root: Path) -> StackFile:
    """The facts of `<root>/docker-compose.sandbox.yml`; SandboxError (one line) when it is
    missing, unreadable or not a compose file."""
    path = root / COMPOSE_FILE
    try:
        stat = path.stat()
        key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    except FileNotFoundError as e:  # the same words as `up`: an old branch, not a broken file
        raise _missing(path) from e
    except OSError as e:
        raise SandboxError(f"cannot read {path}: {e.strerror or e}") from e
    if key not in _cache:
        _cache[key] = _parse(_services(path))
    return _cache[key]


def fallback() -> StackFile:
    """The facts assumed for an instance whose compose file cannot be read."""
    profiles: dict[str, tuple[str, ...]] = {name: ("e2e",) for name in FALLBACK_ON_DEMAND}
    profiles.update({name: () for name in FALLBACK_ONE_SHOT})
    return StackFile(MappingProxyType(profiles), {}, {}, FALLBACK_ONE_SHOT)


def load_or_fallback(root: Path) -> StackFile:
    """`load`, or `fallback()` when the file cannot be read (status of a half-gone instance)."""
    try:
        return load(root)
    except SandboxError:
        return fallback()


def problem(root: Path) -> str | None:
    """Why `<root>/docker-compose.sandbox.yml` cannot be used (one line), or None: for
    `status`, which still reports the rest of an instance whose file is broken."""
    try:
        load(root)
    except SandboxError as e:
        return e.message
    return None


def _yaml_problem(path: Path, error: Exception) -> str:
    """One line, `<file>, line L, column C: not valid YAML: <what>`; pyyaml's own text spans
    four lines (the context, a quoted excerpt and a caret)."""
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    what = getattr(error, "problem", None) or str(error).splitlines()[0]
    context = getattr(error, "context", None)
    detail = f"{what} ({context})" if context else str(what)
    return f"{path}{where}: not valid YAML: {detail}; fix the file (git diff shows your edit)"


def _missing(path: Path) -> SandboxError:
    return SandboxError(
        f"{path} is missing: this checkout has no stack definition; update the branch from main"
    )


def _services(path: Path) -> dict[str, dict[str, Any]]:
    import yaml  # here: PyYAML costs `list` and `--help` ~40 ms; only a read of the file needs it

    # libyaml's safe loader when built (ten times faster than the pure-Python one).
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=loader) or {}
    except FileNotFoundError as e:
        raise _missing(path) from e
    except OSError as e:
        raise SandboxError(f"cannot read {path}: {e.strerror or e}") from e
    except yaml.YAMLError as e:
        raise SandboxError(_yaml_problem(path, e)) from e
    services = data.get("services") if isinstance(data, dict) else None
    if not isinstance(services, dict):
        raise SandboxError(f"{path} has no `services` section")
    return {str(k): v if isinstance(v, dict) else {} for k, v in services.items()}


def _parse(services: Mapping[str, Mapping[str, Any]]) -> StackFile:
    profiles = {
        name: tuple(str(p) for p in service.get("profiles") or ())
        for name, service in services.items()
    }
    workers: dict[str, str] = {}
    counts: dict[str, int] = {}
    for name, service in services.items():
        worker_type = _labels(service).get(WORKER_TYPE_LABEL)
        if worker_type and not profiles[name]:
            workers[name] = worker_type
            replicas = (service.get("deploy") or {}).get("replicas", 1)
            counts[worker_type] = counts.get(worker_type, 0) + int(replicas)
    return StackFile(
        profiles=MappingProxyType(profiles),
        worker_services=MappingProxyType(workers),
        expected_workers=MappingProxyType(counts),
        one_shot=frozenset(_one_shot(services)),
    )


def _labels(service: Mapping[str, Any]) -> dict[str, str]:
    raw = service.get("labels") or {}
    if isinstance(raw, list):
        pairs = (str(item).partition("=") for item in raw)
        return {k: v for k, _, v in pairs}
    return {str(k): str(v) for k, v in raw.items()}


def _one_shot(services: Mapping[str, Mapping[str, Any]]) -> set[str]:
    one_shot: set[str] = set()
    for service in services.values():
        depends = service.get("depends_on") or {}
        if isinstance(depends, dict):
            for dep, spec in depends.items():
                if isinstance(spec, dict) and spec.get("condition") == (
                    "service_completed_successfully"
                ):
                    one_shot.add(str(dep))
    return one_shot
