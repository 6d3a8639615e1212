"""Which pytest arguments `test-e2e` (and the `sandbox_test_e2e` MCP tool) passes on: an
allowlist, checked before anything runs.

A run must run the suite and write its own JUnit XML where `test-e2e` reads it; an argument
that runs no tests (`--co`, `--help`, `--version`, `--fixtures`, `--setup-plan`), moves the
results (`--junitxml`, `--basetemp`, `--pastebin`) or reconfigures pytest (`-p`, `-c`,
`--rootdir`, `-o`, `--confcutdir`) would make a green verdict mean nothing. pytest's parser
accepts unambiguous prefixes of long options (`--collect-o`, `--junit`), so a denylist would
always miss one: only the exact spellings below pass.

Accepted: selection (`-k EXPR`, `-m EXPR`, test paths and node ids under tests/e2e), stopping
(`-x`, `--maxfail N`), reporting (`-v`, `-q`, `-s`, `-l`, `-r CHARS`, `--tb STYLE`,
`--durations N`) and ordering (`--lf`, `--ff`, `--nf`). Short flags may be combined (`-xvs`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ktrdr.cli.limits import shown, text_problem
from ktrdr.cli.sandbox.base.errors import SandboxError
from ktrdr.errors import ExitCode

MAX_PYTEST_ARGS = 32
MAX_PYTEST_ARG = 1024
E2E_DIR = "tests/e2e"

SHORT_FLAGS = "xvqsl"  # -x -v -q -s -l, alone or combined (-vv, -xvs)
LONG_FLAGS = frozenset(
    {
        "--exitfirst",
        "--verbose",
        "--quiet",
        "--showlocals",
        "--lf",
        "--last-failed",
        "--ff",
        "--failed-first",
        "--nf",
        "--new-first",
    }
)
TB_STYLES = ("auto", "long", "short", "line", "native", "no")
REPORT_CHARS = frozenset("fEsxXpPaAwN")
ACCEPTED = (
    "-k EXPR, -m EXPR, -x, --maxfail N, -v, -q, -s, -l, -r CHARS, --tb STYLE, --durations N, "
    f"--lf, --ff, --nf, and test paths or node ids under {E2E_DIR}/"
)


@dataclass(frozen=True)
class PytestArgs:
    """The checked arguments: options in the order given, then the test paths (none = all of
    tests/e2e)."""

    options: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()

    def argv(self) -> list[str]:
        return [*self.options, *(self.paths or (E2E_DIR,))]


def check_pytest_args(args: list[str]) -> PytestArgs:
    """The arguments split into options and paths, or a usage error (one line) naming the
    first one refused."""
    if len(args) > MAX_PYTEST_ARGS:
        raise _refused(f"{len(args)} pytest arguments are too many (at most {MAX_PYTEST_ARGS})")
    for arg in args:
        problem = text_problem(arg, max_length=MAX_PYTEST_ARG)
        if problem:
            raise _refused(f"pytest argument {shown(arg)} {problem}")
    options: list[str] = []
    paths: list[str] = []
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        if not arg.startswith("-"):
            paths.append(_checked_path(arg))
        else:
            options.extend(_checked_option(arg, rest))
    return PytestArgs(tuple(options), tuple(paths))


def _checked_option(arg: str, rest: list[str]) -> list[str]:
    """`arg` (and the value it takes from `rest`) as accepted, or a usage error."""
    if arg in LONG_FLAGS or (len(arg) > 1 and all(c in SHORT_FLAGS for c in arg[1:])):
        return [arg]
    name, eq, inline = arg.partition("=")
    if name in LONG_VALUES:
        value = inline if eq else _next_value(name, rest)
        return [f"{name}={LONG_VALUES[name](name, value)}"]
    short, attached = arg[:2], arg[2:]
    if short in SHORT_VALUES and not arg.startswith("--"):
        value = attached if attached else _next_value(short, rest)
        return [short, SHORT_VALUES[short](short, value)]
    raise _refused(
        f"test-e2e does not pass pytest option {shown(arg)} on: it accepts {ACCEPTED} "
        "(options that run no tests, move the results or reconfigure pytest are refused)"
    )


def _next_value(option: str, rest: list[str]) -> str:
    if not rest:
        raise _refused(f"pytest option {option} needs a value")
    return rest.pop(0)


def _expression(option: str, value: str) -> str:
    if not value.strip() or value.startswith("-"):
        raise _refused(f"pytest option {option} needs an expression, got {shown(value)}")
    return value


def _report_chars(option: str, value: str) -> str:
    if not value or not set(value) <= REPORT_CHARS:
        raise _refused(
            f"pytest option {option} takes report characters from "
            f"{''.join(sorted(REPORT_CHARS))}, got {shown(value)}"
        )
    return value


def _count(option: str, value: str) -> str:
    if not value.isdigit() or not value.isascii() or int(value) > 10_000:
        raise _refused(f"pytest option {option} takes a whole number, got {shown(value)}")
    return str(int(value))


def _tb_style(option: str, value: str) -> str:
    if value not in TB_STYLES:
        raise _refused(f"pytest option {option} takes one of {', '.join(TB_STYLES)}")
    return value


SHORT_VALUES: dict[str, Callable[[str, str], str]] = {
    "-k": _expression,
    "-m": _expression,
    "-r": _report_chars,
}
LONG_VALUES: dict[str, Callable[[str, str], str]] = {
    "--maxfail": _count,
    "--durations": _count,
    "--tb": _tb_style,
}


def _checked_path(arg: str) -> str:
    """A test path or node id (`tests/e2e/test_x.py::test_y[param]`) inside tests/e2e."""
    path = arg.split("::", 1)[0]
    parts = path.split("/")
    inside = path.rstrip("/") == E2E_DIR or path.startswith(f"{E2E_DIR}/")
    if not inside or ".." in parts or "\\" in path:
        raise _refused(
            f"pytest argument {shown(arg)} is not a test under {E2E_DIR}/: pass paths or "
            f"node ids like {E2E_DIR}/test_instance.py::test_health"
        )
    return arg


def _refused(message: str) -> SandboxError:
    return SandboxError(message, exit_code=ExitCode.USAGE)
