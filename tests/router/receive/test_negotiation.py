"""The SCP accepts, per presentation context, the sender's first transfer syntax that it supports.

Over 127.0.0.1 with pynetdicom as the sender, so that a pynetdicom upgrade that stops calling
``radrouter.router.receive.negotiation`` fails here; role negotiation and rejections are compared with
pynetdicom's own function.
"""

from __future__ import annotations

from pathlib import Path

from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGLSLossless,
    RLELossless,
)
from pynetdicom import AE, build_context
from pynetdicom.pdu_primitives import SCP_SCU_RoleSelectionNegotiation
from pynetdicom.presentation import PresentationContext, negotiate_as_acceptor
from pynetdicom.sop_class import CTImageStorage, MRImageStorage

from radrouter.router.receive.acceptor import AcceptorContexts
from radrouter.router.receive.negotiation import negotiate_senders_first
from tests.router.receive.test_scp import RunningSCP

NOBODYS_SYNTAX = UID("1.2.826.0.1.3680043.9.9999.1")  # a transfer syntax no one supports
NOBODYS_SOP_CLASS = UID("1.2.826.0.1.3680043.9.9999.2")


def test_each_context_gets_the_senders_first_supported_syntax_never_implicit_over_explicit(
    tmp_path: Path,
) -> None:
    proposals = [
        (MRImageStorage, [RLELossless, ExplicitVRLittleEndian, ImplicitVRLittleEndian]),
        (MRImageStorage, [ImplicitVRLittleEndian, ExplicitVRLittleEndian]),
        (MRImageStorage, [JPEGLSLossless, ImplicitVRLittleEndian]),
        (CTImageStorage, [NOBODYS_SYNTAX]),
        (CTImageStorage, [ImplicitVRLittleEndian]),
    ]
    scu = AE(ae_title="MODALITY")
    for abstract_syntax, transfer_syntaxes in proposals:
        scu.add_requested_context(abstract_syntax, transfer_syntaxes)
    with RunningSCP(tmp_path / "data") as scp:
        assoc = scu.associate("127.0.0.1", scp.settings.node.port, ae_title="RADROUTER")
        try:
            assert assoc.is_established
            accepted = {cx.context_id: cx.transfer_syntax[0] for cx in assoc.accepted_contexts}
            rejected = {cx.context_id: cx.result for cx in assoc.rejected_contexts}
        finally:
            assoc.release()
    assert accepted == {
        1: RLELossless,
        3: ExplicitVRLittleEndian,
        5: JPEGLSLossless,
        9: ImplicitVRLittleEndian,
    }
    assert rejected == {7: 0x04}  # transfer syntaxes not supported


def outcome(
    result: tuple[list[PresentationContext], list[SCP_SCU_RoleSelectionNegotiation]],
) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    contexts, roles = result
    return (
        [
            (cx.context_id, cx.abstract_syntax, cx.result, cx.transfer_syntax, cx.as_scu, cx.as_scp)
            for cx in contexts
        ],
        [(item.sop_class_uid, item.scu_role, item.scp_role) for item in roles],
    )


def test_roles_and_rejections_are_pynetdicoms() -> None:
    """With one transfer syntax proposed per context the choice is pynetdicom's too: compare everything."""
    ours = AcceptorContexts()
    for abstract_syntax, scu_role, scp_role in [
        (MRImageStorage, True, True),
        (CTImageStorage, False, False),  # no role acceptable: a user rejection
        (UID("1.2.840.10008.5.1.4.1.1.7"), None, None),  # default roles
    ]:
        context = build_context(abstract_syntax, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
        context.scu_role, context.scp_role = scu_role, scp_role
        ours.append(context)
    proposed = []
    for context_id, (abstract_syntax, transfer_syntax) in enumerate(
        [
            (MRImageStorage, ImplicitVRLittleEndian),
            (MRImageStorage, ExplicitVRBigEndian),  # not ours
            (CTImageStorage, ExplicitVRLittleEndian),
            (UID("1.2.840.10008.5.1.4.1.1.7"), ExplicitVRLittleEndian),
            (NOBODYS_SOP_CLASS, ExplicitVRLittleEndian),
        ]
    ):
        context = build_context(abstract_syntax, transfer_syntax)
        context.context_id = 2 * context_id + 1
        proposed.append(context)
    roles = {MRImageStorage: (True, False), CTImageStorage: (True, True), NOBODYS_SOP_CLASS: (True, True)}
    senders_first = outcome(negotiate_senders_first(proposed, ours, roles))
    assert senders_first == outcome(negotiate_as_acceptor(proposed, ours, roles))
    assert [result for _, _, result, *_ in senders_first[0]] == [0x00, 0x04, 0x01, 0x00, 0x03]
    assert senders_first[1] == [(MRImageStorage, True, False)]
