"""A batch upload's files: limits checked on what is declared, members read one at a time."""

from __future__ import annotations

import io
import tarfile
import zipfile
from typing import Literal

import pytest
from starlette.datastructures import UploadFile

from inference_service.api.batch_uploads import (
    BatchLimits,
    BatchTooLarge,
    InvalidArchive,
    uploaded_files,
)
from inference_service.domain.images import ImageTooLarge

LIMITS = BatchLimits(max_files=3, max_bytes=1000, max_image_bytes=100)


def upload(data: bytes, name: str = "x") -> UploadFile:
    return UploadFile(io.BytesIO(data), size=len(data), filename=name)


def zipped(members: dict[str, bytes]) -> UploadFile:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return upload(buffer.getvalue(), "images.zip")


def tarred(members: dict[str, bytes], mode: Literal["w", "w:gz"] = "w:gz") -> UploadFile:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return upload(buffer.getvalue(), "images.tar.gz")


def test_parts_are_read_in_order_and_an_oversized_one_is_a_file_problem() -> None:
    files = [upload(b"a" * 10, "a.jpg"), upload(b"b" * 101, "b.jpg")]
    read = list(uploaded_files(files, None, LIMITS))
    assert [(f.name, f.data) for f in read] == [("a.jpg", b"a" * 10), ("b.jpg", b"")]
    assert isinstance(read[1].error, ImageTooLarge)


def test_a_zip_member_over_the_image_limit_is_not_inflated() -> None:
    archive = zipped({"ok.jpg": b"o" * 50, "dir/": b"", "bomb.jpg": b"\0" * 900})
    read = list(uploaded_files([], archive, LIMITS))
    assert [f.name for f in read] == ["ok.jpg", "bomb.jpg"]
    assert read[0].data == b"o" * 50
    assert isinstance(read[1].error, ImageTooLarge) and read[1].data == b""


@pytest.mark.parametrize("mode", ["w", "w:gz"])
def test_a_tar_is_read_in_one_pass_and_archivers_litter_is_skipped(
    mode: Literal["w", "w:gz"],
) -> None:
    members = {"x/1.jpg": b"1" * 5, "__MACOSX/x/._1.jpg": b"junk", "x/2.jpg": b"2" * 7}
    read = list(uploaded_files([], tarred(members, mode), LIMITS))
    assert [(f.name, f.data) for f in read] == [("x/1.jpg", b"1" * 5), ("x/2.jpg", b"2" * 7)]


def test_over_the_batch_limits_nothing_is_read() -> None:
    with pytest.raises(BatchTooLarge, match="more than 3 files"):
        uploaded_files([], zipped({f"{i}.jpg": b"x" for i in range(4)}), LIMITS)
    with pytest.raises(BatchTooLarge, match="1100 bytes"):
        many = BatchLimits(max_files=20, max_bytes=1000, max_image_bytes=100)
        uploaded_files([], tarred({f"{i}.jpg": b"x" * 100 for i in range(11)}, "w"), many)
    with pytest.raises(BatchTooLarge):
        uploaded_files([upload(b"x", str(i)) for i in range(4)], None, LIMITS)


def test_an_archive_must_be_one() -> None:
    with pytest.raises(InvalidArchive):
        uploaded_files([], upload(b"plain text, not an archive"), LIMITS)
    with pytest.raises(InvalidArchive):
        uploaded_files([upload(b"x")], zipped({"a.jpg": b"x"}), LIMITS)
