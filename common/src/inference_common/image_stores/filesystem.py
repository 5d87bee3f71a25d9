"""Images as files under one root directory: the local default.

A file's path is its key's (`ab/<sha256>/<job id>`), so two jobs with the same bytes have
two files and deleting one leaves the other. A put writes a temporary file in the final
directory, fsyncs it, renames it over the final name and fsyncs the directory: a reader sees
the whole image or none, and an acknowledged image survives a power cut. Claim checks are
`fs:<key path>`, relative to the root, so every process may mount the root where it likes.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Final

from inference_common.image_store import ImageKey, ImageMissing, ImageStoreUnavailable
from inference_common.image_stores.keys import parse_key_path

SCHEME: Final = "fs"
# A delete of another job's copy of the same bytes may remove the folder between our mkdir
# and our write; a few fresh tries always win that race.
_WRITE_TRIES: Final = 3


class FilesystemImageStore:
    scheme = SCHEME

    def __init__(self, root: Path) -> None:
        self.root = root  # made by the first put: a process that only reads needs no write access

    def put(self, key: ImageKey, data: bytes, media_type: str) -> str:
        for attempt in range(1, _WRITE_TRIES + 1):
            try:
                self._write(key, data)
                break
            except FileNotFoundError as exc:
                if attempt == _WRITE_TRIES:
                    raise ImageStoreUnavailable(f"image {key.path}: {exc}") from exc
            except OSError as exc:  # a full disk, a lost mount
                raise ImageStoreUnavailable(f"image {key.path}: {exc}") from exc
        return f"{SCHEME}:{key.path}"

    def get(self, uri: str) -> bytes:
        key = self._key(uri)
        try:
            data = (self.root / key.path).read_bytes()
        except FileNotFoundError as exc:
            raise ImageMissing(f"no image {key.path} under {self.root}") from exc
        except OSError as exc:  # EIO, a stale network mount: the disk, not the request
            raise ImageStoreUnavailable(f"image {key.path}: {exc}") from exc
        return key.check(data)

    def delete(self, uri: str) -> None:
        key = self._key(uri)
        path = self.root / key.path
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise ImageStoreUnavailable(f"image {key.path}: {exc}") from exc
        for folder in (path.parent, path.parent.parent):
            try:
                folder.rmdir()
            except OSError:  # not empty (another job's copy, a put under way) or gone
                return

    def _write(self, key: ImageKey, data: bytes) -> None:
        final = self.root / key.path
        created = _make_folders(final.parent)
        tmp = final.with_name(f".{final.name}.{secrets.token_hex(4)}.tmp")
        try:
            with open(tmp, "xb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            tmp.replace(final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        # The rename, and each folder made for it, is durable once its parent is synced.
        for folder in {final.parent, *(made.parent for made in created)}:
            _fsync_folder(folder)

    @staticmethod
    def _key(uri: str) -> ImageKey:
        if not uri.startswith(f"{SCHEME}:"):
            raise ValueError(f"not a filesystem image reference: {uri!r}")
        return parse_key_path(uri.removeprefix(f"{SCHEME}:"))


def _make_folders(folder: Path) -> list[Path]:
    """Make `folder` and its missing parents; the folders this call made."""
    missing = []
    for path in (folder, *folder.parents):
        if path.exists():
            break
        missing.append(path)
    made = []
    for path in reversed(missing):
        try:
            path.mkdir()
            made.append(path)
        except FileExistsError:  # a concurrent put made it
            pass
    return made


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
