"""How the node's SCP processes share one port: the shared socket, the node-wide association limit,
and presentation contexts pynetdicom can copy cheaply for every association."""

from __future__ import annotations

import copy
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any, cast

from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.presentation import PresentationContext
from pynetdicom.transport import RequestHandler, ThreadedAssociationServer

log = logging.getLogger(__name__)

#: How long a busier SCP process leaves a new connection to the others before taking it itself.
_YIELD_TO_IDLER_PROCESS_S = 0.005


class ConnectionCounts:
    """Open connections per SCP process in shared memory; each process writes only its own slot."""

    def __init__(self, slots: Any, slot: int) -> None:
        self.slots = slots
        self.slot = slot
        self._lock = threading.Lock()

    def change(self, delta: int) -> None:
        with self._lock:
            self.slots[self.slot] += delta

    def elsewhere(self) -> int:
        """Connections the node's other SCP processes hold."""
        return int(sum(self.slots)) - int(self.slots[self.slot])

    def busier_than_another(self) -> bool:
        """Whether some other SCP process holds fewer connections than this one."""
        mine = self.slots[self.slot]
        return any(held < mine for slot, held in enumerate(self.slots) if slot != self.slot)


class NodeAE(AE):
    """An AE whose association limit counts the associations of every SCP process of the node.

    pynetdicom rejects an association when its own acceptors outnumber ``maximum_associations``; this
    AE lowers that figure by what the other processes hold.
    """

    def __init__(self, ae_title: str, counts: ConnectionCounts) -> None:
        super().__init__(ae_title=ae_title)
        self.counts = counts
        self._node_limit = 10

    @property
    def maximum_associations(self) -> int:
        return self._node_limit - self.counts.elsewhere()

    @maximum_associations.setter
    def maximum_associations(self, value: int) -> None:
        self._node_limit = value


class AcceptorContexts(list[PresentationContext]):
    """The contexts we accept, which pynetdicom deep-copies for every association.

    With every storage SOP class in every transfer syntax that deep copy takes 0.2 s of CPU per
    association; as UIDs are immutable strings, copying each context and its list of transfer
    syntaxes gives the same independent copies a hundred times faster. The copies are again
    ``AcceptorContexts``: that is how ``negotiation.py`` knows the contexts are our SCP's.
    """

    def __deepcopy__(self, memo: dict[int, Any]) -> AcceptorContexts:
        copies = AcceptorContexts()
        for context in self:
            duplicate = copy.copy(context)
            duplicate._transfer_syntax = list(context._transfer_syntax)
            copies.append(duplicate)
        return copies


class _AssociationToItsEnd(RequestHandler):
    """Runs the association in its own thread, as pynetdicom does, and waits here for its end.

    pynetdicom's handler returns as soon as the association thread has started, so the request's
    thread says nothing about the association's life; waiting for it here makes the end of the
    request thread the end of the association, whatever ended it (a peer that breaks pynetdicom's
    state machine kills its DUL thread, and no ``EVT_CONN_CLOSE`` ever fires).
    """

    server: SharedSocketServer

    def handle(self) -> None:
        assoc = self._create_association()
        try:
            evt.trigger(assoc, evt.EVT_CONN_OPEN, {"address": self.client_address})
            assoc.start()
            assoc.join()
        finally:
            self.server.association_over(assoc)


class SharedSocketServer(ThreadedAssociationServer):
    """An association server on a listening socket that several SCP processes accept from.

    The socket is bound once, before the processes fork, and is non-blocking: the process that loses
    the race for a connection gets ``BlockingIOError`` and goes back to waiting. Every process wakes
    for a new connection; one that holds more connections than another waits a moment first, so the
    associations spread over the processes (and cores) instead of piling on whichever woke first.

    Each accepted connection counts once in the node-wide counts, from its accept to the end of its
    thread (a ``finally``): nothing a peer sends can leave it counted.
    """

    #: Associations left open do not hold up the server's shutdown (pynetdicom's threads are daemons too).
    daemon_threads = True

    def __init__(
        self,
        *args: Any,
        listening_socket: socket.socket | None = None,
        counts: ConnectionCounts | None = None,
        association_ended: Callable[[Association], None] | None = None,
        **kwargs: Any,
    ) -> None:
        self._listening_socket = listening_socket
        self.counts = counts or ConnectionCounts([0], 0)
        self._association_ended = association_ended
        self._counted: set[int] = set()  # ids of the request sockets counted and not yet counted down
        self._counted_lock = threading.Lock()
        kwargs.setdefault("request_handler", _AssociationToItsEnd)
        super().__init__(*args, **kwargs)

    def server_bind(self) -> None:
        if self._listening_socket is None:
            super().server_bind()
            return
        cast(socket.socket, self.socket).close()
        self.socket = self._listening_socket
        self.server_address = self.socket.getsockname()

    def server_activate(self) -> None:
        if self._listening_socket is None:
            super().server_activate()

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        """Accept; a TLS connection's handshake is left to its own thread (``process_request_thread``),
        so a client that never sends its ClientHello holds up nobody else.

        The connection counts from here, not from the association thread's start, so that a burst of
        connections sees each one taken at once.
        """
        if self.counts.busier_than_another():
            time.sleep(_YIELD_TO_IDLER_PROCESS_S)
        client, address = cast(socket.socket, self.socket).accept()
        if self.ssl_context is not None:
            client = self.ssl_context.wrap_socket(client, server_side=True, do_handshake_on_connect=False)
        with self._counted_lock:
            self._counted.add(id(client))
        self.counts.change(+1)
        return client, address

    def process_request(self, request: Any, client_address: Any) -> None:
        """Start the connection's thread; a thread that cannot start does not leave it counted."""
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._count_down(request)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        """The connection's whole life: TLS handshake, association, and the count down at its end."""
        try:
            if isinstance(request, ssl.SSLSocket):
                request.settimeout(self.ae.network_timeout)
                request.do_handshake()
                request.settimeout(None)
            self.finish_request(request, client_address)
        except Exception as error:
            log.warning("connection from %s ended by %s: %s", client_address, type(error).__name__, error)
        finally:
            self.shutdown_request(request)
            self._count_down(request)

    def association_over(self, assoc: Association) -> None:
        """Called once per association, at the end of its thread, however it ended."""
        if self._association_ended is not None:
            self._association_ended(assoc)

    def _count_down(self, request: Any) -> None:
        """Count the connection down, the first time only."""
        with self._counted_lock:
            if id(request) not in self._counted:
                return
            self._counted.discard(id(request))
        self.counts.change(-1)
