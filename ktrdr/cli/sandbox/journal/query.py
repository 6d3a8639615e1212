"""Reading the journal back for `ktrdr sandbox journal` and the MCP resource `ktrdr://journal`:
which records belong to a NAME (also of an instance destroyed long ago, which the registry no
longer knows), since when, and the JSON both faces show."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ktrdr.cli.sandbox.base.errors import SandboxError
from ktrdr.cli.sandbox.home.instance import slugify
from ktrdr.cli.sandbox.instances.locate import find_entry
from ktrdr.cli.sandbox.journal import log as journal


def query(name: str | None = None, *, since: datetime | None = None) -> journal.Reading:
    """The journal's records of instance `name` (None: all) at or after `since`, with what the
    read skipped. SandboxError when the file cannot be read or NAME is ambiguous."""
    path = journal.journal_path()
    try:
        reading = journal.read(path)
    except OSError as e:
        raise SandboxError(
            f"cannot read the journal {path}: {e.strerror or e}; check its permissions"
        ) from e
    wanted = instances_named(name, reading.records) if name else None
    records = journal.select(reading.records, instances=wanted, since=since)
    return journal.Reading(records, reading.corrupt_lines, reading.torn_tail)


def instances_named(name: str, records: list[journal.Record]) -> set[str]:
    """The instance ids NAME stands for: the registry's answer (full id, create NAME,
    directory name, unique slug suffix) while the instance exists, else the ids the journal
    holds that are NAME or end in `--<slug of NAME>`. Empty when none does."""

    try:
        return {find_entry(name).instance_id}
    except SandboxError:
        pass  # destroyed, never registered here, or the registry is unreadable: ask the journal
    known = {r.instance for r in records if r.instance}
    if name in known:
        return {name}
    slug = slugify(name)
    matches = {i for i in known if slug and (i == slug or i.endswith(f"--{slug}"))}
    if len(matches) > 1:
        listed = ", ".join(sorted(matches))
        raise SandboxError(
            f"{name!r} is ambiguous in the journal: it matches {listed}; pass the full id"
        )
    return matches


def to_json(reading: journal.Reading) -> dict[str, Any]:
    """`journal --json` and the MCP resource: the records, and what could not be read."""
    return {
        "records": [record.to_json() for record in reading.records],
        "corrupt_lines": reading.corrupt_lines,
        "torn_tail": reading.torn_tail,
    }
