"""Training end to end on a small real subset: train, export int8, reload, predict, report.

Checks that the machinery works, not accuracy (a few epochs on a few clips).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result
from needs import unavailable

from streamer.audio import read_audio
from streamer.cli import main
from streamer.features import FeatureExtractor, FeatureSpec
from streamer.models import MODEL_NAMES, TFLiteModel, load_models
from training.metrics import scores

ROOT = Path(__file__).resolve().parent.parent

try:
    import tensorflow  # noqa: F401
except ImportError:
    unavailable("training needs TensorFlow: pip install -e '.[train]'")
pytestmark = [pytest.mark.train, pytest.mark.corpus]


@pytest.fixture(autouse=True)
def private_feature_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def test_train_exports_int8_models_that_the_daemon_loader_accepts(
    datasets, tmp_path, test_clips, monkeypatch
):
    """Without --out, into the user's data folder: the shipped, tracked models stay as they are."""
    shipped = {path: path.read_bytes() for path in (ROOT / "models").iterdir()}
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.chdir(ROOT)  # the default reports/ folder, whose figures choose the weights
    result = CliRunner().invoke(
        main,
        ["train", "--corpus", "emodb", "--data", str(datasets), "--epochs", "2"]
        + ["--per-speaker", "4"],
    )
    assert result.exit_code == 0, result.output
    out = tmp_path / "data" / "emostream" / "models"
    assert f"emostream serve --models-dir {out}" in result.output
    assert {path: path.read_bytes() for path in (ROOT / "models").iterdir()} == shipped
    models = load_models(out, MODEL_NAMES, FeatureSpec())
    extractor = FeatureExtractor(FeatureSpec())
    window = extractor.windows(read_audio(test_clips[0], 16000), 0.5)[0]
    for model in models:
        assert model.path.stat().st_size < 1_000_000
        assert model.labels == ("neutral", "happy", "sad", "angry", "fearful", "disgust")
        metadata = json.loads(model.path.with_suffix(".json").read_text())
        assert metadata["training"]["corpora"] == ["emodb"]
        assert len(metadata["training"]["speakers"]) == 8
        assert metadata["emostream_version"] and metadata["created"]
        assert len(metadata["statistics"]["mean"]) == FeatureSpec().statistics_columns
        shipped_metadata = json.loads((ROOT / "models" / f"{model.name}.json").read_text())
        assert metadata["ensemble_weight"] == shipped_metadata["ensemble_weight"]
        statistics = model.metadata.statistics
        inputs = extractor.model_inputs(window, statistics).get(model.metadata.model_input)
        probabilities = model.predict(inputs)
        assert probabilities.shape == (6,)
        assert abs(probabilities.sum() - 1) < 0.05 and (probabilities >= 0).all()
    quantised = {model.name: input_type_and_int8_share(model.path) for model in models}
    # int8 weights everywhere; the recurrent model keeps float activations (training.export).
    assert {name: (kind, share > 0.95) for name, (kind, share) in quantised.items()} == {
        "cnn": ("int8", True),
        "lstm": ("float32", True),
        "functionals": ("int8", True),
    }


def input_type_and_int8_share(path: Path) -> tuple[str, float]:
    """The type of a TFLite model's input, and the share of its stored numbers (weights, biases,
    shapes) that are int8."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    stored: dict[str, int] = {}
    for tensor in interpreter.get_tensor_details():
        try:  # before allocation only stored tensors have data
            values = interpreter.get_tensor(tensor["index"])
        except ValueError:
            continue
        stored[values.dtype.name] = stored.get(values.dtype.name, 0) + values.size
    kind = interpreter.get_input_details()[0]["dtype"].__name__
    return kind, stored.get("int8", 0) / sum(stored.values())


def test_int8_model_agrees_with_its_float_model_on_real_windows(datasets, tmp_path):
    import keras

    runner = CliRunner()
    result = runner.invoke(
        main,
        [
            "train",
            "--corpus",
            "emodb",
            "--data",
            str(datasets),
            "--out",
            str(tmp_path),
            "--epochs",
            "3",
            "--per-speaker",
            "6",
            "--model",
            "cnn",
        ],
    )
    assert result.exit_code == 0, result.output
    float_model = keras.saving.load_model(tmp_path / "cnn.keras")
    int8_model = TFLiteModel(tmp_path / "cnn.tflite", FeatureSpec())
    extractor = FeatureExtractor(FeatureSpec())
    clips = sorted((datasets / "emodb" / "wav").glob("16*.wav"))[:12]
    statistics = int8_model.metadata.statistics
    inputs = np.stack(
        [
            extractor.model_inputs(
                extractor.windows(read_audio(c, 16000), 0.5)[0], statistics
            ).log_mel
            for c in clips
        ]
    )
    expected = float_model.predict(inputs[..., None], verbose=0)
    actual = np.stack([int8_model.predict(x) for x in inputs])
    assert np.abs(actual - expected).max() < 0.1


def quick_evaluation(datasets: Path, out: Path, *options: str, epochs: int = 1) -> Result:
    """``emostream evaluate`` of Emo-DB's first fold, five utterances per speaker."""
    arguments = ["evaluate", "--corpus", "emodb", "--data", str(datasets), "--out", str(out)]
    quick = ["--folds", "1", "--per-speaker", "5", "--epochs", str(epochs)]
    return CliRunner().invoke(main, [*arguments, *quick, *options])


@pytest.fixture(scope="module")
def evaluated(datasets, tmp_path_factory) -> Path:
    """A folder with the report of a quick evaluation of every model (made once: 50 s)."""
    out = tmp_path_factory.mktemp("reports")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
        result = quick_evaluation(datasets, out)
    assert result.exit_code == 0, result.output
    return out


def test_evaluate_writes_json_markdown_and_confusion_pngs(evaluated):
    report = json.loads((evaluated / "emodb-speaker.json").read_text())
    fold = report["folds"][0]
    assert fold["fold"] == "03" and fold["test_utterances"] == 5
    for model in MODEL_NAMES:
        scores = fold["models"][model]
        for variant in ("int8", "int8-cold", "float", "float-cold"):
            confusion = np.array(scores[variant]["confusion"])
            assert confusion.sum() == 5
            assert scores[variant]["weighted_accuracy"] == np.trace(confusion) / 5
        assert (evaluated / f"emodb-speaker-{model}.png").stat().st_size > 1000
    assert "ensemble" in fold["models"]
    # Each utterance's int8 probabilities are kept beside the report, and give its confusion.
    kept = np.load(evaluated / "emodb-speaker-probabilities.npz")
    assert "probabilities" not in fold
    for model in MODEL_NAMES:
        probabilities = kept[f"03/{model}/int8-cold"]
        assert probabilities.shape == (5, len(report["labels"]))
        confusion = np.zeros((len(report["labels"]),) * 2, int)
        np.add.at(confusion, (kept["03/labels-cold"], probabilities.argmax(axis=1)), 1)
        assert confusion.tolist() == fold["models"][model]["int8-cold"]["confusion"]
    assert "| cnn (int8) |" in (evaluated / "emodb-speaker.md").read_text()
    assert (
        "| emodb | speaker | 1 (partial) | 40 dB, pitch | ensemble (int8) |"
        in (evaluated / "README.md").read_text()
    )


def test_evaluate_update_retrains_one_model_and_keeps_the_others_results(
    datasets, evaluated, tmp_path
):
    """After retraining the CNN, the report holds its new results beside the others' old ones,
    and the ensemble is scored again from the kept probabilities of all three."""
    for path in evaluated.iterdir():
        (tmp_path / path.name).write_bytes(path.read_bytes())
    before = json.loads((tmp_path / "emodb-speaker.json").read_text())
    kept_before = dict(np.load(tmp_path / "emodb-speaker-probabilities.npz"))

    result = quick_evaluation(datasets, tmp_path, "--model", "cnn", "--update", epochs=2)

    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "emodb-speaker.json").read_text())
    kept = dict(np.load(tmp_path / "emodb-speaker-probabilities.npz"))
    old, new = before["folds"][0]["models"], report["folds"][0]["models"]
    assert report["training"]["epochs"] == 1
    assert report["retrained"]["cnn"]["training"]["epochs"] == 2
    assert new["lstm"] == old["lstm"] and new["functionals"] == old["functionals"]
    np.testing.assert_array_equal(kept["03/lstm/int8"], kept_before["03/lstm/int8"])
    assert not np.array_equal(kept["03/cnn/int8"], kept_before["03/cnn/int8"])
    average = np.mean([kept[f"03/{m}/int8-cold"] for m in MODEL_NAMES], axis=0)
    expected = scores(kept["03/labels-cold"], average, report["labels"])
    assert new["ensemble"]["int8-cold"]["loss"] == pytest.approx(expected["loss"], rel=1e-6)
    assert new["ensemble"]["int8-cold"]["loss"] != old["ensemble"]["int8-cold"]["loss"]
    assert new["ensemble"]["int8-cold"]["confusion"] == expected["confusion"]
    markdown = (tmp_path / "emodb-speaker.md").read_text()
    assert "cnn: retrained alone since" in markdown and "with epochs = 2." in markdown


def test_evaluate_update_without_a_report_names_it_before_training_anything(datasets, tmp_path):
    result = quick_evaluation(datasets, tmp_path, "--model", "cnn", "--update")
    assert result.exit_code != 0
    assert f"{tmp_path / 'emodb-speaker'}.json: no report to update" in result.output
    assert not list(tmp_path.iterdir())


def test_reports_of_other_folds_or_labels_are_not_merged():
    from training.evaluate import merge_reports

    kept = small_report("cnn", ["03"], [0, 1, 2])
    with pytest.raises(ValueError, match="other labels"):
        merge_reports(kept, {**small_report("lstm", ["03"], [0, 1, 2]), "labels": ["a", "b", "d"]})
    with pytest.raises(ValueError, match="other folds"):
        merge_reports(kept, small_report("lstm", ["08"], [0, 1, 2]))
    with pytest.raises(ValueError, match="fold 03 tests other utterances"):
        merge_reports(kept, small_report("lstm", ["03"], [2, 1, 0]))
    wider = {**FeatureSpec().to_dict(), "n_mels": 64}
    with pytest.raises(ValueError, match="features.n_mels 40, this run 64"):
        merge_reports(kept, {**small_report("lstm", ["03"], [0, 1, 2]), "features": wider})


def small_report(model: str, folds: list[str], truth: list[int]) -> dict:
    """A report of one model on three utterances per fold, adapted and cold, its probabilities
    kept."""
    rng = np.random.default_rng(len(model))

    def fold(name: str) -> dict:
        result, kept = {}, {}
        for suffix in ("", "-cold"):
            probabilities = rng.dirichlet(np.ones(3), len(truth))
            result[f"int8{suffix}"] = scores(np.array(truth), probabilities, ["a", "b", "c"])
            kept[f"labels{suffix}"] = np.array(truth)
            kept[f"{model}/int8{suffix}"] = probabilities
        return {"fold": name, "models": {model: result}, "probabilities": kept}

    return {
        "corpus": "emodb",
        "protocol": "speaker",
        "labels": ["a", "b", "c"],
        "speakers": ["03", "08"],
        "utterances": 6,
        "features": FeatureSpec().to_dict(),
        "training": {"epochs": 30},
        "seconds": 1.0,
        "folds": [fold(name) for name in folds],
    }


def test_a_model_new_to_a_report_joins_its_ensembles():
    from training.evaluate import merge_reports

    cnn, lstm = (small_report(model, ["03", "08"], [0, 1, 2]) for model in ("cnn", "lstm"))
    merged = merge_reports(cnn, lstm)

    for fold in merged["folds"]:
        assert list(fold["models"]) == ["cnn", "lstm", "ensemble", "ensemble-weighted"]
        kept = fold["probabilities"]
        average = (kept["cnn/int8"] + kept["lstm/int8"]) / 2
        expected = scores(kept["labels"], average, ["a", "b", "c"])["loss"]
        assert fold["models"]["ensemble"]["int8"]["loss"] == pytest.approx(expected)
        assert set(fold["models"]["ensemble-weighted"]["weights"]) == {"cnn", "lstm"}
    assert set(merged["mean"]) == {"cnn", "lstm", "ensemble", "ensemble-weighted"}
    assert merged["retrained"]["lstm"]["training"] == {"epochs": 30}


def test_a_report_whose_probabilities_are_gone_is_named_before_an_update(tmp_path):
    from training.reports import read_report, write_report

    write_report(small_report("cnn", ["03", "08"], [0, 1, 2]), tmp_path)
    assert read_report(tmp_path, "emodb", "speaker")["folds"][1]["probabilities"]
    (tmp_path / "emodb-speaker-probabilities.npz").unlink()
    with pytest.raises(ValueError, match="emodb-speaker-probabilities.npz: missing"):
        read_report(tmp_path, "emodb", "speaker")


def test_model_metadata_quotes_the_evaluation_reports_made_on_its_features(tmp_path):
    from training.export import attach_metrics

    shipped = json.loads((ROOT / "models" / "cnn.json").read_text())
    (tmp_path / "cnn.json").write_text(json.dumps(shipped))
    reports = tmp_path / "reports"
    reports.mkdir()
    figures = {
        "unweighted_accuracy": 0.6,
        "weighted_accuracy": 0.62,
        "macro_f1": 0.58,
        "loss": 1.1,
        "confusion": [[1]],
    }
    (reports / "emodb-speaker.json").write_text(
        json.dumps(
            {
                "corpus": "emodb",
                "protocol": "speaker",
                "features": shipped["features"],
                "mean": {"cnn": {"float": figures, "int8": figures}, "lstm": {"float": figures}},
            }
        )
    )
    older_recipe = {**shipped["features"], "dynamic_range_db": 80.0}
    (reports / "emodb-leaky.json").write_text(
        json.dumps(
            {
                "corpus": "emodb",
                "protocol": "leaky",
                "features": older_recipe,
                "mean": {"cnn": {"float": figures}},
            }
        )
    )
    attach_metrics(tmp_path / "cnn.tflite", reports)
    metrics = json.loads((tmp_path / "cnn.json").read_text())["metrics"]
    assert metrics == {
        "emodb-speaker": {
            "variant": "int8",
            "unweighted_accuracy": 0.6,
            "weighted_accuracy": 0.62,
            "macro_f1": 0.58,
            "loss": 1.1,
        }
    }


def real_windows(datasets, count: int):
    """Level-free windows of ``count`` Emo-DB clips, and each clip's emotion (4 classes)."""
    from training.dataset import WindowSet

    extractor = FeatureExtractor(FeatureSpec())
    clips = sorted((datasets / "emodb" / "wav").glob("1*.wav"))[:count]
    windows = [extractor.level_free(extractor.windows(read_audio(c, 16000), 0.5)[0]) for c in clips]
    level_free = WindowSet(
        np.stack([w.log_mel for w in windows]),
        np.stack([w.mfcc_energy for w in windows]),
        np.stack([w.prosody for w in windows]),
        np.arange(len(windows)),
        [],
    )
    return level_free, np.array(["NWFTLAE".index(c.name[5]) % 4 for c in clips])


def test_the_functionals_model_is_the_logistic_regression_on_standardised_functionals(datasets):
    """The training set's standardisation of each functional is folded into one Dense layer:
    the model gives the regression's probabilities on the functionals as they come."""
    from sklearn.linear_model import LogisticRegression

    from training.dataset import standardise_with, statistics_of
    from training.train import TrainConfig, fit

    level_free, emotions = real_windows(datasets, 40)
    windows = standardise_with(level_free, [statistics_of(level_free)] * len(emotions))
    config = TrainConfig(class_weighting=False)
    model = fit("functionals", windows, emotions, 4, config)
    x = windows.get("functionals").astype(np.float64)
    mean, spread = x.mean(axis=0), x.std(axis=0)
    std = np.where(spread > 1e-3, spread, np.inf)  # a constant functional is left out
    regression = LogisticRegression(C=config.functionals_c, max_iter=3000)
    regression.fit((x - mean) / std, emotions)
    expected = regression.predict_proba((x - mean) / std)
    actual = model.predict(x[..., None].astype(np.float32), verbose=0)
    assert np.abs(actual - expected).max() < 1e-4
    assert np.abs(expected - 0.25).max() > 0.1  # it has learnt something to compare


def test_a_class_without_training_windows_gets_no_probability(datasets):
    from training.dataset import standardise_with, statistics_of
    from training.train import TrainConfig, fit

    level_free, emotions = real_windows(datasets, 40)
    windows = standardise_with(level_free, [statistics_of(level_free)] * len(emotions))
    kept = emotions != 2
    model = fit("functionals", windows.rows(kept), emotions[kept], 4, TrainConfig())
    probabilities = model.predict(windows.get("functionals")[..., None], verbose=0)
    assert probabilities[:, 2].max() < 1e-9
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_a_window_that_counts_more_pulls_the_functionals_model_towards_its_label(datasets):
    """Cold copies count ``functionals_cold_weight`` times: the fit must honour the weights.
    Here every window comes twice with two labels, and the heavier copy's label wins."""
    from training.dataset import WindowSet, standardise_with, statistics_of
    from training.train import TrainConfig, fit

    level_free, emotions = real_windows(datasets, 40)
    windows = standardise_with(level_free, [statistics_of(level_free)] * len(emotions))
    twice = WindowSet.concat([windows, windows])
    other = (emotions + 1) % 4
    labels = np.concatenate([emotions, other])
    config = TrainConfig(class_weighting=False)
    x = windows.get("functionals")[..., None]

    def share_of_other(weight: float) -> float:
        weights = np.concatenate([np.ones(len(emotions)), np.full(len(emotions), weight)])
        model = fit("functionals", twice, labels, 4, config, 0, weights)
        return float(np.mean(model.predict(x, verbose=0).argmax(axis=1) == other))

    assert share_of_other(4.0) > 0.5 > share_of_other(0.25)


def test_a_neural_model_trains_on_weighted_windows_with_its_classes_weighted_too(datasets):
    """Keras refuses class and sample weights together: the window weights the corpus balance
    gives must still reach a network whose classes are weighted."""
    from training.dataset import standardise_with, statistics_of
    from training.train import TrainConfig, fit

    level_free, emotions = real_windows(datasets, 12)
    windows = standardise_with(level_free, [statistics_of(level_free)] * len(emotions))
    config = TrainConfig(epochs=1, class_weighting=True)
    weights = np.linspace(0.5, 2.0, len(emotions))
    model = fit("cnn", windows, emotions, 4, config, 0, weights)
    probabilities = model.predict(windows.get("log_mel")[..., None], verbose=0)
    assert probabilities.shape == (len(emotions), 4)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_cold_copies_train_only_the_models_named_and_are_centred_on_the_training_set(datasets):
    """A cold copy is a voice as the daemon hears it before adapting: standardised with the
    whole training set's statistics, so each voice keeps its own offset."""
    from training.dataset import cold_copies, statistics_of, training_windows
    from training.train import TrainConfig, fit_windows

    level_free, _ = real_windows(datasets, 12)
    voice = np.arange(12) % 2
    per_voice = training_windows([level_free], voice)
    copies = cold_copies([level_free], statistics_of(level_free))
    config = TrainConfig(cold_copies=("functionals",))
    one_corpus = np.array([f"emodb:{v}" for v in voice])

    alone, no_weights = fit_windows("cnn", per_voice, copies, config, one_corpus)
    assert alone is per_voice and no_weights is None
    both, weights = fit_windows("functionals", per_voice, copies, config, one_corpus)
    assert len(both.utterance) == 2 * len(per_voice.utterance)
    assert (weights[: len(per_voice.utterance)] == 1.0).all()
    assert (weights[len(per_voice.utterance) :] == config.functionals_cold_weight).all()
    cold = both.get("functionals")[len(per_voice.utterance) :]
    np.testing.assert_allclose(cold.mean(axis=0), 0.0, atol=1e-4)
    adapted = per_voice.get("functionals")
    for speaker in (0, 1):
        np.testing.assert_allclose(adapted[voice == speaker].mean(axis=0), 0.0, atol=1e-4)
    offset = np.abs(cold[voice == 0].mean(axis=0) - cold[voice == 1].mean(axis=0))
    assert np.median(offset) > 0.1


def test_corpus_balance_makes_every_corpus_count_alike_and_keeps_the_cold_copies_weight(
    datasets,
):
    """Nine clips of one corpus and three of another weigh the same in all; within each, a
    cold copy still counts ``functionals_cold_weight`` times a per-voice window. A network
    named is balanced alike, without cold copies; one not named gets no weights, and nor does
    one named whose windows are all of one corpus (Keras then takes the class weights)."""
    from training.corpora import corpus_of_speakers
    from training.dataset import cold_copies, statistics_of, training_windows
    from training.train import TrainConfig, fit_windows

    level_free, _ = real_windows(datasets, 12)
    speaker = np.array(["emodb:03"] * 9 + ["tess:OAF"] * 3)
    corpora = corpus_of_speakers(speaker)
    per_voice = training_windows([level_free], speaker)
    copies = cold_copies([level_free], statistics_of(level_free))
    config = TrainConfig(cold_copies=("functionals",), corpus_balance=("functionals",))

    windows, weights = fit_windows("functionals", per_voice, copies, config, speaker)
    corpus = corpora[windows.utterance]
    assert weights[corpus == "emodb"].sum() == pytest.approx(weights[corpus == "tess"].sum())
    copy = np.arange(len(weights)) >= len(per_voice.utterance)
    for name in ("emodb", "tess"):
        mine = corpus == name
        ratio = weights[mine & copy].max() / weights[mine & ~copy].max()
        assert ratio == pytest.approx(config.functionals_cold_weight)
    unbalanced = TrainConfig(cold_copies=("functionals",), corpus_balance=())
    _, plain = fit_windows("functionals", per_voice, copies, unbalanced, speaker)
    assert plain[corpus == "emodb"].sum() == 3 * plain[corpus == "tess"].sum()
    _, cnn_weights = fit_windows("cnn", per_voice, copies, config, speaker)
    assert cnn_weights is None
    network = TrainConfig(cold_copies=("functionals",), corpus_balance=("cnn",))
    cnn_windows, cnn_balanced = fit_windows("cnn", per_voice, copies, network, speaker)
    assert cnn_windows is per_voice
    of_corpus = corpora[cnn_windows.utterance]
    emodb, tess = cnn_balanced[of_corpus == "emodb"], cnn_balanced[of_corpus == "tess"]
    assert emodb.sum() == pytest.approx(tess.sum()) and emodb.max() < tess.min()
    one_corpus = np.array(["emodb:03"] * 12)
    assert fit_windows("cnn", per_voice, copies, network, one_corpus)[1] is None


def test_every_class_present_counts_alike_in_the_fit_and_an_absent_one_not_at_all():
    from training.train import class_weights

    labels = np.array([0, 0, 1, 1, 1, 1, 2, 2])
    per_class = class_weights(labels, 4)
    counted = np.bincount(labels, minlength=4)
    np.testing.assert_allclose([counted[c] * per_class[c] for c in range(3)], [8 / 3] * 3)
    assert per_class[3] == 0.0


def test_only_the_models_that_take_cold_copies_are_evaluated_with_them(datasets):
    """A model that ``cold_copies`` does not name (here the CNN) trains on the per-voice windows
    only, alone or beside one it names, which also trains on the cold copies of the original
    recordings and of their channel copies."""
    from training.evaluate import evaluate_corpus
    from training.train import TrainConfig

    config = TrainConfig(epochs=1, cold_copies=("functionals",))
    alone = evaluate_corpus("emodb", "speaker", datasets, ("cnn",), None, config, 1, 5)
    both = evaluate_corpus("emodb", "speaker", datasets, ("cnn", "functionals"), None, config, 1, 5)
    windows = {
        name: both["folds"][0]["models"][name]["train_windows"] for name in ("cnn", "functionals")
    }
    assert alone["folds"][0]["models"]["cnn"]["train_windows"] == windows["cnn"]
    assert windows["functionals"] > windows["cnn"]


def test_evaluation_and_training_weigh_the_functionals_model_s_cold_copies_in_its_fit(
    datasets, tmp_path, monkeypatch
):
    """The weights ``fit_windows`` gives reach the fit in both ``evaluate_corpus`` and
    ``train_models``: per-voice windows once, cold copies ``functionals_cold_weight`` times."""
    import training.evaluate
    import training.train
    from training.evaluate import evaluate_corpus
    from training.train import TrainConfig, train_models

    weights_seen: dict[str, np.ndarray | None] = {}
    for module in (training.evaluate, training.train):
        real_fit = module.fit

        def recording_fit(*args, window_weights=None, _module=module.__name__, _fit=real_fit):
            weights_seen[_module] = window_weights
            return _fit(*args, window_weights=window_weights)

        monkeypatch.setattr(module, "fit", recording_fit)
    config = TrainConfig(epochs=1, cold_copies=("functionals",))
    evaluate_corpus("emodb", "speaker", datasets, ("functionals",), None, config, 1, 3)
    train_models(
        ("emodb",),
        datasets,
        tmp_path,
        ("functionals",),
        config=config,
        per_speaker=3,
        keep_keras=False,
        reports_dir=None,
    )
    assert set(weights_seen) == {"training.evaluate", "training.train"}
    for weights in weights_seen.values():
        assert weights is not None
        assert set(np.unique(weights)) == {1.0, config.functionals_cold_weight}


def test_the_shipped_protocol_scores_one_corpus_s_speakers_with_the_shipped_labels(datasets):
    """The shipped recipe measured: its classes (surprise, no boredom), its corpora in training,
    and only the evaluated corpus's held-out speakers tested."""
    from training.evaluate import evaluate_corpus
    from training.train import TrainConfig

    report = evaluate_corpus(
        "emodb", "shipped", datasets, ("functionals",), None, TrainConfig(), 1, 3
    )
    assert "surprised" in report["labels"] and "bored" not in report["labels"]
    assert {s.split(":")[0] for s in report["speakers"]} == {"emodb", "ravdess", "tess"}
    fold = report["folds"][0]
    assert fold["fold"] == "03" and fold["test_utterances"] == 3
