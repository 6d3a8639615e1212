"""Where KTRDR keeps its state: $KTRDR_HOME, default ~/.ktrdr (registry, shared data)."""

from __future__ import annotations

import os
from pathlib import Path


def ktrdr_home() -> Path:
    configured = os.environ.get("KTRDR_HOME")
    return Path(configured).expanduser() if configured else Path.home() / ".ktrdr"
