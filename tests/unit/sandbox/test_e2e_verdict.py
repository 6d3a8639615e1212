"""What `test-e2e` passes to pytest (an allowlist, refused before anything runs) and when its
run counts as passed (pytest's exit 0 *and* this run's JUnit XML showing tests that ran)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from ktrdr.cli.main import cli
from ktrdr.cli.sandbox.base.errors import SandboxError
from ktrdr.cli.sandbox.e2e.args import check_pytest_args
from ktrdr.cli.sandbox.e2e.run import E2EResult, junit_summary
from ktrdr.errors import ExitCode

# --- the allowlist -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "argv"),
    [
        ([], ["tests/e2e"]),
        (["-k", "health"], ["-k", "health", "tests/e2e"]),
        (["-khealth and not slow"], ["-k", "health and not slow", "tests/e2e"]),
        (["-m", "not slow", "-x"], ["-m", "not slow", "-x", "tests/e2e"]),
        (["-xvs", "-vv", "-q", "-l"], ["-xvs", "-vv", "-q", "-l", "tests/e2e"]),
        (["--maxfail", "2", "--tb=short"], ["--maxfail=2", "--tb=short", "tests/e2e"]),
        (["--tb", "line", "--durations=5"], ["--tb=line", "--durations=5", "tests/e2e"]),
        (["-rA", "-r", "fE"], ["-r", "A", "-r", "fE", "tests/e2e"]),
        (
            ["--lf", "--ff", "--nf", "--exitfirst"],
            ["--lf", "--ff", "--nf", "--exitfirst", "tests/e2e"],
        ),
        (
            ["tests/e2e/test_instance.py::test_health", "-v"],
            ["-v", "tests/e2e/test_instance.py::test_health"],
        ),
        (["tests/e2e/test_x.py::test_y[a/b]"], ["tests/e2e/test_x.py::test_y[a/b]"]),
        (["tests/e2e/"], ["tests/e2e/"]),
    ],
)
def test_accepted_arguments_pass_and_test_paths_replace_the_whole_suite(
    args: list[str], argv: list[str]
) -> None:
    assert check_pytest_args(args).argv() == argv


REFUSED = [
    # run no tests
    ["--co"],
    ["--collect-only"],
    ["--collect-o"],
    ["--collect"],
    ["-h"],
    ["--help"],
    ["--version"],
    ["-V"],
    ["--fixtures"],
    ["--fixtures-per-test"],
    ["--markers"],
    ["--setup-plan"],
    ["--setup-only"],
    ["--setup-show"],
    # move the results
    ["--junitxml=/tmp/x"],
    ["--junitxml", "/tmp/x"],
    ["--junit-xml=/tmp/x"],
    ["--junit=/tmp/x"],
    ["--junit-prefix=x"],
    ["--resultlog=/tmp/x"],
    ["--result-log=/tmp/x"],
    ["--basetemp=/tmp"],
    ["--pastebin=all"],
    ["--report-log=/tmp/x"],
    # reconfigure pytest
    ["-p", "no:junitxml"],
    ["-pno:junitxml"],
    ["-xp", "no:junitxml"],
    ["-c", "/tmp/pytest.ini"],
    ["--config-file=/tmp/pytest.ini"],
    ["--rootdir=/"],
    ["-o", "junit_family=xunit1"],
    ["-ojunit_family=xunit1"],
    ["--override-ini=x=y"],
    ["--confcutdir=/"],
    ["--debug"],
    ["--import-mode=append"],
    ["--", "-k"],
    ["-"],
    ["-vk", "x"],
    ["-x5"],
    # values that are not what the option takes
    ["-k"],
    ["-k", "-x"],
    ["-k", " "],
    ["--tb=verbose"],
    ["--maxfail=-1"],
    ["--maxfail", "many"],
    ["--durations=99999999"],
    ["-rZ"],
    # tests outside tests/e2e
    ["tests/unit"],
    ["tests/e2e/../unit"],
    ["tests/e2ex/test_a.py"],
    ["/app/tests/e2e"],
    ["test_instance.py"],
    ["tests\\e2e"],
    # size and characters
    ["-v"] * 33,
    ["-k", "a" * 1025],
    ["-k", "a\x00b"],
    [""],
]


@pytest.mark.parametrize("args", REFUSED, ids=lambda a: " ".join(a)[:40] or "empty")
def test_arguments_outside_the_allowlist_are_a_usage_error(args: list[str]) -> None:
    with pytest.raises(SandboxError) as caught:
        check_pytest_args(args)
    assert caught.value.exit_code == ExitCode.USAGE
    assert "\n" not in caught.value.message
    assert len(caught.value.message) < 400


@pytest.mark.parametrize("args", [["--co"], ["--junitxml=/tmp/x"], ["--version"], ["-p", "x"]])
def test_the_cli_refuses_before_anything_runs_even_outside_an_instance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    # Outside an instance, anything that ran would fail with "no .env.sandbox" (exit 1).
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["sandbox", "test-e2e", *args])
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("Error: test-e2e does not pass pytest option")
    assert ".env.sandbox" not in result.stderr


# --- the verdict ----------------------------------------------------------------------------------


def junit(path: Path, *cases: str) -> Path:
    path.write_text(
        '<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest">'
        + "".join(cases)
        + "</testsuite></testsuites>"
    )
    return path


PASS = '<testcase classname="tests.e2e.test_instance" name="test_health"/>'
FAIL = (
    '<testcase classname="tests.e2e.test_instance" name="test_backtest">'
    '<failure message="assert 8 == 9">trace</failure></testcase>'
)
SKIP = '<testcase classname="t" name="test_trace"><skipped message="stand-in"/></testcase>'


def result(returncode: int, path: Path) -> E2EResult:
    return E2EResult("ktrdr--feat", returncode, path, junit_summary(path))


def test_exit_0_with_tests_that_ran_and_passed_is_passed(tmp_path: Path) -> None:
    run = result(0, junit(tmp_path / "j.xml", PASS, PASS, SKIP))
    assert run.passed
    data = run.to_json()
    assert (data["passed"], data["reason"], data["passed_tests"]) == (True, None, 2)


def test_exit_0_without_junit_xml_is_not_passed(tmp_path: Path) -> None:
    run = result(0, tmp_path / "e2e-junit.xml")  # e.g. --co, --help: pytest wrote none
    assert not run.passed
    assert run.to_json()["passed"] is False
    assert "wrote no JUnit XML" in str(run.reason)


def test_exit_0_with_zero_tests_is_not_passed(tmp_path: Path) -> None:
    run = result(0, junit(tmp_path / "j.xml"))
    assert not run.passed
    assert run.reason == "no test passed: the JUnit XML records 0 tests, none run"


def test_exit_0_with_only_skipped_tests_is_not_passed(tmp_path: Path) -> None:
    run = result(0, junit(tmp_path / "j.xml", SKIP, SKIP))
    assert not run.passed
    assert "records 2 tests, none run" in str(run.reason)


def test_exit_0_with_a_failure_recorded_is_not_passed(tmp_path: Path) -> None:
    run = result(0, junit(tmp_path / "j.xml", PASS, FAIL))
    assert not run.passed
    assert run.reason == "pytest exited 0 but the JUnit XML records 1 failed, 0 errors"


def test_nothing_collected_is_not_passed_and_says_why(tmp_path: Path) -> None:
    run = result(5, junit(tmp_path / "j.xml"))  # e.g. -k matching nothing
    assert not run.passed
    assert str(run.reason).startswith("no tests ran (pytest exit 5")


def test_failed_tests_are_not_passed_and_keep_pytests_code(tmp_path: Path) -> None:
    run = result(1, junit(tmp_path / "j.xml", PASS, FAIL))
    assert not run.passed
    assert run.reason == "pytest exited 1 (1 failed, 0 errors)"
    assert run.to_json()["failing"][0]["test"] == "tests.e2e.test_instance::test_backtest"


def test_a_junit_file_that_is_not_xml_is_not_passed(tmp_path: Path) -> None:
    bad = tmp_path / "j.xml"
    bad.write_text("not xml")
    assert not result(0, bad).passed
