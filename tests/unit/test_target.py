from __future__ import annotations

from pathlib import Path

import pytest

from ktrdr.cli.target import BadTargetError, resolve_target
from ktrdr.errors import KtrdrError
from tests.support.instances import edit_view, register_instance


def test_default_when_nothing_is_set(tmp_path: Path) -> None:
    target = resolve_target(url_flag=None, port_flag=None, environ={}, cwd=tmp_path)
    assert (target.url, target.source) == ("http://localhost:8000", "default")


def test_url_flag_wins_over_port_flag_and_env(tmp_path: Path) -> None:
    env = {"KTRDR_API_URL": "http://env:1", "KTRDR_API_PORT": "8003"}
    target = resolve_target(
        url_flag="http://127.0.0.1:9", port_flag="8002", environ=env, cwd=tmp_path
    )
    assert (target.url, target.source) == ("http://127.0.0.1:9", "flag --url")


def test_port_flag_wins_over_env(tmp_path: Path) -> None:
    env = {"KTRDR_API_URL": "http://env:1", "KTRDR_API_PORT": "8003"}
    target = resolve_target(url_flag=None, port_flag="8002", environ=env, cwd=tmp_path)
    assert (target.url, target.source) == ("http://localhost:8002", "flag --port")


def test_env_url_wins_over_env_port(tmp_path: Path) -> None:
    env = {"KTRDR_API_URL": "http://api.test:81/", "KTRDR_API_PORT": "8003"}
    target = resolve_target(url_flag=None, port_flag=None, environ=env, cwd=tmp_path)
    assert (target.url, target.source) == ("http://api.test:81", "env KTRDR_API_URL")


def test_env_port_wins_over_env_file(tmp_path: Path) -> None:
    register_instance(tmp_path, slot=5)
    target = resolve_target(
        url_flag=None, port_flag=None, environ={"KTRDR_API_PORT": "8003"}, cwd=tmp_path
    )
    assert (target.url, target.source) == ("http://localhost:8003", "env KTRDR_API_PORT")


def test_env_file_found_from_nested_subdirectory(tmp_path: Path) -> None:
    register_instance(tmp_path, slot=5)
    env_file = tmp_path / ".env.sandbox"
    nested = tmp_path / "a" / "b" / "c"
    nested.mkdir(parents=True)
    target = resolve_target(url_flag=None, port_flag=None, environ={}, cwd=nested)
    assert target.url == "http://localhost:8005"
    assert target.env_file == env_file.resolve()


def test_nearest_env_file_wins(tmp_path: Path) -> None:
    register_instance(tmp_path, slot=5)
    inner = tmp_path / "inner"
    inner.mkdir()
    register_instance(inner, slot=7)
    target = resolve_target(url_flag=None, port_flag=None, environ={}, cwd=inner)
    assert target.url == "http://localhost:8007"


@pytest.mark.parametrize("bad_port", ["0", "70000", "abc", "-1", "80.5", ""])
def test_bad_port_flag_is_a_usage_error(tmp_path: Path, bad_port: str) -> None:
    with pytest.raises(BadTargetError) as caught:
        resolve_target(url_flag=None, port_flag=bad_port, environ={}, cwd=tmp_path)
    assert caught.value.exit_code == 2
    assert "--port" in str(caught.value)


def test_a_port_edited_in_the_env_file_is_refused_naming_both_ports(tmp_path: Path) -> None:
    """An agent that points its view at another instance's API reaches nothing."""
    register_instance(tmp_path, slot=5)
    edit_view(tmp_path, "KTRDR_API_PORT", "8003")
    with pytest.raises(KtrdrError, match=r"says KTRDR_API_PORT=8003 but this home recorded 8005"):
        resolve_target(url_flag=None, port_flag=None, environ={}, cwd=tmp_path)


def test_an_env_file_no_instance_of_this_home_owns_names_no_port(tmp_path: Path) -> None:
    (tmp_path / ".env.sandbox").write_text("KTRDR_INSTANCE_ID=x\nKTRDR_API_PORT=8005\n")
    with pytest.raises(KtrdrError, match=r"is not registered: .* or pass -p/-u"):
        resolve_target(url_flag=None, port_flag=None, environ={}, cwd=tmp_path)


@pytest.mark.parametrize(
    "bad_url",
    [
        "localhost:8000",
        "ftp://x",
        "http://",
        "http://h:99999",
        "http://[::1",
        "http://[::1]x:80",
        "http://[zz]:80",
        "http://x y",
        "http://:80",
    ],
)
def test_bad_url_is_a_usage_error(tmp_path: Path, bad_url: str) -> None:
    with pytest.raises(BadTargetError) as caught:
        resolve_target(url_flag=bad_url, port_flag=None, environ={}, cwd=tmp_path)
    assert caught.value.exit_code == 2
    assert "expected" in str(caught.value)


@pytest.mark.parametrize("port", ["0", "99999", "abc", " 80", ""])
def test_url_port_follows_the_port_flag_rule(tmp_path: Path, port: str) -> None:
    with pytest.raises(BadTargetError, match=r"expected 1-65535$"):
        resolve_target(url_flag=f"http://x:{port}", port_flag=None, environ={}, cwd=tmp_path)


def test_malformed_ipv6_url_from_env_is_a_bad_target(tmp_path: Path) -> None:
    env = {"KTRDR_API_URL": "http://[::1"}
    with pytest.raises(BadTargetError, match="env KTRDR_API_URL"):
        resolve_target(url_flag=None, port_flag=None, environ=env, cwd=tmp_path)


@pytest.mark.parametrize(
    "url", ["http://[::1]:8000", "https://a_b-c.example", "http://user:pw@host:81/base/"]
)
def test_good_urls_are_accepted(tmp_path: Path, url: str) -> None:
    target = resolve_target(url_flag=url, port_flag=None, environ={}, cwd=tmp_path)
    assert target.url == url.rstrip("/")
