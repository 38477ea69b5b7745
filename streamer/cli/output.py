"""What the commands print: tables and listings, apart from the parsing of their options."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from streamer import __version__

if TYPE_CHECKING:
    from streamer.bench import BenchReport
    from streamer.classify import FileResult
    from streamer.config_paths import EffectiveConfig
    from streamer.sources import InputDevice


def print_config(settings: EffectiveConfig) -> None:
    """The settings as TOML, after a comment line naming the files they came from."""
    from streamer.config_paths import to_toml

    files = ", ".join(map(str, settings.files)) or "none (defaults)"
    click.echo(f"# emostream {__version__} effective configuration; files read: {files}")
    click.echo(to_toml(settings.config), nl=False)


def print_devices(found: list[InputDevice]) -> None:
    """One line per input device, the default one marked."""
    for device in found:
        rates = ", ".join(str(rate) for rate in device.rates) or "none of the common rates"
        marker = "*" if device.default else " "
        click.echo(
            f"{marker} {device.index:>2}  {device.name}  ({device.host_api}, "
            f"{device.channels} ch, default {device.default_rate} Hz)  rates: {rates}"
        )
    click.echo("* default input; choose one with --source mic:INDEX or mic:NAME")


def print_classified(results: list[FileResult], per_window: bool) -> None:
    """The classify table; piped output is not cut to 80 columns, so each row stays whole
    for grep and friends."""
    from rich.console import Console

    from streamer.classify import table

    console = Console()
    view = table(results, per_window)
    if not console.is_terminal:
        unlimited = console.options.update_width(10_000)
        console = Console(width=console.measure(view, options=unlimited).maximum)
    console.print(view)


def print_bench(report: BenchReport) -> None:
    """The bench figures as a table, goals beside them."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from streamer.bench import report_rows

    table = Table(title=f"emostream bench (one core: cpu {report.cpu})")
    for column in ("measure", "value", "goal"):
        table.add_column(column)
    for row in report_rows(report):
        table.add_row(*map(escape, row))  # "[train]" is text, not rich markup
    Console().print(table)
    click.echo(f"naive path models: {report.naive_models}")
