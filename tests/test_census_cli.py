"""`tcpteardown census` as a user runs it: the JSON contract, --top, the plot,
bad input (warning and results, --strict, unreadable files), exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import tool_or_skip

import pcapbytes as pb
from tcpteardown.cli import main


def run_cli(*args, cwd=None, prefix=()):
    proc = subprocess.run([*prefix, sys.executable, "-m", "tcpteardown", "census", *map(str, args)],
                          capture_output=True, text=True, timeout=120, cwd=cwd)
    return proc.returncode, proc.stdout, proc.stderr


def refused_and_reset_capture(tmp_path, cut=0):
    client, server = ("10.0.0.1", "10.0.0.2")
    frames = [
        pb.ethernet(pb.ipv4(client, server, pb.tcp(40000, 80, seq=1, flags=0x02))),
        pb.ethernet(pb.ipv4(server, client, pb.tcp(80, 40000, seq=0, ack=2, flags=0x14))),
        pb.ethernet(pb.ipv4(client, server, pb.tcp(40001, 80, seq=9, flags=0x02))),
        pb.ethernet(pb.ipv4(server, client, pb.tcp(80, 40001, seq=50, ack=10, flags=0x12))),
        pb.ethernet(pb.ipv4(client, server, pb.tcp(40001, 80, seq=10, ack=51, flags=0x18, payload=b"GET"))),
        pb.ethernet(pb.ipv4(client, server, pb.tcp(40001, 80, seq=13, ack=51, flags=0x04))),
    ]
    data = pb.pcap([(1700000000 + i, 0, frame) for i, frame in enumerate(frames)])
    path = tmp_path / "c.pcap"
    path.write_bytes(data[:len(data) - cut])
    return path


def test_json_contract(tmp_path):
    code, out, err = run_cli(refused_and_reset_capture(tmp_path), "--json")
    assert code == 0 and err == ""
    document = json.loads(out)
    assert document["summary"]["by_end"] == {"fin": 0, "rst": 1, "refused": 1, "open": 0}
    assert document["summary"]["by_side"]["rst"] == {"client": 1, "server": 0}
    first, second = document["connections"]
    assert first["ended"] == "refused" and first["ended_by"] == "server"
    assert first["client"] == "10.0.0.1:40000" and first["server"] == "10.0.0.2:80"
    assert first["frames"]["rst"] == [2] and first["frames"]["first"] == 1
    assert second["ended"] == "rst" and second["ended_by"] == "client" and second["frames"]["end"] == 6
    assert second["bytes"] == {"client_to_server": 3, "server_to_client": 0}
    assert second["start"] == pytest.approx(1700000002.0) and second["end_time"] == pytest.approx(1700000005.0)


def test_table_and_top(tmp_path, capsys):
    assert main(["census", str(refused_and_reset_capture(tmp_path)), "--top", "1"]) == 0
    out = capsys.readouterr().out
    assert "refused" in out and "10.0.0.1:40000" in out
    assert "... and 1 more" in out


def test_plot(tmp_path):
    plot = tmp_path / "ends.png"
    code, _, err = run_cli(refused_and_reset_capture(tmp_path), "-o", plot)
    assert code == 0, err
    assert plot.read_bytes().startswith(b"\x89PNG")


def test_truncated_file_warns_and_keeps_results(tmp_path):
    path = refused_and_reset_capture(tmp_path, cut=5)
    code, out, err = run_cli(path, "--json")
    assert code == 0
    assert "warning" in err and "byte offset" in err and str(path) in err
    document = json.loads(out)
    assert len(document["problems"]) == 1
    assert document["packets"] == 5


def test_strict_fails_on_damage(tmp_path):
    code, out, err = run_cli(refused_and_reset_capture(tmp_path, cut=5), "--strict")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "byte offset" in err and "Traceback" not in err


def test_unreadable_files(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a capture\n")
    for path in (text, tmp_path / "missing.pcap"):
        code, out, err = run_cli(path)
        assert code == 2 and out == "" and "Traceback" not in err and str(path) in err


def test_progress_bar_redraws_one_line_and_clears():
    import io

    from tcpteardown.commands.census import _Progress

    stream = io.StringIO()
    bar = _Progress(200 << 20, stream)
    for done in (0, 1, 50 << 20, 50 << 20, 200 << 20):
        bar(done)
    bar.close()
    text = stream.getvalue()
    assert "\n" not in text
    assert text.count("\r") == 5  # 0%, 25%, 100% (repeats are not redrawn), then "\r<blank>\r"
    assert " 25% of 210 MB" in text and "100%" in text


# -- -o that cannot be drawn: the table first, then one error line, exit 2 (issue 19) ----------

def assert_table_then_one_error(code, out, err, says):
    assert code == 2, err
    assert "refused" in out and "10.0.0.1:40000" in out  # the census came first, whole
    assert "Traceback" not in err and err.count("\n") == 1 and says in err, err


@pytest.mark.parametrize("target, says", [
    ("missing/dir/ends.png", "no such directory"),
    ("ends.txt", "unknown plot type '.txt'"),
    ("-", "cannot draw to standard output"),
    ("ends", "no file extension"),
])
def test_plot_target_that_cannot_be_drawn(tmp_path, target, says):
    capture = refused_and_reset_capture(tmp_path)
    code, out, err = run_cli(capture, "-o", target, cwd=tmp_path)
    assert_table_then_one_error(code, out, err, says)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pcap"]  # no "-.png", no "ends.png"


def test_plot_into_an_unwritable_directory(tmp_path):
    # root ignores permission bits; without CAP_DAC_OVERRIDE it meets them as users do
    setpriv = tool_or_skip("setpriv")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    code, out, err = run_cli(refused_and_reset_capture(tmp_path), "-o", locked / "ends.png",
                             prefix=(setpriv, "--bounding-set", "-dac_override,-dac_read_search"))
    assert_table_then_one_error(code, out, err, "Permission denied")


def test_plot_of_a_capture_with_one_far_future_timestamp(tmp_path):
    frames = [pb.ethernet(pb.ipv4("10.0.0.1", "10.0.0.2", pb.tcp(40000, 80, seq=1, flags=0x02))),
              pb.ethernet(pb.ipv4("10.0.0.2", "10.0.0.1", pb.tcp(80, 40000, seq=0, ack=2, flags=0x14)))]
    path = tmp_path / "future.pcap"
    path.write_bytes(pb.pcap([(1700000000, 0, frames[0]), (4000000000, 0, frames[1])]))  # year 2096
    code, out, err = run_cli(path, "-o", tmp_path / "ends.png")
    assert code == 0 and "Traceback" not in err, err
    assert (tmp_path / "ends.png").read_bytes().startswith(b"\x89PNG")
    assert "refused" in out


def test_strict_fails_on_a_pcapng_option_that_overruns_its_block(tmp_path):
    import struct

    good = pb.epb(0, 1700000000_000000, pb.syn_frame(), comments=["fine"])
    # the comment option claims 200 bytes; its block holds 4
    body = bytearray(good)
    at = 8 + 20 + len(pb._pad(pb.syn_frame()))
    struct.pack_into("<HH", body, at, 1, 200)
    path = tmp_path / "overrun.pcapng"
    path.write_bytes(pb.shb() + pb.idb(1, tsresol=6) + bytes(body) + pb.epb(0, 1700000001_000000, pb.syn_frame(1)))
    code, out, err = run_cli(path, "--strict")
    assert code == 2 and out == "" and "Traceback" not in err
    assert err.count("\n") == 1 and "option 1 claims 200 bytes beyond its block" in err, err
    code, out, err = run_cli(path)  # without --strict: the warning, and both packets counted
    assert code == 0 and "option 1 claims 200 bytes" in err and "2 packets" in out


def test_empty_capture_prints_and_plots_without_noise(tmp_path):
    path = tmp_path / "empty.pcap"
    path.write_bytes(pb.pcap([]))
    code, out, err = run_cli(path, "-o", tmp_path / "ends.png")
    assert code == 0 and err == "", err
    assert "0 connections" in out and (tmp_path / "ends.png").read_bytes().startswith(b"\x89PNG")
    code, out, err = run_cli(path, "--json")
    assert code == 0 and json.loads(out)["connections"] == []


def test_json_of_times_beyond_int64_is_the_dict_contract(tmp_path):
    """A pcapng whose interface counts whole seconds (if_tsresol 0) with ticks near 2**40 puts
    packets ~1e21 ns after the epoch, beyond int64: census keeps exact Python ints and --json
    writes those connections through the dict contract, every one parseable, nothing lost."""
    from tcpteardown.commands.census import census_file
    from tcpteardown.views.contracts.census import connection_json

    client, server = "10.0.0.1", "10.0.0.2"
    frames = [
        pb.ethernet(pb.ipv4(client, server, pb.tcp(40000, 80, seq=1, flags=0x02))),
        pb.ethernet(pb.ipv4(server, client, pb.tcp(80, 40000, seq=0, ack=2, flags=0x14))),
        pb.ethernet(pb.ipv4(client, server, pb.tcp(40001, 80, seq=9, flags=0x02))),
        pb.ethernet(pb.ipv4(server, client, pb.tcp(80, 40001, seq=50, ack=10, flags=0x12))),
    ]
    path = tmp_path / "far.pcapng"
    path.write_bytes(pb.shb() + pb.idb(1, tsresol=0)
                     + b"".join(pb.epb(0, 2**40 + i, frame) for i, frame in enumerate(frames)))
    result = census_file(str(path))
    assert not result.exact_times
    for extra in ((), ("--top", "1")):
        code, out, err = run_cli(path, "--json", *extra)
        assert code == 0 and "Traceback" not in err, err
        document = json.loads(out)
        expected = [connection_json(c) for c in result.connections][:1 if extra else None]
        assert document["connections"] == expected
        assert document["connections"][0]["start"] == pytest.approx(2**40)
