"""The one place the `docker compose` argv is built, and the commands run through it: up
(blocking, or in the background for the gate), stop, down, logs.

Questions asked of the engine directly (container states by label, the engine check, who owns
what) live in engine/queries.py and engine/ownership.py; the compose file's facts in
base/stack_file.py.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from ktrdr.cli import settings
from ktrdr.cli.sandbox.base import proc
from ktrdr.cli.sandbox.base.errors import SandboxError
from ktrdr.cli.sandbox.base.stack_file import COMPOSE_FILE, override_args
from ktrdr.cli.sandbox.engine.handle import Engine
from ktrdr.cli.sandbox.engine.ownership import remove_by_label
from ktrdr.cli.sandbox.engine.queries import QUERY_TIMEOUT, ensure_engine, ps, unpause
from ktrdr.cli.sandbox.slots.ports import ports_for_slot
from ktrdr.envfile import SANDBOX_ENV_FILENAME, read_env_file
from ktrdr.errors import KtrdrError

if TYPE_CHECKING:
    from ktrdr.cli.sandbox.instances.locate import Instance

OFFLINE_ENV_FILE = "docker/images-offline.env"
UP_TIMEOUT = 900.0
BUILD_TIMEOUT = 3600.0


def images_mode(env: Mapping[str, str]) -> str:
    """`offline` or `upstream`, as the instance's env file says: the shell's KTRDR_IMAGES only
    chooses the mode of a new instance (create/init), so one instance never flips between image
    sets depending on who runs `up`."""
    return (env.get("KTRDR_IMAGES") or "upstream").strip()


def images_mismatch(env: Mapping[str, str]) -> str | None:
    """A warning when the shell exports another KTRDR_IMAGES than the instance uses."""
    wanted = settings.get("KTRDR_IMAGES").strip()
    used = images_mode(env)
    if not wanted or wanted == used:
        return None
    return (
        f"KTRDR_IMAGES={wanted} is exported, but this instance uses {used} images (its "
        f".env.sandbox decides); to switch, set KTRDR_IMAGES={wanted} in its .env.sandbox and "
        "run `ktrdr sandbox up` again (volumes are kept)"
    )


def project_of(env: Mapping[str, str]) -> str:
    """The compose project named by the instance's env file (instance id + home id)."""
    project = env.get("COMPOSE_PROJECT_NAME", "")
    if not project:
        raise SandboxError(
            f"{SANDBOX_ENV_FILENAME} has no COMPOSE_PROJECT_NAME: run `ktrdr sandbox doctor --fix`"
        )
    return project


def compose_argv(
    engine: Engine,
    root: Path,
    env: Mapping[str, str],
    *,
    override: bool = True,
    model: Path | None = None,
) -> list[str]:
    """`docker [--context CTX] compose -p PROJECT --env-file /dev/null -f compose file`, plus a
    remote instance's override (volumes instead of bind mounts) unless `override` is False (reading
    the binds it replaces). The variables come from `compose_env`: `--env-file /dev/null`
    keeps compose from reading the worktree's `.env.sandbox` or `.env`, which an agent can
    edit (a COMPOSE_PROJECT_NAME or port there would reach another instance). With `model`
    (the policy-checked resolved model, overrides included), compose runs that file instead."""
    argv = engine.argv("compose", "-p", project_of(env), "--env-file", os.devnull)
    if model is not None:
        return [*argv, "-f", str(model), "--project-directory", str(root)]
    argv += ["-f", str(root / COMPOSE_FILE)]
    if override and engine.remote:
        argv += override_args(root)
    return [*argv, "--project-directory", str(root)]


OFFLINE_IMAGE_KEYS = (
    "KTRDR_APP_IMAGE",
    "KTRDR_PYTHON_BASE_IMAGE",
    "KTRDR_POSTGRES_IMAGE",
    "KTRDR_PROMETHEUS_IMAGE",
    "KTRDR_GRAFANA_IMAGE",
    "KTRDR_JAEGER_IMAGE",
)


def offline_images(root: Path) -> dict[str, str]:
    """The offline image names from the checkout's docker/images-offline.env: only the image
    keys, so the file cannot set anything else compose reads (a project name, a host)."""

    path = root / OFFLINE_ENV_FILE
    try:
        values = read_env_file(path)
    except KtrdrError as e:
        raise SandboxError(f"{e}; this instance uses offline images, which it names") from e
    return {k: values[k] for k in OFFLINE_IMAGE_KEYS if values.get(k)}


def compose_env(engine: Engine, env: Mapping[str, str], root: Path | None = None) -> dict[str, str]:
    """The process environment for compose: the shell's, with the instance's values (`env`,
    the home's record for a registered instance) on top, so neither an exported variable nor
    an edited file points this instance at another's project or ports. For offline images,
    the image names from `root`'s offline env file. A remote instance's stack publishes its
    slot's ports on the remote (`env` holds the local ends of the forwards): those are given
    here instead."""
    values = {**os.environ, **env}
    if root is not None and images_mode(env) == "offline":
        values.update(offline_images(root))
    if engine.remote and env.get("KTRDR_SLOT", "").isdigit():
        values.update(ports_for_slot(int(env["KTRDR_SLOT"])).env_variables())
    return values


def _compose(
    instance: Instance,
    args: list[str],
    *,
    timeout: float | None = QUERY_TIMEOUT,
    check: bool = True,
    capture: bool = True,
    what: str | None = None,
    model: Path | None = None,
) -> proc.ProcResult:
    return proc.run(
        [*compose_argv(instance.engine, instance.root, instance.env, model=model), *args],
        cwd=instance.root,
        env=compose_env(instance.engine, instance.env, instance.root),
        timeout=timeout,
        check=check,
        capture=capture,
        what=what or f"docker compose {args[0]} ({instance.instance_id})",
    )


def up(instance: Instance, *, model: Path, build: bool = False) -> None:
    """`up -d` (+ `--build`) of the policy-checked `model`: with `start`, the only code paths
    that start an instance's containers."""
    ensure_engine(instance.engine)
    args = ["up", "-d", "--remove-orphans"]
    if build:
        args.append("--build")
    _compose(
        instance,
        args,
        timeout=BUILD_TIMEOUT if build else UP_TIMEOUT,
        what=f"starting instance {instance.instance_id}",
        model=model,
    )


class StartingStack:
    """`compose up -d` running in the background, so the gate can watch the containers while
    compose starts them, and stop compose when the gate has already seen a crash."""

    def __init__(self, instance: Instance, *, model: Path, build: bool = False) -> None:
        args = ["up", "-d", "--remove-orphans", *(["--build"] if build else [])]
        self.instance_id = instance.instance_id
        self._process = proc.spawn(
            [*compose_argv(instance.engine, instance.root, instance.env, model=model), *args],
            cwd=instance.root,
            env=compose_env(instance.engine, instance.env, instance.root),
        )
        self._stderr = ""
        self._thread = threading.Thread(target=self._wait, name="compose-up", daemon=True)
        self._thread.start()

    def _wait(self) -> None:
        _, self._stderr = self._process.communicate()

    def done(self) -> bool:
        return not self._thread.is_alive()

    def error(self) -> str | None:
        """None while running or after success; else one line with the tail of stderr."""
        if not self.done() or self._process.returncode == 0:
            return None
        return (
            f"starting instance {self.instance_id} failed (exit {self._process.returncode}): "
            f"{proc.stderr_tail(self._stderr)}"
        )

    def wait(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def cancel(self) -> None:
        """Stop compose (SIGTERM, then SIGKILL); the containers it started stay as they are."""
        if self.done():
            return
        self._process.terminate()
        self._thread.join(10)
        if not self.done():
            self._process.kill()
            self._thread.join(10)


def start(instance: Instance, *, model: Path, build: bool = False) -> StartingStack:
    """Begin `up -d` of the checked `model` in the background (see StartingStack); `up` is the
    blocking form."""
    ensure_engine(instance.engine)
    return StartingStack(instance, model=model, build=build)


def stop(instance: Instance) -> None:
    ensure_engine(instance.engine)
    _compose(instance, ["stop"], timeout=180, what=f"stopping instance {instance.instance_id}")


def down(engine: Engine, instance_id: str, instance: Instance | None, *, volumes: bool) -> None:
    """`down [-v] --remove-orphans`; without an instance, or when its directory, env file or
    compose file is gone, removes the containers (and volumes, networks) carrying the instance
    label directly."""
    ensure_engine(engine)
    unpause(engine, ps(engine, instance_id))  # a frozen container cannot take the stop signal
    if (
        instance is not None
        and instance.env
        and (instance.root / COMPOSE_FILE).is_file()
        and instance.env_path.is_file()
    ):
        # Every profile: the e2e service's volumes (a remote instance's tests) go too.
        args = ["--profile", "*", "down", "--remove-orphans", "--timeout", "10"]
        if volumes:
            args.append("-v")
        try:
            _compose(instance, args, timeout=300, what=f"removing instance {instance_id}")
        except SandboxError:
            if not remove_by_label(engine, instance_id, volumes=volumes):
                raise
            return
    remove_by_label(engine, instance_id, volumes=volumes)


def logs(instance: Instance, *, service: str | None, follow: bool, tail: int) -> int:
    """`docker compose logs` inheriting the terminal; returns its exit code."""
    ensure_engine(instance.engine)
    args = ["logs", "--tail", str(tail)]
    if follow:
        args.append("--follow")
    if service:
        args.append(service)
    result = _compose(instance, args, timeout=None, check=False, capture=False)
    return result.returncode


def log_text(instance: Instance, *, service: str | None, tail: int) -> str:
    """The last `tail` lines per service as text (for callers that own stdout, e.g. MCP)."""
    ensure_engine(instance.engine)
    args = ["logs", "--no-color", "--tail", str(tail), *([service] if service else [])]
    return _compose(instance, args, timeout=QUERY_TIMEOUT).stdout
