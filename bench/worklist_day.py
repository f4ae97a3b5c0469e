"""Replays a synthetic reading day through radrouter's real prioritiser and compares waits with FIFO.

Studies arrive through the day (Poisson, busier mornings); a share is truly urgent (prevalence); the AI
flags urgent ones with the given sensitivity and false-flags the rest at 1 - specificity, its result
arriving ``--ai-delay-min`` after the study. Radiologists each take the next study in the order that
:func:`radrouter.worklist.triage.reading_order` gives at that moment (the node's own code), or plain
first-in-first-out. Waits run from arrival to the start of reading. Usage:

    .venv/bin/python bench/worklist_day.py [--studies 600] [--radiologists 2] [--seed 1] ...
"""

from __future__ import annotations

import argparse
import heapq
import math
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from radrouter.config.rules import Priority
from radrouter.config.worklist import WorklistSettings
from radrouter.worklist.triage import WaitingStudy, reading_order

DAY_START = datetime(2026, 3, 2, 7, 0)


@dataclass(frozen=True)
class SimulatedStudy:
    uid: str
    arrival_min: float
    reading_min: float
    urgent: bool
    flagged: bool


def synthetic_day(args: argparse.Namespace) -> list[SimulatedStudy]:
    """Arrival times with a morning peak, log-normal reading times, ground truth and AI flags."""
    rng = random.Random(args.seed)
    hours = args.hours
    weights = [1.5 if h < hours / 3 else 1.0 if h < 2 * hours / 3 else 0.6 for h in range(math.ceil(hours))]
    arrivals = sorted(
        rng.choices(range(len(weights)), weights)[0] * 60 + rng.uniform(0, 60) for _ in range(args.studies)
    )
    sigma = 0.6
    mu = math.log(args.read_min) - sigma**2 / 2
    studies = []
    for number, arrival in enumerate(arrivals):
        urgent = rng.random() < args.prevalence
        flagged = rng.random() < (args.sensitivity if urgent else 1 - args.specificity)
        studies.append(SimulatedStudy(f"s{number}", arrival, rng.lognormvariate(mu, sigma), urgent, flagged))
    return studies


def replay(
    studies: list[SimulatedStudy], radiologists: int, ai_delay_min: float, caps: dict[Priority, float] | None
) -> dict[str, float]:
    """Wait in minutes of each study; ``caps`` None is first-in-first-out."""
    free_at = [0.0] * radiologists
    heapq.heapify(free_at)
    waiting: dict[str, SimulatedStudy] = {}
    waits: dict[str, float] = {}
    upcoming = 0
    while len(waits) < len(studies):
        now = heapq.heappop(free_at)
        if not waiting and upcoming < len(studies):
            now = max(now, studies[upcoming].arrival_min)
        while upcoming < len(studies) and studies[upcoming].arrival_min <= now:
            waiting[studies[upcoming].uid] = studies[upcoming]
            upcoming += 1
        if caps is None:
            chosen = min(waiting.values(), key=lambda study: study.arrival_min)
        else:
            listed = [
                WaitingStudy(
                    s.uid,
                    Priority.STAT if s.flagged and now >= s.arrival_min + ai_delay_min else Priority.ROUTINE,
                    DAY_START + timedelta(minutes=s.arrival_min),
                )
                for s in waiting.values()
            ]
            first = reading_order(listed, DAY_START + timedelta(minutes=now), caps)[0]
            chosen = waiting[first.study.study_uid]
        del waiting[chosen.uid]
        waits[chosen.uid] = now - chosen.arrival_min
        heapq.heappush(free_at, now + chosen.reading_min)
    return waits


def describe(waits: list[float]) -> str:
    return f"{np.mean(waits):7.1f} {np.percentile(waits, 95):7.1f} {max(waits):7.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--studies", type=int, default=520, help="studies in the day")
    parser.add_argument("--hours", type=float, default=12, help="hours over which studies arrive")
    parser.add_argument("--radiologists", type=int, default=2)
    parser.add_argument("--read-min", type=float, default=2.6, help="mean reading time, minutes")
    parser.add_argument("--prevalence", type=float, default=0.2, help="share of truly urgent studies")
    parser.add_argument("--sensitivity", type=float, default=0.9)
    parser.add_argument("--specificity", type=float, default=0.8)
    parser.add_argument("--ai-delay-min", type=float, default=3.0, help="minutes from arrival to AI result")
    # A tighter routine cap than the node's default (480 min), to fit a day that drains in hours.
    parser.add_argument("--routine-cap-min", type=float, default=60.0)
    parser.add_argument("--stat-cap-min", type=float, default=WorklistSettings().max_wait_stat_min)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    studies = synthetic_day(args)
    capped = {
        Priority.STAT: args.stat_cap_min,
        Priority.URGENT: WorklistSettings().max_wait_urgent_min,
        Priority.ROUTINE: args.routine_cap_min,
    }
    policies: dict[str, dict[Priority, float] | None] = {
        "FIFO": None,
        "triage, no cap": {},
        f"triage, cap {args.routine_cap_min:g} min": {p: minutes * 60 for p, minutes in capped.items()},
    }
    flagged = sum(s.flagged for s in studies)
    urgent = sum(s.urgent for s in studies)
    load = sum(s.reading_min for s in studies) / (args.hours * 60 * args.radiologists)
    print(
        f"{len(studies)} studies over {args.hours:g} h, {args.radiologists} radiologists, load {load:.2f}; "
        f"{urgent} truly urgent, {flagged} flagged by the AI "
        f"(sensitivity {args.sensitivity}, specificity {args.specificity})"
    )
    columns = "mean     p95     max"
    print(f"{'policy':<24} {'urgent: ' + columns:>27}   {'routine: ' + columns:>29}  (minutes)")
    fifo: tuple[float, float] | None = None
    for name, caps in policies.items():
        waits = replay(studies, args.radiologists, args.ai_delay_min, caps)
        urgent_waits = [waits[s.uid] for s in studies if s.urgent]
        routine_waits = [waits[s.uid] for s in studies if not s.urgent]
        fifo = fifo or (float(np.mean(urgent_waits)), max(routine_waits))
        urgent_ratio = np.mean(urgent_waits) / fifo[0]
        ratios = f"urgent mean x{urgent_ratio:.2f}, routine max x{max(routine_waits) / fifo[1]:.2f}"
        print(f"{name:<24} {describe(urgent_waits):>27}   {describe(routine_waits):>29}  {ratios} of FIFO")


if __name__ == "__main__":
    main()
