"""The Python API (issue 28 part 4): `tcpteardown.load`, `explain`, `census`, `diff`
and `ladder` give what the commands print, as objects, on real captures; docs/api.md
is what api.py's signatures and docstrings say; the notebooks use the API and the
classroom helpers, nothing else of the package.
"""

from __future__ import annotations

import ast
import io
import json
import warnings
from contextlib import redirect_stderr, redirect_stdout

import pytest

import tcpteardown as tt
from conftest import REPO
from tcpteardown import api, cli
from tcpteardown.api_reference import reference
from tcpteardown.schemas import validator

LINUX = REPO / "captures" / "linux"
INCIDENT = LINUX / "incident"


def cli_output(*argv) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = cli.main(list(argv))
    return code, out.getvalue()


def test_docs_api_md_is_generated_from_api_py():
    assert (REPO / "docs" / "api.md").read_text() == reference(), \
        "docs/api.md is stale: python -m tcpteardown.api_reference > docs/api.md"


def test_every_public_name_is_documented_and_exported_at_the_top():
    page = reference()
    for name in api.__all__:
        assert getattr(tt, name) is getattr(api, name) and name in tt.__all__
        assert f"`{name}" in page
        thing = getattr(api, name)
        assert (thing.__doc__ or "").strip(), f"{name} has no docstring"


@pytest.mark.parametrize("name", ["broken-pipe", "reset-by-peer", "graceful-close", "refused"])
def test_explain_gives_the_clis_text_and_json_as_objects(name):
    path = LINUX / f"{name}.pcapng"
    explanation = tt.explain(tt.load(path))
    code, text = cli_output("explain", str(path))
    assert code == 0 and explanation.text() == text.rstrip("\n")
    code, printed = cli_output("explain", str(path), "--json")
    document = explanation.document()
    validator("explain").validate(document)
    assert document == json.loads(printed)
    failing = [link for link in explanation.links if link.call.failed]
    assert [link.call.outcome for link in failing] == [entry["call"]["errno"] for entry in document["links"]
                                                         if entry["call"]["errno"] not in ("ok", "EOF")]


def test_the_incident_capture_and_its_log_line_link_through_load():
    recording = tt.load(INCIDENT / "capture.pcap", logs=[INCIDENT / "client.log"])
    explanation = tt.explain(recording)
    from_log = [link for link in explanation.links if link.call.source == "log"]
    assert from_log and from_log[0].call.errno == "ECONNRESET" and from_log[0].kind is tt.CauseKind.RST
    assert from_log[0].cause is not None and from_log[0].cause.is_rst
    code, text = cli_output("explain", str(INCIDENT / "capture.pcap"), "--log", str(INCIDENT / "client.log"))
    assert code == 0 and explanation.text() == text.rstrip("\n")


def test_explain_conn_keeps_one_connection_and_an_unknown_one_is_a_user_error():
    recording = tt.load(LINUX / "keepalive-race-reset.pcapng")
    one = tt.explain(recording, conn=1)
    assert one.links and len({frozenset((l.call.local, l.call.remote)) for l in one.links}) == 1
    with pytest.raises(tt.UserError):
        tt.explain(recording, conn=99)


def test_census_and_its_document_match_the_cli(tmp_path):
    path = str(LINUX / "keepalive-race-reset.pcapng")
    counted = tt.census(path)
    document = tt.census_document(counted, label=path)
    validator("census").validate(document)
    code, printed = cli_output("census", path, "--json")
    assert code == 0 and document == json.loads(printed)
    assert [c.end for c in counted.iter_connections()] == [c["ended"] for c in document["connections"]]


def test_census_of_a_set_with_a_damaged_member_warns_and_counts_the_rest(tmp_path):
    good = LINUX / "refused.pcapng"
    (tmp_path / "a.pcapng").write_bytes(good.read_bytes())
    damaged = (LINUX / "broken-pipe.pcapng").read_bytes()
    (tmp_path / "b.pcapng").write_bytes(damaged[: len(damaged) - 37])
    said = []
    counted = tt.census(tmp_path, warn=said.append)
    assert len(counted) == len(tt.census(good)) + len(tt.census(LINUX / "broken-pipe.pcapng")) and said
    assert any("b.pcapng" in line for line in said)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tt.census([tmp_path / "a.pcapng", tmp_path / "b.pcapng"])
    assert caught and all(issubclass(w.category, tt.EvidenceWarning) for w in caught)
    loaded = []
    recording = tt.load(tmp_path, warn=loaded.append)  # explain's reading of the same set
    assert any("b.pcapng" in line for line in loaded) and recording.segments
    assert tt.explain(recording).links


def test_diff_of_two_captures_is_the_clis():
    a, b = LINUX / "broken-pipe.pcapng", LINUX / "ipv6" / "broken-pipe.pcapng"
    result = tt.diff(a, b)
    code, printed = cli_output("diff", str(a), str(b))
    assert code == (0 if result.matches else 1) and tt.diff_text(result) == printed
    document = tt.diff_document(result, a_file=str(a), b_file=str(b))
    validator("diff").validate(document)
    assert document == json.loads(cli_output("diff", str(a), str(b), "--json")[1])
    different = tt.diff(a, LINUX / "reset-by-peer.pcapng")
    assert not different.matches and different.differences


def test_ladder_is_a_figure_of_the_connection():
    figure = tt.ladder(tt.load(LINUX / "broken-pipe.pcapng"))
    texts = " ".join(t.get_text() for ax in figure.axes for t in ax.texts)
    assert "RST" in texts and "EPIPE" in texts


def test_bad_input_is_a_user_error_naming_the_file(tmp_path):
    missing = tmp_path / "nothing.pcap"
    with pytest.raises(tt.UserError, match="nothing.pcap"):
        tt.load(missing)
    junk = tmp_path / "junk.pcap"
    junk.write_bytes(b"this is not a capture at all\n" * 4)
    with pytest.raises(tt.UserError, match="junk.pcap"):
        tt.load(junk)


NOTEBOOK_MODULES = {"tcpteardown", "tcpteardown.notebook"}


def test_notebooks_use_only_the_api_and_the_classroom_helpers():
    """Every import in every notebook is the package's public API or tcpteardown.notebook,
    and every tt.NAME a notebook calls is public there (no leading underscore)."""
    from tcpteardown import notebook

    for path in sorted((REPO / "notebooks").glob("*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        tree = ast.parse(code)
        modules = {node.module if isinstance(node, ast.ImportFrom) else alias.name
                   for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                   for alias in node.names}
        imported = {f"{m}.{a.name}" if isinstance(n, ast.ImportFrom) else a.name
                    for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
                    for m in [getattr(n, "module", None)] for a in n.names}
        assert imported <= NOTEBOOK_MODULES, f"{path.name} imports {imported - NOTEBOOK_MODULES}"
        assert modules
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                owner = {"tt": notebook, "tcpteardown": tt}.get(node.value.id)
                if owner is not None:
                    assert not node.attr.startswith("_") and hasattr(owner, node.attr), \
                        f"{path.name}: {node.value.id}.{node.attr}"
                    if owner is tt:
                        assert node.attr in tt.__all__, f"{path.name}: tcpteardown.{node.attr} is not public"


def test_the_analysis_own_times_follow_tz_like_the_paragraphs():
    """use-after-close: the link's sentence names when the socket was closed. With a zone,
    that time reads in the zone as the paragraph's do (it was UTC beside them), in the
    objects and the steps a class walks through."""
    from tcpteardown.views.steps import build_steps

    recording = tt.load(LINUX / "use-after-close.pcapng")
    (utc,) = [l for l in tt.explain(recording).links if "closed the socket itself" in l.explanation]
    (tokyo,) = [l for l in tt.explain(recording, tz="Asia/Tokyo").links if "closed the socket itself" in l.explanation]
    assert " UTC" in utc.explanation and " JST" in tokyo.explanation and " UTC" not in tokyo.explanation
    when = utc.local_call.end_ns
    assert f" {(when // 1_000_000_000 + 9 * 3600) % 86400 // 3600:02d}:" in tokyo.explanation
    explained = tt.explain(recording, tz="Asia/Tokyo")
    whys = [step.why for step in build_steps(recording, explained.links) if "closed the socket" in (step.why or "")]
    assert whys and all(" JST" in why for why in whys)
    assert " UTC" not in explained.text() and " UTC" not in json.dumps(explained.document())
