"""python -m examples.bulk_export [--resources N] [--workers N] [--concurrency N] [--out DIR]"""

from __future__ import annotations

import click

from examples.bulk_export.demo import Options, run


@click.command()
@click.option("--resources", default=20_000, show_default=True, type=click.IntRange(0),
              help="Fake FHIR resources to export.")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1),
              help="Workers (threads of this process).")
@click.option("--concurrency", default=4, show_default=True, type=click.IntRange(1), help="Handlers per worker.")
@click.option("--out", default=None, help="Directory for the NDJSON files [default: a temporary one, removed].")
@click.option("--database-url", envvar="FINEJOBS_DATABASE_URL", default=None,
              help="PostgreSQL URL [default: local server, else an embedded Postgres].")
def main(resources: int, workers: int, concurrency: int, out: str | None, database_url: str | None) -> None:
    """Export every fake resource as NDJSON files through a step pipeline, and report what was written."""
    raise SystemExit(run(Options(resources=resources, workers=workers, concurrency=concurrency, out=out,
                                 database_url=database_url)))


if __name__ == "__main__":
    main()
