"""Runs last (file name): the whole suite left another home's sandboxes untouched.

The bystanders (tests/support/bystanders.py, enabled by KTRDR_BYSTANDERS=1 as `make test` does)
were set up before the first test: `by-up` running, `by-down` stopped, each with a marker row in its
database. Whatever the suite did to its own homes' instances and to the engine (destroy, prune,
doctor --fix, the harness's sweep by label), by-up's containers must still be the same ones,
never restarted, its network the same, both instances' volumes the same, by-down still without
containers, and both databases must still hold their marker rows.
"""

from __future__ import annotations

import os

import pytest

from tests.support.bystanders import DOWN, ENV_VAR, UP, UP_TIMEOUT, Bystanders, enabled


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; required when CI is set and {ENV_VAR}=1", pytrace=False)
    pytest.skip(reason)


def _bystanders(request: pytest.FixtureRequest) -> Bystanders:
    if not enabled():
        pytest.skip(f"bystanders not enabled: set {ENV_VAR}=1 (as `make test` does)")
    try:
        state = request.getfixturevalue("bystanders")
    except pytest.FixtureLookupError:
        state = None
    if not isinstance(state, Bystanders):
        _skip_or_fail("the bystanders plugin (tests/support/bystanders.py) is not registered")
    assert isinstance(state, Bystanders)
    if state.unavailable is not None:
        _skip_or_fail(f"bystanders not set up: {state.unavailable}")
    if state.error is not None:
        pytest.fail(f"the bystanders could not be set up: {state.error}", pytrace=False)
    return state


def test_suite_left_other_homes_sandboxes_untouched(request: pytest.FixtureRequest) -> None:
    bystanders = _bystanders(request)
    before = bystanders.snapshot
    assert before is not None
    now = bystanders.take_snapshot()
    assert now.containers == before.containers, f"{UP}'s containers changed (restarted/removed?)"
    assert now.networks == before.networks, f"{UP}'s network changed"
    assert now.volumes == before.volumes, "the bystander home's volumes changed"
    assert bystanders.marker_present(UP), f"{UP}'s marker row is gone"
    assert bystanders.containers(DOWN) == {}, f"{DOWN} was started by someone"

    bystanders.ktrdr("sandbox", "up", cwd=bystanders.path_of(DOWN), timeout=UP_TIMEOUT)
    assert bystanders.marker_present(DOWN), f"{DOWN}'s data did not survive"
    # Names only: starting containers on a volume changes its CreatedAt (see Snapshot).
    assert set(bystanders.volumes()) == set(before.volumes), f"`up` of {DOWN} made new volumes"
