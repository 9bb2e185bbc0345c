"""python -m examples.system_daemon [--seconds N] [--service-url URL] [--time-scale F] [--database-url URL]

Run one System Daemon: a finejobs worker for the six maintenance tasks and the external service, logging to
stdout. Start several: each tick still runs once, and the service is called one call at a time.
"""

from __future__ import annotations

import logging
import os
import sys
import threading

import click

from examples.system_daemon.app import create_schema, declare, queue

DEMO_DATABASE = "finejobs_system_daemon"


def resolve_database_url(explicit: str | None) -> str:
    """--database-url, else FINEJOBS_DATABASE_URL, else a database of its own on the local or embedded server."""
    url = explicit or os.environ.get("FINEJOBS_DATABASE_URL")
    if url:
        return url
    import psycopg

    from finejobs import devdb

    server = devdb.discover_server_url()
    try:
        return devdb.create_database(server, name=DEMO_DATABASE, exist_ok=True)
    except psycopg.errors.DuplicateDatabase:  # another daemon created it just now
        return devdb.database_url(server, DEMO_DATABASE)


@click.command()
@click.option("--seconds", type=click.FloatRange(0, min_open=True), default=None,
              help="Stop after this long [default: run until SIGTERM or Ctrl-C].")
@click.option("--service-url", default=None, metavar="URL",
              help="The external service's endpoint [default: the one in services.json].")
@click.option("--time-scale", type=click.FloatRange(0, 1, min_open=True), default=1.0, show_default=True,
              help="Multiply the plan's intervals and the service's timeout by this (0.01: 300 s become 3 s); the "
                   "daily times stay.")
@click.option("--database-url", default=None, metavar="URL",
              help="PostgreSQL URL [default: $FINEJOBS_DATABASE_URL, else the local server, else an embedded one].")
@click.option("--daemon-id", default=None, metavar="ID", help="This daemon's worker id [default: HOST:PID:random].")
@click.option("--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING"]), default="INFO", show_default=True)
def main(seconds: float | None, service_url: str | None, time_scale: float, database_url: str | None,
         daemon_id: str | None, log_level: str) -> None:
    """Run the System Daemon until stopped (or for --seconds)."""
    logging.basicConfig(level=log_level, stream=sys.stdout, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    queue.configure(url=resolve_database_url(database_url), pool_size=8)
    queue.migrate()
    create_schema()
    declare(queue, time_scale=time_scale, service_url=service_url)
    tick = min(1.0, max(0.05, 5 * time_scale))  # how often to look for due schedules and jobs
    daemon = queue.worker(concurrency=4, poll_interval=tick, schedule_interval=tick, worker_id=daemon_id)
    if seconds is not None:
        timer = threading.Timer(seconds, lambda: daemon.stop(wait=False))
        timer.daemon = True
        timer.start()
    try:
        daemon.run()
    finally:
        queue.close()


if __name__ == "__main__":
    main()
