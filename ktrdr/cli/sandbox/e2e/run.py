"""`make test-e2e`: run tests/e2e in the instance's own compose network.

The suite runs in a one-off `e2e-tests` container (`docker compose … --profile e2e run --rm`)
so it reaches the backend as http://backend:8000 of *this* project, never a localhost port that
may belong to another instance. The instance's `.sandbox/` is bind-mounted at /results, where
pytest writes JUnit XML that `ktrdr sandbox evidence` picks up.
"""

from __future__ import annotations

import shlex
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ktrdr.cli.sandbox.base import proc
from ktrdr.cli.sandbox.base.errors import SandboxError
from ktrdr.cli.sandbox.e2e.args import check_pytest_args
from ktrdr.cli.sandbox.engine import queries as engine
from ktrdr.cli.sandbox.home.instance import find_instance_root
from ktrdr.cli.sandbox.instances.locate import Instance, locate
from ktrdr.cli.sandbox.policy.enforcement import checked_model_file
from ktrdr.cli.sandbox.remote import instance as remote_instance
from ktrdr.cli.sandbox.remote import sync as remote_sync
from ktrdr.cli.sandbox.stack import compose

if TYPE_CHECKING:
    from ktrdr.cli.sandbox.remote.stack import RemotePlan

E2E_SERVICE = "e2e-tests"
E2E_TIMEOUT = 1800.0
RESULTS_DIR = Path(".sandbox") / "test-results"
JUNIT_NAME = "e2e-junit.xml"
CONTAINER_RESULTS = "/results"
NO_TESTS_COLLECTED = 5  # pytest's exit code


@dataclass(frozen=True)
class E2EResult:
    """A finished run: pytest's exit code and the summary of the JUnit XML this run wrote
    (run_e2e deletes the previous one first, so a file found afterwards is this run's)."""

    instance_id: str
    returncode: int
    junit_path: Path
    summary: dict[str, object] = field(default_factory=dict)

    @property
    def reason(self) -> str | None:
        """Why the run did not pass, or None when it did (e2e_verdict)."""
        return e2e_verdict(self.returncode, self.summary)

    @property
    def passed(self) -> bool:
        return self.reason is None

    def to_json(self) -> dict[str, object]:
        """Verdict, exit code, counts and failing tests (what an agent acts on)."""
        return {
            "instance_id": self.instance_id,
            "passed": self.passed,
            "reason": self.reason,
            "returncode": self.returncode,
            "junit_path": str(self.junit_path),
            **self.summary,
        }


def e2e_verdict(returncode: int, summary: dict[str, object]) -> str | None:
    """None only when pytest exited 0, its JUnit XML is there, at least one test ran and
    passed, and none failed or errored: an exit 0 alone can be a run that ran nothing."""
    failures, errors = summary.get("failures", 0), summary.get("errors", 0)
    broken = f"{failures} failed, {errors} errors"
    if returncode == NO_TESTS_COLLECTED:
        return "no tests ran (pytest exit 5: nothing collected; check -k, -m and the test paths)"
    if returncode != 0:
        return f"pytest exited {returncode} ({broken})"
    if summary.get("junit") != "ok":
        return "pytest exited 0 but this run wrote no JUnit XML: nothing shows that tests ran"
    if failures or errors:
        return f"pytest exited 0 but the JUnit XML records {broken}"
    if not summary.get("passed_tests"):
        return f"no test passed: the JUnit XML records {summary.get('tests', 0)} tests, none run"
    return None


def junit_summary(path: Path) -> dict[str, object]:
    """Counts and failing tests of a pytest JUnit XML file; `junit: missing` when pytest did
    not get as far as writing one (e.g. a bad argument)."""

    counts = {"tests": 0, "passed_tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    failing: list[dict[str, str]] = []
    try:
        root = ElementTree.parse(path).getroot()
    except (OSError, ElementTree.ParseError) as e:
        return {**counts, "failing": failing, "junit": f"missing: {e}"}
    for case in root.iter("testcase"):
        counts["tests"] += 1
        for outcome, key in (("failure", "failures"), ("error", "errors"), ("skipped", "skipped")):
            found = case.find(outcome)
            if found is None:
                continue
            counts[key] += 1
            if outcome != "skipped":
                failing.append(
                    {
                        "test": f"{case.get('classname', '')}::{case.get('name', '')}",
                        "outcome": outcome,
                        "message": (found.get("message") or "").strip()[:500],
                    }
                )
            break
        else:
            counts["passed_tests"] += 1
    return {**counts, "failing": failing, "junit": "ok"}


def require_running(instance: Instance) -> None:
    """Refuse (one line) unless the backend container of the instance is running."""
    engine.ensure_engine(instance.engine)
    containers = engine.ps(instance.engine, instance.instance_id)
    backend = [c for c in containers if c.service == "backend"]
    if not backend or not any(c.state == "running" for c in backend):
        state = backend[0].state if backend else "not created"
        raise SandboxError(
            f"instance {instance.instance_id} is not up (backend: {state}): start it with "
            "`ktrdr sandbox up`, then rerun `make test-e2e`"
        )


def e2e_argv(instance: Instance, pytest_args: list[str], *, model: Path | None = None) -> list[str]:
    """The one-off run (of the policy-checked `model` when given); the results dir is
    bind-mounted, except on a remote engine, where the override mounts a results volume that
    is pulled back afterwards."""
    results = (instance.root / RESULTS_DIR).absolute()
    mount = [] if instance.engine.remote else ["-v", f"{results}:{CONTAINER_RESULTS}"]
    pytest_argv = [
        "python",
        "-m",
        "pytest",
        "-c",
        "tests/e2e/pytest.ini",
        "--rootdir",
        "/app",
        f"--junitxml={CONTAINER_RESULTS}/{JUNIT_NAME}",
        *check_pytest_args(pytest_args).argv(),
    ]
    return [
        *compose.compose_argv(instance.engine, instance.root, instance.env, model=model),
        "--profile",
        "e2e",
        "run",
        "--rm",
        "--no-deps",
        "-T",
        *mount,
        E2E_SERVICE,
        *pytest_argv,
    ]


def run_e2e(
    *,
    start: Path,
    pytest_args: list[str] | None = None,
    on_line: Callable[[str], None] | None = None,
    notify: Callable[[str], None] | None = None,
    allow: frozenset[str] = frozenset(),
) -> E2EResult:
    """Run the suite in the instance's network; returns pytest's exit code. Its output goes to
    the terminal, or line by line to `on_line` when given. Arguments e2e/args.py does not
    accept are refused before anything else; the stack policy is checked before the run
    (`allow`: rules a person overrode)."""
    check_pytest_args(pytest_args or [])
    instance = locate(None, start, name_hint="").require_env(keys=())
    require_running(instance)
    say = notify or on_line or (lambda line: None)
    model = checked_model_file(instance, allow=allow, command="ktrdr sandbox test-e2e", notify=say)
    results = instance.root / RESULTS_DIR
    results.mkdir(parents=True, exist_ok=True)
    junit = results / JUNIT_NAME
    junit.unlink(missing_ok=True)  # never let evidence pick up a previous run's results
    remote_plan = _push_tests(instance, say)
    code = _run_suite(instance, e2e_argv(instance, pytest_args or [], model=model), on_line)
    if remote_plan is not None:
        remote_sync.pull_e2e_results(remote_plan, results)
    return E2EResult(instance.instance_id, code, junit, junit_summary(junit))


def _push_tests(instance: Instance, notify: Callable[[str], None]) -> RemotePlan | None:
    """A remote instance's tests (and sources, in case watch missed an edit) copied to the
    engine; its plan, or None for a local instance (it bind-mounts them)."""
    if not instance.remote:
        return None

    plan = remote_instance.plan(instance)
    report = remote_sync.prepare_e2e(plan)
    notify(f"Copied the tests to the engine: {report.files} files, {report.written} written")
    return plan


def _run_suite(instance: Instance, argv: list[str], on_line: Callable[[str], None] | None) -> int:
    env = compose.compose_env(instance.engine, instance.env, instance.root)
    what = f"E2E suite ({instance.instance_id})"
    if on_line is not None:
        return proc.stream(
            argv, on_line=on_line, cwd=instance.root, env=env, timeout=E2E_TIMEOUT, what=what
        )
    outcome = proc.run(
        argv,
        cwd=instance.root,
        env=env,
        timeout=E2E_TIMEOUT,
        check=False,
        capture=False,
        what=what,
    )
    return outcome.returncode


def db_env_exports(*, start: Path) -> str:
    """`export` lines for tests that talk to the instance's PostgreSQL from the host; empty
    outside an instance (tests then use their own database)."""
    root = find_instance_root(start)
    if root is None:
        return ""
    env = locate(None, root, name_hint="").env
    values = {
        "KTRDR_DB_HOST": "127.0.0.1",
        "KTRDR_DB_PORT": env.get("KTRDR_DB_PORT", ""),
        "KTRDR_DB_PASSWORD": env.get("KTRDR_DB_PASSWORD", ""),
        "KTRDR_INSTANCE_ID": env.get("KTRDR_INSTANCE_ID", ""),
    }
    return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in values.items() if v)
