"""Kernel events in, teardowns out: the pure middle of `tcpteardown watch`.

One RST or FIN shows up as several tracepoints, microseconds apart:

- an RST sent and received on this host (loopback, or between two local
  sockets) is a ``tcp:tcp_send_reset`` (the sender's reason and state) *and*
  a ``tcp:tcp_receive_reset`` (the receiver's socket), followed by the
  receiver's ``inet_sock_set_state`` (oldstate = the state the RST hit) and
  ``inet_sk_error_report`` (the errno the kernel left on it);
- an RST from another host is only the receive side; one we send to
  another host only the send side;
- a FIN is the sender's ESTABLISHED -> FIN_WAIT1 and, when the receiver is
  here too, the receiver's ESTABLISHED -> CLOSE_WAIT.

`Tracker.feed` collects those pieces per receiving socket (its 4-tuple) and
`Tracker.flush` hands each one out as a single `Teardown` once `window_ns`
has passed since its first piece. Owners: an event that ran in process
context (no softirq/hardirq flag in the trace line) ran inside a system call
of the task that holds the socket (connect, close, shutdown, send), so that
task is recorded as the socket's owner; events in softirq say nothing about
who owns the socket (the CPU's current task is anybody), and the caller
asks /proc instead (`owners.py`).

Pure: no I/O; Endpoint and KernelEvent in, frozen Teardowns out.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, replace
from typing import Optional

from ...model import Endpoint, KernelEvent

__all__ = ["Task", "Teardown", "Tracker", "WINDOW_NS", "situation_of_state"]

WINDOW_NS = 3_000_000  # the pieces of one RST arrive within microseconds; 3 ms is generous
MAX_SOCKETS = 65_536  # sockets whose last state we remember (least recently seen dropped first)

Key = tuple[Endpoint, Endpoint]  # (local, remote) of one socket


@dataclass(frozen=True, slots=True)
class Task:
    """A task that made a system call on the socket: thread id and its command."""

    tid: int
    comm: str


@dataclass(frozen=True, slots=True)
class Teardown:
    """One RST or FIN as the host saw it, seen from the socket it reached.

    `local`/`remote` are the receiving socket's ends when the receiver is
    here (`received`), else the sender's ends reversed (so `local` is always
    the side the teardown is about: the one on this host that got it, or the
    remote peer when only our sending was seen). `kind`: "rst", "fin" or
    "refused" (an RST answering our SYN).
    """

    time_ns: int
    kind: str
    local: Endpoint  # the receiving socket (on this host when `received`)
    remote: Endpoint  # who sent it
    received: bool  # the receiving socket is on this host
    sent_here: bool  # the sender is on this host
    state: Optional[str] = None  # receiver's TCP state it hit ("ESTABLISHED"), None when unknown
    sender_state: Optional[str] = None  # sender's state when it sent (None: no socket)
    reason: Optional[str] = None  # tcp_send_reset's reason ("NO_SOCKET")
    error: Optional[str] = None  # the errno the kernel left on the receiver (inet_sk_error_report)
    receiver_task: Optional[Task] = None  # from a process-context event on the receiving socket
    sender_task: Optional[Task] = None
    cookie: Optional[str] = None  # tcp_receive_reset's sock_cookie
    receiver_pid: Optional[int] = None  # resolved owners (filled by the caller: owners.py)
    receiver_comm: Optional[str] = None
    sender_pid: Optional[int] = None
    sender_comm: Optional[str] = None
    owner_note: Optional[str] = None  # why the receiver's owner is not known, in words
    sender_note: Optional[str] = None

    @property
    def situation(self) -> Optional[str]:
        """The prediction table's situation (analysis.predict.SITUATIONS) for the receiver."""
        return situation_of_state(self.kind, self.state) if self.received else None


def situation_of_state(kind: str, state: Optional[str]) -> Optional[str]:
    """"rst" in ESTABLISHED -> "rst-established", ...; None when no call of the owner is affected."""
    if kind == "fin":
        return "fin" if state in ("ESTABLISHED", None) else None
    return {"SYN_SENT": "refused", "ESTABLISHED": "rst-established", "CLOSE_WAIT": "rst-close-wait",
            "FIN_WAIT1": "rst-fin-wait", "FIN_WAIT2": "rst-fin-wait"}.get(state or "")


@dataclass(slots=True)
class _Pending:
    first_ns: int
    kind: str
    local: Endpoint
    remote: Endpoint
    received: bool = False
    sent_here: bool = False
    state: Optional[str] = None
    state_final: bool = False  # taken from the receiver's own ->CLOSE transition
    sender_state: Optional[str] = None
    reason: Optional[str] = None
    error: Optional[str] = None
    cookie: Optional[str] = None
    sender_task: Optional[Task] = None


def _state(text: Optional[str]) -> Optional[str]:
    if text is None or text in ("UNKNOWN", ""):
        return None
    return text.removeprefix("TCP_")


class Tracker:
    """Feed it every event (time order), then flush: Teardowns come out once each."""

    def __init__(self, window_ns: int = WINDOW_NS):
        self.window_ns = window_ns
        self._states: OrderedDict[Key, tuple[Optional[str], Optional[str]]] = OrderedDict()
        self._tasks: OrderedDict[Key, Task] = OrderedDict()
        self._connecting: dict[tuple[str, Endpoint], deque] = {}  # SYN_SENT before the port is chosen
        self._pending: dict[Key, _Pending] = {}
        self._ready: list[Teardown] = []  # complete before their window ended (a FIN an RST followed)
        self.established: list[Key] = []  # sockets that became ESTABLISHED in softirq (ask /proc)
        self.renewed: list[Key] = []  # 4-tuples a new connection took over (forget their owners)

    # -- what the caller asks

    def task_of(self, key: Key) -> Optional[Task]:
        return self._tasks.get(key)

    def take_established(self) -> list[Key]:
        keys, self.established = self.established, []
        return keys

    def take_renewed(self) -> list[Key]:
        keys, self.renewed = self.renewed, []
        return keys

    # -- feeding

    def feed(self, event: KernelEvent, process_context: bool) -> None:
        task = None
        if process_context and event.get("pid") is not None:
            task = Task(int(event.get("pid")), event.get("comm") or "?")
        if event.name == "sock:inet_sock_set_state":
            self._set_state(event, task)
        elif event.name == "tcp:tcp_receive_reset":
            self._receive_reset(event)
        elif event.name == "tcp:tcp_send_reset":
            self._send_reset(event, task)
        elif event.name == "sock:inet_sk_error_report":
            pending = self._pending.get((event.src, event.dst))
            if pending is not None and pending.error is None:
                pending.error = event.get("error")

    def _remember(self, table: OrderedDict, key: Key, value) -> None:
        table[key] = value
        table.move_to_end(key)
        if len(table) > MAX_SOCKETS:
            table.popitem(last=False)

    def _set_state(self, event: KernelEvent, task: Optional[Task]) -> None:
        if event.src is None or event.dst is None:
            return
        old, new = _state(event.get("oldstate")), _state(event.get("newstate"))
        key = (event.src, event.dst)
        if event.src.port == 0:  # connect() before the kernel picks the local port
            if new == "SYN_SENT" and task is not None:
                queue = self._connecting.setdefault((event.src.host, event.dst), deque(maxlen=256))
                queue.append(task)
            return
        if old == "SYN_SENT":  # a new connection on this 4-tuple: its connect()'s task, or nobody yet
            queue = self._connecting.get((event.src.host, event.dst))
            self._tasks.pop(key, None)
            self.renewed.append(key)
            if queue:
                self._remember(self._tasks, key, queue.popleft())
        elif new == "SYN_RECV":  # a new passive connection: an earlier one's owner is not its owner
            self._tasks.pop(key, None)
            self.renewed.append(key)
        if task is not None:
            self._remember(self._tasks, key, task)
        self._remember(self._states, key, (old, new))
        pending = self._pending.get(key)
        if pending is not None and pending.received and new == "CLOSE" and not pending.state_final:
            pending.state, pending.state_final = old, True  # tcp_done() after the RST: the state it hit
        if new == "ESTABLISHED" and key not in self._tasks:
            self.established.append(key)
        if old == "ESTABLISHED" and new == "CLOSE_WAIT":  # the peer's FIN arrived
            found = self._open_fin(event.time_ns, key)
            found.received, found.state, found.state_final = True, "ESTABLISHED", True
        elif old == "ESTABLISHED" and new == "FIN_WAIT1":  # we send a FIN
            found = self._open_fin(event.time_ns, (event.dst, event.src))
            found.sent_here, found.sender_state, found.sender_task = True, old, task or self._tasks.get(key)

    def _open_fin(self, time_ns: int, key: Key) -> _Pending:
        pending = self._pending.get(key)
        if pending is None:
            pending = self._pending[key] = _Pending(time_ns, "fin", *key)
        elif pending.kind != "fin":
            return _Pending(time_ns, "fin", *key)  # an RST is already this socket's story: it wins
        return pending

    def _open_rst(self, time_ns: int, key: Key) -> _Pending:
        pending = self._pending.get(key)
        if pending is not None and pending.kind == "fin":  # a FIN just before: its own line, first
            self._ready.append(self._teardown(key, self._pending.pop(key)))
            pending = None
        if pending is None:
            pending = self._pending[key] = _Pending(time_ns, "rst", *key)
        return pending

    def _receive_reset(self, event: KernelEvent) -> None:
        if event.src is None or event.dst is None:
            return
        key = (event.src, event.dst)
        pending = self._open_rst(event.time_ns, key)
        pending.received = True
        pending.cookie = event.get("sock_cookie")
        known = self._states.get(key)
        if known is not None and not pending.state_final:
            pending.state = known[1]

    def _send_reset(self, event: KernelEvent, task: Optional[Task]) -> None:
        if event.src is None or event.dst is None:
            return
        sender = (event.src, event.dst)
        key = (event.dst, event.src)  # the receiver's view
        pending = self._open_rst(event.time_ns, key)
        pending.sent_here = True
        pending.reason = event.get("reason")
        state = _state(event.get("state"))
        if state == "CLOSE":  # an abortive close already moved it to CLOSE: the state it left
            state = (self._states.get(sender) or (None, None))[0] or state
        pending.sender_state = state
        pending.sender_task = task or self._tasks.get(sender)

    # -- handing out

    def flush(self, now_ns: Optional[int] = None) -> list[Teardown]:
        """Teardowns whose pieces are all in (first piece older than the window), oldest
        first; with `now_ns` None, every pending one (the end of the run)."""
        done = [key for key, p in self._pending.items()
                if now_ns is None or now_ns - p.first_ns >= self.window_ns]
        out, self._ready = self._ready, []
        out.extend(self._teardown(key, self._pending.pop(key)) for key in done)
        out.sort(key=lambda t: t.time_ns)
        return out

    def _teardown(self, key: Key, p: _Pending) -> Teardown:
        kind = p.kind
        if kind == "rst" and p.received and p.state == "SYN_SENT":
            kind = "refused"
        receiver_task = self._tasks.get(key) if p.received else None
        teardown = Teardown(p.first_ns, kind, p.local, p.remote, p.received, p.sent_here, p.state,
                            p.sender_state, p.reason, p.error, receiver_task, p.sender_task, p.cookie)
        if p.sent_here and p.sender_state is None and p.reason == "NO_SOCKET":
            teardown = replace(teardown, sender_note=f"no socket: nothing listened on {p.remote}, "
                                                     "or its connection was already gone")
        elif p.sent_here and p.sender_state == "TIME_WAIT":
            teardown = replace(teardown, sender_note="a TIME_WAIT mini-socket: no process holds it any more")
        return teardown
