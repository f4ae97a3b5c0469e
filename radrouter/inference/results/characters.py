"""The results' Specific Character Set (PS3.3 C.12.1.1.2): the source's, where the text fits it.

highdicom takes the source's set only from its own list (not ISO 2022 IR 87 after a default first
value, not ISO 2022 IR 149), so results are built in UTF-8 and get their set here: the source's
declared set when every text value they hold encodes in it, else UTF-8 (ISO_IR 192), which encodes
anything, including text that did not decode in the set the source declared.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache

from pydicom.charset import convert_encodings, python_encoding
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from radrouter.inference.results.content import UTF8
from radrouter.inference.results.sanitise import Repair, RepairRule

#: VRs whose text is encoded with the Specific Character Set (PS3.5 6.1.2.3).
_TEXT_VRS = frozenset({"SH", "LO", "ST", "LT", "UC", "UT", "PN"})


def _text_values(dataset: Dataset) -> Iterator[str]:
    for element in dataset:
        if element.VR == "SQ":
            for item in element.value:
                yield from _text_values(item)
        elif element.VR in _TEXT_VRS and element.value not in (None, ""):
            values = element.value if isinstance(element.value, MultiValue) else [element.value]
            yield from (str(value) for value in values)


@cache
def _encodes(character: str, encoding: str) -> bool:
    try:
        character.encode(encoding)
    except (UnicodeError, LookupError):
        return False
    return True


def fits(text: str, encodings: list[str]) -> bool:
    """Whether every character of ``text`` encodes in one of the character sets."""
    return all(any(_encodes(character, encoding) for encoding in encodings) for character in set(text))


def carry_character_set(result: Dataset, source: Dataset) -> Repair | None:
    """Set the result's character set; a repair when the source's declared set cannot carry the text."""
    declared = source.get("SpecificCharacterSet") or "ISO_IR 6"
    terms = [declared] if isinstance(declared, str) else list(declared)
    # pydicom reads an unknown term as Latin-1 with a warning; the results then say UTF-8.
    known = all(term in python_encoding or (term == "" and i == 0) for i, term in enumerate(terms))
    encodings = list(convert_encodings(declared)) if known else []
    # Each distinct text once: a SEG repeats a few code meanings on each of its frames.
    if known and all(fits(text, encodings) for text in set(_text_values(result))):
        if declared == "ISO_IR 6":
            del result.SpecificCharacterSet  # the default repertoire is declared by its absence
        else:
            result.SpecificCharacterSet = declared
        return None
    result.SpecificCharacterSet = UTF8
    reason = "text does not fit the declared character set"
    return Repair("SpecificCharacterSet", RepairRule.REENCODED, reason)
