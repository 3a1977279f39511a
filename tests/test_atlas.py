"""The Linux/macOS atlas: each stored pair diffs by structure, exits 1 and names the stack differences.

A side: a scenario's Linux bundle from captures/linux/. B side: a real macOS
lo0 capture from a public project, shipped in captures/macos/public/ where
its licence allows, else read from the shared corpus.
"""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import CORPUS, REPO
from tcpteardown.analysis.diff import diff
from tcpteardown.formats.bundle import load_recording
from tcpteardown.model import TcpFlags
from tcpteardown.scenarios.atlas import ATLAS

CAPTURES = REPO / "captures"


def _darwin(pair) -> Path:
    if not pair.shipped and not (CORPUS / pair.corpus_path).exists():
        pytest.skip(f"needs the shared corpus at {CORPUS} ({pair.corpus_path} is not redistributed)")
    return pair.darwin_path(CAPTURES, CORPUS)


def _cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tcpteardown", *map(str, args)], capture_output=True,
                          text=True, timeout=120, cwd=REPO)


@pytest.mark.parametrize("pair", ATLAS, ids=lambda p: p.scenario)
def test_each_atlas_pair_differs_and_names_the_stack_differences(pair):
    darwin = _darwin(pair)
    done = _cli("diff", "--align", "structure", pair.linux_path(CAPTURES), darwin,
                "--conn-b", pair.darwin.connection)
    assert done.returncode == 1, done.stderr
    stack = done.stdout.split(" stack differences (the kernels chose differently):\n", 1)[1]
    assert "client -> server SYN: option MSS 65495 in A, 16344 in B" in stack
    assert "options in the order MSS,SACK_PERM,TS,WS in A, MSS,WS,TS,SACK_PERM in B" in stack
    assert "option WS 10 in A" in stack  # Linux lo scales by 2^10, XNU by 2^5 or 2^6
    out = json.loads(_cli("diff", "--align", "structure", "--json", pair.linux_path(CAPTURES), darwin,
                          "--conn-b", pair.darwin.connection).stdout)
    assert out["align_by"] == "structure" and not out["matches"]
    counted = [d for d in out["differences"] if d["counts"]]
    assert {d["category"] for d in counted} <= {"stack", "teardown"}  # the applications' are shown, not counted
    if pair.scenario != "refused":  # a refused SYN carries no application data
        assert any(d["category"] == "application" for d in out["differences"])


def test_who_closed_first_is_the_applications_and_closers_are_aligned():
    pair = next(p for p in ATLAS if p.scenario == "broken-pipe")
    result = diff(load_recording(pair.linux_path(CAPTURES)), load_recording(_darwin(pair)),
                  connection_b=pair.darwin.connection, align_by="structure")
    closing = [(row.a.sender, row.a.flags.render(), row.b.sender, row.b.flags.render())
               for row in result.aligned_rows if row.kind == "segment" and row.a and row.b
               and row.a.flags & (TcpFlags.FIN | TcpFlags.RST)]
    # Linux: the server closes; the Mac capture: curl (the client). Closer faces closer.
    assert closing == [("closer", "FIN,ACK", "closer", "FIN,ACK"), ("closer", "RST", "closer", "RST")]
    (who,) = [d for d in result.differences if getattr(d, "what", "") == "closer"]
    assert who.category == "application" and not who.counts
    assert "the server closed first in A, the client in B" in who.describe()
    assert result.by_category("teardown") == ()  # the same story: FIN, data after it, bare RST
    assert (result.a.closer, result.b.closer) == ("server", "client")
    from tcpteardown.views.diff_figure import draw_diff
    texts = [t.get_text() for ax in draw_diff(result).axes for t in ax.texts]
    assert {"closer (server)", "peer (client)", "closer (client)", "peer (server)"} <= set(texts)


def test_aligning_by_steps_instead_pairs_nothing_of_the_teardown():
    """The old alignment (by client/server and payload) is what structure mode is for: it cannot pair them."""
    pair = next(p for p in ATLAS if p.scenario == "broken-pipe")
    result = diff(load_recording(pair.linux_path(CAPTURES)), load_recording(_darwin(pair)))
    assert len([d for d in result.differences if d.kind == "only-in" and d.counts]) > 5


def test_fin_then_rst_names_what_answered_the_fin():
    pair = next(p for p in ATLAS if p.scenario == "keepalive-race-eof")
    result = diff(load_recording(pair.linux_path(CAPTURES)), load_recording(_darwin(pair)),
                  connection_b=pair.darwin.connection, align_by="structure")
    teardown = [d.describe() for d in result.by_category("teardown")]
    assert any("peer -> closer PSH,ACK" in text and "only in A" in text for text in teardown), teardown
    assert any("RST in A" in text and "RST,ACK" in text and "answer different steps" in text
               for text in teardown), teardown


def test_an_rst_flavour_answering_the_same_step_is_a_stack_difference():
    linux = load_recording(CAPTURES / "linux" / "broken-pipe.pcapng")
    rst = next(s for s in linux.segments if s.is_rst)
    with_ack = replace(linux, segments=tuple(replace(s, flags=TcpFlags.RST | TcpFlags.ACK) if s is rst else s
                                             for s in linux.segments))
    result = diff(linux, with_ack, align_by="structure")
    (flags,) = [d for d in result.differences if d.kind == "flags"]
    assert flags.category == "stack" and "bare RST against RST,ACK" in flags.describe()


def test_a_fin_sent_again_from_closing_is_named_a_stack_difference():
    """What XNU sends in a simultaneous close (tcp_outflags[CLOSING] = FIN,ACK), added to Linux's own."""
    linux = load_recording(CAPTURES / "linux" / "simultaneous-close.pcapng")
    fins = [s for s in linux.segments if s.is_fin]
    assert len(fins) == 2
    last = max(s.time_ns for s in linux.segments)
    again = tuple(replace(f, frame=1000 + n, time_ns=last + n + 1) for n, f in enumerate(fins))
    darwin_like = replace(linux, segments=linux.segments + again, calls=(), kernel_events=())
    result = diff(linux, darwin_like, align_by="structure")
    repeated = [d for d in result.differences if d.kind == "only-in" and d.side == "B"
                and d.step.flags & TcpFlags.FIN]
    assert len(repeated) == 2 and all(d.category == "stack" and "CLOSING" in d.describe() for d in repeated)


def test_shipped_mac_captures_are_the_public_files_byte_for_byte_with_attribution():
    manifest = {}
    if (CORPUS / "macos" / "MANIFEST.tsv").exists():
        with (CORPUS / "macos" / "MANIFEST.tsv").open() as table:
            manifest = {row["file"]: row for row in csv.DictReader(table, delimiter="\t")}
    readme = (CAPTURES / "macos" / "README.md").read_text()
    shipped = {p.shipped: p for p in ATLAS if p.shipped}
    assert set(shipped) == {p.name for p in (CAPTURES / "macos" / "public").iterdir()}
    for name, pair in shipped.items():
        assert name in readme and pair.licence in readme
        original = Path(pair.corpus_path).name
        assert original in readme
        if manifest:
            digest = hashlib.sha256((CAPTURES / "macos" / "public" / name).read_bytes()).hexdigest()
            assert digest == manifest[original]["sha256"], name
            assert manifest[original]["repo"] in readme


def test_the_readme_atlas_table_is_what_the_files_give():
    """Kind, files and stack differences of each README row come from the diff, not from memory."""
    from tcpteardown.views.diff_table import atlas_table

    for pair in ATLAS:
        _darwin(pair)
    rows = [(p, diff(load_recording(p.linux_path(CAPTURES)), load_recording(p.darwin_path(CAPTURES, CORPUS)),
                     connection_b=p.darwin.connection, align_by="structure")) for p in ATLAS]
    generated = [line.split(" | ")[:4] for line in atlas_table(rows).splitlines()[2:]]
    readme = (REPO / "README.md").read_text()
    table = readme[readme.index("| teardown | Linux bundle | real macOS capture |"):].splitlines()[2:2 + len(ATLAS)]
    assert [line.split(" | ")[:4] for line in table] == generated
