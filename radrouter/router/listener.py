"""Several SCP processes behind one port, all reporting arrivals to the one assembler of the node.

The parent binds the port once and forks ``node.processes`` receivers that accept from that socket,
so both cores take C-STOREs and a slow association stalls only its own thread. Receivers send each
arrival over a pipe to the parent, which runs the assembler and the router: exactly one place
declares studies complete and dispatches them. A receiver that dies is replaced.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
from multiprocessing.context import ForkProcess
from multiprocessing.queues import SimpleQueue
from multiprocessing.sharedctypes import RawArray
from types import FrameType
from typing import Any

from radrouter.config.settings import Settings
from radrouter.router.assembler import StudyAssembler
from radrouter.router.scp import ConnectionCounts, StorageSCP
from radrouter.storage.index import Index, Study, StudyState
from radrouter.storage.store import InstanceStore

log = logging.getLogger(__name__)

_FORK = multiprocessing.get_context("fork")
Arrival = tuple[str, ...]


class QueuedArrivals:
    """A receiver's arrival sink: each event is in the pipe to the parent before Success is sent."""

    def __init__(self, queue: SimpleQueue[Arrival]) -> None:
        self._queue = queue

    def instance_received(self, study_uid: str, association: str) -> None:
        self._queue.put(("instance", study_uid, association))

    def association_ended(self, association: str) -> None:
        self._queue.put(("ended", association))


def listening_socket(host: str, port: int, backlog: int = 128) -> socket.socket:
    """The node's DICOM port, non-blocking so that receivers that lose a connection race go on."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    sock.setblocking(False)
    return sock


def _receive(
    settings: Settings, sock: socket.socket, queue: SimpleQueue[Arrival], counts: ConnectionCounts
) -> None:
    """One receiver process: its own index connections and AE, on the shared socket."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us with SIGTERM
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        logging.getLogger("pynetdicom").setLevel(logging.WARNING)  # an INFO line per C-STORE costs 5 %
    parent = os.getppid()
    threading.Thread(target=_exit_with_parent, args=(parent,), name="parent-watch", daemon=True).start()
    index = Index(settings.storage.resolved_index_url())
    store = InstanceStore(settings.storage.root, fsync=settings.storage.fsync)
    receiver = StorageSCP(settings, store, index, QueuedArrivals(queue), counts)
    # pynetdicom runs gc.collect() every 60 connections, holding the GIL for 0.25 s over the imported
    # modules; frozen, they are left out of every collection.
    gc.freeze()
    receiver.serve(listening_socket=sock)


def _exit_with_parent(parent: int) -> None:
    """A receiver must not keep the port once the process that completes studies is gone."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


class ReceiverPool:
    """The parent: forks the receivers, feeds their arrivals to the assembler, replaces the dead."""

    def __init__(self, settings: Settings, assembler: StudyAssembler) -> None:
        self.settings = settings
        self.assembler = assembler
        self.queue: SimpleQueue[Arrival] = _FORK.SimpleQueue()
        self.slots: Any = RawArray("i", settings.node.processes)
        self.receivers: list[ForkProcess | None] = [None] * settings.node.processes
        self._stopping = threading.Event()

    def run(self, index: Index) -> None:
        """Serve until SIGTERM or SIGINT, then stop the receivers and the assembler."""
        self.socket = listening_socket(self.settings.node.host, self.settings.node.port)
        for slot in range(len(self.receivers)):
            self._start_receiver(slot)
        previous = {sig: signal.signal(sig, self._request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        drain = threading.Thread(target=self._drain, name="arrivals", daemon=True)
        drain.start()
        self.assembler.start()
        self._resume_receiving(index)
        try:
            while not self._stopping.wait(0.5):
                self._replace_dead_receivers()
        finally:
            for receiver in self.receivers:
                if receiver is not None:
                    receiver.terminate()
            for receiver in self.receivers:
                if receiver is not None:
                    receiver.join(timeout=10)
            self.queue.put(("stop",))
            drain.join(timeout=5)
            self.assembler.stop()
            self.socket.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _start_receiver(self, slot: int) -> None:
        self.slots[slot] = 0  # the connections of a dead receiver died with it
        counts = ConnectionCounts(self.slots, slot)
        receiver = _FORK.Process(
            target=_receive, args=(self.settings, self.socket, self.queue, counts), name=f"scp-{slot}"
        )
        receiver.start()
        self.receivers[slot] = receiver

    def _replace_dead_receivers(self) -> None:
        for slot, receiver in enumerate(self.receivers):
            if receiver is not None and not receiver.is_alive():
                log.error("SCP process %s ended (exit %s); starting another", receiver.pid, receiver.exitcode)
                self._start_receiver(slot)

    def _request_stop(self, signum: int, _frame: FrameType | None) -> None:
        self._stopping.set()

    def _drain(self) -> None:
        while True:
            event = self.queue.get()
            if event[0] == "instance":
                self.assembler.instance_received(*event[1:])
            elif event[0] == "ended":
                self.assembler.association_ended(event[1])
            else:
                return

    def _resume_receiving(self, index: Index) -> None:
        """Studies left RECEIVING by a previous run complete after a quiet period, like any other."""
        with index.session() as session:
            waiting = [uid for (uid,) in session.query(Study.uid).filter(Study.state == StudyState.RECEIVING)]
        for study_uid in waiting:
            self.assembler.resume(study_uid)


def run_scp(settings: Settings) -> None:
    """``radrouter scp``: the receivers, and the assembler routing complete studies, until stopped."""
    from radrouter.router.dispatch import StudyRouter, celery_app

    index = Index(settings.storage.resolved_index_url())
    router = StudyRouter(settings, index, celery_app(settings))
    ReceiverPool(settings, StudyAssembler(settings.completion, router)).run(index)
