"""What both peers run per image, written as a user would: Pillow's plain decode and resize,
then one LiteRT invoke on an interpreter of one thread, loaded once per process."""

from __future__ import annotations

import io
from typing import Any, Final

import numpy as np
from ai_edge_litert.interpreter import Interpreter
from PIL import Image

from inference_common.assets import AssetStore
from inference_common.settings import CommonSettings

MODEL: Final = "mobilenet-v2-imagenet-quant"


class Classifier:
    def __init__(self, top_k: int = 5) -> None:
        store = AssetStore.from_settings(CommonSettings())
        spec = store.manifest.model_spec(MODEL)
        self._interpreter = Interpreter(model_path=str(store.path_of(spec.file)), num_threads=1)
        self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]
        self._output = self._interpreter.get_output_details()[0]
        _, self._height, self._width, _ = self._input["shape"]
        labels_file = spec.labels_file or ""
        self._labels = store.path_of(labels_file).read_text().splitlines()
        self._offset = spec.label_offset
        self._top_k = top_k

    def classify(self, data: bytes) -> list[dict[str, Any]]:
        """The top classes of an encoded image: [{"label": ..., "score": ...}, ...]."""
        image = Image.open(io.BytesIO(data)).convert("RGB").resize((self._width, self._height))
        self._interpreter.set_tensor(self._input["index"], np.asarray(image)[np.newaxis])
        self._interpreter.invoke()
        raw = self._interpreter.get_tensor(self._output["index"])[0]
        scale, zero_point = self._output["quantization"]
        scores = (raw.astype(np.float32) - zero_point) * scale
        top = np.argsort(scores)[::-1][: self._top_k]
        return [
            {"label": self._labels[int(i) + self._offset], "score": round(float(scores[i]), 4)}
            for i in top
        ]
