"""Unit fixtures: the real models and sample images from the verified asset cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from executor_service.models import ModelRegistry
from inference_common.assets import AssetStore, load_manifest

ROOT = Path(__file__).resolve().parents[3]
ASSETS = ROOT / ".cache" / "assets"
IMAGES = ASSETS / "images"


@pytest.fixture(scope="session")
def store() -> AssetStore:
    return AssetStore(load_manifest(ROOT / "assets" / "manifest.toml"), ASSETS)


@pytest.fixture(scope="session")
def registry(store: AssetStore) -> ModelRegistry:
    """One registry for the unit tests; every test runs on the main thread."""
    return ModelRegistry.load(store)


def image_bytes(name: str) -> bytes:
    return (IMAGES / name).read_bytes()
