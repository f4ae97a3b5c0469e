"""Triage: AI results move studies up the reading list, with a waiting-time cap; HL7 v2 to the RIS."""

from radrouter.worklist.reading_list import ReadingList
from radrouter.worklist.triage import TriageMatch, WaitingStudy, evaluate, reading_order

__all__ = ["ReadingList", "TriageMatch", "WaitingStudy", "evaluate", "reading_order"]
