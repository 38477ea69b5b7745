"""The systemd units pass systemd's own checks, and the system unit is hardened (exposure <= 2)."""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from streamer.config import load_config

ROOT = Path(__file__).resolve().parent.parent
SYSTEM_UNIT = ROOT / "systemd" / "emostream.service"
USER_UNIT = ROOT / "systemd" / "emostream-user.service"
EXAMPLE_CONFIG = ROOT / "systemd" / "emostream.toml"
MAX_EXPOSURE = 2.0


@pytest.fixture(scope="module")
def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        if os.environ.get("EMOSTREAM_REQUIRE_DATA"):
            pytest.fail("systemd-analyze is not installed (apt install systemd)")
        pytest.skip("systemd-analyze is not installed")
    return path


def read_unit(path: Path) -> configparser.ConfigParser:
    """The unit as sections of keys; a repeated key keeps its last value."""
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # systemd keys are case-sensitive
    unit.read_string(path.read_text())
    return unit


def installed_copy(unit: Path, directory: Path, install_path: str) -> Path:
    """A copy of ``unit`` whose ExecStart runs the emostream installed here.

    ``verify`` refuses a unit whose program does not exist, and the units name the install
    location README.md describes; only that path is replaced.
    """
    executable = shutil.which("emostream")
    assert executable, "the emostream command is not installed (pip install -e .)"
    text = unit.read_text()
    assert install_path in text
    copy = directory / unit.name
    copy.write_text(text.replace(install_path, executable))
    return copy


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        args, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=60
    )


def test_system_unit_passes_systemd_analyze_verify(systemd_analyze, tmp_path):
    unit = installed_copy(SYSTEM_UNIT, tmp_path, "/opt/emostream/venv/bin/emostream")
    result = run(systemd_analyze, "verify", str(unit))
    assert result.returncode == 0, result.stderr
    # verify reports unknown keys and bad values as warnings with exit status 0: none allowed.
    assert result.stderr.strip() == ""


def test_user_unit_passes_systemd_analyze_verify(systemd_analyze, tmp_path):
    unit = installed_copy(USER_UNIT, tmp_path, "%h/.local/share/emostream/venv/bin/emostream")
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    result = run(
        systemd_analyze, "--user", "verify", str(unit), env={"XDG_RUNTIME_DIR": str(runtime)}
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""


def test_system_unit_exposure_is_at_most_two(systemd_analyze):
    result = run(systemd_analyze, "security", "--offline=true", str(SYSTEM_UNIT))
    assert result.returncode == 0, result.stderr
    match = re.search(r"Overall exposure level for emostream\.service: (\d+\.\d+)", result.stdout)
    assert match, result.stdout[-500:]
    assert float(match.group(1)) <= MAX_EXPOSURE, result.stdout


def test_both_units_are_supervised_notify_services():
    for path in (SYSTEM_UNIT, USER_UNIT):
        service = read_unit(path)["Service"]
        assert service["Type"] == "notify", path
        assert service["Restart"] == "on-failure", path
        assert int(service["WatchdogSec"].removesuffix("s")) >= 10, path
        assert "emostream serve" in service["ExecStart"], path
        assert service["NoNewPrivileges"] == "yes", path
        assert service["MemoryMax"], path


def test_system_unit_runs_as_a_dedicated_user_in_the_audio_group_on_a_read_only_system():
    service = read_unit(SYSTEM_UNIT)["Service"]
    assert service["User"] == "emostream" and service["Group"] == "emostream"
    assert service["SupplementaryGroups"] == "audio"
    assert service["ProtectSystem"] == "strict"
    assert service["PrivateTmp"] == "yes"
    assert service["RestrictAddressFamilies"] == "AF_UNIX AF_INET AF_INET6"
    assert service["DeviceAllow"] == "char-alsa rw"
    assert "--config /etc/emostream/emostream.toml" in service["ExecStart"]


def test_the_example_config_is_valid_and_matches_the_system_install():
    config = load_config(EXAMPLE_CONFIG, {})
    assert config.pipeline.model_dir == Path("/opt/emostream/models")
    assert config.publish.bind == "tcp://127.0.0.1:5556"
    assert config.source.source == "mic"
