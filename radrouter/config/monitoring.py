"""The schema of post-market monitoring: drift windows, the alert rule, the webhook, shadow pipelines."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class MonitoringSettings(BaseModel):
    """How radrouter watches its models after go-live (see README, "Monitoring your models")."""

    model_config = ConfigDict(extra="forbid")

    baseline_days: int = Field(
        30, ge=1, description="Days of results, just before the recent window, that set the control limits."
    )
    recent_days: int = Field(14, ge=1, description="Days up to today that are compared with the baseline.")
    consecutive_days: int = Field(
        7, ge=1, description="Days in a row outside the control limits that raise a drift alert."
    )
    confidence: float = Field(0.95, gt=0.5, lt=1, description="Coverage of the control limits.")
    min_baseline_samples: int = Field(
        20, ge=2, description="Fewer baseline samples than this: no limits, no alert for that statistic."
    )
    finding_threshold: float = Field(
        0.5, ge=0, le=1, description="Probability at which a reported finding counts as positive."
    )
    shadow_pipelines: list[str] = Field(
        default_factory=list,
        description="Pipelines run in shadow: results computed and stored, never delivered nor triaged.",
    )
    webhook_url: str = Field("", description="POST each new drift alert as JSON here; empty: no webhook.")
    webhook_timeout_s: float = Field(5.0, gt=0, description="Timeout of one webhook request.")
    check_interval_s: float = Field(
        900.0,
        gt=0,
        description="Seconds between drift checks by the web app's timer (alerts also refresh after "
        "each result): windows move with the days even when no result comes.",
    )
