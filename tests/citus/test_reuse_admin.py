"""tests/integration/test_admin.py on Citus (tests/citus/conftest.py points its fixtures at the cluster).

Its row helper reads the ids of a multi-row INSERT in RETURNING order, which Citus does not keep (rows come back
shard by shard): here they are read back sorted (ids are handed out in input order, as on plain PostgreSQL).
Left out: what needs shard partitions (refused on Citus) and the plan tests (plain PostgreSQL's plans)."""

from collections.abc import Iterator

import pytest

import tests.integration.test_admin as base
from tests.integration.test_admin import *  # noqa: F403

from .reuse import not_on_citus

NOT_ON_CITUS = {
    "test_count_of_a_shard_with_and_without_a_partition": "shard partitions are refused on Citus",
    "test_shards_lists_partitions_and_counts": "shard partitions are refused on Citus",
    "test_the_main_statements_use_indexes_not_seq_scans": "reads plain PostgreSQL's plans",
    "test_the_api_answers_on_the_big_table": "its fixture builds shard partitions, refused on Citus",
}


@pytest.fixture(autouse=True)
def _ids_in_input_order(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(base, "_INSERT", f"WITH ins AS ({base._INSERT}) SELECT id FROM ins ORDER BY id")
    yield



not_on_citus(globals(), NOT_ON_CITUS)
