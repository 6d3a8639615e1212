"""`check_stack(instance, allow=…)`: the call every path makes before it creates or starts a
container of the instance. Builds the facts from what the home recorded (not from the
worktree's files), checks the resolved model and refuses with one line."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ktrdr.cli.sandbox.base.atomic import write_atomic
from ktrdr.cli.sandbox.base.errors import SandboxError
from ktrdr.cli.sandbox.home.directory import home_id, ktrdr_home
from ktrdr.cli.sandbox.home.shared_data import shared_root
from ktrdr.cli.sandbox.policy.checker import StackFacts, Violation, check, overridden
from ktrdr.cli.sandbox.policy.model import resolved_model
from ktrdr.cli.sandbox.policy.rules import RULES

if TYPE_CHECKING:
    from ktrdr.cli.sandbox.instances.locate import Instance


class StackRefusedError(SandboxError):
    """The stack policy refused the instance's compose model; `violations` lists them all."""

    def __init__(self, message: str, violations: list[Violation]) -> None:
        super().__init__(message)
        self.violations = violations


def facts_for(instance: Instance, *, allow: frozenset[str] = frozenset()) -> StackFacts:
    """The instance as this home knows it: its directory, slot, project and owner."""

    return StackFacts(
        worktree=instance.root,
        shared_dir=shared_root(),
        ports=frozenset(instance.engine_ports.all_ports().values()),
        project=instance.project,
        labels={
            "ktrdr.owner": home_id(),
            "ktrdr.instance": instance.instance_id,
            "ktrdr.slot": str(instance.slot),
            "ktrdr.owner-home": str(ktrdr_home()),
            "ktrdr.checkout": str(instance.root),
        },
        remote=instance.remote,
        allow=allow,
    )


def check_stack(
    instance: Instance,
    *,
    allow: frozenset[str] = frozenset(),
    command: str = "ktrdr sandbox up",
    notify: Callable[[str], None] = lambda message: None,
) -> list[Violation]:
    """Refuse (StackRefusedError) when the instance's resolved model breaks a rule not in
    `allow`; returns the violations `allow` let through (each also told to `notify`)."""
    return _checked(instance, allow=allow, command=command, notify=notify)[1]


def checked_model_file(
    instance: Instance,
    *,
    allow: frozenset[str] = frozenset(),
    command: str = "ktrdr sandbox up",
    notify: Callable[[str], None] = lambda message: None,
) -> Path:
    """`check_stack`, then the checked model written to this home (mode 0600: it holds the
    instance's secrets) for compose to run from: an edit to the worktree's compose file
    between the check and the start is never what starts."""

    model, _ = _checked(instance, allow=allow, command=command, notify=notify)
    path = checked_model_path(instance.instance_id)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(model, indent=1) + "\n", mode=0o600)
    except OSError as e:
        raise SandboxError(
            f"cannot write the checked stack of {instance.instance_id} to {path}: "
            f"{e.strerror or e}; check that {path.parent} is writable and the disk not full"
        ) from e
    return path


def checked_model_path(instance_id: str) -> Path:

    return ktrdr_home() / "sandbox" / "checked" / f"{instance_id}.json"


def _checked(
    instance: Instance, *, allow: frozenset[str], command: str, notify: Callable[[str], None]
) -> tuple[dict[str, Any], list[Violation]]:

    model = resolved_model(instance)
    facts = facts_for(instance, allow=allow)
    found = check(model, facts)
    if found:
        raise StackRefusedError(refusal(found, command=command), found)
    let_through = overridden(model, facts)
    for violation in let_through:
        rule = violation.rule
        notify(f"Warning: stack policy rule {rule} overridden by --allow: {describe(violation)}")
    return model, let_through


def describe(violation: Violation) -> str:
    value = f": {violation.value}" if violation.value else ""
    return f'{violation.kind} "{violation.name}": {violation.key}{value}'


def refusal(violations: list[Violation], *, command: str) -> str:
    """One line: the first violation, its rule and why, what to do, and how many more."""
    first = violations[0]
    more = f" (and {len(violations) - 1} more)" if len(violations) > 1 else ""
    return (
        f"stack policy refuses {describe(first)} (rule {first.rule}): "
        f"{RULES[first.rule].why}; remove it from docker-compose.sandbox.yml "
        f"(a person may pass --allow {first.rule} to {command}){more}"
    )
