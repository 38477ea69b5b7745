"""A fleet on one machine: N daemons on file sources in real time, each with its MQTT bridge,
into one Mosquitto, read by mosquitto_sub.

Each device N is ``emostream serve --source CLIP --loop --device fleet-NN`` plus
``emostream mqtt --device fleet-NN``. Once every device's emotion messages reach the
subscriber, a measured period begins: each bridge's and daemon's CPU time (utime + stime from
/proc) and resident memory are sampled, and every emotion message the subscriber receives is
checked for consecutive ``seq`` per device. Prints a table (or ``--json``); exits 1 if any
device lost or repeated a message, or if a bridge did not stop cleanly on SIGTERM.

    nice -n 10 python benchmarks/mqtt_fleet.py                 # 20 devices, 5 minutes
    python benchmarks/mqtt_fleet.py --devices 5 --duration 60  # a quick look

The bridge's CPU is also given as a fraction of its own daemon's, measured in the same run:
the bridge's cost against the baseline of the work it reports on.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLIP = ROOT / "tests" / "data" / "03a01Wa.wav"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SAMPLE_SECONDS = 5.0
"""Interval between resident-memory samples."""
BRIDGE_STOP_SECONDS = 30.0
"""How long a bridge may take to exit after SIGTERM before it counts as hung. Unloaded it
takes well under a second (publish ``offline``, disconnect, interpreter exit), some 1.3 s
beside ten busy loops; while twenty daemons and bridges share two cores with other work, 10 s
was once not enough. A hung bridge never exits, so a wide limit still catches it."""


@dataclass
class DeviceFigures:
    """One device over the measured period."""

    name: str
    """Device name (``fleet-NN``)."""
    emotions: int
    """Emotion messages the subscriber received."""
    missed: int
    """Gaps in ``seq``: messages that never arrived."""
    repeated: int
    """Messages that arrived again or out of order (``seq`` not increasing)."""
    bridge_cpu_percent: float
    """Bridge CPU time over wall time (% of one core)."""
    bridge_rss_mb: float
    """Largest resident memory of the bridge sampled (MiB)."""
    daemon_cpu_percent: float
    """The daemon's CPU time over wall time (% of one core)."""
    daemon_rss_mb: float
    """Largest resident memory of the daemon sampled (MiB)."""
    bridge_exit: int | None = None
    """The bridge's exit status after SIGTERM (0 expected)."""


@dataclass
class FleetReport:
    """Figures of one fleet run."""

    devices: int
    """Devices (daemon + bridge pairs) run."""
    seconds: float
    """Length of the measured period."""
    machine: str
    """CPU architecture and core count."""
    rows: list[DeviceFigures] = field(default_factory=list)
    """Per device."""
    broker_cpu_percent: float = 0.0
    """Mosquitto's CPU over the period (% of one core)."""

    def mean(self, name: str) -> float:
        return sum(getattr(row, name) for row in self.rows) / max(1, len(self.rows))

    @property
    def failures(self) -> list[str]:
        """What did not hold; empty for a pass."""
        found = [
            f"{row.name}: {row.missed} missed, {row.repeated} repeated"
            for row in self.rows
            if row.missed or row.repeated or row.emotions == 0
        ]
        found += [
            f"{row.name}: bridge exited {row.bridge_exit} on SIGTERM"
            for row in self.rows
            if row.bridge_exit != 0
        ]
        return found


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process ``pid`` so far (seconds), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_mb(pid: int) -> float:
    """Resident set size of process ``pid`` (MiB), from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def _emostream() -> str:
    return shutil.which("emostream") or str(Path(sys.executable).parent / "emostream")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class EmotionTally:
    """mosquitto_sub on PREFIX/+/emotion; (arrival, seq) per device from a reader thread."""

    def __init__(self, host: str, port: int) -> None:
        self.seen: dict[str, list[tuple[float, int]]] = defaultdict(list)
        self.process = subprocess.Popen(
            ["mosquitto_sub", "-h", host, "-p", str(port), "-t", "emostream/+/emotion"]
            + ["-F", "%t %p"],
            stdout=subprocess.PIPE,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            topic, _, payload = line.partition(" ")
            device = topic.split("/")[1]
            self.seen[device].append((time.monotonic(), json.loads(payload)["seq"]))

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(5)


def start_broker(workdir: Path) -> tuple[subprocess.Popen, int]:
    """A Mosquitto of our own on a free loopback port."""
    port = _free_port()
    config = workdir / "mosquitto.conf"
    config.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nuser root\n"
    )
    program = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    broker = subprocess.Popen([program, "-c", str(config)], stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return broker, port
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"mosquitto did not listen on {port}")


def run_fleet(
    devices: int,
    duration: float,
    workdir: Path,
    model_dir: Path | None = None,
    during: Callable[[str], Callable[[], None]] | None = None,
) -> FleetReport:
    """Runs the fleet; measures ``duration`` seconds once every device is heard.

    ``during(broker_url)`` is called when the measured period begins and returns a check,
    called at its end (the tests look at the fleet monitor then).
    """
    broker, broker_port = start_broker(workdir)
    url = f"mqtt://127.0.0.1:{broker_port}"
    tally = EmotionTally("127.0.0.1", broker_port)
    names = [f"fleet-{index:02d}" for index in range(devices)]
    daemons: dict[str, subprocess.Popen] = {}
    bridges: dict[str, subprocess.Popen] = {}
    logs = []
    try:
        for name in names:
            config = workdir / f"{name}.toml"
            config.write_text("")  # isolated: no user or system config is read
            address = f"ipc://{workdir / name}.sock"
            log = (workdir / f"{name}.log").open("w")
            logs.append(log)
            daemon = [_emostream(), "serve", "--source", str(CLIP), "--loop", "--bind", address]
            daemon += ["--device", name, "--config", str(config)]
            if model_dir is not None:
                daemon += ["--models-dir", str(model_dir)]
            daemons[name] = subprocess.Popen(daemon, stdout=subprocess.DEVNULL, stderr=log)
            bridges[name] = subprocess.Popen(
                [_emostream(), "mqtt", address, "--broker", url, "--device", name]
                + ["--config", str(config)],
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        deadline = time.monotonic() + 60 + 10 * devices
        while not all(tally.seen.get(name) for name in names):
            exited = [n for n in names if daemons[n].poll() is not None or bridges[n].poll()]
            if exited or time.monotonic() > deadline:
                silent = [name for name in names if not tally.seen.get(name)]
                raise SystemExit(f"not heard from {silent} (exited: {exited}); logs in {workdir}")
            time.sleep(0.5)
        processes = {**{f"b:{n}": p for n, p in bridges.items()}, **daemons}
        started_cpu = {key: cpu_seconds(p.pid) for key, p in processes.items()}
        peak_rss: dict[str, float] = defaultdict(float)
        broker_cpu = cpu_seconds(broker.pid)
        began = time.monotonic()
        check = during(url) if during is not None else None
        while time.monotonic() - began < duration:
            for key, process in processes.items():
                peak_rss[key] = max(peak_rss[key], rss_mb(process.pid))
            time.sleep(min(SAMPLE_SECONDS, max(0.0, duration - (time.monotonic() - began))))
        ended = time.monotonic()
        elapsed = ended - began
        used = {key: cpu_seconds(p.pid) - started_cpu[key] for key, p in processes.items()}
        if check is not None:
            check()
        report = FleetReport(devices, elapsed, f"{platform.machine()}, {os.cpu_count()} cores")
        report.broker_cpu_percent = 100 * (cpu_seconds(broker.pid) - broker_cpu) / elapsed
        for name in names:
            seqs = [seq for at, seq in tally.seen[name] if began <= at <= ended]
            steps = list(zip(seqs, seqs[1:], strict=False))
            report.rows.append(
                DeviceFigures(
                    name=name,
                    emotions=len(seqs),
                    missed=sum(b - a - 1 for a, b in steps if b > a + 1),
                    repeated=sum(b <= a for a, b in steps),
                    bridge_cpu_percent=100 * used[f"b:{name}"] / elapsed,
                    bridge_rss_mb=peak_rss[f"b:{name}"],
                    daemon_cpu_percent=100 * used[name] / elapsed,
                    daemon_rss_mb=peak_rss[name],
                )
            )
        for row in report.rows:
            bridge = bridges[row.name]
            bridge.send_signal(signal.SIGTERM)
            try:
                row.bridge_exit = bridge.wait(BRIDGE_STOP_SECONDS)
            except subprocess.TimeoutExpired:
                row.bridge_exit = None
        return report
    finally:
        for process in [*bridges.values(), *daemons.values()]:
            if process.poll() is None:
                process.terminate()
        for process in [*bridges.values(), *daemons.values()]:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        tally.close()
        broker.terminate()
        broker.wait(5)
        for log in logs:
            log.close()


def print_report(report: FleetReport) -> None:
    print(f"{report.devices} devices for {report.seconds:.0f} s on {report.machine}")
    print(f"{'device':<10} {'emotions':>8} {'missed':>6} {'bridge cpu':>10} {'bridge rss':>10}"
          f" {'daemon cpu':>10} {'daemon rss':>10}")  # fmt: skip
    for row in report.rows:
        print(
            f"{row.name:<10} {row.emotions:>8} {row.missed:>6} {row.bridge_cpu_percent:>9.2f}%"
            f" {row.bridge_rss_mb:>7.1f} MiB {row.daemon_cpu_percent:>9.2f}%"
            f" {row.daemon_rss_mb:>7.1f} MiB"
        )
    bridge_cpu, daemon_cpu = report.mean("bridge_cpu_percent"), report.mean("daemon_cpu_percent")
    print(
        f"per bridge: {bridge_cpu:.2f}% of a core, {report.mean('bridge_rss_mb'):.1f} MiB;"
        f" per daemon: {daemon_cpu:.2f}%, {report.mean('daemon_rss_mb'):.1f} MiB;"
        f" bridge/daemon CPU {bridge_cpu / max(daemon_cpu, 1e-9):.2f};"
        f" broker {report.broker_cpu_percent:.2f}%"
    )
    for failure in report.failures:
        print(f"FAIL {failure}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--duration", type=float, default=300.0, help="measured seconds")
    parser.add_argument("--models-dir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="emostream-fleet-") as workdir:
        report = run_fleet(
            arguments.devices, arguments.duration, Path(workdir), arguments.models_dir
        )
    print_report(report)
    if arguments.json is not None:
        arguments.json.write_text(json.dumps(asdict(report), indent=1))
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
