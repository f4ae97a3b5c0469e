"""Peers that break the protocol at each step, over the real network: the node's connection count
returns to zero and the SCP goes on serving (issue #23, finding 1).

A peer that sends its A-ASSOCIATE-RQ and, without waiting for the answer, an A-RELEASE-RQ or a P-DATA
kills pynetdicom's DUL thread (``InvalidEventError: Evt7 in Sta13``) when that PDU is read before the
SCP answers: no ``EVT_CONN_CLOSE`` then fires. What comes first is a race inside pynetdicom, so the
SCP here holds its answer until the DUL has read what followed (``hold_the_answer``), and then goes on
only once the DUL has handled its answer (``let_the_dul_act``): each stream meets the SCP in the
state it aims at, and pynetdicom's DUL thread dies, on every run. (Before the count moved to the end
of the connection's thread, "garbage before the answer" left every connection counted; the release
and P-DATA streams reach Sta1 here before the DUL dies, so that the close event had fired.)
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from pynetdicom import evt

from tests.fuzz.cases import ABORT, RELEASE_RQ, associate_rq, p_data
from tests.router.receive.test_scp import RunningSCP
from tests.services import ECHOSCU, wait_until

#: How long a peer waits for the SCP to close before closing itself (garbage reads to the SCP as the
#: start of a huge PDU, which it waits for).
PEER_PATIENCE_S = 2
#: More connections than the SCP allows associations at once.
CONNECTIONS = 12
MAX_ASSOCIATIONS = 4


def hold_the_answer(event: Any) -> None:
    """Answer the association request only once the DUL has read what the peer sent after it."""
    deadline = time.monotonic() + 2
    while event.assoc.dul.state_machine.current_state == "Sta3" and time.monotonic() < deadline:
        time.sleep(0.001)


def let_the_dul_act(event: Any) -> None:
    """After the answer is queued: wait for the DUL to act on it (it dies of it, in Sta13 or Sta1)."""
    deadline = time.monotonic() + 1
    while event.assoc.dul.is_alive() and time.monotonic() < deadline:
        time.sleep(0.001)


def _before_the_answer(follow: bytes | None) -> Any:
    def peer(port: int) -> int:
        with socket.create_connection(("127.0.0.1", port), timeout=PEER_PATIENCE_S) as sock:
            sock.sendall(associate_rq() + (follow or b""))
            if follow is not None:  # else closed right after the request
                _read_until_closed(sock)
        return 1

    return peer


def _after_the_answer(follow: bytes) -> Any:
    def peer(port: int) -> int:
        """The connections it took."""
        # The peers before this one may still hold their places for a moment after their socket
        # closed (their thread is ending): a rejection for the association limit is tried again.
        for attempt in range(1, 100):
            with socket.create_connection(("127.0.0.1", port), timeout=PEER_PATIENCE_S) as sock:
                sock.sendall(associate_rq())
                answer = sock.recv(6)
                if answer[:1] == b"\x02":
                    sock.sendall(follow)
                    _read_until_closed(sock)
                    return attempt
            time.sleep(0.05)
        raise AssertionError("the SCP kept refusing the association")

    return peer


def _read_until_closed(sock: socket.socket) -> None:
    try:
        while sock.recv(65536):
            pass
    except (ConnectionResetError, TimeoutError):
        pass


GARBAGE = b"\xde\xad\xbe\xef" * 16
#: (name, does the SCP hold its answer until the DUL read the rest, the peer)
STREAMS = [
    ("release before the answer", True, _before_the_answer(RELEASE_RQ)),
    ("tiny P-DATA before the answer", True, _before_the_answer(p_data(b"\x00"))),
    ("abort before the answer", True, _before_the_answer(ABORT)),
    ("garbage before the answer", True, _before_the_answer(GARBAGE)),
    ("close before the answer", True, _before_the_answer(None)),
    ("garbage after the answer", False, _after_the_answer(GARBAGE)),
    ("release and P-DATA at once after the answer", False, _after_the_answer(RELEASE_RQ + p_data(b"\x00"))),
    ("release and abort at once after the answer", False, _after_the_answer(RELEASE_RQ + ABORT)),
]


@pytest.mark.parametrize(("name", "hold", "peer"), STREAMS, ids=[name for name, _, _ in STREAMS])
def test_a_peer_breaking_the_protocol_leaves_no_connection_counted(
    tmp_path: Path, name: str, hold: bool, peer: Any
) -> None:
    running = RunningSCP(tmp_path / "data", max_associations=MAX_ASSOCIATIONS)
    if hold:
        running.scp.handlers.append((evt.EVT_REQUESTED, hold_the_answer))
        running.scp.handlers.append((evt.EVT_ACCEPTED, let_the_dul_act))
    ended: list[object] = []
    running.scp.arrivals.association_ended = ended.append  # type: ignore[method-assign]
    with running as scp:
        port = scp.settings.node.port
        with ThreadPoolExecutor(MAX_ASSOCIATIONS) as pool:
            connections = sum(pool.map(lambda _: peer(port), range(CONNECTIONS)))
        counts = scp.scp.counts
        wait_until(lambda: counts.slots[counts.slot] == 0, 10, f"no connection counted after: {name}")
        echo = subprocess.run(
            [ECHOSCU, "-aec", "RADROUTER", "127.0.0.1", str(port)],
            capture_output=True,
            env={**os.environ, "TCP_NODELAY": "1"},
            timeout=30,
        )
        assert echo.returncode == 0, echo.stderr
        wait_until(lambda: counts.slots[counts.slot] == 0, 10, "no connection counted after the echo")
        # Every association that started also ended for the assembler (the echo's too).
        wait_until(lambda: len(ended) == connections + 1, 10, "every association ended, once")


def _answer_to(port: int, calling: bytes, source: str = "127.0.0.1") -> bytes:
    """The first PDU the SCP answers an A-ASSOCIATE-RQ from ``calling`` (at ``source``) with."""
    with socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0)) as sock:
        sock.sendall(associate_rq(calling=calling))
        answer = sock.recv(10)
        if answer[:1] == b"\x02":
            sock.sendall(RELEASE_RQ)
            _read_until_closed(sock)
        return answer


def test_the_allow_list_compares_calling_ae_titles_as_sent(tmp_path: Path) -> None:
    """Only trailing spaces are padding (PS3.8 9.3.2): ``MODALITY1\\r\\n`` is not ``MODALITY1``."""
    with RunningSCP(tmp_path / "data", allowed_calling_aes=["MODALITY1"]) as scp:
        port = scp.settings.node.port
        assert _answer_to(port, b"MODALITY1")[:1] == b"\x02"  # padded with spaces to 16 bytes
        for impostor in (b"MODALITY1\r\n", b"MODALITY1\t", b" MODALITY1", b"MODALITY"):
            answer = _answer_to(port, impostor)
            # A-ASSOCIATE-RJ: rejected permanent, by the service user, calling AE title not recognised
            assert answer[:1] == b"\x03" and answer[7:10] == b"\x01\x01\x03", (impostor, answer)
        counts = scp.scp.counts
        wait_until(lambda: counts.slots[counts.slot] == 0, 10, "no connection counted")


def test_an_allow_list_entry_binds_its_title_to_addresses(tmp_path: Path) -> None:
    """``CT01`` may call from 127.0.0.1 only, ``MR01`` from anywhere (127.0.0.2 stands for another host)."""
    allowed = [{"ae_title": "CT01", "hosts": ["127.0.0.1"]}, "MR01"]
    with RunningSCP(tmp_path / "data", allowed_calling_aes=allowed) as scp:
        port = scp.settings.node.port
        assert _answer_to(port, b"CT01")[:1] == b"\x02"
        assert _answer_to(port, b"MR01", source="127.0.0.2")[:1] == b"\x02"
        refused = _answer_to(port, b"CT01", source="127.0.0.2")
        assert refused[:1] == b"\x03" and refused[7:10] == b"\x01\x01\x03", refused
        counts = scp.scp.counts
        wait_until(lambda: counts.slots[counts.slot] == 0, 10, "no connection counted")
