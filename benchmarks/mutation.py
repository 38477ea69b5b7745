"""Mutation testing of the pure modules: how many small planted bugs the fast tests catch.

    python benchmarks/mutation.py             # from the checkout; --jobs N (default 2)
    python benchmarks/mutation.py --report    # the figures of the last run (also an unfinished one)

mutmut (the [dev] extra) copies the code to ``mutants/``, plants one change at a time (an
operator, a constant, a condition, a dropped argument) in each function of SCOPE, and runs the
tests that cover that function (``[tool.mutmut]`` in pyproject.toml lists the test files). A
mutant is caught when a test fails or hangs. This prints, per module, the mutants, how many were
caught, the score, and the names of the survivors (``mutmut show NAME`` shows the change).

Not in scope, because their tests need real sockets, subprocesses or training: the
``Publisher``'s socket life cycle (tests/test_publish.py, tests/test_security.py) and the
evaluation's fold runners, which train models (tests/test_training.py).
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SCOPE = {
    "streamer.ring": ["streamer.ring.*"],
    "streamer.features": ["streamer.features.*"],
    "streamer.pipeline": ["streamer.pipeline.*"],
    "streamer.config": ["streamer.config.*"],
    "streamer.cli.options": ["streamer.cli.options.*"],
    "streamer.wire": ["streamer.wire.*"],
    "streamer.publish (messages)": [
        "streamer.publish.x_emotion_message__*",
        "streamer.publish.x_status_message__*",
        "streamer.publish.x_format_echo__*",
    ],
    "training.corpora": ["training.corpora.*"],
    "training.metrics": ["training.metrics.*"],
    "training.evaluate (folds, means)": [
        f"training.evaluate.x_{name}__*"
        for name in ("speaker_folds", "random_fold", "mean_scores", "rescored")
    ],
}
"""Module -> mutmut name patterns of the functions mutated."""
CAUGHT = ("killed", "timeout")
UNTESTED = "not checked"
"""mutmut's word for a mutant an unfinished run has not reached yet."""


def _figures(counts: Counter[str]) -> str:
    """Mutants, how many were tested, how many caught, and caught / tested."""
    mutants = sum(counts.values())
    tested = mutants - counts[UNTESTED]
    caught = sum(counts[outcome] for outcome in CAUGHT)
    return f"{mutants:>8} {tested:>7} {caught:>7} {caught / max(tested, 1):>7.1%}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2, help="mutants tested at once")
    parser.add_argument("--report", action="store_true", help="only report the last run")
    arguments = parser.parse_args()
    os.chdir(ROOT)
    patterns = [pattern for module in SCOPE.values() for pattern in module]
    mutmut = [sys.executable, "-m", "mutmut"]
    if not arguments.report:
        shutil.rmtree("mutants", ignore_errors=True)  # a fresh run, not one resumed on old code
        run = [*mutmut, "run", "--max-children", str(arguments.jobs), *patterns]
        subprocess.run(run, check=True)
    listing = subprocess.run(
        [*mutmut, "results", "--all", "true"], check=True, capture_output=True, text=True
    ).stdout
    status = dict(
        re.findall(r"^\s*(\S+): (.+)$", listing, flags=re.MULTILINE),
    )
    total: Counter[str] = Counter()
    survivors = []
    print(f"\n{'module':<36} {'mutants':>8} {'tested':>7} {'caught':>7} {'score':>7}")
    for module, module_patterns in SCOPE.items():
        counts: Counter[str] = Counter()
        for name, outcome in status.items():
            if any(fnmatch.fnmatch(name, pattern) for pattern in module_patterns):
                counts[outcome] += 1
                if outcome not in (*CAUGHT, UNTESTED):
                    survivors.append(f"{name}: {outcome}")
        total.update(counts)
        print(f"{module:<36} {_figures(counts)}")
    print(f"{'all':<36} {_figures(total)}")
    print(f"outcomes: {dict(total)}")
    print("\nnot caught:\n" + "\n".join(sorted(survivors)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
