"""Identity from the stored header: names formatted as a list shows them, ages, times, cached reads."""

from __future__ import annotations

import os
from pathlib import Path

import pydicom
from pydicom.valuerep import PersonName

from radrouter.storage import identity
from radrouter.storage.identity import formatted_name, read_identity
from tests.services import CT_HEAD, MPRAGE


def test_the_real_headers_give_who_and_what() -> None:
    mri = read_identity(sorted(MPRAGE.glob("*.dcm"))[0])
    assert mri is not None
    assert (mri.patient_name, mri.patient_id, mri.age, mri.sex) == (
        "D2N_PHILIPS_3T_R571", "d2n_Philips_3T_R571", "41 y", "M",
    )  # fmt: skip
    assert (mri.body_part, mri.study_time) == ("BRAIN", "2021-09-02T12:18:16")
    ct = read_identity(CT_HEAD / "I10")
    assert ct is not None
    assert (ct.study_description, ct.age, ct.study_time) == (
        "1A TRAUMA/PLAIN HEAD DM",
        "",
        "2015-02-06T09:28:15",
    )


def test_person_names_are_family_comma_given() -> None:
    assert formatted_name(PersonName("Doe^Jane^Q")) == "DOE, Jane Q"
    assert formatted_name("Doe^Jane") == "DOE, Jane"
    assert formatted_name("^Jane") == "Jane"
    assert formatted_name("") == ""


def test_age_from_birth_date_when_not_written_and_a_replaced_file_is_read_again(tmp_path: Path) -> None:
    header = pydicom.dcmread(CT_HEAD / "I10", stop_before_pixels=True)
    header.PatientName, header.PatientBirthDate = "Roe^Richard", "19600207"
    path = tmp_path / "one.dcm"
    header.save_as(path)
    first = read_identity(path)
    assert first is not None and (first.patient_name, first.age) == ("ROE, Richard", "54 y")
    hits = identity._read.cache_info().hits
    assert read_identity(path) == first and identity._read.cache_info().hits == hits + 1, "cached"

    header.PatientName = "Roe^Rita"
    header.save_as(path)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    again = read_identity(path)
    assert again is not None and again.patient_name == "ROE, Rita"
    path.unlink()
    assert read_identity(path) is None, "purged: no identity, no error"
