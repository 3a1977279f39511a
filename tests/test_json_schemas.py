"""The published JSON contract (issue 28): every `--json` document is checked
against its schema file in src/tcpteardown/schemas by a maintained validator
(jsonschema, Draft 2020-12), on every capture the tests hold, every scenario
(tests/test_scenario_library.py validates each run), the scenario list and diffs.
An undeclared key, a missing key or a wrong type fails.
"""

from __future__ import annotations

import copy
import io
import json
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import jsonschema
import pytest

from conftest import CORPUS, REPO
from tcpteardown import cli
from tcpteardown.schemas import CURRENT, DOCUMENTS, load, tag, validator

STORED = sorted((REPO / "captures" / "linux").rglob("*.pcapng"))


def corpus_captures() -> list[Path]:
    if not (CORPUS / "MANIFEST.tsv").exists():
        return []
    return sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.suffix in (".pcap", ".pcapng", ".cap"))


def json_of(*argv) -> tuple[int, dict]:
    """Run the CLI in this process (fast: no interpreter start per capture)."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = cli.main(list(argv))
    assert code in (0, 1, 3), err.getvalue()
    return code, json.loads(out.getvalue())


def test_every_schema_is_a_valid_schema_and_every_reference_resolves():
    resolver = validator("explain")._resolver  # its registry holds every schema file
    for name in ("defs", *DOCUMENTS):
        schema = load(name)
        jsonschema.Draft202012Validator.check_schema(schema)
        if name != "defs":
            assert schema["properties"]["schema"]["const"] == tag(name) == f"tcpteardown/{name}/{CURRENT[name]}"
        text, here = json.dumps(schema), schema["$id"]
        for ref in {part.split('"')[0] for part in text.split('"$ref": "')[1:]}:
            document, _, pointer = ref.partition("#")
            uri = (here.rsplit("/", 1)[0] + "/" + document) if document else here
            assert resolver.lookup(f"{uri}#{pointer}").contents, f"{name}: {ref} resolves to nothing"


@pytest.mark.parametrize("path", STORED, ids=lambda p: str(p.relative_to(REPO / "captures" / "linux")))
def test_explain_and_census_json_of_every_stored_capture(path):
    _, explained = json_of("explain", str(path), "--json")
    validator("explain").validate(explained)
    assert explained["schema"] == "tcpteardown/explain/1"
    _, counted = json_of("census", str(path), "--json")
    validator("census").validate(counted)


def test_explain_and_census_json_of_every_corpus_capture():
    paths = corpus_captures()
    if not paths:
        pytest.skip(f"needs the shared corpus at {CORPUS}")
    checked = 0
    for path in paths:
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            code = cli.main(["census", str(path), "--json"])
        if code == 2:  # not a TCP capture the census can read: said on stderr, nothing to check
            assert "Traceback" not in err.getvalue()
            continue
        counted = json.loads(out.getvalue())
        validator("census").validate(counted)
        if not counted["connections"]:  # explain refuses it in words (tested elsewhere)
            continue
        _, explained = json_of("explain", str(path), "--json")
        validator("explain").validate(explained)
        checked += 1
    assert checked >= len(paths) // 2, f"only {checked} of {len(paths)} corpus captures were read"


def test_list_json():
    _, listed = json_of("list", "--json")
    validator("list").validate(listed)
    assert len(listed["scenarios"]) >= 20


@pytest.mark.parametrize("a,b", [("broken-pipe", "write-after-reset"), ("graceful-close", "graceful-close"),
                                 ("refused", "connect-timeout")])
def test_diff_json(a, b):
    linux = REPO / "captures" / "linux"
    code, diffed = json_of("diff", str(linux / f"{a}.pcapng"), str(linux / f"{b}.pcapng"), "--json")
    validator("diff").validate(diffed)
    assert code == (0 if diffed["matches"] else 1)


def test_a_key_the_schema_does_not_declare_fails_validation():
    _, explained = json_of("explain", str(REPO / "captures" / "linux" / "broken-pipe.pcapng"), "--json")
    check = validator("explain")
    check.validate(explained)
    for where in ("top", "link", "call", "cause"):
        bad = copy.deepcopy(explained)
        target = {"top": bad, "link": bad["links"][0], "call": bad["links"][0]["call"],
                  "cause": bad["links"][0]["cause"]}[where]
        target["undeclared"] = 1
        with pytest.raises(jsonschema.ValidationError, match="undeclared"):
            check.validate(bad)
    missing = copy.deepcopy(explained)
    del missing["links"][0]["cause"]["frame"]
    with pytest.raises(jsonschema.ValidationError):
        check.validate(missing)
    numbered = copy.deepcopy(explained)
    numbered["links"][0]["call"]["errno"] = 32  # errno names, never numbers
    with pytest.raises(jsonschema.ValidationError):
        check.validate(numbered)


def test_the_reference_page_is_generated_from_the_schemas():
    from tcpteardown.schemas.reference import reference

    page = (REPO / "docs" / "json.md").read_text()
    assert page == reference(), "docs/json.md is stale: python -m tcpteardown.schemas > docs/json.md"
    for name in DOCUMENTS:  # every key of every document has its meaning on the page
        assert f"## {tag(name)}" in page
        for key in load(name)["properties"]:
            assert f"| `{key}` |" in page


def test_an_unknown_shape_version_is_a_usage_error_naming_the_known_ones():
    import subprocess

    result = subprocess.run([sys.executable, "-m", "tcpteardown", "census",
                             str(REPO / "captures" / "linux" / "refused.pcapng"), "--json-schema", "9"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "shapes 1" in result.stderr and "tcpteardown/census/1" in result.stderr
    _, current = json_of("census", str(REPO / "captures" / "linux" / "refused.pcapng"), "--json-schema", "1")
    assert current["schema"] == "tcpteardown/census/1"


def test_python_reaches_the_same_recording_without_parsing_text():
    import tcpteardown
    from tcpteardown.formats.bundle import load_recording

    path = REPO / "captures" / "linux" / "broken-pipe.pcapng"
    assert tcpteardown.load(path) == load_recording(path)
