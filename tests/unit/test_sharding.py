"""finejobs.sharding: shard patterns, stable hashing, routing rules, partition names and the shard map.
Pure code, no database."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from finejobs.errors import ConfigurationError, InvalidJobOptions, PayloadError
from finejobs.sharding import (
    DEFAULT_SHARD,
    SHARD_NAME_PATTERN,
    ByField,
    ByHash,
    ShardMap,
    ShardRule,
    hash_bucket,
    is_glob,
    match_shards,
    partition_name,
    rule_from_options,
    validate_partition_shard,
    validate_shard_name,
    validate_shard_pattern,
)

PROPS = settings(max_examples=200, deadline=None)
shard_names = st.from_regex(SHARD_NAME_PATTERN, fullmatch=True)
URL_A = "postgresql://127.0.0.1/fj_a"
URL_B = "postgresql://127.0.0.1/fj_b"


def district_map() -> ShardMap:
    return ShardMap(
        databases={"a": URL_A, "b": URL_B},
        shards={"a": ["district-[1-9]", "district-10"], "b": ["district-1[1-9]", "district-20"]},
        default="a",
    )


# --- names and patterns -------------------------------------------------------------------------------------


def test_existing_names_are_unchanged() -> None:
    assert DEFAULT_SHARD == "default"
    assert validate_shard_name("district-3") == "district-3"
    with pytest.raises(InvalidJobOptions, match="invalid shard name"):
        validate_shard_name("District-3")


@pytest.mark.parametrize(
    "pattern",
    ["district-3", "default", "district-*", "district-1[1-9]", "*", "d?", "[!a]x", "a.b_c-*", "[a-c_.-]*", "a" * 63],
)
def test_valid_patterns_are_returned(pattern: str) -> None:
    assert validate_shard_pattern(pattern) == pattern


@pytest.mark.parametrize(
    "pattern",
    ["", "District-*", "district-[", "district-]", "a b*", "[]", "[!]", "[^a]*", "dis/trict*", "a" * 64, "-a", "é*"],
)
def test_invalid_patterns_are_refused_naming_the_pattern(pattern: str) -> None:
    with pytest.raises(InvalidJobOptions, match="invalid shard pattern") as caught:
        validate_shard_pattern(pattern)
    assert repr(pattern) in str(caught.value)


@pytest.mark.parametrize("pattern", [None, 3, b"district-3", ["district-3"]])
def test_non_string_patterns_are_refused(pattern: object) -> None:
    with pytest.raises(InvalidJobOptions, match="invalid shard pattern"):
        validate_shard_pattern(pattern)


def test_is_glob() -> None:
    assert not is_glob("district-3")
    assert is_glob("district-*") and is_glob("district-?") and is_glob("district-1[1-9]")


def test_match_shards() -> None:
    shards = ["district-12", "district-3", "district-11", "other", "district-3", "district-20"]
    assert match_shards(["district-1[1-9]"], shards) == ["district-11", "district-12"]
    assert match_shards(["district-*"], shards) == ["district-11", "district-12", "district-20", "district-3"]
    assert match_shards(["other", "district-?"], shards) == ["district-3", "other"]
    assert match_shards(["district-3", "district-[0-9]"], shards) == ["district-3"]  # unique
    assert match_shards(["missing"], shards) == []
    assert match_shards([], shards) == []


def test_match_shards_checks_its_patterns() -> None:
    with pytest.raises(InvalidJobOptions, match="'Bad'"):
        match_shards(["district-*", "Bad"], ["district-1"])
    with pytest.raises(TypeError, match="single string"):
        match_shards("district-*", ["district-1"])


# --- stable hashing -----------------------------------------------------------------------------------------

# Computed once with hash_bucket itself; they must never change (jobs already routed would move).
HASH_VECTORS = [
    (0, 16, 5),
    (1, 16, 6),
    (42, 16, 10),
    (12345, 100, 49),
    (-5, 3, 1),
    (2**63, 10000, 5250),
    ("patient-1", 16, 12),
    ("abc", 1000, 721),
    ("Zaragoza ñandú", 10, 3),
    ("東京", 7, 4),
]


@pytest.mark.parametrize(("key", "buckets", "bucket"), HASH_VECTORS)
def test_hash_bucket_vectors(key: str | int, buckets: int, bucket: int) -> None:
    assert hash_bucket(key, buckets) == bucket


@PROPS
@given(st.integers(), st.integers(1, 100_000))
def test_hash_bucket_is_in_range_and_an_int_shares_its_strings_bucket(key: int, buckets: int) -> None:
    assert 0 <= hash_bucket(key, buckets) < buckets
    assert hash_bucket(key, buckets) == hash_bucket(str(key), buckets)


@PROPS
@given(st.text(), st.integers(1, 100_000))
def test_hash_bucket_of_any_string_is_in_range(key: str, buckets: int) -> None:
    assert 0 <= hash_bucket(key, buckets) < buckets


def test_hash_bucket_with_one_bucket_is_zero() -> None:
    assert hash_bucket("anything", 1) == 0


def test_hash_bucket_refuses_bools_and_bad_bucket_counts() -> None:
    with pytest.raises(ValueError, match="bool"):
        hash_bucket(True, 16)
    with pytest.raises(TypeError, match="float"):
        hash_bucket(1.5, 16)  # type: ignore[arg-type]
    for buckets in (0, -1, True, 2.0):
        with pytest.raises(ValueError, match="buckets"):
            hash_bucket("key", buckets)  # type: ignore[arg-type]


# --- routing rules ------------------------------------------------------------------------------------------


def test_by_field() -> None:
    assert ByField("district").shard_for({"district": 3}, kind="k") == "district-3"
    assert ByField("district").shard_for({"district": "north.7"}, kind="k") == "district-north.7"
    assert ByField("address.district").shard_for({"address": {"district": 12}}, kind="k") == "district-12"
    assert ByField("home_district").shard_for({"home_district": 1}, kind="k") == "home-district-1"
    assert ByField("district", prefix="d").shard_for({"district": 1}, kind="k") == "d-1"
    assert ByField("district").prefix == "district"
    assert ByField("district").all_shards() is None


def test_by_field_is_frozen_and_a_shard_rule() -> None:
    rule = ByField("district")
    assert isinstance(rule, ShardRule)
    with pytest.raises(dataclasses.FrozenInstanceError):
        rule.field = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({}, "missing"),
        ({"address": 3}, "missing"),
        ({"address": {}}, "missing"),
        ({"address": {"district": None}}, "null"),
        ({"address": {"district": True}}, "not bool"),
        ({"address": {"district": 1.5}}, "not float"),
        ({"address": {"district": [1]}}, "not list"),
        ({"address": {"district": ""}}, "empty"),
        ({"address": {"district": "North"}}, "not a valid shard name"),
        ({"address": {"district": "x" * 60}}, "not a valid shard name"),
    ],
)
def test_by_field_refuses_bad_values_naming_the_field(payload: dict[str, Any], reason: str) -> None:
    with pytest.raises(PayloadError, match=reason) as caught:
        ByField("address.district").shard_for(payload, kind="visit")
    assert caught.value.fields == ["address.district"]
    assert caught.value.kind == "visit"
    assert "address.district: " in str(caught.value)


@pytest.mark.parametrize(
    ("field", "prefix", "match", "named"),
    [("", None, "shard field", "''"), ("a..b", None, "shard field", "'a..b'"), (".a", None, "shard field", "'.a'"),
     (3, None, "shard field", "3"), ("District", None, "prefix", "'District'"), ("district", "Bad", "prefix", "'Bad'"),
     ("district", "x" * 62, "prefix", "'xxx")],
)
def test_by_field_refuses_bad_fields_and_prefixes(field: Any, prefix: str | None, match: str, named: str) -> None:
    with pytest.raises(ValueError, match=match) as caught:
        ByField(field, prefix)
    assert named in str(caught.value)


def test_by_hash_names_and_widths() -> None:
    rule = ByHash("patient_id", 16)
    assert rule.prefix == "patient"
    assert rule.all_shards() == [f"patient-{n:02d}" for n in range(16)]
    assert rule.shard_for({"patient_id": 0}, kind="k") == "patient-05"  # hash_bucket(0, 16) == 5
    assert rule.shard_for({"patient_id": "0"}, kind="k") == "patient-05"
    assert ByHash("x", 1).all_shards() == ["x-0"]
    assert ByHash("x", 10).all_shards() == [f"x-{n}" for n in range(10)]
    hundred = ByHash("x", 100).all_shards()
    assert hundred is not None and hundred[0] == "x-00" and hundred[-1] == "x-99"
    thousands = ByHash("x", 10_000).all_shards()
    assert thousands is not None and (thousands[0], thousands[-1]) == ("x-0000", "x-9999")


@pytest.mark.parametrize(("field", "prefix"), [("patient_id", "patient"), ("visit.patient_id", "patient"),
                                               ("home_patient_id", "home-patient"), ("id", "id"), ("key", "key")])
def test_by_hash_default_prefix(field: str, prefix: str) -> None:
    assert ByHash(field, 4).prefix == prefix


def test_by_hash_explicit_prefix_and_nested_field() -> None:
    rule = ByHash("visit.patient_id", 8, prefix="p")
    assert rule.shard_for({"visit": {"patient_id": "abc"}}, kind="k") == f"p-{hash_bucket('abc', 8)}"


@PROPS
@given(st.one_of(st.integers(), st.text(min_size=1)), st.integers(1, 10_000))
def test_by_hash_always_returns_one_of_its_shards(key: int | str, buckets: int) -> None:
    rule = ByHash("key", buckets)
    shards = rule.all_shards()
    assert shards is not None
    assert rule.shard_for({"key": key}, kind="k") == shards[hash_bucket(key, buckets)]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [({}, "missing"), ({"patient_id": None}, "null"), ({"patient_id": False}, "not bool"),
     ({"patient_id": 2.0}, "not float"), ({"patient_id": ""}, "empty")],
)
def test_by_hash_refuses_bad_keys_naming_the_field(payload: dict[str, Any], reason: str) -> None:
    with pytest.raises(PayloadError, match=reason) as caught:
        ByHash("patient_id", 16).shard_for(payload, kind="visit")
    assert caught.value.fields == ["patient_id"]
    assert "patient_id: " in str(caught.value)


@pytest.mark.parametrize("buckets", [0, -1, 10_001, True, "16", 1.0])
def test_by_hash_refuses_bad_bucket_counts(buckets: Any) -> None:
    with pytest.raises(ValueError, match="buckets") as caught:
        ByHash("patient_id", buckets)
    assert repr(buckets) in str(caught.value)


@pytest.mark.parametrize(("field", "prefix", "named"), [("_id", None, "''"), ("Patient_id", None, "'Patient'"),
                                                        ("patient_id", "P", "'P'"), ("k", "x" * 61, "'xxx"),
                                                        ("a..b", None, "'a..b'")])
def test_by_hash_refuses_bad_prefixes_and_fields(field: str, prefix: str | None, named: str) -> None:
    with pytest.raises(ValueError, match=r"prefix|field") as caught:
        ByHash(field, 100, prefix)
    assert named in str(caught.value)


class Constant:
    def shard_for(self, payload: Mapping[str, Any], *, kind: str) -> str:
        return "fixed"

    def all_shards(self) -> list[str] | None:
        return ["fixed"]


def test_rule_from_options() -> None:
    assert rule_from_options(None, None) is None
    assert rule_from_options("district", None) == ByField("district")
    assert rule_from_options(None, ("patient_id", 16)) == ByHash("patient_id", 16)
    rule = Constant()
    assert rule_from_options(rule, None) is rule
    by_hash = ByHash("k", 2)
    assert rule_from_options(by_hash, None) is by_hash


def test_rule_from_options_refuses_bad_combinations() -> None:
    with pytest.raises(ValueError, match="not both"):
        rule_from_options("district", ("patient_id", 16))
    with pytest.raises(ValueError, match="shard_by_hash"):
        rule_from_options(None, ("patient_id",))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="shard_by"):
        rule_from_options(42, None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="buckets"):
        rule_from_options(None, ("patient_id", 0))


# --- partition names ----------------------------------------------------------------------------------------

IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")


@pytest.mark.parametrize(("shard", "name"), [("district_3", "finejobs_jobs_district_3"),
                                             ("default", "finejobs_jobs_default"), ("0", "finejobs_jobs_0"),
                                             ("a" * 49, "finejobs_jobs_" + "a" * 49)])
def test_partition_name_keeps_plain_names(shard: str, name: str) -> None:
    assert partition_name(shard) == name


def test_partition_name_hashes_changed_or_long_names() -> None:
    dashed = partition_name("district-3")
    assert dashed != partition_name("district_3")
    assert re.fullmatch(r"finejobs_jobs_district_3_[0-9a-f]{8}", dashed)
    assert partition_name("district.3") not in (dashed, partition_name("district_3"))
    long = partition_name("a" * 50)
    assert len(long) == 63 and long.startswith("finejobs_jobs_" + "a" * 40 + "_")
    assert partition_name("a" * 63) != partition_name("a" * 62)


def test_partition_names_of_many_hash_buckets_are_distinct() -> None:
    shards = ByHash("patient_id", 10_000).all_shards()
    assert shards is not None
    assert len({partition_name(shard) for shard in shards}) == 10_000


def test_partition_name_refuses_invalid_shards() -> None:
    with pytest.raises(InvalidJobOptions, match="'District'"):
        partition_name("District")


@PROPS
@given(shard_names, shard_names)
def test_partition_names_are_identifiers_and_distinct(first: str, second: str) -> None:
    name = partition_name(first)
    assert IDENTIFIER.fullmatch(name) and len(name.encode()) <= 63
    assert partition_name(first) == name
    assert (partition_name(second) == name) == (second == first)


# --- shard map ----------------------------------------------------------------------------------------------


def test_shard_map_basics() -> None:
    shard_map = district_map()
    assert shard_map.names == ["a", "b"]
    assert shard_map.default == "a"
    assert shard_map.url("b") == URL_B


@pytest.mark.parametrize(("shard", "database"), [("district-3", "a"), ("district-10", "a"), ("district-12", "b"),
                                                 ("district-20", "b"), ("district-21", "a"), ("other", "a")])
def test_database_for(shard: str, database: str) -> None:
    shard_map = district_map()
    assert shard_map.database_for(shard) == database
    assert shard_map.owns(database, shard)
    assert not shard_map.owns("b" if database == "a" else "a", shard)


def test_exact_names_beat_globs_and_globs_go_in_declared_order() -> None:
    shard_map = ShardMap({"a": URL_A, "b": URL_B, "c": URL_A}, {"a": ["d-*"], "b": ["d-1", "d-1*"], "c": ["d-*"]},
                         default="c")
    assert shard_map.database_for("d-1") == "b"  # exact, though a's glob comes first
    assert shard_map.database_for("d-12") == "a"  # first glob in declared database order
    assert shard_map.database_for("x") == "c"


def test_database_for_and_owns_refuse_bad_input() -> None:
    with pytest.raises(InvalidJobOptions, match="'Bad'"):
        district_map().database_for("Bad")
    with pytest.raises(ConfigurationError, match="unknown database 'z'"):
        district_map().owns("z", "district-3")
    with pytest.raises(ConfigurationError, match="unknown database 'z'"):
        district_map().url("z")


def test_databases_for() -> None:
    shard_map = district_map()
    assert shard_map.databases_for(None) == ["a", "b"]
    assert shard_map.databases_for([]) == []
    assert shard_map.databases_for(["district-12"]) == ["b"]
    assert shard_map.databases_for(["district-3"]) == ["a"]
    assert shard_map.databases_for(["district-20", "district-3"]) == ["a", "b"]
    assert shard_map.databases_for(["district-*"]) == ["a", "b"]
    with pytest.raises(InvalidJobOptions, match="'Bad'"):
        shard_map.databases_for(["Bad"])
    with pytest.raises(TypeError, match="single string"):
        shard_map.databases_for("district-3")


def test_databases_for_a_glob_with_exact_names_only() -> None:
    shard_map = ShardMap({"a": URL_A, "b": URL_B, "c": URL_B}, {"b": ["district-1", "district-2"], "c": ["x-1"]},
                         default="a")
    assert shard_map.databases_for(["district-*"]) == ["a", "b"]  # b lists matching names, a is the default
    assert shard_map.databases_for(["x-*"]) == ["a", "c"]
    assert shard_map.databases_for(["y-*"]) == ["a"]


def test_single() -> None:
    shard_map = ShardMap.single(URL_A)
    assert shard_map.names == ["default"] and shard_map.default == "default"
    assert shard_map.database_for("district-3") == "default"
    assert shard_map.databases_for(["district-*"]) == ["default"]


def test_default_may_be_left_out_with_one_database() -> None:
    assert ShardMap({"only": URL_A}).default == "only"


def test_to_dict_round_trips() -> None:
    shard_map = district_map()
    assert shard_map.to_dict() == {
        "default": "a",
        "databases": {"a": {"url": URL_A, "shards": ["district-[1-9]", "district-10"]},
                      "b": {"url": URL_B, "shards": ["district-1[1-9]", "district-20"]}},
    }
    assert ShardMap.from_dict(shard_map.to_dict()) == shard_map
    assert shard_map != ShardMap.single(URL_A)


def test_repr_hides_passwords() -> None:
    shard_map = ShardMap({"a": "postgresql://fj:s3cret@db.example:5432/fj_a", "b": "postgres://db/fj_b"},
                         {"b": ["x-*"]}, default="a")
    text = repr(shard_map)
    assert "s3cret" not in text
    assert "postgresql://fj:***@db.example:5432/fj_a" in text and "postgres://db/fj_b" in text and "x-*" in text


@pytest.mark.parametrize(
    ("databases", "shards", "default", "message"),
    [
        ({}, None, None, "at least one database"),
        ({"a": URL_A, "b": URL_B}, None, None, "name the default database"),
        ({"a": URL_A}, None, "z", "default database 'z'"),
        ({"A": URL_A}, None, "A", "invalid database name 'A'"),
        ({"a" * 32: URL_A}, None, None, "invalid database name"),
        ({"a": "mysql://h/db"}, None, None, "database 'a' has URL 'mysql://h/db'"),
        ({"a": "postgresql://u:pw@h/db", "b": "http://u:pw@h/db"}, None, "a", "'http://u:***@h/db'"),
        ({"a": URL_A}, {"a": ["Bad*"]}, None, "database 'a': invalid shard pattern 'Bad*'"),
        ({"a": URL_A}, {"a": "district-*"}, None, "shards of database 'a'"),
        ({"a": URL_A}, {"z": ["x"]}, None, "undeclared database(s) ['z']"),
        ({"a": URL_A, "b": URL_B}, {"a": ["x-1"], "b": ["x-1"]}, "a",
         "shard 'x-1' is listed under databases 'a' and 'b'"),
    ],
)
def test_shard_map_validation(databases: dict[str, str], shards: dict[str, list[str]] | None, default: str | None,
                              message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        ShardMap(databases, shards, default)
    assert message in str(caught.value)
    assert "pw" not in str(caught.value)


@pytest.mark.parametrize("url", ["postgresql://h/db", "postgres://h/db", "postgresql+psycopg://h/db"])
def test_accepted_url_schemes(url: str) -> None:
    assert ShardMap.single(url).url("default") == url


TOML = """\
default = "a"

[databases.a]
url = "postgresql://127.0.0.1:5432/fj_a"
shards = ["district-[1-9]", "district-10"]

[databases.b]
url_env = "FINEJOBS_DB_B"
shards = ["district-1[1-9]", "district-20"]
"""


def test_from_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FINEJOBS_DB_B", URL_B)
    path = tmp_path / "shards.toml"
    path.write_text(TOML)
    shard_map = ShardMap.from_toml(path)
    assert shard_map.names == ["a", "b"] and shard_map.default == "a"
    assert shard_map.url("a") == "postgresql://127.0.0.1:5432/fj_a" and shard_map.url("b") == URL_B
    assert shard_map.database_for("district-15") == "b"
    assert ShardMap.from_toml(str(path)) == shard_map


def test_from_toml_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "missing.toml"
    with pytest.raises(ConfigurationError, match="cannot read shard map") as caught:
        ShardMap.from_toml(missing)
    assert str(missing) in str(caught.value)
    broken = tmp_path / "broken.toml"
    broken.write_text("default = \n")
    with pytest.raises(ConfigurationError, match="not valid TOML") as caught:
        ShardMap.from_toml(broken)
    assert str(broken) in str(caught.value)
    monkeypatch.delenv("FINEJOBS_DB_B", raising=False)
    unset = tmp_path / "unset.toml"
    unset.write_text(TOML)
    with pytest.raises(ConfigurationError, match="FINEJOBS_DB_B") as caught:
        ShardMap.from_toml(unset)
    assert str(unset) in str(caught.value)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "at least one database"),
        ({"databases": {}}, "at least one database"),
        ({"databases": {"a": {"url": URL_A}}, "defualt": "a"}, "unknown key(s) ['defualt'] in the top level"),
        ({"databases": {"a": {"url": URL_A, "shard": ["x"]}}}, "unknown key(s) ['shard'] in [databases.a]"),
        ({"databases": {"a": "postgresql://h/db"}}, "[databases.a] must be a table"),
        ({"databases": {"a": {}}}, "database 'a' needs exactly one of url and url_env"),
        ({"databases": {"a": {"url": URL_A, "url_env": "X"}}}, "database 'a' needs exactly one of url and url_env"),
        ({"databases": {"a": {"url_env": ""}}}, "url_env of database 'a'"),
        ({"databases": {"a": {"url_env": "FINEJOBS_TEST_UNSET_VARIABLE"}}}, "FINEJOBS_TEST_UNSET_VARIABLE"),
        ({"databases": {"a": {"url": 3}}}, "the URL of database 'a' must be a string, not int"),
        ({"databases": {"a": {"url": URL_A, "shards": ["x", "Y"]}}}, "invalid shard pattern 'Y'"),
        ({"databases": {"a": {"url": URL_A}, "b": {"url": URL_B}}, "default": "c"}, "default database 'c'"),
        ({"databases": {"a": {"url": URL_A}}, "default": ["a"]}, "default database ['a']"),
    ],
)
def test_from_dict_validation(data: dict[str, Any], message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FINEJOBS_TEST_UNSET_VARIABLE", raising=False)
    with pytest.raises(ConfigurationError) as caught:
        ShardMap.from_dict(data)
    assert message in str(caught.value)


def test_from_dict_refuses_non_tables() -> None:
    with pytest.raises(ConfigurationError, match="expected a table"):
        ShardMap.from_dict(["a"])  # type: ignore[arg-type]


def test_a_url_that_is_not_a_string_is_not_shown() -> None:
    # a TOML table where the URL should be may hold the password: the error names its type, not its value
    with pytest.raises(ConfigurationError) as caught:
        ShardMap.from_dict({"databases": {"a": {"url": {"password": "s3cret"}}}})
    assert "s3cret" not in str(caught.value) and "must be a string, not dict" in str(caught.value)


def test_errors_and_repr_hide_passwords_with_an_unencoded_at_or_in_the_query() -> None:
    with pytest.raises(ConfigurationError) as caught:
        ShardMap({"a": "mysql://u:pw@zq7@h/db?password=q8x"})
    assert "zq7" not in str(caught.value) and "q8x" not in str(caught.value) and "pw" not in str(caught.value)
    text = repr(ShardMap({"a": "postgresql://u:pw@zq7@h/db?sslmode=require&password=q8x"}))
    assert "zq7" not in text and "q8x" not in text and "postgresql://u:***@h/db?sslmode=require&password=***" in text


# ---------------------------------------------------------------- shards that cannot have a partition


@pytest.mark.parametrize("shard", [
    "other",  # finejobs_jobs_other: the default partition
    "pkey", "id_seq", "claim_idx", "unique_key_idx", "expiry_idx", "lease_idx", "finished_idx",
    "schedule_tick_idx", "schedule_unfinished_idx", "moved_from_idx",  # the job table's own relations
    "other_pkey", "other_shard_priority_run_at_id_idx", "other_state_finished_at_idx",  # the default partition's
    "0003", "0003_pkey", "0003_id_seq",  # the table migration 0004 replaced
])
def test_shards_whose_partition_would_take_a_finejobs_relation_name_are_refused(shard: str) -> None:
    assert validate_shard_name(shard) == shard  # a valid shard: its jobs live in the default partition
    with pytest.raises(InvalidJobOptions) as caught:
        validate_partition_shard(shard)
    message = str(caught.value)
    assert f"shard {shard!r} cannot have a partition of its own" in message
    assert partition_name(shard) in message and "default partition" in message


@pytest.mark.parametrize("shard", ["district-1", "others", "other-1", "other_region", "x.other", "default",
                                   "jobs", "a_pkey"])
def test_other_shards_may_have_a_partition(shard: str) -> None:
    assert validate_partition_shard(shard) == partition_name(shard)


def test_validate_partition_shard_refuses_invalid_names() -> None:
    with pytest.raises(InvalidJobOptions, match="invalid shard name"):
        validate_partition_shard("Other")
