"""``emostream train`` and ``emostream evaluate``: registered with the ``emostream`` command
line through the ``emostream.commands`` entry-point group (pyproject.toml), so the runtime
never imports ``training``. They need the ``[train]`` extra and say so when it is missing."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

CORPORA = click.Choice(["ravdess", "tess", "emodb", "cremad", "savee"])
"""Corpora ``training.corpora`` can read."""


def _requires_training_extra(command_name: str) -> None:
    """One line naming the missing package when the ``[train]`` extra is not installed.

    Importing ``training.train`` imports Keras (TensorFlow) and librosa, which the commands
    need anyway, so this costs nothing when they are present.
    """
    try:
        import training.train  # noqa: F401
    except ModuleNotFoundError as error:
        if error.name and error.name.partition(".")[0] in ("training", "streamer"):
            raise
        raise click.ClickException(
            f"{command_name} needs {error.name} from the [train] extra: pip install -e '.[train]'"
        ) from None


def _training_options(command: Callable[..., Any]) -> Callable[..., Any]:
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
                type=click.Choice(["cnn", "lstm", "functionals", "all"]),
                default="all",
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


def _training_setup(data: Path | None, model: str, epochs: int | None) -> tuple[Any, ...]:
    """Corpora folder, model names and TrainConfig from the shared training options."""
    from training.train import TrainConfig

    datasets = data or Path(
        os.environ.get("EMOSTREAM_DATA", Path.cwd().parent / "shared" / "datasets")
    )
    names = ("cnn", "lstm", "functionals") if model == "all" else (model,)
    config = TrainConfig() if epochs is None else dataclasses.replace(TrainConfig(), epochs=epochs)
    return datasets, names, config


@click.command()
@click.option(
    "--corpus",
    "corpora",
    type=CORPORA,
    multiple=True,
    default=("ravdess", "tess", "emodb"),  # training.corpora.SHIPPED_CORPORA, not imported here
    show_default=True,
    help="Corpus to train on; repeat to combine.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Where NAME.tflite, NAME.json and NAME.keras are written (serve them with "
    "--models-dir).  [default: $XDG_DATA_HOME/emostream/models, ~/.local/share/emostream/models]",
)
@_training_options
def train(
    corpora: tuple[str, ...],
    out: Path | None,
    data: Path | None,
    model: str,
    epochs: int | None,
    per_speaker: int | None,
) -> None:
    """Train the models on every speaker of the corpora and export int8 TFLite models."""
    _requires_training_extra("train")
    from training.corpora import CorpusError
    from training.train import train_models

    datasets, names, config = _training_setup(data, model, epochs)
    out = out or user_model_dir()
    try:
        paths = train_models(corpora, datasets, out, names, config=config, per_speaker=per_speaker)
    except (CorpusError, ValueError) as error:
        raise click.ClickException(str(error)) from None
    for path in paths:
        click.echo(f"wrote {path} and {path.with_suffix('.json')}")
    click.echo(f"use them with: emostream serve --models-dir {out}")


def user_model_dir() -> Path:
    """Where ``train`` writes unless told: the user's data folder, never the shipped models
    (tracked in git, and inside the installed package)."""
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "emostream" / "models"


@click.command()
@click.option("--corpus", type=CORPORA, required=True)
@click.option(
    "--protocol",
    type=click.Choice(["speaker", "random", "leaky", "shipped"]),
    default="speaker",
    show_default=True,
    help="speaker-independent folds, random split, the seed's leaky protocol (augment, then "
    "split), or the shipped recipe: the same speaker folds trained on the other corpora too.",
)
@click.option("--out", type=click.Path(path_type=Path), default=Path("reports"), show_default=True)
@click.option(
    "--folds", type=click.IntRange(min=1), default=None, help="Run only the first N folds."
)
@click.option(
    "--update",
    is_flag=True,
    help="Put the --model's results into the report already in --out, keeping its other "
    "models' results, and score its ensembles again (after retraining one model).",
)
@_training_options
def evaluate(
    corpus: str,
    protocol: str,
    out: Path,
    folds: int | None,
    update: bool,
    data: Path | None,
    model: str,
    epochs: int | None,
    per_speaker: int | None,
) -> None:
    """Train and test fold by fold; write JSON, Markdown and confusion PNGs to reports/."""
    _requires_training_extra("evaluate")
    from training.corpora import CorpusError
    from training.evaluate import evaluate_corpus, merge_reports
    from training.reports import write_report

    datasets, names, config = _training_setup(data, model, epochs)
    report_file = out / f"{corpus}-{protocol}.json"
    run = {"corpus": corpus, "protocol": protocol, "folds_limit": folds, "per_speaker": per_speaker}
    kept = _report_to_update(out, report_file, run) if update else None
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
    if kept is not None:
        try:
            report = merge_reports(kept, report)
        except ValueError as error:
            raise click.ClickException(f"{report_file}: {error}") from None
    for path in write_report(report, out):
        click.echo(f"wrote {path}")
    click.echo((out / f"{corpus}-{protocol}.md").read_text())


def _report_to_update(out: Path, report_file: Path, run: dict) -> dict:
    """The report in ``out`` (``report_file``) that ``evaluate --update`` merges a run of
    ``run``'s settings into, checked before anything is trained: a report that cannot take the
    run should not cost an evaluation."""
    from streamer.features import FeatureSpec
    from training.evaluate import check_mergeable
    from training.reports import read_report

    try:
        kept = read_report(out, run["corpus"], run["protocol"])
    except (ValueError, FileNotFoundError) as error:
        raise click.ClickException(str(error)) from None
    try:
        check_mergeable(kept, {**run, "features": FeatureSpec().to_dict()})
    except ValueError as error:
        raise click.ClickException(f"{report_file}: {error}") from None
    return kept
