"""Serve the three simulators: `python -m apps.sourcing.simulators --port 7801` serves Vast.ai
on 7801, RunPod on 7802 and Lambda on 7803 until interrupted."""

import argparse
import signal
import threading

from apps.sourcing.simulators import SIMULATORS, RunningSimulator


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m apps.sourcing.simulators")
    parser.add_argument("--port", type=int, default=7801, help="first port (default 7801)")
    parser.add_argument("--offers", type=int, default=60, help="machines per market")
    parser.add_argument("--boot-seconds", type=float, default=3.0)
    args = parser.parse_args()
    running = []
    for offset, (name, cls) in enumerate(SIMULATORS.items()):
        sim = RunningSimulator(
            cls(offers=args.offers, boot_seconds=args.boot_seconds), port=args.port + offset
        )
        running.append(sim)
        print(f"{name}: {sim.url} (API key {sim.api_key})", flush=True)  # noqa: T201
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    for sim in running:
        sim.stop()


if __name__ == "__main__":
    main()
