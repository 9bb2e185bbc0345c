"""Citus itself: detection, plan caching, what `finejobs migrate` distributes (idempotently, converting a plain
table in place), that hot statements are router queries, and the refusals of what Citus does its own way."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

import finejobs
from finejobs import ConfigurationError, Queue, devdb
from finejobs.store import available_migrations, citus, hot, libpq_url
from finejobs.testing import FakeClock
from tests.acceptance.helpers import run_cli


def _placement(url: str) -> dict[str, tuple[str, str | None]]:
    with psycopg.connect(libpq_url(url)) as conn:
        rows = conn.execute("SELECT table_name::text, citus_table_type, distribution_column FROM citus_tables "
                            "WHERE table_name::text LIKE 'finejobs%'").fetchall()
    return {name: (kind, column) for name, kind, column in rows}


def test_migrate_distributes_the_job_table_by_shard_and_again_changes_nothing(empty_database_url: str) -> None:
    q = Queue(empty_database_url)
    assert q.store.citus
    assert q.migrate()
    placed = _placement(empty_database_url)
    assert placed["finejobs_jobs"] == ("distributed", "shard")
    assert placed["finejobs_jobs_other"] == ("distributed", "shard")  # the default partition goes with it
    assert set(placed) == {"finejobs_jobs", "finejobs_jobs_other"}, "every other table stays on the coordinator"
    assert q.migrate() == []
    assert _placement(empty_database_url) == placed
    q.close()


def test_an_existing_plain_job_table_is_converted_in_place(empty_database_url: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    q = Queue(empty_database_url)

    @q.job("ok")
    def ok(payload: dict[str, Any]) -> None:
        pass

    with monkeypatch.context() as m:  # a database migrated before the citus extension was there
        m.setattr(citus, "distribute", lambda conn: [])
        q.migrate()
    assert "finejobs_jobs" not in _placement(empty_database_url)
    made = ok.enqueue_many([finejobs.JobSpec({"n": i}, shard=f"s{i % 4}", unique_key=f"k{i}") for i in range(40)])
    assert q.migrate() == []  # no new migration, but the table is distributed now
    assert _placement(empty_database_url)["finejobs_jobs"] == ("distributed", "shard")
    assert sorted(j.id for j in q.jobs(limit=100)) == sorted(j.id for j in made)
    with psycopg.connect(libpq_url(empty_database_url)) as conn:  # the coordinator's local copy is gone
        row = conn.execute("SELECT count(*) FROM ONLY finejobs_jobs_other").fetchone()
        local = conn.execute("SELECT count(*) FROM pg_class c WHERE c.relname = 'finejobs_jobs_other' "
                             "AND pg_relation_size(c.oid) > 0").fetchone()
    assert row == (40,) and local == (0,)
    again = ok.enqueue({"n": 1}, shard="s1", unique_key="k1")
    assert again.id == made[1].id, "unique keys still hold after the conversion"
    q.close()


def test_plan_caching_is_chosen_per_engine(queue: Queue, server_url: str) -> None:
    with queue.store.engine.connect() as conn:
        assert conn.execute(sa.text("SHOW plan_cache_mode")).scalar() == "auto"
    plain = devdb.LOCAL_SERVER_URL
    if not devdb.server_answers(plain):
        pytest.skip("no plain PostgreSQL on 127.0.0.1:5432 to compare with")
    other = Queue(plain)
    try:
        assert not other.store.citus
        with other.store.engine.connect() as conn:
            assert conn.execute(sa.text("SHOW plan_cache_mode")).scalar() == "force_generic_plan"
    finally:
        other.close()


def test_claims_of_one_shard_are_router_queries(queue: Queue, clock: FakeClock) -> None:
    params = {"owner": "w", "shard": "district-1", "kinds": ["a"], "limit": 5, "now": clock(),
              "lease_deadline": clock() + timedelta(seconds=30)}
    with queue.store.engine.begin() as conn:
        plan = "\n".join(r[0] for r in conn.execute(sa.text("EXPLAIN " + hot._CLAIM.text), params))
        conn.rollback()
    assert "Task Count: 1" in plan, plan


def test_partitions_and_moves_of_shards_are_refused_with_what_to_do_instead(queue: Queue) -> None:
    with pytest.raises(ConfigurationError, match="isolate_tenant_to_new_shard"):
        queue.store.shard_add(["district-1"])
    with pytest.raises(ConfigurationError, match="not supported on Citus"):
        queue.store.shard_drop("district-1")
    with pytest.raises(ConfigurationError, match="citus_move_shard_placement"):
        queue.store.shard_move_stage(shard="district-1", target="b", limit=10, now=queue.clock())


def test_migrations_are_split_into_their_statements() -> None:
    script = ("-- a comment; with a semicolon\nCREATE TABLE t (a text CHECK (a ~ '^x;y$'), \"b;\" int);\n"
              "INSERT INTO t VALUES ('it''s; fine', 1); -- trailing\n\nSELECT 1")
    assert citus.statements(script) == ["CREATE TABLE t (a text CHECK (a ~ '^x;y$'), \"b;\" int)",
                                        "INSERT INTO t VALUES ('it''s; fine', 1)", "SELECT 1"]
    for migration in available_migrations():
        parts = citus.statements(migration.sql)
        assert parts and all(p and not p.startswith("--") for p in parts), migration.name


def test_shards_add_is_refused_by_the_cli_with_a_clear_error(clean_db: str) -> None:
    result = run_cli("shards", "add", "district-1", url=clean_db)
    assert result.code != 0
    assert "not supported on Citus" in result.stderr and "Traceback" not in result.stderr
