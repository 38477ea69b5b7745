"""The ``emostream`` command line; only this module sees parsed arguments."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from streamer import __version__


@click.group()
@click.version_option(__version__, prog_name="emostream")
@click.option("-v", "--verbose", is_flag=True, help="Log debug messages.")
def main(verbose: bool) -> None:
    """Real-time speech-emotion classification, published over ZeroMQ."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@main.command()
@click.option(
    "--source",
    default=None,
    help='"mic" (default input device), "mic:NAME_OR_INDEX", or an audio file.  [default: mic]',
)
@click.option("--fast", is_flag=True, help="Read a file source as fast as possible.")
@click.option("--bind", default=None, help="ZeroMQ PUB address.  [default: tcp://127.0.0.1:5556]")
@click.option(
    "--model",
    type=click.Choice(["cnn", "lstm", "both"]),
    default=None,
    help="Models to run.  [default: both]",
)
@click.option("--hop", type=float, default=None, help="Seconds between windows.  [default: 0.5]")
@click.option(
    "--models-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Directory of NAME.tflite and NAME.json.  [default: the shipped models]",
)
@click.option(
    "--device-rate",
    type=int,
    default=None,
    help="Microphone capture rate in hertz; 0 picks one the device supports.  [default: 0]",
)
@click.option("--echo", is_flag=True, help="Print each published label to standard output.")
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default=None,
    help="TOML settings file; options given here override it.",
)
def serve(
    source: str | None,
    fast: bool,
    bind: str | None,
    model: str | None,
    hop: float | None,
    models_dir: Path | None,
    device_rate: int | None,
    echo: bool,
    config_path: Path | None,
) -> None:
    """Classify audio from a microphone or file and publish each window over ZeroMQ.

    A file source ends the daemon at its end; SIGTERM or Ctrl-C stops it cleanly.
    """
    from streamer.config import load_config
    from streamer.daemon import USER_ERRORS
    from streamer.daemon import serve as run_daemon

    models = {"both": ("cnn", "lstm"), None: None}.get(model, (model,))
    overrides = {
        "source": {"source": source, "fast": fast or None, "device_rate": device_rate},
        "pipeline": {"models": models, "hop_seconds": hop, "model_dir": models_dir},
        "publish": {"bind": bind, "echo": echo or None},
    }
    given = {
        section: {key: value for key, value in keys.items() if value is not None}
        for section, keys in overrides.items()
    }
    try:
        run_daemon(load_config(config_path, given))
    except USER_ERRORS as error:
        raise click.ClickException(str(error)) from None


@main.command()
@click.argument("address", default="tcp://127.0.0.1:5556")
@click.option(
    "--stale-after",
    type=click.FloatRange(min=0.5),
    default=3.0,
    show_default=True,
    help="Seconds without a message before the screen says nothing is publishing.",
)
def monitor(address: str, stale_after: float) -> None:
    """Live view of the stream at ADDRESS; reconnects when the daemon restarts."""
    # Imported here so that the monitor starts without loading the audio and model stack.
    from streamer.client import ClientError
    from streamer.monitor import run_monitor

    try:
        run_monitor(address, stale_after=stale_after)
    except ClientError as error:
        raise click.ClickException(str(error)) from None
    except KeyboardInterrupt:
        pass
