"""The daemon's per-hop cost in this checkout against another's, measured in one run.

A per-hop figure in milliseconds belongs to the machine it was measured on: the code that took
1.00 ms per hop on the machine where issue 9 closed takes over twice that on a slower one. To
say whether a change made the runtime slower or faster, both checkouts are measured here in
turn, on the same core, the same clips and the same capture blocks, and the ratio is reported.

    git worktree add --detach /tmp/then a5a4abc     # the checkout to compare with
    python benchmarks/hop_against.py /tmp/then --rounds 3

Each measurement is a fresh process that imports one checkout's ``streamer`` and its shipped
models, feeds 60 s of the committed clips in 1,024-sample blocks (the daemon's capture block)
through a ``Pipeline`` that adapts as the daemon does, and reports the median over the hops that
ran the models. The two checkouts alternate, so drift in the machine's speed falls on both.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parent.parent
"""This checkout's root."""

# Runs in a child process with one checkout first on sys.path; it uses only the API that the
# pipeline has had since the speech detector came in (issue 9).
MEASURE = """
import json, os, sys, time
from pathlib import Path
import numpy as np
root, clips, cpu, block = sys.argv[1], sys.argv[2:-2], int(sys.argv[-2]), int(sys.argv[-1])
sys.path.insert(0, root)
os.sched_setaffinity(0, {cpu})
from streamer.adaptation import VoiceAdaptation
from streamer.audio import read_audio
from streamer.config import PipelineConfig
from streamer.models import MODEL_NAMES, load_models
from streamer.pipeline import Pipeline
models = load_models(Path(root) / "models", MODEL_NAMES)
spec = models[0].metadata.features
audio = np.concatenate([read_audio(Path(c), spec.sample_rate) for c in clips])
audio = np.tile(audio, int(np.ceil(60 * spec.sample_rate / len(audio))))
voice = VoiceAdaptation(Pipeline.training_statistics(models), spec, 0.5)
pipeline = Pipeline(models, PipelineConfig(hop_seconds=0.5), voice)
hops, spent = [], 0.0
for start in range(0, len(audio) - block + 1, block):
    started = time.perf_counter()
    results = pipeline.push(audio[start : start + block], time.time())
    spent += time.perf_counter() - started
    if results:
        hops += [spent / len(results) for r in results if len(r.models) == len(models)]
        spent = 0.0
print(json.dumps({"median_ms": 1000 * float(np.median(hops[1:])), "hops": len(hops) - 1}))
"""


def measure(checkout: Path, clips: list[Path], cpu: int, block: int) -> float:
    """Median per-hop milliseconds of ``checkout``'s pipeline, in a fresh process."""
    command = [sys.executable, "-c", MEASURE, str(checkout), *map(str, clips), str(cpu), str(block)]
    environment = {**os.environ, "PYTHONPATH": str(checkout)}
    done = subprocess.run(command, capture_output=True, text=True, env=environment)
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise SystemExit(f"{checkout}: its pipeline could not be measured ({reason})")
    return float(json.loads(done.stdout.strip().splitlines()[-1])["median_ms"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("other", type=Path, help="the other checkout (a git worktree)")
    parser.add_argument("--rounds", type=int, default=3, help="measurements of each checkout")
    parser.add_argument("--block", type=int, default=1024, help="capture block (samples)")
    parser.add_argument("clips", nargs="*", type=Path, help="speech clips (default: tests/data)")
    arguments = parser.parse_args()
    clips = arguments.clips or sorted((CHECKOUT / "tests" / "data").glob("*.wav"))
    cpu = max(os.sched_getaffinity(0))
    times: dict[str, list[float]] = {"this": [], "other": []}
    for _ in range(arguments.rounds):
        for name, checkout in (("other", arguments.other.resolve()), ("this", CHECKOUT)):
            times[name].append(measure(checkout, clips, cpu, arguments.block))
            print(f"{name:5} {checkout}: {times[name][-1]:.2f} ms per hop", flush=True)
    this, other = (statistics.median(times[n]) for n in ("this", "other"))
    print(
        f"per hop, median of {arguments.rounds} rounds on CPU {cpu}: this checkout "
        f"{this:.2f} ms, {arguments.other} {other:.2f} ms; ratio {this / other:.2f}"
    )


if __name__ == "__main__":
    main()
