"""Is the node healthy: the checks ``/api/health`` answers and the dashboard shows at the top.

The index and the broker are asked, the node's own SCP gets a real C-ECHO, the supervisor's status
file says how each process stands, and each destination is judged by its last day of deliveries.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import redis
from sqlalchemy import case, func, select, text

from radrouter.config.settings import Settings
from radrouter.storage.index import Delivery, DeliveryState, Index, utc_iso, utcnow
from radrouter.storage.node_status import read_node_status


def node_checks(settings: Settings, index: Index, echo_scp: Callable[[], str]) -> dict[str, str]:
    """``ok`` or what went wrong, for the index, the broker, the SCP and (under ``up``) the processes."""
    checks: dict[str, str] = {}
    try:
        with index.session() as session:
            session.execute(text("SELECT 1"))
        checks["index"] = "ok"
    except Exception as error:
        checks["index"] = f"error: {type(error).__name__}"
    try:
        redis.Redis.from_url(settings.broker.resolved_url(), socket_connect_timeout=1).ping()
        checks["broker"] = "ok"
    except redis.RedisError as error:
        checks["broker"] = f"error: {type(error).__name__}"
    checks["scp"] = echo_scp()  # a real C-ECHO to our own port: a process that runs may not answer
    supervised = read_node_status(settings.storage.root)
    if supervised is not None:  # under `radrouter up`: is every one of its processes running?
        checks["processes"] = supervised.summary()
    return checks


@dataclass(frozen=True)
class DestinationHealth:
    """One destination over the last day: delivered, waiting, dead-lettered, and when it last took one."""

    name: str
    address: str
    delivered: int
    pending: int
    failed: int
    last_delivered_at: str | None

    @property
    def healthy(self) -> bool:
        return self.failed == 0


def destination_health(settings: Settings, index: Index) -> list[DestinationHealth]:
    since = utcnow() - timedelta(days=1)

    def count(state: DeliveryState) -> Any:
        return func.sum(case((Delivery.state == state, 1), else_=0))

    query = (
        select(
            Delivery.destination,
            count(DeliveryState.DELIVERED),
            count(DeliveryState.PENDING),
            count(DeliveryState.FAILED),
            func.max(Delivery.delivered_at),
        )
        .where(Delivery.created_at >= since)
        .group_by(Delivery.destination)
    )
    with index.session() as session:
        rows = {name: row for name, *row in session.execute(query)}
    health = []
    for name, peer in sorted(settings.destinations.items()):
        delivered, pending, failed, last = rows.get(name, (0, 0, 0, None))
        health.append(
            DestinationHealth(
                name=name,
                address=f"{peer.ae_title}@{peer.host}:{peer.port}",
                delivered=int(delivered or 0),
                pending=int(pending or 0),
                failed=int(failed or 0),
                last_delivered_at=utc_iso(last),
            )
        )
    return health
