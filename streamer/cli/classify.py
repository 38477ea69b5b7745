"""``classify``: label audio files offline with the daemon's pipeline."""

from __future__ import annotations

from pathlib import Path

import click

from streamer.cli.options import settings_options
from streamer.config_paths import EffectiveConfig


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--session",
    is_flag=True,
    help="The files are one voice: standardise each with the statistics of the others' speech "
    "(default: each file cold, with the training statistics).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per file, per line.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV with a header row.")
@click.option(
    "--windows", is_flag=True, help="Also list every window (table and CSV; JSON always does)."
)
@settings_options("pipeline")
def classify(
    files: tuple[Path, ...],
    session: bool,
    as_json: bool,
    as_csv: bool,
    windows: bool,
    settings: EffectiveConfig,
) -> None:
    """Label audio FILES offline, per file and per window, with the daemon's pipeline.

    A directory stands for the audio files under it. Unreadable files are named on standard
    error and skipped; the exit status is then 1.
    """
    from streamer.audio import AudioError
    from streamer.classify import (
        audio_files,
        classify_files,
        csv_rows,
        json_line,
        probability_columns,
    )
    from streamer.cli.output import print_classified
    from streamer.config import ConfigError
    from streamer.models import ModelError, load_models

    if as_json and as_csv:
        raise click.UsageError("choose one of --json and --csv")
    pipeline = settings.config.pipeline
    results = []
    skipped = []
    try:
        paths = audio_files(list(files))
        loaded = load_models(pipeline.model_dir, pipeline.models)
        for outcome in classify_files(paths, loaded, pipeline, session):
            if isinstance(outcome, Exception):
                click.echo(f"skipped {outcome}", err=True)
                skipped.append(outcome)
                continue
            if as_json:
                click.echo(json_line(outcome))
            results.append(outcome)
    except (AudioError, ConfigError, ModelError) as error:
        raise click.ClickException(str(error)) from None
    if as_csv:
        click.echo(csv_rows(results, probability_columns(loaded), windows), nl=False)
    elif not as_json and results:
        print_classified(results, windows)
    if skipped:
        raise click.ClickException(f"{len(skipped)} of {len(paths)} files skipped (unreadable)")
