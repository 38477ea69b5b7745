"""What a test does when a part it needs is missing: skip on a user's machine, fail in CI."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def unavailable(reason: str) -> NoReturn:
    """Skips with ``reason``; under EMOSTREAM_REQUIRE_DATA (set by .ci/run) fails instead."""
    if os.environ.get("EMOSTREAM_REQUIRE_DATA"):
        pytest.fail(reason)
    pytest.skip(reason)
