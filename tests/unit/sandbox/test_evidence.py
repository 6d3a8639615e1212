"""evidence: a real instance dir (git repo + .env.sandbox), real tarballs; engine down is a real
unreachable DOCKER_HOST, not a mock."""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from ktrdr.cli.main import cli
from ktrdr.cli.sandbox.base.errors import SandboxError
from ktrdr.cli.sandbox.e2e.evidence import collect_evidence
from ktrdr.cli.sandbox.e2e.run import db_env_exports
from ktrdr.cli.sandbox.home import registry
from ktrdr.cli.sandbox.home.registry import Entry


@pytest.fixture
def engine_down(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-such-docker.sock")


def members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path, "r:gz") as tar:
        out = {}
        for member in tar.getmembers():
            handle = tar.extractfile(member)
            out[member.name.split("/", 1)[1]] = handle.read() if handle else b""
        return out


def test_evidence_bundles_gate_report_results_git_state_and_redacted_env(
    instance: Path, engine_down: None, isolated_ktrdr_home: Path
) -> None:
    result = collect_evidence(start=instance)
    # Outside the worktree: `destroy` removes the worktree, the evidence must outlive it.
    assert result.path.parent == isolated_ktrdr_home / "evidence" / instance.name
    assert result.path.name.startswith(f"evidence-{instance.name}-")
    assert result.size_bytes == result.path.stat().st_size > 0
    files = members(result.path)
    assert json.loads(files["gate-report.json"]) == {"result": "passed"}
    assert b'tests="6"' in files["test-results/e2e-junit.xml"]
    assert len(files["git-head.txt"].strip()) == 40
    assert b"README.md" in files["git-diff-stat.txt"]
    env = files["env.sandbox.redacted"].decode()
    assert "KTRDR_DB_PASSWORD=***" in env
    assert "KTRDR_API_PORT=8006" in env
    manifest = json.loads(files["manifest.json"])
    assert manifest["instance_id"] == instance.name
    assert manifest["slot"] == "6"


def test_evidence_with_the_engine_down_is_partial_and_says_what_is_missing(
    instance: Path, engine_down: None
) -> None:
    result = collect_evidence(start=instance)
    assert any("Docker engine not reachable" in note for note in result.missing)
    files = members(result.path)
    assert "compose-ps.txt" not in files
    assert json.loads(files["manifest.json"])["missing"] == result.missing


def test_evidence_notes_a_missing_gate_report_and_missing_test_results(
    instance: Path, engine_down: None
) -> None:
    (instance / ".sandbox" / "gate-report.json").unlink()
    (instance / ".sandbox" / "test-results" / "e2e-junit.xml").unlink()
    result = collect_evidence(start=instance)
    assert any(note.startswith("gate report") for note in result.missing)
    assert any(note.startswith("test results") for note in result.missing)


def test_evidence_writes_to_the_given_output_path(
    instance: Path, engine_down: None, tmp_path: Path
) -> None:
    target = tmp_path / "out" / "bundle.tar.gz"
    target.parent.mkdir()  # --output never creates directories (test_messages)
    result = collect_evidence(start=instance, output=target)
    assert result.path == target
    assert target.is_file()
    assert not list(target.parent.glob(".evidence.*"))  # no temp file left behind


def _special_outputs(tmp_path: Path) -> dict[str, Path]:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    kept = tmp_path / "kept.txt"
    kept.write_text("keep me")
    link = tmp_path / "link.tar.gz"
    link.symlink_to(kept)
    return {"FIFO": fifo, "symlink": link, "device": Path("/dev/null")}


@pytest.mark.parametrize("kind", ["FIFO", "symlink", "device"])
def test_evidence_never_replaces_a_device_fifo_or_symlink(
    instance: Path, engine_down: None, tmp_path: Path, kind: str
) -> None:
    target = _special_outputs(tmp_path)[kind]
    before = os.lstat(target)

    result = CliRunner().invoke(cli, ["sandbox", "evidence", "--output", str(target)])

    assert result.exit_code == 1
    assert result.stderr.startswith("Error: --output ")
    assert "refusing to replace" in result.stderr
    after = os.lstat(target)
    assert (after.st_mode, after.st_ino) == (before.st_mode, before.st_ino)
    assert (tmp_path / "kept.txt").read_text() == "keep me"


@pytest.mark.parametrize("raw", ["", "  ", "-"])
def test_evidence_refuses_an_empty_or_stdout_output(
    instance: Path, engine_down: None, raw: str
) -> None:
    result = CliRunner().invoke(cli, ["sandbox", "evidence", "--output", raw])
    assert result.exit_code == 1
    assert "is not supported: pass a file path" in result.stderr
    assert not (instance / "-").exists()


def test_evidence_says_when_it_replaced_an_existing_file(
    instance: Path, engine_down: None, tmp_path: Path
) -> None:
    target = tmp_path / "old.tar.gz"
    target.write_text("old bundle")
    result = CliRunner().invoke(cli, ["sandbox", "evidence", "-o", str(target), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["replaced"] is True
    assert tarfile.is_tarfile(target)


def test_evidence_by_name_uses_the_registry(
    instance: Path, engine_down: None, tmp_path: Path
) -> None:
    with registry.transaction() as entries:
        entries[instance.name] = Entry(
            instance.name, 6, str(instance), "clone", "main", registry.now_iso()
        )
    result = collect_evidence(name=instance.name, start=tmp_path)
    assert result.instance_id == instance.name


def test_evidence_outside_an_instance_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match=r"no \.env\.sandbox"):
        collect_evidence(start=tmp_path)


def test_cli_evidence_json_prints_path_and_size(instance: Path, engine_down: None) -> None:
    result = CliRunner().invoke(cli, ["sandbox", "evidence", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert Path(payload["path"]).is_file()
    assert payload["size_bytes"] > 0


def test_cli_evidence_text_names_the_file_and_the_missing_parts(
    instance: Path, engine_down: None
) -> None:
    result = CliRunner().invoke(cli, ["sandbox", "evidence"])
    assert result.exit_code == 0
    assert "Evidence:" in result.stdout
    assert ".tar.gz" in result.stdout
    assert "missing: compose ps and service logs" in result.stderr


def test_db_env_exports_the_instance_db_port_and_password(instance: Path) -> None:
    text = db_env_exports(start=instance)
    assert "export KTRDR_DB_PORT=5438\n" in text
    assert "export KTRDR_DB_HOST=127.0.0.1\n" in text
    assert "KTRDR_DB_PASSWORD=" in text


def test_db_env_is_empty_outside_an_instance(tmp_path: Path) -> None:
    assert db_env_exports(start=tmp_path) == ""


def test_test_e2e_outside_an_instance_says_how_to_make_one(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["sandbox", "test-e2e"])
    assert result.exit_code == 1
    assert "no .env.sandbox" in result.stderr
    assert "ktrdr sandbox create" in result.stderr


def test_bundles_collected_in_the_same_second_never_replace_each_other(
    instance: Path, engine_down: None
) -> None:
    paths = {collect_evidence(start=instance).path for _ in range(3)}
    assert len(paths) == 3
    assert all(path.is_file() for path in paths)
