"""The asset manifest (assets/manifest.toml) and the command that fetches and verifies it.

Files come from a mirror directory when one is given (CI uses ../shared), otherwise from
their pinned upstream URL. Nothing reaches the cache unless its sha256 matches.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import sys
import tempfile
import tomllib
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from inference_common.settings import CommonSettings

Task = Literal["classification", "object_detection"]


class AssetFile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str
    kind: Literal["model", "labels", "image", "dataset"]
    url: str
    member: str | None = None
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(gt=0)
    license: str
    credit: str | None = None
    note: str | None = None


class ModelSpec(BaseModel):
    """How to feed a model and read its answer; see the comment above [[model]] in the manifest."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]*$")
    title: str
    task: Task
    file: str
    labels_file: str | None = None
    labels: tuple[str, ...] | None = None
    label_offset: int = 0
    input_values: Literal["pixels", "unit"]
    color: Literal["RGB", "L"]
    resize: Literal["stretch", "center_crop"]
    stateful: bool = False
    default_top_k: int = Field(default=5, ge=1)
    default_score_threshold: float = Field(default=0.5, ge=0, le=1)
    measured: str = ""

    @model_validator(mode="after")
    def _one_label_source(self) -> ModelSpec:
        if (self.labels_file is None) == (self.labels is None):
            raise ValueError(f"model {self.name}: give exactly one of labels_file and labels")
        return self


class CompositionSpec(BaseModel):
    """A task made of the manifest's models, run on one image as one job with one result.

    `describe`: the detector's objects counted into a short English sentence, with the
    classifier's top class for the whole image when its score reaches `scene_threshold`. A
    description composed from detections, not a neural caption.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]*$")
    title: str
    task: Literal["describe"]
    detector: str
    classifier: str
    default_score_threshold: float = Field(default=0.5, ge=0, le=1)
    default_top_k: int = Field(default=5, ge=1)
    scene_threshold: float = Field(default=0.5, ge=0, le=1)
    max_kinds: int = Field(default=4, ge=1)  # kinds of object named; the rest are "other"
    measured: str = ""


class Manifest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    file: tuple[AssetFile, ...]
    model: tuple[ModelSpec, ...]
    composition: tuple[CompositionSpec, ...] = ()

    @model_validator(mode="after")
    def _references_exist(self) -> Manifest:
        paths = {f.path for f in self.file}
        for spec in self.model:
            for ref in (spec.file, spec.labels_file):
                if ref is not None and ref not in paths:
                    raise ValueError(f"model {spec.name} names {ref}, which has no [[file]] entry")
        tasks = {spec.name: spec.task for spec in self.model}
        for composition in self.composition:
            wanted = {
                composition.detector: "object_detection",
                composition.classifier: "classification",
            }
            for name, task in wanted.items():
                if tasks.get(name) != task:
                    raise ValueError(
                        f"composition {composition.name} needs {name} to be a model of task {task}"
                    )
        names = [spec.name for spec in self.model] + [spec.name for spec in self.composition]
        if len(set(names)) != len(names):
            raise ValueError("model and composition names must be unique")
        return self

    def images(self) -> list[AssetFile]:
        return [f for f in self.file if f.kind == "image"]

    def model_spec(self, name: str) -> ModelSpec:
        for spec in self.model:
            if spec.name == name:
                return spec
        raise KeyError(name)


class ChecksumMismatch(RuntimeError):
    """A file's bytes are not the ones the manifest pins: never cached, never used."""


def load_manifest(path: Path) -> Manifest:
    with path.open("rb") as handle:
        return Manifest.model_validate(tomllib.load(handle))


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(eq=False)
class AssetStore:
    """Where the verified files live: `path_of` only answers for files already fetched."""

    manifest: Manifest
    cache_dir: Path
    mirror: Path | None = None
    timeout: float = 60

    @classmethod
    def from_settings(cls, settings: CommonSettings) -> AssetStore:
        return cls(
            load_manifest(settings.assets_manifest),
            settings.assets_cache_dir,
            settings.assets_mirror,
        )

    def path_of(self, relative: str) -> Path:
        path = self.cache_dir / relative
        if not path.is_file():
            raise FileNotFoundError(f"{relative} is not fetched yet: run `inference-assets fetch`")
        return path

    def fetch_all(self, kinds: set[str] | None = None) -> list[Path]:
        return [self.fetch(f) for f in self.manifest.file if kinds is None or f.kind in kinds]

    def fetch(self, asset: AssetFile) -> Path:
        target = self.cache_dir / asset.path
        if target.is_file() and sha256_of(target.read_bytes()) == asset.sha256:
            return target
        data = self._read_mirror(asset) if self.mirror else self._download(asset)
        actual = sha256_of(data)
        if actual != asset.sha256:
            source = self.mirror / asset.path if self.mirror else asset.url
            raise ChecksumMismatch(
                f"{asset.path}: sha256 {actual} from {source}, manifest pins {asset.sha256}"
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename, so an interrupted fetch never leaves a half file behind.
        with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp:
            tmp.write(data)
        os.replace(tmp.name, target)
        return target

    def _read_mirror(self, asset: AssetFile) -> bytes:
        assert self.mirror is not None
        source = self.mirror / asset.path
        if not source.is_file():
            raise FileNotFoundError(f"{asset.path} is not in the mirror {self.mirror}")
        return source.read_bytes()

    def _download(self, asset: AssetFile) -> bytes:
        request = urllib.request.Request(asset.url, headers={"User-Agent": "inference-assets"})
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            body: bytes = response.read()
        if asset.member is None:
            return body
        with zipfile.ZipFile(io.BytesIO(body)) as archive:
            return archive.read(asset.member)


def credits(manifest: Manifest) -> list[str]:
    """Attribution lines for the files that ask for one (CC BY 2.0 images, MNIST)."""
    return [f"{Path(f.path).name}: {f.credit}" for f in manifest.file if f.credit]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="inference-assets", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    fetch = commands.add_parser("fetch", help="download or copy every file, verifying sha256")
    fetch.add_argument("--kind", action="append", help="only this kind (repeatable)")
    commands.add_parser("list", help="the files and where they come from")
    commands.add_parser("credits", help="attribution for the images and data sets")
    args = parser.parse_args(argv)

    settings = CommonSettings()
    store = AssetStore.from_settings(settings)
    if args.command == "list":
        for f in store.manifest.file:
            print(f"{f.path}\t{f.size}\t{f.license}\t{f.url}")
    elif args.command == "credits":
        print("\n".join(credits(store.manifest)))
    else:
        origin = f"mirror {store.mirror}" if store.mirror else "upstream URLs"
        try:
            paths = store.fetch_all(set(args.kind) if args.kind else None)
        except (ChecksumMismatch, OSError) as exc:
            print(f"inference-assets: {exc}", file=sys.stderr)
            return 1
        size_mb = sum(p.stat().st_size for p in paths) / 1e6
        print(f"{len(paths)} files ({size_mb:.1f} MB) verified in {store.cache_dir}, from {origin}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
