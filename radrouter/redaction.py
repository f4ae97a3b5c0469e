"""Keeps patient data out of the logs that libraries write.

pydicom and highdicom quote element values in their warnings ("Invalid value for VR DA: '1923…'",
"The string "DOE" is unlikely to represent the intended person name"), and a value may be a patient's
name or birth date. Their log records and Python warnings keep where they came from and their kind;
the text is withheld. radrouter's own messages carry UIDs and figures only.
"""

from __future__ import annotations

import logging

#: Loggers whose messages may quote dataset values.
QUOTING_LOGGERS = ("pydicom", "highdicom", "py.warnings")


class WithholdDatasetValues(logging.Filter):
    """A handler filter: records from :data:`QUOTING_LOGGERS` keep their origin, not their text."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.split(".")[0] in ("pydicom", "highdicom"):
            origin = f"{record.module}:{record.lineno}"
        elif record.name == "py.warnings":
            # "path:line: Category: text..." -> keep "path:line: Category"
            origin = ": ".join(str(record.getMessage()).split(": ", 2)[:2])
        else:
            return True
        record.msg, record.args = f"{origin} (text withheld: it may quote patient data)", ()
        return True
