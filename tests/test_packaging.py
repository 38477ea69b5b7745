"""What a wheel carries: every package of the code, and the shipped models wherever installed."""

from __future__ import annotations

import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

from streamer.shipped import shipped_model_dir

ROOT = Path(__file__).resolve().parent.parent


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_package_directory_is_listed_so_the_wheel_carries_it():
    """setuptools builds only the listed packages: a new subpackage left out of the list
    installs fine in a checkout (editable) and is missing from every wheel."""
    listed = set(pyproject()["tool"]["setuptools"]["packages"])
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for top in ("streamer", "training")
        for init in (ROOT / top).rglob("__init__.py")
    }
    assert found <= listed, f"add to [tool.setuptools] packages: {sorted(found - listed)}"


def test_the_shipped_models_are_package_data_by_pattern_so_new_files_come_along():
    setuptools = pyproject()["tool"]["setuptools"]
    assert setuptools["package-dir"]["streamer.shipped_models"] == "models"
    assert setuptools["package-data"]["streamer.shipped_models"] == ["*"]


def test_a_checkout_finds_its_models_beside_the_code():
    assert shipped_model_dir() == ROOT / "models"
    assert (shipped_model_dir() / "cnn.tflite").is_file()
