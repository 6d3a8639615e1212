"""Screens: the exact text a user sees, checked against the examples in docs/sandbox.md.

A ```text block preceded by `<!-- screen: ID -->` is a terminal session: each `$ ktrdr …` line
is run for real (a git repo under tmp_path/work standing for the doc's /work, this test's
KTRDR_HOME, CliRunner; stand-ins only for the Docker engine and the host's port probe) and what
it prints (stdout and stderr, interleaved as on a terminal) must be the lines below it. SETUPS
says, per screen, which situation the session starts in. Only what legitimately varies is
normalised (`as_the_docs_show`, `comparable`), so a changed word fails here and docs and output
cannot drift apart. Screens that need a running stack are not marked.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from ktrdr.cli.main import cli
from ktrdr.cli.sandbox.base import host
from ktrdr.cli.sandbox.commands.gate_render import PASS_MARK, check_line, render_result
from ktrdr.cli.sandbox.doctor import diagnose as doctor
from ktrdr.cli.sandbox.gate.checks import TITLES, CheckResult
from ktrdr.cli.sandbox.gate.report import GateReport
from tests.support import slots
from tests.support.docker_standin import DockerStandIn
from tests.support.git_repos import git, make_repo

DOC = Path(__file__).resolve().parents[3] / "docs" / "sandbox.md"
SCREEN_BLOCK = re.compile(r"<!-- screen: ([\w-]+) -->\n```text\n(.*?)```", re.DOTALL)
# What the doc shows where the test has its own engine socket (one that is not there).
DOC_ENGINE_HOST = "unix:///var/run/docker.sock"


@dataclass(frozen=True)
class Step:
    command: str  # as typed after `$ `
    expected: str  # the lines the doc shows under it


def doc_screens() -> dict[str, list[Step]]:
    screens: dict[str, list[Step]] = {}
    for screen_id, body in SCREEN_BLOCK.findall(DOC.read_text(encoding="utf-8")):
        assert screen_id not in screens, f"screen {screen_id} is marked twice in {DOC}"
        steps: list[Step] = []
        for line in body.splitlines():
            if line.startswith("$ "):
                steps.append(Step(line[2:], ""))
            else:
                assert steps, f"screen {screen_id}: output before the first `$ ` line"
                steps[-1] = Step(steps[-1].command, steps[-1].expected + line + "\n")
        screens[screen_id] = steps
    return screens


def as_the_docs_show(output: str, *, work: Path, engine_host: str) -> str:
    """The command's output with the test's own places put back to the doc's: the tmp dir
    standing for /work, and the engine socket."""
    return output.replace(engine_host, DOC_ENGINE_HOST).replace(str(work), "/work")


def comparable(text: str) -> str:
    """What both sides may differ in: the clock, and the padding of table columns (their
    width follows the lengths of the real paths)."""
    text = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "<UTC time>", text)
    return re.sub(r" {2,}", "  ", text)


class TerminalLikeRunner(CliRunner):
    """CliRunner whose stdout is line-buffered as on a terminal, so stdout and stderr lines
    interleave in `output` in the order a user sees them."""

    @contextlib.contextmanager
    def isolation(self, *args: Any, **kwargs: Any) -> Iterator[tuple[Any, Any, Any]]:
        with super().isolation(*args, **kwargs) as streams:
            for stream in (sys.stdout, sys.stderr):
                assert isinstance(stream, io.TextIOWrapper)
                stream.reconfigure(line_buffering=True)
            yield streams


# --- the situation each screen starts in ----------------------------------------------------


def ktrdr(*args: str) -> str:
    """Runs a setup step that the screen does not show; it must succeed."""
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def in_checkout(work: Path, name: str = "ktrdr") -> Path:
    """A fresh clone at /work/<name>, not an instance yet."""
    return make_repo(work / name)


def with_instance_feat_a(work: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    repo = in_checkout(work)
    monkeypatch.chdir(repo)
    ktrdr("sandbox", "create", "feat-a")
    return repo


def with_branch_feat_b(work: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    repo = with_instance_feat_a(work, monkeypatch)
    git(repo, "branch", "feat-b")
    return repo


def with_instance_demo_of_main(work: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    repo = in_checkout(work, "main")
    monkeypatch.chdir(repo)
    ktrdr("sandbox", "create", "demo")
    return repo


def on_a_roomy_host(work: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clone on a host with disk, memory and inotify to spare (stand-ins for /proc and the
    disk check), so only what the screen is about shows up."""
    proc = work.parent / "proc-stand-in"
    (proc / "inotify").mkdir(parents=True)
    (proc / "inotify" / "max_user_watches").write_text("524288\n")
    (proc / "inotify" / "max_user_instances").write_text("1024\n")
    (proc / "meminfo").write_text("MemTotal: 25000000 kB\nMemAvailable: 20000000 kB\n")
    roomy = host.HostPaths(meminfo=proc / "meminfo", inotify_dir=proc / "inotify")
    monkeypatch.setattr(doctor, "HostPaths", lambda: roomy)
    monkeypatch.setattr(host, "MIN_FREE_DISK", 0)
    return in_checkout(work)


SETUPS: dict[str, Callable[[Path, pytest.MonkeyPatch], Path]] = {
    "create": lambda work, _: in_checkout(work),
    "create-refusals": with_branch_feat_b,
    "init": lambda work, _: in_checkout(work, "main"),
    "list-empty": lambda work, _: in_checkout(work),
    "not-started": with_instance_feat_a,
    "outside-an-instance": lambda work, _: in_checkout(work),
    "mcp-unpinned": lambda work, _: in_checkout(work),
    "evidence-missing-dir": with_instance_feat_a,
    "destroy": with_instance_demo_of_main,
    "doctor-no-engine": on_a_roomy_host,
}


# --- the screens ----------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _every_port_free(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stand-in probe: the doc's machine has nothing on the slots' ports (this one may run
    stacks of its own, which would move the slots shown)."""
    monkeypatch.setattr("ktrdr.cli.sandbox.provision.allocation.port_in_use", lambda port: False)
    slots.use_the_default_range(monkeypatch)


def run_step(command: str, *, work: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, int]:
    words = shlex.split(command, comments=True)
    if words[0] == "cd":
        monkeypatch.chdir(words[1].replace("/work", str(work), 1))
        return "", 0
    assert words[0] == "ktrdr", f"a screen runs only ktrdr and cd, not {command!r}"
    result = TerminalLikeRunner().invoke(cli, words[1:])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a bug, not a screen: keep its traceback
    return result.output, result.exit_code


@pytest.mark.parametrize("screen_id", sorted(SETUPS))
def test_the_doc_shows_what_the_command_prints(
    screen_id: str,
    tmp_path: Path,
    docker: DockerStandIn,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    steps = doc_screens().get(screen_id)
    assert steps, f"docs/sandbox.md has no block marked <!-- screen: {screen_id} -->"
    work = tmp_path / "work"
    monkeypatch.chdir(SETUPS[screen_id](work, monkeypatch))
    engine_host = os.environ["DOCKER_HOST"]  # set by tests/unit/conftest.py
    for step in steps:
        output, exit_code = run_step(step.command, work=work, monkeypatch=monkeypatch)
        shown = as_the_docs_show(output, work=work, engine_host=engine_host)
        assert comparable(shown) == comparable(step.expected), f"$ {step.command}"
        if any(line.startswith("Error: ") for line in step.expected.splitlines()):
            assert exit_code == 1, f"$ {step.command}: an Error line exits 1"


def test_every_marked_screen_is_checked() -> None:
    assert sorted(doc_screens()) == sorted(SETUPS)


# --- a screen that needs a running stack: only its structure, from the renderer ---------------


def test_the_quick_starts_passed_gate_is_what_the_renderer_prints_for_those_checks(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The gate lines of `make demo` in the quick start cannot be produced without an engine;
    rebuilt from their own data (title, summary, time) through check_line and render_result,
    they must come out as the doc shows them."""
    doc = DOC.read_text(encoding="utf-8")
    shown = doc[doc.index("Starting instance: main--demo") : doc.index("demo: done in")]
    check_lines = [line for line in shown.splitlines() if line.startswith(f"  {PASS_MARK} ")]
    keys = {title: key for key, title in TITLES.items()}
    assert sorted(keys) == sorted(re.sub(r" \(.*", "", line[4:]) for line in check_lines)
    for line in check_lines:
        parts = re.fullmatch(rf"  {PASS_MARK} (.+?)(?: \((.+)\))? \((\d+\.\d)s\)", line)
        assert parts, f"not a check line: {line!r}"
        title, detail, seconds = parts.groups()
        check = CheckResult(keys[title], title, 60, "passed", detail or "", float(seconds))
        assert f"  {check_line(check)}" == line

    verdict = shown[shown.index("Startability Gate:") :]
    urls = dict(re.findall(r"^  (API|Grafana): (\S+)$", verdict, re.MULTILINE))
    passed = GateReport(
        instance_id="main--demo",
        slot=1,
        result="passed",
        started_at="t0",
        finished_at="t1",
        duration_s=7.3,
        timeout_s=300.0,
        checks=[],
        containers=[],
        urls={"api_docs": urls["API"], "grafana": urls["Grafana"]},
    )
    render_result(passed, report_file="unused when passed")
    assert capsys.readouterr().out == verdict
