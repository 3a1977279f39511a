"""`tcpteardown run A B C` and `run --all`: several scenarios in one process,
one summary line each, exit 1 when any differs. Real sockets, real captures."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from tcpteardown import cli
from tcpteardown.scenarios import registry

SUMMARY = r"^([✓✗]) (\S+) +(\d+\.\d\d) s  (.*)$"


def lines_of(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


@pytest.mark.needs_capture
def test_two_named_scenarios_in_one_process():
    done = subprocess.run([sys.executable, "-m", "tcpteardown", "run", "graceful-close", "refused"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    first, second, total = lines_of(done.stdout)
    import re

    one = re.match(SUMMARY, first)
    two = re.match(SUMMARY, second)
    assert one.group(1, 2) == ("✓", "graceful-close") and one.group(4) == "as expected: client recv() -> EOF (fin)"
    assert two.group(1, 2) == ("✓", "refused") and "connect() -> ECONNREFUSED (rst)" in two.group(4)
    assert 0 < float(one.group(3)) < 30
    assert re.fullmatch(r"2 scenarios \(ipv4\): 2 as expected, 0 differed · \d+\.\d s", total)


@pytest.fixture
def wrong_expectation():
    """graceful-close played for real, judged against reset-by-peer's expectation."""
    graceful, reset = registry.get_scenario("graceful-close"), registry.get_scenario("reset-by-peer")
    wrong = dataclasses.replace(graceful, name="graceful-close-expecting-rst", expected=reset.expected)
    registry.register(wrong)
    yield wrong.name
    del registry.SCENARIOS[wrong.name]


@pytest.mark.needs_capture
def test_exit_1_when_any_scenario_differs(wrong_expectation, capsys):
    assert cli.main(["run", "broken-pipe", wrong_expectation, "--ipv6"]) == 1
    out = lines_of(capsys.readouterr().out)
    assert out[0].startswith("✓ broken-pipe ")
    assert out[1].startswith(f"✗ {wrong_expectation} ")
    assert "DIFFERS: expected client recv() -> ECONNRESET (rst); observed client recv() -> EOF (fin)" in out[1]
    assert out[2].startswith("2 scenarios (ipv6): 1 as expected, 1 differed")


@pytest.mark.parametrize("argv, message", [
    (["run"], "give a NAME"),
    (["run", "refused", "--all"], "not both"),
    (["run", "refused", "graceful-close", "-o", "x.pcapng"], "one bundle"),
    (["run", "refused", "no-such-scenario"], "no scenario named 'no-such-scenario'"),
])
def test_usage_errors_exit_2_in_one_line(argv, message, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_listing_and_help_import_neither_scapy_nor_matplotlib():
    for argv in (["list"], ["run", "--help"]):
        done = subprocess.run([sys.executable, "-X", "importtime", "-m", "tcpteardown", *argv],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0
        loaded = {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
        assert "tcpteardown.cli" in loaded
        assert not {"scapy", "matplotlib"} & loaded, argv


@pytest.mark.needs_capture
def test_several_scenarios_as_json_are_an_array_of_runs(capsys):
    import json

    assert cli.main(["run", "refused", "use-after-close", "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)
    assert [(r["scenario"], r["family"], r["matches"]) for r in runs] == [("refused", "ipv4", True),
                                                                          ("use-after-close", "ipv4", True)]
    assert all(r["seconds"] > 0 and r["segments"] is not None for r in runs)
    assert runs[1]["observed"] == [{"role": "client", "op": "recv", "outcome": "EBADF", "cause": "local-close"}]
