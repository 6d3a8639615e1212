"""init-shared: real files in tmp_path; KTRDR_HOME points at tmp_path (autouse fixture)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from ktrdr.cli.main import cli
from ktrdr.cli.sandbox.base.errors import SandboxError
from ktrdr.cli.sandbox.home.shared_data import init_shared, shared_root, shared_status

SAMPLE_FILES = {
    "data/AAPL_1d.csv",
    "data/MSFT_1d.csv",
    "data/EURUSD_1d.csv",
    "strategies/ma_crossover.yaml",
}


def test_shared_root_lives_under_ktrdr_home(isolated_ktrdr_home: Path) -> None:
    assert shared_root() == isolated_ktrdr_home / "shared"


def test_init_shared_creates_three_dirs_and_installs_the_packaged_sample() -> None:
    result = init_shared()
    root = shared_root()
    assert sorted(result.created_dirs) == ["data", "models", "strategies"]
    assert set(result.installed) >= SAMPLE_FILES
    header = (root / "data" / "AAPL_1d.csv").read_text().splitlines()[0]
    assert header == "date,open,high,low,close,volume"
    assert (root / "models").is_dir()
    status = shared_status()
    assert status.missing_dirs == []
    assert status.data_files >= 3
    assert status.strategy_files >= 1


def test_init_shared_twice_changes_nothing_the_second_time() -> None:
    init_shared()
    before = {p: p.stat().st_mtime_ns for p in shared_root().rglob("*") if p.is_file()}
    again = init_shared()
    after = {p: p.stat().st_mtime_ns for p in shared_root().rglob("*") if p.is_file()}
    assert again.installed == []
    assert again.created_dirs == []
    assert set(again.unchanged) >= SAMPLE_FILES
    assert before == after


def test_init_shared_keeps_a_users_edited_file_and_reports_it_skipped() -> None:
    init_shared()
    strategy = shared_root() / "strategies" / "ma_crossover.yaml"
    strategy.write_text("name: mine\n")
    result = init_shared()
    assert "strategies/ma_crossover.yaml" in result.skipped
    assert strategy.read_text() == "name: mine\n"


def test_init_shared_with_force_replaces_a_differing_file() -> None:
    init_shared()
    strategy = shared_root() / "strategies" / "ma_crossover.yaml"
    strategy.write_text("name: mine\n")
    result = init_shared(force=True)
    assert result.overwritten == ["strategies/ma_crossover.yaml"]
    assert "ma_crossover" in strategy.read_text()
    assert "mine" not in strategy.read_text()


def test_init_shared_never_touches_user_files_it_does_not_ship() -> None:
    init_shared()
    own = shared_root() / "data" / "TSLA_1h.csv"
    own.write_text("date,open,high,low,close,volume\n")
    model = shared_root() / "models" / "x.json"
    model.write_text("{}")
    init_shared(force=True)
    assert own.read_text() == "date,open,high,low,close,volume\n"
    assert model.read_text() == "{}"


def make_structured_dir(base: Path) -> Path:
    source = base / "mydata"
    (source / "data").mkdir(parents=True)
    (source / "strategies").mkdir()
    (source / "models").mkdir()
    (source / "data" / "TSLA_1h.csv").write_text("date,open,high,low,close,volume\n")
    (source / "strategies" / "s.yaml").write_text("name: s\n")
    (source / "models" / "m.json").write_text("{}")
    return source


def test_init_shared_from_structured_dir_hard_links_on_the_same_filesystem(
    tmp_path: Path,
) -> None:
    source = make_structured_dir(tmp_path)
    result = init_shared(source=source)
    assert sorted(result.installed) == ["data/TSLA_1h.csv", "models/m.json", "strategies/s.yaml"]
    assert sorted(result.linked) == sorted(result.installed)
    copied = shared_root() / "data" / "TSLA_1h.csv"
    assert os.path.samefile(copied, source / "data" / "TSLA_1h.csv")


def test_init_shared_from_another_filesystem_copies_via_a_temp_name(tmp_path: Path) -> None:
    # /dev/shm is a tmpfs: hard links to tmp_path fail there, so the copy path runs for real.
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs /dev/shm on another filesystem than tmp_path")
    import tempfile

    with tempfile.TemporaryDirectory(dir=shm) as other:
        source = make_structured_dir(Path(other))
        result = init_shared(source=source)
        copied = shared_root() / "data" / "TSLA_1h.csv"
        assert result.linked == []
        assert copied.read_bytes() == (source / "data" / "TSLA_1h.csv").read_bytes()
        assert not os.path.samefile(copied, source / "data" / "TSLA_1h.csv")
    leftovers = [p.name for p in shared_root().rglob(".*.tmp")]
    assert leftovers == []


def test_init_shared_from_flat_dir_sorts_files_by_type_and_reports_the_rest(
    tmp_path: Path,
) -> None:
    source = tmp_path / "flat"
    source.mkdir()
    (source / "AAPL_1d.csv").write_text("date,open,high,low,close,volume\n")
    (source / "fast.yml").write_text("name: fast\n")
    (source / "notes.txt").write_text("hello")
    result = init_shared(source=source)
    assert sorted(result.installed) == ["data/AAPL_1d.csv", "strategies/fast.yml"]
    assert result.ignored == ["notes.txt"]
    assert (shared_root() / "strategies" / "fast.yml").read_text() == "name: fast\n"


def test_init_shared_from_a_missing_dir_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match="not a directory"):
        init_shared(source=tmp_path / "nope")


def test_init_shared_refuses_when_a_subdir_name_is_taken_by_a_file() -> None:
    shared_root().mkdir(parents=True)
    (shared_root() / "data").write_text("oops")
    with pytest.raises(SandboxError, match="not a directory"):
        init_shared()


def test_cli_init_shared_prints_summary_and_json() -> None:
    runner = CliRunner()
    first = runner.invoke(cli, ["sandbox", "init-shared"])
    assert first.exit_code == 0, first.output
    assert "Shared dir" in first.stdout
    second = runner.invoke(cli, ["sandbox", "init-shared", "--json"])
    assert second.exit_code == 0
    payload = json.loads(second.stdout)
    assert payload["installed"] == []
    assert "data/AAPL_1d.csv" in payload["unchanged"]


def test_cli_init_shared_names_skipped_files_on_stderr() -> None:
    runner = CliRunner()
    runner.invoke(cli, ["sandbox", "init-shared"])
    (shared_root() / "strategies" / "ma_crossover.yaml").write_text("name: mine\n")
    result = runner.invoke(cli, ["sandbox", "init-shared"])
    assert result.exit_code == 0
    assert "skipped strategies/ma_crossover.yaml" in result.stderr
    assert "--force" in result.stderr


@pytest.mark.parametrize("kind", ["empty", "file", "missing"])
def test_cli_from_that_is_not_a_folder_is_one_line_and_exit_1(tmp_path: Path, kind: str) -> None:
    stray = tmp_path / "afile.csv"
    stray.write_text("date,open\n")
    raw = {"empty": "", "file": str(stray), "missing": str(tmp_path / "nope")}[kind]
    result = CliRunner().invoke(
        cli, ["sandbox", "init-shared", "--from", raw], catch_exceptions=False
    )
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: --from ")
    assert result.stderr.count("\n") == 1
    assert not (shared_root() / "data" / "afile.csv").exists()


@pytest.mark.parametrize("layout", ["flat", "structured"])
def test_symlinked_files_are_followed_and_broken_links_reported(
    tmp_path: Path, layout: str
) -> None:
    store = tmp_path / "store"
    store.mkdir()
    (store / "BIG_1d.csv").write_text("date,open,high,low,close,volume\n")
    source = tmp_path / "src"
    folder = source if layout == "flat" else source / "data"
    folder.mkdir(parents=True)
    (folder / "BIG_1d.csv").symlink_to(store / "BIG_1d.csv")
    (folder / "GONE_1d.csv").symlink_to(store / "missing.csv")

    result = init_shared(source=source)

    assert result.installed == ["data/BIG_1d.csv"]
    installed = shared_root() / "data" / "BIG_1d.csv"
    assert not installed.is_symlink()
    assert installed.read_text().startswith("date,")
    assert result.broken_links == ["GONE_1d.csv" if layout == "flat" else "data/GONE_1d.csv"]
    assert result.ignored == []
