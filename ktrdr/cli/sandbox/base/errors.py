"""Sandbox errors: one type for failures the user can act on (what failed, why, what to do)."""

from ktrdr.errors import ExitCode, KtrdrError


class SandboxError(KtrdrError):
    """An expected sandbox failure, rendered as one `Error: …` line and exit code 1."""


class DockerUnavailableError(SandboxError):
    """The Docker engine (or Compose v2) cannot be reached."""


class GateFailedError(SandboxError):
    """`up` / `resume` started the stack but the Startability Gate failed (exit code 3, so a
    script or an agent can tell it from a refusal to start)."""

    exit_code = ExitCode.GATE_FAILED
