"""Private network namespaces for scenarios: delay, sysctls, routes, a gate on `lo`.

    from tcpteardown.capture import netns
    result = netns.run_in_namespace(fn, delay_ms=20)   # fn() runs in a fresh netns

`run_in_namespace` forks a child that unshares its network namespace (as
root; otherwise through a user namespace, `unshare -rn` style), brings `lo`
up, adds `netem delay` when asked (where the kernel lacks netem, an NFQUEUE
delay line in user space, `DelayLine`), runs `fn` there and sends its result
back over a pipe (pickled). The namespace has no name and no bind mount: it
dies with the child, and with it every qdisc, route and sysctl set inside.
The child is reaped on every path: normal return, exception, Ctrl-C
(SIGINT is forwarded, then SIGKILL after a deadline), and the child kills
itself if the parent dies (PR_SET_PDEATHSIG).

Inside the namespace, scenarios may change what only that namespace sees:
`set_sysctl`, `ip`, and a `Gate` that holds every packet on `lo` until
released (a token-bucket qdisc throttled to 1 byte/s), for the few
teardowns that need two segments in flight at once.

This module must never change the host's own namespace: every mutating
helper refuses to run unless `inside_private_namespace()` is true. Nothing
Linux-only is imported at module level.

The package has three modules: `namespace` (the child's lifecycle and the
helpers that only run inside one), `shaping` (delay and gates on `lo`) and
`nfqueue` (the user-space delay line).
"""

from .namespace import (
    NamespaceError,
    inside_private_namespace,
    ip,
    iptables,
    namespace_id,
    namespace_problem,
    run_in_namespace,
    set_sysctl,
    tc,
)
from .nfqueue import DelayLine, PacketGate
from .shaping import Gate, gate_problem, mark_recording, netem_problem

__all__ = ["NamespaceError", "inside_private_namespace", "ip", "iptables", "namespace_id", "namespace_problem",
           "run_in_namespace", "set_sysctl", "tc", "DelayLine", "PacketGate", "Gate", "gate_problem",
           "mark_recording", "netem_problem"]
