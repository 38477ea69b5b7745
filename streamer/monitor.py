"""Live terminal view of a daemon's stream, built on ``streamer.client``.

``MonitorState`` folds client events into what the screen shows; ``render`` draws that state
with rich; ``run_monitor`` ties them to a subscription. The state is separate from drawing so
that the numbers (gaps, restarts, timeline) can be checked without a terminal.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from streamer.client import Emotion, Event, ModelOutput, Quiet, Status, Subscriber

TIMELINE_HISTORY = 1000
"""Windows remembered for the timeline, which shows as many as the terminal is wide."""
PANEL_MARGIN = 4
"""Columns the panel's borders and padding take from the terminal's width."""
BAR_WIDTH = 24
"""Characters of a full probability bar."""
METER_WIDTH = 40
"""Most characters of the input level meter, which spans METER_FLOOR_DB to 0 dBFS; fewer on a
narrow terminal, so that its line never wraps."""
METER_TEXT = 40
"""Columns of the meter's line besides the bar (label, level, speech)."""
METER_FLOOR_DB = -80.0
"""Level at the meter's left end: digital silence in the daemon's features."""
SILENCE_MARK = "·"
UNSURE = "(unsure)"
"""Timeline entry for speech whose label fell below the daemon's confidence threshold."""
UNSURE_MARK = "?"
LABEL_COLOURS = {
    "anger": "red",
    "angry": "red",
    "happiness": "yellow",
    "happy": "yellow",
    "sadness": "blue",
    "sad": "blue",
    "fear": "magenta",
    "fearful": "magenta",
    "disgust": "green",
    "neutral": "white",
    "calm": "cyan",
    "boredom": "cyan",
    "surprise": "bright_yellow",
    "surprised": "bright_yellow",
    "pleasant_surprise": "bright_yellow",
}


@dataclass
class MonitorState:
    """Everything the monitor shows, updated one client event at a time."""

    address: str
    """Address the monitor subscribes to."""
    stale_after: float = 3.0
    """Seconds without a message after which the screen says nothing is publishing."""
    started_at: float = field(default_factory=time.monotonic)
    """Monotonic time the monitor started."""
    last_message_at: float | None = None
    """Monotonic time of the last message, None before the first."""
    emotion: Emotion | None = None
    """Newest emotion message."""
    bars: dict[str, ModelOutput] = field(default_factory=dict)
    """Model outputs of the newest window that had them (the daemon runs no model on silence)."""
    status: Status | None = None
    """Newest status message."""
    timeline: deque[str | None] = field(default_factory=lambda: deque(maxlen=TIMELINE_HISTORY))
    """Labels of recent windows, oldest first; None for silence, UNSURE for unsure speech."""
    labels: list[str] = field(default_factory=list)
    """Every label seen so far, in the order the models report them."""
    missed_emotions: int = 0
    """Emotion messages lost in sequence gaps since the monitor started."""
    missed_statuses: int = 0
    """Status messages lost in sequence gaps."""
    restarts: int = 0
    """Daemon restarts the client reported (new start time, or seq going backwards)."""
    refused: str | None = None
    """Why the daemon at the address refuses this monitor (keys), from the client's last
    ``Quiet`` event; None once messages arrive."""

    def update(self, event: Event, now: float | None = None) -> None:
        """Folds one client event into the state; ``now`` is monotonic time (for tests)."""
        if isinstance(event, Quiet):
            self.refused = event.refused
            return
        self.refused = None
        self.last_message_at = time.monotonic() if now is None else now
        if isinstance(event, Status):
            self.missed_statuses += event.missed
            self.restarts += event.restarted
            self.status = event
            return
        self.missed_emotions += event.missed
        # Both topics restart together; count a restart once, from the emotion topic only when
        # no status has been seen to do so.
        if event.restarted and self.status is None:
            self.restarts += 1
        if event.restarted:
            self.timeline.clear()
        self.emotion = event
        if event.models:
            self.bars = event.models
        if not event.speech:
            self.timeline.append(None)
        else:
            self.timeline.append(UNSURE if event.label is None else event.label)
        seen = [label for output in event.models.values() for label in output.probabilities]
        for label in [*seen, event.label]:
            if label is not None and label not in self.labels:
                self.labels.append(label)

    def quiet_for(self, now: float) -> float:
        """Seconds since the last message (since start, if none came)."""
        since = self.started_at if self.last_message_at is None else self.last_message_at
        return now - since

    def publishing(self, now: float) -> bool:
        """Whether a message arrived within ``stale_after`` seconds of ``now`` (monotonic)."""
        return self.last_message_at is not None and self.quiet_for(now) < self.stale_after


def timeline_marks(labels: list[str]) -> dict[str, str]:
    """One character per label, different for every label, so a window takes one column.

    Each label takes its first letter in lower case, else in upper case (``sad`` gets ``s``, a
    later ``surprised`` ``S``), else the next letter of its name that is free, else a digit.
    """
    marks: dict[str, str] = {}
    taken = {SILENCE_MARK, UNSURE_MARK}
    for label in labels:
        letters = [
            c for letter in label if letter.isalpha() for c in (letter.lower(), letter.upper())
        ]
        mark = next(c for c in [*letters, *"0123456789", *"#%&*+="] if c not in taken)
        marks[label] = mark
        taken.add(mark)
    return marks


def _colour(label: str | None) -> str:
    return LABEL_COLOURS.get(label or "", "default")


def _bar(probability: float, colour: str) -> Text:
    filled = round(max(0.0, min(1.0, probability)) * BAR_WIDTH)
    bar = Text("█" * filled, style=colour)
    bar.append("░" * (BAR_WIDTH - filled), style="grey37")
    bar.append(f" {probability * 100:3.0f}%")
    return bar


def _headline(state: MonitorState, now: float) -> Text:
    emotion = state.emotion
    if not state.publishing(now):
        waited = state.quiet_for(now)
        if state.refused is not None:
            return Text(
                f"A daemon answers at {state.address} but refuses this monitor "
                f"(waited {waited:.0f} s). {state.refused}.",
                style="bold yellow",
            )
        if state.last_message_at is None:
            return Text(
                f"Nothing is publishing at {state.address} (waited {waited:.0f} s). "
                "Is the daemon running? (emostream serve, or systemctl status emostream)",
                style="bold yellow",
            )
        return Text(
            f"No messages for {waited:.0f} s: the daemon stopped or stalled; "
            "reconnecting automatically.",
            style="bold yellow",
        )
    if emotion is None:
        return Text("Connected; waiting for the first window.", style="bold")
    if not emotion.speech:
        headline = Text("silence", style="bold grey50")
    elif emotion.label is None:
        headline = Text("UNSURE", style="bold")
        headline.append(f"  (leading label {emotion.confidence * 100:.0f}%)")
    else:
        headline = Text(f"{(emotion.label or '?').upper()}", style=f"bold {_colour(emotion.label)}")
        headline.append(f"  {emotion.confidence * 100:.0f}%", style="bold")
    headline.append(f"   {'speech' if emotion.speech else 'no speech'}")
    headline.append(f"   window {emotion.window_start:.1f}–{emotion.window_end:.1f} s")
    headline.append(f"   latency {emotion.latency_ms:.0f} ms")
    return headline


def _bars(state: MonitorState) -> Table:
    current = state.emotion is not None and bool(state.emotion.models)
    table = Table(box=None, pad_edge=False, show_edge=False)
    table.add_column("emotion" if current else "last speech")
    for name, output in state.bars.items():
        table.add_column(f"{name} → {output.label}")
    for label in state.labels:
        cells: list[RenderableType] = [Text(label, style=_colour(label))]
        for output in state.bars.values():
            cells.append(_bar(output.probabilities.get(label, 0.0), _colour(label)))
        table.add_row(*cells)
    return table


def _meter(emotion: Emotion, width: int) -> Text:
    """The input level as a bar, and whether the detector hears speech, in ``width`` columns."""
    line = Text("input ")
    if emotion.level_db is None:
        line.append("(level not reported)", style="grey50")
    else:
        bar_width = max(5, min(METER_WIDTH, width - METER_TEXT))
        fraction = (emotion.level_db - METER_FLOOR_DB) / -METER_FLOOR_DB
        filled = round(max(0.0, min(1.0, fraction)) * bar_width)
        line.append("█" * filled, style="green")
        line.append("░" * (bar_width - filled), style="grey37")
        line.append(f" {emotion.level_db:6.1f} dBFS")
    line.append("  ")
    if emotion.speech:
        line.append("● speech", style="bold green")
    else:
        line.append("○ no speech", style="grey50")
    if emotion.speech_seconds is not None:
        line.append(f" {emotion.speech_seconds:.1f} s")
    return line


def _timeline(state: MonitorState, width: int) -> Group:
    marks = timeline_marks(state.labels)
    shown = list(state.timeline)[-max(1, width) :]
    line = Text()
    for label in shown:
        if label is None:
            line.append(SILENCE_MARK, style="grey50")
        elif label == UNSURE:
            line.append(UNSURE_MARK)
        else:
            line.append(marks.get(label, UNSURE_MARK), style=_colour(label))
    legend = Text(f"{SILENCE_MARK} no speech  {UNSURE_MARK} unsure", style="grey50")
    for label, mark in marks.items():
        legend.append(f"  {mark} {label}", style=_colour(label))
    title = Text(f"timeline: last {len(shown)} windows, newest right", style="bold")
    return Group(title, line, legend)


def _daemon(state: MonitorState, now: float) -> Group:
    lines = []
    status = state.status
    if status is None:
        lines.append(Text("daemon: no status message yet"))
    else:
        state_style = "green" if status.source_state == "running" else "bold yellow"
        line = Text("daemon: ")
        line.append(status.source_state, style=state_style)
        line.append(
            f" · {status.source_name} · up {status.uptime_s:.0f} s · {status.windows} windows"
            f" · models {', '.join(status.models)}"
        )
        lines.append(line)
        lines.append(
            Text(
                f"inference p50 {status.inference_p50_ms:.1f} ms, "
                f"p99 {status.inference_p99_ms:.1f} ms · audio: {status.overflows} overflows, "
                f"{status.dropped_windows} dropped windows"
            )
        )
    gaps = Text(
        f"sequence gaps: {state.missed_emotions} emotion, {state.missed_statuses} status "
        f"messages missed · {state.restarts} daemon restart{'s' if state.restarts != 1 else ''}"
    )
    if state.missed_emotions or state.missed_statuses:
        gaps.stylize("yellow")
    lines.append(gaps)
    if state.last_message_at is not None:
        lines.append(Text(f"last message {state.quiet_for(now):.1f} s ago", style="grey50"))
    return Group(*lines)


def render(state: MonitorState, now: float | None = None, width: int = 80) -> RenderableType:
    """The whole screen for ``state`` on a terminal ``width`` columns wide; ``now`` is
    monotonic time (for tests)."""
    now = time.monotonic() if now is None else now
    parts: list[RenderableType] = [_headline(state, now)]
    if state.emotion is not None and state.publishing(now):
        parts.append(_meter(state.emotion, width - PANEL_MARGIN))
    if state.bars:
        parts += [Text(), _bars(state)]
    if state.emotion is not None:
        parts += [Text(), _timeline(state, width - PANEL_MARGIN)]
    parts += [Text(), _daemon(state, now)]
    return Panel(
        Group(*parts),
        title=f"emostream monitor · {state.address}",
        title_align="left",
        subtitle="Ctrl-C quits",
        subtitle_align="right",
    )


def run_monitor(
    address: str,
    stale_after: float = 3.0,
    curve_secret_key: Path | None = None,
    curve_server_key: Path | None = None,
) -> None:
    """Shows the stream at ``address`` until interrupted; survives daemon restarts.

    The CURVE key files are those of ``streamer.client.Subscriber``, for an encrypted daemon.

    The screen is redrawn four times a second from a rich thread, so the "last message" clock
    keeps moving while nothing arrives; a lock keeps it from drawing a half-updated state.
    """
    state = MonitorState(address, stale_after=stale_after)
    lock = threading.Lock()
    console = Console()

    def current_screen() -> RenderableType:
        with lock:
            return render(state, width=console.width)

    with (
        Subscriber(
            address,
            quiet_after=stale_after,
            curve_secret_key=curve_secret_key,
            curve_server_key=curve_server_key,
        ) as subscriber,
        Live(
            console=console,
            get_renderable=current_screen,
            refresh_per_second=4,
            screen=True,
        ),
    ):
        for event in subscriber:
            with lock:
                state.update(event)
