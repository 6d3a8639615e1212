from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ktrdr.api.settings import ApiSettings
from ktrdr.db.settings import conninfo_from_env
from ktrdr.errors import KtrdrError
from ktrdr.workers.settings import WorkerSettings


def test_database_url_wins_over_the_separate_variables() -> None:
    env = {"DATABASE_URL": "postgresql://a@b/c", "KTRDR_DB_HOST": "ignored"}

    assert conninfo_from_env(env) == "postgresql://a@b/c"


def test_separate_variables_default_to_the_compose_db_service() -> None:
    conninfo = conninfo_from_env({"KTRDR_DB_PASSWORD": "s3cret"})

    assert "host=db" in conninfo
    assert "port=5432" in conninfo
    assert "dbname=ktrdr" in conninfo
    assert "user=ktrdr" in conninfo
    assert "password=s3cret" in conninfo


def test_api_settings_read_instance_and_heartbeat_timeout() -> None:
    settings = ApiSettings.from_env(
        {"KTRDR_INSTANCE_ID": "ktrdr--x", "KTRDR_HEARTBEAT_TIMEOUT_S": "30"}
    )

    assert settings.instance_id == "ktrdr--x"
    assert settings.heartbeat_timeout_s == 30.0
    assert ApiSettings.from_env({}).heartbeat_timeout_s == 15.0
    assert ApiSettings.from_env({}).instance_id is None


@pytest.mark.parametrize("value", ["abc", "0", "-3"])
def test_a_bad_heartbeat_timeout_is_a_clear_error(value: str) -> None:
    with pytest.raises(KtrdrError, match="KTRDR_HEARTBEAT_TIMEOUT_S"):
        ApiSettings.from_env({"KTRDR_HEARTBEAT_TIMEOUT_S": value})


def test_worker_settings_need_a_known_type() -> None:
    with pytest.raises(KtrdrError, match="KTRDR_WORKER_TYPE='mining'"):
        WorkerSettings.from_env({"KTRDR_WORKER_TYPE": "mining"})

    settings = WorkerSettings.from_env(
        {"KTRDR_WORKER_TYPE": "training", "KTRDR_WORKER_ID": "training-worker-2"}
    )
    assert settings.worker_id == "training-worker-2"
    assert settings.api_url == "http://backend:8000"
    assert settings.shared_root == Path("/shared")


def _migrate(database_url: str, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url, **extra}
    return subprocess.run(
        [sys.executable, "-m", "ktrdr.db.migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_migrate_entry_point_applies_once_then_nothing(database_url: str) -> None:
    first = _migrate(database_url)
    second = _migrate(database_url)

    assert first.returncode == 0, first.stderr
    assert "applied 0001_schema" in first.stdout
    assert second.returncode == 0
    assert "migrations: 0 applied" in second.stdout


def test_migrate_entry_point_gives_up_with_one_line_when_the_database_is_unreachable() -> None:
    result = _migrate("postgresql://x@127.0.0.1:9/x?connect_timeout=1", KTRDR_DB_WAIT_S="1")

    assert result.returncode == 1
    assert result.stderr.startswith("Error: database not reachable after 1s")
    assert "Traceback" not in result.stderr
