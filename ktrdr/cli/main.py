"""The root `ktrdr` group: global API targeting, and the one place errors and Ctrl-C become
exit codes (the table is ktrdr.errors.ExitCode)."""

from __future__ import annotations

import os
import sys
from typing import Any, NoReturn

import click

from ktrdr import __version__
from ktrdr.cli.limits import shown, text_problem
from ktrdr.cli.state import CliState
from ktrdr.cli.target import parse_port, validate_url
from ktrdr.errors import ExitCode, Interrupted, KtrdrError


class KtrdrGroup(click.Group):
    """Renders KtrdrError as one `Error: …` line with its exit code, and Ctrl-C as one line
    and exit 130 (the one place for both); bugs keep tracebacks."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except KeyboardInterrupt as e:  # while parsing: nothing ran yet
            _exit_interrupted(e, typed=None)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["ktrdr.argv"] = list(args)  # for the Ctrl-C message: the command as typed
        _check_argv(args)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KtrdrError as e:
            # No `Usage:` header even for exit 2: bad -u/-p never get here (their callbacks
            # raise Click's usage error); what does is a bad env variable or .env.sandbox, and
            # the command line itself is fine.
            raise _ExitingClickError(e.message, e.exit_code) from e
        except KeyboardInterrupt as e:
            import shlex

            _exit_interrupted(
                e, typed=shlex.join([ctx.command_path, *ctx.meta.get("ktrdr.argv", [])])
            )


def _exit_interrupted(error: KeyboardInterrupt, *, typed: str | None) -> NoReturn:
    """Ctrl-C ends here: the command's own hint (an `Interrupted`), else, instead of click's
    bare "Aborted!", what to do; then exit 130 like a shell. entry.py covers the moments
    before this module is imported."""
    if isinstance(error, Interrupted):
        message = error.hint
    elif typed is None:
        message = "Interrupted"
    else:
        message = (
            f"Interrupted: `{typed}` stopped before it finished; run it again "
            "(`ktrdr sandbox doctor` reports anything left half-done)"
        )
    if message:
        sys.stderr.write(f"\n{message}\n")
    raise SystemExit(ExitCode.INTERRUPTED) from None


class _ExitingClickError(click.ClickException):
    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]  # click declares it a class variable


def _check_argv(args: list[str]) -> None:
    """Every argument of every command within ktrdr.cli.limits (length, no control
    characters): one usage line instead of a traceback from deep below (a URL too long, an
    embedded null byte). Names and ids have tighter limits where they are declared."""
    for position, arg in enumerate(args, start=1):
        problem = text_problem(arg)
        if problem:
            raise _ExitingClickError(
                f"command-line argument {position} {shown(arg)} {problem}", ExitCode.USAGE
            )


def _check_port(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None:
        try:
            parse_port(value, origin="--port")
        except KtrdrError as e:
            raise click.BadParameter(e.message, ctx, param) from e
    return value


def _check_url(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None:
        try:
            validate_url(value, origin="--url")
        except KtrdrError as e:
            raise click.BadParameter(e.message, ctx, param) from e
    return value


@click.group(cls=KtrdrGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-u",
    "--url",
    "url_flag",
    metavar="URL",
    callback=_check_url,
    help="KTRDR API base URL (wins over --port).",
)
@click.option(
    "-p",
    "--port",
    "port_flag",
    metavar="PORT",
    callback=_check_port,
    help="API port on localhost, e.g. 8002 for sandbox slot 2.",
)
@click.version_option(__version__, prog_name="ktrdr")
@click.pass_context
def cli(ctx: click.Context, url_flag: str | None, port_flag: str | None) -> None:
    """KTRDR command-line interface.

    The API target is resolved in this order: --url, --port, $KTRDR_API_URL,
    $KTRDR_API_PORT, KTRDR_API_PORT in the nearest .env.sandbox (this directory or a
    parent), then http://localhost:8000. `ktrdr config show` tells which one applied.
    """
    ctx.obj = CliState(url_flag=url_flag, port_flag=port_flag)


def _register_commands() -> None:
    from ktrdr.cli.api_commands import health, operations, workers
    from ktrdr.cli.config_command import config
    from ktrdr.cli.sandbox.commands import sandbox

    for command in (config, health, workers, operations, sandbox):
        cli.add_command(command)


_register_commands()


def main() -> None:
    try:
        os.getcwd()
    except FileNotFoundError:
        # Typical after `ktrdr sandbox destroy` run from inside the instance it removed.
        sys.stderr.write(
            "Error: the current directory no longer exists (was its instance destroyed?); "
            "cd to an existing directory and retry\n"
        )
        raise SystemExit(ExitCode.FAILURE) from None
    cli(prog_name="ktrdr")


if __name__ == "__main__":
    main()
