"""python -m bench.crash_worker: one worker process of the crash suite (``bench.crash``).

It runs ``bench.crash_app:queue`` exactly as ``finejobs worker --app bench.crash_app:queue`` would
(same Worker, same signal handling, logs on stdout), with the two knobs the CLI does not offer: a
short lease and a short maintenance interval, so that the jobs of a killed worker come back in
seconds rather than after the default 30 s lease.
"""

from __future__ import annotations

import logging
import sys
from datetime import timedelta

import click

from bench.crash_app import queue

LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"  # as finejobs worker logs


@click.command()
@click.option("--concurrency", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--poll-interval", type=float, default=0.05, show_default=True)
@click.option("--lease", "lease_seconds", type=float, default=2.0, show_default=True)
@click.option("--maintenance-interval", type=float, default=0.2, show_default=True)
@click.option("--shutdown-grace", type=float, default=10.0, show_default=True)
def main(concurrency: int, poll_interval: float, lease_seconds: float, maintenance_interval: float,
         shutdown_grace: float) -> None:
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format=LOG_FORMAT)
    try:
        queue.worker(concurrency=concurrency, poll_interval=poll_interval, lease=timedelta(seconds=lease_seconds),
                     maintenance_interval=maintenance_interval, shutdown_grace=shutdown_grace).run()
    finally:
        queue.close()


if __name__ == "__main__":
    main()
