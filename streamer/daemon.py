"""The serve loop: source -> pipeline -> publisher, with status, sd_notify and clean shutdown.

One thread does all the work after capture: it reads whatever the source has, pushes it through
the pipeline and publishes each result. The microphone's own callback thread only fills the ring
buffer, so nothing here (a slow subscriber included) can stall capture.
"""

from __future__ import annotations

import collections
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import numpy as np

from streamer.adaptation import VoiceAdaptation, default_state_file, load_state, save_state
from streamer.config import Config, ConfigError, SourceConfig
from streamer.models import ModelError, load_models
from streamer.notify import Notifier
from streamer.pipeline import Pipeline, WindowResult
from streamer.publish import Publisher, PublishError, format_echo
from streamer.sources import AudioSource, SourceError, open_source

_LOGGER = logging.getLogger(__name__)

USER_ERRORS = (ConfigError, ModelError, SourceError, PublishError)
"""Errors a user can cause and fix (bad flag, missing model, busy address, unknown device)."""
# How long a read may wait, which bounds how late the loop notices a stop request.
_READ_TIMEOUT_SECONDS = 0.1
# Inference times kept for the status percentiles.
_TIMING_HISTORY = 1000


class Daemon:
    """Runs one source through the pipeline and publishes until stopped or the source ends."""

    def __init__(
        self,
        config: Config,
        source: AudioSource,
        pipeline: Pipeline,
        publisher: Publisher,
        echo: TextIO | None = None,
    ) -> None:
        """Serves ``source`` through ``pipeline`` to ``publisher`` (see ``build_daemon``).

        ``echo`` receives a readable line per window (default: standard output when
        ``config.publish.echo`` is set).
        """
        self.config = config
        self._echo = echo if echo is not None else (sys.stdout if config.publish.echo else None)
        self.publisher = publisher
        self.pipeline = pipeline
        self.source = source
        self.notifier = Notifier()
        self._inference_ms: collections.deque[float] = collections.deque(maxlen=_TIMING_HISTORY)
        self._started = time.monotonic()
        self._last_state = ""
        self._overflows_seen = 0
        self._next_status = 0.0
        self._next_watchdog = 0.0
        voice = pipeline.voice
        self.adaptation = voice if isinstance(voice, VoiceAdaptation) else None
        """The running voice statistics, None when adaptation is off."""
        self._state_file = state_file(config)
        self._next_save = time.monotonic() + config.adaptation.save_seconds
        self._saved_seconds = self.adaptation.adapted_seconds if self.adaptation else 0.0
        self._save_failed = False
        self._next_reset_check = 0.0

    def run(self, stop: threading.Event) -> None:
        """Serves until ``stop`` is set or a file source ends, then closes everything."""
        try:
            self._await_subscriber(stop)
            self._publish_status()
            self.source.start()
            self.notifier.ready(f"publishing on {self.config.publish.bind}")
            while not stop.is_set():
                block = self.source.read(_READ_TIMEOUT_SECONDS)
                if self._audio_was_lost():
                    self.pipeline.discontinuity()
                if block is not None:
                    results = self.pipeline.push(
                        block.samples, block.captured_at, newest_only=self.source.live
                    )
                    self._publish(results)
                if self.source.state == "ended":
                    self._publish(self.pipeline.finish(time.time()))
                    break
                self._tick()
        finally:
            self.notifier.stopping()
            self.source.close()
            self._save_adaptation()
            self._publish_status()
            self.publisher.close()
            self.notifier.close()

    def _audio_was_lost(self) -> bool:
        """Whether audio is missing before what the source returns next: a reopened microphone,
        or an overflow (PortAudio's or the ring's) since the last read."""
        overflows = self.source.overflows
        gap = overflows != self._overflows_seen
        self._overflows_seen = overflows
        return gap or (self._last_state == "lost" and self.source.state == "running")

    def _await_subscriber(self, stop: threading.Event) -> None:
        """Holds the source back until someone listens, when configured to."""
        wait = self.config.publish.wait_for_subscriber
        deadline = time.monotonic() + wait
        while wait > 0 and not stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                _LOGGER.warning("no subscriber within %.1f s: publishing anyway", wait)
                return
            if self.publisher.wait_for_subscriber(min(_READ_TIMEOUT_SECONDS, left)):
                return

    def _publish(self, results: list[WindowResult]) -> None:
        for result in results:
            message = self.publisher.publish_emotion(result)
            if result.models:
                self._inference_ms.append(result.inference_ms)
            if self._echo is not None:
                print(format_echo(message), file=self._echo, flush=True)

    def _tick(self) -> None:
        """Status on schedule or on a source state change; watchdog pings while alive."""
        now = time.monotonic()
        if self.source.state != self._last_state or now >= self._next_status:
            self._publish_status()
        if self.adaptation is not None and now >= self._next_reset_check:
            self._notice_reset()
            self._next_reset_check = now + 1.0
        if now >= self._next_save:
            self._save_adaptation()
            self._next_save = now + self.config.adaptation.save_seconds
        if self.notifier.watchdog_seconds and now >= self._next_watchdog:
            self.notifier.watchdog()
            self._next_watchdog = now + self.notifier.watchdog_seconds / 2

    def _notice_reset(self) -> None:
        """``emostream adapt --reset`` removed the state file this daemon wrote: forget."""
        if self.adaptation is None:
            return
        if self._saved_seconds > 0 and not self._state_file.exists():
            _LOGGER.info("%s removed: back to the training statistics", self._state_file)
            self.adaptation.reset()
            self._saved_seconds = 0.0

    def _save_adaptation(self) -> None:
        """Persists the statistics if they changed; a failure is logged once, never fatal."""
        if self.adaptation is None or self.adaptation.adapted_seconds == self._saved_seconds:
            return
        try:
            save_state(self.adaptation, self._state_file)
        except OSError as error:
            if not self._save_failed:
                _LOGGER.warning("%s: cannot save adaptation state (%s)", self._state_file, error)
            self._save_failed = True
            return
        self._saved_seconds = self.adaptation.adapted_seconds

    def _publish_status(self) -> None:
        timings = np.array(self._inference_ms) if self._inference_ms else np.zeros(1)
        p50, p99 = np.percentile(timings, [50, 99])
        self.publisher.publish_status(
            uptime_s=time.monotonic() - self._started,
            source_name=self.source.name,
            source_state=self.source.state,
            overflows=self.source.overflows,
            dropped_windows=self.pipeline.dropped_windows,
            windows=self.pipeline.windows,
            inference_p50_ms=float(p50),
            inference_p99_ms=float(p99),
            models=[model.name for model in self.pipeline.models],
            adapted_seconds=None if self.adaptation is None else self.adaptation.adapted_seconds,
        )
        self._last_state = self.source.state
        self._next_status = time.monotonic() + self.config.publish.status_seconds


SourceFactory = Callable[[SourceConfig, int], AudioSource]
"""Makes the audio source from its settings and the models' sample rate (hertz)."""


def build_daemon(
    config: Config, make_source: SourceFactory = open_source, echo: TextIO | None = None
) -> Daemon:
    """The daemon built from its parts: publisher, models and pipeline, source (not started).

    ``serve``, ``bench`` (through ``serve``) and the tests build it here; a test hands in its
    own ``make_source``. Raises one of USER_ERRORS with a one-line message naming the culprit.
    """
    # Bound first: a busy address fails at once, and subscribers can connect while the
    # models load instead of missing the first messages.
    settings = config.publish
    publisher = Publisher(
        settings.bind,
        settings.send_hwm,
        curve_secret_key=settings.curve_secret_key,
        curve_clients=settings.curve_clients,
        insecure=settings.insecure,
        device=settings.device_name,
    )
    try:
        models = load_models(config.pipeline.model_dir, config.pipeline.models)
        pipeline = Pipeline(models, config.pipeline, voice_adaptation(models, config))
        source = make_source(config.source, pipeline.spec.sample_rate)
    except BaseException:
        publisher.close()
        raise
    return Daemon(config, source, pipeline, publisher, echo)


def state_file(config: Config) -> Path:
    """Where the voice statistics persist: the configured file, else the state directory's."""
    return Path(config.adaptation.state_file or default_state_file())


def voice_adaptation(models: list, config: Config) -> VoiceAdaptation | None:
    """Running voice statistics restored from the state file, or None when adaptation is off
    (or the models' features do not use voice statistics). A bad state file is named in one
    log line and the training statistics are used."""
    spec = models[0].metadata.features
    if not config.adaptation.enabled or spec.normalisation != "speaker":
        return None
    adaptation = VoiceAdaptation(
        Pipeline.training_statistics(models),
        spec,
        config.pipeline.hop_seconds,
        config.adaptation.memory_seconds,
        config.adaptation.prior_seconds,
    )
    load_state(adaptation, state_file(config))
    return adaptation


def serve(config: Config) -> None:
    """Runs the daemon in the main thread until SIGTERM, SIGINT or the end of a file source.

    Raises one of USER_ERRORS for problems found while starting.
    """
    stop = threading.Event()

    def request_stop(signum: int, frame: object) -> None:
        _LOGGER.info("%s received: stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    build_daemon(config).run(stop)
