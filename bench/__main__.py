"""python -m bench [--quick] [--json FILE]: finejobs against a raw-SQL baseline, on one database."""

from __future__ import annotations

import json
import os
from dataclasses import asdict

import click

from bench.core import markdown, run_core


@click.command()
@click.option("--database-url", envvar="FINEJOBS_DATABASE_URL", default=None,
              help="Server to benchmark on (a database is created and dropped) [default: discovered].")
@click.option("--single", "n_single", default=2000, show_default=True, help="Jobs enqueued one by one.")
@click.option("--bulk", "n_bulk", default=100_000, show_default=True, help="Jobs enqueued in bulk.")
@click.option("--process", "n_process", default=20_000, show_default=True, help="No-op jobs processed.")
@click.option("--concurrency", "concurrencies", multiple=True, type=int, default=(10, 50), show_default=True)
@click.option("--quick", is_flag=True, help="Tiny sizes: a smoke test, not a measurement.")
@click.option("--json", "json_path", default=None, help="Also write the rows as JSON here.")
def main(database_url: str | None, n_single: int, n_bulk: int, n_process: int, concurrencies: tuple[int, ...],
         quick: bool, json_path: str | None) -> None:
    """Measure enqueue and processing throughput, each as a ratio of a raw psycopg baseline."""
    if database_url is None:
        from finejobs.devdb import discover_server_url

        database_url = discover_server_url()
    if quick:
        n_single, n_bulk, n_process, concurrencies = 100, 2000, 1000, (10,)
    rows = run_core(database_url, n_single=n_single, n_bulk=n_bulk, n_process=n_process,
                    concurrencies=concurrencies)
    print(markdown(rows))
    if json_path:
        os.makedirs(os.path.dirname(json_path) or ".", exist_ok=True)
        with open(json_path, "w") as f:
            json.dump([asdict(r) | {"rate": r.rate, "ratio": r.ratio} for r in rows], f, indent=2)


if __name__ == "__main__":
    main()
