"""ktrdr.api.server: one process serving, hot reload by re-exec (real processes, real files, real
sockets on 127.0.0.1), and the access log without polls."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from email.utils import parsedate_to_datetime
from pathlib import Path

import httpx
import pytest

from ktrdr.api.observability import quiet_polled_requests
from tests.support.api_server import free_port
from tests.support.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
linux_only = pytest.mark.skipif(sys.platform != "linux", reason="inotify and /proc: Linux only")

APP = """
import os

VERSION = "{version}"


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({{"type": "lifespan.startup.complete"}})
            else:
                await send({{"type": "lifespan.shutdown.complete"}})
                return
    body = f"{{VERSION}} {{os.getpid()}}".encode()
    await send({{"type": "http.response.start", "status": 200, "headers": []}})
    await send({{"type": "http.response.body", "body": body}})
"""
SERVE = (
    "import sys; from pathlib import Path; from ktrdr.api.server import serve; "
    "serve('appmod:app', host='127.0.0.1', port=int(sys.argv[1]), "
    "reload_dir=Path(sys.argv[2]) if sys.argv[2] else None, log_level='info')"
)


class Served:
    def __init__(self, src: Path, *, reload: bool) -> None:
        self.src, self.port = src, free_port()
        self.log = src.parent / "server.log"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(src)])}
        self.process = subprocess.Popen(
            [sys.executable, "-c", SERVE, str(self.port), str(src) if reload else ""],
            env=env,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{self.port}/"

    def write_app(self, version: str) -> None:
        (self.src / "appmod.py").write_text(APP.format(version=version))

    def get(self, timeout: float = 2.0) -> str | None:
        try:
            return httpx.get(self.url, timeout=timeout).text
        except httpx.HTTPError:
            return None

    def serves(self, version: str, *, timeout: float) -> str:
        text = wait_for(
            lambda: (self.get() or "").startswith(f"{version} ") and self.get(),
            timeout=timeout,
            what=f"serving version {version}",
        )
        return str(text)

    def children(self) -> list[int]:
        kids = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.process.pid:
                kids.append(int(stat.parent.name))
        return kids

    def main_thread_switches(self) -> int:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        fields = dict(line.split(":", 1) for line in status.splitlines())
        return int(fields["voluntary_ctxt_switches"]) + int(fields["nonvoluntary_ctxt_switches"])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Callable[..., Served]]:
    started: list[Served] = []

    def start(*, reload: bool = True, version: str = "1") -> Served:
        src = tmp_path / "src"
        src.mkdir()
        server = Served(src, reload=reload)
        server.write_app(version)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.mark.timing
@linux_only
def test_an_edit_is_served_by_the_same_single_process(
    served: Callable[..., Served],
) -> None:
    """How soon is the benchmarks' (bench/remote_engine.py, edit → served): a bound here fails
    on a loaded machine without saying anything about the reload."""
    server = served()
    first = server.serves("1", timeout=30)

    server.write_app("2")
    second = server.serves("2", timeout=30)

    assert first.split()[1] == second.split()[1] == str(server.process.pid)
    assert server.children() == []  # no supervisor, no resource tracker
    assert "appmod.py changed: reloading" in server.log.read_text()


@pytest.mark.timing
@linux_only
def test_requests_during_a_reload_wait_instead_of_being_refused(
    served: Callable[..., Served],
) -> None:
    server = served()
    server.serves("1", timeout=30)

    server.write_app("2")
    answers = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not (answers and answers[-1].startswith("2 ")):
        answers.append(httpx.get(server.url, timeout=10).text)  # a refusal would raise

    assert answers[-1].startswith("2 ")


@pytest.mark.timing
@linux_only
def test_source_that_does_not_load_waits_for_the_next_edit(
    served: Callable[..., Served],
) -> None:
    server = served()
    server.serves("1", timeout=30)

    (server.src / "appmod.py").write_text("this is not python (\n")
    wait_for(
        lambda: "did not start" in server.log.read_text(), timeout=10, what="the load error logged"
    )
    time.sleep(0.3)
    assert server.process.poll() is None
    # The log ends in the exception: the gate and `status` recognise a stuck service by that.
    assert server.log.read_text().strip().splitlines()[-1].startswith("SyntaxError: ")
    server.write_app("3")

    server.serves("3", timeout=10)


@pytest.mark.timing
@linux_only
@pytest.mark.parametrize("broken", [False, True], ids=["serving", "waiting-for-a-fix"])
def test_sigterm_stops_it_promptly(served: Callable[..., Served], broken: bool) -> None:
    server = served()
    server.serves("1", timeout=30)
    if broken:
        (server.src / "appmod.py").write_text("raise RuntimeError('broken')\n")
        wait_for(lambda: "did not start" in server.log.read_text(), timeout=10, what="waiting")

    started = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    server.process.wait(timeout=5)

    assert time.monotonic() - started < 2


@pytest.mark.timing
@linux_only
def test_an_idle_server_does_not_wake_up(served: Callable[..., Served]) -> None:
    """uvicorn's own main loop wakes ten times a second; this one sleeps until told to stop."""
    server = served()
    server.serves("1", timeout=30)
    time.sleep(0.5)

    before = server.main_thread_switches()
    time.sleep(2)

    assert server.main_thread_switches() - before <= 1


@linux_only
def test_responses_carry_a_current_date_header(served: Callable[..., Served]) -> None:
    server = served()
    server.serves("1", timeout=30)

    first = httpx.get(server.url).headers["date"]
    time.sleep(1.1)
    second = httpx.get(server.url).headers["date"]

    assert first != second
    assert abs(parsedate_to_datetime(second).timestamp() - time.time()) < 2


def test_without_reload_source_that_does_not_load_exits_with_an_error(
    served: Callable[..., Served],
) -> None:
    server = served(reload=False, version="1")
    (server.src / "appmod.py").write_text("raise RuntimeError('broken')\n")

    assert server.process.wait(timeout=30) != 0


@pytest.mark.timing
def test_without_reload_an_edit_changes_nothing(served: Callable[..., Served]) -> None:
    server = served(reload=False)
    server.serves("1", timeout=30)

    server.write_app("2")
    time.sleep(1)

    assert (server.get() or "").startswith("1 ")


def _access_line(path: str, status: int) -> logging.LogRecord:
    args = ("10.0.0.2:5000", "POST", path, "1.1", status)
    return logging.LogRecord(
        "uvicorn.access", logging.INFO, "", 0, '%s - "%s %s HTTP/%s" %d', args, None
    )


@pytest.mark.parametrize(
    ("path", "status", "logged"),
    [
        ("/api/v1/workers/backtest-worker-1/heartbeat", 200, False),
        ("/api/v1/health", 200, False),
        ("/metrics", 200, False),
        ("/health?verbose=1", 200, False),
        ("/api/v1/workers/backtest-worker-1/heartbeat", 404, True),  # a failed poll shows
        ("/api/v1/operations", 201, True),
        ("/api/v1/workers", 200, True),
    ],
)
def test_answered_polls_stay_out_of_the_access_log(path: str, status: int, logged: bool) -> None:
    quiet_polled_requests()
    quiet_polled_requests()  # idempotent
    logger = logging.getLogger("uvicorn.access")

    assert len(logger.filters) == 1
    assert logger.filter(_access_line(path, status)) is logged
