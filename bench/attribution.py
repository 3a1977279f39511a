"""Attribution rate: the share of failing calls `correlate` links to the right frame.

    .venv/bin/python bench/attribution.py [--runs 200] [--family ipv4|ipv6|both] [SCENARIO ...]

Runs every scenario this host can run (or the ones named) N times on real loopback
sockets, correlates each recording, and checks every failing call (and
end-of-file) against an answer found without correlate: the scenario's
expected cause kind, and for that kind the frame found directly in the
segments (the one RST toward the failing socket, the first FIN toward it,
no frame for our own close). Prints per scenario: calls checked, linked
right, wrong (with the first few examples), runs where the kernel itself
did something else than the scenario expects (those are not counted as
correlation errors, but shown), and links carrying caveats.

Goal (issue 3): 100% linked to the right frame. Needs capture privilege
(root or CAP_NET_RAW). Never a test: the rate is printed, not asserted.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter

from tcpteardown.analysis.correlate import correlate
from tcpteardown.scenarios import all_scenarios, run_scenario

SEED = ("graceful-close", "reset-by-peer", "broken-pipe", "write-after-reset", "refused", "use-after-close")


def expected_frame(recording, call, kind):
    """The right cause frame for `call`, found from the segments alone."""
    mine = call.local
    if kind == "rst":
        rsts = [s.frame for s in recording.segments if s.is_rst and (mine is None or s.dst == mine)]
        return rsts[-1] if len(rsts) == 1 else ("ambiguous", tuple(rsts))
    if kind == "fin":
        fins = [s.frame for s in recording.segments if s.is_fin and (mine is None or s.dst == mine)]
        return fins[0] if fins else ("missing",)
    return None


def check_run(run, tally: Counter, wrong: list) -> None:
    expected = run.expected.outcomes if run.expected else ()
    if not run.matches:
        tally["kernel-differed"] += 1
    wanted = {(o.role, o.op, o.outcome): o.cause for o in expected}
    for link in correlate(run.recording):
        call = link.call
        kind = wanted.get((call.role, call.op, call.outcome))
        tally["checked"] += 1
        if link.caveats:
            tally["with-caveats"] += 1
        if kind is None:
            tally["unexpected-call"] += 1
            continue
        right = expected_frame(run.recording, call, kind)
        got = link.cause.frame if link.cause else None
        if link.kind.value == kind and got == right:
            tally["right"] += 1
        else:
            tally["wrong"] += 1
            if len(wrong) < 3:
                wrong.append(f"{call.op}() {call.outcome}: linked {link.kind.value} frame {got}, "
                             f"expected {kind} frame {right} ({link.rule}; {'; '.join(link.caveats)})")


def runnable_scenarios() -> list:
    """Every scenario in the library that this host can run (seed ones first)."""
    from tcpteardown.scenarios.needs import can_run

    scenarios = all_scenarios()
    ordered = sorted(scenarios, key=lambda s: (s.name not in SEED, SEED.index(s.name) if s.name in SEED else 0))
    return [s.name for s in ordered if not can_run(s, capture=True)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", nargs="*",
                        help="scenario names (default: every scenario this host can run, seed ones first)")
    parser.add_argument("--runs", type=int, default=200, help="runs per scenario and family (default 200)")
    parser.add_argument("--family", choices=("ipv4", "ipv6", "both"), default="ipv4")
    parser.add_argument("--no-witness", action="store_true", help="no kernel witness: reasons inferred")
    args = parser.parse_args(argv)
    names = args.scenarios or runnable_scenarios()
    families = ("ipv4", "ipv6") if args.family == "both" else (args.family,)

    total = Counter()
    print(f"{'scenario':<20} {'family':<6} {'runs':>5} {'calls':>6} {'right':>6} {'wrong':>6} "
          f"{'rate':>8} {'kernel≠':>8} {'caveats':>8} {'ms/run':>7}")
    for name in names:
        for family in families:
            tally, wrong = Counter(), []
            started = time.perf_counter()
            for _ in range(args.runs):
                try:
                    run = run_scenario(name, family=family, witness=not args.no_witness)
                except Exception as exc:  # the scenario itself failed: not a correlation error, shown
                    tally["run-failed"] += 1
                    if len(wrong) < 3:
                        wrong.append(f"run failed: {type(exc).__name__}: {exc}")
                    if tally["run-failed"] >= 3 and not tally["checked"]:
                        break  # broken here; do not spend 200 runs on it
                    continue
                check_run(run, tally, wrong)
            per_run = (time.perf_counter() - started) * 1000 / max(args.runs, 1)
            graded = tally["right"] + tally["wrong"]
            rate = 100.0 * tally["right"] / graded if graded else float("nan")
            print(f"{name:<20} {family:<6} {args.runs:>5} {tally['checked']:>6} {tally['right']:>6} "
                  f"{tally['wrong']:>6} {rate:>7.2f}% {tally['kernel-differed']:>8} "
                  f"{tally['with-caveats']:>8} {per_run:>7.1f}")
            for example in wrong:
                print(f"    {example if example.startswith('run failed') else 'wrong: ' + example}")
            total.update(tally)
    graded = total["right"] + total["wrong"]
    rate = 100.0 * total["right"] / graded if graded else float("nan")
    print(f"\noverall: {total['right']}/{graded} failing calls linked to the right frame = {rate:.2f}% "
          f"(goal 100%); runs where the kernel differed from the expectation: {total['kernel-differed']}; "
          f"calls with an outcome the scenario did not expect: {total['unexpected-call']}; "
          f"runs that failed before correlating: {total['run-failed']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
