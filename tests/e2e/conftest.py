"""E2E fixtures: talk to this instance's backend through the compose network only."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest

from tests.support.e2e_api import start_operation, wait_for_operation


@pytest.fixture(scope="session")
def api_url() -> str:
    url = os.environ.get("KTRDR_E2E_API_URL")
    if not url:
        pytest.fail("KTRDR_E2E_API_URL is not set: run the suite with `make test-e2e`")
    host = urlparse(url).hostname or ""
    # From inside a container localhost is the container itself; from a host it may be
    # another instance's stack. Either way the suite would test the wrong thing.
    if host in {"localhost", "::1"} or host.startswith("127."):
        pytest.fail(f"KTRDR_E2E_API_URL={url} points at localhost; use http://backend:8000")
    return url.rstrip("/")


@pytest.fixture(scope="session")
def instance_id() -> str:
    value = os.environ.get("KTRDR_INSTANCE_ID")
    if not value:
        pytest.fail("KTRDR_INSTANCE_ID is not set in the e2e-tests container")
    return value


@pytest.fixture(scope="session")
def shared_root() -> Path:
    return Path(os.environ.get("KTRDR_SHARED_DIR", "/shared"))


@pytest.fixture(scope="session")
def api(api_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{api_url}/api/v1", timeout=15.0) as client:
        yield client


@pytest.fixture(scope="module")
def backtest(api: httpx.Client) -> dict[str, Any]:
    """One backtest of the packaged sample (AAPL 1d, ma_crossover), shared by the module."""
    operation_id = start_operation(
        api, "backtest", {"symbol": "AAPL", "timeframe": "1d", "strategy": "ma_crossover"}
    )
    return wait_for_operation(api, operation_id)
