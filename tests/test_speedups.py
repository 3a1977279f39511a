"""tcpteardown.speedups: the compiled loops are built where a compiler is, and the census
reads every capture to the same batches and problems with them and without them
(TCPTEARDOWN_PURE_PYTHON=1), on the corpus and on damaged copies of it.
(The JSON rows engine has its own tests: test_rows.py.)"""

from __future__ import annotations

import random
import shutil
import subprocess
import sysconfig

import numpy as np
import pytest

from tcpteardown import speedups
from tcpteardown.formats import pcap_columns
from tcpteardown.formats.pcap_columns import iter_tcp_batches
from tcpteardown.formats.pcapread import PCAP_MAGICS, PCAPNG_SHB
from conftest import tcpdump_on_loopback
from test_census_corpus import wait_until_written
from test_census_vectorised import _many_short_connections
from test_pcapread_corpus import ROWS

needs_compiled = pytest.mark.skipif(speedups.compiled() is None,
                                    reason="tcpteardown._speedups is not built (no C compiler at install) "
                                           "or TCPTEARDOWN_PURE_PYTHON is set")


def test_the_compiled_loops_are_built_where_a_c_compiler_is():
    """`pip install` builds _speedups.c when it finds a compiler; a compiler here and no
    module means the build failed, and census runs at the interpreter's speed."""
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if not shutil.which(compiler):
        pytest.skip(f"no C compiler ({compiler}) on this machine: the Python code runs, as designed")
    assert speedups._module is not None, ("a C compiler is here but tcpteardown._speedups is not built; "
                                          "reinstall with `pip install -e .` and read its output")


def test_the_switch_turns_them_off(monkeypatch):
    monkeypatch.setenv("TCPTEARDOWN_PURE_PYTHON", "1")
    assert speedups.compiled() is None


def _batches(path, monkeypatch, pure: str, window_bytes: int) -> tuple[list, list]:
    monkeypatch.setenv("TCPTEARDOWN_PURE_PYTHON", pure)
    problems: list = []
    try:
        batches = list(iter_tcp_batches(str(path), on_problem=problems.append, window_bytes=window_bytes))
    except Exception as exc:  # refused: must be refused alike, with the same words
        return [type(exc).__name__, str(exc)], problems
    fields = ("frame", "time_ns", "src_hi", "src_lo", "dst_hi", "dst_lo", "sport", "dport", "flags", "seq", "ack",
              "payload_len")
    return [(b.packets, b.end_offset, *((getattr(b, f).dtype.str, getattr(b, f).tolist()) for f in fields))
            for b in batches], problems


@pytest.fixture(scope="module")
def loopback_pcap(tmp_path_factory):
    """A real capture big enough for many windows: tcpdump on lo while 400 connections end
    every way (FIN, RST either side, refused; ports reused)."""
    capture = tmp_path_factory.mktemp("speedups") / "many.pcap"
    with tcpdump_on_loopback(capture, backlog=64, buffer_kib=65536) as lo:
        _many_short_connections(400, lo.refused_port, lo.port, lo.listener)
        wait_until_written(capture, 400, seconds=30)
    assert "\n0 packets dropped by kernel" in lo.stderr, lo.stderr
    return capture


@pytest.fixture(scope="module")
def loopback_pcapng(loopback_pcap):
    """The same capture as pcapng, written by Wireshark's own editcap (EPBs)."""
    editcap = shutil.which("editcap")
    if editcap is None:
        pytest.skip("needs editcap (Debian: tshark's wireshark-common)")
    converted = loopback_pcap.with_suffix(".pcapng")
    subprocess.run([editcap, "-F", "pcapng", str(loopback_pcap), str(converted)], check=True)
    return converted


def _magic(path) -> int:
    return int.from_bytes(path.read_bytes()[:4].ljust(4, b"\0"), "little")


def _pcaps(corpus) -> list:
    return [p for p in (corpus / row["relpath"] for row in ROWS) if _magic(p) in PCAP_MAGICS]


def _pcapngs(corpus) -> list:
    return [p for p in (corpus / row["relpath"] for row in ROWS) if _magic(p) == PCAPNG_SHB]


@needs_compiled
def test_the_corpus_reads_the_same_with_and_without_the_compiled_walk(corpus, monkeypatch):
    pcaps, pcapngs = _pcaps(corpus), _pcapngs(corpus)
    assert len(pcaps) > 20 and len(pcapngs) > 5
    for path in pcaps + pcapngs:
        for window in (4096, 64 << 10):  # many windows each: every window boundary is a walk
            assert _batches(path, monkeypatch, "", window) == _batches(path, monkeypatch, "1", window), path


@needs_compiled
@pytest.mark.needs_capture
def test_a_loopback_capture_reads_the_same_with_and_without_the_compiled_walk(loopback_pcap, loopback_pcapng,
                                                                               monkeypatch):
    for path in (loopback_pcap, loopback_pcapng):
        assert path.stat().st_size > 64 << 10
        for window in (4096, 64 << 10, 4 << 20):
            with_walk, problems = _batches(path, monkeypatch, "", window)
            assert (with_walk, problems) == _batches(path, monkeypatch, "1", window)
            assert sum(batch[0] for batch in with_walk) > 2000 and not problems


@needs_compiled
@pytest.mark.needs_capture
def test_damaged_pcaps_read_the_same_with_and_without_the_compiled_walk(corpus, loopback_pcap, loopback_pcapng,
                                                                          monkeypatch, tmp_path):
    """Flipped bits in record headers (lengths that lead nowhere, garbage times) and files cut
    short: the walk gives up where the vectorised one does, or both reach the same chain, so
    the batches and the problems reported are the same."""
    pcaps = [loopback_pcap, loopback_pcapng] + [p for p in _pcaps(corpus) + _pcapngs(corpus)
                                                if p.stat().st_size >= 8192]
    rng = random.Random(13)
    compared = 0
    for path in pcaps:
        data = path.read_bytes()
        for trial in range(12):
            damaged = bytearray(data)
            for _ in range(rng.randint(1, 6)):
                at = rng.randrange(24, len(damaged))
                damaged[at] ^= 1 << rng.randrange(8)
            if trial % 3 == 0:
                damaged = damaged[:rng.randrange(len(damaged) // 2, len(damaged))]
            copy = tmp_path / f"{path.stem}-{trial}{path.suffix}"
            copy.write_bytes(bytes(damaged))
            assert _batches(copy, monkeypatch, "", 4096) == _batches(copy, monkeypatch, "1", 4096), (path, trial)
            compared += 1
    assert compared == 12 * len(pcaps)


def _per_record_walk(data: bytes, offset: int, stop: int, order: str) -> list:
    """The walk as pcap_columns' per-record loop does it, in plain Python."""
    starts = []
    while offset < stop:
        starts.append(offset)
        offset += 16 + int.from_bytes(data[offset + 8:offset + 12], "little" if order == "<" else "big")
    return starts


@needs_compiled
@pytest.mark.needs_capture
def test_the_compiled_walk_is_the_per_record_walk(corpus, loopback_pcap):
    """On every pcap, whole and damaged, the compiled walk gives the offsets the per-record
    loop gives; where the vectorised walk answers, it agrees too."""
    walk = speedups.compiled().walk_pcap
    rng = random.Random(7)
    for path in _pcaps(corpus) + [loopback_pcap]:
        data = path.read_bytes()
        order, nanoseconds = PCAP_MAGICS[_magic(path)]
        damaged = bytearray(data)
        for _ in range(3):
            damaged[rng.randrange(24, len(damaged))] ^= 1 << rng.randrange(8)
        for variant in (data, bytes(damaged)):
            stop = len(variant) - 15
            if stop <= 24:
                continue
            offsets, _ = walk(variant, 24, stop, order == ">")
            walked = np.frombuffer(offsets, dtype=np.int64).tolist()
            assert walked == _per_record_walk(variant, 24, stop, order), path
            vectorised = pcap_columns._follow_records_vectorised(variant, 24, stop, order, nanoseconds, 262144)
            if vectorised is not None:
                assert walked == vectorised.tolist(), path


@needs_compiled
def test_the_compiled_walk_stays_inside_its_buffer():
    walk = speedups.compiled().walk_pcap
    record = (1_700_000_000).to_bytes(4, "little") + bytes(4) + (10).to_bytes(4, "little") * 2 + b"x" * 10
    data = record * 10
    offsets, stop = walk(data, 0, len(data) - 15, False)
    assert np.frombuffer(offsets, dtype=np.int64).tolist() == [26 * i for i in range(10)] and stop == len(data)
    offsets, stop = walk(data, 0, 1, True)  # big-endian: one long jump
    assert np.frombuffer(offsets, dtype=np.int64).tolist() == [0] and stop == 16 + (10 << 24)
    for offset, stop in ((0, len(data) - 14), (-1, 10)):
        with pytest.raises(ValueError, match="would pass the end"):
            walk(data, offset, stop, False)
    with pytest.raises(TypeError):
        walk("not bytes", 0, 4, False)


@needs_compiled
def test_the_compiled_pcapng_walk_stops_at_other_blocks_and_inside_its_buffer():
    walk = speedups.compiled().walk_pcapng
    epb = (6).to_bytes(4, "little") + (32).to_bytes(4, "little") + bytes(24)
    other = (5).to_bytes(4, "little") + (12).to_bytes(4, "little") + bytes(4)
    data = epb * 3 + other + epb
    offsets, stop = walk(data, 0, len(data) - 8, False)
    assert np.frombuffer(offsets, dtype=np.int64).tolist() == [0, 32, 64] and stop == 96
    short = (6).to_bytes(4, "little") + (28).to_bytes(4, "little") + bytes(20)  # an EPB under 32 bytes
    assert walk(short + epb, 0, 8, False) == (b"", 0)
    with pytest.raises(ValueError, match="would pass the end"):
        walk(data, 0, len(data) - 6, False)


@needs_compiled
def test_the_compiled_decoder_gives_the_numpy_columns_on_random_frames():
    """Windows of Ethernet and Linux cooked (SLL, SLL2) frames with random IPv4 and IPv6
    headers (versions, header lengths, fragments, next headers, payload lengths, VLAN tags,
    frames cut anywhere): the one-pass decoder (`decode_tcp`) gives the numpy decoder's
    columns, dtypes included, or hands the window back where numpy meets an odd frame."""
    from tcpteardown.formats import pcap_links as links

    rng = np.random.default_rng(27)
    answered = declined = 0
    fields = ("frame", "time_ns", "src_hi", "src_lo", "dst_hi", "dst_lo", "sport", "dport", "flags", "seq", "ack",
              "payload_len")
    for trial in range(150):
        link = links.LINKS[(links.LINKTYPE_ETHERNET, links.LINKTYPE_LINUX_SLL, links.LINKTYPE_LINUX_SLL2)[trial % 3]]
        frames = []
        for _ in range(int(rng.integers(1, 30))):
            ip = bytearray(rng.integers(0, 256, 96, dtype=np.uint8).tobytes())
            version = int(rng.choice([4, 4, 6, 6, 5]))
            if version == 4:
                ip[0] = 0x40 | int(rng.choice([5, 5, 5, 6, 15, 2]))
                ip[9] = int(rng.choice([6, 6, 6, 17]))
                ip[6], ip[7] = int(rng.choice([0, 0, 0x40, 0x20, 0x01])), int(rng.choice([0, 0, 0, 3]))
                ip[2], ip[3] = 0, int(rng.choice([0, 40, 60, 96, 200, 10]))
            else:
                ip[0] = (version << 4) | (ip[0] & 0x0F)
                ip[6] = int(rng.choice([6, 6, 6, 17, 0, 43, 44, 60, 51]))
                ip[4], ip[5] = 0, int(rng.choice([0, 20, 40, 56, 200]))
            ethertype = int(rng.choice([0x0800, 0x86DD, 0x0800, 0x86DD, 0x0806, 0x8100]))
            head = bytearray(rng.integers(0, 256, link.header, dtype=np.uint8).tobytes())
            head[link.ethertype_at:link.ethertype_at + 2] = ethertype.to_bytes(2, "big")
            frame = bytes(head + ip)
            if rng.random() < 0.2:
                frame = frame[:int(rng.integers(0, len(frame) + 1))]
            frames.append(frame)
        lengths = np.array([len(f) for f in frames], dtype=np.int64)
        start = np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64)
        window = np.frombuffer(b"".join(frames) + bytes(pcap_columns._PAD), dtype=np.uint8)
        times = np.arange(len(frames), dtype=np.int64) * 1000 + 1_700_000_000_000_000_000
        packets = pcap_columns._Packets(window, start, lengths, times, link.number, 5, 1234)
        compiled = pcap_columns._decode_compiled(packets)
        reference = pcap_columns._decode_numpy(packets)
        if compiled is None:
            declined += 1
            continue
        answered += 1
        for name in fields:
            ours, theirs = getattr(compiled, name), getattr(reference, name)
            assert (ours.dtype, ours.tolist()) == (theirs.dtype, theirs.tolist()), (trial, name)
        assert (compiled.packets, compiled.last_frame, compiled.end_offset) == (
            reference.packets, reference.last_frame, reference.end_offset)
    assert answered > 30 and declined > 30, (answered, declined)
