"""The compose file against the real engine's images: every VOLUME an image declares is covered
by a named, labelled volume of the instance (the rendering itself is tested in
tests/unit/test_compose_contract.py, which needs no engine)."""

from __future__ import annotations

import json

from ktrdr.cli.sandbox.base.proc import run
from tests.support.compose_render import rendered


def test_every_volume_an_image_declares_is_a_named_instance_volume() -> None:
    """An image VOLUME left to Docker becomes a new anonymous volume on every down/up and leaks
    past destroy; each must be covered by a named (per-instance, labelled) volume."""
    config = rendered(3)
    uncovered = []
    for name, service in config["services"].items():
        inspected = run(
            ["docker", "image", "inspect", "-f", "{{json .Config.Volumes}}", service["image"]],
            check=False,
            timeout=30,
        )
        if inspected.returncode != 0:
            continue  # image not built here; the offline set is built before CI tests
        declared = json.loads(inspected.stdout) or {}
        named = {m["target"] for m in service.get("volumes", []) if m["type"] == "volume"}
        uncovered += [f"{name}:{path}" for path in declared if path not in named]
    assert uncovered == []
