"""Several SCP processes behind one port, all reporting arrivals to the one assembler of the node.

The parent binds the port once and forks ``node.processes`` receivers that accept from that socket,
so both cores take C-STOREs and a slow association stalls only its own thread. Each receiver sends
every arrival over its own pipe to the parent, which runs the assembler and the router: exactly one
place declares studies complete and dispatches them. A receiver that dies is replaced, and the
associations it held end with it (its pipe reads as end of file).
"""

from __future__ import annotations

import ctypes
import gc
import logging
import multiprocessing
import os
import signal
import socket
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from multiprocessing.context import ForkProcess
from multiprocessing.sharedctypes import RawArray
from types import FrameType
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, cast

import pydicom.config
import pynetdicom._config

from radrouter.config.settings import Settings
from radrouter.router.assemble import ArrivalSink, StudyAssembler
from radrouter.router.cluster import SharedStudyAssembler
from radrouter.router.receive.acceptor import ConnectionCounts
from radrouter.router.receive.memory_budget import MemoryBudget
from radrouter.router.receive.scp import StorageSCP
from radrouter.router.receive.spool import spool_in
from radrouter.storage.index import Index
from radrouter.storage.steps import StepBook
from radrouter.storage.store import InstanceStore

if TYPE_CHECKING:
    from radrouter.router.route.study_router import ReadingListEntry

log = logging.getLogger(__name__)

_FORK = multiprocessing.get_context("fork")
_PR_SET_PDEATHSIG = 1
#: Looked up here, in the parent: a dlopen in a child forked while another thread held the loader's
#: lock would wait for ever.
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl


class Assembler(ArrivalSink, Protocol):
    """What the parent feeds arrivals to: the node's own :class:`StudyAssembler`, or, in a cluster,
    the :class:`SharedStudyAssembler` that writes them to the index for the sweeping node."""

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def pending(self) -> list[str]: ...


class InstanceArrived(NamedTuple):
    """A receiver stored and indexed an instance of ``study_uid`` on ``association``."""

    study_uid: str
    association: str
    series_uid: str | None
    sop_uid: str | None


class StepsChanged(NamedTuple):
    """A receiver recorded an MPPS N-CREATE or N-SET of a step of ``study_uid``."""

    study_uid: str


class AssociationEnded(NamedTuple):
    """An association a receiver held was released or aborted."""

    association: str


#: What a receiver sends its parent over the pipe (named tuples: typed, and as cheap to pickle as tuples).
Arrival = InstanceArrived | AssociationEnded | StepsChanged


class PipedArrivals:
    """A receiver's arrival sink: each event is in the pipe to the parent before Success is sent."""

    def __init__(self, pipe: Connection) -> None:
        self._pipe = pipe
        self._lock = threading.Lock()  # one association thread writes at a time

    def instance_received(
        self, study_uid: str, association: str, series_uid: str | None = None, sop_uid: str | None = None
    ) -> None:
        with self._lock:
            self._pipe.send(InstanceArrived(study_uid, association, series_uid, sop_uid))

    def steps_changed(self, study_uid: str) -> None:
        with self._lock:
            self._pipe.send(StepsChanged(study_uid))

    def association_ended(self, association: str) -> None:
        with self._lock:
            self._pipe.send(AssociationEnded(association))


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
    settings: Settings,
    sock: socket.socket,
    pipe: Connection,
    counts: ConnectionCounts,
    budget: MemoryBudget,
    parent: int,
) -> None:
    """One receiver process: its own index connections and AE, on the shared socket."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us with SIGTERM
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _die_with_parent(parent)
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        logging.getLogger("pynetdicom").setLevel(logging.WARNING)  # an INFO line per C-STORE costs 5 %
        # pynetdicom's handlers that describe every PDU and DIMSE message for its debug log cost 8 %
        # of its CPU even when nothing is logged; they are bound to servers made after this.
        pynetdicom._config.LOG_HANDLER_LEVEL = "none"
    # The receiver stores bytes as received and checks the UIDs it uses itself; pydicom's regex check
    # of every value it decodes or encodes (command sets, headers) cost 5 % of its CPU.
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    pydicom.config.settings.writing_validation_mode = pydicom.config.IGNORE
    index = Index(settings.storage.resolved_index_url())
    store = InstanceStore(settings.storage.root, fsync=settings.storage.fsync)
    # Data sets arrive on the store's disk, then are linked into place.
    spool_in(store.root, settings.cluster.resolved_node_name())
    receiver = StorageSCP(settings, store, index, PipedArrivals(pipe), counts, budget)
    # pynetdicom runs gc.collect() every 60 connections, holding the GIL for 0.25 s over the imported
    # modules; frozen, they are left out of every collection.
    gc.freeze()
    receiver.serve(listening_socket=sock)


def _die_with_parent(parent: int) -> None:
    """A receiver must not keep the port, nor answer Success, once the process that completes studies
    is gone: the kernel kills it the moment its parent dies (Linux's PR_SET_PDEATHSIG; receivers are
    forked by the parent's main thread, whose end is what the kernel watches)."""
    if _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
    if os.getppid() != parent:  # it died before the call
        os._exit(0)


class ReceiverPool:
    """The parent: forks the receivers, feeds their arrivals to the assembler, replaces the dead."""

    def __init__(self, settings: Settings, assembler: Assembler, sock: socket.socket) -> None:
        self.settings = settings
        self.assembler = assembler
        self.socket = sock
        self.slots: Any = RawArray("i", settings.node.processes)
        self.held_bytes: Any = RawArray("q", settings.node.processes)  # of the memory budget
        self.receivers: list[ForkProcess | None] = [None] * settings.node.processes
        self._pipes: dict[Connection, set[str]] = {}  # each receiver's pipe → associations it holds
        self._pipes_lock = threading.Lock()
        self._stopping = threading.Event()

    def run(self, started: Callable[[], None] | None = None) -> None:
        """Serve until SIGTERM or SIGINT, then stop the receivers and the assembler.

        ``started`` runs once the receivers are forked: threads it starts (heartbeat, reconciler) are
        not running yet at the first fork, so no receiver inherits a lock one of them held."""
        for slot in range(len(self.receivers)):
            self._start_receiver(slot)
        if started is not None:
            started()
        previous = {sig: signal.signal(sig, self._request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        drain = threading.Thread(target=self._drain, name="arrivals", daemon=True)
        drain.start()
        self.assembler.start()
        try:
            while not self._stopping.wait(0.5):
                self._replace_dead_receivers()
        finally:
            self._stopping.set()
            for receiver in self.receivers:
                if receiver is not None:
                    receiver.terminate()
            for receiver in self.receivers:
                if receiver is not None:
                    receiver.join(timeout=10)
            drain.join(timeout=5)
            self.assembler.stop()
            self.socket.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _start_receiver(self, slot: int) -> None:
        self.slots[slot] = self.held_bytes[slot] = 0  # what a dead receiver held died with it
        counts = ConnectionCounts(self.slots, slot)
        budget = MemoryBudget(self.held_bytes, slot, self.settings.node.memory_budget_mb * 2**20)
        reader, writer = _FORK.Pipe(duplex=False)
        receiver = _FORK.Process(
            target=_receive,
            args=(self.settings, self.socket, writer, counts, budget, os.getpid()),
            name=f"scp-{slot}",
        )
        receiver.start()
        writer.close()  # the receiver holds the only writer, so its death reads as end of file
        with self._pipes_lock:
            self._pipes[reader] = set()
        self.receivers[slot] = receiver

    def _replace_dead_receivers(self) -> None:
        for slot, receiver in enumerate(self.receivers):
            if receiver is not None and not receiver.is_alive():
                log.error("SCP process %s ended (exit %s); starting another", receiver.pid, receiver.exitcode)
                self._start_receiver(slot)

    def _request_stop(self, signum: int, _frame: FrameType | None) -> None:
        self._stopping.set()

    def _drain(self) -> None:
        """Feed every receiver's arrivals to the assembler, until the node stops."""
        while not self._stopping.is_set():
            with self._pipes_lock:
                pipes = list(self._pipes)
            for pipe in wait(pipes, timeout=0.5):
                self._read(cast(Connection, pipe))

    def _read(self, pipe: Connection) -> None:
        held = self._pipes[pipe]
        try:
            arrival: Arrival = pipe.recv()
        except EOFError:  # the receiver died: the associations it held are over
            with self._pipes_lock:
                del self._pipes[pipe]
            pipe.close()
            for association in held:
                self.assembler.association_ended(association)
            return
        match arrival:
            case InstanceArrived(study_uid, association, series_uid, sop_uid):
                held.add(association)
                self.assembler.instance_received(study_uid, association, series_uid, sop_uid)
            case StepsChanged(study_uid):
                self.assembler.steps_changed(study_uid)
            case AssociationEnded(association):
                held.discard(association)
                self.assembler.association_ended(association)


def run_scp(settings: Settings, reading_list: ReadingListEntry, sock: socket.socket) -> None:
    """``radrouter scp``: the receivers, and the assembler routing complete studies, until stopped.

    ``reading_list`` puts each complete study on the radiologists' list (the worklist's own code);
    ``sock``: the DICOM port, bound by the caller first, so a port in use is said before any work."""
    from radrouter.router.dispatch.contract import celery_app
    from radrouter.router.dispatch.heartbeat import SCP, heartbeat_key, keep_beating
    from radrouter.router.dispatch.recovery import start_reconciler
    from radrouter.router.dispatch.worker import process_incarnation
    from radrouter.router.route.study_router import StudyRouter
    from radrouter.storage.consistency import SETTLE_S, reconcile_store
    from radrouter.storage.erasure import resume_erasures
    from radrouter.storage.retention import start_purger

    index = Index(settings.storage.resolved_index_url())
    # Before any receiver runs, so no temp file found is a write still in progress.
    store = InstanceStore(settings.storage.root, fsync=settings.storage.fsync)
    # A cluster's other nodes may be writing to a shared storage root now: their files in progress
    # are young, and left alone.
    reconcile_store(store, index, settle_s=SETTLE_S if settings.cluster.enabled else 0)
    resume_erasures(index, store)  # an erasure a crash interrupted: its studies never come back
    celery = celery_app(settings)
    router = StudyRouter(settings, index, celery, reading_list)
    steps = StepBook(index, settings.completion)
    # Before the receivers fork, so they share this start's identity, which the studies they receive
    # carry and the heartbeat vouches for.
    incarnation = process_incarnation()
    assembler: Assembler
    leading: Callable[[], bool] | None = None
    if settings.cluster.enabled:
        shared = SharedStudyAssembler(settings, index, incarnation, router, router.series_complete, steps)
        assembler, leading = shared, shared.leading
    else:
        assembler = StudyAssembler(settings.completion, router, router.series_complete, steps=steps)
        for study_uid in steps.open_studies():  # held or awaited before this start: still so
            assembler.steps_changed(study_uid)
    stops: list[threading.Event] = []

    def start_threads() -> None:
        key, lost_after_s = heartbeat_key(SCP, incarnation), settings.recovery.scp_lost_after_s
        stops.append(keep_beating(settings.broker.resolved_url(), key, lost_after_s))
        stops.append(start_reconciler(settings, index, celery, router, assembler.pending, leading))
        if settings.retention.enabled:
            # Finishes a purge a crash interrupted, then purges what retention or the watermark allows.
            reserve_bytes = settings.storage.free_space_reserve_mb * 1024 * 1024
            stops.append(start_purger(settings.retention, index, store, reserve_bytes))

    try:
        ReceiverPool(settings, assembler, sock).run(started=start_threads)
    finally:
        for stop in stops:
            stop.set()
