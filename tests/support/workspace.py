"""The lifecycle tests' harness: a git copy of the project and a home of its own, every CLI call
made with the environment of tests/support/cli.py (the `workspace` fixture of
tests/integration/conftest.py makes one, `init-shared` done, and sweeps its instances)."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import psycopg

from tests.support import cli
from tests.support.cli import KTRDR

UP_TIMEOUT = 600  # seconds for one `up` (or `make test-e2e`) of a lifecycle test


class Workspace:
    """A git copy of the project plus the env every CLI call of the test runs with."""

    def __init__(self, repo: Path, home: Path) -> None:
        self.repo = repo
        self.env = cli.cli_env(home)
        self.instance_ids: set[str] = set()

    def path_of(self, name: str) -> Path:
        return self.repo.parent / f"{self.repo.name}--{name}"

    def run(
        self, *argv: str, cwd: Path | None = None, timeout: float = 180
    ) -> subprocess.CompletedProcess[str]:
        return cli.run(argv, cwd=cwd or self.repo, env=self.env, timeout=timeout)

    def ktrdr(self, *args: str, cwd: Path | None = None, timeout: float = 180) -> dict[str, str]:
        result = self.run(KTRDR, *args, cwd=cwd, timeout=timeout)
        assert result.returncode == 0, (
            f"ktrdr {' '.join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
        )
        return {"stdout": result.stdout, "stderr": result.stderr}

    def connect_db(self, instance: Path) -> psycopg.Connection[tuple[object, ...]]:
        """The instance's own database, on what `ktrdr sandbox db-env` exports (as `make
        test-integration` gives them to the tests)."""
        exports = self.ktrdr("sandbox", "db-env", cwd=instance)["stdout"]
        db = dict(shlex.split(line)[1].split("=", 1) for line in exports.splitlines())
        return psycopg.connect(
            host=db["KTRDR_DB_HOST"],
            port=int(db["KTRDR_DB_PORT"]),
            user="ktrdr",
            password=db["KTRDR_DB_PASSWORD"],
            dbname="ktrdr",
            connect_timeout=10,
            autocommit=True,
        )

    def popen(self, *args: str, cwd: Path | None = None) -> subprocess.Popen[str]:
        """A CLI process to kill; its output goes to `last.log` (read it when a step fails)."""
        with (self.repo.parent / "last.log").open("w") as log:
            return subprocess.Popen(
                [KTRDR, *args],
                cwd=cwd or self.repo,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
            )

    def last_log(self) -> str:
        return (self.repo.parent / "last.log").read_text()

    def registry(self) -> dict[str, dict[str, object]]:
        path = Path(self.env["KTRDR_HOME"]) / "sandbox" / "instances.json"
        if not path.exists():
            return {}
        data = json.loads(path.read_text())
        assert data["version"] == 1
        instances: dict[str, dict[str, object]] = data["instances"]
        return instances
