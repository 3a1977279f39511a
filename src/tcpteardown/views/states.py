"""The TCP state diagram, drawn from the table the analysis uses.

`analysis.tcpstate.TRANSITIONS` decides every state the ladders and the
step-through show; this view draws that same table as a Mermaid
`stateDiagram-v2`, so the picture in a lesson or a write-up cannot drift
from the code (h11 draws its state machine from its table the same way).
Each edge is labelled with the event that takes it, named from the side
whose state changes (`send_fin`: it sent a FIN). Pure: text out.
"""

from __future__ import annotations

from typing import Mapping, Optional

from ..analysis.tcpstate import STATES, TRANSITIONS

__all__ = ["state_diagram"]

# How the events read on an edge: what the side whose state changes sent or received.
EVENT_WORDS = {
    "send_syn": "sends SYN", "recv_syn": "receives SYN", "recv_synack": "receives SYN,ACK",
    "recv_ack_of_syn": "receives the ACK of its SYN", "send_fin": "sends FIN", "recv_fin": "receives FIN",
    "recv_ack_of_fin": "receives the ACK of its FIN", "send_rst": "sends RST", "recv_rst": "receives RST",
    "send_fin_crossing": "sends FIN as the peer's crosses it", "send_synack": "sends SYN,ACK",
}
GROUP_AT = 4  # an event that takes this many states to the same target is drawn once, from a group


def groups(table: Mapping[tuple[str, str], str]) -> dict[tuple[str, str], tuple[str, ...]]:
    """(event, target) -> the states it leaves from, for events that take many
    states to one target (an RST from any synchronised state)."""
    sources: dict[tuple[str, str], list[str]] = {}
    for (state, event), target in table.items():
        sources.setdefault((event, target), []).append(state)
    return {key: tuple(states) for key, states in sources.items() if len(states) >= GROUP_AT}


def state_diagram(transitions: Optional[Mapping[tuple[str, str], str]] = None, *, title: str = "") -> str:
    """Mermaid text: one node per state, one edge per (state, event) -> state
    row; the rows of a group (`groups`) as one edge from a state named by
    the states it stands for."""
    table = TRANSITIONS if transitions is None else transitions
    grouped = groups(table)
    lines = ["stateDiagram-v2"]
    if title:
        lines[:0] = ["---", f"title: {title}", "---"]
    used = {state for pair, target in table.items() for state in (pair[0], target)}
    lines += [f"    {state}" for state in STATES if state in used]
    # Groups leaving the same states for the same target share one node and one edge.
    shared: dict[tuple[tuple[str, ...], str], list[str]] = {}
    for (event, target), states in grouped.items():
        shared.setdefault((states, target), []).append(_words(event))
    for n, (states, _target) in enumerate(shared):
        lines.append(f'    state "any of {", ".join(states)}" as GROUP{n}')
    lines.append("    [*] --> CLOSE")
    for (state, event), target in table.items():
        if (event, target) not in grouped:
            lines.append(f"    {state} --> {target}: {_words(event)}")
    for n, ((_states, target), words) in enumerate(shared.items()):
        lines.append(f"    GROUP{n} --> {target}: {' or '.join(words)}")
    return "\n".join(lines) + "\n"


def _words(event: str) -> str:
    return EVENT_WORDS.get(event, event.replace("_", " "))
