"""Census's "predicted" member: what each side's application saw, from the Zeek
history alone, must agree with `explain`'s predictions from the segments."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import CORPUS, REPO
from tcpteardown.analysis.census import census
from tcpteardown.analysis.predict import predict, predicted_from_history
from tcpteardown.errors import UserError
from tcpteardown.formats.bundle import load_recording

STORED = sorted((REPO / "captures" / "linux").glob("**/*.pcapng"))


def _captures():
    corpus = sorted(CORPUS.glob("**/*.pcap*")) if CORPUS.is_dir() else []
    return STORED + corpus


@pytest.mark.parametrize("os_name", ["Linux", "Darwin"])
def test_history_predictions_agree_with_the_segment_predictions(os_name):
    compared = 0
    for path in _captures():
        try:
            recording = load_recording(path)
        except UserError:
            continue  # the corpus holds deliberately broken files
        links = predict(replace(recording, calls=(), kernel_events=()), os_name)
        for conn in census(recording.segments).connections:
            from_history = dict(predicted_from_history(conn.history, os_name))
            for side, endpoint in (("client", conn.client), ("server", conn.server)):
                from_segments = {(link.call.op, link.call.errno or "EOF") for link in links
                                 if link.call.local == endpoint and link.call.remote in (conn.client, conn.server)}
                if from_segments:
                    compared += 1
                    assert set(from_history.get(side, ())) == from_segments, (path.name, side, conn.history)
    assert compared >= 40  # every failing scenario over both families at least


@pytest.mark.parametrize("history, os_name, expected", [
    ("Sr", "Linux", {"client": {"connect": "ECONNREFUSED"}}),
    ("S", "Linux", {"client": {"connect": "ETIMEDOUT"}}),
    ("ShADadR", "Linux", {"server": {"read": "ECONNRESET", "write": "ECONNRESET"}}),
    ("ShADadR", "Darwin", {"server": {"read": "ECONNRESET", "write": "EPIPE"}}),
    ("ShADafr", "Darwin", {"client": {"read": "ECONNRESET", "write": "EPIPE"}}),
    ("ShADaFfR", "Linux", {}),  # both FINs before the RST: nobody is told; the client reset it itself
])
def test_history_situations(history, os_name, expected):
    assert {side: dict(rows) for side, rows in predicted_from_history(history, os_name)} == expected


def test_census_json_carries_predictions_and_the_rules_used(tmp_path):
    capture = REPO / "captures" / "linux" / "write-after-reset.pcapng"
    for os_flag, rules in (("linux", "Linux rules"), ("darwin", "Darwin rules")):
        result = subprocess.run([sys.executable, "-m", "tcpteardown", "census", "--json", "--os", os_flag,
                                 str(capture)], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        document = json.loads(result.stdout)
        assert document["predicted_with"] == rules
        (connection,) = document["connections"]
        expected = {side: dict(rows) for side, rows in predicted_from_history(connection["history"], os_flag.capitalize())}
        assert connection["predicted"] == expected and expected
