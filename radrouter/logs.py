"""Log lines as text for a terminal or as JSON for a log collector, each with the study it concerns.

Code that logs about a study passes ``extra={"study_uid": ...}``; lines about no study carry null.
Only UIDs, codes and figures are logged, never names, IDs or dates of patients: the header attributes
radrouter reads into its logs and index are UIDs, modality, series number and description.
"""

from __future__ import annotations

import logging
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from radrouter.config.settings import LogFormat, LoggingSettings
from radrouter.redaction import WithholdDatasetValues

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s %(study_uid)s"


class _StudyField(logging.Filter):
    """Every record has ``study_uid``, so each JSON line has the key."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "study_uid"):
            record.study_uid = None
        return True


def study(study_uid: str) -> dict[str, Any]:
    """``extra=`` for a line about one study."""
    return {"study_uid": study_uid}


def configure_logging(settings: LoggingSettings) -> None:
    handler = logging.StreamHandler()
    handler.addFilter(_StudyField())
    handler.addFilter(WithholdDatasetValues())  # library warnings may quote a patient's name
    if settings.format == LogFormat.JSON:
        handler.setFormatter(
            JsonFormatter(JSON_FIELDS, rename_fields={"asctime": "time", "levelname": "level"})
        )
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=settings.level, handlers=[handler], force=True)
    logging.captureWarnings(True)  # library warnings become log lines too, not bare stderr text
