"""The models of the manifest, loaded into LiteRT interpreters.

An interpreter is not thread-safe, so every worker owns a `ModelRegistry` of its own. What a
model wants (size, channels, dtype, quantization) is read from its tensors, never assumed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from ai_edge_litert.interpreter import Interpreter

from executor_service.errors import ErrorCode, JobFailure
from inference_common.assets import AssetStore, CompositionSpec, ModelSpec


@dataclass(frozen=True)
class TensorInfo:
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    # (scale, zero_point); scale 0 means the tensor holds real values (float).
    scale: float
    zero_point: int

    @classmethod
    def from_details(cls, details: dict[str, Any]) -> TensorInfo:
        scale, zero_point = details["quantization"]
        return cls(
            index=int(details["index"]),
            name=str(details["name"]),
            shape=tuple(int(n) for n in details["shape"]),
            dtype=np.dtype(details["dtype"]),
            scale=float(scale),
            zero_point=int(zero_point),
        )

    @property
    def quantized(self) -> bool:
        return self.scale != 0.0


@dataclass(frozen=True)
class InputLayout:
    """The image a model takes: [1, H, W] (grayscale, no channel axis) or [1, H, W, C]."""

    height: int
    width: int
    channels: int
    tensor: TensorInfo

    @classmethod
    def of(cls, tensor: TensorInfo) -> InputLayout:
        shape = tensor.shape
        if len(shape) == 3 and shape[0] == 1:
            return cls(shape[1], shape[2], 1, tensor)
        if len(shape) == 4 and shape[0] == 1 and shape[3] in (1, 3):
            return cls(shape[1], shape[2], shape[3], tensor)
        raise ValueError(f"input tensor {tensor.name} has shape {shape}, not an image batch of 1")

    @property
    def size(self) -> tuple[int, int]:
        """(width, height), the order Pillow uses."""
        return self.width, self.height


class LoadedModel:
    """One model in one interpreter: feed it a prepared tensor, get its raw outputs back."""

    def __init__(self, spec: ModelSpec, interpreter: Any, labels: Sequence[str]) -> None:
        self.spec = spec
        self.labels = tuple(labels)
        self._interpreter = interpreter
        interpreter.allocate_tensors()
        inputs = interpreter.get_input_details()
        if len(inputs) != 1:
            raise ValueError(f"model {spec.name} has {len(inputs)} inputs; images need one")
        self.input = InputLayout.of(TensorInfo.from_details(inputs[0]))
        expected = 1 if spec.color == "L" else 3
        if self.input.channels != expected:
            raise ValueError(
                f"model {spec.name}: manifest color {spec.color} but the input has "
                f"{self.input.channels} channels"
            )
        if spec.input_values == "pixels" and self.input.tensor.dtype not in (np.uint8, np.float32):
            raise ValueError(f"model {spec.name}: 'pixels' input needs uint8 or float32")
        # get_output_details() order is the model's own (for the SSD post-processing op:
        # boxes, classes, scores, count); decoding relies on it.
        self.outputs = tuple(TensorInfo.from_details(d) for d in interpreter.get_output_details())
        if spec.task == "object_detection" and len(self.outputs) != 4:
            raise ValueError(f"model {spec.name}: a detector needs 4 outputs (SSD post-processing)")

    @property
    def name(self) -> str:
        return self.spec.name

    def run(self, tensor: npt.NDArray[Any]) -> list[npt.NDArray[Any]]:
        """Invoke once; model errors become a `model_error` failure, not a crash."""
        try:
            if self.spec.stateful:
                # LSTM state lives in variable tensors and survives invoke(): without the
                # reset, each answer depends on the previous requests (-6 to -11 points).
                self._interpreter.reset_all_variables()
            self._interpreter.set_tensor(self.input.tensor.index, tensor)
            self._interpreter.invoke()
            return [self._interpreter.get_tensor(out.index) for out in self.outputs]
        except (ValueError, RuntimeError) as exc:
            raise JobFailure(ErrorCode.MODEL_ERROR, f"model {self.name} failed: {exc}") from exc

    def warm_up(self) -> None:
        """The first invoke() prepares kernels (XNNPACK packs weights); pay it at start."""
        tensor = self.input.tensor
        self.run(np.zeros(tensor.shape, dtype=tensor.dtype))


def read_labels(spec: ModelSpec, store: AssetStore) -> tuple[str, ...]:
    if spec.labels is not None:
        return spec.labels
    assert spec.labels_file is not None  # the manifest validator requires one of the two
    text = store.path_of(spec.labels_file).read_text(encoding="utf-8")
    return tuple(line.strip() for line in text.splitlines())


def load_model(spec: ModelSpec, store: AssetStore, threads: int) -> LoadedModel:
    path: Path = store.path_of(spec.file)
    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    return LoadedModel(spec, interpreter, read_labels(spec, store))


class ModelRegistry:
    """Every model a worker serves, by name, and the compositions made of them."""

    def __init__(
        self, models: Iterable[LoadedModel], compositions: Iterable[CompositionSpec] = ()
    ) -> None:
        self._models = {model.name: model for model in models}
        self._compositions = {spec.name: spec for spec in compositions}

    @classmethod
    def load(cls, store: AssetStore, threads: int = 1, warm: bool = True) -> ModelRegistry:
        manifest = store.manifest
        registry = cls(
            (load_model(spec, store, threads) for spec in manifest.model), manifest.composition
        )
        if warm:
            for model in registry:
                model.warm_up()
        return registry

    def get(self, name: str) -> LoadedModel:
        try:
            return self._models[name]
        except KeyError:
            known = ", ".join(sorted(self._models))
            raise JobFailure(
                ErrorCode.UNKNOWN_MODEL, f"unknown model {name!r}; this executor serves {known}"
            ) from None

    def composition(self, name: str) -> CompositionSpec:
        try:
            return self._compositions[name]
        except KeyError:
            known = ", ".join(sorted(self._compositions))
            raise JobFailure(
                ErrorCode.UNKNOWN_MODEL, f"unknown composition {name!r}; this executor has {known}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._models)

    def __iter__(self) -> Iterator[LoadedModel]:
        return iter(self._models.values())
