"""The filesystem image store: the contract, and how it lays out and syncs its files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from inference_common.image_store import ImageMissing, ImageStoreUnavailable
from inference_common.image_stores import FilesystemImageStore, open_image_store, scheme_of
from inference_common.settings import CommonSettings
from tests.image_store_contract import ImageStoreContract, StoreUnderTest, image, key_of


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "images"


@pytest.fixture
def subject(root: Path) -> StoreUnderTest:
    def corrupt(uri: str) -> None:
        path = root / uri.removeprefix("fs:")
        path.write_bytes(path.read_bytes()[:-1] + b"!")

    def held(uri: str) -> bool:
        return (root / uri.removeprefix("fs:")).is_file()

    return StoreUnderTest(FilesystemImageStore(root), corrupt, held)


class TestFilesystemImageStore(ImageStoreContract):
    pass


class TestImageStoresOverTheFilesystem(ImageStoreContract):
    """open_image_store's router with IMAGE_STORE=filesystem keeps the same contract."""

    @pytest.fixture
    def subject(self, root: Path, subject: StoreUnderTest) -> StoreUnderTest:
        stores = open_image_store(CommonSettings(image_store="filesystem", image_store_dir=root))
        assert stores.scheme == "fs"
        return StoreUnderTest(stores, subject.corrupt, subject.held)


def test_the_uri_is_relative_to_the_root_and_the_file_is_content_addressed(root: Path) -> None:
    data = image()
    key = key_of(data)
    uri = FilesystemImageStore(root).put(key, data, "image/jpeg")
    assert uri == f"fs:{key.sha256[:2]}/{key.sha256}/{key.job_id}"
    assert str(root) not in uri
    assert (root / key.path).read_bytes() == data
    # Another process that mounts the same directory elsewhere reads it by the same URI.
    moved = root.parent / "mounted-elsewhere"
    root.rename(moved)
    assert FilesystemImageStore(moved).get(uri) == data


def test_no_temporary_file_is_left_behind(root: Path) -> None:
    data = image()
    store = FilesystemImageStore(root)
    store.put(key_of(data), data, "image/jpeg")
    store.put(key_of(data), data, "image/jpeg")
    files = [p.name for p in root.rglob("*") if p.is_file()]
    assert len(files) == 2
    assert not [name for name in files if name.endswith(".tmp")]


def test_the_file_and_every_folder_made_for_it_are_synced(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    root.mkdir()
    data = image()
    key = key_of(data)
    FilesystemImageStore(root).put(key, data, "image/jpeg")
    final = root / key.path
    # The temporary file (renamed afterwards), then the folders: the image's, and the parents
    # of the two folders this put created (the root and the fan-out folder).
    assert synced[0].startswith(str(final.parent / f".{key.job_id}."))
    assert set(synced[1:]) == {str(final.parent), str(final.parent.parent), str(root)}


def test_delete_removes_empty_folders_but_not_another_jobs_copy(root: Path) -> None:
    data = image()
    store = FilesystemImageStore(root)
    first, second = key_of(data), key_of(data)
    first_uri = store.put(first, data, "image/jpeg")
    second_uri = store.put(second, data, "image/jpeg")
    store.delete(first_uri)
    assert (root / second.path).exists()
    store.delete(second_uri)
    assert list(root.iterdir()) == []
    assert root.exists()


def test_a_write_the_disk_refuses_is_unavailable(root: Path) -> None:
    data = image()
    key = key_of(data)
    store = FilesystemImageStore(root)
    root.mkdir()
    (root / key.sha256[:2]).write_text("a file where a folder belongs")
    with pytest.raises(ImageStoreUnavailable):
        store.put(key, data, "image/jpeg")


def test_a_read_the_disk_refuses_is_unavailable(root: Path) -> None:
    data = image()
    key = key_of(data)
    store = FilesystemImageStore(root)
    uri = store.put(key, data, "image/jpeg")
    (root / key.path).unlink()
    (root / key.path).mkdir()  # reading a folder fails as an I/O error would
    with pytest.raises(ImageStoreUnavailable):
        store.get(uri)


def test_scheme_of_names_the_store_or_refuses() -> None:
    assert scheme_of("fs:ab/cd") == "fs"
    assert scheme_of("blob://images/x") == "blob"
    assert scheme_of("s3://bucket/x") == "s3"
    with pytest.raises(ValueError):
        scheme_of("file:///etc/passwd")


def test_an_s3_prefix_must_be_a_folder() -> None:
    assert CommonSettings(image_store_s3_prefix="").image_store_s3_prefix == ""
    assert CommonSettings(image_store_s3_prefix="a/b/").image_store_s3_prefix == "a/b/"
    for bad in ("images", "/images/", "a/../", "./", "a b/", "a//"):
        with pytest.raises(ValueError):
            CommonSettings(image_store_s3_prefix=bad)


def test_the_root_is_made_by_the_first_put_not_by_readers(root: Path) -> None:
    data = image()
    key = key_of(data)
    store = FilesystemImageStore(root / "deeper")
    with pytest.raises(ImageMissing):
        store.get(f"fs:{key.path}")
    assert not root.exists()
    assert store.get(store.put(key, data, "image/jpeg")) == data
