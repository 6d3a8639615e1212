"""SSH forwards of a remote instance: the ssh command line, a forwarder started, probed,
stopped and found as an orphan (real processes: a stand-in for ssh where no SSH server can
exist, and the real ssh client where it fails), and the choice of local ports."""

from __future__ import annotations

import http.server
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ktrdr.cli.sandbox.base.errors import SandboxError
from ktrdr.cli.sandbox.engine.handle import SshEndpoint
from ktrdr.cli.sandbox.home import owned_process
from ktrdr.cli.sandbox.remote import forwards
from ktrdr.cli.sandbox.slots.ports import ALL_SLOTS, forward_ports, ports_for_slot

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
SSH_STAND_IN = Path(__file__).resolve().parents[2] / "support" / "ssh_stand_in.py"
STAND_IN = [sys.executable, str(SSH_STAND_IN)]


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    state = tmp_path / "run"
    yield state
    for orphan in owned_process.orphans(state):
        owned_process.stop_orphan(orphan, grace=1)
    for directory in state.iterdir() if state.is_dir() else []:
        forwards.stop(directory)


@pytest.fixture
def remote_side_stand_in() -> Iterator[int]:
    """An HTTP server on 127.0.0.1 standing in for a service on the remote host's loopback."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b'{"status": "ok", "where": "remote stand-in"}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _busy_port() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    return sock


def test_ssh_argv_forwards_loopback_to_loopback_with_keepalives_and_no_prompts(
    tmp_path: Path,
) -> None:
    argv = forwards.ssh_argv(
        SshEndpoint("buildbox", "dev", 2222),
        [(21000, 8003), (21001, 5435)],
        log_file=tmp_path / "l",
    )

    assert argv[:2] == ["ssh", "-N"]
    assert "ExitOnForwardFailure=yes" in argv
    assert "BatchMode=yes" in argv
    assert "ServerAliveInterval=5" in argv
    assert ["-E", str(tmp_path / "l")] == argv[argv.index("-E") : argv.index("-E") + 2]
    assert "127.0.0.1:21000:127.0.0.1:8003" in argv
    assert "127.0.0.1:21001:127.0.0.1:5435" in argv
    assert argv[-4:] == ["-p", "2222", "--", "dev@buildbox"]


def test_ssh_argv_without_user_or_port_leaves_them_to_the_ssh_config(tmp_path: Path) -> None:
    argv = forwards.ssh_argv(SshEndpoint("buildbox", None, None), [(1, 2)], log_file=tmp_path / "l")

    assert "-p" not in argv
    assert argv[-2:] == ["--", "buildbox"]


def test_a_started_forwarder_relays_local_ports_and_is_recorded_until_stopped(
    root: Path, remote_side_stand_in: int
) -> None:
    local = _free_port()

    record = forwards.start(
        "inst",
        SshEndpoint("buildbox", "dev", None),
        [(local, remote_side_stand_in)],
        root / "inst",
        ssh_command=STAND_IN,
    )

    assert httpx.get(f"http://127.0.0.1:{local}/", timeout=5).json()["where"] == "remote stand-in"
    assert forwards.alive(record)
    assert forwards.current(root / "inst") == record
    assert record.details["pairs"] == [[local, remote_side_stand_in]]
    assert forwards.orphans(root) == []
    assert forwards.stop(root / "inst") is True
    assert not forwards.alive(record)
    assert not forwards.accepts(local)
    assert forwards.current(root / "inst") is None


def test_starting_again_replaces_the_previous_forwarder(
    root: Path, remote_side_stand_in: int
) -> None:
    pairs = [
        (
            _free_port(),
            remote_side_stand_in,
        )
    ]
    first = forwards.start(
        "inst", SshEndpoint("h", None, None), pairs, root / "inst", ssh_command=STAND_IN
    )

    second = forwards.start(
        "inst", SshEndpoint("h", None, None), pairs, root / "inst", ssh_command=STAND_IN
    )

    assert not forwards.alive(first)
    assert forwards.alive(second)
    assert forwards.orphans(root) == []


def test_a_forward_port_taken_meanwhile_is_refused_before_ssh_starts(root: Path) -> None:
    with _busy_port() as busy:
        port = busy.getsockname()[1]
        with pytest.raises(SandboxError, match=rf"local port\(s\) {port} are in use"):
            forwards.start(
                "inst",
                SshEndpoint("h", None, None),
                [(port, 1)],
                root / "inst",
                ssh_command=STAND_IN,
            )

    assert forwards.current(root / "inst") is None


def test_a_forwarder_that_cannot_bind_fails_with_its_own_words(root: Path, tmp_path: Path) -> None:
    """ExitOnForwardFailure: the stand-in exits 255 naming the port, as ssh does."""
    refusing = tmp_path / "refusing_ssh.py"
    refusing.write_text(
        "import sys\n"
        "log = open(sys.argv[sys.argv.index('-E') + 1], 'a')\n"
        "print('bind [127.0.0.1]:1: Address already in use', file=log, flush=True)\n"
        "sys.exit(255)\n"
    )
    with pytest.raises(SandboxError, match=r"exited \(code 255\).*Address already in use"):
        forwards.start(
            "inst",
            SshEndpoint("h", None, None),
            [(_free_port(), 1)],
            root / "inst",
            ssh_command=[sys.executable, str(refusing)],
        )


def test_real_ssh_to_a_closed_port_fails_with_sshs_own_message(root: Path) -> None:
    with _busy_port() as closed:  # bound, then closed: nothing listens there any more
        port = closed.getsockname()[1]
    with pytest.raises(SandboxError, match=r"SSH forwarder of inst to 127.0.0.1 exited.*refused"):
        forwards.start(
            "inst",
            SshEndpoint("127.0.0.1", None, port),
            [(_free_port(), 1)],
            root / "inst",
        )

    assert forwards.current(root / "inst") is None
    assert forwards.orphans(root) == []


def test_a_forwarder_whose_record_was_lost_is_an_orphan(
    root: Path, remote_side_stand_in: int
) -> None:
    pairs = [
        (
            _free_port(),
            remote_side_stand_in,
        )
    ]
    record = forwards.start(
        "inst", SshEndpoint("h", None, None), pairs, root / "inst", ssh_command=STAND_IN
    )
    (root / "inst" / "forward.json").unlink()

    found = forwards.orphans(root)

    assert [o.pids for o in found] == [[record.pid]]
    owned_process.stop_orphan(found[0], grace=2)
    assert not forwards.alive(record)


# --- which ports ---------------------------------------------------------------------------


def test_pairs_forward_every_port_of_the_slot_to_its_local_end() -> None:
    remote, local = ports_for_slot(3), forward_ports(7, 3)

    found = forwards.pairs(remote, local)

    assert (local.api, remote.api) in found
    assert (local.db, remote.db) in found
    assert (local.worker_base + 3, remote.worker_base + 3) in found
    assert len(found) == len(remote.all_ports())
    slot_ports = {p for s in ALL_SLOTS for p in ports_for_slot(s).all_ports().values()}
    assert not {lo for lo, _ in found} & slot_ports


def test_a_port_with_only_closed_connections_left_counts_as_free() -> None:
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = listener.accept()
        accepted.close()  # the listener's side closes first: its port holds a TIME_WAIT
        client.close()
        assert not forwards.free(port)  # still listening
    assert forwards.free(port)
