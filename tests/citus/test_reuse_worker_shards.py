"""tests/integration/test_worker_shards.py on Citus (tests/citus/conftest.py points its fixtures at the cluster).
Left out: the tests that give shards partitions of their own (refused on Citus)."""

from tests.integration.test_worker_shards import *  # noqa: F403

from .reuse import not_on_citus

not_on_citus(globals(), {
    "test_several_globs_and_names_together": "it adds shard partitions, refused on Citus",
    "test_glob_is_matched_against_existing_shards_and_again_as_shards_appear":
        "it adds shard partitions, refused on Citus",
    "test_claim_shards_takes_at_most_its_share_from_each_shard_in_one_statement":
        "it adds shard partitions, refused on Citus (test_citus_worker.py claims over several shards)",
})
