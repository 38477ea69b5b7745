"""Quantized TFLite models and the metadata that travels with each of them.

A model file ``NAME.tflite`` is loaded only with its ``NAME.json`` beside it, and only when the
feature parameters, labels and input shape in that metadata agree with the interpreter and with
the pipeline's own ``FeatureSpec``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from streamer.features import MODEL_INPUTS, FeatureSpec, FeatureStatistics
from streamer.shipped import MODEL_NAMES

_LOGGER = logging.getLogger(__name__)


class ModelError(Exception):
    """A model file or its metadata cannot be used; the message names the file."""


XNNPACK_NOTICE = "Created TensorFlow Lite XNNPACK delegate"
"""The start of the line TFLite's native code prints to standard error when it first uses its
fast CPU kernels: information for nobody, printed by every command that loads a model."""


@contextlib.contextmanager
def _without_xnnpack_notice() -> Iterator[None]:
    """Captures the process's standard error (file descriptor 2, where TFLite's C++ code writes)
    while TFLite loads or first runs a model; gives back everything except XNNPACK_NOTICE.

    Anything else written meanwhile, a TFLite error or another thread's log line, is passed on,
    only later.
    """
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no standard error at all: nothing to keep clean
        yield
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [
                line
                for line in captured.read().decode("utf-8", "replace").splitlines(keepends=True)
                if XNNPACK_NOTICE not in line
            ]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def _interpreter_class() -> type:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError as error:
            raise ModelError(
                "no TFLite runtime: install ai-edge-litert (or tflite-runtime)"
            ) from error
    return Interpreter


MAX_ENSEMBLE_WEIGHT = 1e6
"""Weights are relative; a bound keeps their sum finite."""


@dataclass(frozen=True)
class ModelMetadata:
    """What a model needs to be used correctly, and where it came from."""

    name: str
    """One of ``MODEL_NAMES``."""
    model_input: str
    """Feature the model reads: one of ``streamer.features.MODEL_INPUTS``."""
    labels: tuple[str, ...]
    """Output classes, in output order."""
    features: FeatureSpec
    """Feature parameters that made the training inputs."""
    input_shape: tuple[int, ...]
    """Interpreter input shape, batch first: (1, frames, columns, 1), or (1, functionals, 1)
    (``FeatureSpec.input_shape``)."""
    training: dict[str, Any] = field(default_factory=dict)
    """Corpora, speakers, label mapping and training settings."""
    statistics: FeatureStatistics | None = None
    """Feature statistics of the training set (the "speaker" normalisation starts from them)."""
    metrics: dict[str, Any] = field(default_factory=dict)
    """Evaluation figures at export time."""
    ensemble_weight: float = 1.0
    """How much this model's probabilities count in the ensemble's average (relative to the
    other models'): chosen on speakers held out of training (``training.fusion``). 0 leaves
    the model out of the ensemble while it still publishes its own label."""
    created: str = ""
    """ISO 8601 creation time (UTC)."""
    emostream_version: str = ""

    def to_json(self) -> str:
        values = asdict(self)
        values["features"] = self.features.to_dict()
        values["statistics"] = None if self.statistics is None else self.statistics.to_dict()
        return json.dumps(values, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_file(cls, path: Path) -> ModelMetadata:
        try:
            values = json.loads(path.read_text())
            values["features"] = FeatureSpec.from_dict(values["features"])
            if values.get("statistics") is not None:
                values["statistics"] = FeatureStatistics.from_dict(
                    values["statistics"], values["features"].statistics_columns
                )
            values["labels"] = tuple(values["labels"])
            values["input_shape"] = tuple(values["input_shape"])
            metadata = cls(**values)
        except FileNotFoundError:
            raise ModelError(f"{path}: model metadata file is missing") from None
        except (ValueError, KeyError, TypeError) as error:
            raise ModelError(f"{path}: invalid model metadata ({error})") from None
        weight = metadata.ensemble_weight
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise ModelError(f"{path}: ensemble_weight must be a number, not {weight!r}")
        if not 0 <= weight <= MAX_ENSEMBLE_WEIGHT:
            raise ModelError(
                f"{path}: ensemble_weight must be from 0 to {MAX_ENSEMBLE_WEIGHT:g}, "
                f"not {str(weight)[:20]}"
            )
        if metadata.model_input not in MODEL_INPUTS:
            raise ModelError(f"{path}: unknown model_input {metadata.model_input!r}")
        if metadata.features.normalisation == "speaker" and metadata.statistics is None:
            raise ModelError(f"{path}: speaker normalisation without training statistics")
        return metadata


def metadata_path(model_path: Path) -> Path:
    return model_path.with_suffix(".json")


class TFLiteModel:
    """One quantized classifier: a window of frame features in, class probabilities out."""

    def __init__(self, path: Path, spec: FeatureSpec | None = None, num_threads: int = 1) -> None:
        """Loads ``path`` and checks it; ``spec`` is the pipeline's, which the model must match."""
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"{self.path}: model file not found")
        self.metadata = ModelMetadata.from_file(metadata_path(self.path))
        if spec is not None and spec != self.metadata.features:
            raise ModelError(
                f"{self.path}: feature parameters differ from the pipeline's "
                f"({_first_difference(self.metadata.features, spec)})"
            )
        try:
            with _without_xnnpack_notice():
                self._interpreter = _interpreter_class()(
                    model_path=str(self.path), num_threads=num_threads
                )
                self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as error:
            raise ModelError(f"{self.path}: not a usable TFLite model ({error})") from None
        self._input = self._interpreter.get_input_details()[0]
        self._output = self._interpreter.get_output_details()[0]
        # What predict needs, looked up once: it runs every hop.
        self._input_shape = self._input["shape"]
        self._input_index = self._input["index"]
        self._input_dtype = self._input["dtype"]
        self._input_scale, self._input_zero = self._input["quantization"]
        self._input_range: tuple[int, int] | None = None
        if self._input_dtype != np.float32:
            info = np.iinfo(self._input_dtype)
            self._input_range = (int(info.min), int(info.max))
        self._output_index = self._output["index"]
        self._output_dtype = self._output["dtype"]
        self._output_scale, self._output_zero = self._output["quantization"]
        shape = tuple(int(n) for n in self._input["shape"])
        features = self.metadata.features
        expected = features.input_shape(self.metadata.model_input)
        if shape != self.metadata.input_shape or shape != expected:
            raise ModelError(
                f"{self.path}: interpreter input shape {shape} does not match metadata "
                f"{self.metadata.input_shape} and features {expected}"
            )
        n_outputs = int(self._output["shape"][-1])
        if n_outputs != len(self.metadata.labels):
            raise ModelError(
                f"{self.path}: {n_outputs} outputs but {len(self.metadata.labels)} labels"
            )
        # A damaged file can pass the checks above and fail only when first run (XNNPACK
        # prepares its kernels then): run it once now, not on the first speech of a live stream.
        try:
            with _without_xnnpack_notice():
                self.predict(np.zeros(shape[1:-1], np.float32))
        except (ValueError, RuntimeError) as error:
            reason = str(error).splitlines()[0][:120]
            raise ModelError(f"{self.path}: not a usable TFLite model ({reason})") from None

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def labels(self) -> tuple[str, ...]:
        return self.metadata.labels

    def predict(self, model_input: np.ndarray) -> np.ndarray:
        """Probabilities ((n_labels,) float32) for one normalised window: (frames, columns), or
        (functionals,) for the functionals model."""
        x = model_input.reshape(self._input_shape)
        if self._input_range is not None:
            x = np.clip(np.round(x / self._input_scale) + self._input_zero, *self._input_range)
        self._interpreter.set_tensor(self._input_index, x.astype(self._input_dtype))
        self._interpreter.invoke()
        y = self._interpreter.get_tensor(self._output_index)[0]
        if self._output_dtype != np.float32:
            y = (y.astype(np.float32) - self._output_zero) * self._output_scale
        return y.astype(np.float32)


def _first_difference(saved: FeatureSpec, wanted: FeatureSpec) -> str:
    for key, value in saved.to_dict().items():
        if wanted.to_dict()[key] != value:
            return f"{key}: model {value!r}, pipeline {wanted.to_dict()[key]!r}"
    return "none"


def model_path(model_dir: Path, name: str) -> Path:
    return Path(model_dir) / f"{name}.tflite"


def load_models(
    model_dir: Path, names: tuple[str, ...], spec: FeatureSpec | None = None
) -> list[TFLiteModel]:
    """Loads the named models from ``model_dir``; they must share one FeatureSpec.

    With ``spec`` None, the first model's spec becomes the pipeline's.
    """
    models: list[TFLiteModel] = []
    for name in names:
        if name not in MODEL_NAMES:
            raise ModelError(f"unknown model {name!r}: choose from {', '.join(MODEL_NAMES)}")
        model = TFLiteModel(model_path(model_dir, name), spec)
        spec = model.metadata.features
        models.append(model)
    _LOGGER.debug("loaded %s", ", ".join(str(m.path) for m in models))
    return models
