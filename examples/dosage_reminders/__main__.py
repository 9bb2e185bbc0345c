"""python -m examples.dosage_reminders [--patients N] [--districts N] [--failure-rate F] [--workers N] [--console]"""

from __future__ import annotations

import click

from examples.dosage_reminders.demo import Options, run


@click.command()
@click.option("--patients", default=3000, show_default=True, help="Patients with a dose in the next hour.")
@click.option("--districts", default=4, show_default=True, help="Districts; each is a shard.")
@click.option("--failure-rate", default=0.1, show_default=True, type=click.FloatRange(0, 1),
              help="Share of gateway requests that fail (and are retried).")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1), help="Workers (shard groups).")
@click.option("--concurrency", default=16, show_default=True, type=click.IntRange(1), help="Handlers per worker.")
@click.option("--late-share", default=0.02, show_default=True, type=click.FloatRange(0, 1),
              help="Share of doses whose alert window is about to close.")
@click.option("--database-url", envvar="FINEJOBS_DATABASE_URL", default=None,
              help="PostgreSQL URL [default: local server, else an embedded Postgres].")
@click.option("--console", is_flag=True,
              help="At the end, keep the operations console open on the demo's database (needs finejobs[web]).")
@click.option("--console-port", default=8400, show_default=True, type=click.IntRange(0, 65535),
              help="The console's port on 127.0.0.1 (0: any free port).")
def main(patients: int, districts: int, failure_rate: float, workers: int, concurrency: int, late_share: float,
         database_url: str | None, console: bool, console_port: int) -> None:
    """Send one durable dosage alert per patient dose, and report what happened to each."""
    raise SystemExit(run(Options(patients=patients, districts=districts, failure_rate=failure_rate, workers=workers,
                                 concurrency=concurrency, late_share=late_share, database_url=database_url,
                                 console=console, console_port=console_port)))


if __name__ == "__main__":
    main()
