"""Sandbox errors: one type for failures the user can act on (what failed, why, what to do)."""

from ktrdr.errors import KtrdrError


class SandboxError(KtrdrError):
    """An expected sandbox failure, rendered as one `Error: …` line and exit code 1."""


class DockerUnavailableError(SandboxError):
    """The Docker engine (or Compose v2) cannot be reached."""
