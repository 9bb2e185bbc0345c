"""finejobs._globs: which map globs a worker's glob can reach, worked out on automata (no database)."""

from __future__ import annotations

import fnmatch

from hypothesis import given
from hypothesis import strategies as st

from finejobs._globs import ALPHABET, first_matches, tokens
from finejobs.sharding import ShardMap

URL = "postgresql://127.0.0.1:5432/"


def test_tokens_read_fnmatch_syntax() -> None:
    star, one = tokens("a*")[1], tokens("?")[0]
    assert star is None
    assert one == frozenset(ALPHABET)
    assert tokens("[1-3_]")[0] == frozenset("123_")
    assert tokens("[!a-y]")[0] == frozenset(ALPHABET) - frozenset("abcdefghijklmnopqrstuvwxy")
    assert tokens("a**b") == (frozenset("a"), None, frozenset("b"))


def test_first_matches_names_the_first_glob_for_each_name() -> None:
    # every name starts with 'a' (0) or not (2); "*b" only ever comes first for names not starting with 'a'
    assert first_matches("*", ["a*", "*b", "[!a]*"]) == {0, 1, 2}
    assert first_matches("x*", ["a*", "b*"]) == {None}
    assert first_matches("a?", ["a*", "a?"]) == {0}  # a? is shadowed by a*
    assert first_matches("district-1[1-9]", ["district-[1-9]", "district-1[1-9]"]) == {1}


def test_first_matches_gives_up_past_its_limit() -> None:
    assert first_matches("*", ["*a*b*c*", "*[!q]?*z"], limit=5) is None


def test_a_glob_worker_connects_only_to_the_databases_its_glob_can_reach() -> None:
    shard_map = ShardMap({"a": URL + "a", "b": URL + "b"},
                         {"a": ["district-[1-9]", "district-10"], "b": ["district-1[1-9]", "district-20"]},
                         default="a")
    assert shard_map.databases_for(["district-1[1-9]"]) == ["b"]
    assert shard_map.databases_for(["district-2?"]) == ["a", "b"]  # district-20 is b's, district-2x a's
    assert shard_map.databases_for(["patient-*"]) == ["a"]  # only the default can hold them
    assert shard_map.databases_for(["*"]) == ["a", "b"]


name = st.text(alphabet="abc1-", min_size=1, max_size=6)
glob = st.lists(st.sampled_from(["a", "b", "1", "-", "*", "?", "[ab]", "[!a]", "[1-3]"]), min_size=1,
                max_size=5).map("".join)


@given(pattern=glob, globs=st.lists(glob, max_size=3), names=st.lists(name, max_size=30))
def test_every_name_the_pattern_matches_has_its_owner_in_the_answer(pattern: str, globs: list[str],
                                                                     names: list[str]) -> None:
    owners = first_matches(pattern, globs)
    assert owners is not None
    for candidate in names:
        if fnmatch.fnmatchcase(candidate, pattern):
            owner = next((i for i, g in enumerate(globs) if fnmatch.fnmatchcase(candidate, g)), None)
            assert owner in owners, (candidate, owner)
