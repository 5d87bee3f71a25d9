"""The REST contract names exactly the models and compositions the catalog has
(openapi/inference-api.yaml)."""

from pathlib import Path

import yaml

from inference_common.assets import load_manifest

ROOT = Path(__file__).resolve().parents[2]


def test_the_model_enum_is_the_manifest() -> None:
    spec = yaml.safe_load((ROOT / "openapi" / "inference-api.yaml").read_text())
    manifest = load_manifest(ROOT / "assets" / "manifest.toml")
    names = [m.name for m in manifest.model] + [c.name for c in manifest.composition]
    assert spec["components"]["schemas"]["ModelName"]["enum"] == names
