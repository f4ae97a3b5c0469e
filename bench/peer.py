"""The PyPI peer ``dicom-ai-router`` on the same study, with a no-op model, in its own venv in /tmp.

Its model is an HTTP endpoint; here a no-op one answers every upload with an empty finding at once.
Its quiet period is set to radrouter's (1 s), so the two differ by their pipelines only. The answer
is its end-to-end time (storescu's exit -> its SR and key image in Orthanc), or why there is none.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import yaml

from tests.services import Orthanc, free_port, storescu, wait_until

PACKAGE = "dicom-ai-router"
VENV = Path(tempfile.gettempdir()) / "radrouter-bench-peer-venv"
NO_FINDING = {
    "model": "noop",
    "model_version": "0",
    "result": "NEGATIVE",
    "summary_lines": [["Result", "no-op model"]],
    "processing_ms": 0,
}


class _NoOpModel(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = json.dumps(NO_FINDING).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the bench prints its own lines."""


def _install() -> str | None:
    """Install the peer into its venv (kept between runs); return why it cannot, or None."""
    if (VENV / "bin" / "dicom-ai-router").exists():
        return None
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    installed = subprocess.run(
        [str(VENV / "bin" / "python"), "-m", "pip", "install", "-q", PACKAGE],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if installed.returncode != 0:
        return f"`pip install {PACKAGE}` failed: {installed.stderr.strip()[-300:]}"
    return None


def _state(workdir: Path, study_uid: str) -> tuple[str, str] | None:
    """The peer's own record of the study: (state, summary or error), once it has one."""
    database = workdir / "data" / "router.sqlite"
    if not database.exists():
        return None
    with sqlite3.connect(database) as connection:
        row = connection.execute(
            "SELECT state, coalesce(error, summary, '') FROM studies WHERE study_uid = ?", (study_uid,)
        ).fetchone()
    return (str(row[0]), str(row[1])) if row else None


def peer_end_to_end(workdir: Path, orthanc: Orthanc, study: Path) -> str:
    """Run the peer once on ``study`` (a folder named by its Study Instance UID, which no one has seen);
    a line saying its end-to-end time or why there is none."""
    workdir.mkdir(parents=True)
    failure = _install()
    if failure:
        return f"not run: {failure}"
    model = ThreadingHTTPServer(("127.0.0.1", 0), _NoOpModel)
    threading.Thread(target=model.serve_forever, daemon=True).start()
    port = free_port()
    config = {
        "router": {"ae_title": "AIROUTER", "port": port, "study_quiet_seconds": 1, "workers": 2,
                   "workdir": str(workdir / "data"), "bind_address": "127.0.0.1"},
        "pacs": {"ae_title": orthanc.ae_title, "host": "127.0.0.1", "port": orthanc.dicom_port},
        "ai_endpoints": {"noop": {"url": f"http://127.0.0.1:{model.server_port}/infer"}},
        "rules": [{"name": "brain-mr", "match": {"Modality": "^MR$"}, "model": "noop"}],
        "deid": {"salt": ""},
    }  # fmt: skip
    (workdir / "router.yaml").write_text(yaml.safe_dump(config))
    log = workdir / "peer.log"
    process = subprocess.Popen(
        [str(VENV / "bin" / "python"), "-m", "airouter", "serve", "--config", str(workdir / "router.yaml")],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "AIROUTER_DEID_SALT": secrets.token_hex(32)},
    )
    try:
        wait_until(lambda: "AIROUTER up" in log.read_text(), 60, "dicom-ai-router")
        study_uid = study.name
        sent = storescu(port, sorted(study.iterdir()), ae_title="AIROUTER")
        if sent.returncode != 0:
            return f"not run: storescu to the peer failed: {sent.stderr[-300:]}"
        done = time.monotonic()
        query = {"Level": "Series", "Query": {"StudyInstanceUID": study_uid}, "Expand": True}
        while time.monotonic() - done < 120:
            series = httpx.post(f"{orthanc.url}/tools/find", json=query).json()
            if {"SR", "OT"} <= {item["MainDicomTags"].get("Modality") for item in series}:
                return f"end to end {time.monotonic() - done:.2f} s (no-op model, SR + key image in Orthanc)"
            state = _state(workdir, study_uid)
            if state and state[0] in ("IGNORED", "FAILED"):
                return f"no result for the MPRAGE: the peer marked it {state[0]} ({state[1]})"
            time.sleep(0.05)
        return "no result in Orthanc after 120 s"
    finally:
        process.terminate()
        process.wait(timeout=30)
        model.shutdown()
