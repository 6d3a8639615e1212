"""Two engines used from one process at once: each call names its own engine, so threads working
for instances on different engines (an `--all-instances` MCP server runs each tool call in its
own thread) never send a `docker` child to the other's engine.

The second engine is a Docker context of this test's own (in a private DOCKER_CONFIG) pointing
at the same local socket: what is proved is that every `docker` child carries the context of the
instance it works for, read back from real children (`docker … context show` prints the
context the docker CLI resolved) and from the argv recorded at the proc.run seam."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from ktrdr.cli.sandbox.base import proc
from ktrdr.cli.sandbox.engine import ownership
from ktrdr.cli.sandbox.engine import queries as engine
from ktrdr.cli.sandbox.engine.handle import Engine
from ktrdr.cli.sandbox.instances.locate import Instance
from ktrdr.cli.sandbox.overview import listing

ROUNDS = 6


def _instance(root: Path, context: str | None) -> Instance:
    instance_id = f"ktrdr--race-{uuid.uuid4().hex[:6]}"
    env = {"KTRDR_INSTANCE_ID": instance_id, "COMPOSE_PROJECT_NAME": instance_id}
    if context:
        env["KTRDR_DOCKER_CONTEXT"] = context
    return Instance(instance_id, 1, root, env, None, env)


@pytest.mark.timing
@pytest.mark.docker
def test_threads_for_instances_on_two_engines_each_reach_their_own(
    docker_engine: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "docker-config"
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    context = f"ktrdr-test-ctx-{uuid.uuid4().hex[:8]}"
    socket = proc.run(["docker", "context", "inspect", "--format", "{{.Endpoints.docker.Host}}"])
    proc.run(["docker", "context", "create", context, "--docker", f"host={socket.stdout.strip()}"])
    local, other = _instance(tmp_path / "a", None), _instance(tmp_path / "b", context)
    assert (local.engine.context, other.engine.context) == (None, context)

    seen: list[tuple[str, list[str]]] = []  # (thread name, argv) of every child started
    real_run = proc.run

    def recording_run(argv: Sequence[object], **kwargs: Any) -> proc.ProcResult:
        seen.append((threading.current_thread().name, [str(a) for a in argv]))
        return real_run(argv, **kwargs)

    monkeypatch.setattr(proc, "run", recording_run)
    shown: dict[str, set[str]] = {"local": set(), "other": set()}
    start = threading.Barrier(2)
    failures: list[BaseException] = []

    def work(name: str, instance: Instance) -> None:
        try:
            start.wait(timeout=30)
            for _ in range(ROUNDS):  # interleaved with the other thread's calls
                engine.ensure_engine(instance.engine)
                engine.ps(instance.engine, instance.instance_id)
                ownership.leftovers(instance.engine, instance.instance_id)
                listing.containers_snapshot_and_why(instance.engine)
                said = proc.run(instance.engine.argv("context", "show"), timeout=30)
                shown[name].add(said.stdout.strip())
        except BaseException as e:  # re-raised below, in the test's thread
            failures.append(e)

    threads = [
        threading.Thread(target=work, args=("local", local), name="local"),
        threading.Thread(target=work, args=("other", other), name="other"),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not failures, failures
    assert shown["other"] == {context}
    assert context not in shown["local"]
    # The queries name their instance in a label filter: each went to that instance's engine
    # (the engine check's own queries run on pool threads; their argv is checked by context).
    for instance, on_other in ((local, False), (other, True)):
        label = f"label=ktrdr.instance={instance.instance_id}"
        argvs = [argv for _, argv in seen if label in argv]
        assert len(argvs) >= 2 * ROUNDS
        for argv in argvs:
            assert (argv[1:3] == ["--context", context]) is on_other, argv
    contexts = {argv[2] for _, argv in seen if argv[:2] == ["docker", "--context"]}
    assert contexts == {context}
    assert any(who == "local" and "--context" not in argv for who, argv in seen)


def test_an_engine_check_is_kept_per_engine_value_and_only_when_it_passed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A lost engine is noticed by a long-lived process: a failed check is asked again."""
    from ktrdr.cli.sandbox.base.errors import DockerUnavailableError

    answers = iter([False, True])
    asked: list[Engine] = []

    def reachable(which: Engine) -> bool:
        asked.append(which)
        return next(answers)

    monkeypatch.setattr(engine, "engine_reachable", reachable)
    monkeypatch.setattr(engine, "compose_plugin_works", lambda which: True)
    monkeypatch.setattr(engine, "cli_installed", lambda: True)
    one = Engine("x")
    with pytest.raises(DockerUnavailableError):
        engine.ensure_engine(one)
    engine.ensure_engine(one)  # asked again: the failure was not kept
    engine.ensure_engine(one)  # the pass is kept for this value
    assert len(asked) == 2
    with pytest.raises(StopIteration):
        engine.ensure_engine(Engine("x"))  # another value asks itself
