"""Fuzz cases for the SCP: real files with mutated datasets, and malformed PDUs over raw sockets.

Shared by the CI tests (a few hundred cases) and ``bench/fuzz.py`` (tens of thousands).
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from hypothesis import strategies as st
from pydicom.filereader import read_file_meta_info
from pynetdicom import AE, Association, _config
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from tests.services import DATA

# Send each file's dataset bytes exactly as they are on disk, without decoding them on our side.
_config.STORE_SEND_CHUNKED_DATASET = True

SOURCES = [
    DATA / "ct-head-philips-phantom-5mm" / "I10",
    DATA / "mr-t1-philips-mprage" / "1301_0001.dcm",
    DATA / "ct-chest-lidc0001-partial" / "-100.000000.dcm",
    DATA / "cxr" / "RG1_J2KI.dcm",
    *sorted((DATA / "ct-abdomen-3slice-with-seg" / "seg").glob("*.dcm"))[:1],
]
#: Statuses that say "not stored" (PS3.4 B.2.3). Not 0xC211, pynetdicom's answer when a handler raises.
FAILURES = {0xA700, 0xA900, 0xC000, 0xC001, 0x0110}


@cache
def split_file(path: Path) -> tuple[bytes, bytes]:
    """(preamble + file meta, dataset) of a Part 10 file, whose meta starts with its group length."""
    data = path.read_bytes()
    assert data[128:132] == b"DICM" and data[132:138] == b"\x02\x00\x00\x00UL"
    (group_length,) = struct.unpack("<I", data[140:144])
    return data[: 144 + group_length], data[144 + group_length :]


@dataclass(frozen=True)
class DatasetCase:
    source: int
    edits: tuple[tuple[float, int], ...]
    cut: float | None

    def build(self) -> tuple[bytes, bytes]:
        """(file meta, mutated dataset): byte edits at relative positions, then an optional cut."""
        meta, body = split_file(SOURCES[self.source])
        mutable = bytearray(body)
        for where, value in self.edits:
            mutable[min(len(mutable) - 1, int(where * len(mutable)))] = value
        if self.cut is not None:
            mutable = mutable[: int(self.cut * len(mutable))]
        return meta, bytes(mutable)


def dataset_cases() -> st.SearchStrategy[DatasetCase]:
    # Edits near the start hit the header (UIDs, lengths, VRs); the rest land anywhere.
    position = st.one_of(st.floats(0, 0.02), st.floats(0, 1))
    return st.builds(
        DatasetCase,
        source=st.integers(0, len(SOURCES) - 1),
        edits=st.lists(st.tuples(position, st.integers(0, 255)), max_size=8).map(tuple),
        cut=st.one_of(st.none(), st.floats(0, 1)),
    )


class Sender:
    """A C-STORE SCU that keeps one association open across cases and opens a new one when it drops."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.ae = AE(ae_title="FUZZER")
        self.ae.acse_timeout = self.ae.dimse_timeout = self.ae.network_timeout = 30
        for source in SOURCES:
            meta = read_file_meta_info(source)
            self.ae.add_requested_context(meta.MediaStorageSOPClassUID, meta.TransferSyntaxUID)
        self.assoc: Association | None = None

    def store(self, path: Path) -> int | None:
        """C-STORE the file's bytes as they are; the status, or None when the SCP answered nothing.

        An association that ended since the last case (its peer aborted it after a bad dataset) is
        noticed only when it fails to carry this one: the case is then sent once more on a new one.
        """
        for _ in range(2):
            if self.assoc is None or not self.assoc.is_established:
                self.assoc = self.ae.associate("127.0.0.1", self.port, ae_title="RADROUTER")
                if not self.assoc.is_established:
                    return None
            status = self.assoc.send_c_store(path)
            if "Status" in status:
                return int(status.Status)
            if self.assoc.is_established:
                return None
        return None

    def close(self) -> None:
        if self.assoc is not None and self.assoc.is_established:
            self.assoc.release()


def echo(port: int) -> bool:
    ae = AE(ae_title="FUZZER")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title="RADROUTER")
    if not assoc.is_established:
        return False
    status = assoc.send_c_echo()
    assoc.release()
    return bool(status) and int(status.Status) == 0


# PDUs (PS3.8 9.3): built by hand on purpose, so they can be wrong in every field.


def _item(item_type: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", item_type, 0, len(payload)) + payload


def associate_rq(called: bytes = b"RADROUTER", calling: bytes = b"FUZZER") -> bytes:
    """A valid A-ASSOCIATE-RQ proposing Verification in Implicit VR Little Endian."""
    context = _item(
        0x20,
        bytes([1, 0, 0, 0]) + _item(0x30, Verification.encode()) + _item(0x40, b"1.2.840.10008.1.2"),
    )
    user = _item(0x50, _item(0x51, struct.pack(">I", 16384)) + _item(0x52, b"1.2.3.4"))
    body = (
        struct.pack(">HH", 1, 0)
        + called.ljust(16)
        + calling.ljust(16)
        + bytes(32)
        + _item(0x10, b"1.2.840.10008.3.1.1.1")
        + context
        + user
    )
    return struct.pack(">BBI", 0x01, 0, len(body)) + body


def p_data(pdv: bytes, context_id: int = 1, control: int = 0x03) -> bytes:
    """A P-DATA-TF with one PDV (control 0x03: last fragment of a command)."""
    item = struct.pack(">IB", len(pdv) + 2, context_id) + bytes([control]) + pdv
    return struct.pack(">BBI", 0x04, 0, len(item)) + item


#: A-RELEASE-RQ and A-ABORT (PS3.8 9.3.6, 9.3.8).
RELEASE_RQ = struct.pack(">BBII", 0x05, 0, 4, 0)
ABORT = struct.pack(">BBIHBB", 0x07, 0, 4, 0, 0, 0)


@dataclass(frozen=True)
class PduCase:
    """``pdu`` on a fresh connection: alone, or after an A-ASSOCIATE-RQ, then after its answer
    (``wait``) or at once, as a peer that does not wait for the SCP would send it."""

    handshake: bool
    pdu: bytes
    wait: bool = True


def _mutated(base: bytes) -> st.SearchStrategy[bytes]:
    def apply(edits: list[tuple[int, int]], cut: int | None) -> bytes:
        data = bytearray(base)
        for where, value in edits:
            data[where % len(data)] = value
        return bytes(data[:cut] if cut is not None else data)

    return st.builds(
        apply,
        st.lists(st.tuples(st.integers(0, 4 * len(base)), st.integers(0, 255)), min_size=1, max_size=6),
        st.one_of(st.none(), st.integers(0, len(base))),
    )


def pdu_cases() -> st.SearchStrategy[PduCase]:
    """Mutated association requests; random PDUs; mutated P-DATA after a real handshake."""
    rq = associate_rq()
    random_pdu = st.builds(
        lambda kind, length, payload: struct.pack(">BBI", kind, 0, length) + payload,
        st.integers(0, 255),
        st.one_of(st.integers(0, 64), st.integers(0, 2**32 - 1)),
        st.binary(max_size=64),
    )
    command = st.binary(max_size=200)
    return st.one_of(
        st.builds(PduCase, st.just(False), _mutated(rq)),
        st.builds(PduCase, st.just(False), random_pdu),
        st.builds(PduCase, st.just(True), random_pdu),
        st.builds(PduCase, st.just(True), command.flatmap(lambda pdv: _mutated(p_data(pdv)))),
        # The association request and what follows in one go, before the SCP has answered it.
        st.builds(PduCase, st.just(True), st.sampled_from([RELEASE_RQ, ABORT]) | random_pdu, st.just(False)),
        st.builds(PduCase, st.just(True), command.map(p_data), st.just(False)),
    )


def send_raw(port: int, case: PduCase, timeout_s: float = 5.0) -> bytes:
    """Send the case over a fresh connection, close our side, and return what the SCP answered."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        if case.handshake and not case.wait:
            sock.sendall(associate_rq() + case.pdu)
        else:
            if case.handshake:
                await_accept(sock)
            sock.sendall(case.pdu)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except (ConnectionResetError, TimeoutError):
            pass
        return answer


def await_accept(sock: socket.socket) -> None:
    """Send a valid A-ASSOCIATE-RQ and read the SCP's A-ASSOCIATE-AC."""
    sock.sendall(associate_rq())
    header = _recv_exactly(sock, 6)
    (length,) = struct.unpack(">I", header[2:6])
    body = _recv_exactly(sock, length)
    if header[:1] != b"\x02":
        raise AssertionError(f"the SCP refused a valid association: {header + body!r}")


def _recv_exactly(sock: socket.socket, length: int) -> bytes:
    data = b""
    while len(data) < length:
        chunk = sock.recv(length - len(data))
        if not chunk:
            break
        data += chunk
    return data
