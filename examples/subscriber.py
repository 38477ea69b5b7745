#!/usr/bin/env python3
"""React to the emotions a running emostream daemon publishes: the smallest useful subscriber.

    python examples/subscriber.py                     # tcp://127.0.0.1:5556
    python examples/subscriber.py ipc:///run/emostream/emostream.sock --count 10

Prints one line per window of speech, and a note when windows were lost, when the daemon
restarted, or when nothing has been published for a while. ``streamer.client`` does the
ZeroMQ and JSON work; see docs/messages.md for every field.
"""

from __future__ import annotations

import argparse
import contextlib

from streamer.client import Emotion, Quiet, Status, subscribe
from streamer.wire import DEFAULT_ADDRESS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("address", nargs="?", default=DEFAULT_ADDRESS)
    parser.add_argument("--count", type=int, default=0, help="Stop after this many windows.")
    arguments = parser.parse_args()

    windows = 0
    for event in subscribe(arguments.address, quiet_after=5.0):
        if isinstance(event, Emotion):
            if event.restarted:
                print("-- the daemon restarted", flush=True)
            if event.missed:
                print(f"-- {event.missed} windows missed", flush=True)
            if event.speech:
                label = event.label or "(unsure)"
                print(f"{event.window_end:8.1f} s  {label:<10} {event.confidence:4.0%}", flush=True)
            else:
                print(f"{event.window_end:8.1f} s  (silence)", flush=True)
            windows += 1
            if windows == arguments.count:
                break
        elif isinstance(event, Status) and event.source_state != "running":
            print(f"-- source {event.source_name} is {event.source_state}", flush=True)
        elif isinstance(event, Quiet):
            why = f": the daemon refuses us ({event.refused})" if event.refused else ""
            print(f"-- nothing published for {event.quiet_for:.0f} s{why}", flush=True)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
