"""Shared fixtures: where the corpora and the committed clips are."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from needs import unavailable

ROOT = Path(__file__).resolve().parent.parent
TEST_DATA = ROOT / "tests" / "data"


def corpus_root() -> Path:
    return Path(os.environ.get("EMOSTREAM_DATA", ROOT.parent / "shared" / "datasets"))


@pytest.fixture(scope="session")
def datasets() -> Path:
    """The shared corpora; tests that need them skip (with the reason) on a fresh clone."""
    root = corpus_root()
    missing = [name for name in ("emodb", "ravdess", "tess") if not (root / name).is_dir()]
    if missing:
        reason = f"corpora {', '.join(missing)} not found under {root} (set EMOSTREAM_DATA)"
        unavailable(reason)
    return root


@pytest.fixture(scope="session")
def test_clips() -> list[Path]:
    """Short real clips committed with the repository (see tests/data/README.md)."""
    return sorted(TEST_DATA.glob("*.wav"))
