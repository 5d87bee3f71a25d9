from pathlib import Path

import pytest

from inference_service.domain.catalog import ModelCatalog, UnknownModel

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def catalog() -> ModelCatalog:
    return ModelCatalog.load(ROOT / "assets" / "manifest.toml", ROOT / ".cache" / "assets")


def test_every_manifest_model_is_offered(catalog: ModelCatalog) -> None:
    names = [entry.spec.name for entry in catalog.entries()]
    assert "mobilenet-v2-imagenet-quant" in names and "ssd-mobilenet-v1-coco-quant" in names


def test_default_options_follow_the_task(catalog: ModelCatalog) -> None:
    assert catalog.get("mobilenet-v2-imagenet-quant").default_options == {"top_k": 5}
    assert catalog.get("ssd-mobilenet-v1-coco-quant").default_options == {"score_threshold": 0.5}
    entry = catalog.get("mobilenet-v2-imagenet-quant")
    assert entry.options_with_defaults({"top_k": 3}) == {"top_k": 3}


def test_inline_labels_need_no_cache(tmp_path: Path) -> None:
    catalog = ModelCatalog.load(ROOT / "assets" / "manifest.toml", tmp_path)
    digits = catalog.get("mnist-lstm-tflm-int8").detail()
    assert digits["labels"] == [str(d) for d in range(10)] and digits["label_count"] == 10
    # A label file the cache lacks leaves the count unknown rather than failing.
    assert catalog.get("mobilenet-v2-imagenet-quant").summary()["label_count"] is None


def test_unknown_model(catalog: ModelCatalog) -> None:
    with pytest.raises(UnknownModel):
        catalog.get("resnet-9000")


def test_the_describe_composition_is_offered_with_both_options(catalog: ModelCatalog) -> None:
    entry = catalog.get("describe-coco-imagenet")
    summary = entry.summary()
    assert (summary["task"], summary["label_count"]) == ("describe", None)
    assert "not a neural caption" in summary["title"]
    assert entry.default_options == {"top_k": 5, "score_threshold": 0.5}
    assert entry.options_with_defaults({"score_threshold": 0.7})["score_threshold"] == 0.7
    assert [e.spec.name for e in catalog.entries()][-1] == "describe-coco-imagenet"
