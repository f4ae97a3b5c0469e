"""UIDs as path components, the on-disk layout, and atomic writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from radrouter.storage.store import InstanceStore, InvalidUID, validate_uid, write_atomically

STUDY = "1.2.826.0.1.3680043.8.498.1"
SERIES = "1.2.826.0.1.3680043.8.498.2"
SOP = "1.2.826.0.1.3680043.8.498.3"


@pytest.mark.parametrize(
    "uid",
    [
        "../../etc",
        "1.2/3",
        "",
        "1." + "2" * 63,
        "1.2.abc",
        "..",
        "1..2",
        ".1.2",
        "1.2.",
        "/1.2",
        "1.2 .3",
        "1.2\n",
    ],
)
def test_validate_uid_refuses(uid: str) -> None:
    with pytest.raises(InvalidUID):
        validate_uid(uid)


def test_validate_uid_refuses_65_characters_and_accepts_64() -> None:
    longest = "1." + "2" * 62
    assert len(longest) == 64
    assert validate_uid(longest) == longest
    with pytest.raises(InvalidUID):
        validate_uid(longest + "3")


def test_validate_uid_error_names_what_was_checked() -> None:
    with pytest.raises(InvalidUID, match="StudyInstanceUID"):
        validate_uid("../../etc", "StudyInstanceUID")


@pytest.mark.parametrize("padded", ["1.2.840.10008.1.2", "1.2.840.10008.1.2\x00", "1.2.840.10008.1.2 "])
def test_validate_uid_accepts_and_strips_padding(padded: str) -> None:
    assert validate_uid(padded) == "1.2.840.10008.1.2"


def test_instance_path_layout(tmp_path: Path) -> None:
    store = InstanceStore(tmp_path)

    path = store.instance_path(STUDY, SERIES, SOP)

    assert path == tmp_path.resolve() / "instances" / STUDY / SERIES / f"{SOP}.dcm"


def test_instance_path_strips_padding(tmp_path: Path) -> None:
    store = InstanceStore(tmp_path)

    assert store.instance_path(STUDY + "\x00", SERIES + " ", SOP) == store.instance_path(STUDY, SERIES, SOP)


@pytest.mark.parametrize(
    ("study", "series", "sop"),
    [("../../etc", SERIES, SOP), (STUDY, "../x", SOP), (STUDY, SERIES, "1/../../2")],
)
def test_instance_path_refuses_traversal(tmp_path: Path, study: str, series: str, sop: str) -> None:
    store = InstanceStore(tmp_path)

    with pytest.raises(InvalidUID):
        store.instance_path(study, series, sop)


def test_result_path_layout_and_validation(tmp_path: Path) -> None:
    store = InstanceStore(tmp_path)

    assert store.result_path(STUDY, SOP) == tmp_path.resolve() / "results" / STUDY / f"{SOP}.dcm"
    with pytest.raises(InvalidUID):
        store.result_path("../../etc", SOP)


def test_store_write_puts_bytes_at_instance_path(tmp_path: Path) -> None:
    store = InstanceStore(tmp_path, fsync=False)
    path = store.instance_path(STUDY, SERIES, SOP)

    store.write(path, b"DICM-bytes")

    assert path.read_bytes() == b"DICM-bytes"


def test_store_write_refuses_path_outside_root(tmp_path: Path) -> None:
    store = InstanceStore(tmp_path / "root", fsync=False)
    outside = tmp_path / "elsewhere" / "x.dcm"

    with pytest.raises(InvalidUID):
        store.write(outside, b"data")

    assert not outside.exists()


@pytest.mark.parametrize("fsync", [True, False])
def test_write_atomically_leaves_no_temp_file(tmp_path: Path, fsync: bool) -> None:
    target = tmp_path / "a" / "b" / "x.dcm"

    write_atomically(target, b"payload", fsync=fsync)

    assert target.read_bytes() == b"payload"
    assert list(target.parent.iterdir()) == [target]


def test_write_atomically_replaces_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "x.dcm"
    target.write_bytes(b"old")

    write_atomically(target, b"new")

    assert target.read_bytes() == b"new"
    assert list(tmp_path.iterdir()) == [target]


def test_failed_write_leaves_neither_target_nor_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "instances" / "x.dcm"
    calls: list[tuple[str, str]] = []

    def failing_replace(source: str, destination: str) -> None:
        calls.append((str(source), str(destination)))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("radrouter.storage.store.os.replace", failing_replace)

    with pytest.raises(OSError, match="No space left"):
        write_atomically(target, b"payload")

    assert calls, "os.replace was not called: the test did not exercise the failure path"
    assert calls[0][0].endswith(".part")
    assert not target.exists()
    assert list(target.parent.iterdir()) == []


def test_failed_write_keeps_previous_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "x.dcm"
    target.write_bytes(b"previous")

    def failing_replace(source: str, destination: str) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr("radrouter.storage.store.os.replace", failing_replace)

    with pytest.raises(OSError):
        write_atomically(target, b"new")

    assert target.read_bytes() == b"previous"
    assert list(tmp_path.iterdir()) == [target]


def test_failed_data_write_removes_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "x.dcm"

    def failing_fsync(fd: int) -> None:
        raise OSError("I/O error")

    monkeypatch.setattr("radrouter.storage.store.os.fsync", failing_fsync)

    with pytest.raises(OSError, match="I/O error"):
        write_atomically(target, b"payload", fsync=True)

    assert list(tmp_path.iterdir()) == []
