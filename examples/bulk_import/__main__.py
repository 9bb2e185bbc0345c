"""python -m examples.bulk_import [--claims N] [--csv PATH] [--workers N] [--concurrency N]"""

from __future__ import annotations

from pathlib import Path

import click

from examples.bulk_import.demo import Options, run


@click.command()
@click.option("--claims", default=1_000_000, show_default=True, type=click.IntRange(1, 50_000_000),
              help="Claims in the CSV file (written if missing), one review job each.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The claims file [default: <tmp>/finejobs-bulk-import/claims-N.csv].")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 16), help="Worker processes.")
@click.option("--concurrency", default=32, show_default=True, type=click.IntRange(1, 200),
              help="Handlers per worker process.")
@click.option("--database-url", envvar="FINEJOBS_DATABASE_URL", default=None,
              help="PostgreSQL URL [default: local server, else an embedded Postgres].")
def main(claims: int, csv_path: Path | None, workers: int, concurrency: int, database_url: str | None) -> None:
    """Import a CSV of insurance claims as one job per claim (COPY, in a group), review them with a bounded
    worker, and report the latency of another process's queries meanwhile."""
    raise SystemExit(run(Options(claims=claims, csv_path=csv_path, workers=workers, concurrency=concurrency,
                                 database_url=database_url)))


if __name__ == "__main__":
    main()
