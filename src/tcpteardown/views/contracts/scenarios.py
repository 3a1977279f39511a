"""The list JSON contract: `{"scenarios": [{"name", "summary", "family", "needs", "runnable",
"why_not", "expectations"}]}`.

`scenarios_json(rows)` is the document; `scenario_json(scenario, problem)` one
scenario in it (the text listing reads the same dicts): `problem` is why this host
cannot run it (`scenarios.needs.can_run`), None when it can; `expectations`
says per OS what the expected outcome rests on.
"""

from __future__ import annotations

from typing import Optional

from ...schemas import tag

__all__ = ["scenarios_json", "scenario_json"]


def scenarios_json(rows: list[dict]) -> dict:
    return {"schema": tag("list"), "scenarios": rows}


def scenario_json(scenario, problem: Optional[str]) -> dict:
    return {"name": scenario.name, "summary": scenario.summary, "family": scenario.family_group,
            "needs": list(scenario.needs), "runnable": problem is None, "why_not": problem,
            "expectations": {os_name: {"status": e.status, "evidence": [str(x) for x in e.evidence]}
                             for os_name, e in scenario.expected.items()}}
