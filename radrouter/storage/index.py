"""The index: what was received, how it was routed, what was computed and where it was delivered.

SQLAlchemy ORM over SQLite (the embedded default, in WAL mode so the SCP, workers and web app can
share it) or PostgreSQL. Only UIDs, codes and timings are kept here: no patient names or IDs, except
in ``pseudonyms``, the mapping that re-identifies what comes back from external destinations.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Enum,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
    create_engine,
    event,
    select,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker

from radrouter.config.rules import Priority
from radrouter.storage.migrate import ensure_current, upgrade

log = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def utc_iso(moment: datetime | None) -> str | None:
    """How the API and exports write a stored (naive UTC) time: ISO 8601 with a Z."""
    return moment.isoformat() + "Z" if moment else None


class StudyState(enum.StrEnum):
    RECEIVING = "RECEIVING"
    COMPLETE = "COMPLETE"
    ROUTED = "ROUTED"
    PROCESSING = "PROCESSING"
    DONE = "DONE"
    FAILED = "FAILED"


class JobState(enum.StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    DONE = "DONE"
    FAILED = "FAILED"


class DeliveryState(enum.StrEnum):
    PENDING = "PENDING"
    DELIVERED = "DELIVERED"
    FAILED = "FAILED"


class Hop(enum.StrEnum):
    """The steps of a study's path that the audit trail records."""

    RECEIVED = "received"
    COMPLETE = "complete"
    ROUTED = "routed"
    QUEUED = "queued"
    INFERENCE_STARTED = "inference_started"
    INFERRED = "inferred"
    INFERENCE_FAILED = "inference_failed"
    DELIVERY_ATTEMPT = "delivery_attempt"
    DELIVERED = "delivered"
    DELIVERY_FAILED = "delivery_failed"
    TRIAGED = "triaged"
    READ = "read"
    HL7_ATTEMPT = "hl7_attempt"
    HL7_ACKED = "hl7_acked"
    HL7_FAILED = "hl7_failed"
    RECOVERED = "recovered"
    DELIVERY_RETRY = "delivery_retry"
    PURGED = "purged"
    INCOMPLETE = "incomplete"  # completed without instances its MPPS listed (after the grace)
    #: An instance offered over STOW-RS or C-STORE and refused (forged result, another patient's).
    STORE_REFUSED = "store_refused"
    #: A SOP Instance UID sent again with another patient or study: kept apart, replaced or refused.
    RESENT = "resent"


class ResultKind(enum.StrEnum):
    """What a job wrote: a DICOM-SEG, the TID 1500 SR that reports on it, and for SEG-blind viewers
    key images (Secondary Capture) with the Key Object Selection that flags them; values are the
    objects' modalities."""

    SEG = "SEG"
    SR = "SR"
    KEY_IMAGE = "SC"
    KEY_OBJECTS = "KO"


class Verdict(enum.StrEnum):
    """A radiologist's word on an AI result."""

    AGREE = "agree"
    DISAGREE = "disagree"


class MessageKind(enum.StrEnum):
    """The HL7 v2 messages sent to the RIS: results, and a raised reading priority."""

    ORU = "ORU^R01"
    OMI = "OMI^O23"


class PseudonymKind(enum.StrEnum):
    PATIENT = "patient"
    STUDY = "study"
    UID = "uid"


def coded(values: type[enum.StrEnum]) -> Enum:
    """A column of coded values, stored as the values themselves (the text these columns held before
    they were enums, so existing rows and reports read the same)."""
    return Enum(values, values_callable=lambda kinds: [kind.value for kind in kinds])


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON}


class Study(Base):
    __tablename__ = "studies"

    uid: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[StudyState] = mapped_column(Enum(StudyState), default=StudyState.RECEIVING)
    reason: Mapped[str | None] = mapped_column(String(500))
    calling_ae: Mapped[str | None] = mapped_column(String(16))
    first_received_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_received_at: Mapped[datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[datetime | None]
    revision: Mapped[int] = mapped_column(Integer, default=0)
    sent_as_high_priority: Mapped[bool] = mapped_column(default=False)
    #: The SCP start that received the last instance: if it dies, another completes the study.
    receiver: Mapped[str | None] = mapped_column(String(32))
    #: When the study last became DONE or FAILED: the retention clocks start here.
    settled_at: Mapped[datetime | None]
    #: Set while a purge of its instances (or results) runs (index first, then files, then rows): a
    #: purge a crash interrupted is finished by the next pass (storage/retention.py).
    purging_images_since: Mapped[datetime | None]
    purging_results_since: Mapped[datetime | None]
    #: When its received instances, and its results, were last purged (the study row stays).
    images_purged_at: Mapped[datetime | None]
    results_purged_at: Mapped[datetime | None]
    #: The longest ``retention:`` of the rules that matched it when it was last routed, in hours;
    #: None: ``retention.keep_images_h`` (``keep_results_h``) applies.
    keep_images_h: Mapped[float | None]
    keep_results_h: Mapped[float | None]
    #: Set while an erasure on request removes the study (mark, files, rows; the row goes last): an
    #: erasure a crash interrupted is finished by the next ``radrouter erase`` or SCP start.
    erasure_id: Mapped[int | None] = mapped_column(Integer, index=True)

    series: Mapped[list[Series]] = relationship(back_populates="study", order_by="Series.series_number")
    jobs: Mapped[list[Job]] = relationship(back_populates="study", order_by="Job.id")
    forwards: Mapped[list[Delivery]] = relationship(order_by="Delivery.id")
    events: Mapped[list[AuditEvent]] = relationship(order_by="AuditEvent.id")


class Series(Base):
    __tablename__ = "series"

    uid: Mapped[str] = mapped_column(String(64), primary_key=True)
    study_uid: Mapped[str] = mapped_column(ForeignKey("studies.uid"), index=True)
    modality: Mapped[str | None] = mapped_column(String(16))
    series_number: Mapped[int | None]
    description: Mapped[str | None] = mapped_column(String(64))
    calling_ae: Mapped[str | None] = mapped_column(String(16))
    called_ae: Mapped[str | None] = mapped_column(String(16))

    study: Mapped[Study] = relationship(back_populates="series")
    instances: Mapped[list[Instance]] = relationship(back_populates="series", order_by="Instance.path")


class Instance(Base):
    __tablename__ = "instances"

    sop_uid: Mapped[str] = mapped_column(String(64), primary_key=True)
    series_uid: Mapped[str] = mapped_column(ForeignKey("series.uid"), index=True)
    sop_class_uid: Mapped[str] = mapped_column(String(64))
    transfer_syntax_uid: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(String(400))
    size: Mapped[int]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: The slice header a worker reads instead of the file's (``storage.slices``), and the offset of
    #: the Pixel Data element in the file; both None where the worker reads the file whole.
    slice_header: Mapped[bytes | None] = mapped_column(LargeBinary)
    pixel_data_at: Mapped[int | None] = mapped_column(BigInteger)

    series: Mapped[Series] = relationship(back_populates="instances")


class ResentInstance(Base):
    """A copy of an instance sent again with another patient or study and kept apart from the first
    (``storage.conflicting_resend: keep_first``): on disk under ``<root>/resent/`` and recorded here,
    so it is never an unindexed file; the first copy stays as it was."""

    __tablename__ = "resent_instances"

    id: Mapped[int] = mapped_column(primary_key=True)
    sop_uid: Mapped[str] = mapped_column(String(64), index=True)
    study_uid: Mapped[str] = mapped_column(String(64), index=True)
    series_uid: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(String(400))
    size: Mapped[int] = mapped_column(BigInteger)
    calling_ae: Mapped[str | None] = mapped_column(String(16))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class Job(Base):
    """One pipeline run on one series of one study revision (the unit Celery computes)."""

    __tablename__ = "jobs"
    __table_args__ = (UniqueConstraint("series_uid", "pipeline", "revision"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_uid: Mapped[str] = mapped_column(ForeignKey("studies.uid"), index=True)
    series_uid: Mapped[str] = mapped_column(ForeignKey("series.uid"))
    pipeline: Mapped[str] = mapped_column(String(64))
    revision: Mapped[int] = mapped_column(Integer, default=0)
    priority: Mapped[Priority] = mapped_column(coded(Priority))
    rule: Mapped[str] = mapped_column(String(100))
    destinations: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state: Mapped[JobState] = mapped_column(Enum(JobState), default=JobState.QUEUED)
    error: Mapped[str | None] = mapped_column(String(1000))
    queued_at: Mapped[datetime] = mapped_column(default=utcnow)
    dispatched_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    timings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    #: What the results do not carry as the source had it: ``{"attribute", "rule", "reason"}`` per
    #: attribute, never the value (see inference/results/sanitise.py).
    repairs: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    #: When the job's triage and monitoring tasks were last sent, and when they recorded their work: a
    #: task sent but never recorded (it died with its worker) is sent again, not left to the visibility
    #: timeout.
    aftercare_sent_at: Mapped[datetime | None]
    triaged_at: Mapped[datetime | None]
    #: How many times the job's worker was lost while it ran (see ``inference.max_worker_losses``).
    worker_losses: Mapped[int] = mapped_column(Integer, default=0)
    monitored_at: Mapped[datetime | None]
    #: The worker (Celery name) and the start of it (one per process) that took the job: a worker that
    #: starts again finds the jobs its previous start left RUNNING and queues them at once.
    worker: Mapped[str | None] = mapped_column(String(200))
    incarnation: Mapped[str | None] = mapped_column(String(32))

    study: Mapped[Study] = relationship(back_populates="jobs")
    results: Mapped[list[Result]] = relationship(back_populates="job", order_by="Result.id")


class Result(Base):
    """A DICOM object a job wrote (SEG, SR), with an optional stand-in for peers that refuse its class."""

    __tablename__ = "results"

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    kind: Mapped[ResultKind] = mapped_column(coded(ResultKind))
    sop_uid: Mapped[str] = mapped_column(String(64), unique=True)
    sop_class_uid: Mapped[str] = mapped_column(String(64))
    series_uid: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(String(400))
    fallback_path: Mapped[str | None] = mapped_column(String(400))
    summary: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: When its files were deleted by retention: the row stays (deliveries, feedback refer to it),
    #: ``path`` then names a file that is gone on purpose.
    purged_at: Mapped[datetime | None]

    job: Mapped[Job] = relationship(back_populates="results")
    deliveries: Mapped[list[Delivery]] = relationship(back_populates="result", order_by="Delivery.id")


class SentVariant(enum.StrEnum):
    """Which of a result's two versions went: the object itself, or its stand-in (a BINARY SEG for a
    destination that refuses Label Map SEG, and the SR that references that stand-in)."""

    PRIMARY = "primary"
    STAND_IN = "stand-in"


class DeliveryKind(enum.StrEnum):
    RESULT = "result"
    ORIGINAL = "original"


class Delivery(Base):
    """One result, or one series of originals (forwarded as received), going to one destination."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("result_id", "destination"),
        UniqueConstraint("series_uid", "revision", "destination"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[DeliveryKind] = mapped_column(Enum(DeliveryKind), default=DeliveryKind.RESULT)
    result_id: Mapped[int | None] = mapped_column(ForeignKey("results.id"), index=True)
    study_uid: Mapped[str | None] = mapped_column(ForeignKey("studies.uid"), index=True)
    series_uid: Mapped[str | None] = mapped_column(String(64))
    revision: Mapped[int | None] = mapped_column(Integer)
    rule: Mapped[str | None] = mapped_column(String(100))
    destination: Mapped[str] = mapped_column(String(64))
    state: Mapped[DeliveryState] = mapped_column(Enum(DeliveryState), default=DeliveryState.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(1000))
    sent_sop_class_uid: Mapped[str | None] = mapped_column(String(64))
    #: For a result with a stand-in: which version the destination received (None: forwarded originals).
    sent_variant: Mapped[SentVariant | None] = mapped_column(coded(SentVariant))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: Start of the current round of attempts; past ``delivery.dead_letter_after_s`` it is dead-lettered.
    pending_since: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None]
    #: When it was handed to the broker; None: recorded but never sent (the broker was down), so the
    #: reconciler sends it.
    dispatched_at: Mapped[datetime | None]
    #: The worker and the start of it that made the last attempt (its retry waits in that worker).
    worker: Mapped[str | None] = mapped_column(String(200))
    incarnation: Mapped[str | None] = mapped_column(String(32))

    result: Mapped[Result | None] = relationship(back_populates="deliveries")

    @property
    def owning_study_uid(self) -> str:
        """Originals name their study; a result's study comes through its job."""
        if self.study_uid is not None:
            return self.study_uid
        assert self.result is not None, "a delivery is of a result or of a series"
        return self.result.job.study_uid


class AuditEvent(Base):
    """One hop of one study: when, what, and details made of UIDs and figures only."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_uid: Mapped[str] = mapped_column(ForeignKey("studies.uid"), index=True)
    hop: Mapped[Hop] = mapped_column(Enum(Hop))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class ErasureScope(enum.StrEnum):
    PATIENT = "patient"
    STUDY = "study"


class Erasure(Base):
    """One erasure on request (``radrouter erase``): when, who asked, what went; never which patient
    or study (the audit keeps the fact, not the identifiers)."""

    __tablename__ = "erasures"

    id: Mapped[int] = mapped_column(primary_key=True)
    scope: Mapped[ErasureScope] = mapped_column(coded(ErasureScope))
    requested_by: Mapped[str] = mapped_column(String(100))
    forced: Mapped[bool] = mapped_column(default=False)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: None while its files and rows are being removed (or a crash interrupted it).
    finished_at: Mapped[datetime | None]
    studies: Mapped[int] = mapped_column(Integer, default=0)
    instances: Mapped[int] = mapped_column(Integer, default=0)
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    results: Mapped[int] = mapped_column(Integer, default=0)
    pseudonyms: Mapped[int] = mapped_column(Integer, default=0)


class Pseudonym(Base):
    """A pseudonym radrouter issued to an external destination, and what it stands for.

    ``identity`` holds the original patient (or study) attributes that re-identification restores.
    """

    __tablename__ = "pseudonyms"

    pseudonym: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[PseudonymKind] = mapped_column(coded(PseudonymKind))
    original: Mapped[str] = mapped_column(String(64))
    identity: Mapped[dict[str, Any]] = mapped_column(default=dict)
    issued_at: Mapped[datetime] = mapped_column(default=utcnow)


class WorklistItem(Base):
    """A complete study on the reading list: its priority class, why, and whether it was read."""

    __tablename__ = "worklist_items"

    study_uid: Mapped[str] = mapped_column(ForeignKey("studies.uid"), primary_key=True)
    priority: Mapped[Priority] = mapped_column(coded(Priority))
    base_priority: Mapped[Priority] = mapped_column(coded(Priority))
    reason: Mapped[str | None] = mapped_column(String(200))
    finding: Mapped[str | None] = mapped_column(String(200))
    arrived_at: Mapped[datetime] = mapped_column(default=utcnow)
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    read_at: Mapped[datetime | None] = mapped_column(index=True)
    verdict: Mapped[Verdict | None] = mapped_column(coded(Verdict))

    changes: Mapped[list[PriorityChange]] = relationship(order_by="PriorityChange.id")


class PriorityChange(Base):
    """One change of a study's reading priority, with its reason and the rule or header that caused it."""

    __tablename__ = "priority_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_uid: Mapped[str] = mapped_column(ForeignKey("worklist_items.study_uid"), index=True)
    old_priority: Mapped[Priority | None] = mapped_column(coded(Priority))
    new_priority: Mapped[Priority] = mapped_column(coded(Priority))
    source: Mapped[str] = mapped_column(String(16))
    rule: Mapped[str | None] = mapped_column(String(100))
    reason: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(default=utcnow)


class Hl7Message(Base):
    """One HL7 v2 message to the RIS (results or a priority update), with every attempt counted.

    The message text is built when sent, from the stored files: the index keeps no patient IDs.
    """

    __tablename__ = "hl7_messages"
    __table_args__ = (UniqueConstraint("job_id", "kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_uid: Mapped[str] = mapped_column(ForeignKey("studies.uid"), index=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"))
    kind: Mapped[MessageKind] = mapped_column(coded(MessageKind))
    control_id: Mapped[str] = mapped_column(String(20), unique=True)
    state: Mapped[DeliveryState] = mapped_column(Enum(DeliveryState), default=DeliveryState.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    ack_code: Mapped[str | None] = mapped_column(String(2))
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    acked_at: Mapped[datetime | None]


class MonitoredResult(Base):
    """One pipeline result as a point of its monitoring time series, with the kind of input it had."""

    __tablename__ = "monitored_results"

    id: Mapped[int] = mapped_column(primary_key=True)
    result_id: Mapped[int] = mapped_column(ForeignKey("results.id"), unique=True)
    study_uid: Mapped[str] = mapped_column(String(64))
    pipeline: Mapped[str] = mapped_column(String(64), index=True)
    version: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(index=True)
    manufacturer: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(64))
    slice_thickness: Mapped[str] = mapped_column(String(16))
    protocol: Mapped[str] = mapped_column(String(64))
    summary: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Feedback(Base):
    """A radiologist's verdict on a result (optionally a corrected value), with the model version judged."""

    __tablename__ = "feedback"

    id: Mapped[int] = mapped_column(primary_key=True)
    result_id: Mapped[int] = mapped_column(ForeignKey("results.id"), index=True)
    pipeline: Mapped[str] = mapped_column(String(64), index=True)
    version: Mapped[str] = mapped_column(String(64))
    verdict: Mapped[Verdict] = mapped_column(coded(Verdict))
    item: Mapped[str | None] = mapped_column(String(100))
    corrected_value: Mapped[float | None]
    source: Mapped[str] = mapped_column(String(16))
    author: Mapped[str | None] = mapped_column(String(100))
    at: Mapped[datetime] = mapped_column(default=utcnow)


class DriftAlert(Base):
    """A statistic of a pipeline that stayed outside its baseline's control limits; open until it returns."""

    __tablename__ = "drift_alerts"

    id: Mapped[int] = mapped_column(primary_key=True)
    pipeline: Mapped[str] = mapped_column(String(64), index=True)
    statistic: Mapped[str] = mapped_column(String(200))
    since: Mapped[datetime]
    raised_at: Mapped[datetime]
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    cleared_at: Mapped[datetime | None] = mapped_column(index=True)
    notified: Mapped[bool] = mapped_column(default=False)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


class Index:
    """Opens the database (at the newest schema revision) and hands out short transactions."""

    def __init__(self, url: str, migrate: bool = False) -> None:
        """``migrate``: bring the schema to the newest revision (the one process that sets up a node)."""
        self.engine: Engine = create_engine(url, pool_pre_ping=True)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
            if self.engine.url.database not in (None, "", ":memory:"):
                Path(self.engine.url.database).parent.mkdir(parents=True, exist_ok=True)
        if migrate:
            upgrade(self.engine)
        else:
            ensure_current(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction that commits on success and rolls back on error."""
        with self._sessions.begin() as session:
            yield session

    def record_event(self, session: Session, study_uid: str, hop: Hop, **detail: Any) -> None:
        """Record one hop in the audit trail, and log it (UIDs and figures only) with its study UID."""
        session.add(AuditEvent(study_uid=study_uid, hop=hop, detail=detail))
        log.info("%s %s", hop.value, detail, extra={"study_uid": study_uid})


def settle_study(session: Session, study_uid: str) -> None:
    """Move a study to DONE or FAILED once every job of its revision and every delivery has ended.

    The study's row is locked first, and what this session had loaded is read again: two deliveries of
    one study ending at once on PostgreSQL would otherwise each see the other still PENDING (read
    committed) and neither settle the study."""
    session.flush()
    study = session.scalars(select(Study).where(Study.uid == study_uid).with_for_update()).one_or_none()
    session.expire_all()
    if study is None or study.state not in (StudyState.ROUTED, StudyState.PROCESSING):
        return
    jobs = [job for job in study.jobs if job.revision == study.revision]
    if any(job.state in (JobState.QUEUED, JobState.RUNNING) for job in jobs):
        return
    deliveries = [d for job in jobs for result in job.results for d in result.deliveries]
    deliveries += [d for d in study.forwards if d.revision == study.revision]
    if any(d.state == DeliveryState.PENDING for d in deliveries):
        return
    failed = [job for job in jobs if job.state == JobState.FAILED]
    undelivered = [d for d in deliveries if d.state == DeliveryState.FAILED]
    study.settled_at = utcnow()
    if failed or undelivered:
        study.state = StudyState.FAILED
        study.reason = (
            f"{len(failed)} job(s) failed" if failed else f"{len(undelivered)} delivery(ies) failed"
        )
    else:
        study.state, study.reason = StudyState.DONE, None
