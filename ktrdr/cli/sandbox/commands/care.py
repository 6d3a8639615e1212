"""Care commands (init-shared, test-e2e, evidence, doctor, db-env): parse, call core, render."""

from __future__ import annotations

from pathlib import Path

import click

from ktrdr.cli.output import info, print_fields, print_json, print_table
from ktrdr.cli.params import NAME
from ktrdr.cli.sandbox.commands.options import allow_rules
from ktrdr.errors import ExitCode


@click.command("init-shared")
@click.option(
    "--from",
    "source",
    metavar="DIR",
    help="Folder to install from: with data/ strategies/ models/ subdirs, or a flat folder of "
    "CSV/YAML files. Default: the small sample shipped with ktrdr.",
)
@click.option("--force", is_flag=True, help="Replace files that differ from the source.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def init_shared_command(source: str | None, force: bool, as_json: bool) -> None:
    """Create $KTRDR_HOME/shared/{data,strategies,models} and fill it (idempotent)."""
    from ktrdr.cli.sandbox.base.errors import SandboxError
    from ktrdr.cli.sandbox.home.shared_data import init_shared

    if source is not None and not source.strip():
        # Path("") would silently mean the current directory.
        raise SandboxError("--from got an empty path: pass the folder to install from")
    result = init_shared(source=Path(source) if source is not None else None, force=force)
    _push_to_remote_engines()
    if as_json:
        print_json(result.to_json())
        return
    print_fields(
        [
            ("Shared dir", result.root),
            ("Source", result.source),
            ("Installed", f"{len(result.installed)} ({len(result.linked)} hard-linked)"),
            ("Unchanged", len(result.unchanged)),
            ("Overwritten", len(result.overwritten)),
        ]
    )
    for name in result.skipped:
        info(f"skipped {name}: exists with other content (use --force to replace)")
    for name in result.ignored:
        info(f"ignored {name}: not a .csv, .yaml, .yml or .json file")
    for name in result.broken_links:
        info(f"skipped {name}: a symlink whose target does not exist")


def _push_to_remote_engines() -> None:
    from ktrdr.cli.sandbox.home import registry

    if any(entry.forward for entry in registry.load().values()):
        from ktrdr.cli.sandbox.remote.instance import push_shared_everywhere

        for failure in push_shared_everywhere(info):
            info(f"Warning: {failure}")


@click.command("test-e2e", context_settings={"ignore_unknown_options": True})
@click.argument("pytest_args", nargs=-1, type=click.UNPROCESSED)
@allow_rules("test-e2e")
def test_e2e_command(pytest_args: tuple[str, ...], allow: tuple[str, ...]) -> None:
    """Run the E2E suite inside this instance's compose network (stack must be up).

    PYTEST_ARGS: -k, -m, -x, --maxfail, -v, -q, -s, -l, -r, --tb, --durations, --lf, --ff, --nf
    and test paths under tests/e2e (others are refused). Results (JUnit XML) are kept in
    .sandbox/test-results/ for `ktrdr sandbox evidence`. Passed means pytest exited 0 and its
    JUnit XML shows tests that ran and passed; otherwise the exit code is the suite's own
    (pytest's), or 1 when pytest exited 0 without proof that tests ran.
    """
    from ktrdr.cli.sandbox.e2e.run import run_e2e

    result = run_e2e(
        start=Path.cwd(), pytest_args=list(pytest_args), notify=info, allow=frozenset(allow)
    )
    if result.passed:
        info(f"E2E passed: {result.summary['passed_tests']} tests; results: {result.junit_path}")
        return
    info(f"E2E FAILED: {result.reason}; results: {result.junit_path}")
    click.get_current_context().exit(result.returncode or ExitCode.FAILURE)


@click.command("evidence")
@click.argument("name", required=False, type=NAME)
@click.option("--output", "-o", metavar="FILE", help="Tarball path (a new or regular file).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def evidence_command(name: str | None, output: str | None, as_json: bool) -> None:
    """Bundle gate report, compose ps, service logs, test results and git state into a tar.gz."""
    from ktrdr.cli.sandbox.e2e.evidence import check_output_path, collect_evidence

    target = check_output_path(output) if output is not None else None
    result = collect_evidence(name=name, start=Path.cwd(), output=target)
    if as_json:
        print_json(result.to_json())
        return
    # Plain echo: a long path must stay on one line for copy-paste (rich would wrap it).
    click.echo(f"Evidence: {result.path}")
    click.echo(f"Size:     {result.size_bytes} bytes ({len(result.files)} files)")
    for note in result.missing:
        info(f"missing: {note}")
    if result.replaced:
        info(f"note: replaced the existing file {result.path}")


@click.command("doctor")
@click.option("--fix", is_flag=True, help="Repair what is safe and say what was done.")
@click.option(
    "--remove-lost",
    "lost_owner",
    metavar="HOME_ID",
    type=NAME,
    help="Remove every container, network and volume of this lost home (its directory is "
    "gone; doctor names it). Only this, nothing else is checked or fixed.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def doctor_command(fix: bool, lost_owner: str | None, as_json: bool) -> None:
    """Reconcile registry, Docker and filesystem; check the host. Exit 1 while problems remain."""
    from ktrdr.cli.sandbox.doctor.diagnose import run_doctor

    if lost_owner is not None:
        from ktrdr.cli.sandbox.engine.handle import Engine
        from ktrdr.cli.sandbox.engine.lost_homes import remove_lost

        removed = remove_lost(Engine(), lost_owner)  # lost homes' stacks: the default engine
        if as_json:
            print_json({"home": lost_owner, "removed": removed})
        else:
            for line in removed:
                click.echo(f"removed {line}")
        return
    report = run_doctor(fix=fix)
    if as_json:
        print_json(report.to_json())
    else:
        rows = [(p.severity, p.kind, p.subject, p.detail, p.fixed or "") for p in report.problems]
        columns = ["SEVERITY", "KIND", "SUBJECT", "DETAIL", "FIXED"]
        if rows and print_table(columns, rows, fit=True):
            info("note: long cells were cut to the width; `ktrdr sandbox doctor --json` has them")
        for action in report.actions:
            info(f"fixed: {action}")
        info(report.summary_line())
    click.get_current_context().exit(ExitCode.SUCCESS if report.healthy else ExitCode.FAILURE)


@click.command("db-env", hidden=True)
def db_env_command() -> None:
    """`export` lines for the instance's DB (used by `make test-integration`); empty outside."""
    from ktrdr.cli.sandbox.e2e.run import db_env_exports

    click.echo(db_env_exports(start=Path.cwd()), nl=False)


@click.command("adopt")
@click.argument("path", type=NAME)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def adopt_command(path: str, as_json: bool) -> None:
    """Take the checkout PATH of a lost home's stack into this home (its containers are
    removed, its volumes kept under their old names; a new stack starts on `up`)."""
    from ktrdr.cli.sandbox.engine.handle import Engine
    from ktrdr.cli.sandbox.engine.lost_homes import release_for_adoption
    from ktrdr.cli.sandbox.provision.init_checkout import init_instance

    result = release_for_adoption(Engine(), Path(path))
    made = init_instance(cwd=result.path, adopting=result.old_owner)
    if as_json:
        print_json(
            {
                "instance_id": made.instance_id,
                "slot": made.slot,
                "path": str(result.path),
                "old_owner": result.old_owner,
                "old_home": result.old_home,
                "removed": result.removed,
                "kept_volumes": result.kept_volumes,
            }
        )
        return
    click.echo(f"adopted {made.instance_id} (slot {made.slot}) from lost home {result.old_owner}")
    if result.kept_volumes:
        info(
            f"its data stays in the old volumes ({', '.join(result.kept_volumes)}): the new "
            f"stack starts empty; `ktrdr sandbox doctor --remove-lost {result.old_owner}` "
            "removes them when you no longer need them"
        )
    info(f"next: cd {result.path} && ktrdr sandbox up")
