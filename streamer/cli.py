"""The ``emostream`` command line; only this module sees parsed arguments."""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
@click.option("--loop", is_flag=True, help="Start a file source over at its end.")
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
@click.option(
    "--device",
    default=None,
    help="Name of this device in every message and MQTT topic.  [default: the host name]",
)
@click.option("--echo", is_flag=True, help="Print each published label to standard output.")
@click.option(
    "--wait-subscriber",
    type=click.FloatRange(min=0),
    default=None,
    help="Seconds to wait for a first subscriber before reading the source.  [default: 0]",
)
@click.option(
    "--curve-secret",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="This server's NAME.key_secret (emostream keygen): encrypt with CURVE.",
)
@click.option(
    "--curve-clients",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Directory of the NAME.key public keys of clients allowed to subscribe.",
)
@click.option(
    "--insecure",
    is_flag=True,
    help="Allow a non-loopback --bind without CURVE keys (anyone can subscribe).",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="TOML settings file, read instead of /etc/emostream/emostream.toml and "
    "~/.config/emostream/emostream.toml; options given here override it.",
)
def serve(
    source: str | None,
    fast: bool,
    loop: bool,
    bind: str | None,
    model: str | None,
    hop: float | None,
    models_dir: Path | None,
    device_rate: int | None,
    device: str | None,
    echo: bool,
    wait_subscriber: float | None,
    curve_secret: Path | None,
    curve_clients: Path | None,
    insecure: bool,
    config_path: Path | None,
) -> None:
    """Classify audio from a microphone or file and publish each window over ZeroMQ.

    A file source ends the daemon at its end; SIGTERM or Ctrl-C stops it cleanly.
    """
    from streamer.daemon import USER_ERRORS
    from streamer.daemon import serve as run_daemon

    models = {"both": ("cnn", "lstm"), None: None}.get(model, (model,))
    overrides = {
        "source": {
            "source": source,
            "fast": fast or None,
            "loop": loop or None,
            "device_rate": device_rate,
        },
        "pipeline": {"models": models, "hop_seconds": hop, "model_dir": models_dir},
        "publish": {
            "bind": bind,
            "device": device,
            "echo": echo or None,
            "wait_for_subscriber": wait_subscriber,
            "curve_secret_key": str(curve_secret) if curve_secret else None,
            "curve_clients": str(curve_clients) if curve_clients else None,
            "insecure": insecure or None,
        },
    }
    config = _effective_config(config_path, overrides).config
    try:
        run_daemon(config)
    except USER_ERRORS as error:
        raise click.ClickException(str(error)) from None


@main.command()
@click.argument(
    "clips", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option(
    "--models-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Directory of NAME.tflite (and NAME.keras for the naive path).  [default: the shipped]",
)
@click.option(
    "--seconds",
    type=click.FloatRange(min=10),
    default=120.0,
    show_default=True,
    help="Speech (the CLIPS repeated) timed hop by hop and with serve --fast.",
)
@click.option(
    "--naive-hops",
    type=click.IntRange(min=5),
    default=60,
    show_default=True,
    help="Hops timed on the slow naive path.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON instead.")
def bench(
    clips: tuple[Path, ...], models_dir: Path | None, seconds: float, naive_hops: int, as_json: bool
) -> None:
    """Time the daemon per hop on one core, against librosa + Keras predict (needs TensorFlow).

    CLIPS are speech files, repeated to --seconds (in a checkout: tests/data/*.wav).
    """
    from rich.console import Console
    from rich.table import Table

    from streamer.audio import AudioError
    from streamer.bench import report_json, report_rows, run_bench
    from streamer.models import DEFAULT_MODEL_DIR, ModelError

    try:
        report = run_bench(
            models_dir or DEFAULT_MODEL_DIR, list(clips), seconds, naive_hops=naive_hops
        )
    except (ModelError, AudioError, RuntimeError) as error:
        raise click.ClickException(str(error)) from None
    except ModuleNotFoundError as error:
        raise click.ClickException(
            f"the naive path needs {error.name}: pip install -e '.[train]'"
        ) from None
    if as_json:
        click.echo(report_json(report))
        return
    table = Table(title=f"emostream bench (one core: cpu {report.cpu})")
    for column in ("measure", "value", "goal"):
        table.add_column(column)
    for row in report_rows(report):
        table.add_row(*row)
    Console().print(table)
    click.echo(f"naive path models: {report.naive_models}")


config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="TOML settings file, read instead of /etc/emostream/emostream.toml and "
    "~/.config/emostream/emostream.toml.",
)


def _effective_config(config_path: Path | None, overrides: dict[str, dict[str, Any]]) -> Any:
    """Settings from the config files and ``overrides`` (None values dropped); one-line errors."""
    from streamer.config import ConfigError
    from streamer.config_paths import load_effective_config

    given = {
        section: {key: value for key, value in keys.items() if value is not None}
        for section, keys in overrides.items()
    }
    try:
        return load_effective_config(config_path, given)
    except ConfigError as error:
        raise click.ClickException(str(error)) from None


@main.command()
@click.argument("address", required=False)
@click.option(
    "--stale-after",
    type=click.FloatRange(min=0.5),
    default=3.0,
    show_default=True,
    help="Seconds without a message before the screen says nothing is publishing.",
)
@click.option(
    "--curve-secret",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="This client's NAME.key_secret, for a daemon that publishes with CURVE.",
)
@click.option(
    "--curve-server",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="The daemon's public NAME.key (with --curve-secret).",
)
@config_option
def monitor(
    address: str | None,
    stale_after: float,
    curve_secret: Path | None,
    curve_server: Path | None,
    config_path: Path | None,
) -> None:
    """Live view of the stream at ADDRESS; reconnects when the daemon restarts.

    ADDRESS defaults to where the configuration makes the daemon publish. An MQTT broker
    (mqtt://HOST or mqtts://HOST; login and CA from [mqtt]) shows the fleet: one row per
    device that bridges to it.
    """
    # Imported here so that the monitor starts without loading the audio and model stack.
    from streamer.client import ClientError, connect_address
    from streamer.monitor import run_monitor

    if address is not None and address.startswith(("mqtt://", "mqtts://")):
        _fleet_monitor(address, config_path)
        return
    if address is None:
        address = connect_address(_effective_config(config_path, {}).config.publish.bind)
    if not sys.stdout.isatty():
        raise click.ClickException(
            "monitor draws a live screen and needs a terminal; "
            "for one line per window, run examples/subscriber.py"
        )
    try:
        run_monitor(
            address,
            stale_after=stale_after,
            curve_secret_key=curve_secret,
            curve_server_key=curve_server,
        )
    except ClientError as error:
        raise click.ClickException(str(error)) from None
    except KeyboardInterrupt:
        pass


def _fleet_monitor(broker: str, config_path: Path | None) -> None:
    from streamer.fleet import run_fleet_monitor
    from streamer.mqtt import MqttError

    settings = _effective_config(config_path, {"mqtt": {"broker": broker}}).config.mqtt
    if not sys.stdout.isatty():
        raise click.ClickException("monitor draws a live screen and needs a terminal")
    try:
        run_fleet_monitor(settings)
    except MqttError as error:
        raise click.ClickException(str(error)) from None
    except KeyboardInterrupt:
        pass


@main.command()
@click.argument("address", required=False)
@click.option("--broker", default=None, help="MQTT broker URL.  [default: mqtt://127.0.0.1:1883]")
@click.option(
    "--device",
    default=None,
    help="Name of the device in MQTT topics.  [default: [publish] device, else the host name]",
)
@click.option(
    "--curve-secret",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="This client's NAME.key_secret, for a daemon that publishes with CURVE.",
)
@click.option(
    "--curve-server",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="The daemon's public NAME.key (with --curve-secret).",
)
@config_option
def mqtt(
    address: str | None,
    broker: str | None,
    device: str | None,
    curve_secret: Path | None,
    curve_server: Path | None,
    config_path: Path | None,
) -> None:
    """Publish the stream of the daemon at ADDRESS to an MQTT broker, with Home Assistant
    discovery; the other settings are [mqtt] in the config file.

    ADDRESS defaults to where the configuration makes the daemon publish. SIGTERM or Ctrl-C
    publishes "offline" and stops.
    """
    from streamer.client import ClientError
    from streamer.mqtt import MqttError
    from streamer.mqtt_bridge import run_bridge

    overrides = {
        "publish": {"device": device},
        "mqtt": {
            "broker": broker,
            "daemon": address,
            "curve_secret_key": str(curve_secret) if curve_secret else None,
            "curve_server_key": str(curve_server) if curve_server else None,
        },
    }
    config = _effective_config(config_path, overrides).config
    try:
        run_bridge(config)
    except (ClientError, MqttError) as error:
        raise click.ClickException(str(error)) from None


@main.command()
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False))
@click.option(
    "--name",
    default="emostream",
    show_default=True,
    help="Key pair name: writes NAME.key (public) and NAME.key_secret (owner-only).",
)
def keygen(directory: Path, name: str) -> None:
    """Make a CURVE key pair in DIRECTORY, for encrypted publishing beyond loopback.

    The daemon uses its NAME.key_secret (serve --curve-secret); each client's NAME.key goes into
    the daemon's authorised-clients directory (serve --curve-clients), and each client is given
    the daemon's NAME.key (monitor --curve-server).
    """
    from streamer.keys import KeyFileError, generate_key_pair

    try:
        public, secret = generate_key_pair(directory, name)
    except KeyFileError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"public key (share it): {public}")
    click.echo(f"secret key (keep it):  {secret}")


@main.command("config")
@config_option
@click.option(
    "--set",
    "assignments",
    multiple=True,
    metavar="SECTION.KEY=VALUE",
    help="Override one setting, as a command-line option would (repeatable).",
)
def show_config(config_path: Path | None, assignments: tuple[str, ...]) -> None:
    """Print the effective configuration as TOML, naming the files it came from.

    Precedence, lowest first: defaults, /etc/emostream/emostream.toml,
    ~/.config/emostream/emostream.toml (or the --config file alone), then --set.
    """
    from streamer.config import ConfigError
    from streamer.config_paths import parse_assignment, to_toml

    overrides: dict[str, dict[str, Any]] = {}
    try:
        for assignment in assignments:
            section, key, value = parse_assignment(assignment)
            overrides.setdefault(section, {})[key] = value
    except ConfigError as error:
        raise click.ClickException(str(error)) from None
    effective = _effective_config(config_path, overrides)
    files = ", ".join(map(str, effective.files)) or "none (defaults)"
    click.echo(f"# emostream {__version__} effective configuration; files read: {files}")
    click.echo(to_toml(effective.config), nl=False)


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per file, per line.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV with a header row.")
@click.option(
    "--windows", is_flag=True, help="Also list every window (table and CSV; JSON always does)."
)
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
@config_option
def classify(
    files: tuple[Path, ...],
    as_json: bool,
    as_csv: bool,
    windows: bool,
    model: str | None,
    hop: float | None,
    models_dir: Path | None,
    config_path: Path | None,
) -> None:
    """Label audio FILES offline, per file and per window, with the daemon's pipeline.

    Unreadable files are named on standard error and skipped; the exit status is then 1.
    """
    from rich.console import Console

    from streamer.classify import classify_files, csv_rows, json_line, probability_columns, table
    from streamer.config import ConfigError
    from streamer.models import ModelError, load_models

    if as_json and as_csv:
        raise click.UsageError("choose one of --json and --csv")
    models = {"both": ("cnn", "lstm"), None: None}.get(model, (model,))
    overrides = {"pipeline": {"models": models, "hop_seconds": hop, "model_dir": models_dir}}
    settings = _effective_config(config_path, overrides).config.pipeline
    results = []
    skipped = []
    try:
        loaded = load_models(settings.model_dir, settings.models)
        for outcome in classify_files(list(files), loaded, settings):
            if isinstance(outcome, Exception):
                click.echo(f"skipped {outcome}", err=True)
                skipped.append(outcome)
                continue
            if as_json:
                click.echo(json_line(outcome))
            results.append(outcome)
    except (ConfigError, ModelError) as error:
        raise click.ClickException(str(error)) from None
    if as_csv:
        click.echo(csv_rows(results, probability_columns(loaded), windows), nl=False)
    elif not as_json and results:
        console = Console()
        view = table(results, windows)
        if not console.is_terminal:
            # Piped output is not cut to 80 columns: each row stays whole for grep and friends.
            unlimited = console.options.update_width(10_000)
            console = Console(width=console.measure(view, options=unlimited).maximum)
        console.print(view)
    if skipped:
        raise click.ClickException(f"{len(skipped)} of {len(files)} files skipped (unreadable)")


@main.command()
def devices() -> None:
    """List audio input devices and the sample rates each accepts."""
    from streamer.sources import SourceError, list_input_devices

    try:
        found = list_input_devices()
    except SourceError as error:
        raise click.ClickException(str(error)) from None
    if not found:
        raise click.ClickException(
            "no audio input device found: connect a microphone, or check that PulseAudio or "
            "PipeWire runs and that this user may use audio (group 'audio')"
        )
    for device in found:
        rates = ", ".join(str(rate) for rate in device.rates) or "none of the common rates"
        marker = "*" if device.default else " "
        click.echo(
            f"{marker} {device.index:>2}  {device.name}  ({device.host_api}, "
            f"{device.channels} ch, default {device.default_rate} Hz)  rates: {rates}"
        )
    click.echo("* default input; choose one with --source mic:INDEX or mic:NAME")


def _training_options(command: Callable) -> Callable:
    """Options shared by ``train`` and ``evaluate``."""
    for option in reversed(
        [
            click.option(
                "--data",
                type=click.Path(path_type=Path),
                default=None,
                help="Folder holding the corpora.  "
                "[default: $EMOSTREAM_DATA or ../shared/datasets]",
            ),
            click.option(
                "--model",
                type=click.Choice(["cnn", "lstm", "both"]),
                default="both",
                show_default=True,
            ),
            click.option(
                "--epochs",
                type=click.IntRange(min=1),
                default=None,
                help="Training epochs.  [default: 30]",
            ),
            click.option(
                "--per-speaker",
                type=click.IntRange(min=1),
                default=None,
                help="Use only this many utterances of each speaker (quick runs).",
            ),
        ]
    ):
        command = option(command)
    return command


def _training_setup(data: Path | None, model: str, epochs: int | None):
    """Corpora folder, model names and TrainConfig from the shared training options."""
    from training.train import TrainConfig

    datasets = data or Path(
        os.environ.get("EMOSTREAM_DATA", Path.cwd().parent / "shared" / "datasets")
    )
    names = ("cnn", "lstm") if model == "both" else (model,)
    config = TrainConfig() if epochs is None else dataclasses.replace(TrainConfig(), epochs=epochs)
    return datasets, names, config


_CORPORA = click.Choice(["ravdess", "tess", "emodb", "cremad", "savee"])


@main.command()
@click.option(
    "--corpus",
    "corpora",
    type=_CORPORA,
    multiple=True,
    default=("ravdess", "tess", "emodb"),
    show_default=True,
    help="Corpus to train on; repeat to combine.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("models"),
    show_default=True,
    help="Where NAME.tflite, NAME.json and NAME.keras are written.",
)
@_training_options
def train(
    corpora: tuple[str, ...],
    out: Path,
    data: Path | None,
    model: str,
    epochs: int | None,
    per_speaker: int | None,
) -> None:
    """Train both models on every speaker of the corpora and export int8 TFLite models."""
    from training.corpora import CorpusError
    from training.train import train_models

    datasets, names, config = _training_setup(data, model, epochs)
    try:
        paths = train_models(corpora, datasets, out, names, config=config, per_speaker=per_speaker)
    except (CorpusError, ValueError) as error:
        raise click.ClickException(str(error)) from None
    for path in paths:
        click.echo(f"wrote {path} and {path.with_suffix('.json')}")


@main.command()
@click.option("--corpus", type=_CORPORA, required=True)
@click.option(
    "--protocol",
    type=click.Choice(["speaker", "random", "leaky"]),
    default="speaker",
    show_default=True,
    help="speaker-independent folds, random split, or the seed's leaky protocol "
    "(augment, then split).",
)
@click.option("--out", type=click.Path(path_type=Path), default=Path("reports"), show_default=True)
@click.option(
    "--folds", type=click.IntRange(min=1), default=None, help="Run only the first N folds."
)
@_training_options
def evaluate(
    corpus: str,
    protocol: str,
    out: Path,
    folds: int | None,
    data: Path | None,
    model: str,
    epochs: int | None,
    per_speaker: int | None,
) -> None:
    """Train and test fold by fold; write JSON, Markdown and confusion PNGs to reports/."""
    from training.corpora import CorpusError
    from training.evaluate import evaluate_corpus, write_report

    datasets, names, config = _training_setup(data, model, epochs)
    try:
        report = evaluate_corpus(
            corpus,
            protocol,
            datasets,
            names,
            config=config,
            folds_limit=folds,
            per_speaker=per_speaker,
        )
    except (CorpusError, ValueError) as error:
        raise click.ClickException(str(error)) from None
    for path in write_report(report, out):
        click.echo(f"wrote {path}")
    click.echo((out / f"{corpus}-{protocol}.md").read_text())
