"""A fleet of 20 devices into one Mosquitto for 5 minutes (CI only: it takes six)."""

from __future__ import annotations

import importlib.util
import os
import sys

import pytest
from broker_support import mosquitto_programs
from daemon_support import ROOT, emostream_command, shipped_model_dir
from test_monitor import tmux  # noqa: F401 (the tmux fixture)

FLEET_SWITCH = "EMOSTREAM_FLEET"
DEVICES = 20
SECONDS = 300.0
HOP_SECONDS = 0.5


def fleet_benchmark():
    """benchmarks/mqtt_fleet.py, which runs the fleet and measures it."""
    spec = importlib.util.spec_from_file_location(
        "mqtt_fleet", ROOT / "benchmarks" / "mqtt_fleet.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.fleet
@pytest.mark.skipif(
    not os.environ.get(FLEET_SWITCH),
    reason=f"the 6-minute fleet test (20 daemons and bridges) runs in CI; {FLEET_SWITCH}=1 runs it",
)
def test_twenty_devices_deliver_every_emotion_in_order_for_five_minutes_and_the_monitor_shows_them(  # noqa: E501
    tmp_path,
    tmux,  # noqa: F811
):
    mosquitto_programs()
    model_dir = shipped_model_dir()
    screens: list[str] = []

    def watch(broker_url: str):
        (tmp_path / "monitor.toml").write_text("")
        tmux.start(
            f"{emostream_command()[0]} monitor {broker_url} --config {tmp_path / 'monitor.toml'}"
        )

        def check() -> None:
            screens.append(tmux.wait_for(lambda s: f"{DEVICES} devices, {DEVICES} online" in s))

        return check

    report = fleet_benchmark().run_fleet(DEVICES, SECONDS, tmp_path, model_dir, during=watch)

    assert report.failures == []
    for row in report.rows:
        # Consecutive seq (checked above), and about one message per hop all along.
        assert row.emotions >= 0.95 * SECONDS / HOP_SECONDS, row
    rows = [line for line in screens[-1].splitlines() if "fleet-" in line]
    assert len(rows) == DEVICES, screens[-1]
    assert all("online" in row and "s ago" in row for row in rows), screens[-1]
