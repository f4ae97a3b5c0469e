"""Study completion shared by several SCP nodes: the assembler of a cluster (``cluster.enabled``).

Every node records its arrivals in the index's ledger (:mod:`radrouter.storage.arrivals`), in a batch
every ``cluster.flush_interval_s`` from a thread of its own, so no C-STORE waits on it; the node that
holds the sweeper's lease decides, on all nodes' arrivals, with the in-memory assembler's rules, and
calls the same ``on_complete`` / ``on_series_complete``. A study whose associations ran on two nodes
completes once; the router's revision check and the index's unique keys make a second call a no-op.

A study's MPPS (kept in the index, :mod:`radrouter.storage.steps`, whichever node received them) rule
its completion here as in the single node's assembler: a step IN PROGRESS holds it, ended steps
complete it once the last listed instance is indexed, or after ``completion.mpps_grace_s``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from radrouter.config.settings import Settings
from radrouter.logs import study as study_context
from radrouter.storage.arrivals import (
    ArrivalBatch,
    Quiet,
    end_associations,
    forget,
    heartbeat,
    hold_lease,
    prune,
    quiet,
)
from radrouter.storage.arrivals import tracked_studies as ledger_studies
from radrouter.storage.arrivals import write_batch as write_ledger
from radrouter.storage.index import Index, utcnow
from radrouter.storage.steps import StepBook

log = logging.getLogger(__name__)

#: The lease whose holder sweeps the ledger (and runs the reconciler's passes).
SWEEPER = "sweeper"
#: Seconds between prunes of associations no arrival names any more.
_PRUNE_EVERY_S = 60.0


class SharedStudyAssembler:
    """An :class:`~radrouter.router.assemble.ArrivalSink` writing to the shared ledger, and the sweep."""

    def __init__(
        self,
        settings: Settings,
        index: Index,
        incarnation: str,
        on_complete: Callable[[str], None],
        on_series_complete: Callable[[str, str], None] | None = None,
        steps: StepBook | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.index = index
        self.incarnation = incarnation
        self.name = settings.cluster.resolved_node_name()
        self._on_complete = on_complete
        self._on_series_complete = on_series_complete
        self._steps = steps
        self._clock = clock
        self._lock = threading.Lock()
        self._batch = ArrivalBatch()
        self._stop = threading.Event()
        self._steps_changed = threading.Event()
        self._leading = False
        #: The lease lasts ``node_timeout_s`` and is renewed every fifth of it, like the heartbeat.
        self._lease_s = settings.cluster.node_timeout_s
        self._renew_every_s = self._lease_s / 5
        self._renewed_at = clock()
        self._threads = [
            threading.Thread(target=self._write, name="ledger-writer", daemon=True),
            threading.Thread(target=self._sweep, name="ledger-sweeper", daemon=True),
        ]

    def beat(self) -> None:
        """Say this node is alive (the first beat registers it, before any arrival is written)."""
        heartbeat(self.index, self.incarnation, self.name, self._clock())

    def start(self) -> None:
        self.beat()
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Write what is left, and end the associations the stopped receivers held."""
        self._stop.set()
        self._steps_changed.set()
        for thread in self._threads:
            if thread.ident is not None:
                thread.join(timeout=10)
        try:
            end_associations(self.index, self.incarnation, self._clock())
        except Exception as error:  # they end when the heartbeat is found stale
            log.error("associations not ended in the ledger (%s)", type(error).__name__)

    def instance_received(
        self, study_uid: str, association: str, series_uid: str | None = None, sop_uid: str | None = None
    ) -> None:
        with self._lock:
            series = series_uid if self._on_series_complete is not None else None
            self._batch.instance(study_uid, series, association, self._clock())

    def association_ended(self, association: str) -> None:
        with self._lock:
            self._batch.ended[association] = self._clock()

    def steps_changed(self, study_uid: str) -> None:
        """An MPPS of the study started or ended (it is in the index already): sweep now, not later."""
        self._steps_changed.set()

    def pending(self) -> list[str]:
        """Studies the ledger still waits on, whichever node received them."""
        return ledger_studies(self.index)

    def leading(self) -> bool:
        """Whether this node held the sweeper's lease at its last try."""
        return self._leading

    def flush(self) -> None:
        """Write what arrived since the last write (one transaction); kept for the next try on error."""
        with self._lock:
            batch, self._batch = self._batch, ArrivalBatch()
        if not batch:
            return
        try:
            write_ledger(self.index, self.incarnation, batch)
        except Exception:
            with self._lock:
                batch.absorb(self._batch)
                self._batch = batch
            raise

    def sweep_once(self) -> float:
        """If this node holds the lease: complete what is quiet now, on every node's arrivals.

        Returns the seconds until the next sweep: the earliest deadline, but at most a quarter of
        ``completion.quiet_period_s`` (a study another node just began is due no sooner), or, on a
        node that does not lead, the lease's renewal interval."""
        now = self._clock()
        if not self._leading or (now - self._renewed_at).total_seconds() >= self._renew_every_s:
            self._leading = hold_lease(self.index, SWEEPER, self.incarnation, now, self._lease_s)
            self._renewed_at = now
        if not self._leading:
            return self._renew_every_s
        self._steps_changed.clear()
        sweep = quiet(self.index, self.settings.completion, self.settings.cluster.node_timeout_s, now)
        timed = {done.study_uid: done for done in sweep.studies}
        next_due = self._complete_by_steps(timed, now)
        for done in sweep.series:
            if self._steps is None or self._steps.plan(done.study_uid) is None:  # else left to the study
                assert self._on_series_complete is not None and done.series_uid is not None
                self._call(done, self._on_series_complete, done.study_uid, done.series_uid)
        for done in timed.values():
            self._call(done, self._on_complete, done.study_uid)
        longest = self.settings.completion.quiet_period_s / 4
        dues = [due for due in (sweep.next_due, next_due) if due is not None]
        if not dues:
            return longest
        return min(longest, max((min(dues) - self._clock()).total_seconds(), 0.0))

    def _complete_by_steps(self, timed: dict[str, Quiet], now: datetime) -> datetime | None:
        """Complete the studies whose MPPS say so, and take the studies MPPS hold (or that await their
        grace) out of ``timed``, the studies the timer found quiet; when the next grace ends."""
        if self._steps is None:
            return None
        grace_ends: list[datetime] = []
        held_quiet_s = self.settings.completion.mpps_in_progress_quiet_s
        for study_uid in self._steps.open_studies():
            plan = self._steps.plan(study_uid)
            if plan is None:
                continue
            quiet_since = timed.pop(study_uid, None)
            if plan.held:  # the timer does not complete it, but an instance-less hour does
                if quiet_since is not None and (now - quiet_since.last_seen).total_seconds() >= held_quiet_s:
                    self._call(quiet_since, self._on_complete, study_uid)
                continue
            if plan.missing and plan.grace_left_s > 0:
                grace_ends.append(now + timedelta(seconds=plan.grace_left_s))
                continue
            done = Quiet(study_uid, None, now)
            if plan.route:
                self._call(done, self._on_complete, study_uid)
            else:
                forget(self.index, done)
            self._steps.used(study_uid, plan.missing, plan.route)
        return min(grace_ends) if grace_ends else None

    def _call(self, done: Quiet, callback: Callable[..., None], *args: str) -> None:
        try:
            callback(*args)
        except Exception:
            log.exception("completing study %s failed", done.study_uid, extra=study_context(done.study_uid))
        forget(self.index, done)

    def _write(self) -> None:
        """Flush every ``flush_interval_s``, heartbeat every fifth of ``node_timeout_s``, until stopped."""
        beat_every_s = self.settings.cluster.node_timeout_s / 5
        last_beat = self._clock()
        while True:
            stopping = self._stop.wait(self.settings.cluster.flush_interval_s)
            try:
                self.flush()
                now = self._clock()
                if (now - last_beat).total_seconds() >= beat_every_s:
                    self.beat()
                    last_beat = now
            except Exception as error:
                log.error("the ledger was not written (%s); again shortly", type(error).__name__)
            if stopping:
                return

    def _sweep(self) -> None:
        last_prune = self._clock()
        wait_s = self.settings.cluster.flush_interval_s
        while not self._stop.wait(0):
            self._steps_changed.wait(wait_s)
            try:
                wait_s = self.sweep_once()
                now = self._clock()
                if self._leading and (now - last_prune).total_seconds() >= _PRUNE_EVERY_S:
                    prune(self.index, now, self.settings.cluster.node_timeout_s)
                    last_prune = now
            except Exception as error:
                self._leading, wait_s = False, self._renew_every_s
                log.error("completion sweep failed (%s); again shortly", type(error).__name__)
