"""Ctrl-C at random moments: the issue's sequence, interrupted again and again, checked for leftovers each time.

Each round runs ``harness run --topology haproxy-cookie --users 40 --duration 20s --events "5s scale app 5"`` on a
pseudo-terminal and types Ctrl-C into it at a moment drawn from one of four phases (start-up: 0-1.8 s after
the command starts; swarm: 0-4.5 s after the "up:" line; event: 4.5-8 s after it, around the scale-up; judging
and report: 0-0.6 s after "swarm over: judging"), and in one round in five a second Ctrl-C 0-0.5 s after the
first. Then: the exit code (130 expected), the lines said after the interrupt, the summary (marked interrupted),
and what was left: processes carrying a run id, loopback listeners, control sockets, temporary files
(`tests.interrupting`).

    .venv/bin/python benchmarks/interrupts.py                 # 100 rounds, seed 1
    .venv/bin/python benchmarks/interrupts.py --rounds 20 --seed 7 --json out.json

Exit code 0 when every round exited 130 with nothing left, 1 otherwise. About 10 s a round.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.interrupting import HARNESS, Outcome, interrupt  # noqa: E402

RUN = ["run", "--topology", "haproxy-cookie", "--users", "40", "--duration", "20s", "--events", "5s scale app 5"]
PHASES = {  # name: (line to wait for, or None for the start; delay range after it)
    "start-up": (None, (0.0, 1.8)),
    "swarm": (r"^up: ", (0.0, 4.5)),
    "event": (r"^up: ", (4.5, 8.0)),
    "judging and report": (r"^swarm over: judging", (0.0, 0.6)),
}


def after_the_end(outcome: Outcome) -> bool:
    """The Ctrl-C came after the command had said its last line (its report's path): the interpreter was
    exiting, and a signal then ends it with nothing to say."""
    before = outcome.output.split("\n<interrupt>\n", 1)[0]
    return any(line.startswith("report:  ") for line in before.splitlines()) or any(
        "after the command had finished" in line for line in outcome.lines_after
    )


def _problems(outcome: Outcome) -> list[str]:
    problems = []
    # after its last line, a command may well end with its verdict's code before the Ctrl-C reaches it
    verdict_code = (outcome.summary or {}).get("exit_code")
    if outcome.code != 130 and not (after_the_end(outcome) and outcome.code == verdict_code):
        problems.append(f"exit code {outcome.code}")
    if outcome.leftovers:
        problems.append(f"left {outcome.leftovers.describe()}")
    said = [line for line in outcome.lines_after if "interrupted (" in line]
    if len(said) != 1 and not (after_the_end(outcome) and not said):
        problems.append(f"{len(said)} 'interrupted' lines")
    if "Traceback" in outcome.output:
        problems.append("a traceback")
    ended = after_the_end(outcome)  # its summary is whole: not marked
    if outcome.run_id is not None and not ended and (outcome.summary or {}).get("verdict") != "interrupted":
        verdict = None if outcome.summary is None else outcome.summary.get("verdict")
        problems.append(f"summary verdict {verdict!r}, not 'interrupted'")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="write every round here")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    rng = random.Random(args.seed)
    rows = []
    failed = 0
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="interrupts-") as tmp:
        ignore = frozenset({Path(tmp).name})
        for i in range(args.rounds):
            phase = rng.choice(list(PHASES))
            after, (low, high) = PHASES[phase]
            at = rng.uniform(low, high)
            again = rng.uniform(0.0, 0.5) if rng.random() < 0.2 else None
            reports = Path(tmp) / f"round-{i}"
            outcome = interrupt(
                [*HARNESS, *RUN, "--reports-dir", str(reports)],
                at,
                after=after,
                again_after=again,
                reports_dir=reports,
                ignore_temp=ignore,
            )
            problems = _problems(outcome)
            failed += bool(problems)
            row = {
                "round": i,
                "phase": phase,
                "at_s": round(at, 3),
                "second_ctrl_c_after_s": None if again is None else round(again, 3),
                "last_line_before": outcome.phase[:100],
                "exit_code": outcome.code,
                "seconds_to_exit": round(outcome.seconds_to_exit, 2),
                "sessions_kept": None if outcome.summary is None else outcome.summary.get("sessions"),
                "after_the_end": after_the_end(outcome),
                "problems": problems,
            }
            rows.append(row)
            twice = f", again +{again:.2f} s" if again is not None else ""
            verdict = "ok" if not problems else "PROBLEM: " + "; ".join(problems)
            print(
                f"{i + 1:>3}/{args.rounds} {phase:<18} +{at:5.2f} s{twice:<15} exit {outcome.code} in "
                f"{outcome.seconds_to_exit:5.2f} s, {row['sessions_kept']} sessions kept: {verdict}",
                flush=True,
            )
    exits = Counter(r["exit_code"] for r in rows)
    by_phase = Counter(r["phase"] for r in rows)
    slowest = max(r["seconds_to_exit"] for r in rows)
    phases = ", ".join(f"{n} {p}" for p, n in by_phase.items())
    print(
        f"\n{args.rounds} rounds in {time.monotonic() - started:.0f} s ({phases}; "
        f"{sum(r['second_ctrl_c_after_s'] is not None for r in rows)} with a second Ctrl-C, "
        f"{sum(r['after_the_end'] for r in rows)} after the command had finished): exit codes "
        f"{dict(exits)}, {failed} with a problem; slowest stop {slowest:.2f} s after the first Ctrl-C"
    )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
