"""A study settles once its last delivery ends, also when two deliveries end at once on PostgreSQL."""

from __future__ import annotations

import threading

from radrouter.config.rules import Priority
from radrouter.storage.index import (
    Delivery,
    DeliveryState,
    Index,
    Job,
    JobState,
    Result,
    ResultKind,
    Series,
    Study,
    StudyState,
    settle_study,
)
from tests.services import PostgreSQL


def test_two_deliveries_ending_at_once_settle_their_study(postgres: PostgreSQL) -> None:
    """Each delivery's transaction marks its own delivery and settles: the first, not yet committed,
    holds the study's row, so the second reads the first's DELIVERED once it commits, not PENDING."""
    index = Index(postgres.create_database(), migrate=True)
    with index.session() as session:
        session.add(Study(uid="1.5", state=StudyState.PROCESSING))
        session.flush()
        session.add(Series(uid="1.5.1", study_uid="1.5"))
        session.flush()
        job = Job(
            study_uid="1.5", series_uid="1.5.1", pipeline="p", priority=Priority.ROUTINE, rule="r",
            state=JobState.DONE,
        )  # fmt: skip
        session.add(job)
        session.flush()
        deliveries = []
        for kind, sop in ((ResultKind.SEG, "1.5.9"), (ResultKind.SR, "1.5.8")):
            result = Result(
                job_id=job.id, kind=kind, sop_uid=sop, sop_class_uid="1", series_uid=sop, path="x"
            )
            session.add(result)
            session.flush()
            delivery = Delivery(result_id=result.id, destination="pacs")
            session.add(delivery)
            session.flush()
            deliveries.append(delivery.id)

    first = index.session()
    second_done = threading.Event()

    def second_delivery() -> None:
        with index.session() as session:
            delivery = session.get(Delivery, deliveries[1])
            assert delivery is not None
            delivery.state = DeliveryState.DELIVERED
            settle_study(session, "1.5")  # waits here for the first transaction's lock
        second_done.set()

    with first as session:
        delivery = session.get(Delivery, deliveries[0])
        assert delivery is not None
        delivery.state = DeliveryState.DELIVERED
        settle_study(session, "1.5")  # the second delivery is still PENDING: nothing to settle yet
        second = threading.Thread(target=second_delivery)
        second.start()
        assert not second_done.wait(1.0), "the second settled without waiting for the first"
    second.join(timeout=30)
    assert second_done.is_set()
    with index.session() as session:
        study = session.get(Study, "1.5")
        assert study is not None and study.state == StudyState.DONE
