"""Evaluation reports: JSON, a Markdown table per corpus and protocol, confusion-matrix PNGs,
and one summary table of every report in a folder (the figures the model card quotes)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from training.evaluate import ENSEMBLES, VARIANTS, rescored
from training.fusion import kept_folds
from training.metrics import CONDITIONS


def write_report(report: dict, directory: Path) -> list[Path]:
    """JSON, Markdown table, confusion-matrix PNGs and the kept probabilities (``.npz``, taken
    out of the report's folds) of a report; returns the files written."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    report = rescored(report)
    stem = f"{report['corpus']}-{report['protocol']}"
    _save_probabilities(report, directory / f"{stem}-probabilities.npz")
    written = [directory / f"{stem}.json", directory / f"{stem}.md"]
    written[0].write_text(json.dumps(report, indent=1) + "\n")
    written[1].write_text(markdown_table(report))
    written += _confusion_pngs(report, directory, stem)
    summary = directory / "README.md"
    summary.write_text(summary_table(sorted(directory.glob("*.json"))))
    return [*written, summary]


def read_report(directory: Path, corpus: str, protocol: str) -> dict:
    """The report ``write_report`` wrote, each fold's kept probabilities back in it; raises
    ValueError, naming the file at fault, unless they hold every model's that its folds score
    (what scoring its ensembles again needs: the leaky protocol keeps none)."""
    report_file = Path(directory) / f"{corpus}-{protocol}.json"
    try:
        report = json.loads(report_file.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{report_file}: no report to update") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{report_file}: not a report ({error.msg})") from None
    if not isinstance(report, dict) or not report.get("folds"):
        raise ValueError(f"{report_file}: not a report (no folds)")
    probabilities_file = report_file.with_name(f"{report_file.stem}-probabilities.npz")
    if not probabilities_file.is_file():
        raise ValueError(f"{probabilities_file}: missing, so the ensembles cannot be scored again")
    try:
        kept = {fold["fold"]: fold["probabilities"] for fold in kept_folds(probabilities_file)}
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise ValueError(f"{probabilities_file}: unreadable ({error})") from None
    for fold in report["folds"]:
        probabilities = fold["probabilities"] = kept.get(fold["fold"], {})
        for model, variants in fold["models"].items():
            if model in ENSEMBLES:
                continue
            for suffix in (s for s in CONDITIONS.values() if f"int8{s}" in variants):
                for key in (f"{model}/int8{suffix}", f"labels{suffix}"):
                    if key not in probabilities:
                        raise ValueError(f"{probabilities_file}: fold {fold['fold']} has no {key}")
    return report


def _save_probabilities(report: dict, path: Path) -> None:
    """Each fold's per-utterance int8 probabilities, kept beside the JSON (too many numbers for
    it): what choosing ensemble weights on other folds needs. They leave the report's folds."""
    for fold in report["folds"]:
        if "/" in fold["fold"]:
            raise ValueError(f"fold name {fold['fold']!r} holds '/', which separates the keys")
    arrays = {
        f"{fold['fold']}/{key}": values.astype(np.float32) if values.dtype.kind == "f" else values
        for fold in report["folds"]
        for key, values in fold.pop("probabilities", {}).items()
    }
    if arrays:
        np.savez_compressed(path, **arrays)


def _ua(variants: dict, variant: str) -> str:
    return f"{100 * variants[variant]['unweighted_accuracy']:.1f} %" if variant in variants else ""


def _recipe(features: dict) -> str:
    pitch = ", pitch" if "pitch_fmin" in features else ""
    return f"{features['dynamic_range_db']:g} dB{pitch}"


def summary_table(report_files: list[Path]) -> str:
    """One table of every report in a folder: the figures the model card quotes."""
    lines = [
        "# Evaluation reports",
        "",
        "UA = unweighted accuracy (mean per-class recall) per utterance, mean over folds, of the",
        "int8 models as the daemon runs them. Adapted: each test utterance standardised with its",
        "speaker's OTHER utterances; cold: with the training set's statistics (a voice never",
        "heard); neutral-heavy: adapted on statistics three quarters neutral. Pooled = from the",
        "confusion matrix summed over folds. Leaky rows score single windows of float models, as",
        "the seed notebook did. Shipped rows measure the shipped recipe: the corpus's speaker",
        "folds, trained on every other speaker of RAVDESS, TESS and Emo-DB with the shipped",
        "labels. Reproduce a row with",
        "`emostream evaluate --corpus CORPUS --protocol PROTOCOL`. Recipe = the features' dynamic",
        "range (`FeatureSpec.dynamic_range_db`) and whether they had pitch and voicing columns,",
        "which tells reports of older recipes apart.",
        "",
        "| Corpus | Protocol | Folds | Recipe | Model | UA adapted | UA cold | UA neutral-heavy "
        "| UA pooled | UA float | WA | Macro-F1 | int8 = float |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for path in report_files:
        report = json.loads(path.read_text())
        partial = report.get("folds_limit") or report.get("per_speaker")
        folds = f"{len(report['folds'])}{' (partial)' if partial else ''}"
        for model, variants in report["mean"].items():
            variant = "int8" if "int8" in variants else "float"
            s = variants[variant]
            agreement = variants.get("agreement")
            cells = [
                report["corpus"],
                report["protocol"],
                folds,
                _recipe(report["features"]),
                f"{model} ({variant})",
                _ua(variants, variant),
                _ua(variants, f"{variant}-cold"),
                _ua(variants, f"{variant}-neutral"),
                f"{100 * s['pooled']['unweighted_accuracy']:.1f} %",
                _ua(variants, "float") if variant == "int8" else "",
                f"{100 * s['weighted_accuracy']:.1f} %",
                f"{100 * s['macro_f1']:.1f} %",
                "" if agreement is None else f"{100 * agreement:.1f} %",
            ]
            lines.append("| " + " | ".join(cells) + " |")
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
        f"matrix summed over folds; {report.get('seconds', '?')} s of training and testing. "
        "Variants: adapted (no suffix: each utterance standardised with its speaker's other "
        "utterances), -cold (training-set statistics), -neutral (adapted, three quarters "
        "neutral).",
        "",
        f"| Model | Loss | Accuracy ({metric}) | {metric} pooled | Weighted accuracy | Macro-F1 "
        "| int8 agreement |",
        "|---|---|---|---|---|---|---|",
    ]
    for model, retrained in report.get("retrained", {}).items():
        # As JSON: the report read back holds lists where the run's settings held tuples.
        changed = ", ".join(
            f"{key} = {json.dumps(value)}"
            for key, value in retrained["training"].items()
            if json.dumps(report["training"].get(key)) != json.dumps(value)
        )
        settings = f"with {changed}" if changed else "with the same settings"
        note = f"{model}: retrained alone since ({retrained['seconds']} s), {settings}."
        lines[-3:-3] = ["", note]
    for model, variants in report["mean"].items():
        for variant in VARIANTS:
            if variant not in variants:
                continue
            s = variants[variant]
            suffix = variant[len("int8") :] if variant.startswith("int8") else ""
            agreement = variants.get(f"agreement{suffix}") if variant.startswith("int8") else None
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
        shown = [v for v in ("int8", "int8-cold") if v in report["folds"][0]["models"][models[0]]]
        columns = [f"{m} {v}" for m in models for v in shown]
        weighted = "ensemble-weighted" in report["folds"][0]["models"]
        if weighted:
            columns.append("weights (chosen on the other folds)")
        lines += [
            "",
            "Per fold (UA of the int8 models):",
            "",
            "| Fold | " + " | ".join(columns) + " |",
            "|---" * (len(columns) + 1) + "|",
        ]
        for fold in report["folds"]:
            cells = [_ua(fold["models"][m], v) for m in models for v in shown]
            if weighted:
                weights = fold["models"]["ensemble-weighted"]["weights"]
                cells.append(", ".join(f"{m} {w:g}" for m, w in weights.items()))
            lines.append(f"| {fold['fold']} | " + " | ".join(cells) + " |")
    lines += ["", "Confusion (rows true, columns predicted; " + ", ".join(report["labels"]) + "):"]
    for model, variants in report["mean"].items():
        for variant in ("int8", "int8-cold", "float"):
            if variant not in variants or (variant == "float" and "int8" in variants):
                continue
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
