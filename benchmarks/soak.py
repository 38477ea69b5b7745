"""Soak test: the real daemon on Emo-DB speech looped in real time for a long time.

Runs ``emostream serve --source LOOP.wav --loop`` as a subprocess (real time, both shipped
models), subscribes to both topics, samples the daemon's resident memory from
``/proc/PID/status`` every second, and prints a table: RSS after warm-up, at the end and its
growth, overflows and dropped windows from the last status, messages missed by the subscriber,
and the hop latency per period (p50/p99 of each window's ``latency_ms``, capture to publish).

    python benchmarks/soak.py                  # 10 minutes, the README figures
    python benchmarks/soak.py --duration 45 --period 15 --json soak.json   # the CI version

Exits 1 when a property fails: RSS growth over ``--max-growth-mb``, any overflow or dropped
window, a gap in either topic's ``seq``, or a period whose p99 exceeds the first period's by
more than ``--max-p99-factor`` (and 20 ms: on a shared CPU a few milliseconds is noise).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import zmq

_LOGGER = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
PAUSE_SECONDS = 0.5
"""Silence between clips, so the loop holds both speech and no-speech windows."""
LATENCY_SLACK_MS = 20.0
"""p99 growth below this is not counted as instability (scheduler noise on a shared CPU)."""


@dataclass
class Period:
    """Hop latency of the windows published in one period of the run."""

    start_s: float
    """Seconds since the first window."""
    windows: int
    """Emotion messages received in the period."""
    latency_p50_ms: float
    """Median capture-to-publish latency (ms)."""
    latency_p99_ms: float
    """99th percentile capture-to-publish latency (ms)."""


@dataclass
class SoakReport:
    """Figures of one soak run."""

    duration_s: float
    """Seconds the source ran (from the first window)."""
    period_s: float
    """Length of each latency period (seconds)."""
    audio_seconds: float
    """Length of the looped file (seconds)."""
    rss_start_mb: float
    """Resident memory after warm-up (MiB)."""
    rss_end_mb: float
    """Resident memory at the end (MiB)."""
    rss_peak_mb: float
    """Largest resident memory sampled after warm-up (MiB)."""
    windows: int
    """Windows classified, from the last status."""
    overflows: int
    """Capture overflows, from the last status."""
    dropped_windows: int
    """Windows skipped for falling behind, from the last status."""
    missed_emotion: int
    """Emotion messages the subscriber never saw (gaps in seq)."""
    missed_status: int
    """Status messages the subscriber never saw."""
    periods: list[Period] = field(default_factory=list)
    """Latency per period, in order."""
    failures: list[str] = field(default_factory=list)
    """Properties that did not hold; empty for a pass."""

    @property
    def rss_growth_mb(self) -> float:
        """End minus after-warm-up resident memory (MiB)."""
        return self.rss_end_mb - self.rss_start_mb


def looped_speech(emodb: Path, seconds: float, out: Path) -> float:
    """Writes Emo-DB clips (sorted, with short pauses) up to ``seconds`` long to ``out``.

    Returns the file's length in seconds. The file keeps the clips' rate (Emo-DB as shipped
    here: 22.05 kHz), so the daemon resamples as it would a microphone's audio.
    """
    clips = sorted(emodb.glob("*.wav"))
    if not clips:
        raise SystemExit(f"no clips in {emodb}")
    rate = sf.info(str(clips[0])).samplerate
    parts: list[np.ndarray] = []
    total = 0
    pause = np.zeros(round(PAUSE_SECONDS * rate), np.float32)
    for clip in clips:
        audio, clip_rate = sf.read(clip, dtype="float32")
        if clip_rate != rate or audio.ndim != 1:
            continue
        parts += [audio, pause]
        total += len(audio) + len(pause)
        if total >= seconds * rate:
            break
    sf.write(out, np.concatenate(parts), rate)
    return total / rate


def rss_mb(pid: int) -> float:
    """Resident set size of process ``pid`` (MiB), from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def _emostream() -> list[str]:
    script = shutil.which("emostream") or str(Path(sys.executable).parent / "emostream")
    return [script]


def run_soak(
    duration: float,
    period: float,
    warmup: float,
    emodb: Path,
    model_dir: Path | None,
    workdir: Path,
) -> SoakReport:
    """Runs the daemon for ``duration`` seconds of real-time audio; the figures of the run."""
    loop_file = workdir / "emodb-loop.wav"
    audio_seconds = looped_speech(emodb, 150.0, loop_file)
    address = f"ipc://{workdir / 'soak.sock'}"
    context: zmq.Context = zmq.Context.instance()
    subscriber = context.socket(zmq.SUB)
    subscriber.setsockopt(zmq.LINGER, 0)
    subscriber.setsockopt(zmq.RECONNECT_IVL, 10)
    for topic in (b"emotion", b"status"):
        subscriber.setsockopt(zmq.SUBSCRIBE, topic)
    subscriber.connect(address)
    command = [*_emostream(), "serve", "--source", str(loop_file), "--loop", "--bind", address]
    command += ["--wait-subscriber", "30"]
    if model_dir is not None:
        command += ["--models-dir", str(model_dir)]
    # A file, not a pipe: nobody reads it during the run, and a full pipe would stall the daemon.
    log_path = workdir / "daemon.log"
    log = log_path.open("w")
    daemon = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log)
    started = time.monotonic()
    latencies: list[tuple[float, float]] = []
    last_seq: dict[str, int] = {}
    missed = {"emotion": 0, "status": 0}
    last_status: dict = {}
    rss_samples: list[tuple[float, float]] = []
    first_window: float | None = None
    next_sample = 0.0
    try:
        while True:
            now = time.monotonic()
            if daemon.poll() is not None:
                raise SystemExit(
                    f"the daemon exited early ({daemon.returncode}): {log_path.read_text().strip()}"
                )
            if first_window is not None and now - first_window >= duration:
                break
            if now >= next_sample:
                rss_samples.append((now, rss_mb(daemon.pid)))
                next_sample = now + 1.0
            if not subscriber.poll(100):
                if first_window is None and now - started > 60:
                    raise SystemExit("no window from the daemon within 60 s")
                continue
            topic, payload = subscriber.recv_multipart()
            name = topic.decode()
            message = json.loads(payload)
            previous = last_seq.get(name)
            if previous is not None and message["seq"] > previous + 1:
                missed[name] += message["seq"] - previous - 1
            last_seq[name] = message["seq"]
            if name == "status":
                last_status = message
            else:
                if first_window is None:
                    first_window = time.monotonic()
                latencies.append((time.monotonic() - first_window, message["latency_ms"]))
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(10)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        log.close()
        subscriber.close()
    assert first_window is not None
    settled = [rss for at, rss in rss_samples if at - first_window >= warmup]
    if not settled:
        raise SystemExit(f"the run was shorter than its warm-up ({warmup} s)")
    report = SoakReport(
        duration_s=duration,
        period_s=period,
        audio_seconds=audio_seconds,
        rss_start_mb=settled[0],
        rss_end_mb=settled[-1],
        rss_peak_mb=max(settled),
        windows=last_status.get("windows", 0),
        overflows=last_status.get("overflows", 0),
        dropped_windows=last_status.get("dropped_windows", 0),
        missed_emotion=missed["emotion"],
        missed_status=missed["status"],
    )
    times = np.array([at for at, _ in latencies])
    values = np.array([latency for _, latency in latencies])
    for start in np.arange(0.0, duration, period):
        chosen = values[(times >= start) & (times < start + period)]
        if len(chosen):
            p50, p99 = np.percentile(chosen, [50, 99])
            report.periods.append(Period(float(start), len(chosen), float(p50), float(p99)))
    return report


def check(report: SoakReport, max_growth_mb: float, max_p99_factor: float) -> list[str]:
    """The properties that failed, each as one line."""
    failures = []
    if report.rss_growth_mb >= max_growth_mb:
        failures.append(f"RSS grew {report.rss_growth_mb:.1f} MiB (limit {max_growth_mb})")
    if report.overflows or report.dropped_windows:
        failures.append(f"{report.overflows} overflows, {report.dropped_windows} dropped windows")
    if report.missed_emotion or report.missed_status:
        failures.append(
            f"subscriber missed {report.missed_emotion} emotion and "
            f"{report.missed_status} status messages"
        )
    expected = report.duration_s / 0.5
    if report.windows < 0.9 * expected:
        failures.append(f"{report.windows} windows in {report.duration_s:.0f} s: fell behind")
    if report.periods:
        first = report.periods[0].latency_p99_ms
        limit = max(first * max_p99_factor, first + LATENCY_SLACK_MS)
        for period in report.periods[1:]:
            if period.latency_p99_ms > limit:
                failures.append(
                    f"hop latency p99 {period.latency_p99_ms:.1f} ms at "
                    f"{period.start_s:.0f} s (first period {first:.1f} ms)"
                )
    return failures


def table(report: SoakReport) -> str:
    """The report as a Markdown table, as the README quotes it."""
    rows = [
        (
            "duration (real-time Emo-DB speech, looped)",
            f"{report.duration_s:.0f} s ({report.audio_seconds:.0f} s of audio per loop)",
        ),
        ("RSS after warm-up → end", f"{report.rss_start_mb:.1f} → {report.rss_end_mb:.1f} MiB"),
        ("RSS growth (peak)", f"{report.rss_growth_mb:+.2f} MiB ({report.rss_peak_mb:.1f} MiB)"),
        ("windows classified", str(report.windows)),
        ("overflows, dropped windows", f"{report.overflows}, {report.dropped_windows}"),
        ("messages missed (emotion, status)", f"{report.missed_emotion}, {report.missed_status}"),
    ]
    lines = ["| measure | value |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    lines += ["", "| period | windows | hop latency p50 | p99 |", "|---|---|---|---|"]
    for period in report.periods:
        lines.append(
            f"| {period.start_s:.0f}–{period.start_s + report.period_s:.0f} s | {period.windows} "
            f"| {period.latency_p50_ms:.2f} ms | {period.latency_p99_ms:.2f} ms |"
        )
    return "\n".join(lines)


def main() -> int:
    """Runs the soak and prints its table; exit status 1 when a property failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds (default 600)")
    parser.add_argument("--period", type=float, default=60.0, help="latency period (s)")
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds before RSS start")
    parser.add_argument("--max-growth-mb", type=float, default=5.0)
    parser.add_argument("--max-p99-factor", type=float, default=3.0)
    parser.add_argument(
        "--data",
        type=Path,
        default=Path(os.environ.get("EMOSTREAM_DATA", ROOT.parent / "shared" / "datasets")),
        help="folder holding emodb/wav",
    )
    parser.add_argument("--models-dir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    emodb = args.data / "emodb" / "wav"
    if not emodb.is_dir():
        print(f"Error: {emodb}: Emo-DB not found (set --data or EMOSTREAM_DATA)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="emostream-soak-") as workdir:
        report = run_soak(
            args.duration, args.period, args.warmup, emodb, args.models_dir, Path(workdir)
        )
    report.failures = check(report, args.max_growth_mb, args.max_p99_factor)
    print(table(report))
    if args.json is not None:
        values = asdict(report)
        values["rss_growth_mb"] = report.rss_growth_mb
        args.json.write_text(json.dumps(values, indent=2) + "\n")
    for failure in report.failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
