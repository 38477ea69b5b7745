"""The model names the pipeline knows and the folder the shipped models live in.

Kept apart from ``streamer.models`` (which loads TFLite and numpy) so that reading settings,
which names both as defaults, imports nothing heavy.
"""

from __future__ import annotations

from pathlib import Path

MODEL_NAMES: tuple[str, ...] = ("cnn", "lstm", "functionals")
"""Every model the pipeline can run, in the order their probabilities are listed."""


def shipped_model_dir() -> Path:
    """The models that ship with emostream.

    An installed wheel (or ``pip install .``) carries the repository's ``models/`` as the
    package data ``streamer/shipped_models``; a checkout (or an editable install) has it beside
    ``streamer/``.
    """
    package = Path(__file__).resolve().parent
    installed = package / "shipped_models"
    return installed if installed.is_dir() else package.parent / "models"


DEFAULT_MODEL_DIR = shipped_model_dir()
"""The shipped ``NAME.tflite`` and ``NAME.json`` files."""
