"""Drift alerts on a synthetic series whose mean shifts on a known day, walked through with a clock."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from radrouter.config.settings import Settings
from radrouter.monitoring.drift import Chart, Sample, Windows, drift
from radrouter.monitoring.service import Monitor
from radrouter.storage.index import Index
from tests.monitoring.conftest import add_result
from tests.services import free_port

START = date(2026, 1, 1)
SHIFT_DAY = START + timedelta(days=40)
#: Ten results a day whose mean is exactly 1000 mL: no day before the shift can leave the limits.
OFFSETS = (-50, 50, -40, 40, -30, 30, -20, 20, -10, 10)


class Webhook:
    """A real HTTP endpoint that records what is POSTed to it."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.server.shutdown()


def fill(index: Index, days: int, shift_ml: float) -> None:
    for offset in range(days):
        day = START + timedelta(days=offset)
        for hour, deviation in enumerate(OFFSETS):
            value = 1000 + deviation + (shift_ml if day >= SHIFT_DAY else 0)
            at = datetime.combine(day, datetime.min.time()) + timedelta(hours=hour + 8)
            add_result(index, at, measurements=[{"name": "Liver volume", "value": value, "unit": "mL"}])


def test_alert_raised_after_the_configured_days_not_before(index: Index, webhook: Webhook) -> None:
    fill(index, days=50, shift_ml=30)
    settings = Settings(monitoring={"webhook_url": webhook.url})
    assert settings.monitoring.consecutive_days == 7
    for days_after in range(9):
        today = SHIFT_DAY + timedelta(days=days_after)
        clock = datetime.combine(today, datetime.min.time()) + timedelta(hours=23)
        alerts = Monitor(settings, index, clock=lambda clock=clock: clock).check()  # type: ignore[misc]
        if days_after < 6:  # the shift day and 5 more: 6 days outside, one short
            assert alerts == [], f"alert {days_after} days after the shift"
            assert webhook.received == []
        else:
            [alert] = alerts
            assert alert["statistic"] == "measurement:Liver volume"
            assert alert["since"] == SHIFT_DAY.isoformat()
            assert alert["days_outside"] == days_after + 1
            assert alert["value"] == pytest.approx(1030)
            assert alert["upper"] < 1030
    # Sent once, on the day it was raised, not again on the days after.
    assert len(webhook.received) == 1
    assert webhook.received[0]["alert"]["statistic"] == "measurement:Liver volume"


def test_a_failed_webhook_is_retried_at_the_next_check(index: Index, webhook: Webhook) -> None:
    fill(index, days=48, shift_ml=30)
    raised = datetime.combine(SHIFT_DAY + timedelta(days=7), datetime.min.time())
    unreachable = Settings(
        monitoring={"webhook_url": f"http://127.0.0.1:{free_port()}/", "webhook_timeout_s": 2}
    )
    assert Monitor(unreachable, index, clock=lambda: raised).check()
    assert webhook.received == []
    reachable = Settings(monitoring={"webhook_url": webhook.url})
    Monitor(reachable, index, clock=lambda: raised).check()
    Monitor(reachable, index, clock=lambda: raised).check()
    assert len(webhook.received) == 1


def test_a_statistic_back_in_control_clears_its_alert(index: Index) -> None:
    fill(index, days=48, shift_ml=30)
    settings = Settings()
    raised = datetime.combine(SHIFT_DAY + timedelta(days=7), datetime.min.time())
    assert Monitor(settings, index, clock=lambda: raised).check()
    later = raised + timedelta(days=1)  # the shift has no result on this day: still in alert
    assert Monitor(settings, index, clock=lambda: later).check()
    add_result(index, later, measurements=[{"name": "Liver volume", "value": 1000, "unit": "mL"}])
    assert Monitor(settings, index, clock=lambda: later).check() == []


def test_rates_use_p_chart_limits_and_a_new_scanner_shows_in_the_input_mix() -> None:
    settings = Settings(monitoring={"consecutive_days": 2, "baseline_days": 10, "recent_days": 3})
    windows = Windows.ending(date(2026, 2, 13), settings.monitoring)
    samples = [
        Sample("input:manufacturer=GE", Chart.RATE, date(2026, 2, d), 1.0)
        for d in range(1, 11)
        for _ in range(5)
    ]
    samples += [Sample("input:manufacturer=GE", Chart.RATE, date(2026, 2, 12), v) for v in (1.0, 0.0)]
    samples += [Sample("input:manufacturer=GE", Chart.RATE, date(2026, 2, 13), v) for v in (0.0, 0.0)]
    [mix] = drift(samples, windows, settings.monitoring)
    assert mix.baseline is not None and mix.baseline.centre == 1.0
    assert [d.outside for d in mix.days] == [True, True]
    assert mix.alert and mix.run_since == date(2026, 2, 12)
