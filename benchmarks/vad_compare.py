"""Which voice-activity detector: Silero VAD, WebRTC's VAD and the old loudness gate, measured.

Every clip is cut into the daemon's windows (2 s, 0.5 s hop; a shorter clip is padded to one
window), each at its own level and normalised to -10, -30 and -45 dBFS peak (16-bit, as a
microphone delivers). A window is speech when the detector's frames wholly inside it that reach
the threshold add up to at least ``min_speech_seconds``, as in ``streamer.pipeline``. Reported:

- non-speech (``../shared/nonspeech``): fraction of windows marked speech;
- speech corpora: fraction of utterances with at least one speech window, and RAVDESS actor
  05's quiet neutral and sad clips on their own;
- cost of one 0.5 s hop on one core (median) and the memory the detector adds to a process
  that already holds what the daemon imports.

Settings are chosen on one part and reported on the rest: each detector's threshold and minimum
speech time are picked on ESC-10 folds 1-2 and Emo-DB + TESS (the most utterances with speech
while at most ``--max-false`` of non-speech windows are speech, at every level); ESC-10 fold 3,
the music and whale recordings, and RAVDESS are held out.

    python benchmarks/vad_compare.py                       # everything (about 10 min on one core)
    python benchmarks/vad_compare.py --limit 40 --json vad.json   # a quick look

WebRTC's detector needs ``webrtcvad-wheels`` (in the [dev] extra); the runtime does not use it.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from streamer.audio import read_audio  # noqa: E402
from streamer.features import FeatureExtractor, FeatureSpec  # noqa: E402

SPEC = FeatureSpec()
HOP_SECONDS = 0.5
LEVELS: tuple[float | None, ...] = (None, -10.0, -30.0, -45.0)
"""Peak levels (dBFS) clips are normalised to; None keeps the recording's own level."""
TUNING_GROUPS = ("esc10 fold 1", "esc10 fold 2", "emodb", "tess")


@dataclass(frozen=True)
class Detector:
    """A detector as the comparison sees it: frame scores of a whole stream, and thresholds."""

    name: str
    frame_samples: int
    """Length of a scored frame (samples at 16 kHz)."""
    hop_samples: int
    """Step between frame starts (samples)."""
    thresholds: tuple[float, ...]
    """Scores at or above which a frame counts as speech, tried in the tuning."""
    make: Callable[[], Callable[[np.ndarray], np.ndarray]]
    """A fresh streaming scorer: called with successive blocks, returns the scores of the frames
    each block completes."""
    min_speech: tuple[float, ...] = (0.1, 0.2, 0.3, 0.5)
    """Speech per window (seconds) tried in the tuning."""


def _silero() -> Callable[[np.ndarray], np.ndarray]:
    from streamer.vad import SpeechDetector

    detector = SpeechDetector(SPEC.window_seconds)

    def push(samples: np.ndarray) -> np.ndarray:
        detector.push(samples)
        return detector.score()

    return push


def _webrtc(mode: int) -> Callable[[], Callable[[np.ndarray], np.ndarray]]:
    def make() -> Callable[[np.ndarray], np.ndarray]:
        import webrtcvad

        vad = webrtcvad.Vad(mode)
        pending = np.zeros(0, np.int16)

        def push(samples: np.ndarray) -> np.ndarray:
            nonlocal pending
            pcm = np.clip(np.round(samples * 32768.0), -32768, 32767).astype(np.int16)
            pending = np.concatenate([pending, pcm])
            count = len(pending) // 320
            scores = [
                float(vad.is_speech(pending[k * 320 : (k + 1) * 320].tobytes(), 16000))
                for k in range(count)
            ]
            pending = pending[count * 320 :]
            return np.array(scores, np.float32)

        return push

    return make


def _loudness() -> Callable[[np.ndarray], np.ndarray]:
    """The gate before this comparison: frame RMS level in dBFS (the score) against -45."""
    extractor = FeatureExtractor(SPEC)
    pending = np.zeros(0, np.float32)

    def push(samples: np.ndarray) -> np.ndarray:
        nonlocal pending
        pending = np.concatenate([pending, samples])
        frames = extractor.frames(pending)
        pending = pending[len(frames) * SPEC.hop_length :]
        return frames.mfcc_energy[:, -1]

    return push


DETECTORS = (
    Detector("loudness (before)", SPEC.n_fft, SPEC.hop_length, (-45.0,), _loudness, (0.3,)),
    Detector("silero v6 (onnxruntime)", 512, 512, (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8), _silero),
    *(Detector(f"webrtc mode {m}", 320, 320, (0.5,), _webrtc(m)) for m in range(4)),
)


def clips(datasets: Path, nonspeech: Path, limit: int | None) -> Iterator[tuple[str, Path]]:
    """(group, path) of every clip measured; ``limit`` caps each group (quick runs)."""
    groups: dict[str, list[Path]] = {}
    with (nonspeech / "manifest.tsv").open() as manifest:
        for row in csv.DictReader(manifest, delimiter="\t"):
            folder = row["path"].split("/")[0]
            group = f"esc10 fold {row['fold']}" if folder == "esc10" else folder
            groups.setdefault(group, []).append(nonspeech / row["path"])
    groups["emodb"] = sorted((datasets / "emodb" / "wav").glob("*.wav"))
    groups["tess"] = sorted((datasets / "tess").glob("*/*.flac"))
    groups["ravdess"] = sorted((datasets / "ravdess").glob("Actor_*/*.flac"))
    for group, paths in groups.items():
        if limit is not None and group == "ravdess":
            quiet = [p for p in paths if _is_actor05_quiet(p)]
            paths = quiet + [p for p in paths[:: max(1, len(paths) // limit)] if p not in quiet]
        elif limit is not None:
            paths = paths[:: max(1, len(paths) // limit)]
        for path in paths:
            yield group, path


def _is_actor05_quiet(path: Path) -> bool:
    """RAVDESS actor 05's neutral (01) and sad (04) clips, the quietest speech in the corpora."""
    parts = path.stem.split("-")
    return path.parent.name == "Actor_05" and parts[2] in ("01", "04")


def at_level(audio: np.ndarray, peak_db: float | None) -> np.ndarray:
    """``audio`` normalised to ``peak_db`` dBFS peak and rounded to 16 bits (None: as is)."""
    if peak_db is not None:
        audio = audio * (10 ** (peak_db / 20) / max(float(np.abs(audio).max()), 1e-9))
    return (np.round(audio * 32767.0) / 32768.0).astype(np.float32)


def window_counts(detector: Detector, audio: np.ndarray) -> np.ndarray:
    """(windows, thresholds) int: frames wholly inside each window at or above each threshold."""
    if len(audio) < SPEC.window_samples:
        audio = np.pad(audio, (0, SPEC.window_samples - len(audio)))
    push = detector.make()
    hop = round(HOP_SECONDS * SPEC.sample_rate)
    scores = np.concatenate([push(audio[s : s + hop]) for s in range(0, len(audio), hop)])
    starts = np.arange(len(scores)) * detector.hop_samples
    ends = starts + detector.frame_samples
    span = (SPEC.n_frames - 1) * SPEC.hop_length + SPEC.n_fft
    window_starts = range(0, len(audio) - span + 1, hop)
    above = scores[:, None] >= np.array(detector.thresholds)[None, :]
    counts = [above[(starts >= w) & (ends <= w + span)].sum(axis=0) for w in window_starts]
    return np.array(counts, np.int32)


def measure(
    datasets: Path, nonspeech: Path, limit: int | None
) -> dict[str, dict[str, list[tuple[str, np.ndarray]]]]:
    """{detector: {"group@level": [(clip, counts), ...]}} for every clip, level and detector."""
    results: dict[str, dict[str, list[tuple[str, np.ndarray]]]] = {d.name: {} for d in DETECTORS}
    for number, (group, path) in enumerate(clips(datasets, nonspeech, limit)):
        audio = read_audio(path, SPEC.sample_rate)
        for level in LEVELS:
            leveled = at_level(audio, level)
            key = f"{group}@{_level_name(level)}"
            for detector in DETECTORS:
                counts = window_counts(detector, leveled)
                results[detector.name].setdefault(key, []).append((str(path), counts))
        if number % 200 == 0:
            print(f"{number} clips measured", file=sys.stderr, flush=True)
    return results


def _level_name(level: float | None) -> str:
    return "own" if level is None else f"{level:g}"


def speech_windows(
    detector: Detector, counts: np.ndarray, threshold: int, min_speech: float
) -> np.ndarray:
    """Which windows are speech, from ``counts`` at threshold index ``threshold``."""
    frame_seconds = detector.hop_samples / SPEC.sample_rate
    column = counts[:, threshold]
    return (column > 0) & (column * frame_seconds >= min_speech - 1e-9)


def nonspeech_rate(detector: Detector, entries, threshold: int, min_speech: float) -> float:
    marked = [speech_windows(detector, counts, threshold, min_speech) for _, counts in entries]
    return float(np.concatenate(marked).mean())


def speech_recall(detector: Detector, entries, threshold: int, min_speech: float) -> float:
    found = [speech_windows(detector, c, threshold, min_speech).any() for _, c in entries]
    return float(np.mean(found))


def tuning_scores(
    detector: Detector, by_key, threshold: int, min_speech: float
) -> tuple[float, float]:
    """On the tuning part, the worst level's non-speech rate and speech recall."""
    false = max(
        nonspeech_rate(detector, by_key[f"{g}@{_level_name(lv)}"], threshold, min_speech)
        for g in TUNING_GROUPS[:2]
        for lv in LEVELS
    )
    recall = min(
        speech_recall(detector, by_key[f"{g}@{_level_name(lv)}"], threshold, min_speech)
        for g in TUNING_GROUPS[2:]
        for lv in LEVELS
    )
    return false, recall


def choose(detector: Detector, by_key, max_false: float) -> tuple[int, float]:
    """(threshold index, min speech seconds) picked on the tuning part only: the most
    utterances found while at most ``max_false`` of non-speech windows are speech."""
    best: tuple[float, float, int, float] | None = None
    for threshold in range(len(detector.thresholds)):
        for min_speech in detector.min_speech:
            false, recall = tuning_scores(detector, by_key, threshold, min_speech)
            candidate = (recall if false <= max_false else -1.0, -false, threshold, min_speech)
            if best is None or candidate[:2] > best[:2]:
                best = candidate
    assert best is not None
    return best[2], best[3]


def hop_cost_ms(detector: Detector, datasets: Path) -> float:
    """Median time of one 0.5 s hop of speech through the detector (ms), on this process's
    core(s)."""
    speech = [
        read_audio(p, SPEC.sample_rate) for p in sorted((datasets / "emodb/wav").glob("*"))[:30]
    ]
    audio = np.concatenate(speech)
    push = detector.make()
    hop = round(HOP_SECONDS * SPEC.sample_rate)
    durations = []
    for start in range(0, len(audio) - hop + 1, hop):
        started = time.perf_counter()
        push(audio[start : start + hop])
        durations.append(time.perf_counter() - started)
    return float(np.median(durations[2:]) * 1000.0)


def memory_child(name: str) -> None:
    """In a fresh process: resident memory (MiB) the detector adds to the daemon's imports."""
    import soundfile  # noqa: F401
    import soxr  # noqa: F401
    import zmq  # noqa: F401
    from ai_edge_litert.interpreter import Interpreter  # noqa: F401

    before = _rss_mib()
    detector = next(d for d in DETECTORS if d.name == name)
    push = detector.make()
    for _ in range(20):
        push(np.zeros(8000, np.float32))
    print(json.dumps(_rss_mib() - before))


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return 0.0


def memory_mib(detector: Detector) -> float:
    command = [sys.executable, __file__, "--memory-of", detector.name]
    return float(subprocess.run(command, check=True, capture_output=True, text=True).stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--nonspeech", type=Path, default=ROOT.parent / "shared" / "nonspeech")
    parser.add_argument("--limit", type=int, help="clips per group (default: all)")
    parser.add_argument("--max-false", type=float, default=0.025, help="tuning bound")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--memory-of", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_of:
        memory_child(args.memory_of)
        return
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})
    results = measure(args.datasets, args.nonspeech, args.limit)
    rows = []
    for detector in DETECTORS:
        by_key = results[detector.name]
        threshold, min_speech = choose(detector, by_key, args.max_false)
        row: dict[str, Any] = {
            "detector": detector.name,
            "threshold": detector.thresholds[threshold],
            "min_speech_seconds": min_speech,
        }
        for level in LEVELS:
            name = _level_name(level)
            tuning_ns = [e for g in TUNING_GROUPS[:2] for e in by_key[f"{g}@{name}"]]
            held_ns = [e for g in ("esc10 fold 3", "music", "other") for e in by_key[f"{g}@{name}"]]
            tuning_sp = [e for g in TUNING_GROUPS[2:] for e in by_key[f"{g}@{name}"]]
            held_sp = by_key[f"ravdess@{name}"]
            quiet = [e for e in held_sp if _is_actor05_quiet(Path(e[0]))]
            row[f"nonspeech tuning {name}"] = nonspeech_rate(
                detector, tuning_ns, threshold, min_speech
            )
            row[f"nonspeech held out {name}"] = nonspeech_rate(
                detector, held_ns, threshold, min_speech
            )
            row[f"speech tuning {name}"] = speech_recall(detector, tuning_sp, threshold, min_speech)
            row[f"speech held out {name}"] = speech_recall(detector, held_sp, threshold, min_speech)
            row[f"actor05 quiet {name}"] = speech_recall(detector, quiet, threshold, min_speech)
        row["hop_ms"] = hop_cost_ms(detector, args.datasets)
        row["memory_mib"] = memory_mib(detector)
        rows.append(row)
    print_table(rows)
    print_grid(next(d for d in DETECTORS if d.name.startswith("silero")), results)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


def print_table(rows: list[dict[str, Any]]) -> None:
    levels = [_level_name(level) for level in LEVELS]
    header = ["detector", "setting"]
    header += [f"non-speech held out {lv}" for lv in levels]
    header += [f"speech held out {lv}" for lv in levels]
    header += ["actor 05 quiet own", "actor 05 quiet -45", "ms/hop", "MiB"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        cells = [str(row["detector"]), f"≥ {row['threshold']:g}, {row['min_speech_seconds']:g} s"]
        cells += [f"{100 * float(row[f'nonspeech held out {lv}']):.1f} %" for lv in levels]
        cells += [f"{100 * float(row[f'speech held out {lv}']):.1f} %" for lv in levels]
        cells += [f"{100 * float(row[f'actor05 quiet {lv}']):.0f} %" for lv in ("own", "-45")]
        cells += [f"{float(row['hop_ms']):.2f}", f"{float(row['memory_mib']):.1f}"]
        print("| " + " | ".join(cells) + " |")
    print()
    print("tuning part (ESC-10 folds 1-2 non-speech, Emo-DB + TESS speech):")
    for row in rows:
        cells = [
            f"{lv}: {100 * float(row[f'nonspeech tuning {lv}']):.1f} % / "
            f"{100 * float(row[f'speech tuning {lv}']):.1f} %"
            for lv in levels
        ]
        print(f"  {row['detector']}: " + "; ".join(cells))


def print_grid(detector: Detector, results) -> None:
    """The tuning part over every setting tried: worst non-speech rate and worst speech recall
    over the levels, so the chosen setting can be seen against its neighbours."""
    print(f"\n{detector.name}, tuning part, worst level: non-speech windows / utterances found")
    print("| threshold | " + " | ".join(f"{m:g} s" for m in detector.min_speech) + " |")
    print("|---|" + "---|" * len(detector.min_speech))
    by_key = results[detector.name]
    for index, threshold in enumerate(detector.thresholds):
        cells = []
        for min_speech in detector.min_speech:
            false, recall = tuning_scores(detector, by_key, index, min_speech)
            cells.append(f"{100 * false:.1f} % / {100 * recall:.1f} %")
        print(f"| {threshold:g} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
