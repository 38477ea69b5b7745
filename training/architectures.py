"""The models: the seed notebook's two, and a linear one on functionals of the frame features.

Each is sized to run in a millisecond on a Raspberry Pi.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
from keras import layers


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


def build_functionals(n_functionals: int, n_classes: int) -> keras.Model:
    """Linear classifier on a window's functionals, standardised with the voice's statistics.

    The classical recipe of issue 8's anchor (functionals standardised per speaker, a linear
    model). Alone it is no better than the neural model on in-graph functionals it replaced,
    but it errs on other utterances than the two CNNs do: the ensemble gained 3.5 points
    adapted on RAVDESS with it (reports/ablation.md). The weights come from a regularised
    logistic regression (``training.train.fit_functionals``) with the training set's
    standardisation of each functional folded in, so the graph is one Dense layer and a
    softmax, with int8 kernels.
    """
    inputs = keras.Input((n_functionals, 1), name="functionals")
    x = layers.Flatten()(inputs)
    x = layers.Dense(n_classes, name="classes")(x)
    outputs = layers.Softmax(name="probabilities")(x)
    return keras.Model(inputs, outputs, name="functionals")


MODEL_INPUT = {"cnn": "log_mel", "lstm": "mfcc_prosody", "functionals": "functionals"}
BUILDERS: dict[str, Callable[..., keras.Model]] = {
    "cnn": build_cnn,
    "lstm": build_cnn_lstm,
    "functionals": build_functionals,
}
