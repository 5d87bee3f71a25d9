"""A batch upload's files: several multipart files, or the members of one zip or tar archive.

The batch's limits are checked on what the upload declares (the parts' sizes, the archive's
directory or headers) before any job is made; then the files are read one at a time, each
at most one byte over the per-image limit, so a zip bomb is never inflated in memory.
"""

from __future__ import annotations

import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import IO, Final

from starlette.datastructures import UploadFile

from inference_service.domain.images import ImageTooLarge, InvalidImage, check_size
from inference_service.service_layer.batches import UploadedFile

# What archivers add beside the files (macOS resource forks, Finder's folder settings).
_SKIPPED_PARTS: Final = frozenset({"__MACOSX", ".DS_Store", "Thumbs.db"})


class BatchTooLarge(Exception):
    """Over the batch's limits (files, bytes in all): nothing is made (413)."""


class InvalidArchive(ValueError):
    """The archive is neither a zip nor a tar we can read (422)."""


@dataclass(frozen=True)
class BatchLimits:
    max_files: int
    max_bytes: int
    max_image_bytes: int

    def check(self, count: int, size: int) -> None:
        if count > self.max_files:
            raise BatchTooLarge(
                f"the batch has more than {self.max_files} files (BATCH_MAX_FILES); "
                "split it into several batches"
            )
        if size > self.max_bytes:
            raise BatchTooLarge(
                f"the batch's files have {size} bytes in all; the limit is {self.max_bytes} "
                "(BATCH_MAX_BYTES)"
            )


def uploaded_files(
    files: list[UploadFile], archive: UploadFile | None, limits: BatchLimits
) -> Iterator[UploadedFile]:
    """Checks the limits now (raises BatchTooLarge, InvalidArchive); the iterator reads."""
    if archive is not None:
        if files:
            raise InvalidArchive("send several `files` or one `archive`, not both")
        return _archive_files(archive.file, limits)
    if not files:
        raise InvalidArchive("the batch has no files: send `files` or an `archive`")
    limits.check(len(files), sum(upload.size or 0 for upload in files))
    return _part_files(files, limits)


def _part_files(files: list[UploadFile], limits: BatchLimits) -> Iterator[UploadedFile]:
    for index, upload in enumerate(files):
        name = upload.filename or f"file-{index}"
        yield _read(name, upload.size or 0, upload.file, limits)


def _read(name: str, declared: int, stream: IO[bytes], limits: BatchLimits) -> UploadedFile:
    try:
        check_size(declared, limits.max_image_bytes)
        data = stream.read(limits.max_image_bytes + 1)
        check_size(len(data), limits.max_image_bytes)
    except ImageTooLarge as exc:
        return UploadedFile(name, error=exc)
    return UploadedFile(name, data)


def _wanted(name: str) -> bool:
    parts = PurePosixPath(name).parts
    return not any(part in _SKIPPED_PARTS or part.startswith("._") for part in parts)


def _archive_files(stream: IO[bytes], limits: BatchLimits) -> Iterator[UploadedFile]:
    if zipfile.is_zipfile(stream):
        stream.seek(0)
        return _zip_files(zipfile.ZipFile(stream), limits)
    stream.seek(0)
    try:
        with tarfile.open(fileobj=stream, mode="r:*") as listing:
            # Headers only (a compressed tar is inflated once, not kept).
            count = size = 0
            for member in listing:
                if member.isfile() and _wanted(member.name):
                    count += 1
                    size += member.size
                    limits.check(count, size)
    except tarfile.TarError:
        raise InvalidArchive("the archive is neither a zip nor a tar (gzip, bzip2, xz)") from None
    stream.seek(0)
    return _tar_files(stream, limits)


def _zip_files(archive: zipfile.ZipFile, limits: BatchLimits) -> Iterator[UploadedFile]:
    members = [m for m in archive.infolist() if not m.is_dir() and _wanted(m.filename)]
    limits.check(len(members), sum(member.file_size for member in members))

    def read() -> Iterator[UploadedFile]:
        with archive:
            for member in members:
                try:
                    with archive.open(member) as data:
                        yield _read(member.filename, member.file_size, data, limits)
                except (zipfile.BadZipFile, NotImplementedError, RuntimeError) as exc:
                    # Encrypted, an unknown compression or a broken member: that file only.
                    yield UploadedFile(member.filename, error=_unreadable(exc))

    return read()


def _tar_files(stream: IO[bytes], limits: BatchLimits) -> Iterator[UploadedFile]:
    # A stream (`|`): one pass, each member read where it lies (no seeking back in a gzip).
    with tarfile.open(fileobj=stream, mode="r|*") as archive:
        for member in archive:
            if not member.isfile() or not _wanted(member.name):
                continue
            data = archive.extractfile(member)
            if data is None:
                continue
            yield _read(member.name, member.size, data, limits)


def _unreadable(exc: Exception) -> Exception:
    return InvalidImage(f"the archive's member cannot be read: {exc}", "corrupt-image")
