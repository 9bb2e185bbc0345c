"""Migrations and the schema they make, on a real PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

import finejobs
from finejobs.store import available_migrations, jobs_table, libpq_url, migrations_table, normalize_url
from finejobs.store.tables import chunks_table, pipeline_steps_table, pipelines_table

LATEST = available_migrations()[-1].version


@pytest.fixture
def empty_queue(empty_database_url: str) -> Iterator[finejobs.Queue]:
    queue = finejobs.Queue(empty_database_url)
    yield queue
    queue.close()


@pytest.fixture
def migrated_engine(empty_queue: finejobs.Queue, empty_database_url: str) -> Iterator[sa.Engine]:
    empty_queue.migrate()
    engine = sa.create_engine(normalize_url(empty_database_url))
    yield engine
    engine.dispose()


def recorded_versions(url: str) -> list[int]:
    with psycopg.connect(libpq_url(url)) as conn:
        return [r[0] for r in conn.execute("SELECT version FROM finejobs_migrations ORDER BY version")]


# ---------------------------------------------------------------- the runner


def test_migrations_are_numbered_from_one_without_gaps() -> None:
    versions = [m.version for m in available_migrations()]
    assert versions == list(range(1, len(versions) + 1))


def test_migrate_applies_everything_once(empty_queue: finejobs.Queue, empty_database_url: str) -> None:
    assert empty_queue.migrate() == [m.version for m in available_migrations()]
    assert empty_queue.migrate() == []
    assert recorded_versions(empty_database_url) == [m.version for m in available_migrations()]


def test_migration_names_are_recorded(empty_queue: finejobs.Queue, empty_database_url: str) -> None:
    empty_queue.migrate()
    with psycopg.connect(libpq_url(empty_database_url)) as conn:
        rows = conn.execute("SELECT version, name, applied_at FROM finejobs_migrations ORDER BY version").fetchall()
    assert [(v, n) for v, n, _ in rows] == [(m.version, m.name) for m in available_migrations()]
    assert all(at is not None for _, _, at in rows)


def test_schema_version(empty_queue: finejobs.Queue) -> None:
    assert empty_queue.store.schema_version() is None
    empty_queue.migrate()
    assert empty_queue.store.schema_version() == LATEST


def test_concurrent_migrations_in_threads_both_succeed(empty_database_url: str) -> None:
    barrier = threading.Barrier(4)
    results: list[Any] = []

    def migrate() -> None:
        queue = finejobs.Queue(empty_database_url)
        try:
            barrier.wait()
            results.append(queue.migrate())
        except Exception as exc:  # reported below
            results.append(exc)
        finally:
            queue.close()

    threads = [threading.Thread(target=migrate) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not [r for r in results if isinstance(r, Exception)], results
    assert sorted(results, key=len) == [[], [], [], [m.version for m in available_migrations()]]
    assert recorded_versions(empty_database_url) == [m.version for m in available_migrations()]


def test_concurrent_migrations_in_processes_both_succeed(empty_database_url: str) -> None:
    code = "import sys, finejobs; print(finejobs.Queue(sys.argv[1]).migrate())"
    procs = [
        subprocess.Popen([sys.executable, "-c", code, empty_database_url], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert sorted(out.strip() for out, _ in outputs) == sorted(
        ["[]", str([m.version for m in available_migrations()])])
    assert recorded_versions(empty_database_url) == [m.version for m in available_migrations()]


# ---------------------------------------------------------------- check_schema


def test_check_schema_refuses_an_unmigrated_database(empty_queue: finejobs.Queue) -> None:
    with pytest.raises(finejobs.SchemaError, match="not migrated"):
        empty_queue.store.check_schema()


def test_check_schema_refuses_an_empty_migrations_table(empty_queue: finejobs.Queue,
                                                        empty_database_url: str) -> None:
    with psycopg.connect(libpq_url(empty_database_url), autocommit=True) as conn:
        conn.execute("CREATE TABLE finejobs_migrations (version integer PRIMARY KEY, name text NOT NULL, "
                     "applied_at timestamptz NOT NULL DEFAULT now())")
    with pytest.raises(finejobs.SchemaError, match="not migrated"):
        empty_queue.store.check_schema()


def test_check_schema_accepts_a_migrated_database(empty_queue: finejobs.Queue) -> None:
    empty_queue.migrate()
    empty_queue.store.check_schema()


def test_check_schema_refuses_a_newer_schema(empty_queue: finejobs.Queue, empty_database_url: str) -> None:
    empty_queue.migrate()
    with psycopg.connect(libpq_url(empty_database_url), autocommit=True) as conn:
        conn.execute("INSERT INTO finejobs_migrations (version, name) VALUES (%s, 'from_the_future')",
                     (LATEST + 1,))
    with pytest.raises(finejobs.SchemaError, match="newer"):
        empty_queue.store.check_schema()


def test_using_an_unmigrated_database_raises_schema_error(empty_queue: finejobs.Queue) -> None:
    @empty_queue.job("k")
    def k(payload):  # type: ignore[no-untyped-def]
        pass

    with pytest.raises(finejobs.SchemaError, match="migrate"):
        k.enqueue({})


# ---------------------------------------------------------------- tables match the declarations


def compiled(type_: Any) -> str:
    return str(type_.compile(dialect=pg.dialect()))


DECLARED = [jobs_table, migrations_table, pipelines_table, pipeline_steps_table, chunks_table]


@pytest.mark.parametrize("table", DECLARED, ids=lambda t: t.name)
def test_declared_columns_match_the_database(migrated_engine: sa.Engine, table: sa.Table) -> None:
    reflected = sa.inspect(migrated_engine).get_columns(table.name)
    actual = [(c["name"], compiled(c["type"]), c["nullable"]) for c in reflected]
    declared = [(c.name, compiled(c.type), c.nullable) for c in table.columns]
    assert actual == declared


@pytest.mark.parametrize("table", DECLARED, ids=lambda t: t.name)
def test_declared_primary_key_matches_the_database(migrated_engine: sa.Engine, table: sa.Table) -> None:
    pk = sa.inspect(migrated_engine).get_pk_constraint(table.name)
    assert pk["constrained_columns"] == [c.name for c in table.primary_key.columns]


def test_declared_server_defaults_exist_in_the_database(migrated_engine: sa.Engine) -> None:
    reflected = {c["name"]: c["default"] for c in sa.inspect(migrated_engine).get_columns("finejobs_jobs")}
    for column in jobs_table.columns:
        if column.server_default is not None and column.name != "id":
            assert reflected[column.name] is not None, column.name


def index_definitions(engine: sa.Engine) -> dict[str, str]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'finejobs_jobs'"))
        return {name: definition for name, definition in rows}


def test_claim_index_is_partial_on_available_and_ordered_as_the_claim(migrated_engine: sa.Engine) -> None:
    definition = index_definitions(migrated_engine)["finejobs_jobs_claim_idx"]
    assert "UNIQUE" not in definition
    assert "priority DESC, run_at, id)" in definition
    assert definition.endswith("WHERE (state = 'available'::text)")


def test_unique_key_index_is_partial_unique_on_unfinished_states_per_shard(migrated_engine: sa.Engine) -> None:
    definition = index_definitions(migrated_engine)["finejobs_jobs_unique_key_idx"]
    assert definition.startswith("CREATE UNIQUE INDEX")
    assert "(shard, unique_key)" in definition
    where = definition.split(" WHERE ", 1)[1]
    assert "unique_key IS NOT NULL" in where
    assert "'available'::text" in where and "'running'::text" in where
    for final in ("succeeded", "failed", "expired", "cancelled"):
        assert final not in where


# ---------------------------------------------------------------- constraints as a last line of defence


def raw_insert(url: str, **values: Any) -> None:
    row = {"kind": "k", **values}
    columns = ", ".join(row)
    marks = ", ".join(["%s"] * len(row))
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute(f"INSERT INTO finejobs_jobs ({columns}) VALUES ({marks})", list(row.values()))


@pytest.mark.parametrize("shard", ["Bad", "x'; drop table finejobs_jobs;--", "", "a" * 64])
def test_database_refuses_bad_shard_names(migrated_engine: sa.Engine, empty_database_url: str,
                                          shard: str) -> None:
    with pytest.raises(psycopg.errors.CheckViolation):
        raw_insert(empty_database_url, shard=shard)


def test_database_refuses_unknown_states(migrated_engine: sa.Engine, empty_database_url: str) -> None:
    with pytest.raises(psycopg.errors.CheckViolation):
        raw_insert(empty_database_url, state="scheduled")


def test_database_refuses_a_lease_outside_running(migrated_engine: sa.Engine, empty_database_url: str) -> None:
    with pytest.raises(psycopg.errors.CheckViolation):
        raw_insert(empty_database_url, state="available", lease_owner="w1")
    with pytest.raises(psycopg.errors.CheckViolation):
        raw_insert(empty_database_url, state="running")


def test_database_refuses_attempts_beyond_max(migrated_engine: sa.Engine, empty_database_url: str) -> None:
    with pytest.raises(psycopg.errors.CheckViolation):
        raw_insert(empty_database_url, attempt=4, max_attempts=3)
