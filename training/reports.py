"""Evaluation reports: JSON, a Markdown table per corpus and protocol, confusion-matrix PNGs,
and one summary table of every report in a folder (the figures the model card quotes)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from training.evaluate import rescored


def write_report(report: dict, directory: Path) -> list[Path]:
    """JSON, Markdown table and confusion-matrix PNGs of a report; returns the files written."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    report = rescored(report)
    stem = f"{report['corpus']}-{report['protocol']}"
    written = [directory / f"{stem}.json", directory / f"{stem}.md"]
    written[0].write_text(json.dumps(report, indent=1) + "\n")
    written[1].write_text(markdown_table(report))
    written += _confusion_pngs(report, directory, stem)
    summary = directory / "README.md"
    summary.write_text(summary_table(sorted(directory.glob("*.json"))))
    return [*written, summary]


def summary_table(report_files: list[Path]) -> str:
    """One table of every report in a folder: the figures the model card quotes."""
    lines = [
        "# Evaluation reports",
        "",
        "Mean over folds; pooled = from the confusion matrix summed over folds. UA = unweighted",
        "accuracy (mean per-class recall), per utterance, WA = accuracy; the",
        "leaky rows score single windows, as the seed notebook did. Reproduce a row with",
        "`emostream evaluate --corpus CORPUS --protocol PROTOCOL`.",
        "",
        "| Corpus | Protocol | Folds | Model | Loss | UA | UA pooled | WA | Macro-F1 "
        "| int8 = float |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for path in report_files:
        report = json.loads(path.read_text())
        partial = report.get("folds_limit") or report.get("per_speaker")
        folds = f"{len(report['folds'])}{' (partial)' if partial else ''}"
        for model, variants in report["mean"].items():
            variant = "int8" if "int8" in variants else "float"
            s = variants[variant]
            agreement = variants.get("agreement")
            lines.append(
                f"| {report['corpus']} | {report['protocol']} | {folds} | {model} ({variant}) "
                f"| {s['loss']:.3f} | {100 * s['unweighted_accuracy']:.1f} % "
                f"| {100 * s['pooled']['unweighted_accuracy']:.1f} % "
                f"| {100 * s['weighted_accuracy']:.1f} % | {100 * s['macro_f1']:.1f} % "
                f"| {'' if agreement is None else f'{100 * agreement:.1f} %'} |"
            )
    return "\n".join(lines) + "\n"


def markdown_table(report: dict) -> str:
    """The seed's table (Model | Loss | Accuracy), with our other figures beside it."""
    metric = "window accuracy" if report["protocol"] == "leaky" else "UA"
    lines = [
        f"# {report['corpus']} — {report['protocol']} protocol"
        + (
            " (LEAKY: augmented copies of training clips are in the test set)"
            if report["protocol"] == "leaky"
            else ""
        ),
        "",
        f"{len(report['folds'])} fold(s), {report['utterances']} utterances, "
        f"labels: {', '.join(report['labels'])}. Mean over folds; pooled = from the confusion "
        "matrix summed over folds.",
        "",
        f"| Model | Loss | Accuracy ({metric}) | {metric} pooled | Weighted accuracy | Macro-F1 "
        "| int8 agreement |",
        "|---|---|---|---|---|---|---|",
    ]
    for model, variants in report["mean"].items():
        for variant in ("float", "int8"):
            if variant not in variants:
                continue
            s = variants[variant]
            agreement = variants.get("agreement") if variant == "int8" else None
            cells = [
                f"{model} ({variant})",
                f"{s['loss']:.4f}",
                f"{100 * s['unweighted_accuracy']:.2f} %",
                f"{100 * s['pooled']['unweighted_accuracy']:.2f} %",
                f"{100 * s['weighted_accuracy']:.2f} %",
                f"{100 * s['macro_f1']:.2f} %",
                "" if agreement is None else f"{100 * agreement:.1f} %",
            ]
            lines.append("| " + " | ".join(cells) + " |")
    if len(report["folds"]) > 1:
        models = list(report["folds"][0]["models"])
        lines += [
            "",
            "Per fold (UA of the int8 models):",
            "",
            "| Fold | " + " | ".join(models) + " |",
            "|---" * (len(models) + 1) + "|",
        ]
        for fold in report["folds"]:
            cells = [
                f"{100 * fold['models'][m]['int8']['unweighted_accuracy']:.1f} %" for m in models
            ]
            lines.append(f"| {fold['fold']} | " + " | ".join(cells) + " |")
    best = report["mean"]
    lines += ["", "Confusion (rows true, columns predicted; " + ", ".join(report["labels"]) + "):"]
    for model, variants in best.items():
        variant = "int8" if "int8" in variants else "float"
        lines += ["", f"{model} ({variant}):", "", "```"]
        lines += [" ".join(f"{n:5d}" for n in row) for row in variants[variant]["confusion"]]
        lines += ["```"]
    return "\n".join(lines) + "\n"


def _confusion_pngs(report: dict, directory: Path, stem: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for model, variants in report["mean"].items():
        variant = "int8" if "int8" in variants else "float"
        matrix = np.array(variants[variant]["confusion"], dtype=float)
        rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
        figure, axes = plt.subplots(figsize=(6, 5))
        axes.imshow(rates, cmap="Blues", vmin=0, vmax=1)
        axes.set_xticks(range(len(report["labels"])), report["labels"], rotation=45, ha="right")
        axes.set_yticks(range(len(report["labels"])), report["labels"])
        for (i, j), count in np.ndenumerate(matrix):
            axes.text(
                j,
                i,
                str(int(count)),
                ha="center",
                va="center",
                color="white" if rates[i, j] > 0.5 else "black",
                fontsize=8,
            )
        axes.set_xlabel("predicted")
        axes.set_ylabel("true")
        axes.set_title(f"{report['corpus']} {report['protocol']}: {model} ({variant})")
        figure.tight_layout()
        path = directory / f"{stem}-{model}.png"
        figure.savefig(path, dpi=100)
        plt.close(figure)
        written.append(path)
    return written
