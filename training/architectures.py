"""The models: the seed notebook's two, and a small one on functionals of the frame features.

Each is sized to run in a millisecond on a Raspberry Pi.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
from keras import layers, ops

from streamer.features import PROSODY_COLUMNS

PROSODY_GATE = -1.75
"""Standardised energy at which a frame's pitch and voicing start to count: about 35 dB below
the window's loudest frame for the training set's statistics (mean -15 dB, deviation 11 dB)."""
PROSODY_GATE_RAMP = 0.5
"""Standardised energy over which the gate opens fully (about 6 dB)."""


def _conv_block(x: keras.KerasTensor, dropout: float) -> keras.KerasTensor:
    x = layers.Conv2D(32, 3, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    x = layers.MaxPooling2D(2)(x)
    return layers.Dropout(dropout)(x)


def build_cnn(n_frames: int, n_mels: int, n_classes: int) -> keras.Model:
    """2D CNN on a log-mel window: three Conv2D(32) blocks, Dense(128), Dense(n), softmax.

    After the convolutions the time axis is averaged away: emotion is a property of the whole
    window, not of where in it a syllable falls, and the Dense layer stays small (160 inputs).
    """
    inputs = keras.Input((n_frames, n_mels, 1), name="log_mel")
    x = inputs
    for _ in range(3):
        x = _conv_block(x, 0.15)
    x = layers.AveragePooling2D((x.shape[1], 1), name="mean_over_time")(x)
    x = layers.Flatten()(x)
    x = layers.Dropout(0.3)(x)
    x = layers.Dense(128, activation="relu")(x)
    x = layers.Dropout(0.4)(x)
    x = layers.Dense(n_classes)(x)
    outputs = layers.Softmax(name="probabilities")(x)
    return keras.Model(inputs, outputs, name="cnn")


def build_cnn_lstm(n_frames: int, n_columns: int, n_classes: int) -> keras.Model:
    """CNN-LSTM on a window of MFCCs, energy, pitch and voicing: two Conv2D(32) blocks,
    LSTM(100), Dense(128), softmax.

    The pitch contour is what a recurrent model over time can read best: with it this model
    gained 4.9 points adapted on Emo-DB (reports/ablation.md).

    The LSTM is unrolled over its fixed number of steps: TFLite conversion with quantisation
    cannot handle Keras 3's looping LSTM, but handles the unrolled cell.
    """
    inputs = keras.Input((n_frames, n_columns, 1), name="mfcc_prosody")
    x = inputs
    for _ in range(2):
        x = _conv_block(x, 0.15)
    steps, columns, channels = x.shape[1], x.shape[2], x.shape[3]
    x = layers.Reshape((steps, columns * channels))(x)
    x = layers.LSTM(100, unroll=True)(x)
    x = layers.Dropout(0.3)(x)
    x = layers.Dense(128, activation="relu")(x)
    x = layers.Dropout(0.4)(x)
    x = layers.Dense(n_classes)(x)
    outputs = layers.Softmax(name="probabilities")(x)
    return keras.Model(inputs, outputs, name="cnn_lstm")


def build_functionals(
    n_frames: int,
    n_columns: int,
    n_classes: int,
    batch_norm: bool = True,
    hidden: int = 64,
    variance_and_trend: bool = True,
    prosody: bool = False,
    gated_prosody: bool = False,
    heads: int = 1,
) -> keras.Model:
    """Dense classifier on functionals of the spectral and energy columns over the window.

    Per column (log-mel bands, MFCCs, energy): mean, mean absolute deviation, variance,
    maximum, minimum, mean absolute frame-to-frame change, and the trend (second half's mean
    minus the first half's). The pitch and voicing columns are dropped: their extremes over a
    window are decided by its quietest frames, whose periodicity 16-bit rounding noise decides
    at -45 dBFS (with them this model kept its label in 64 % of windows there, 91 % without).
    The classical recipe (functionals of frame features, standardised per speaker, a linear
    model) is strong on small corpora; computed in the graph from the same window the other
    models read, it needs no second feature path, and every operation has an int8 TFLite
    kernel.

    ``heads`` classifiers read the same functionals and their probabilities are averaged
    (``merge_heads`` fills them with models trained alone from different seeds); the
    functionals cost the same however many heads read them. ``gated_prosody`` adds pitch and
    voicing means over the window's loud frames only (``_gated_prosody_functionals``).
    ``batch_norm``, ``hidden`` (units of the hidden layer; 0: a linear classifier),
    ``variance_and_trend``, ``prosody`` (True: the pitch and voicing columns are read
    plainly), ``gated_prosody`` and ``heads`` exist for the ablation
    (``training/ablation.py``), which says what each is worth.
    """
    if heads < 1:
        raise ValueError(f"a functionals model needs at least one head, not {heads}")
    inputs = keras.Input((n_frames, n_columns, 1), name="frame_features")
    x = layers.Reshape((n_frames, n_columns))(inputs)
    frames = x
    if not prosody:
        x = x[:, :, : n_columns - PROSODY_COLUMNS]
    mean = ops.mean(x, axis=1)
    centred = x - mean[:, None, :]
    deviation = ops.mean(ops.abs(centred), axis=1)
    maximum = ops.max(x, axis=1)
    minimum = -ops.max(-x, axis=1)
    change = ops.mean(ops.abs(x[:, 1:] - x[:, :-1]), axis=1)
    functionals = [mean, deviation, maximum, minimum, change]
    if variance_and_trend:
        # Worth 4 points cold on Emo-DB and 3 on RAVDESS to this model (reports/ablation.md).
        variance = ops.mean(centred * centred, axis=1)
        half = n_frames // 2
        trend = ops.mean(x[:, half:], axis=1) - ops.mean(x[:, :half], axis=1)
        functionals += [variance, trend]
    if gated_prosody:
        functionals += _gated_prosody_functionals(frames, n_columns)
    x = layers.Concatenate(name="functionals")(functionals)
    if heads == 1:
        outputs = _functionals_head(x, n_classes, batch_norm, hidden, "head0", "probabilities")
    else:
        outputs = layers.Average(name="probabilities")(
            [_functionals_head(x, n_classes, batch_norm, hidden, f"head{i}") for i in range(heads)]
        )
    return keras.Model(inputs, outputs, name="functionals")


def _functionals_head(
    x: keras.KerasTensor,
    n_classes: int,
    batch_norm: bool,
    hidden: int,
    name: str,
    output_name: str | None = None,
) -> keras.KerasTensor:
    # The functionals differ in scale (a mean near 0, a maximum near 3); standardising them
    # made this model 12 points better on Emo-DB (62.7 % -> 75.1 % UA adapted).
    if batch_norm:
        x = layers.BatchNormalization(name=f"{name}_normalise")(x)
    x = layers.Dropout(0.2)(x)
    if hidden:
        regularizer = keras.regularizers.l2(1e-3)
        x = layers.Dense(
            hidden, activation="relu", kernel_regularizer=regularizer, name=f"{name}_hidden"
        )(x)
        x = layers.Dropout(0.3)(x)
    x = layers.Dense(n_classes, name=f"{name}_classes")(x)
    return layers.Softmax(name=output_name or f"{name}_probabilities")(x)


def merge_heads(merged: keras.Model, trained: list[keras.Model]) -> keras.Model:
    """Fills ``merged`` (a functionals model of ``len(trained)`` heads) in place, head ``i``
    with the weights of ``trained[i]`` (a one-head functionals model of the same shape), and
    returns it. Every weighted layer of ``merged`` must be filled: a head left with its
    random initial weights would be averaged in silently."""
    weighted = {layer.name for layer in merged.layers if layer.weights}
    filled = set()
    for index, model in enumerate(trained):
        for layer in model.layers:
            if not layer.weights:
                continue
            if not layer.name.startswith("head0_"):
                raise ValueError(f"layer {layer.name!r} of a trained model is outside its head")
            target = f"head{index}_{layer.name.removeprefix('head0_')}"
            if target not in weighted:
                raise ValueError(f"the merged model has no layer {target!r}")
            merged.get_layer(target).set_weights(layer.get_weights())
            filled.add(target)
    if filled != weighted:
        raise ValueError(f"layers {sorted(weighted - filled)} of the merged model are not filled")
    return merged


def _gated_prosody_functionals(
    frames: keras.KerasTensor, n_columns: int
) -> list[keras.KerasTensor]:
    """Six functionals of pitch and voicing in which quiet frames count for nothing.

    A quiet frame's periodicity is decided by 16-bit rounding noise at -45 dBFS, so each
    frame's pitch and voicing are weighed by a gate on its standardised energy (shut about
    35 dB below the window's loudest frame with the training set's statistics; a voice's
    own statistics move that a little). Over all frames: the gate's mean, the means of gated
    pitch, gated pitch squared, gated voicing and gated voicing squared, and the gated
    pitch's trend. Means of weighted values (no division, no extreme) keep every operation
    int8-friendly and let no single quiet frame decide a functional.
    """
    energy = frames[:, :, n_columns - PROSODY_COLUMNS - 1]
    pitch = frames[:, :, n_columns - 2]
    voicing = frames[:, :, n_columns - 1]
    gate = ops.clip((energy - PROSODY_GATE) / PROSODY_GATE_RAMP, 0.0, 1.0)
    weighted = [gate, gate * pitch, gate * pitch * pitch, gate * voicing, gate * voicing * voicing]
    half = frames.shape[1] // 2
    gated_pitch = gate * pitch
    trend = ops.mean(gated_pitch[:, half:], axis=1) - ops.mean(gated_pitch[:, :half], axis=1)
    return [ops.mean(w, axis=1, keepdims=True) for w in weighted] + [trend[:, None]]


MODEL_INPUT = {"cnn": "log_mel", "lstm": "mfcc_prosody", "functionals": "frame_features"}
BUILDERS: dict[str, Callable[..., keras.Model]] = {
    "cnn": build_cnn,
    "lstm": build_cnn_lstm,
    "functionals": build_functionals,
}
