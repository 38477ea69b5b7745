"""Commands of the subscribing side: ``monitor`` (live view of a daemon or a fleet), ``mqtt``
(the bridge to a broker) and ``keygen`` (CURVE keys)."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import click

from streamer.cli.options import config_file_option, load_settings, settings_options
from streamer.config import ConfigError
from streamer.config_paths import EffectiveConfig


@click.command()
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
@config_file_option
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
    from streamer.client import ClientError
    from streamer.monitor import run_monitor
    from streamer.wire import connect_address

    if address is not None and address.startswith(("mqtt://", "mqtts://")):
        _fleet_monitor(address, config_path)
        return
    if address is None:
        address = connect_address(load_settings(config_path).config.publish.bind)
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

    try:
        settings = dataclasses.replace(load_settings(config_path).config.mqtt, broker=broker)
    except ConfigError as error:
        raise click.ClickException(str(error)) from None
    if not sys.stdout.isatty():
        raise click.ClickException("monitor draws a live screen and needs a terminal")
    try:
        run_fleet_monitor(settings)
    except MqttError as error:
        raise click.ClickException(str(error)) from None
    except KeyboardInterrupt:
        pass


@click.command()
@click.argument("address", required=False)
@settings_options("mqtt", "publish.device")
def mqtt(address: str | None, settings: EffectiveConfig) -> None:
    """Publish the stream of the daemon at ADDRESS to an MQTT broker, with Home Assistant
    discovery; each flag is also a key of [mqtt] in the config file (--device: [publish]).

    ADDRESS defaults to where the configuration makes the daemon publish. SIGTERM or Ctrl-C
    publishes "offline" and stops.
    """
    from streamer.client import ClientError
    from streamer.mqtt import MqttError
    from streamer.mqtt_bridge import run_bridge

    config = settings.config
    try:
        if address is not None:
            config = dataclasses.replace(
                config, mqtt=dataclasses.replace(config.mqtt, daemon=address)
            )
        run_bridge(config)
    except (ConfigError, ClientError, MqttError) as error:
        raise click.ClickException(str(error)) from None


@click.command()
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
