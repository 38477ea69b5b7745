"""Loading a model says nothing unless something is wrong: TFLite's XNNPACK notice is dropped,
everything else its native code prints is passed on."""

from __future__ import annotations

import os
import subprocess

from daemon_support import emostream_command, shipped_model_dir

from streamer.models import XNNPACK_NOTICE, _without_xnnpack_notice


def test_the_xnnpack_notice_is_dropped_and_other_native_output_kept(capfd):
    with _without_xnnpack_notice():
        os.write(2, f"INFO: {XNNPACK_NOTICE} for CPU.\n".encode())
        os.write(2, b"ERROR: something TFLite wants said\n")
    captured = capfd.readouterr()
    assert XNNPACK_NOTICE not in captured.err
    assert "ERROR: something TFLite wants said" in captured.err


def test_commands_that_load_models_do_not_print_the_notice(test_clips):
    result = subprocess.run(
        [
            *emostream_command(),
            "classify",
            "--models-dir",
            str(shipped_model_dir()),
            str(test_clips[0]),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "XNNPACK" not in result.stderr and "XNNPACK" not in result.stdout
    assert test_clips[0].name in result.stdout
