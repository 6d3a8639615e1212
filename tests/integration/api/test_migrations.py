from __future__ import annotations

import psycopg
import pytest

from ktrdr.db.migrate import Migration, apply_migrations, packaged_migrations


def test_packaged_migrations_are_ordered_by_version() -> None:
    versions = [m.version for m in packaged_migrations()]
    assert versions == sorted(versions)
    assert versions[0] == "0001_schema"


def test_first_run_creates_schema_and_seeds_reference_data(database_url: str) -> None:
    report = apply_migrations(database_url)

    assert report.applied == [m.version for m in packaged_migrations()]
    with psycopg.connect(database_url) as conn:
        types = conn.execute("SELECT name, worker_type FROM operation_types ORDER BY name")
        assert types.fetchall() == [("backtest", "backtest"), ("training", "training")]
        symbols = conn.execute("SELECT symbol FROM symbols ORDER BY symbol").fetchall()
        assert [s for (s,) in symbols] == ["AAPL", "EURUSD", "MSFT"]


def test_second_run_applies_nothing_and_keeps_data(database_url: str) -> None:
    apply_migrations(database_url)
    with psycopg.connect(database_url) as conn:
        conn.execute("INSERT INTO symbols VALUES ('TSLA', 'equity', ARRAY['1d'])")

    report = apply_migrations(database_url)

    assert report.applied == []
    assert report.already_applied == [m.version for m in packaged_migrations()]
    with psycopg.connect(database_url) as conn:
        count = conn.execute("SELECT count(*) FROM symbols").fetchone()
        recorded = conn.execute("SELECT count(*) FROM schema_migrations").fetchone()
    assert count == (4,)
    assert recorded == (len(packaged_migrations()),)


def test_a_new_migration_is_applied_on_top_of_existing_ones(database_url: str) -> None:
    apply_migrations(database_url)
    extra = Migration("9999_extra", "CREATE TABLE extra (id int)")

    report = apply_migrations(database_url, [*packaged_migrations(), extra])

    assert report.applied == ["9999_extra"]


def test_a_failing_migration_is_rolled_back_and_not_recorded(database_url: str) -> None:
    broken = Migration("0001_broken", "CREATE TABLE half (id int); SELECT no_such_function()")

    with pytest.raises(psycopg.errors.UndefinedFunction):
        apply_migrations(database_url, [broken])

    with psycopg.connect(database_url) as conn:
        tables = conn.execute("SELECT to_regclass('half')").fetchone()
        recorded = conn.execute("SELECT count(*) FROM schema_migrations").fetchone()
    assert tables == (None,)
    assert recorded == (0,)
