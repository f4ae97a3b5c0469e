"""Feedback and drift over HTTP: verdicts stored with the model version, statistics, alerts in /metrics."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from radrouter.config.settings import Settings
from radrouter.storage.index import DriftAlert, Index, utcnow
from radrouter.web.app import create_app
from tests.access import token_client
from tests.monitoring.conftest import add_result
from tests.services import wait_until


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(storage={"root": tmp_path})


@pytest.fixture
def index(settings: Settings) -> Index:
    return Index(settings.storage.resolved_index_url())


def test_feedback_round_trip_with_model_version(settings: Settings, index: Index) -> None:
    result_id = add_result(index, utcnow(), measurements=[{"name": "Liver volume", "value": 1500.0}])
    client = token_client(create_app(settings, index), index)
    posted = client.post(
        f"/api/results/{result_id}/feedback",
        json={"verdict": "disagree", "item": "Liver volume", "corrected_value": 1420.5},
    )
    assert posted.status_code == 201
    assert client.post(f"/api/results/{result_id}/feedback", json={"verdict": "agree"}).status_code == 201
    stored = client.get(f"/api/results/{result_id}/feedback").json()
    assert [(f["verdict"], f["item"], f["corrected_value"]) for f in stored] == [
        ("disagree", "Liver volume", 1420.5),
        ("agree", None, None),
    ]
    assert {(f["pipeline"], f["version"], f["source"]) for f in stored} == {("liver-volume", "1.0", "api")}

    assert client.post("/api/results/999999/feedback", json={"verdict": "agree"}).status_code == 404
    assert client.get("/api/results/999999/feedback").status_code == 404
    assert client.post(f"/api/results/{result_id}/feedback", json={"verdict": "maybe"}).status_code == 422

    stats = client.get("/api/monitoring/liver-volume").json()["statistics"]
    agreement = next(s for s in stats if s["statistic"] == "agreement")
    assert agreement["days"][-1]["samples"] == 2 and agreement["days"][-1]["value"] == 0.5
    volume = next(s for s in stats if s["statistic"] == "measurement:Liver volume")
    assert volume["days"][-1]["value"] == 1500.0 and volume["baseline"] is None


def test_the_series_is_kept_per_model_version(settings: Settings, index: Index) -> None:
    add_result(index, utcnow(), measurements=[{"name": "Liver volume", "value": 1500.0}])
    add_result(index, utcnow(), measurements=[{"name": "Liver volume", "value": 1700.0}], version="2.0")
    client = token_client(create_app(settings, index), index)
    series = client.get("/api/monitoring/liver-volume/series").json()
    assert [(p["version"], p["measurements"][0]["value"]) for p in series] == [
        ("1.0", 1500.0),
        ("2.0", 1700.0),
    ]
    assert series[0]["input"]["manufacturer"] == "GE MEDICAL SYSTEMS"
    only_v2 = client.get("/api/monitoring/liver-volume/series", params={"version": "2.0"}).json()
    assert [p["version"] for p in only_v2] == ["2.0"]
    stats = client.get("/api/monitoring/liver-volume", params={"version": "2.0"}).json()["statistics"]
    volume = next(s for s in stats if s["statistic"] == "measurement:Liver volume")
    assert volume["days"][-1]["value"] == 1700.0
    mix = client.get("/api/monitoring/liver-volume").json()["statistics"]
    assert next(s for s in mix if s["statistic"] == "input:version=2.0")["days"][-1]["value"] == 0.5


def test_open_alerts_are_in_the_api_and_in_metrics(settings: Settings, index: Index) -> None:
    today = utcnow().date()
    start = today - timedelta(days=49)
    for offset in range(50):
        day = start + timedelta(days=offset)
        # From 10 days ago on, every result comes from a new scanner: the input mix drifts.
        maker = "NEW VENDOR" if offset >= 40 else "GE MEDICAL SYSTEMS"
        for hour in range(3):
            add_result(
                index,
                datetime.combine(day, datetime.min.time()) + timedelta(hours=hour),
                measurements=[{"name": "Liver volume", "value": 1500.0 + 10 * hour}],
                findings=[{"name": "Lesion", "code": "SCT:1", "probability": 0.9 if hour == 0 else 0.1}],
                manufacturer=maker,
            )
    unstarted = token_client(create_app(settings, index), index)  # no lifespan: its timer never ran
    assert unstarted.get("/api/monitoring/alerts").json() == []
    assert "radrouter_drift_alert{" not in unstarted.get("/metrics").text
    assert "0 open alert(s)" in unstarted.get("/monitoring").text
    with index.session() as session:
        assert session.scalars(select(DriftAlert)).all() == [], "a read or a scrape wrote alerts"

    with token_client(create_app(settings, index), index) as client:  # started: its timer checks at once
        alerts = wait_until(lambda: client.get("/api/monitoring/alerts").json(), 30, "the first drift check")
        drifting = {a["statistic"] for a in alerts}
        assert drifting == {"input:manufacturer=GE MEDICAL SYSTEMS", "input:manufacturer=NEW VENDOR"}
        assert all(a["days_outside"] == 10 for a in alerts)
        metrics = client.get("/metrics").text
        assert (
            'radrouter_drift_alert{pipeline="liver-volume",statistic="input:manufacturer=NEW VENDOR"} 1.0'
            in metrics
        )
        assert client.get("/api/monitoring").json()["pipelines"] == ["liver-volume"]
        index_page = client.get("/monitoring").text
        assert 'href="/monitoring/liver-volume">liver-volume</a>: 2 open alert(s)' in index_page
        page = client.get("/monitoring/liver-volume").text
        assert "Drift: input:manufacturer=NEW VENDOR outside its limits for 10 days" in page
        # The measurement, the finding rate, and the mix of 4 input descriptors and the model version:
        assert page.count("data:image/png;base64,") == 7
