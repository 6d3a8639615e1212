"""The env-file reader agrees with Docker Compose, which reads the same `.env.sandbox`.

Expected values were checked with `docker compose --env-file FILE config` (Compose v2.40).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ktrdr.envfile import parse_env_text, read_env_file
from ktrdr.errors import KtrdrError


@pytest.mark.parametrize(
    ("line", "value"),
    [
        ("A=8007", "8007"),
        ('A="8007" # comment', "8007"),
        ("A='8007' # comment", "8007"),
        ("A=8007 # comment", "8007"),
        ("A=a#b", "a#b"),
        ("A=x\t#tab", "x\t#tab"),
        ("A='a#b c'", "a#b c"),
        ("A='a\\nb'", "a\\nb"),
        ('A="q\\"x\\\\y" tail', 'q"x\\y'),
        ('A="a\\nb\\t\\$"', "a\nb\t$"),
        ("export A=3", "3"),
        ("A=", ""),
        ('A="unclosed', '"unclosed'),
    ],
)
def test_values_parse_like_docker_compose(line: str, value: str) -> None:
    assert parse_env_text(line + "\n") == {"A": value}


def test_comment_and_blank_lines_are_skipped() -> None:
    text = "# generated\n\n  # indented\nKTRDR_API_PORT=8005\nnot a pair\n"
    assert parse_env_text(text) == {"KTRDR_API_PORT": "8005"}


def test_non_utf8_file_says_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / ".env.sandbox"
    path.write_bytes(b"KTRDR_API_PORT=\xff\n")
    with pytest.raises(KtrdrError, match=r"not UTF-8 text .*; re-save it as UTF-8"):
        read_env_file(path)
