"""Every `ktrdr …` command line docs/sandbox.md shows (in `$ ` lines, inline code, the
`### ktrdr sandbox …` headings and the instance command table) names a command that exists and
only options that command has, checked against the Click tree the CLI runs."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from ktrdr.cli.main import cli

DOC = Path(__file__).resolve().parents[3] / "docs" / "sandbox.md"
CODE_SPAN = re.compile(r"`([^`\n]+)`")
# Where a shown command line ends: shell operators and comments.
LINE_END = re.compile(r"\s(?:&&|\|\||;|#|>)\s.*$|\)$")


def doc_command_lines(text: str) -> list[str]:
    """Command lines as the doc writes them, starting with `ktrdr`."""
    lines: list[str] = []
    for line in text.splitlines():
        if line.startswith("$ ktrdr "):
            lines.append(line[2:])
        elif line.startswith(("### ", "#### ")) and "`ktrdr sandbox " in line:
            # "### `ktrdr sandbox up [NAME] …` / `down` / `logs`": the rest are siblings.
            spans = CODE_SPAN.findall(line)
            first = next(i for i, span in enumerate(spans) if span.startswith("ktrdr "))
            lines += [s if s.startswith("ktrdr ") else f"ktrdr sandbox {s}" for s in spans[first:]]
        elif line.startswith("| `") and _in_section(text, line, "### Instance commands"):
            first_cell = line.split("|")[1]
            lines += [f"ktrdr sandbox {s}" for s in CODE_SPAN.findall(first_cell)]
        else:
            lines += [s for s in CODE_SPAN.findall(line) if s.startswith("ktrdr ")]
    return [LINE_END.sub("", line).strip() for line in lines]


def _in_section(text: str, line: str, heading: str) -> bool:
    """Whether `line` is in the section under the heading line `heading` (up to the next
    heading of the same or a higher level)."""
    start = text.index(f"\n{heading}\n")
    level = heading.split(" ", 1)[0]
    ends = [text.find(f"\n{'#' * n} ", start + len(heading) + 2) for n in range(2, len(level) + 1)]
    end = min((e for e in ends if e != -1), default=len(text))
    return line in text[start:end]


def problems_with(line: str) -> list[str]:
    """What in `line` the CLI does not have: an unknown command or an option it lacks."""
    words = [w for w in re.split(r"[\s\[\]|]+", line) if w and w not in {"…", "..."}]
    command: click.Command = cli
    path = "ktrdr"
    takes_value = False
    problems: list[str] = []
    for word in words[1:]:
        if takes_value:  # the value of the option before it
            takes_value = False
            continue
        if word.startswith("-") and word != "--":
            option_name = word.split("=", 1)[0]
            option = _option(command, option_name)
            if option is None:
                problems.append(f"`{path}` has no option {option_name}")
            else:
                takes_value = not option.is_flag and "=" not in word
        elif isinstance(command, click.Group):
            sub = command.commands.get(word)
            if sub is None:
                problems.append(f"`{path}` has no command {word}")
                break
            command, path = sub, f"{path} {word}"
        elif word == "--":
            break  # the rest goes to the command as is (test-e2e's pytest arguments)
    return problems


def _option(command: click.Command, name: str) -> click.Option | None:
    for param in command.params:
        if isinstance(param, click.Option) and name in param.opts + param.secondary_opts:
            return param
    if name == "--help":
        return click.Option(["--help"], is_flag=True)
    return None


def test_the_doc_shows_commands_at_all() -> None:
    lines = doc_command_lines(DOC.read_text(encoding="utf-8"))
    shown = {" ".join(line.split()[:3]) for line in lines}
    # A parser that found nothing would pass the test below: these must be among what it saw.
    assert {"ktrdr sandbox create", "ktrdr sandbox down", "ktrdr sandbox mcp"} <= shown
    assert len(lines) > 40


@pytest.mark.parametrize("line", sorted(set(doc_command_lines(DOC.read_text(encoding="utf-8")))))
def test_every_command_and_option_the_doc_shows_exists(line: str) -> None:
    assert problems_with(line) == []


def test_an_unknown_command_or_option_is_caught() -> None:
    assert problems_with("ktrdr sandbox create NAME --slott 2") == [
        "`ktrdr sandbox create` has no option --slott"
    ]
    assert problems_with("ktrdr sandbox start") == ["`ktrdr sandbox` has no command start"]
    assert problems_with("ktrdr -p 8001 operations start backtest --symbol AAPL --wait") == []
