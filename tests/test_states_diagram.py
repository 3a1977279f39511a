"""The TCP state diagram is drawn from tcpstate.TRANSITIONS, every row of it."""

from __future__ import annotations

import re

from tcpteardown.analysis.tcpstate import TRANSITIONS
from tcpteardown.views.states import groups, state_diagram

EDGE = re.compile(r"^    (\w+) --> (\w+): (.+)$")
GROUP = re.compile(r'^    state "any of ([^"]+)" as (GROUP\d+)$')


def _rows_drawn(text: str) -> set[tuple[str, str, str]]:
    """(state, words, target) for every row the text draws, groups expanded."""
    members = {m.group(2): m.group(1).split(", ") for m in map(GROUP.match, text.splitlines()) if m}
    drawn = set()
    for match in filter(None, map(EDGE.match, text.splitlines())):
        source, target, words = match.groups()
        for state in members.get(source, [source]):
            for word in words.split(" or "):
                drawn.add((state, word, target))
    return drawn


def test_every_transition_is_drawn_once_and_nothing_else():
    from tcpteardown.views.states import _words

    text = state_diagram()
    wanted = {(state, _words(event), target) for (state, event), target in TRANSITIONS.items()}
    drawn = _rows_drawn(text)
    assert drawn == wanted


def test_resets_from_every_synchronised_state_are_one_edge():
    text = state_diagram()
    assert groups(TRANSITIONS)  # the RST rows
    assert sum(1 for line in text.splitlines() if "RST" in line and "-->" in line) == 1


def test_a_changed_table_changes_the_picture():
    table = dict(TRANSITIONS)
    table[("ESTABLISHED", "recv_fin")] = "LAST_ACK"  # a wrong rule would show
    assert "ESTABLISHED --> LAST_ACK: receives FIN" in state_diagram(table)
    assert "ESTABLISHED --> CLOSE_WAIT" not in state_diagram(table)


def test_the_readme_shows_the_diagram_the_table_draws():
    from conftest import REPO

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    shown = readme.split("## TCP states, as the analysis knows them", 1)[1].split("```mermaid\n", 1)[1].split("```", 1)[0]
    assert shown == state_diagram()
