"""The long run of mutated real headers through the results' write path (CI runs 20 + examples).

    .venv/bin/python -m bench.results_fuzz --cases 1000

Prints the cases run, how many gave a valid SEG and SR (no dciodvfy error the source lacks), how
many failed with a reason (a removed type 1 attribute), and every case that did neither.
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
import warnings

from hypothesis import HealthCheck, given, settings

from tests.inference.source_mutations import Mutation, Outcome, acceptable, mutations, write_path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", type=int, default=1000)
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # pydicom's and highdicom's warnings about the mutated values
    counts: collections.Counter[str] = collections.Counter()
    wrong: list[tuple[list[Mutation], Outcome | str]] = []
    started = time.monotonic()

    @settings(max_examples=args.cases, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(case=mutations())
    def run(case: list[Mutation]) -> None:
        try:
            outcome = write_path(case)
        except Exception as error:  # a crash of the write path is what this run looks for
            counts["crashed"] += 1
            wrong.append((case, f"{type(error).__name__}: {error}"))
            return
        counts["cases"] += 1
        counts["repairs"] += outcome.repairs
        if not acceptable(case, outcome):
            counts["wrong"] += 1
            wrong.append((case, outcome))
        elif outcome.written:
            counts["valid results"] += 1
        else:
            counts["refused with a reason"] += 1

    run()
    elapsed = time.monotonic() - started
    print(f"{counts['cases'] + counts['crashed']} cases in {elapsed:.0f} s: {dict(counts)}")
    for case, outcome in wrong[:20]:
        print("  ", case, "->", outcome)
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
