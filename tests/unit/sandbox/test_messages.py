"""Messages at the edges: a late Ctrl-C in create, --output parents, colliding and non-ASCII
names, the length limit of this checkout, the logs hint, json's 'at' wording."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from click.testing import CliRunner

from ktrdr.cli.main import cli
from ktrdr.cli.sandbox.base.errors import SandboxError
from ktrdr.cli.sandbox.commands.render import what_goes
from ktrdr.cli.sandbox.home import registry
from ktrdr.cli.sandbox.home.instance import (
    max_name_length,
    slugify,
    suggest_name,
    validate_create_name,
)
from ktrdr.cli.sandbox.provision.create import create_instance
from ktrdr.cli.sandbox.provision.init_checkout import init_instance
from tests.support.git_repos import make_repo
from tests.support.instances import register_instance


@pytest.fixture(autouse=True)
def _no_port_probing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stand-in probe: every port free (real probing is covered in test_allocation)."""
    monkeypatch.setattr("ktrdr.cli.sandbox.provision.allocation.port_in_use", lambda port: False)


# --- Ctrl-C after the point of no return ---------------------------------------------------


def _ctrl_c_right_after(monkeypatch: pytest.MonkeyPatch, target: str) -> None:
    """Delivers a real SIGINT to this thread the moment `target` returns: the one instant a
    user cannot hit on purpose, so the test makes it happen. `raise_signal` runs the handler
    before it returns; `os.kill` of the own pid may let another thread take the signal later
    (on a loaded machine, after the point of no return the test is about)."""
    module, name = target.rsplit(".", 1)
    import importlib

    owner = importlib.import_module(module)
    original = getattr(owner, name)

    def finish_then_ctrl_c(*args: object, **kwargs: object) -> object:
        result = original(*args, **kwargs)
        signal.raise_signal(signal.SIGINT)
        return result

    monkeypatch.setattr(owner, name, finish_then_ctrl_c)


@pytest.mark.timing
def test_ctrl_c_just_after_registration_keeps_the_instance_and_reports_it(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _ctrl_c_right_after(monkeypatch, "ktrdr.cli.sandbox.provision.claims.finish_claim")
    out = CliRunner().invoke(cli, ["sandbox", "create", "feat-a"])
    assert out.exit_code == 0, out.output
    assert "Instance: ktrdr--feat-a" in out.stdout
    assert "interrupted after instance ktrdr--feat-a was complete; it was kept" in out.stderr
    entry = registry.load()["ktrdr--feat-a"]
    assert entry.state == "ready"
    assert Path(entry.path).is_dir()
    assert (Path(entry.path) / ".env.sandbox").is_file()


@pytest.mark.timing
def test_ctrl_c_while_printing_the_result_still_prints_it_all(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _ctrl_c_right_after(monkeypatch, "ktrdr.cli.sandbox.commands.render.print_fields")
    out = CliRunner().invoke(cli, ["sandbox", "create", "feat-a"])
    assert out.exit_code == 0, out.output
    assert "next: cd" in out.stderr
    assert "it was kept" in out.stderr


@pytest.mark.timing
def test_ctrl_c_before_registration_still_rolls_back(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _ctrl_c_right_after(monkeypatch, "ktrdr.cli.sandbox.instances.worktree.ensure_excluded")
    out = CliRunner().invoke(cli, ["sandbox", "create", "feat-a"])
    assert out.exit_code == 130
    assert registry.load() == {}
    assert not (repo.parent / "ktrdr--feat-a").exists()


# --- evidence --output ---------------------------------------------------------------------


def _env_instance(repo: Path) -> None:
    register_instance(repo, slot=6)


def test_evidence_output_in_a_missing_directory_is_refused_and_nothing_is_made(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-such-docker.sock")
    _env_instance(repo)
    target = tmp_path / "nonexistent" / "dir" / "x.tgz"
    out = CliRunner().invoke(cli, ["sandbox", "evidence", "--output", str(target)])
    assert out.exit_code == 1
    assert f"directory {target.parent} does not exist" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "nonexistent").exists()


def test_evidence_output_in_an_existing_directory_is_written(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-such-docker.sock")
    _env_instance(repo)
    target = tmp_path / "x.tgz"
    out = CliRunner().invoke(cli, ["sandbox", "evidence", "--output", str(target)])
    assert out.exit_code == 0, out.output
    assert target.is_file()


# --- names ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("first", "second"), [("a-b", "a.b"), ("upper", "UPPER"), ("x_y", "x_Y")])
def test_a_name_with_the_same_id_as_another_says_which_and_suggests_a_free_one(
    repo: Path, first: str, second: str
) -> None:
    create_instance(name=first, cwd=repo)
    with pytest.raises(SandboxError) as caught:
        create_instance(name=second, cwd=repo)
    message = str(caught.value)
    assert f"instance name {second!r} collides with existing instance {first!r}" in message
    assert "map to the same id" in message
    suggestion = message.rsplit("such as ", 1)[1].strip("'")
    assert slugify(f"ktrdr--{suggestion}") != slugify(f"ktrdr--{first}")
    create_instance(name=suggestion, cwd=repo)  # the suggestion really is free


def test_the_same_name_again_still_says_where_it_is(repo: Path) -> None:
    create_instance(name="feat", cwd=repo)
    with pytest.raises(SandboxError, match=r"instance ktrdr--feat already exists at .*cd there"):
        create_instance(name="feat", cwd=repo)


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [("föö", "foo"), ("café-1", "cafe-1"), ("my feat", "my-feat"), ("日本", None), ("日本x", None)],
)
def test_non_ascii_names_get_a_close_suggestion_or_none(name: str, suggestion: str | None) -> None:
    assert suggest_name(name) == suggestion
    with pytest.raises(SandboxError) as caught:
        validate_create_name(name)
    message = str(caught.value)
    if suggestion is None:
        assert "try" not in message
    else:
        assert message.endswith(f"try {suggestion!r}")


def test_suggestions_are_valid_names() -> None:
    for name in ["föö..bar.lock", "-x-", "ä" * 100, "a/b/c", ".hidden"]:
        suggestion = suggest_name(name)
        assert suggestion is None or validate_create_name(suggestion) == suggestion


def test_the_length_limit_is_the_one_of_this_checkout(tmp_path: Path) -> None:
    checkout = make_repo(tmp_path / "a-rather-long-checkout-name")
    limit = max_name_length(checkout.name)
    assert limit == 63 - len("a-rather-long-checkout-name--")
    assert len(slugify(f"{checkout.name}--{'x' * limit}")) == 63
    os.chdir(checkout)
    with pytest.raises(SandboxError) as caught:
        create_instance(name="x" * (limit + 1), cwd=checkout)
    message = str(caught.value)
    assert f"at most {limit} in checkout 'a-rather-long-checkout-name'" in message
    assert registry.load() == {}
    result = create_instance(name="x" * limit, cwd=checkout)
    assert result.instance_id == f"a-rather-long-checkout-name--{'x' * limit}"


def test_names_that_differ_past_the_cut_no_longer_share_an_id(tmp_path: Path) -> None:
    """Before: both were accepted up to 63 characters and truncated into one id."""
    checkout = make_repo(tmp_path / "ktrdr")
    os.chdir(checkout)
    long = "n" * 62
    with pytest.raises(SandboxError, match="at most 56 in checkout 'ktrdr'"):
        create_instance(name=long + "a", cwd=checkout)


# --- logs hint, registry wording -----------------------------------------------------------


def test_logs_outside_an_instance_suggests_its_own_option(tmp_path: Path) -> None:
    os.chdir(tmp_path)
    out = CliRunner().invoke(cli, ["sandbox", "logs"])
    assert out.exit_code == 1
    assert "pass --instance NAME" in out.stderr
    assert "pass an instance NAME" not in out.stderr


def test_up_outside_an_instance_still_suggests_a_name(tmp_path: Path) -> None:
    os.chdir(tmp_path)
    out = CliRunner().invoke(cli, ["sandbox", "up"])
    assert out.exit_code == 1
    assert "pass an instance NAME" in out.stderr


def test_a_registry_with_an_unterminated_string_says_at_once(tmp_path: Path) -> None:
    path = registry.registry_path()
    path.parent.mkdir(parents=True)
    path.write_text('{"version": 1,\n "instances": {"abc')
    with pytest.raises(SandboxError) as caught:
        registry.load()
    message = str(caught.value)
    assert "Unterminated string starting at line 2" in message
    assert "at at" not in message


def test_create_restores_the_ctrl_c_handler(repo: Path) -> None:
    before = signal.getsignal(signal.SIGINT)
    create_instance(name="feat-a", cwd=repo)
    assert signal.getsignal(signal.SIGINT) is before


# --- destroy's prompt ----------------------------------------------------------------------


def test_destroy_prompt_names_the_worktree_directory_it_deletes_and_the_clone_it_keeps(
    repo: Path,
) -> None:
    created = create_instance(name="feat-a", cwd=repo)
    init_instance(cwd=repo)
    entries = registry.load()
    text = what_goes([entries["ktrdr--feat-a"], entries["ktrdr"]])
    assert f"and the worktree directory {created.path};" in text
    assert f"kept: {repo} (only its .env.sandbox is removed)" in text
    assert "worktree" not in what_goes([entries["ktrdr"]])


def test_logs_in_a_checkout_without_the_compose_file_says_to_update_the_branch(
    repo: Path, docker: object
) -> None:
    """A branch from before the stack existed: the same words as `up`, not a bare OSError."""
    assert CliRunner().invoke(cli, ["sandbox", "init"]).exit_code == 0
    out = CliRunner().invoke(cli, ["sandbox", "logs"])
    assert out.exit_code == 1
    assert out.stderr == (
        f"Error: {repo / 'docker-compose.sandbox.yml'} is missing: this checkout has no stack "
        "definition; update the branch from main\n"
    )
