"""The one feature pipeline: training and the daemon compute their model inputs here.

Frames are computed without centring (``center=False``), so a frame depends only on its own
samples: the daemon can compute each hop's new frames alone and get exactly the numbers a
whole-clip computation gives (bit for bit: no step's rounding depends on how many frames are
computed together). Normalisation is applied per window, after framing.

Model inputs are level-free: each window's levels are taken relative to its loudest frame and
floored ``dynamic_range_db`` below it, so a microphone's gain changes nothing. With
``normalisation = "speaker"`` each feature column is then standardised with statistics of the
voice (``FeatureStatistics``): in training each speaker's own, in evaluation those of the
speaker's other utterances, in the daemon running statistics of the speech it has heard
(``streamer.adaptation``), and cold those of the training set. Per-window standardisation would
throw away what tells a speaker's angry voice from their neutral one (level, spectral balance);
per-voice statistics keep it and remove only the speaker's and the microphone's baseline.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol

import numpy as np

from streamer.functionals import functionals_count, window_functionals

NORMALISATIONS = ("speaker", "cmvn", "none")
MODEL_INPUTS = ("log_mel", "mfcc_prosody", "functionals")
PROSODY_COLUMNS = 2
PITCH_REFERENCE_HZ = 100.0
OCTAVE_TOLERANCE = 0.85
"""A shorter lag wins the pitch if its correlation is at least this share of the best's."""


@dataclass(frozen=True)
class FeatureSpec:
    """Every parameter that shapes a model's input; saved beside each model."""

    sample_rate: int = 16000
    """Rate the models hear (hertz); sources are resampled to it."""
    window_seconds: float = 2.0
    """Length of audio one prediction sees (seconds)."""
    n_fft: int = 512
    """FFT size and analysis frame length (samples); Hann window."""
    hop_length: int = 320
    """Step between frames (samples): 20 ms at 16 kHz."""
    n_mels: int = 40
    """Mel bands of the CNN's log-mel spectrogram."""
    n_mfcc: int = 20
    """MFCC coefficients per frame for the CNN-LSTM (an RMS energy column is appended)."""
    fmin: float = 50.0
    """Lowest mel filter edge (hertz)."""
    fmax: float = 8000.0
    """Highest mel filter edge (hertz)."""
    pitch_fmin: float = 60.0
    """Lowest pitch the prosody columns look for (hertz): below a deep male voice."""
    pitch_fmax: float = 500.0
    """Highest pitch the prosody columns look for (hertz): above a raised female voice."""
    amin: float = 1e-20
    """Power floor before the logarithm (-200 dB): only keeps digital silence finite, far below
    any recording even at -45 dBFS; the floor that shapes model inputs is ``dynamic_range_db``
    below the window's loudest frame."""
    dynamic_range_db: float = 40.0
    """Level-free inputs: levels relative to the window's loudest frame, floored this many dB
    below it (so the floor moves with the microphone's gain). 40 dB, not more: a voice at
    -45 dBFS peak has its 16-bit rounding noise 40-50 dB below its loudest frame, and a wider
    range let that noise change the label of a quiet copy of a loud clip."""
    normalisation: str = "speaker"
    """"speaker": level-free features standardised per column with a voice's statistics (see
    the module docstring); "cmvn": each column of a window to zero mean and unit variance over
    that window; "none": absolute levels as computed."""

    def __post_init__(self) -> None:
        if self.normalisation not in NORMALISATIONS:
            raise ValueError(
                f"feature normalisation {self.normalisation!r} is not one of {NORMALISATIONS}"
            )
        if self.window_samples < self.n_fft:
            raise ValueError("feature window_seconds is shorter than one FFT frame")

    @property
    def window_samples(self) -> int:
        return round(self.window_seconds * self.sample_rate)

    @property
    def n_frames(self) -> int:
        """Frames in one window."""
        return 1 + (self.window_samples - self.n_fft) // self.hop_length

    def n_columns(self, model_input: str) -> int:
        """Feature columns per frame for ``model_input``, a per-frame input ("log_mel" or
        "mfcc_prosody"); the functionals describe a whole window (``n_functionals``)."""
        return {"log_mel": self.n_mels, "mfcc_prosody": self.n_mfcc + 1 + PROSODY_COLUMNS}[
            model_input
        ]

    def input_shape(self, model_input: str) -> tuple[int, ...]:
        """A model's input shape for one window, batch first: (1, frames, columns, 1), or
        (1, functionals, 1) for "functionals"."""
        if model_input == "functionals":
            return (1, self.n_functionals, 1)
        return (1, self.n_frames, self.n_columns(model_input), 1)

    @property
    def frame_columns(self) -> int:
        """Columns of a frame in statistics order: log-mel bands, MFCCs and energy, then the
        prosody columns (pitch and voicing)."""
        return self.n_mels + self.n_mfcc + 1 + PROSODY_COLUMNS

    @property
    def n_functionals(self) -> int:
        """Functionals of a window (``streamer.functionals``)."""
        return functionals_count(self.n_mels + self.n_mfcc + 1)

    @property
    def statistics_columns(self) -> int:
        """Columns of a voice's feature statistics: the frame columns (``frame_columns``), then
        the window functionals."""
        return self.frame_columns + self.n_functionals

    @property
    def pitch_lags(self) -> np.ndarray:
        """Autocorrelation lags (samples) of the pitch range, shortest first."""
        shortest = int(np.ceil(self.sample_rate / self.pitch_fmax))
        longest = min(int(self.sample_rate / self.pitch_fmin), self.n_fft // 2 + 16)
        return np.arange(shortest, longest + 1)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> FeatureSpec:
        """Build from saved metadata; an unknown key is an error naming it."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown feature parameter {unknown[0]!r}")
        return cls(**values)


@dataclass(frozen=True)
class FrameFeatures:
    """Per-frame features, before window normalisation."""

    log_mel: np.ndarray
    """(frames, n_mels) float32, power in dB."""
    mfcc_energy: np.ndarray
    """(frames, n_mfcc + 1) float32: MFCCs of the dB mel spectrum, then RMS level in dB."""
    prosody: np.ndarray
    """(frames, 2) float32: pitch (semitones above 100 Hz) at the frame's strongest
    periodicity in the spec's pitch range, and that periodicity's strength (voicing, 0 to 1)."""
    standardised_functionals: np.ndarray | None = None
    """(functionals,) float32 once standardised with a voice's statistics
    (``FeatureStatistics.standardise``): they are standardised as functionals of the level-free
    window, not computed from the standardised frames."""

    def __len__(self) -> int:
        return len(self.log_mel)

    @cached_property
    def functionals(self) -> np.ndarray:
        """(functionals,) float64: functionals of these frames as they are
        (``streamer.functionals``), computed once per window: standardising and adapting both
        read them."""
        return window_functionals(np.concatenate([self.log_mel, self.mfcc_energy], axis=-1))

    def get(self, model_input: str) -> np.ndarray:
        """The columns ``model_input`` (one of ``MODEL_INPUTS``) reads: "mfcc_prosody" is MFCCs,
        energy, pitch and voicing; "functionals" the window's functionals (standardised, once
        standardised); and "frame_features" all frame columns in the order of a voice's
        statistics."""
        if model_input == "log_mel":
            return self.log_mel
        if model_input == "mfcc_prosody":
            return np.concatenate([self.mfcc_energy, self.prosody], axis=-1)
        if model_input == "functionals":
            if self.standardised_functionals is not None:
                return self.standardised_functionals
            return self.functionals.astype(np.float32)
        if model_input == "frame_features":
            return np.concatenate([self.log_mel, self.mfcc_energy, self.prosody], axis=-1)
        raise KeyError(model_input)

    def rows(self, start: int, stop: int) -> FrameFeatures:
        """Frames ``start`` to ``stop`` (a view)."""
        return FrameFeatures(
            self.log_mel[start:stop], self.mfcc_energy[start:stop], self.prosody[start:stop]
        )


class FeatureExtractor:
    """Computes frame features for a spec; holds the precomputed window, mel and DCT bases."""

    def __init__(self, spec: FeatureSpec) -> None:
        self.spec = spec
        # Periodic Hann window, as librosa.filters.get_window("hann", n_fft, fftbins=True).
        n = np.arange(spec.n_fft)
        self._window = (0.5 - 0.5 * np.cos(2 * np.pi * n / spec.n_fft)).astype(np.float32)
        self._mel_basis = mel_basis(spec).T
        self._dct = dct_basis(spec.n_mels, spec.n_mfcc)
        self._taper_correlation = taper_correlation(spec)

    def frames(self, audio: np.ndarray) -> FrameFeatures:
        """Features of every complete frame of ``audio`` ((samples,) float32 at the spec rate)."""
        spec = self.spec
        audio = np.asarray(audio, dtype=np.float32)
        if len(audio) < spec.n_fft:
            return FrameFeatures(
                np.zeros((0, spec.n_mels), np.float32),
                np.zeros((0, spec.n_mfcc + 1), np.float32),
                np.zeros((0, PROSODY_COLUMNS), np.float32),
            )
        framed = np.lib.stride_tricks.sliding_window_view(audio, spec.n_fft)[:: spec.hop_length]
        # One FFT of twice the frame serves both: its even bins are the frame's spectrum, and
        # all of them give the autocorrelation without wrap-around for the pitch.
        padded_power = np.abs(np.fft.rfft(framed * self._window, 2 * spec.n_fft, axis=1)) ** 2
        power = padded_power[:, ::2]
        # einsum, not matmul: BLAS picks its kernel by the number of rows, so a frame computed
        # with 25 others (one hop) and with 500 others (a whole clip) would round differently,
        # and one int8 input step can move a model's output by 0.07. einsum sums each row alone.
        mel_power = np.einsum("fk,km->fm", power.astype(np.float32), self._mel_basis)
        mel_db = 10.0 * np.log10(np.maximum(mel_power, spec.amin))
        rms = np.sqrt(np.mean(np.square(framed, dtype=np.float32), axis=1))
        rms_db = 20.0 * np.log10(np.maximum(rms, np.sqrt(spec.amin)))
        mfcc = np.einsum("fm,mc->fc", mel_db, self._dct)
        mfcc_energy = np.concatenate([mfcc, rms_db[:, None]], axis=1)
        return FrameFeatures(
            mel_db.astype(np.float32),
            mfcc_energy.astype(np.float32),
            self._prosody(padded_power.astype(np.float32)),
        )

    def _prosody(self, padded_power: np.ndarray) -> np.ndarray:
        """Pitch and voicing per frame from the autocorrelation (the inverse FFT of the power).

        Pitch is the classic cue of emotion the spectra miss (a 31 Hz bin cannot resolve a
        voice's fundamental). Computed here rather than by librosa's yin, which the daemon
        cannot import (numba), from the spectrum the frame already has.
        """
        # Below 50 Hz is hum and rumble, not voice: left in, it correlates at every lag.
        padded_power[:, : int(50.0 * 2 * self.spec.n_fft / self.spec.sample_rate) + 1] = 0.0
        # In double precision and returned as float32, as numpy 2 does for a float32 power; cast
        # first, since numpy's cast row by row inside the transform costs a fifth of it.
        correlation = np.fft.irfft(padded_power.astype(np.complex128), axis=1)
        return prosody_from_correlation(
            correlation.astype(np.float32), self.spec, self._taper_correlation
        )

    def level_free(self, window: FrameFeatures) -> FrameFeatures:
        """The window relative to its loudest frame (RMS level), floored ``dynamic_range_db``
        below it; MFCCs are recomputed from the floored log-mel so that they obey the floor too.
        """
        floor = -self.spec.dynamic_range_db
        reference = window.mfcc_energy[:, -1].max() if len(window) else 0.0
        log_mel = np.maximum(window.log_mel - reference, floor)
        energy = np.maximum(window.mfcc_energy[:, -1:] - reference, floor)
        mfcc_energy = np.concatenate([np.einsum("fm,mc->fc", log_mel, self._dct), energy], axis=1)
        return FrameFeatures(
            log_mel.astype(np.float32), mfcc_energy.astype(np.float32), window.prosody
        )

    def model_inputs(
        self, window: FrameFeatures, statistics: FeatureStatistics | None = None
    ) -> FrameFeatures:
        """The models' inputs from one window of frame features, as the spec normalises them.

        ``statistics`` (the voice's, see the module docstring) is required by the "speaker"
        normalisation; the others ignore it.
        """
        normalisation = self.spec.normalisation
        if normalisation == "none":
            return window
        if normalisation == "cmvn":
            return FrameFeatures(
                _cmvn(window.log_mel), _cmvn(window.mfcc_energy), _cmvn(window.prosody)
            )
        if statistics is None:
            raise ValueError("speaker normalisation needs the voice's feature statistics")
        return statistics.standardise(self.level_free(window))

    def windows(self, audio: np.ndarray, hop_seconds: float) -> list[FrameFeatures]:
        """Frame features of each window of a clip, as the daemon would see them hop by hop.

        A clip shorter than one window is padded with digital silence at the end, as the daemon
        pads a file that ends within its first window, so every clip yields at least one window.
        """
        spec = self.spec
        hop_frames = hop_frames_for(spec, hop_seconds)
        audio = np.asarray(audio, dtype=np.float32)
        if len(audio) < spec.window_samples:
            audio = np.pad(audio, (0, spec.window_samples - len(audio)))
        features = self.frames(audio)
        starts = range(0, len(features) - spec.n_frames + 1, hop_frames)
        return [features.rows(s, s + spec.n_frames) for s in starts]


def taper_correlation(spec: FeatureSpec) -> np.ndarray:
    """The Hann window's own normalised autocorrelation at the pitch lags.

    Dividing by it undoes the taper's decay of long lags (Boersma 1993), so that a low voice's
    period scores as high as a high voice's.
    """
    n = np.arange(spec.n_fft)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * n / spec.n_fft)
    correlation = np.fft.irfft(np.abs(np.fft.rfft(window, 2 * spec.n_fft)) ** 2)
    return (correlation[spec.pitch_lags] / correlation[0]).astype(np.float32)


def prosody_from_correlation(
    correlation: np.ndarray, spec: FeatureSpec, taper: np.ndarray
) -> np.ndarray:
    """(frames, 2) pitch (semitones above 100 Hz) and voicing from each frame's autocorrelation
    ((frames, lags >= the longest pitch lag), lag 0 first) and the taper's (``taper_correlation``).
    """
    lags = spec.pitch_lags
    energy = np.maximum(correlation[:, :1], 1e-12)
    normalised = correlation[:, lags] / energy / taper
    # The shortest lag that scores nearly as high as the best: a period's multiples score as
    # high as the period itself, and taking them would put the pitch an octave or more low.
    highest = normalised.max(axis=1, keepdims=True)
    local_peak = np.zeros_like(normalised, dtype=bool)
    local_peak[:, 1:-1] = (normalised[:, 1:-1] >= normalised[:, :-2]) & (
        normalised[:, 1:-1] >= normalised[:, 2:]
    )
    candidates = local_peak & (normalised >= OCTAVE_TOLERANCE * highest)
    best = np.where(candidates.any(axis=1), np.argmax(candidates, axis=1), 1)
    best = np.clip(best, 1, len(lags) - 2)
    rows = np.arange(len(best))
    before, peak, after = (normalised[rows, best + step] for step in (-1, 0, 1))
    # A parabola through the peak and its neighbours places it between whole lags: one sample
    # is 0.4 semitones at 400 Hz.
    curvature = before - 2.0 * peak + after
    offset = np.where(curvature < 0, 0.5 * (before - after) / np.minimum(curvature, -1e-9), 0.0)
    lag = lags[best] + np.clip(offset, -0.5, 0.5)
    voicing = np.clip(peak, 0.0, 1.0)
    pitch = 12.0 * np.log2(spec.sample_rate / lag / PITCH_REFERENCE_HZ)
    return np.stack([pitch, voicing], axis=1).astype(np.float32)


def dct_basis(n_bands: int, n_coefficients: int) -> np.ndarray:
    """Orthonormal DCT-II over the mel axis ((n_bands, n_coefficients) float32), the transform
    librosa.feature.mfcc applies (``scipy.fft.dct(..., type=2, norm="ortho")``).

    Written from its definition rather than imported: SciPy's import alone took a tenth of the
    daemon's 120 MB memory budget for this one constant matrix.
    """
    bands = np.arange(n_bands)[:, None]
    k = np.arange(n_coefficients)[None, :]
    basis = np.sqrt(2.0 / n_bands) * np.cos(np.pi * k * (2 * bands + 1) / (2 * n_bands))
    basis[:, 0] /= np.sqrt(2.0)
    return basis.astype(np.float32)


def mel_basis(spec: FeatureSpec) -> np.ndarray:
    """Slaney-style mel filterbank ((n_mels, n_fft // 2 + 1) float32), equal to
    ``librosa.filters.mel`` with its defaults.

    Computed here rather than by librosa because ``librosa.filters`` imports numba, which costs
    the daemon 0.7 s of start-up and 150 MB of memory for a matrix built once.
    """
    fft_hz = np.fft.rfftfreq(spec.n_fft, 1.0 / spec.sample_rate)
    edges_mel = np.linspace(_hz_to_mel(spec.fmin), _hz_to_mel(spec.fmax), spec.n_mels + 2)
    edges_hz = _mel_to_hz(edges_mel)
    widths = np.diff(edges_hz)
    ramps = edges_hz[:, None] - fft_hz[None, :]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    # Slaney normalisation: each filter has unit area.
    weights *= (2.0 / (edges_hz[2:] - edges_hz[:-2]))[:, None]
    return weights.astype(np.float32)


# Slaney's mel scale: linear below 1 kHz (200/3 Hz per mel), logarithmic above.
_MEL_LINEAR_HZ = 200.0 / 3
_MEL_BREAK_HZ = 1000.0
_MEL_BREAK = _MEL_BREAK_HZ / _MEL_LINEAR_HZ
_MEL_LOG_STEP = np.log(6.4) / 27.0


def _hz_to_mel(hz: float | np.ndarray) -> np.ndarray:
    hz = np.asarray(hz, dtype=np.float64)
    above = _MEL_BREAK + np.log(np.maximum(hz, _MEL_BREAK_HZ) / _MEL_BREAK_HZ) / _MEL_LOG_STEP
    return np.where(hz >= _MEL_BREAK_HZ, above, hz / _MEL_LINEAR_HZ)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    above = _MEL_BREAK_HZ * np.exp(_MEL_LOG_STEP * (mel - _MEL_BREAK))
    return np.where(mel >= _MEL_BREAK, above, mel * _MEL_LINEAR_HZ)


def hop_frames_for(spec: FeatureSpec, hop_seconds: float) -> int:
    """Frames per hop; the hop must be a whole number of frames so windows stay aligned."""
    hop_samples = hop_seconds * spec.sample_rate
    frames = hop_samples / spec.hop_length
    if frames < 1 or abs(frames - round(frames)) > 1e-6:
        raise ValueError(
            f"hop {hop_seconds} s is not a whole number of {spec.hop_length}-sample frames"
        )
    return round(frames)


class StreamingFeatures:
    """Incremental frame features: each frame is computed once, when a window asks for it.

    Keeps the newest ``n_frames`` frames; ``window()`` returns them in time order. The frames
    equal those of ``FeatureExtractor.frames`` on the whole stream, since frames are uncentred.
    ``push`` only keeps (a copy of) the samples: the daemon receives eight or so capture
    blocks per hop, and each call of ``FeatureExtractor.frames`` costs as much as a dozen
    frames, so computing a hop's frames in one call when its window is due made the daemon's
    hop a third cheaper (``emostream bench`` feeds capture blocks as the daemon does). Callers
    ask for a window every hop (``Pipeline`` does), which is what bounds the samples kept.
    """

    def __init__(self, extractor: FeatureExtractor) -> None:
        spec = extractor.spec
        self.extractor = extractor
        self._blocks: list[np.ndarray] = []
        self._samples = 0
        """Samples kept in ``_blocks``: those of frames not computed yet and the start of the
        next frame."""
        self._uncomputed = 0
        """Complete frames in ``_blocks`` not computed yet."""
        self._log_mel = np.zeros((spec.n_frames, spec.n_mels), np.float32)
        self._mfcc_energy = np.zeros((spec.n_frames, spec.n_mfcc + 1), np.float32)
        self._prosody = np.zeros((spec.n_frames, PROSODY_COLUMNS), np.float32)
        self.frames_seen = 0

    def push(self, samples: np.ndarray) -> int:
        """Adds samples ((n,) float32 at the spec rate); returns how many new frames they made."""
        spec = self.extractor.spec
        samples = np.array(samples, np.float32)
        self._blocks.append(samples)
        self._samples += len(samples)
        complete = max(0, (self._samples - spec.n_fft) // spec.hop_length + 1)
        count = complete - self._uncomputed
        self._uncomputed = complete
        self.frames_seen += count
        return count

    @property
    def full(self) -> bool:
        return self.frames_seen >= self.extractor.spec.n_frames

    def window(self) -> FrameFeatures:
        """The newest window of frame features (copies)."""
        self._compute()
        return FrameFeatures(self._log_mel.copy(), self._mfcc_energy.copy(), self._prosody.copy())

    def _compute(self) -> None:
        """Computes the uncomputed frames the window still holds, in one call."""
        count = self._uncomputed
        if count == 0:
            return
        spec = self.extractor.spec
        pending = np.concatenate(self._blocks) if len(self._blocks) > 1 else self._blocks[0]
        keep = min(count, spec.n_frames)
        first = (count - keep) * spec.hop_length
        new = self.extractor.frames(pending[first : (count - 1) * spec.hop_length + spec.n_fft])
        rest = pending[count * spec.hop_length :]
        self._blocks = [rest]
        self._samples = len(rest)
        self._uncomputed = 0
        for store, fresh in (
            (self._log_mel, new.log_mel),
            (self._mfcc_energy, new.mfcc_energy),
            (self._prosody, new.prosody),
        ):
            store[:-keep] = store[keep:]
            store[-keep:] = fresh


def _cmvn(window: np.ndarray) -> np.ndarray:
    mean = window.mean(axis=0, keepdims=True)
    std = window.std(axis=0, keepdims=True)
    return ((window - mean) / (std + 1e-3)).astype(np.float32)


STD_FLOOR = 0.1
"""Smallest standard deviation a column is divided by (dB or MFCC units): a column that never
moves in a voice's speech (the floor, say) is not blown up into noise."""


@dataclass(frozen=True, eq=False)
class FeatureStatistics:
    """Per-column mean and standard deviation of a voice's level-free features.

    Columns are those of ``FrameFeatures.get("frame_features")`` (the log-mel bands, the MFCCs
    and the energy, then the prosody columns), then the window functionals
    (``FeatureSpec.statistics_columns``). Standardising the functionals with the voice's own
    statistics, not only the frames, is what the classical recipe does (issue 8's anchor);
    without it a linear model on them added nothing to the ensemble (reports/ablation.md).
    """

    mean: np.ndarray
    """(columns,) float32."""
    std: np.ndarray
    """(columns,) float32, at least ``STD_FLOOR``."""

    def standardise(self, window: FrameFeatures) -> FrameFeatures:
        """Each column of a level-free window, and each of its functionals, to the voice's zero
        mean and unit variance."""
        frames = window.get("frame_features")
        split = frames.shape[-1]
        columns = (frames - self.mean[:split]) / self.std[:split]
        functionals = (window.functionals - self.mean[split:]) / self.std[split:]
        return split_columns(
            columns.astype(np.float32), window.log_mel.shape[-1], functionals.astype(np.float32)
        )

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": [float(v) for v in self.mean], "std": [float(v) for v in self.std]}

    @classmethod
    def from_dict(cls, values: dict[str, Any], columns: int) -> FeatureStatistics:
        """From saved values; raises ValueError unless both are ``columns`` finite numbers and
        every standard deviation is positive."""
        mean = np.asarray(values["mean"], dtype=np.float32)
        std = np.asarray(values["std"], dtype=np.float32)
        if mean.shape != (columns,) or std.shape != (columns,):
            raise ValueError(f"feature statistics need {columns} columns")
        if not (np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()):
            raise ValueError("feature statistics hold non-finite or non-positive values")
        return cls(mean, std)


class HasFrameFeatures(Protocol):
    """One window (``FrameFeatures``) or many (``training.dataset.WindowSet``)."""

    def get(self, model_input: str) -> np.ndarray: ...


def window_moments(windows: HasFrameFeatures) -> tuple[np.ndarray, np.ndarray]:
    """Column means of level-free windows and of their squares, then their functionals and
    the functionals' squares; float64, one pair per window: ``(columns,)`` each for one window,
    ``(windows, columns)`` for many.

    A voice's statistics are the average of these over its speech windows, each window weighing
    the same, in training, evaluation and the daemon alike: one function serves them all.
    """
    columns = windows.get("frame_features").astype(np.float64)
    functionals = windows.get("functionals").astype(np.float64)
    first = np.concatenate([columns.mean(axis=-2), functionals], axis=-1)
    second = np.concatenate([np.square(columns).mean(axis=-2), np.square(functionals)], axis=-1)
    return first, second


def split_columns(
    columns: np.ndarray, n_mels: int, functionals: np.ndarray | None = None
) -> FrameFeatures:
    """Frame features from their columns in statistics order (``(..., frames, columns)``), with
    their standardised ``functionals`` if given."""
    return FrameFeatures(
        columns[..., :n_mels],
        columns[..., n_mels:-PROSODY_COLUMNS],
        columns[..., -PROSODY_COLUMNS:],
        functionals,
    )


def statistics_from_moments(first: np.ndarray, second: np.ndarray) -> FeatureStatistics:
    """Statistics from averaged moments (see ``window_moments``)."""
    variance = np.maximum(second - np.square(first), 0.0)
    std = np.maximum(np.sqrt(variance), STD_FLOOR)
    return FeatureStatistics(first.astype(np.float32), std.astype(np.float32))
