"""``bench``: the daemon's per-hop cost, speed, memory and start-up against the naive path."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
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
    """Time the daemon per hop on one core, against librosa + Keras predict.

    CLIPS are speech files, repeated to --seconds (in a checkout: tests/data/*.wav). Without
    the [train] extra (TensorFlow, librosa) the naive path is left out and said so.
    """
    from streamer.audio import AudioError
    from streamer.bench import report_json, run_bench
    from streamer.cli.output import print_bench
    from streamer.models import ModelError
    from streamer.shipped import DEFAULT_MODEL_DIR

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
    else:
        print_bench(report)
