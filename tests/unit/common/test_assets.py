import hashlib
import http.server
import io
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from inference_common.assets import (
    AssetFile,
    AssetStore,
    ChecksumMismatch,
    Manifest,
    credits,
    load_manifest,
    main,
)

ROOT = Path(__file__).resolve().parents[3]
MANIFEST = load_manifest(ROOT / "assets" / "manifest.toml")


def asset(path: str, data: bytes, url: str = "http://unused/", member: str | None = None):
    return AssetFile(
        path=path,
        kind="image",
        url=url,
        member=member,
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        license="test",
    )


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A loopback HTTP server over a temporary directory: the real download path."""
    root = tmp_path / "served"
    root.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_manifest_models_name_files_it_lists() -> None:
    names = {spec.name for spec in MANIFEST.model}
    assert {"mobilenet-v2-imagenet-quant", "ssd-mobilenet-v1-coco-quant"} <= names
    assert {spec.task for spec in MANIFEST.model} == {"classification", "object_detection"}
    paths = {f.path for f in MANIFEST.file}
    for spec in MANIFEST.model:
        assert spec.file in paths
    assert len(MANIFEST.images()) >= 20


def test_every_cc_by_image_carries_a_credit() -> None:
    for image in MANIFEST.images():
        if "CC-BY" in image.license:
            assert image.credit, image.path
    assert any("Open Images" in line for line in credits(MANIFEST))


def test_a_model_entry_needs_one_label_source() -> None:
    document = MANIFEST.model_dump()
    document["model"][0]["labels"] = ["a"]
    with pytest.raises(ValueError, match="exactly one of labels_file and labels"):
        Manifest.model_validate(document)


def test_mirror_copy_is_verified(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    (mirror / "images").mkdir(parents=True)
    (mirror / "images" / "a.bin").write_bytes(b"good bytes")
    entry = asset("images/a.bin", b"good bytes")
    store = AssetStore(Manifest(file=(entry,), model=()), tmp_path / "cache", mirror)

    path = store.fetch(entry)
    assert path.read_bytes() == b"good bytes"
    assert store.path_of("images/a.bin") == path


def test_mirror_with_wrong_bytes_fails_loudly_and_caches_nothing(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    (mirror / "images").mkdir(parents=True)
    (mirror / "images" / "a.bin").write_bytes(b"tampered")
    entry = asset("images/a.bin", b"good bytes")
    store = AssetStore(Manifest(file=(entry,), model=()), tmp_path / "cache", mirror)

    with pytest.raises(ChecksumMismatch, match="manifest pins"):
        store.fetch(entry)
    with pytest.raises(FileNotFoundError):
        store.path_of("images/a.bin")


def test_download_over_http_verifies_and_extracts_archive_members(
    tmp_path: Path, http_root: tuple[Path, str]
) -> None:
    root, base = http_root
    model = (ROOT / ".cache" / "assets" / "models/mnist-lstm-tflm-int8/model.tflite").read_bytes()
    (root / "plain.tflite").write_bytes(model)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("detect.tflite", model)
        archive.writestr("labelmap.txt", "???\nperson\n")
    (root / "bundle.zip").write_bytes(buffer.getvalue())
    plain = asset("models/plain.tflite", model, url=f"{base}/plain.tflite")
    member = asset("models/member.tflite", model, url=f"{base}/bundle.zip", member="detect.tflite")
    store = AssetStore(Manifest(file=(plain, member), model=()), tmp_path / "cache")

    paths = store.fetch_all()
    assert [p.read_bytes() for p in paths] == [model, model]


def test_download_with_wrong_checksum_fails(tmp_path: Path, http_root: tuple[Path, str]) -> None:
    root, base = http_root
    (root / "x.bin").write_bytes(b"what the server has")
    entry = asset("x.bin", b"what the manifest pins", url=f"{base}/x.bin")
    store = AssetStore(Manifest(file=(entry,), model=()), tmp_path / "cache")

    with pytest.raises(ChecksumMismatch, match=f"from {base}/x.bin"):
        store.fetch(entry)
    assert not (tmp_path / "cache" / "x.bin").exists()


def test_real_manifest_over_http_from_the_mirror_layout(
    tmp_path: Path, http_root: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shipped manifest's pins, served from a local copy of the cache (a few small files)."""
    root, base = http_root
    small = [f for f in MANIFEST.file if f.size < 50_000 and f.member is None][:5]
    entries = []
    for f in small:
        served = root / f.path
        served.parent.mkdir(parents=True, exist_ok=True)
        served.write_bytes((ROOT / ".cache" / "assets" / f.path).read_bytes())
        entries.append(f.model_copy(update={"url": f"{base}/{f.path}"}))
    store = AssetStore(Manifest(file=tuple(entries), model=()), tmp_path / "cache")
    assert len(store.fetch_all()) == len(small) == 5


def test_cli_reports_a_mismatch_with_exit_code_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    mirror = tmp_path / "mirror"
    (mirror / "images").mkdir(parents=True)
    (mirror / "images" / "a.bin").write_bytes(b"tampered")
    manifest = tmp_path / "manifest.toml"
    entry = asset("images/a.bin", b"good bytes")
    manifest.write_text(
        f'model = []\n[[file]]\npath = "{entry.path}"\nkind = "image"\nurl = "http://unused/"\n'
        f'sha256 = "{entry.sha256}"\nsize = {entry.size}\nlicense = "test"\n'
    )
    monkeypatch.setenv("ASSETS_MANIFEST", str(manifest))
    monkeypatch.setenv("ASSETS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("ASSETS_MIRROR", str(mirror))

    assert main(["fetch"]) == 1
    assert "sha256" in capsys.readouterr().err
