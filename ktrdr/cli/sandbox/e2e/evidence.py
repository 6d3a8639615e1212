"""`ktrdr sandbox evidence`: one tar.gz that shows what an instance ran and how it went.

Contents (under `evidence-<id>-<stamp>/`): manifest.json (what is in it and what was missing and
why), gate-report.json, compose-ps.txt, logs/<service>.log, test-results/*, git-head.txt,
git-diff-stat.txt, env.sandbox.redacted (secrets masked). Anything that cannot be collected
(engine down, no gate run yet, not a git checkout) is noted in the manifest; the bundle is still
written, so an agent always has something to attach.
"""

from __future__ import annotations

import io
import json
import stat
import tarfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ktrdr.cli.sandbox.base import proc
from ktrdr.cli.sandbox.base.atomic import write_atomic
from ktrdr.cli.sandbox.base.errors import SandboxError
from ktrdr.cli.sandbox.base.stack_file import COMPOSE_FILE
from ktrdr.cli.sandbox.e2e.run import RESULTS_DIR
from ktrdr.cli.sandbox.engine import logs as container_logs
from ktrdr.cli.sandbox.engine import queries as engine
from ktrdr.cli.sandbox.home.directory import unused_evidence_path
from ktrdr.cli.sandbox.home.instance import SECRET_KEYS
from ktrdr.cli.sandbox.instances.locate import Instance, locate
from ktrdr.cli.sandbox.stack import compose

GATE_REPORT = Path(".sandbox") / "gate-report.json"
LOG_TAIL = 5000
MAX_RESULT_FILE_BYTES = 20 * 1024 * 1024


@dataclass
class EvidenceResult:
    instance_id: str
    path: Path
    size_bytes: int
    files: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    replaced: bool = False  # --output named an existing file

    def to_json(self) -> dict[str, object]:
        return {
            "instance_id": self.instance_id,
            "path": str(self.path),
            "size_bytes": self.size_bytes,
            "files": self.files,
            "missing": self.missing,
            "replaced": self.replaced,
        }


def check_output_path(raw: str) -> Path:
    """`--output` as given: a new path or a regular file to replace. The tarball is renamed
    into place, so anything else there (/dev/null, a FIFO, a symlink's target) would be lost."""
    if raw.strip() in ("", "-"):
        shown = "an empty path" if not raw.strip() else "'-' (stdout)"
        raise SandboxError(
            f"--output {shown} is not supported: pass a file path, e.g. evidence.tar.gz"
        )
    path = Path(raw).expanduser().absolute()
    if path.is_symlink():
        raise SandboxError(f"--output {path} is a symlink: refusing to replace it; pass a new path")
    if path.is_dir():
        raise SandboxError(f"--output {path} is a directory: pass a file path inside it")
    if not path.parent.is_dir():
        # Never create directories: a typo would scatter bundles anywhere on the machine.
        raise SandboxError(
            f"--output {path}: directory {path.parent} does not exist; create it first or pass "
            "a path in an existing directory"
        )
    if path.exists() and not stat.S_ISREG(path.stat().st_mode):
        raise SandboxError(
            f"--output {path} is not a regular file (a device, FIFO or socket): refusing to "
            "replace it; pass a file path"
        )
    return path


def collect_evidence(
    *, name: str | None = None, start: Path, output: Path | None = None
) -> EvidenceResult:
    instance = locate(name, start).require_env(keys=())
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    prefix = f"evidence-{instance.instance_id}-{stamp}"
    bundle = _Bundle(prefix)
    _add_gate_report(bundle, instance)
    _add_docker_state(bundle, instance)
    _add_test_results(bundle, instance)
    _add_git_state(bundle, instance)
    _add_env(bundle, instance)
    bundle.add_text(
        "manifest.json",
        json.dumps(
            {
                "instance_id": instance.instance_id,
                "slot": instance.env.get("KTRDR_SLOT"),
                "root": str(instance.root),
                "collected_at": stamp,
                "files": bundle.names,
                "missing": bundle.missing,
            },
            indent=2,
        ),
    )
    path = (output or unused_evidence_path(instance.instance_id, prefix, ".tar.gz")).absolute()
    replaced = path.exists()
    bundle.write(path, make_parent=output is None)
    return EvidenceResult(
        instance.instance_id,
        path,
        path.stat().st_size,
        list(bundle.names),
        list(bundle.missing),
        replaced=replaced,
    )


class _Bundle:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.members: list[tuple[str, bytes]] = []
        self.missing: list[str] = []

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.members]

    def add_text(self, name: str, text: str) -> None:
        self.members.append((name, text.encode("utf-8", errors="replace")))

    def add_bytes(self, name: str, data: bytes) -> None:
        self.members.append((name, data))

    def note_missing(self, what: str) -> None:
        self.missing.append(what)

    def write(self, path: Path, *, make_parent: bool) -> None:
        """`make_parent` only for the default path under KTRDR_HOME: never for --output. The
        bundle is small (log tails, a diff stat), so it is made in memory and written as any
        state file is."""
        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode="w:gz") as tar:
            for name, data in self.members:
                info = tarfile.TarInfo(f"{self.prefix}/{name}")
                info.size = len(data)
                info.mtime = int(time.time())
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(data))
        try:
            if make_parent:
                path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, archive.getvalue(), mode=None)
        except OSError as e:
            raise SandboxError(f"cannot write evidence to {path}: {e.strerror or e}") from e


def _add_gate_report(bundle: _Bundle, instance: Instance) -> None:
    report = instance.root / GATE_REPORT
    if report.is_file():
        bundle.add_bytes("gate-report.json", report.read_bytes())
    else:
        bundle.note_missing(f"gate report: {GATE_REPORT} not found (run `ktrdr sandbox up`)")


def _add_docker_state(bundle: _Bundle, instance: Instance) -> None:
    if not engine.engine_reachable(instance.engine):
        bundle.note_missing("compose ps and service logs: Docker engine not reachable")
        return
    base = compose.compose_argv(instance.engine, instance.root, instance.env)
    env = compose.compose_env(instance.engine, instance.env, instance.root)
    can_compose = (instance.root / COMPOSE_FILE).is_file()
    if can_compose:
        ps = proc.run([*base, "ps", "-a"], cwd=instance.root, env=env, timeout=60, check=False)
        bundle.add_text("compose-ps.txt", ps.stdout + ps.stderr)
    else:
        bundle.note_missing(f"compose ps: {COMPOSE_FILE} not found in {instance.root}")
    containers = engine.ps(instance.engine, instance.instance_id)
    if not containers:
        bundle.note_missing("service logs: the instance has no containers")
    for container in containers:
        lines = container_logs.container_logs(instance.engine, container.name, tail=LOG_TAIL)
        bundle.add_text(f"logs/{container.service or container.name}.log", "\n".join(lines))
    bundle.add_text("containers.json", json.dumps([c.to_json() for c in containers], indent=2))


def _add_test_results(bundle: _Bundle, instance: Instance) -> None:
    results = instance.root / RESULTS_DIR
    files = sorted(p for p in results.rglob("*") if p.is_file()) if results.is_dir() else []
    if not files:
        bundle.note_missing(f"test results: none in {RESULTS_DIR} (run `make test-e2e`)")
    for path in files:
        if path.stat().st_size <= MAX_RESULT_FILE_BYTES:
            bundle.add_bytes(
                f"test-results/{path.relative_to(results).as_posix()}", path.read_bytes()
            )
        else:
            bundle.note_missing(
                f"test result {path.name}: larger than {MAX_RESULT_FILE_BYTES} bytes"
            )


def _add_git_state(bundle: _Bundle, instance: Instance) -> None:
    for name, args in (
        ("git-head.txt", ["rev-parse", "HEAD"]),
        ("git-diff-stat.txt", ["diff", "--stat", "HEAD"]),
    ):
        try:
            result = proc.run(["git", *args], cwd=instance.root, timeout=60, check=False)
        except SandboxError as e:
            bundle.note_missing(f"{name}: {e}")
            continue
        if result.returncode == 0:
            bundle.add_text(name, result.stdout)
        else:
            bundle.note_missing(
                f"{name}: git {' '.join(args)} failed: {proc.stderr_tail(result.stderr, 2)}"
            )


def _add_env(bundle: _Bundle, instance: Instance) -> None:
    lines = [f"{k}={'***' if k in SECRET_KEYS else v}" for k, v in instance.env.items()]
    bundle.add_text("env.sandbox.redacted", "\n".join(lines) + "\n")
