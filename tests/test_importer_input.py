"""Hostile and unlucky input to the strace and application-log importers
(issue 19): very long lines and many lines parse (no timing asserted here:
speed lives in bench/importers.py; the inputs are shaped so that the old
quadratic patterns would not finish), encodings are detected, unreadable
lines are summarised, and what the importer cannot place is said."""

from __future__ import annotations

import codecs

from tcpteardown.formats.applog import parse_log, read_log_file
from tcpteardown.formats.imported import SHOWN_PER_KIND, Problems
from tcpteardown.formats.inputs import text_encoding
from tcpteardown.formats.strace import parse_strace, read_strace_file

TUPLE = "3<TCP:[127.0.0.1:50389->127.0.0.1:8080]>"


def test_a_long_strace_line_with_many_result_lookalikes_parses():
    # 4 MB of ") = 1<": the old result pattern retried at each ")" and scanned to
    # the end of the line each time (40 KB took 2.6 s; this would take hours).
    body = ") = 1<" * 700_000
    line = f'1714584362.140166 write({TUPLE}, "{body}", {len(body)}) = -1 EPIPE (Broken pipe) <0.000010>'
    result = parse_strace([line])
    assert result.problems == ()
    (call,) = result.calls
    assert (call.op, call.errno, str(call.remote)) == ("write", "EPIPE", "127.0.0.1:8080")


def test_a_connect_with_many_ports_and_no_address_parses():
    line = "1714584362.140166 connect(3, " + "sin_port=htons(1) " * 200_000 + ") = -1 ECONNREFUSED (Connection refused)"
    result = parse_strace(["1714584362.0 socket(AF_INET, SOCK_STREAM, IPPROTO_TCP) = 3", line])
    (call,) = result.calls
    assert (call.op, call.errno, call.remote) == ("connect", "ECONNREFUSED", None)


def test_padded_results_without_T_are_read():
    result = parse_strace([f"1714584362.140166 close({TUPLE})                 = 0"])
    assert [call.op for call in result.calls] == ["close"]


def test_many_error_lines_all_become_calls():
    lines = [f"2024/05/01 17:26:{i // 1000 % 60:02d}.{i % 1000:06d} read tcp 127.0.0.1:{1000 + i % 5000}"
             f"->127.0.0.1:8080: read: connection reset by peer" for i in range(20_000)]
    result = parse_log(lines, tz="UTC")
    assert len(result.calls) == 20_000
    assert {call.errno for call in result.calls} == {"ECONNRESET"}


def test_garbage_strace_log_is_one_summary_not_a_line_each():
    result = parse_strace([f"garbage {i} \x01\x02" for i in range(5_000)], path="junk.strace")
    assert len(result.problems) == 1
    assert result.problems[0].startswith("junk.strace: 5000 lines: expected an strace line")
    assert "(lines 1, 2, 3, 4, 5, ...)" in result.problems[0]


def test_few_problems_are_listed_one_by_one():
    problems = Problems()
    for line_no in range(1, SHOWN_PER_KIND + 1):
        problems.add("f", line_no, "bad")
    assert problems.lines() == tuple(f"f:{n}: bad" for n in range(1, SHOWN_PER_KIND + 1))


def test_garbage_app_log_says_nothing_could_be_placed(tmp_path):
    path = tmp_path / "garbage.log"
    path.write_bytes(bytes(range(256)) * 40)
    result = read_log_file(path)
    assert result.calls == ()
    assert any("holds a timestamp this tool reads" in p for p in result.problems), result.problems
    assert any("not valid UTF-8" in p for p in result.problems), result.problems


def test_utf16_logs_with_and_without_a_bom_are_read(tmp_path):
    text = ("2024/05/01 17:26:02.140166 write tcp 127.0.0.1:1->127.0.0.1:2: write: broken pipe\r\n"
            "2024/05/01 17:26:03.000000 Error: read ECONNRESET\r\n")
    for name, data in (("bom.log", codecs.BOM_UTF16_LE + text.encode("utf-16-le")),
                       ("nobom.log", text.encode("utf-16-le")),
                       ("be.log", codecs.BOM_UTF16_BE + text.encode("utf-16-be"))):
        (tmp_path / name).write_bytes(data)
        result = read_log_file(tmp_path / name, tz="UTC")
        assert [call.errno for call in result.calls] == ["EPIPE", "ECONNRESET"], name
        assert "UTF-16" in result.problems[0], result.problems


def test_utf8_is_not_mistaken_for_utf16():
    assert text_encoding(b"2024/05/01 17:26:02 hello\n") == "utf-8"


def test_utf16_strace_log(tmp_path):
    path = tmp_path / "t.strace"
    path.write_bytes(codecs.BOM_UTF16_LE + f"1714584362.1 read({TUPLE}, \"\", 10) = 0\n".encode("utf-16-le"))
    result = read_strace_file(path)
    assert [call.result for call in result.calls] == [0]


def test_an_unfinished_call_that_never_resumes_is_said():
    result = parse_strace([f"123 1714584362.140166 read({TUPLE},  <unfinished ...>"], path="t")
    assert [call.op for call in result.calls] == ["read"]
    assert result.calls[0].result is None
    assert result.problems == ("t:1: read() of pid 123 is '<unfinished ...>' and never resumes before "
                               "the log ends; kept without a result",)


def test_timestamps_going_backwards_are_said():
    lines = ["2024/05/01 17:26:05 Error: read ECONNRESET", "2024/05/01 17:20:00 Error: read ECONNRESET",
             "2024/05/01 17:26:06 Error: read ECONNRESET"]
    result = parse_log(lines, path="app.log", tz="UTC")
    assert len(result.calls) == 3
    assert result.problems == ("app.log:2: timestamp more than a second earlier than a line before it "
                               "(the clock stepped back, or logs were merged out of order)",)
