"""The slots this machine's `create` and `init` pick from: `KTRDR_SLOTS` (`FIRST-LAST`, default
`1-10`, within 1..99), one setting for every home on the machine.

Only automatic allocation (and its hints) reads the range. Every slot 0..99 has ports
(slots/ports.py), so `--slot N` takes any sandbox slot, and an instance made under another range (a
test run, an earlier setting) stays valid. Homes with different ranges still never share a slot:
the allocation lock and the claim markers are machine-wide (slots/machine_slots.py). The test suite
sets its own range (tests/support/slots.py) so it never takes a slot of the user's sandboxes.
"""

from __future__ import annotations

import re

from ktrdr.cli import settings
from ktrdr.cli.sandbox.base.errors import SandboxError
from ktrdr.cli.sandbox.slots.ports import FIRST_SANDBOX_SLOT, LAST_SLOT, SEED_LAST_SLOT

DEFAULT = f"{FIRST_SANDBOX_SLOT}-{SEED_LAST_SLOT}"
_RANGE = re.compile(r"\s*(\d+)\s*-\s*(\d+)\s*")


def parse(text: str) -> range:
    """`FIRST-LAST` as the range of slots it names; SandboxError when it is not one."""
    match = _RANGE.fullmatch(text)
    first, last = (int(match.group(1)), int(match.group(2))) if match else (0, -1)
    if not FIRST_SANDBOX_SLOT <= first <= last <= LAST_SLOT:
        raise SandboxError(
            f"KTRDR_SLOTS={text!r} is not a slot range: use FIRST-LAST within "
            f"{FIRST_SANDBOX_SLOT}..{LAST_SLOT}, e.g. 1-50 (unset: {DEFAULT})"
        )
    return range(first, last + 1)


def configured() -> range:
    """The slots `create` and `init` take the lowest free one of."""
    return parse(settings.get("KTRDR_SLOTS", DEFAULT))


def describe(slots: range) -> str:
    return f"{slots.start}..{slots.stop - 1}"
