"""What kind of input a model saw: the scanner and protocol attributes that data-set shift shows up in."""

from __future__ import annotations

from typing import Any

from pydicom.dataset import Dataset

#: Descriptor name → how it reads from the header; the same names in evaluation subgroups and monitoring.
DESCRIPTORS = ("manufacturer", "model", "slice_thickness", "protocol")


def input_descriptors(header: Dataset) -> dict[str, str]:
    """Manufacturer, model, slice thickness (mm, as written) and protocol of a series' first instance."""
    thickness: Any = header.get("SliceThickness")
    protocol = header.get("ProtocolName") or header.get("SeriesDescription")
    return {
        "manufacturer": str(header.get("Manufacturer") or "unknown").strip() or "unknown",
        "model": str(header.get("ManufacturerModelName") or "unknown").strip() or "unknown",
        "slice_thickness": f"{float(thickness):g}" if thickness not in (None, "") else "unknown",
        "protocol": str(protocol or "unknown").strip() or "unknown",
    }
