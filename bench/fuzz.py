"""The long fuzz run: mutated real files and malformed PDUs against a `radrouter scp` process.

    .venv/bin/python -m bench.fuzz --datasets 5000 --pdus 5000

Prints the cases run, the statuses seen, and crashes (the process died or stopped answering C-ECHO).
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings

from tests.fuzz.cases import FAILURES, DatasetCase, PduCase, Sender, dataset_cases, echo, pdu_cases, send_raw
from tests.services import free_port, wait_until


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", type=int, default=5000)
    parser.add_argument("--pdus", type=int, default=5000)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="radrouter-fuzz-"))
    port = free_port()
    config = workdir / "radrouter.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "node": {"port": port, "max_associations": 4000, "metrics_port": 0},
                "storage": {"root": str(workdir / "data"), "fsync": False, "free_space_reserve_mb": 64},
                "broker": {"url": f"redis://127.0.0.1:{free_port()}/0"},
                "rules": [],
            }
        )
    )
    log = (workdir / "scp.log").open("wb")
    scp = subprocess.Popen(
        [sys.executable, "-m", "radrouter.cli", "scp"],
        env={**os.environ, "RADROUTER_CONFIG": str(config)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    wait_until(lambda: echo(port), 60, "radrouter scp")
    statuses: collections.Counter[str] = collections.Counter()
    case_file = workdir / "case.dcm"
    sender = Sender(port)
    started = time.monotonic()

    @settings(
        max_examples=args.datasets, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(case=dataset_cases())
    def datasets(case: DatasetCase) -> None:
        meta, body = case.build()
        case_file.write_bytes(meta + body)
        status = sender.store(case_file)
        statuses["no answer" if status is None else f"0x{status:04X}"] += 1
        assert status is not None and (status == 0 or status in FAILURES), status

    @settings(max_examples=args.pdus, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(case=pdu_cases())
    def pdus(case: PduCase) -> None:
        send_raw(port, case)
        statuses["pdu"] += 1

    try:
        datasets()
        sender.close()
        pdus()
        alive = scp.poll() is None and echo(port)
    finally:
        scp.terminate()
        scp.wait(timeout=30)
    elapsed = time.monotonic() - started
    crashes = 0 if alive else 1
    datasets_run = sum(n for status, n in statuses.items() if status != "pdu")
    print(f"dataset cases: {datasets_run}, PDU cases: {statuses['pdu']}, in {elapsed:.0f} s")
    print(f"statuses: {dict(statuses)}")
    print(f"crashes: {crashes} (scp process alive and answering C-ECHO afterwards: {alive})")
    return crashes


if __name__ == "__main__":
    raise SystemExit(main())
