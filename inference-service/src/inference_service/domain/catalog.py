"""The models jobs can run, as the manifest lists them, with their default options."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inference_common.assets import CompositionSpec, Manifest, ModelSpec, load_manifest

log = logging.getLogger(__name__)


class UnknownModel(LookupError):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"there is no model {name!r}; GET /models lists them")


@dataclass(frozen=True)
class CatalogEntry:
    spec: ModelSpec | CompositionSpec
    labels: tuple[str, ...] | None

    @property
    def default_options(self) -> dict[str, Any]:
        if self.spec.task == "classification":
            return {"top_k": self.spec.default_top_k}
        if self.spec.task == "describe":
            return {
                "top_k": self.spec.default_top_k,
                "score_threshold": self.spec.default_score_threshold,
            }
        return {"score_threshold": self.spec.default_score_threshold}

    def options_with_defaults(self, options: dict[str, Any]) -> dict[str, Any]:
        return {**self.default_options, **options}

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.spec.name,
            "title": self.spec.title,
            "task": self.spec.task,
            "default_options": self.default_options,
            "label_count": len(self.labels) if self.labels is not None else None,
        }

    def detail(self) -> dict[str, Any]:
        return {**self.summary(), "labels": list(self.labels or ())}


class ModelCatalog:
    """Read once at start: the manifest, and each label file when the asset cache has it."""

    def __init__(self, entries: list[CatalogEntry]) -> None:
        self._entries = {entry.spec.name: entry for entry in entries}

    @classmethod
    def from_manifest(cls, manifest: Manifest, cache_dir: Path) -> ModelCatalog:
        models = [CatalogEntry(spec, _labels(spec, cache_dir)) for spec in manifest.model]
        # A composition (describe) answers in words: no label list of its own.
        return cls(models + [CatalogEntry(spec, None) for spec in manifest.composition])

    @classmethod
    def load(cls, manifest_path: Path, cache_dir: Path) -> ModelCatalog:
        return cls.from_manifest(load_manifest(manifest_path), cache_dir)

    def entries(self) -> list[CatalogEntry]:
        return list(self._entries.values())

    def get(self, name: str) -> CatalogEntry:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownModel(name) from None


def _labels(spec: ModelSpec, cache_dir: Path) -> tuple[str, ...] | None:
    if spec.labels is not None:
        return spec.labels
    assert spec.labels_file is not None
    path = cache_dir / spec.labels_file
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        log.warning("labels of %s not available at %s", spec.name, path)
        return None
    # Line n is class n: keep blank lines in the middle, drop only the trailing ones.
    while lines and not lines[-1].strip():
        lines.pop()
    return tuple(line.strip() for line in lines)
