"""The transfer syntax our SCP accepts in a presentation context: the sender's own, not ours.

pynetdicom's acceptor (``presentation.negotiate_as_acceptor``) accepts, in each proposed context, the
first of the *acceptor's* transfer syntaxes that the requestor proposed. With every transfer syntax
supported that is Implicit VR Little Endian, so a sender proposing its file's compressed syntax with
uncompressed fallbacks in one context (dcmtk's ``dcmsend`` does by default) has to decompress it, and
private attributes lose their VR. pynetdicom has no setting for this, so :func:`install` replaces the
function where the ACSE calls it (``pynetdicom.acse``) by :func:`negotiate_senders_first`: for the
contexts of our SCP (:class:`AcceptorContexts`) it hands pynetdicom's function, context by context,
our supported context with the requestor's proposals in the requestor's order; everything else
(abstract syntax and role negotiation, rejections, other acceptors in the process) stays pynetdicom's.
``tests/router/receive/test_negotiation.py`` notices if a pynetdicom upgrade no longer calls it.
"""

from __future__ import annotations

import copy
from typing import cast

import pynetdicom.acse
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom.pdu_primitives import SCP_SCU_RoleSelectionNegotiation
from pynetdicom.presentation import PresentationContext, negotiate_as_acceptor

from radrouter.router.receive.acceptor import AcceptorContexts

Roles = dict[UID, tuple[bool | None, bool | None]] | None


def negotiate_senders_first(
    rq_contexts: list[PresentationContext], ac_contexts: list[PresentationContext], roles: Roles = None
) -> tuple[list[PresentationContext], list[SCP_SCU_RoleSelectionNegotiation]]:
    """pynetdicom's negotiation, accepting in each context the first transfer syntax the requestor
    proposes that we support, except Implicit VR Little Endian when Explicit VR Little Endian is
    also proposed."""
    if not isinstance(ac_contexts, AcceptorContexts) or not ac_contexts:
        return negotiate_as_acceptor(rq_contexts, ac_contexts, roles)
    ours = {context.abstract_syntax: context for context in ac_contexts}
    accepted: list[PresentationContext] = []
    replies: dict[UID, SCP_SCU_RoleSelectionNegotiation] = {}
    # Keyed as pynetdicom keys them: one result per context ID and abstract syntax.
    proposed = {(context.context_id, context.abstract_syntax): context for context in rq_contexts}
    for rq_context in proposed.values():
        supported = ours.get(rq_context.abstract_syntax)
        offer = [_in_senders_order(rq_context, supported)] if supported is not None else ac_contexts
        results, role_items = negotiate_as_acceptor([rq_context], offer, roles)
        accepted += results
        replies.update((cast(UID, item.sop_class_uid), item) for item in role_items)
    accepted.sort(key=lambda context: cast(int, context.context_id))
    return accepted, [replies[uid] for uid in sorted(replies)]


def _in_senders_order(proposed: PresentationContext, supported: PresentationContext) -> PresentationContext:
    """Our context for the proposed abstract syntax, with only the proposed transfer syntaxes we
    support, in the requestor's order."""
    syntaxes = [uid for uid in proposed.transfer_syntax if uid in supported.transfer_syntax]
    if ExplicitVRLittleEndian in syntaxes and ImplicitVRLittleEndian in syntaxes:
        syntaxes.remove(ImplicitVRLittleEndian)
    offer = copy.copy(supported)
    offer._transfer_syntax = syntaxes
    return offer


def install() -> None:
    """Have pynetdicom's ACSE negotiate with :func:`negotiate_senders_first` (idempotent)."""
    pynetdicom.acse.negotiate_as_acceptor = negotiate_senders_first  # type: ignore[attr-defined]
