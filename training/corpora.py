"""Emotional-speech corpora: utterances with speaker and canonical label, read from file names.

Canonical labels (one vocabulary across corpora):

| label     | RAVDESS   | TESS              | Emo-DB        | CREMA-D | SAVEE |
|-----------|-----------|-------------------|---------------|---------|-------|
| neutral   | neutral   | neutral           | N neutral     | NEU     | n     |
| calm      | calm      | -                 | -             | -       | -     |
| happy     | happy     | happy             | F happiness   | HAP     | h     |
| sad       | sad       | sad               | T sadness     | SAD     | sa    |
| angry     | angry     | angry             | W anger       | ANG     | a     |
| fearful   | fearful   | fear              | A fear        | FEA     | f     |
| disgust   | disgust   | disgust           | E disgust     | DIS     | d     |
| surprised | surprised | pleasant_surprise | -             | -       | su    |
| bored     | -         | -                 | L boredom     | -       | -     |

Loaders keep every emotion a corpus has, so each corpus can be evaluated on its own classes
(RAVDESS 8, Emo-DB 7, TESS 7). Models for several corpora apply a ``LabelPolicy``: the shipped
one merges calm into neutral (RAVDESS's calm is a low-arousal neutral, and no other corpus has it)
and drops boredom (only Emo-DB has it; kept, the model would learn "German speaker" as much as
"bored"), leaving the seed's 7 emotions.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

_LOGGER = logging.getLogger(__name__)

CANONICAL_LABELS = (
    "neutral",
    "calm",
    "happy",
    "sad",
    "angry",
    "fearful",
    "disgust",
    "surprised",
    "bored",
)
AUDIO_SUFFIXES = (".wav", ".flac")

_RAVDESS = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fearful",
    "07": "disgust",
    "08": "surprised",
}
_TESS = {
    "angry": "angry",
    "disgust": "disgust",
    "fear": "fearful",
    "happy": "happy",
    "neutral": "neutral",
    "ps": "surprised",
    "sad": "sad",
}
_EMODB = {
    "W": "angry",
    "L": "bored",
    "E": "disgust",
    "A": "fearful",
    "F": "happy",
    "T": "sad",
    "N": "neutral",
}
_CREMAD = {
    "ANG": "angry",
    "DIS": "disgust",
    "FEA": "fearful",
    "HAP": "happy",
    "NEU": "neutral",
    "SAD": "sad",
}
_SAVEE = {
    "a": "angry",
    "d": "disgust",
    "f": "fearful",
    "h": "happy",
    "n": "neutral",
    "sa": "sad",
    "su": "surprised",
}


@dataclass(frozen=True)
class Utterance:
    """One recording of one speaker with one emotion."""

    path: Path
    corpus: str
    speaker: str
    """Corpus-qualified speaker id, e.g. "ravdess:05", so speakers never collide across corpora."""
    label: str
    """Canonical label (see the module docstring)."""


@dataclass(frozen=True)
class LabelPolicy:
    """How a model's classes are made from canonical labels."""

    merge: dict[str, str] = field(default_factory=dict)
    """Canonical label -> label it is counted as."""
    drop: tuple[str, ...] = ()
    """Canonical labels whose utterances are left out."""

    def apply(self, utterances: Iterable[Utterance]) -> list[Utterance]:
        kept = []
        for utterance in utterances:
            if utterance.label in self.drop:
                continue
            label = self.merge.get(utterance.label, utterance.label)
            kept.append(Utterance(utterance.path, utterance.corpus, utterance.speaker, label))
        return kept


SHIPPED_POLICY = LabelPolicy(merge={"calm": "neutral"}, drop=("bored",))
SHIPPED_CORPORA = ("ravdess", "tess", "emodb")
"""The corpora the shipped models are trained on together (``emostream train``'s default),
which ``emostream evaluate --protocol shipped`` trains on beside a corpus's other speakers."""
NATIVE_POLICY = LabelPolicy()


def _ravdess(path: Path) -> tuple[str, str] | None:
    parts = path.stem.split("-")
    if len(parts) != 7 or parts[0] != "03" or parts[2] not in _RAVDESS:
        return None
    return parts[6], _RAVDESS[parts[2]]


def _tess(path: Path) -> tuple[str, str] | None:
    match = re.fullmatch(r"(OAF|OA|YAF)_[^_]+_(\w+)", path.stem)
    if not match or match.group(2) not in _TESS:
        return None
    return {"OA": "OAF"}.get(match.group(1), match.group(1)), _TESS[match.group(2)]


def _emodb(path: Path) -> tuple[str, str] | None:
    match = re.fullmatch(r"(\d\d)[ab]\d\d([WLEAFTN])[a-z]", path.stem)
    return (match.group(1), _EMODB[match.group(2)]) if match else None


def _cremad(path: Path) -> tuple[str, str] | None:
    match = re.fullmatch(r"(\d{4})_[A-Z]{3}_([A-Z]{3})_[A-Z]{1,2}", path.stem)
    if not match or match.group(2) not in _CREMAD:
        return None
    return match.group(1), _CREMAD[match.group(2)]


def _savee(path: Path) -> tuple[str, str] | None:
    # Published both as "DC_a01.wav" and as "DC/a01.wav" (speaker in the folder name).
    match = re.fullmatch(r"(?:([A-Z]{2})_)?(sa|su|[adfhn])\d\d", path.stem)
    if not match:
        return None
    speaker = match.group(1) or path.parent.name
    return speaker, _SAVEE[match.group(2)]


PARSERS: dict[str, Callable[[Path], tuple[str, str] | None]] = {
    "ravdess": _ravdess,
    "tess": _tess,
    "emodb": _emodb,
    "cremad": _cremad,
    "savee": _savee,
}


class CorpusError(Exception):
    """A corpus folder is missing or holds no recognisable recordings."""


def load_corpus(name: str, root: Path) -> list[Utterance]:
    """Utterances of corpus ``name`` found under ``root`` (searched recursively, .wav and .flac).

    Files whose names do not follow the corpus's convention are counted and named in a warning.
    """
    if name not in PARSERS:
        raise CorpusError(f"unknown corpus {name!r}: choose from {', '.join(PARSERS)}")
    root = Path(root)
    if not root.is_dir():
        raise CorpusError(f"{root}: corpus folder for {name} not found")
    parse = PARSERS[name]
    utterances, unrecognised = [], []
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES):
        parsed = parse(path)
        if parsed is None:
            unrecognised.append(path)
            continue
        speaker, label = parsed
        utterances.append(Utterance(path, name, f"{name}:{speaker}", label))
    if unrecognised:
        _LOGGER.warning(
            "%s: %d files not named as %s recordings, skipped (first: %s)",
            root,
            len(unrecognised),
            name,
            unrecognised[0].name,
        )
    if not utterances:
        raise CorpusError(f"{root}: no {name} recordings found")
    return utterances


def corpus_dir(datasets: Path, name: str) -> Path:
    """Where corpus ``name`` lives inside the shared datasets folder."""
    return Path(datasets) / {"emodb": "emodb/wav"}.get(name, name)


def speakers(utterances: Iterable[Utterance]) -> list[str]:
    return sorted({u.speaker for u in utterances})


def corpus_of_speakers(speaker_ids: np.ndarray) -> np.ndarray:
    """The corpus of each corpus-qualified speaker id (``Utterance.speaker``)."""
    return np.array([speaker.split(":", 1)[0] for speaker in speaker_ids])


def labels(utterances: Iterable[Utterance]) -> list[str]:
    """Labels present, in canonical order (extra labels, if any, after them)."""
    present = {u.label for u in utterances}
    ordered = [label for label in CANONICAL_LABELS if label in present]
    return ordered + sorted(present - set(ordered))


def subset_per_speaker(utterances: list[Utterance], count: int, seed: int = 0) -> list[Utterance]:
    """At most ``count`` utterances of each speaker, chosen at random."""
    rng = np.random.default_rng(seed)
    chosen = []
    for speaker in speakers(utterances):
        own = [u for u in utterances if u.speaker == speaker]
        chosen += [own[i] for i in sorted(rng.permutation(len(own))[:count])]
    return chosen


def load_labelled(
    corpora: Iterable[str],
    datasets: Path,
    policy: LabelPolicy,
    per_speaker: int | None = None,
    seed: int = 0,
) -> tuple[list[Utterance], list[str], np.ndarray]:
    """Utterances of ``corpora`` under ``policy``, their classes, and each one's class index.

    ``per_speaker`` keeps only that many utterances of each speaker (quick runs and CI).
    """
    utterances: list[Utterance] = []
    for corpus in corpora:
        utterances += policy.apply(load_corpus(corpus, corpus_dir(datasets, corpus)))
    if per_speaker is not None:
        utterances = subset_per_speaker(utterances, per_speaker, seed)
    classes = labels(utterances)
    return utterances, classes, np.array([classes.index(u.label) for u in utterances])
