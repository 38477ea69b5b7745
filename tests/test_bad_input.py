"""Bad input of every kind ends in one line naming the culprit: never a traceback or a hang.

Audio files are fuzzed with hypothesis from real clips (truncated, overwritten, padded, or not
audio at all) through ``streamer.audio.read_audio`` and the daemon's file source, and so are
adaptation state files (damaged, truncated, foreign) through ``streamer.adaptation``; models,
metadata, config files, addresses and devices are broken by hand and given to
``emostream serve`` as users would.
"""

from __future__ import annotations

import faulthandler
import json
import logging
import logging.handlers
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import zmq
from daemon_support import ROOT, emostream_command, shipped_model_dir
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pulse_support import PrivatePulse, require_pulseaudio

from streamer.adaptation import VoiceAdaptation, load_state, save_state
from streamer.audio import MIN_FILE_RATE, AudioError, read_audio
from streamer.features import FeatureExtractor, FeatureSpec, FeatureStatistics
from streamer.sources import SourceError, WavFile

CLIPS = sorted((ROOT / "tests" / "data").glob("*.wav"))
RATE = 16000
HEADER_FIELDS = [(4, 4), (20, 2), (22, 2), (24, 4), (28, 4), (32, 2), (34, 2), (40, 4)]
"""(offset, bytes) of the numeric fields of a canonical WAV header."""
# A hang is a failure too: past this, faulthandler prints where it hangs and ends the run.
HANG_SECONDS = 120


@pytest.fixture(autouse=True)
def hang_guard() -> Iterator[None]:
    faulthandler.dump_traceback_later(HANG_SECONDS, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


@st.composite
def damaged_audio(draw: st.DrawFn) -> bytes:
    """A real WAV file (sometimes re-encoded as float or 8-bit) damaged in one or more ways."""
    data = bytearray(CLIPS[draw(st.integers(0, len(CLIPS) - 1))].read_bytes())
    for _ in range(draw(st.integers(1, 3))):
        damage = draw(st.sampled_from(["truncate", "overwrite", "header", "insert", "garbage"]))
        if damage == "header":
            # A field of the canonical 44-byte header: RIFF size, format tag, channels, rate,
            # byte rate, block align, bits per sample, data size; small values are the nastiest.
            at, width = draw(st.sampled_from(HEADER_FIELDS))
            value = draw(st.one_of(st.integers(0, 16), st.integers(0, 2 ** (8 * width) - 1)))
            data[at : at + width] = value.to_bytes(width, "little")
        else:
            data = damaged_once(draw, data, damage, patch_size=64)
    return bytes(data)


def damaged_once(draw: st.DrawFn, data: bytearray, damage: str, patch_size: int) -> bytearray:
    """``data`` cut short, overwritten with up to ``patch_size`` bytes, given up to four times
    that many inserted bytes, or replaced by up to 32 times that many bytes of garbage (also
    what "overwrite" does to an empty file)."""
    if damage == "truncate":
        return data[: draw(st.integers(0, len(data)))]
    if damage == "overwrite" and data:
        at = draw(st.integers(0, len(data) - 1))
        patch = draw(st.binary(min_size=1, max_size=patch_size))
        data[at : at + len(patch)] = patch
        return data
    if damage == "insert":
        at = draw(st.integers(0, len(data)))
        data[at:at] = draw(st.binary(min_size=1, max_size=4 * patch_size))
        return data
    return bytearray(draw(st.binary(max_size=32 * patch_size)))


def longest_decoding(data: bytes) -> float:
    """Most samples at the models' rate that ``data`` can honestly hold: at most two samples a
    byte (4-bit ADPCM) at no less than MIN_FILE_RATE. A damaged rate field (1 Hz) must not turn a
    small file into hours of audio (and gigabytes of memory)."""
    return 2 * len(data) * RATE / MIN_FILE_RATE


FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _one_line_naming(error: Exception, path: Path) -> None:
    message = str(error)
    assert message.startswith(f"{path}: ") and "\n" not in message, message


def _adaptation() -> VoiceAdaptation:
    spec = FeatureSpec()
    columns = spec.statistics_columns
    training = FeatureStatistics(np.zeros(columns, np.float32), np.ones(columns, np.float32))
    return VoiceAdaptation(training, spec, 0.5)


def _adapted_state() -> bytes:
    """A real state file, adapted on the committed clips."""
    adaptation = _adaptation()
    extractor = FeatureExtractor(adaptation.spec)
    for clip in CLIPS:
        for window in extractor.windows(read_audio(clip, RATE), 0.5):
            adaptation.observe(extractor.level_free(window))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "adaptation.json"
        save_state(adaptation, path)
        return path.read_bytes()


ADAPTED_STATE = _adapted_state()


@st.composite
def damaged_state(draw: st.DrawFn) -> bytes:
    """A real adaptation state file damaged in one or more ways, or a JSON value of any shape."""
    if draw(st.booleans()):
        value = draw(
            st.recursive(
                st.none() | st.booleans() | st.floats() | st.text(),
                lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
            )
        )
        state = json.loads(ADAPTED_STATE)
        key = draw(st.sampled_from(sorted(state)))
        return json.dumps({**state, key: value}).encode()
    data = bytearray(ADAPTED_STATE)
    for _ in range(draw(st.integers(1, 3))):
        damage = draw(st.sampled_from(["truncate", "overwrite", "insert", "garbage"]))
        data = damaged_once(draw, data, damage, patch_size=16)
    return bytes(data)


@FUZZ
@given(damaged_state())
def test_a_damaged_adaptation_state_is_named_in_one_line_and_training_statistics_apply(data):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "adaptation.json"
        path.write_bytes(data)
        adaptation = _adaptation()
        handler = logging.handlers.BufferingHandler(capacity=100)
        logger = logging.getLogger("streamer.adaptation")
        logger.addHandler(handler)
        try:
            restored = load_state(adaptation, path)
        finally:
            logger.removeHandler(handler)
    statistics = adaptation.statistics
    assert np.isfinite(statistics.mean).all() and (statistics.std > 0).all()
    if restored:
        assert adaptation.adapted_seconds >= 0
        return
    warnings = [r.getMessage() for r in handler.buffer if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and str(path) in warnings[0] and "\n" not in warnings[0]
    np.testing.assert_array_equal(statistics.mean, adaptation.training.mean)
    assert adaptation.adapted_seconds == 0


@FUZZ
@given(damaged_audio())
def test_damaged_wav_files_read_as_audio_or_fail_with_one_line_naming_the_file(data):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "damaged.wav"
        path.write_bytes(data)
        try:
            audio = read_audio(path, RATE)
        except AudioError as error:
            _one_line_naming(error, path)
            return
    assert audio.dtype == np.float32 and audio.ndim == 1 and len(audio) > 0
    assert np.all(np.isfinite(audio))
    assert len(audio) <= longest_decoding(data)


@FUZZ
@given(damaged_audio(), st.sampled_from([7, 512, 1600]))
def test_damaged_wav_files_stream_from_the_file_source_or_fail_with_one_line(data, block_size):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "damaged.wav"
        path.write_bytes(data)
        source = WavFile(path, RATE, block_size, realtime=False)
        samples = 0
        try:
            source.start()
            while source.state != "ended":
                block = source.read(0.1)
                if block is not None:
                    assert block.samples.dtype == np.float32
                    assert np.all(np.isfinite(block.samples))
                    samples += len(block.samples)
        except SourceError as error:
            _one_line_naming(error, path)
        finally:
            source.close()
        assert samples <= longest_decoding(data)


def serve_error(*arguments: str) -> str:
    """The one line ``emostream serve ARGS`` fails with (exit status 1, no traceback)."""
    daemon = subprocess.run(
        [*emostream_command(), "serve", *arguments], capture_output=True, text=True, timeout=60
    )
    assert daemon.returncode == 1, daemon.stderr
    assert "Traceback" not in daemon.stderr, daemon.stderr
    lines = [line for line in daemon.stderr.splitlines() if " INFO " not in line]
    lines = [line for line in lines if not line.startswith("INFO: Created TensorFlow Lite")]
    assert len(lines) == 1 and lines[0].startswith("Error: "), daemon.stderr
    return lines[0]


@pytest.fixture()
def models(tmp_path) -> Path:
    """A copy of the shipped models to break."""
    copy = tmp_path / "models"
    shutil.copytree(shipped_model_dir(), copy)
    return copy


def _serve_clip(models: Path, tmp_path: Path, *more: str) -> list[str]:
    clip = str(CLIPS[0])
    return ["--source", clip, "--models-dir", str(models), "--bind", f"ipc://{tmp_path}/s", *more]


def _flip_bytes(path: Path, seed: int) -> None:
    """Overwrites 20 bytes at random places (this seed's places pass the flatbuffer check and
    damage a quantisation scale, which used to fail only when the model first ran)."""
    data = bytearray(path.read_bytes())
    generator = np.random.default_rng(seed)
    for at in generator.integers(0, len(data), 20):
        data[at] = generator.integers(0, 256)
    path.write_bytes(bytes(data))


def _edit_json(path: Path, change) -> None:
    values = json.loads(path.read_text())
    change(values)
    path.write_text(json.dumps(values))


def _more_mel_bands(metadata: dict) -> None:
    """64 mel bands in the metadata (statistics included), 40 in the model file."""
    metadata["features"]["n_mels"] = 64
    columns = FeatureSpec.from_dict(metadata["features"]).statistics_columns
    for key in ("mean", "std"):
        metadata["statistics"][key] = [1.0] * columns


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda m: (m / "cnn.tflite").unlink(), "{m}/cnn.tflite: model file not found"),
        (
            lambda m: (m / "cnn.tflite").write_bytes((m / "cnn.tflite").read_bytes()[:3000]),
            "{m}/cnn.tflite: not a usable TFLite model",
        ),
        (
            lambda m: (m / "lstm.tflite").write_bytes(b"TFL3" + bytes(5000)),
            "{m}/lstm.tflite: not a usable TFLite model",
        ),
        (lambda m: (m / "cnn.json").unlink(), "{m}/cnn.json: model metadata file is missing"),
        (
            lambda m: (m / "cnn.json").write_text("{not json"),
            "{m}/cnn.json: invalid model metadata",
        ),
        (
            lambda m: _edit_json(m / "cnn.json", _more_mel_bands),
            "{m}/cnn.tflite: interpreter input shape (1, 99, 40, 1) does not match",
        ),
        (
            lambda m: _edit_json(m / "lstm.json", lambda v: v["features"].update(hop_length=160)),
            "{m}/lstm.tflite: feature parameters differ from the pipeline's (hop_length",
        ),
        (
            lambda m: _edit_json(m / "cnn.json", lambda v: v.update(labels=v["labels"][:-1])),
            "{m}/cnn.tflite: 7 outputs but 6 labels",
        ),
        (
            lambda m: _edit_json(m / "cnn.json", lambda v: v.update(model_input="waveform")),
            "{m}/cnn.json: unknown model_input 'waveform'",
        ),
        (
            lambda m: _edit_json(m / "lstm.json", lambda v: v.update(ensemble_weight=-1)),
            "{m}/lstm.json: ensemble_weight must be from 0 to 1e+06, not -1",
        ),
        (
            lambda m: _edit_json(m / "lstm.json", lambda v: v.update(ensemble_weight=float("nan"))),
            "{m}/lstm.json: ensemble_weight must be from 0 to 1e+06, not nan",
        ),
        (
            lambda m: _edit_json(m / "lstm.json", lambda v: v.update(ensemble_weight=10**400)),
            "{m}/lstm.json: ensemble_weight must be from 0 to 1e+06, not 1000",
        ),
        (
            lambda m: _edit_json(m / "lstm.json", lambda v: v.update(ensemble_weight="heavy")),
            "{m}/lstm.json: ensemble_weight must be a number, not 'heavy'",
        ),
    ],
    ids=[
        "missing-model",
        "truncated-model",
        "not-a-model",
        "missing-metadata",
        "corrupt-metadata",
        "metadata-shape-mismatch",
        "features-differ-between-models",
        "labels-do-not-match-outputs",
        "unknown-model-input",
        "ensemble-weight-negative",
        "ensemble-weight-nan",
        "ensemble-weight-huge",
        "ensemble-weight-not-a-number",
    ],
)
def test_a_broken_model_or_metadata_is_one_line_naming_the_file(models, tmp_path, damage, message):
    damage(models)
    assert message.format(m=models) in serve_error(*_serve_clip(models, tmp_path))


def test_a_model_damaged_inside_is_refused_at_start_not_when_speech_arrives(models, tmp_path):
    _flip_bytes(models / "cnn.tflite", seed=19)
    line = serve_error(*_serve_clip(models, tmp_path, "--fast"))
    assert f"{models}/cnn.tflite: not a usable TFLite model" in line


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[pipeline\n", "{f}: invalid TOML"),
        ("[pipeline]\nhop = 0.5\n", "{f}: unknown config key 'pipeline.hop'"),
        ("[source]\nring_seconds = 0.1\n", "{f}: config key 'source.ring_seconds' must be"),
        ('[publish]\nsend_hwm = "many"\n', "{f}: config key 'publish.send_hwm': expected int"),
        ("[network]\nport = 1\n", "{f}: unknown config section 'network'"),
        (b"\xff\xfe[source]\n", "{f}: config file is not UTF-8 text"),
    ],
)
def test_an_invalid_config_file_is_one_line_naming_the_file_and_key(tmp_path, text, message):
    path = tmp_path / "emostream.toml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    line = serve_error("--config", str(path), "--source", str(CLIPS[0]))
    assert line.startswith("Error: " + message.format(f=path)), line


def test_a_busy_tcp_address_is_one_line_naming_it(tmp_path):
    holder = zmq.Context.instance().socket(zmq.PUB)
    holder.bind("tcp://127.0.0.1:*")
    address = holder.getsockopt_string(zmq.LAST_ENDPOINT)
    try:
        line = serve_error("--source", str(CLIPS[0]), "--bind", address)
    finally:
        holder.close()
    assert line == f"Error: {address}: address already in use"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("mic:987", "no input device with index 987"),
        ("mic:no-such-microphone", "no input device matching 'no-such-microphone'"),
    ],
)
def test_a_device_that_does_not_exist_is_one_line_naming_it(
    models, tmp_path, monkeypatch, source, message
):
    """While PortAudio lists inputs, a name or index matching none is a configuration error."""
    require_pulseaudio()
    pulse = PrivatePulse()
    monkeypatch.setenv("PULSE_SERVER", pulse.env["PULSE_SERVER"])
    try:
        line = serve_error(
            "--source", source, "--models-dir", str(models), "--bind", f"ipc://{tmp_path}/s"
        )
    finally:
        pulse.stop()
    assert message in line
    assert "(inputs: " in line and "(inputs: none)" not in line


@pytest.mark.parametrize(
    "content",
    [b"", b"RIFF\x24\x00\x00\x00WAVEfmt ", b"not audio at all\n" * 10],
    ids=["empty", "truncated-header", "text"],
)
def test_a_bad_audio_file_given_to_serve_is_one_line_naming_it(models, tmp_path, content):
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    line = serve_error(
        "--source", str(path), "--models-dir", str(models), "--bind", f"ipc://{tmp_path}/s"
    )
    assert line.startswith(f"Error: {path}: "), line
