"""How the node's SCP processes share one port: the shared socket, the node-wide association limit,
and presentation contexts pynetdicom can copy cheaply for every association."""

from __future__ import annotations

import copy
import socket
import threading
import time
from typing import Any, cast

from pynetdicom import AE
from pynetdicom.presentation import PresentationContext
from pynetdicom.transport import ThreadedAssociationServer

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


class SharedSocketServer(ThreadedAssociationServer):
    """An association server on a listening socket that several SCP processes accept from.

    The socket is bound once, before the processes fork, and is non-blocking: the process that loses
    the race for a connection gets ``BlockingIOError`` and goes back to waiting. Every process wakes
    for a new connection; one that holds more connections than another waits a moment first, so the
    associations spread over the processes (and cores) instead of piling on whichever woke first.
    """

    def __init__(
        self,
        *args: Any,
        listening_socket: socket.socket | None = None,
        counts: ConnectionCounts | None = None,
        **kwargs: Any,
    ) -> None:
        self._listening_socket = listening_socket
        self.counts = counts or ConnectionCounts([0], 0)
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
        """Accept, then finish the TLS handshake within the network timeout (a silent client holds up
        this process's accept loop no longer than that; the other processes go on accepting).

        The connection counts from here, not from the association thread's start, so that a burst of
        connections sees each one taken at once.
        """
        if self.counts.busier_than_another():
            time.sleep(_YIELD_TO_IDLER_PROCESS_S)
        client, address = cast(socket.socket, self.socket).accept()
        if self.ssl_context is not None:
            client.settimeout(self.ae.network_timeout)
            client = self.ssl_context.wrap_socket(client, server_side=True)
            client.settimeout(None)
        self.counts.change(+1)
        return client, address
