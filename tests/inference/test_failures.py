"""A failed job's reason: a sentence naming what failed and why, never a bare exception class."""

from __future__ import annotations

import pytest

from radrouter.inference.failures import JobFailed, in_words, stage


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (AttributeError("'FileDataset' object has no attribute 'ImageOrientationPatient'"),
         "ImageOrientationPatient is missing"),
        (KeyError("FrameOfReferenceUID"), "FrameOfReferenceUID is missing"),
        (MemoryError(), "the worker ran out of memory"),
        (RuntimeError("The following operation failed in the TorchScript interpreter.\n"
                      "Traceback of TorchScript (most recent call last):\n  File \"m.py\"\n"
                      "RuntimeError: simulated model failure\n"),
         "The following operation failed in the TorchScript interpreter. … "
         "RuntimeError: simulated model failure"),
        (ValueError(), "an unexpected value error"),
    ],
)  # fmt: skip
def test_an_exception_in_words(error: BaseException, words: str) -> None:
    assert in_words(error) == words


def test_a_stage_names_what_failed_and_where() -> None:
    with pytest.raises(JobFailed) as failed, stage("the SEG could not be written", "series 3"):
        raise AttributeError("'FileDataset' object has no attribute 'FrameOfReferenceUID'")
    assert str(failed.value) == "the SEG could not be written: FrameOfReferenceUID is missing in series 3"
