"""The compose file's facts (stack_file): services and profiles, workers per type, one-shot
services; parsed once per file version; one clear error for a missing or broken file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ktrdr.cli.sandbox.base import stack_file
from ktrdr.cli.sandbox.base.errors import SandboxError

COMPOSE_TEXT = """
services:
  db:
    image: postgres
    labels: {ktrdr.instance: x}
  migrate:
    image: app
  backend:
    image: app
    depends_on:
      db: {condition: service_healthy}
      migrate: {condition: service_completed_successfully}
  backtest-worker-1:
    image: app
    labels:
      ktrdr.instance: x
      ktrdr.worker-type: backtest
  backtest-worker-2:
    image: app
    labels: ["ktrdr.instance=x", "ktrdr.worker-type=backtest"]
  training-worker-1:
    image: app
    deploy: {replicas: 2}
    labels: {ktrdr.worker-type: training}
  e2e-tests:
    image: app
    profiles: [e2e]
    labels: {ktrdr.worker-type: backtest}
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / stack_file.COMPOSE_FILE).write_text(COMPOSE_TEXT)
    return tmp_path


def test_worker_services_come_from_labels_in_either_form_and_skip_profiles(root: Path) -> None:
    assert stack_file.load(root).worker_services == {
        "backtest-worker-1": "backtest",
        "backtest-worker-2": "backtest",
        "training-worker-1": "training",
    }


def test_expected_workers_counts_replicas(root: Path) -> None:
    assert stack_file.load(root).expected_workers == {"backtest": 2, "training": 2}


def test_one_shot_services_are_those_waited_on_for_successful_completion(root: Path) -> None:
    assert stack_file.load(root).one_shot == {"migrate"}


def test_default_services_exclude_profiled_ones(root: Path) -> None:
    assert "e2e-tests" not in stack_file.load(root).default_services
    assert "e2e-tests" in stack_file.load(root).services


def test_an_unreadable_compose_file_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / stack_file.COMPOSE_FILE).write_text("services: [unclosed")
    with pytest.raises(SandboxError, match="not valid YAML"):
        stack_file.load(tmp_path)
    with pytest.raises(SandboxError, match="is missing: this checkout has no stack"):
        stack_file.load(tmp_path / "missing")
    (tmp_path / "a-dir" / stack_file.COMPOSE_FILE).mkdir(parents=True)
    with pytest.raises(SandboxError, match="cannot read"):
        stack_file.load(tmp_path / "a-dir")


def test_the_file_is_parsed_once_until_it_changes(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import yaml

    parses: list[object] = []
    real_load = yaml.load

    def counting_load(*args: object, **kwargs: object) -> object:
        parses.append(args)
        return real_load(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(yaml, "load", counting_load)
    path = root / stack_file.COMPOSE_FILE
    os.utime(path, ns=(1, 1))  # a version no other test made
    first = stack_file.load(root)
    assert stack_file.load(root) is first
    assert stack_file.load(root / ".") is first
    assert len(parses) == 1
    path.write_text(COMPOSE_TEXT.replace("replicas: 2", "replicas: 3"))
    assert stack_file.load(root).expected_workers == {"backtest": 2, "training": 3}
    assert len(parses) == 2


def test_facts_cannot_be_changed_by_a_caller(root: Path) -> None:
    facts = stack_file.load(root)
    with pytest.raises(TypeError):
        facts.worker_services["db"] = "backtest"  # type: ignore[index]


def test_short_lived_services_are_the_one_shot_and_the_on_demand_ones(root: Path) -> None:
    facts = stack_file.load(root)
    assert facts.on_demand == {"e2e-tests"}
    assert facts.short_lived == {"migrate", "e2e-tests"}


def test_without_a_readable_file_the_checked_in_services_are_assumed(tmp_path: Path) -> None:
    assert stack_file.load_or_fallback(tmp_path) == stack_file.fallback()
    assert stack_file.fallback().short_lived == {"migrate", "e2e-tests"}
    assert stack_file.fallback().one_shot == {"migrate"}
    assert not stack_file.fallback().worker_services


def test_the_fallback_agrees_with_the_checked_in_compose_file() -> None:
    checked_in = stack_file.load(Path(__file__).resolve().parents[3])
    assert checked_in.one_shot == stack_file.FALLBACK_ONE_SHOT
    assert checked_in.on_demand == stack_file.FALLBACK_ON_DEMAND
