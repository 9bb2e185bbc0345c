"""Shards whose partition would take the name of a relation that exists (finejobs' own, another shard's index,
an operator's table) are refused by store.shard_add before any DDL, on a real PostgreSQL.

Each test works in a database of its own (``fresh``): shard partitions are DDL.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from finejobs import InvalidJobOptions, JobState, Queue
from finejobs.sharding import _OWN_RELATIONS, partition_name
from finejobs.store import DEFAULT_PARTITION, libpq_url


@pytest.fixture
def raw(fresh: Queue, empty_database_url: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    with psycopg.connect(libpq_url(empty_database_url), autocommit=True) as conn:
        yield conn


def relations(conn: psycopg.Connection[tuple[object, ...]]) -> set[str]:
    rows = conn.execute("SELECT relname FROM pg_class WHERE relnamespace = CAST(current_schema() AS regnamespace)")
    return {str(row[0]) for row in rows}


def where(conn: psycopg.Connection[tuple[object, ...]], job_id: int) -> str:
    row = conn.execute("SELECT tableoid::regclass::text FROM finejobs_jobs WHERE id = %s", (job_id,)).fetchone()
    assert row is not None
    return str(row[0])


def test_every_relation_finejobs_makes_under_the_partition_prefix_is_reserved(
        raw: psycopg.Connection[tuple[object, ...]]) -> None:
    """The static list in sharding.py matches what the migrations (and PostgreSQL) really create."""
    made = {name for name in relations(raw) if name.startswith("finejobs_jobs_")}
    assert made, "the migrated schema has relations named finejobs_jobs_*"
    assert made <= set(_OWN_RELATIONS), made - set(_OWN_RELATIONS)


@pytest.mark.parametrize("shard", ["other", "pkey", "claim_idx", "id_seq", "other_pkey"])
def test_shard_add_refuses_finejobs_own_names_before_any_ddl(
        fresh: Queue, raw: psycopg.Connection[tuple[object, ...]], shard: str) -> None:
    job = fresh.enqueue("ok", {}, shard=shard)  # a valid shard: its jobs live in the default partition
    before = relations(raw)
    with pytest.raises(InvalidJobOptions, match=f"shard '{shard}' cannot have a partition of its own"):
        fresh.store.shard_add(["district-1", shard])  # every name is checked before the first partition
    assert relations(raw) == before
    assert fresh.store.shard_partitions() == {}
    assert where(raw, job.id) == DEFAULT_PARTITION
    assert fresh.get(job.id).state is JobState.AVAILABLE
    assert [j.id for j in fresh.jobs(shard=shard)] == [job.id]


def test_shard_add_refuses_a_name_another_relation_of_the_database_holds(
        fresh: Queue, raw: psycopg.Connection[tuple[object, ...]]) -> None:
    raw.execute("CREATE TABLE finejobs_jobs_mine (note text)")  # an operator's table under the prefix
    raw.execute("INSERT INTO finejobs_jobs_mine VALUES ('keep me')")
    job = fresh.enqueue("ok", {}, shard="mine")
    with pytest.raises(InvalidJobOptions, match="finejobs_jobs_mine, is taken by a table"):
        fresh.store.shard_add(["mine"])
    assert raw.execute("SELECT note FROM finejobs_jobs_mine").fetchall() == [("keep me",)]
    assert where(raw, job.id) == DEFAULT_PARTITION

    # an index PostgreSQL named for another shard's partition: a_pkey's partition would be finejobs_jobs_a_pkey
    assert fresh.store.shard_add(["a"]) == ["a"]
    assert "finejobs_jobs_a_pkey" in relations(raw)
    with pytest.raises(InvalidJobOptions, match="finejobs_jobs_a_pkey, is taken by an index"):
        fresh.store.shard_add(["a_pkey"])
    assert fresh.store.shard_partitions() == {"a": partition_name("a")}


def test_shard_add_in_the_other_order_works(fresh: Queue, raw: psycopg.Connection[tuple[object, ...]]) -> None:
    # a_pkey first: PostgreSQL then names a's primary key index finejobs_jobs_a_pkey1, nothing collides
    assert fresh.store.shard_add(["a_pkey", "a"]) == ["a_pkey", "a"]
    assert set(fresh.store.shard_partitions()) == {"a_pkey", "a"}


def test_shard_add_refuses_a_single_string(fresh: Queue) -> None:
    with pytest.raises(TypeError, match="not a single string"):
        fresh.store.shard_add("district-1")
