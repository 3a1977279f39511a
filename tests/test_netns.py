"""capture.netns: a private network namespace per run, nothing of it left
afterwards (also on Ctrl-C), and nothing of it ever touching the host."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from leftovers import children as _children, descendants as _descendants, processes_in as _processes_in
from tcpteardown.capture import netns

pytestmark = pytest.mark.needs_netns

HOST_NS = os.readlink("/proc/self/ns/net")


def _skip_without_namespaces():
    problem = netns.namespace_problem()
    if problem:
        pytest.skip(problem)


def _inside():
    with open("/proc/net/dev") as f:
        interfaces = [line.split(":")[0].strip() for line in f.readlines()[2:]]
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # lo is up: loopback works in there
    sock.close()
    return netns.namespace_id(), netns.inside_private_namespace(), interfaces, os.getpid()


def test_runs_in_a_fresh_namespace_with_only_lo_and_leaves_nothing():
    _skip_without_namespaces()
    children, fds = _children(), set(os.listdir("/proc/self/fd"))
    namespace, inside, interfaces, pid = netns.run_in_namespace(_inside)
    assert namespace != HOST_NS and inside
    assert interfaces == ["lo"]
    assert not netns.inside_private_namespace()  # the parent never was
    assert not Path(f"/proc/{pid}").exists()  # reaped
    assert _processes_in(namespace) == []  # so the namespace is gone
    assert _children() == children and set(os.listdir("/proc/self/fd")) == fds
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert "tcpteardown" not in listed  # we never name (bind-mount) a namespace


def test_errors_raised_in_the_namespace_reach_the_caller():
    _skip_without_namespaces()

    def fail():
        raise ValueError("inside")

    with pytest.raises(ValueError, match="inside"):
        netns.run_in_namespace(fail)


def test_a_sysctl_set_inside_does_not_reach_the_host():
    _skip_without_namespaces()
    path = Path("/proc/sys/net/ipv4/tcp_abort_on_overflow")
    host_value = path.read_text()

    def flip():
        netns.set_sysctl("net.ipv4.tcp_abort_on_overflow", "1")
        return path.read_text().strip()

    assert netns.run_in_namespace(flip) == "1"
    assert path.read_text() == host_value


def test_mutating_helpers_refuse_to_touch_the_host():
    with pytest.raises(netns.NamespaceError, match="outside a private network namespace"):
        netns.set_sysctl("net.ipv4.tcp_abort_on_overflow", "1")
    with pytest.raises(netns.NamespaceError):
        netns.ip("route", "add", "unreachable", "192.0.2.0/24")
    with pytest.raises(netns.NamespaceError):
        netns.Gate()


def test_the_gate_holds_a_syn_until_released():
    _skip_without_namespaces()
    problem = netns.gate_problem()
    if problem:
        pytest.skip(problem)
    from tcpteardown.capture.sockopts import tcp_state

    def play():
        gate = netns.Gate()
        try:
            listener = socket.socket()
            listener.bind(("127.0.0.1", 0))
            listener.listen(1)
            client = socket.socket()
            client.setblocking(False)
            gate.hold()
            client.connect_ex(listener.getsockname())
            held = tcp_state(client)  # the SYN is queued on lo, so nothing came back
            gate.release()
            deadline = time.monotonic() + 5
            while tcp_state(client) != "ESTABLISHED" and time.monotonic() < deadline:
                time.sleep(0.001)  # wait-ok: polling a state with a deadline
            released = tcp_state(client)
            client.close()
            listener.close()
            return held, released
        finally:
            gate.remove()

    assert netns.run_in_namespace(play) == ("SYN_SENT", "ESTABLISHED")


# A shell may start pytest with SIGINT ignored (a background job), and an
# ignored SIGINT is inherited: the programs under test get Python's handler back.
_WITH_SIGINT = "import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n"

_WAIT_FOREVER = _WITH_SIGINT + r"""
import os, sys, time
from tcpteardown.capture import netns
def inside():
    sock_pid = os.fork()
    if sock_pid == 0:  # a grandchild in the namespace too, waiting on a pipe
        os.read(os.pipe()[0], 1)
    print(netns.namespace_id(), os.getpid(), sock_pid, flush=True)
    time.sleep(60)  # wait-ok: stands for a long scenario; SIGINT ends it
try:
    netns.run_in_namespace(inside)
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(130)
"""


def test_ctrl_c_leaves_no_process_and_no_namespace():
    """SIGINT to the parent only (not its group): it forwards, the child
    cleans up or is killed, and nothing stays in the namespace."""
    _skip_without_namespaces()
    proc = subprocess.Popen([sys.executable, "-c", _WAIT_FOREVER], stdout=subprocess.PIPE, text=True)
    try:
        namespace, child, grandchild = proc.stdout.readline().split()
        assert _processes_in(namespace)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130 and "interrupted" in out
    deadline = time.monotonic() + 10  # the orphaned grandchild was killed with the child's group?
    while _processes_in(namespace) and time.monotonic() < deadline:
        time.sleep(0.01)  # wait-ok: waiting for the kernel to reap, with a deadline
    assert _processes_in(namespace) == []
    assert not Path(f"/proc/{child}").exists()


def test_ctrl_c_during_a_scenario_run_with_delay():
    """`tcpteardown run connect-timeout --delay` takes 1.2 s in its namespace: interrupted there."""
    _skip_without_namespaces()
    delay = "0" if netns.netem_problem() else "5"  # without netem: the namespace alone
    command = (_WITH_SIGINT + "import runpy, sys\n"
               f"sys.argv = ['tcpteardown', 'run', 'connect-timeout', '--delay', '{delay}']\n"
               "runpy.run_module('tcpteardown', run_name='__main__', alter_sys=True)\n")
    proc = subprocess.Popen([sys.executable, "-c", command],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        namespace = None
        while namespace is None and time.monotonic() < deadline and proc.poll() is None:
            for pid in _descendants(proc.pid):
                try:
                    ns = os.readlink(f"/proc/{pid}/ns/net")
                except OSError:
                    continue
                if ns != HOST_NS:
                    namespace = ns
            time.sleep(0.005)  # wait-ok: polling for the child to enter its namespace
        assert namespace, "the run never entered a namespace"
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
    assert _processes_in(namespace) == []


def test_unprivileged_user_gets_a_namespace_or_a_clear_message():
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to an unprivileged user for the test")
    code = ("from tcpteardown.capture import netns\n"
            "problem = netns.namespace_problem()\n"
            "print('PROBLEM', problem) if problem else print('OK', netns.run_in_namespace(netns.namespace_id))\n")
    # The venv may live where nobody may read (/root); the system Python
    # with this checkout's src/ on its path runs the same code.
    source = str(Path(__file__).resolve().parents[1] / "src")
    result = None
    for python in (sys.executable, "/usr/bin/python3"):
        try:
            result = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=60,
                                    user=65534, group=65534, cwd="/", env={"PYTHONPATH": source})
            break
        except (PermissionError, FileNotFoundError):
            continue
    if result is None:
        pytest.skip("user nobody may run no Python interpreter on this machine")
    if "ModuleNotFoundError" in result.stderr or "Permission denied" in result.stderr:
        pytest.skip(f"user nobody may not read this checkout: {result.stderr.strip().splitlines()[-1]}")
    assert result.returncode == 0, result.stderr
    word, _, detail = result.stdout.strip().partition(" ")
    if word == "OK":
        assert detail.startswith("net:[") and detail != HOST_NS
    else:
        assert word == "PROBLEM" and "root" in detail, detail


def test_tools_in_sbin_are_found_without_sbin_on_path():
    """A student's PATH has no /usr/sbin; `tc` and `ip` are there all the same."""
    from tcpteardown.capture import platform as host

    installed = [name for name in ("tc", "ip") if os.path.exists(f"/usr/sbin/{name}") or os.path.exists(f"/sbin/{name}")]
    if not installed:
        pytest.skip("needs tc and ip in /usr/sbin or /sbin (apt-get install iproute2)")
    environment = {**os.environ, "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-c", "from tcpteardown.capture import platform as p; import sys; "
         f"print([p.find_tool(n) for n in {installed!r}])"], env=environment, capture_output=True, text=True)
    assert "None" not in result.stdout and result.returncode == 0, result


def test_delay_works_without_sbin_on_path():
    _skip_without_namespaces()
    environment = {**os.environ, "PATH": os.path.dirname(sys.executable) + ":/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-m", "tcpteardown", "run", "graceful-close", "--delay", "5"],
                            env=environment, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "needs the `tc` program" not in result.stderr
