"""doctor against the real engine: only this home's resources of a gone instance are orphans;
another home's, and unlabelled (legacy) ones, are reported and never removed, with or without
--fix. Every resource here is made by the test (its own instance ids) and removed at the end."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from ktrdr.cli.main import cli
from ktrdr.cli.sandbox.doctor.diagnose import run_doctor
from ktrdr.cli.sandbox.home import registry
from ktrdr.cli.sandbox.home.directory import home_id
from ktrdr.cli.sandbox.home.instance import new_settings, render_env, write_env_file
from ktrdr.cli.sandbox.home.shared_data import shared_root
from tests.support.host import quiet_host

OFFLINE_IMAGE = "ktrdr-offline/debian:bookworm"
OTHER_HOME = "0badf00d"
OTHER_HOME_DIR = Path("/elsewhere/h")  # replaced per test by a real home holding OTHER_HOME


@pytest.fixture(autouse=True)
def other_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Another home that exists (its id on disk): its resources are another home's, not a lost
    home's."""
    home = tmp_path / "other-home"
    home.mkdir()
    (home / "home-id").write_text(OTHER_HOME + "\n")
    monkeypatch.setattr(sys.modules[__name__], "OTHER_HOME_DIR", home)
    return home


def docker(*args: str, check: bool = True) -> str:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, check=check, timeout=120
    ).stdout


def exists(instance_id: str, *, kind: str = "container") -> bool:
    argv = ["ps", "-aq"] if kind == "container" else [kind, "ls", "-q"]
    return bool(docker(*argv, "--filter", f"label=ktrdr.instance={instance_id}").strip())


@pytest.fixture
def instance_id(docker_engine: object) -> Iterator[str]:
    """A unique instance id; everything labelled with it is removed at the end."""
    made = f"ktrdr-test-doc-{uuid.uuid4().hex[:8]}"
    yield made
    for kind in ("container", "volume", "network"):
        argv = ["ps", "-aq"] if kind == "container" else [kind, "ls", "-q"]
        ids = docker(*argv, "--filter", f"label=ktrdr.instance={made}", check=False).split()
        if ids:
            docker(kind, "rm", "-f", *ids, check=False)


def labels(instance_id: str, owner: str | None) -> list[str]:
    found = ["--label", f"ktrdr.instance={instance_id}", "--label", "ktrdr.slot=9"]
    found += ["--label", "ktrdr.test=1"]
    if owner is not None:
        found += [
            "--label",
            f"ktrdr.owner={owner}",
            "--label",
            f"ktrdr.owner-home={OTHER_HOME_DIR}",
        ]
    return found


def stopped_container(instance_id: str, owner: str | None, *extra: str) -> None:
    docker("volume", "create", *labels(instance_id, owner), f"{instance_id}_data")
    docker(
        "create",
        "--name",
        f"{instance_id}-db",
        *labels(instance_id, owner),
        *extra,
        "-v",
        f"{instance_id}_data:/data",
        OFFLINE_IMAGE,
        "true",
    )


def test_doctor_fix_removes_this_homes_resources_whose_instance_is_gone(
    instance_id: str, tmp_path: Path
) -> None:
    stopped_container(instance_id, home_id())
    report = run_doctor(fix=False, host=quiet_host(tmp_path))
    orphan = next(p for p in report.problems if p.subject == instance_id)
    assert orphan.kind == "orphan"
    assert f"container {instance_id}-db" in orphan.detail
    assert exists(instance_id, kind="volume")

    fixed = run_doctor(fix=True, host=quiet_host(tmp_path))
    assert next(p for p in fixed.problems if p.subject == instance_id).fixed
    assert not exists(instance_id)
    assert not exists(instance_id, kind="volume")


@pytest.mark.parametrize("owner", [OTHER_HOME, None], ids=["another-home", "no-owner-label"])
def test_doctor_fix_reports_but_never_removes_what_this_home_does_not_own(
    instance_id: str, tmp_path: Path, owner: str | None
) -> None:
    """A stopped sandbox of another home (a volume, a stopped container) is exactly what
    `down` leaves: the old doctor removed it from any home whose registry lacked it."""
    stopped_container(instance_id, owner)
    report = run_doctor(fix=True, host=quiet_host(tmp_path))
    notes = [p for p in report.problems if instance_id in p.detail]
    assert [p.kind for p in notes] == ["other-home" if owner else "legacy"]
    assert notes[0].severity == "info"
    assert notes[0].fixed is None
    if owner:
        assert str(OTHER_HOME_DIR) in notes[0].subject
    assert report.healthy
    assert exists(instance_id)
    assert exists(instance_id, kind="volume")


def test_doctor_keeps_an_unregistered_instance_of_this_home_whose_checkout_exists(
    instance_id: str, tmp_path: Path
) -> None:
    root = tmp_path / "elsewhere"
    root.mkdir()
    settings = new_settings(
        instance_id=instance_id, slot=9, shared_dir=shared_root(), images=None, previous=None
    )
    write_env_file(root, render_env(settings, command="test"))
    stopped_container(
        instance_id, home_id(), "--label", f"com.docker.compose.project.working_dir={root}"
    )
    report = run_doctor(fix=True, host=quiet_host(tmp_path))
    problem = next(p for p in report.problems if p.subject == instance_id)
    assert problem.kind == "unregistered"
    assert problem.severity == "warning"
    assert exists(instance_id)
    assert exists(instance_id, kind="volume")


def test_cli_doctor_fix_on_a_clean_home_exits_0_beside_another_homes_stack(
    instance_id: str,
) -> None:
    stopped_container(instance_id, OTHER_HOME)
    result = CliRunner().invoke(cli, ["sandbox", "doctor", "--fix"])
    assert result.exit_code == 0, result.output
    # Warnings may name what other homes left on this shared engine (a lost home of a killed
    # run): the verdict for this home is "no errors", with or without such notes.
    assert "doctor: healthy" in result.stderr or "doctor: no errors" in result.stderr
    assert os.environ["KTRDR_HOME"] not in "".join(
        line for line in result.stderr.splitlines() if "warning" in line.lower()
    )
    assert os.environ["KTRDR_HOME"] in str(registry.registry_path())
    assert exists(instance_id, kind="volume")
