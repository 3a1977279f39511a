"""Capture sets: the corpus merged into one pcap, then rotated by editcap (pcap and
pcapng members, gzip/xz/zstd compressed), counted by `census` as one stream and
compared with the single file; overlapping and damaged members are said, exit 3."""

from __future__ import annotations

import gzip
import json
import lzma
import subprocess
import sys
from pathlib import Path

import pytest
import zstandard

from conftest import tool_or_skip


CORPUS = Path(__file__).resolve().parents[1] / "captures"


def census(*args):
    proc = subprocess.run([sys.executable, "-m", "tcpteardown", "census", "--json", *map(str, args)],
                          capture_output=True, text=True, timeout=120)
    return proc.returncode, json.loads(proc.stdout) if proc.stdout else None, proc.stderr


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    """The Linux corpus as one pcap, and its census."""
    tshark, mergecap = tool_or_skip("tshark"), tool_or_skip("mergecap")
    from parallel import run_all

    folder = tmp_path_factory.mktemp("set")
    bundles = sorted((CORPUS / "linux").glob("*.pcapng"))
    # tshark, not editcap: editcap refuses a bundle's tcpteardown block in a pcap
    run_all([tshark, "-r", str(bundle), "-F", "pcap", "-w", str(folder / (bundle.stem + ".pcap"))]
            for bundle in bundles)
    parts = [part for part in (folder / (bundle.stem + ".pcap") for bundle in bundles)
             if part.exists() and part.stat().st_size > 24]
    merged = folder / "all.pcap"
    subprocess.run([mergecap, "-F", "pcap", "-w", merged, *parts], check=True, timeout=60)
    code, result, _ = census(merged)
    assert code == 0 and result["summary"]["connections"] > 10
    return folder, merged, result


def rotate(merged, folder, fmt):
    """editcap -c: small members, so connections span rotations; every 3rd kept plain."""
    folder.mkdir()
    subprocess.run([tool_or_skip("editcap"), "-F", fmt, "-c", "7", merged, folder / "cap"], check=True, timeout=60)
    members = sorted(folder.iterdir())
    assert len(members) > 5
    for i, member in enumerate(members):
        data = member.read_bytes()
        if i % 3 == 1:
            (folder / (member.name + ".gz")).write_bytes(gzip.compress(data))
        elif i % 3 == 2:
            packed = lzma.compress(data) if fmt == "pcap" else zstandard.ZstdCompressor().compress(data)
            (folder / (member.name + (".xz" if fmt == "pcap" else ".zst"))).write_bytes(packed)
        else:
            continue
        member.unlink()
    return members


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_rotated_set_counts_as_the_single_file(whole, fmt):
    folder, merged, expected = whole
    rotate(merged, folder / fmt, fmt)
    code, result, err = census(folder / fmt)
    assert code == 0, err
    assert result["summary"] == expected["summary"]
    assert result["connections"] == expected["connections"]


def test_glob_and_name_order_does_not_decide(whole):
    folder, merged, expected = whole
    rotate(merged, folder / "named", "pcap")
    # names that sort against time: reverse them
    members = sorted((folder / "named").iterdir())
    for i, member in enumerate(members):
        member.rename(folder / "named" / f"z{len(members) - i:03d}-{member.name}")
    code, result, err = census(str(folder / "named" / "*"))
    assert code == 0, err
    assert result["connections"] == expected["connections"]


def test_overlap_and_damage_are_said_and_the_rest_counted(whole, tmp_path):
    folder, merged, expected = whole
    members = rotate(merged, tmp_path / "bad", "pcap")
    (tmp_path / "bad" / "copy.pcap").write_bytes(merged.read_bytes())  # a second capture point
    truncated = tmp_path / "bad" / "trunc.pcap"
    truncated.write_bytes(merged.read_bytes()[:3000])
    (tmp_path / "bad" / "notes.txt").write_text("not a capture\n")
    code, result, err = census(tmp_path / "bad")
    assert code == 3, err
    lines = err.strip().splitlines()
    assert any("trunc.pcap" in line and "read 3,000 bytes" in line for line in lines)
    assert any("notes.txt" in line and "not a pcap" in line for line in lines)
    assert sum("overlap earlier files in time" in line for line in lines) == 1
    assert result["summary"]["packets"] > 2 * expected["summary"]["packets"]
    assert members


def test_damaged_gzip_member(whole, tmp_path):
    folder, merged, expected = whole
    (tmp_path / "s").mkdir()
    data = gzip.compress(merged.read_bytes())
    (tmp_path / "s" / "a.pcap.gz").write_bytes(data[:len(data) // 2])
    code, result, err = census(tmp_path / "s" / "a.pcap.gz")
    assert code == 3
    assert "a.pcap.gz" in err and "gzip" in err and "bytes" in err
    assert 0 < result["summary"]["packets"] < expected["summary"]["packets"]


def _on_a_pty(args, env_delay):
    """Run census with stderr on a real pseudo-terminal; return what the terminal got."""
    import os
    import pty

    primary, secondary = pty.openpty()
    env = dict(os.environ, TCPTEARDOWN_PROGRESS_DELAY=env_delay)
    proc = subprocess.Popen([sys.executable, "-m", "tcpteardown", "census", *map(str, args)],
                            stdout=subprocess.DEVNULL, stderr=secondary, env=env)
    os.close(secondary)
    seen = b""
    while True:
        try:
            chunk = os.read(primary, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    proc.wait(timeout=120)
    os.close(primary)
    return proc.returncode, seen.decode(errors="replace")


def test_progress_line_on_a_terminal_only(whole):
    folder, merged, expected = whole
    code, seen = _on_a_pty([merged, merged], "0")
    assert code == 0
    assert "packets/s" in seen and "ETA" in seen and "file " in seen
    code, seen = _on_a_pty([merged, merged, "--quiet"], "0")
    assert "packets/s" not in seen
    code, seen = _on_a_pty([merged, merged], "60")  # a quick run: nothing
    assert "packets/s" not in seen
    proc = subprocess.run([sys.executable, "-m", "tcpteardown", "census", merged, merged], capture_output=True,
                          text=True, env=dict(__import__("os").environ, TCPTEARDOWN_PROGRESS_DELAY="0"), timeout=120)
    assert "packets/s" not in proc.stderr  # stderr a pipe: nothing


def test_frame_numbers_continue_across_members_read_in_several_batches(tmp_path):
    """A member read in more than one batch (a bundle's packets between its witness
    blocks; any member over 4 MB) keeps tshark's frame numbers, and the next member's
    continue from its last: they were once offset again by each batch."""
    bundle = CORPUS / "linux" / "keepalive-race-reset.pcapng"
    _, alone, _ = census(bundle)
    (tmp_path / "b.pcapng.gz").write_bytes(gzip.compress(bundle.read_bytes()))
    code, zipped, err = census(tmp_path / "b.pcapng.gz")
    assert code == 0, err
    assert zipped["connections"] == alone["connections"]
    refused = CORPUS / "linux" / "refused.pcapng"
    (tmp_path / "a.pcapng").write_bytes(refused.read_bytes())  # earlier: it comes first
    code, both, err = census(tmp_path)
    _, first, _ = census(refused)
    assert code == 0, err
    shift = first["packets"]  # every frame of the first member, TCP or not
    later = both["connections"][len(first["connections"]):]
    assert [c["frames"]["rst"] for c in later] == [[f + shift for f in c["frames"]["rst"]]
                                                   for c in alone["connections"]]


# -- explain and plot read a set as census does ---------------------------------------

def run_cli(capsys, *argv):
    from tcpteardown.cli import main

    code = main([*map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_explain_and_plot_read_a_rotated_set_as_the_single_file(whole, capsys, monkeypatch):
    """editcap -c 7 cuts every connection of the corpus across members (some gzipped, some
    xz): explain's links and plot's ladder are those of the one merged file, read whole
    and read selectively (--conn, as a big capture is)."""
    from tcpteardown.formats.evidence import BIG_CAPTURE_VARIABLE

    folder, merged, _ = whole
    rotate(merged, folder / "explain", "pcap")
    code, alone, _ = run_cli(capsys, "explain", "--json", merged)
    code_set, together, err = run_cli(capsys, "explain", "--json", folder / "explain")
    assert (code, code_set) == (0, 0), err
    assert json.loads(together)["links"] == json.loads(alone)["links"] and json.loads(alone)["links"]
    code, _, err = run_cli(capsys, "plot", str(folder / "explain" / "cap*"), "-o", folder / "set.mmd")
    assert code == 0, err
    run_cli(capsys, "plot", merged, "-o", folder / "one.mmd")
    assert (folder / "set.mmd").read_text().splitlines()[2:] == (folder / "one.mmd").read_text().splitlines()[2:]
    monkeypatch.setenv(BIG_CAPTURE_VARIABLE, "0")  # every set is big: read selectively
    _, alone, _ = run_cli(capsys, "explain", "--json", "--conn", "3", merged)
    code, together, err = run_cli(capsys, "explain", "--json", "--conn", "3", folder / "explain")
    assert code == 0 and "a big capture: read" in err
    assert json.loads(together)["links"] == json.loads(alone)["links"]


def test_explain_says_a_sets_damage_and_overlap_as_census_does(whole, tmp_path, capsys):
    folder, merged, _ = whole
    rotate(merged, tmp_path / "bad", "pcap")
    (tmp_path / "bad" / "copy.pcap").write_bytes(merged.read_bytes())
    (tmp_path / "bad" / "trunc.pcap").write_bytes(merged.read_bytes()[:3000])
    code, out, err = run_cli(capsys, "explain", "--json", tmp_path / "bad")
    assert code == 3 and json.loads(out)["links"]
    lines = err.splitlines()
    assert [line for line in lines if "partial:" in line] == [
        line for line in lines if "trunc.pcap" in line and "read 3,000 bytes of it" in line]
    assert sum("warning:" in line and "overlap earlier files in time" in line for line in lines) == 1
    code, _, err = run_cli(capsys, "plot", tmp_path / "bad", "-o", tmp_path / "x.mmd")
    assert code == 3 and "tcpteardown plot: partial:" in err and "trunc.pcap" in err
