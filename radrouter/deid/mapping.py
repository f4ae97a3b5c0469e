"""The re-identification mapping in the index: pseudonyms issued, and what they stand for."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from radrouter.deid.profile import IssuedPseudonym
from radrouter.storage.index import Index, Pseudonym, PseudonymKind


def record_pseudonyms(index: Index, issued: Iterable[IssuedPseudonym]) -> None:
    """Record each pseudonym once (the same original always maps to the same pseudonym)."""
    wanted = {p.pseudonym: p for p in issued}
    for attempt in (1, 2):  # a second worker may record the same pseudonyms at the same moment
        try:
            with index.session() as session:
                known = set(
                    session.scalars(select(Pseudonym.pseudonym).where(Pseudonym.pseudonym.in_(wanted)))
                )
                for value, p in wanted.items():
                    if value not in known:
                        session.add(
                            Pseudonym(pseudonym=value, kind=p.kind, original=p.original, identity=p.identity)
                        )
            return
        except IntegrityError:
            if attempt == 2:
                raise


def find_pseudonyms(index: Index, values: Iterable[str]) -> dict[str, IssuedPseudonym]:
    """The pseudonyms among ``values``, with what each stands for."""
    with index.session() as session:
        rows = session.scalars(select(Pseudonym).where(Pseudonym.pseudonym.in_(set(values))))
        return {
            row.pseudonym: IssuedPseudonym(
                row.pseudonym, PseudonymKind(row.kind), row.original, dict(row.identity)
            )
            for row in rows
        }
