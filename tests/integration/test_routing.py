"""Routing jobs to shards at enqueue, on a real PostgreSQL.

A job kind picks each job's shard from its payload (``shard_by``: a field's value; ``shard_by_hash``: a stable
hash of a key into numbered buckets) or puts every job in one shard (``shard=``); ``enqueue(shard=...)`` wins
over all of those. Bad routing input is refused at enqueue, naming the field, and writes nothing.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pydantic
import pytest

from finejobs import JobKind, Queue
from finejobs.errors import InvalidJobOptions, PayloadError
from finejobs.sharding import ByField, hash_bucket

DB = psycopg.Connection[tuple[Any, ...]]


def row_shards(db: DB) -> dict[int, str]:
    return dict(db.execute("SELECT id, shard FROM finejobs_jobs").fetchall())


def row_count(db: DB) -> int:
    return db.execute("SELECT count(*) FROM finejobs_jobs").fetchone()[0]  # type: ignore[index]


class Visit(pydantic.BaseModel):
    district: int
    note: str = ""


class NamedVisit(pydantic.BaseModel):
    district: str


class Address(pydantic.BaseModel):
    street: str
    district: int


class HomeVisit(pydantic.BaseModel):
    address: Address


class MaybeVisit(pydantic.BaseModel):
    district: int | None = None


class Dose(pydantic.BaseModel):
    patient_id: int | str
    dose: str = "08:00"


@pytest.fixture
def by_district(queue: Queue) -> JobKind[Any, Any]:
    @queue.job("visit", shard_by="district")
    def visit(payload: Visit) -> None:
        pass

    return visit


@pytest.fixture
def by_patient(queue: Queue) -> JobKind[Any, Any]:
    @queue.job("dose", shard_by_hash=("patient_id", 16))
    def dose(payload: Dose) -> None:
        pass

    return dose


# ---------------------------------------------------------------- shard_by: a field's value


def test_shard_by_field_routes_each_job_to_its_district(queue: Queue, by_district: JobKind[Any, Any],
                                                        db: DB) -> None:
    job = by_district.enqueue(Visit(district=3))
    assert job.shard == "district-3"
    other = queue.enqueue("visit", {"district": 11})
    assert other.shard == "district-11"
    assert row_shards(db) == {job.id: "district-3", other.id: "district-11"}
    assert queue.get(job.id).shard == "district-3"


def test_shard_by_field_in_bulk_routes_each_item_on_its_own(by_district: JobKind[Any, Any], db: DB) -> None:
    jobs = by_district.enqueue_many([Visit(district=d) for d in (1, 2, 1, 4)])
    assert [j.shard for j in jobs] == ["district-1", "district-2", "district-1", "district-4"]
    assert row_shards(db) == {j.id: j.shard for j in jobs}


def test_shard_by_nested_field(queue: Queue, db: DB) -> None:
    @queue.job("home-visit", shard_by=ByField("address.district"))
    def home_visit(payload: HomeVisit) -> None:
        pass

    job = home_visit.enqueue(HomeVisit(address=Address(street="Elm", district=12)))
    assert job.shard == "district-12"
    assert row_shards(db) == {job.id: "district-12"}


def test_shard_by_field_uses_string_values_as_given(queue: Queue, db: DB) -> None:
    @queue.job("named-visit", shard_by="district")
    def named_visit(payload: NamedVisit) -> None:
        pass

    jobs = [named_visit.enqueue(NamedVisit(district=d)) for d in ("north.7", "03", "a_b")]
    assert [j.shard for j in jobs] == ["district-north.7", "district-03", "district-a_b"]  # no int(), no rewrite
    assert row_shards(db) == {j.id: j.shard for j in jobs}


def test_explicit_shard_at_enqueue_wins_over_the_rule(queue: Queue, by_district: JobKind[Any, Any],
                                                      db: DB) -> None:
    job = by_district.enqueue(Visit(district=3), shard="special")
    many = by_district.enqueue_many([Visit(district=1), Visit(district=2)], shard="special")
    by_name = queue.enqueue("visit", {"district": 5}, shard="special")
    assert {j.shard for j in [job, *many, by_name]} == {"special"}
    assert set(row_shards(db).values()) == {"special"}


def test_fixed_shard_puts_every_job_of_the_kind_there(queue: Queue, db: DB) -> None:
    @queue.job("alert", shard="alerts")
    def alert(payload: dict[str, Any]) -> None:
        pass

    one = alert.enqueue({"district": 3})
    many = alert.enqueue_many([{"n": i} for i in range(3)])
    assert [j.shard for j in [one, *many]] == ["alerts"] * 4
    assert set(row_shards(db).values()) == {"alerts"}
    assert alert.enqueue({}, shard="special").shard == "special"  # an explicit shard still wins


def test_a_kind_without_routing_uses_the_default_shard(queue: Queue, db: DB) -> None:
    @queue.job("plain")
    def plain(payload: dict[str, Any]) -> None:
        pass

    assert plain.enqueue({"district": 3}).shard == "default"
    assert set(row_shards(db).values()) == {"default"}


# ---------------------------------------------------------------- shard_by_hash: stable buckets


def test_shard_by_hash_is_the_hash_bucket_of_the_key(by_patient: JobKind[Any, Any], db: DB) -> None:
    ids: list[int | str] = [0, 1, 2, 42, 999, 123456789, "p-1", "p-42", "x"]
    jobs = [by_patient.enqueue(Dose(patient_id=pid)) for pid in ids]
    assert [j.shard for j in jobs] == [f"patient-{hash_bucket(pid, 16):02d}" for pid in ids]
    assert row_shards(db) == {j.id: j.shard for j in jobs}


def test_shard_by_hash_is_stable(by_patient: JobKind[Any, Any], db: DB) -> None:
    # Hard-coded: blake2b of str(key); these must never change, or jobs already routed would move.
    expected = {1001: "patient-13", "p-42": "patient-07", 7: "patient-02"}
    jobs = {pid: by_patient.enqueue({"patient_id": pid}) for pid in expected}
    assert {pid: j.shard for pid, j in jobs.items()} == expected
    assert by_patient.enqueue({"patient_id": "7"}).shard == "patient-02"  # an int shares its string's bucket
    assert sorted(row_shards(db).values()) == sorted([*expected.values(), "patient-02"])


def test_shard_by_hash_spreads_keys_over_every_bucket(by_patient: JobKind[Any, Any], db: DB) -> None:
    jobs = by_patient.enqueue_many([Dose(patient_id=pid) for pid in range(1000)])
    assert len(jobs) == 1000
    counts = dict(db.execute("SELECT shard, count(*) FROM finejobs_jobs GROUP BY shard").fetchall())
    assert sorted(counts) == [f"patient-{b:02d}" for b in range(16)]
    assert sum(counts.values()) == 1000
    assert min(counts.values()) >= 30 and max(counts.values()) <= 100, counts  # about 62 each


# ---------------------------------------------------------------- bad routing input: refused, nothing written


def test_missing_routing_field_is_refused_naming_it(queue: Queue, db: DB) -> None:
    @queue.job("maybe-visit", shard_by="district")
    def maybe_visit(payload: MaybeVisit) -> None:
        pass

    for payload in (MaybeVisit(), MaybeVisit(district=None), {}):
        with pytest.raises(PayloadError, match="district") as caught:
            maybe_visit.enqueue(payload)
        assert caught.value.fields == ["district"]
        assert caught.value.kind == "maybe-visit"
    assert row_count(db) == 0


def test_value_making_an_invalid_shard_name_is_refused_naming_the_field(queue: Queue, db: DB) -> None:
    @queue.job("named-visit", shard_by="district")
    def named_visit(payload: NamedVisit) -> None:
        pass

    for bad in ("North Side", "North", "x" * 70, "a/b", ""):
        with pytest.raises(PayloadError, match="district") as caught:
            named_visit.enqueue(NamedVisit(district=bad))
        assert caught.value.fields == ["district"], bad
    assert row_count(db) == 0


def test_bool_hash_key_is_refused_naming_the_field(queue: Queue, db: DB) -> None:
    @queue.job("raw-dose", shard_by_hash=("patient_id", 16))
    def raw_dose(payload: dict[str, Any]) -> None:
        pass

    for bad in (True, False, None, 1.5, [1], {"id": 1}):
        with pytest.raises(PayloadError, match="patient_id") as caught:
            raw_dose.enqueue({"patient_id": bad})
        assert caught.value.fields == ["patient_id"], bad
    with pytest.raises(PayloadError, match="patient_id"):
        raw_dose.enqueue({"other": 1})
    assert row_count(db) == 0


def test_one_bad_item_in_bulk_writes_nothing(queue: Queue, by_district: JobKind[Any, Any],
                                             by_patient: JobKind[Any, Any], db: DB) -> None:
    items: list[Any] = [{"district": d} for d in range(50)]
    items.insert(25, {"note": "no district"})
    with pytest.raises(PayloadError, match="district") as caught:
        by_district.enqueue_many(items)
    assert caught.value.fields == ["district"]
    with pytest.raises(PayloadError, match="patient_id") as caught:
        by_patient.enqueue_many([*({"patient_id": i} for i in range(50)), {"patient_id": ""}])  # empty key
    assert caught.value.fields == ["patient_id"]
    with pytest.raises(PayloadError, match="district"):
        queue.enqueue_many("visit", [Visit(district=1), {"district": None}])
    assert row_count(db) == 0


# ---------------------------------------------------------------- declaring routing


def test_fixed_shard_and_a_rule_together_are_refused(queue: Queue) -> None:
    with pytest.raises(ValueError, match="shard"):
        queue.job("both", shard="alerts", shard_by="district")
    with pytest.raises(ValueError, match="shard"):
        queue.job("both", shard="alerts", shard_by_hash=("patient_id", 16))
    assert "both" not in queue.kinds


def test_shard_by_and_shard_by_hash_together_are_refused(queue: Queue) -> None:
    with pytest.raises(ValueError, match="shard_by"):
        queue.job("both", shard_by="district", shard_by_hash=("patient_id", 16))
    assert "both" not in queue.kinds


def test_invalid_fixed_shard_is_refused(queue: Queue) -> None:
    for bad in ("Alerts", "north side", "", "-x", "x" * 64, "a;drop"):
        with pytest.raises(InvalidJobOptions, match="invalid shard name"):
            queue.job("bad", shard=bad)
    assert "bad" not in queue.kinds
