"""Ablation: each lever of the functionals model changed alone, on the same folds.

The CNN and CNN-LSTM take half an hour per corpus to evaluate on this machine; the functionals
model (a logistic regression) takes a minute or two, so its levers are measured one by one
here (Emo-DB leave one speaker out or RAVDESS 5 x 4 actors: the same folds and settings as
``emostream evaluate``). The ensemble's own figures (each model alone, adapted, cold,
neutral-heavy) come from the full reports.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamer.features import FeatureSpec
from training.evaluate import evaluate_corpus
from training.train import TrainConfig


@dataclass(frozen=True)
class Lever:
    """One change from the shipped recipe."""

    name: str
    """What is switched off or replaced."""
    spec: dict[str, Any] = dataclasses.field(default_factory=dict)
    """FeatureSpec fields changed."""
    training: dict[str, Any] = dataclasses.field(default_factory=dict)
    """TrainConfig fields changed."""


LEVERS = (
    Lever("shipped recipe"),
    Lever("per-window CMVN instead of voice statistics", spec={"normalisation": "cmvn"}),
    Lever("no augmentation (pitch, stretch, noise copies)", training={"augment": ()}),
    Lever("no cold copies in training", training={"cold_copies": ()}),
    Lever("cold copies of the original recordings only", training={"cold_variants": ("original",)}),
    Lever(
        "cold copies counting once, not four times, in the functionals model's fit",
        training={"functionals_cold_weight": 1.0},
    ),
    Lever("regularisation C = 0.001 instead of 0.0005", training={"functionals_c": 0.001}),
    Lever("dynamic range 80 dB instead of 40", spec={"dynamic_range_db": 80.0}),
    Lever("dynamic range 30 dB instead of 40", spec={"dynamic_range_db": 30.0}),
)


def run_ablation(corpus: str, datasets: Path, levers: tuple[Lever, ...] = LEVERS) -> list[dict]:
    """UA (int8, mean over folds) adapted, cold and neutral-heavy for each lever."""
    rows = []
    for lever in levers:
        spec = dataclasses.replace(FeatureSpec(), **lever.spec)
        config = dataclasses.replace(TrainConfig(), **lever.training)
        started = time.perf_counter()
        report = evaluate_corpus(corpus, "speaker", datasets, ("functionals",), spec, config)
        figures = report["mean"]["functionals"]
        rows.append(
            {
                "lever": lever.name,
                **{
                    condition: figures[variant]["unweighted_accuracy"]
                    for condition, variant in (
                        ("adapted", "int8"),
                        ("cold", "int8-cold"),
                        ("neutral-heavy", "int8-neutral"),
                    )
                    if variant in figures
                },
                "seconds": round(time.perf_counter() - started),
            }
        )
    return rows


def ablation_table(corpus: str, rows: list[dict]) -> str:
    """Markdown rows: lever, UA adapted / cold / neutral-heavy, and the time the run took."""
    lines = [
        f"Functionals model alone, {corpus} leave one speaker out, int8, UA mean over folds:",
        "",
        "| lever | adapted | cold | neutral-heavy | run time |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        cells = [
            f"{100 * row[c]:.1f} %" if c in row else "–"
            for c in ("adapted", "cold", "neutral-heavy")
        ]
        lines.append(f"| {row['lever']} | {' | '.join(cells)} | {row['seconds']} s |")
    return "\n".join(lines) + "\n"


def main() -> None:
    """``python -m training.ablation [CORPUS [WORD...]]``: prints the table (Markdown).

    WORDs keep only the levers whose name contains one of them ("shipped", "dynamic", ...), so
    that a new lever can be measured without rerunning the others."""
    import logging
    import os
    import sys

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    corpus = sys.argv[1] if len(sys.argv) > 1 else "emodb"
    words = sys.argv[2:]
    levers = tuple(lever for lever in LEVERS if not words or any(w in lever.name for w in words))
    datasets = Path(os.environ.get("EMOSTREAM_DATA", Path.cwd().parent / "shared" / "datasets"))
    print(ablation_table(corpus, run_ablation(corpus, datasets, levers)))


if __name__ == "__main__":
    main()
