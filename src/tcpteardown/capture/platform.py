"""What this host can do, asked once, answered in words.

Each `*_problem()` returns None when the capability is there, or one
sentence saying what is missing and the ways out. The CLI prints these
sentences; the test suite turns them into skip reasons.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
from functools import lru_cache
from pathlib import Path
from typing import Optional

IS_LINUX = sys.platform.startswith("linux")
IS_MACOS = sys.platform == "darwin"

TRACEFS_MOUNTS = (Path("/sys/kernel/tracing"), Path("/sys/kernel/debug/tracing"))


def loopback_interface() -> str:
    """Linux calls it `lo` (Ethernet framing); macOS `lo0` (DLT_NULL)."""
    return "lo0" if IS_MACOS else "lo"


def no_capture_privilege_message() -> str:
    if IS_MACOS:
        return (
            "capturing on lo0 needs read access to /dev/bpf*: run with sudo, "
            "or join the access_bpf group (Wireshark's ChmodBPF installs it), "
            "or load a stored capture instead: tcpteardown explain captures/linux/broken-pipe.pcapng"
        )
    return (
        "capturing on lo needs root or CAP_NET_RAW. Ways out: run with sudo; "
        f"or {capability_way_out()}; "
        "or run inside a user and network namespace: "
        "`unshare -rn sh -c 'ip link set lo up && tcpteardown run ...'`; "
        "or load a stored capture instead: tcpteardown explain captures/linux/broken-pipe.pcapng"
    )


def own_interpreter_copy() -> Optional[str]:
    """This interpreter's path when it is a venv's own copy (`python -m venv
    --copies`), else None: a venv's usual python is a link to the shared
    interpreter, and a capability given to it is given to everyone's."""
    if sys.prefix == sys.base_prefix:
        return None
    real = Path(os.path.realpath(sys.executable))
    return str(real) if real.is_relative_to(Path(sys.prefix).resolve()) else None


def capability_way_out() -> str:
    """Give CAP_NET_RAW to an interpreter only this project uses, never to a
    shared one (every user running it would get raw sockets)."""
    why = "never to the system's python, which would give every user raw sockets"
    copy = own_interpreter_copy()
    if copy is not None:
        return f"give the capability to this venv's own copy of python ({why}): " \
               f"`sudo setcap cap_net_raw,cap_net_admin=eip {copy}`"
    return (f"give the capability to a venv's own copy of python ({why}): "
            "`python3 -m venv --copies .venv-capture && .venv-capture/bin/pip install -e . && "
            "sudo setcap cap_net_raw,cap_net_admin=eip .venv-capture/bin/python3`")


@lru_cache(maxsize=None)
def capture_problem() -> Optional[str]:
    """None if we may open a live capture on the loopback interface."""
    if IS_LINUX:
        try:
            probe = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        except PermissionError:
            return no_capture_privilege_message()
        except OSError as exc:
            return f"cannot open a packet socket: {exc.strerror}"
        probe.close()
        return None
    if IS_MACOS:
        devices = sorted(Path("/dev").glob("bpf*"))
        if any(os.access(device, os.R_OK) for device in devices):
            return None
        return no_capture_privilege_message()
    return f"live capture is supported on Linux and macOS, not on {sys.platform}"


def tracefs_root() -> Optional[Path]:
    """The mounted tracefs, or None."""
    for root in TRACEFS_MOUNTS:
        try:
            if (root / "instances").is_dir():
                return root
        except OSError:  # not root: the mount point itself may refuse a stat
            continue
    return None


@lru_cache(maxsize=None)
def tracefs_problem() -> Optional[str]:
    """None if kernel tracepoints can be read through a tracefs instance."""
    if not IS_LINUX:
        return "kernel tracepoints (tracefs) exist only on Linux; reasons for RSTs will be inferred from packets"
    if os.geteuid() != 0:
        return "reading kernel tracepoints needs root; reasons for RSTs will be inferred from packets"
    root = tracefs_root()
    if root is None:
        return "tracefs is not mounted: `mount -t tracefs nodev /sys/kernel/tracing`"
    if not (root / "events" / "tcp" / "tcp_send_reset").is_dir():
        return f"this kernel has no tcp:tcp_send_reset tracepoint under {root}/events"
    return None


# Where Debian and others put ip, tc and iptables: often not on a user's PATH
# (nobody, a student), although the programs are installed and usable there.
SYSTEM_BIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")


def find_tool(name: str) -> Optional[str]:
    """The path of an installed program: PATH first, then the sbin folders."""
    return shutil.which(name) or shutil.which(name, path=os.pathsep.join(SYSTEM_BIN))


@lru_cache(maxsize=None)
def netns_problem() -> Optional[str]:
    """None if we can create network namespaces (as root, with `ip`)."""
    if not IS_LINUX:
        return "network namespaces exist only on Linux"
    if find_tool("ip") is None:
        return "needs the `ip` program (apt-get install iproute2)"
    if os.geteuid() == 0:
        return None
    clone = Path("/proc/sys/kernel/unprivileged_userns_clone")
    if clone.exists() and clone.read_text().strip() == "0":
        return "network namespaces need root here: unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone=0)"
    return None
