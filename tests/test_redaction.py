"""Library warnings that quote dataset values keep their origin in the log, never the value."""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Iterator

import pytest

from radrouter.redaction import WithholdDatasetValues


@pytest.fixture
def log_text() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(WithholdDatasetValues())
    root = logging.getLogger()
    root.addHandler(handler)
    logging.captureWarnings(True)
    yield stream
    logging.captureWarnings(False)
    root.removeHandler(handler)


def test_a_pydicom_warning_keeps_its_origin_but_not_the_value(log_text: io.StringIO) -> None:
    logging.getLogger("pydicom").warning("Invalid value for VR PN: %r", "Qorbanelle^Zyx")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn(
            'The string "Qorbanelle" is unlikely to represent a person name', UserWarning, stacklevel=1
        )
    text = log_text.getvalue()
    assert "Qorbanelle" not in text
    assert "text withheld" in text and "UserWarning" in text


def test_our_own_messages_pass_unchanged(log_text: io.StringIO) -> None:
    logging.getLogger("radrouter.router.receive.scp").warning("refused %s", "1.2.3")
    assert "refused 1.2.3" in log_text.getvalue()
