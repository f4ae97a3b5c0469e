"""Heartbeats on the broker: a key per process start, kept alive while the process runs.

A worker's key says its RUNNING jobs are being computed; an SCP's says the studies it is receiving
will be completed by it. A key that expired names a process that is gone (killed, its machine down),
whose work the reconciler then hands on.
"""

from __future__ import annotations

import logging
import threading

import redis

log = logging.getLogger(__name__)

#: The heartbeat name of an SCP (``radrouter scp``, with its receivers).
SCP = "scp"


def heartbeat_key(process: str, incarnation: str) -> str:
    """The key of one start of one process (a Celery worker's name, or ``scp``)."""
    return f"radrouter:heartbeat:{process}:{incarnation}"


def keep_beating(broker_url: str, key: str, lost_after_s: float) -> threading.Event:
    """Set ``key`` (expiring after ``lost_after_s``) every third of that, on a daemon thread, until the
    returned event is set; a broker outage is logged and the next beat tries again."""
    stop = threading.Event()
    every_s = lost_after_s / 3

    def beat() -> None:
        while True:
            try:
                redis.Redis.from_url(broker_url, socket_connect_timeout=2).set(
                    key, "1", px=int(lost_after_s * 1000)
                )
            except redis.RedisError as error:
                log.warning("heartbeat not written (%s); again in %.0f s", type(error).__name__, every_s)
            if stop.wait(every_s):
                return

    threading.Thread(target=beat, name="heartbeat", daemon=True).start()
    return stop


def is_alive(broker: redis.Redis, process: str, incarnation: str) -> bool:
    return bool(broker.exists(heartbeat_key(process, incarnation)))
