"""Shard names, shard patterns, routing rules, partition names and the shard map.

A shard is a slice of the job table (a district, a job type): ``finejobs worker --shard district-3``
serves one. Names become partition and identifier names, so they are checked against a short pattern.

- Patterns: a worker may serve a glob of shards (``district-*``, ``district-1[1-9]``):
  :func:`validate_shard_pattern`, :func:`is_glob`, :func:`match_shards`.
- Routing rules: a job kind can take each job's shard from its payload, by the value of a field
  (:class:`ByField`) or by a stable hash of a key into numbered buckets (:class:`ByHash`, :func:`hash_bucket`).
- Partition names: :func:`partition_name` turns a shard into a PostgreSQL identifier;
  :func:`validate_partition_shard` refuses the shards whose partition would take the name of finejobs' own relations.
- Shard map: :class:`ShardMap` places shards on named databases (built in code, from a dict or a TOML file).

Everything here is pure: no database, no SQL.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from finejobs._globs import first_matches
from finejobs.errors import ConfigurationError, InvalidJobOptions, PayloadError
from finejobs.masking import mask_passwords

DEFAULT_SHARD = "default"
SHARD_NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")
_GLOB_PATTERN = re.compile(r"(?:[a-z0-9_.-]|\*|\?|\[!?[a-z0-9_.-]+\])+")
_MAX_BUCKETS = 10_000
_PARTITION_PREFIX = "finejobs_jobs_"
_MAX_IDENTIFIER = 63  # PostgreSQL's NAMEDATALEN - 1, in bytes
_DATABASE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,30}")
_URL_SCHEMES = ("postgresql://", "postgres://", "postgresql+psycopg://")
_MISSING: Any = object()


def validate_shard_name(name: object) -> str:
    """Return ``name`` if it is a valid shard name, else raise InvalidJobOptions saying why."""
    if not isinstance(name, str) or not SHARD_NAME_PATTERN.fullmatch(name):
        raise InvalidJobOptions(
            f"invalid shard name {name!r}: use 1-63 characters of a-z, 0-9, '_', '.', '-', "
            "starting with a letter or digit"
        )
    return name


def is_glob(pattern: str) -> bool:
    """True if ``pattern`` contains glob characters (``*``, ``?``, ``[``) rather than being a plain name."""
    return any(char in "*?[" for char in pattern)


def validate_shard_pattern(pattern: object) -> str:
    """Return ``pattern`` if it is a shard name or an fnmatch glob over shard names, else raise InvalidJobOptions.

    A glob's literal characters are those of shard names; it may add ``*``, ``?`` and ``[...]`` classes
    (``[!...]`` negates), as in ``district-*`` or ``district-1[1-9]``.
    """
    if isinstance(pattern, str) and (
        SHARD_NAME_PATTERN.fullmatch(pattern) or (is_glob(pattern) and _GLOB_PATTERN.fullmatch(pattern))
    ):
        return pattern
    raise InvalidJobOptions(
        f"invalid shard pattern {pattern!r}: use a shard name (1-63 characters of a-z, 0-9, '_', '.', '-', "
        "starting with a letter or digit) or a glob of those characters with '*', '?' and '[...]', "
        "such as 'district-*' or 'district-1[1-9]'"
    )


def match_shards(patterns: Sequence[str], shards: Iterable[str]) -> list[str]:
    """The sorted, unique ``shards`` matched by any of ``patterns`` (an exact name matches itself)."""
    if isinstance(patterns, str):
        raise TypeError("patterns must be a sequence of shard patterns, not a single string")
    checked = [validate_shard_pattern(pattern) for pattern in patterns]
    return sorted({shard for shard in shards if any(fnmatch.fnmatchcase(shard, p) for p in checked)})


def hash_bucket(key: str | int, buckets: int) -> int:
    """The bucket, ``0 .. buckets - 1``, of ``key``: blake2b (8 bytes, big-endian) of ``str(key)`` in UTF-8.

    Stable across machines, processes and Python versions (unlike the salted built-in ``hash()``), so a key
    always lands in the same bucket. An int shares its bucket with its decimal string.
    """
    if isinstance(key, bool):
        raise ValueError(f"hash key must be a str or an int, not the bool {key!r}")
    if not isinstance(key, str | int):
        raise TypeError(f"hash key must be a str or an int, not {type(key).__name__}")
    if isinstance(buckets, bool) or not isinstance(buckets, int) or buckets < 1:
        raise ValueError(f"buckets must be an int >= 1, not {buckets!r}")
    digest = hashlib.blake2b(str(key).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % buckets


@runtime_checkable
class ShardRule(Protocol):
    """How a job kind picks each job's shard from its payload."""

    def shard_for(self, payload: Mapping[str, Any], *, kind: str) -> str:
        """The shard of a job of ``kind`` with this payload; raise PayloadError naming the field if none."""
        ...

    def all_shards(self) -> list[str] | None:
        """Every shard the rule can return, in order, or None if the set is open (it depends on the data)."""
        ...


def _check_field(field: object) -> str:
    if not isinstance(field, str) or not all(field.split(".")):
        raise ValueError(f"shard field must be a field name or a dotted path such as 'address.district', not {field!r}")
    return field


def _check_prefix(prefix: object, field: str, example: str) -> None:
    if not isinstance(prefix, str) or not SHARD_NAME_PATTERN.fullmatch(example):
        raise ValueError(
            f"invalid shard prefix {prefix!r} for field {field!r}: it makes shard names such as {example!r}, which "
            "are not valid (a-z, 0-9, '_', '.', '-', at most 63 characters); pass prefix= explicitly"
        )


def _key(payload: Mapping[str, Any], field: str, kind: str) -> str | int:
    """The int or non-empty str at dotted path ``field`` of ``payload``, else PayloadError naming the field."""
    value: Any = payload
    for part in field.split("."):
        value = value.get(part, _MISSING) if isinstance(value, Mapping) else _MISSING
    if value is _MISSING:
        reason = "is missing; it picks the job's shard"
    elif value is None:
        reason = "is null; it picks the job's shard"
    elif isinstance(value, bool) or not isinstance(value, int | str):
        reason = f"must be an int or a string to pick the job's shard, not {type(value).__name__}"
    elif value == "":
        reason = "must not be empty; it picks the job's shard"
    else:
        return value
    raise PayloadError(kind, [field], f"{field}: {reason}")


@dataclass(frozen=True)
class ByField:
    """Shard ``f"{prefix}-{value}"`` from a payload field: ``ByField("district")`` on ``{"district": 3}``
    gives ``district-3``.

    ``field`` may be a dotted path into nested mappings (``"address.district"``). ``prefix`` defaults to the
    field's last part with ``_`` replaced by ``-``. The value must be an int or a non-empty string; strings
    are used as given, and the result must be a valid shard name.
    """

    field: str
    prefix: str | None = None

    def __post_init__(self) -> None:
        _check_field(self.field)
        if self.prefix is None:
            object.__setattr__(self, "prefix", self.field.rsplit(".", 1)[-1].replace("_", "-"))
        _check_prefix(self.prefix, self.field, f"{self.prefix}-0")

    def shard_for(self, payload: Mapping[str, Any], *, kind: str) -> str:
        value = _key(payload, self.field, kind)
        shard = f"{self.prefix}-{value}"
        if not SHARD_NAME_PATTERN.fullmatch(shard):
            raise PayloadError(
                kind, [self.field],
                f"{self.field}: value {value!r} gives shard {shard!r}, which is not a valid shard name "
                "(1-63 characters of a-z, 0-9, '_', '.', '-')",
            )
        return shard

    def all_shards(self) -> list[str] | None:
        return None


@dataclass(frozen=True)
class ByHash:
    """Shard ``f"{prefix}-{bucket}"`` from a stable hash (:func:`hash_bucket`) of a payload key.

    Buckets are zero-padded to the width of the last one: 16 buckets give ``patient-00`` .. ``patient-15``.
    ``prefix`` defaults to the field's last dotted part without a trailing ``_id``, with ``_`` replaced by
    ``-`` (``patient_id`` gives ``patient``). The key must be an int or a non-empty string.
    """

    field: str
    buckets: int
    prefix: str | None = None

    def __post_init__(self) -> None:
        _check_field(self.field)
        if isinstance(self.buckets, bool) or not isinstance(self.buckets, int) or not 1 <= self.buckets <= _MAX_BUCKETS:
            raise ValueError(f"buckets must be an int from 1 to {_MAX_BUCKETS}, not {self.buckets!r}")
        if self.prefix is None:
            last = self.field.rsplit(".", 1)[-1]
            object.__setattr__(self, "prefix", last.removesuffix("_id").replace("_", "-"))
        _check_prefix(self.prefix, self.field, self._name(self.buckets - 1))

    def _name(self, bucket: int) -> str:
        return f"{self.prefix}-{bucket:0{len(str(self.buckets - 1))}d}"

    def shard_for(self, payload: Mapping[str, Any], *, kind: str) -> str:
        return self._name(hash_bucket(_key(payload, self.field, kind), self.buckets))

    def all_shards(self) -> list[str] | None:
        return [self._name(bucket) for bucket in range(self.buckets)]


def rule_from_options(shard_by: str | ShardRule | None, shard_by_hash: tuple[str, int] | None) -> ShardRule | None:
    """The rule of a job kind's ``shard_by`` (a field name or a rule) or ``shard_by_hash=(field, buckets)``."""
    if shard_by is not None and shard_by_hash is not None:
        raise ValueError("give shard_by or shard_by_hash, not both")
    if isinstance(shard_by, str):
        return ByField(shard_by)
    if shard_by is not None:
        if not isinstance(shard_by, ShardRule):
            raise TypeError(f"shard_by must be a field name or a ShardRule, not {type(shard_by).__name__}")
        return shard_by
    if shard_by_hash is not None:
        if not isinstance(shard_by_hash, tuple | list) or len(shard_by_hash) != 2:
            raise ValueError(f"shard_by_hash must be a (field, buckets) pair, not {shard_by_hash!r}")
        return ByHash(shard_by_hash[0], shard_by_hash[1])
    return None


def partition_name(shard: str) -> str:
    """The table partition of ``shard``: an unquoted PostgreSQL identifier of at most 63 bytes.

    ``finejobs_jobs_<shard>`` when the shard is all ``[a-z0-9_]`` and short enough; otherwise the other
    characters become ``_``, the name is truncated, and 8 hex digits of a blake2b hash of the shard keep it
    distinct (``district-3`` and ``district_3`` get different partitions).
    """
    validate_shard_name(shard)
    safe = re.sub(r"[^a-z0-9_]", "_", shard)
    if safe == shard and len(_PARTITION_PREFIX) + len(safe) <= _MAX_IDENTIFIER:
        return _PARTITION_PREFIX + safe
    digest = hashlib.blake2b(shard.encode("utf-8"), digest_size=4).hexdigest()
    keep = _MAX_IDENTIFIER - len(_PARTITION_PREFIX) - 1 - len(digest)
    return f"{_PARTITION_PREFIX}{safe[:keep]}_{digest}"


# finejobs' own relations whose names a shard's partition (finejobs_jobs_<shard>) could take: the job table's
# default partition, the indexes and sequence of the migrations (and of the table 0004 replaced), and the
# indexes PostgreSQL named for the default partition; tests/integration/test_shard_names.py checks the list
# against a migrated database. store.shard_add also refuses any other relation of that name found there.
_OWN_RELATIONS = {
    _PARTITION_PREFIX + "other": "the default partition",
    **{_PARTITION_PREFIX + suffix: "an index or sequence of finejobs' own" for suffix in (
        "pkey", "id_seq", "claim_idx", "unique_key_idx", "expiry_idx", "lease_idx", "finished_idx",
        "schedule_tick_idx", "schedule_unfinished_idx", "moved_from_idx", "0003", "0003_pkey", "0003_id_seq",
        "finished_id_idx",  # migrations/0006
        "schedule_runs_idx",  # migrations/0009
        "group_idx",  # migrations/0010
    )},
    **{_PARTITION_PREFIX + "other_" + suffix: "an index of the default partition" for suffix in (
        "pkey", "expires_at_idx", "lease_expires_at_idx", "schedule_id_idx", "shard_moved_from_idx",
        "shard_priority_run_at_id_idx", "shard_schedule_id_fire_at_idx", "shard_unique_key_idx",
        "state_finished_at_idx", "state_id_idx", "schedule_runs_idx", "group_id_state_id_idx",
    )},
}


def validate_partition_shard(name: object) -> str:
    """The partition name of shard ``name`` if the shard may get a partition of its own (``finejobs shards
    add``), else InvalidJobOptions: an invalid shard name, or one whose partition name is taken by finejobs
    itself, such as ``other`` (``finejobs_jobs_other`` is the default partition).

    Such a shard is still a valid shard: its jobs live in the default partition, as those of every shard
    without a partition of their own."""
    partition = partition_name(validate_shard_name(name))
    taken = _OWN_RELATIONS.get(partition)
    if taken is not None:
        raise InvalidJobOptions(
            f"shard {name!r} cannot have a partition of its own: the name it would get, {partition}, is taken "
            f"by {taken}; its jobs can still be enqueued and served (they stay in the default partition)"
        )
    return partition


def _check_keys(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(str(key) for key in set(table) - allowed)
    if unknown:
        raise ConfigurationError(f"shard map: unknown key(s) {unknown!r} in {where}; allowed: {sorted(allowed)!r}")


def _table_url(name: str, table: Mapping[str, Any]) -> Any:
    if ("url" in table) == ("url_env" in table):
        raise ConfigurationError(f"shard map: database {name!r} needs exactly one of url and url_env")
    if "url" in table:
        return table["url"]
    variable = table["url_env"]
    if not isinstance(variable, str) or not variable:
        raise ConfigurationError(f"shard map: url_env of database {name!r} must name an environment variable")
    url = os.environ.get(variable)
    if not url:
        raise ConfigurationError(f"shard map: environment variable {variable} (url_env of {name!r}) is not set")
    return url


class ShardMap:
    """Which database holds each shard.

    ``shards`` lists, per database, shard names and globs. :meth:`database_for` picks an exact name first,
    then the first matching glob (in declared database order, then pattern order), then ``default``.
    ``default`` may be left out when there is a single database. The map is read-only once built.
    """

    __slots__ = ("_default", "_exact", "_globs", "_shards", "_urls")

    def __init__(self, databases: Mapping[str, str], shards: Mapping[str, Sequence[str]] | None = None,
                 default: str | None = None) -> None:
        if not isinstance(databases, Mapping) or not databases:
            raise ConfigurationError("shard map: declare at least one database")
        self._urls: dict[str, str] = {}
        for name, url in databases.items():
            if not isinstance(name, str) or not _DATABASE_NAME.fullmatch(name):
                raise ConfigurationError(f"shard map: invalid database name {name!r}: use 1-31 characters of "
                                         "a-z, 0-9, '_', '-', starting with a letter or digit")
            if not isinstance(url, str):  # its value is not shown: it may hold a password
                raise ConfigurationError(f"shard map: the URL of database {name!r} must be a string, "
                                         f"not {type(url).__name__}")
            if not url.startswith(_URL_SCHEMES):
                raise ConfigurationError(f"shard map: database {name!r} has URL {mask_passwords(url)!r}; "
                                         f"it must start with {', '.join(_URL_SCHEMES)}")
            self._urls[name] = url
        shards = shards or {}
        undeclared = [name for name in shards if name not in self._urls]
        if undeclared:
            raise ConfigurationError(f"shard map: shards listed for undeclared database(s) {undeclared!r}")
        if default is None and len(self._urls) > 1:
            raise ConfigurationError(f"shard map: name the default database, one of {self.names!r}")
        default = next(iter(self._urls)) if default is None else default
        if not isinstance(default, str) or default not in self._urls:
            raise ConfigurationError(f"shard map: default database {default!r} is not one of {self.names!r}")
        self._default = default
        self._shards: dict[str, tuple[str, ...]] = {}
        self._exact: dict[str, str] = {}  # shard name -> database
        self._globs: list[tuple[str, str]] = []  # (glob, database), in declared order
        for name in self._urls:
            patterns = shards.get(name, ())
            if isinstance(patterns, str) or not isinstance(patterns, Sequence):
                raise ConfigurationError(f"shard map: the shards of database {name!r} must be a list of patterns")
            for pattern in patterns:
                try:
                    validate_shard_pattern(pattern)
                except InvalidJobOptions as exc:
                    raise ConfigurationError(f"shard map: database {name!r}: {exc}") from exc
                if is_glob(pattern):
                    self._globs.append((pattern, name))
                elif self._exact.setdefault(pattern, name) != name:
                    raise ConfigurationError(f"shard map: shard {pattern!r} is listed under databases "
                                             f"{self._exact[pattern]!r} and {name!r}")
            self._shards[name] = tuple(patterns)

    @classmethod
    def single(cls, url: str) -> ShardMap:
        """One database, named ``default``, holding every shard."""
        return cls({"default": url}, default="default")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ShardMap:
        """Build from the TOML structure: ``default`` and ``databases.<name>`` = {url | url_env, shards}."""
        if not isinstance(data, Mapping):
            raise ConfigurationError("shard map: expected a table with 'default' and 'databases'")
        _check_keys(data, {"default", "databases"}, "the top level")
        tables = data.get("databases")
        if not isinstance(tables, Mapping) or not tables:
            raise ConfigurationError("shard map: declare at least one database as a [databases.<name>] table")
        urls: dict[str, Any] = {}
        shards: dict[str, Any] = {}
        for name, table in tables.items():
            if not isinstance(table, Mapping):
                raise ConfigurationError(f"shard map: [databases.{name}] must be a table (url or url_env, shards)")
            _check_keys(table, {"url", "url_env", "shards"}, f"[databases.{name}]")
            urls[name] = _table_url(name, table)
            shards[name] = table.get("shards", [])
        return cls(urls, shards, data.get("default"))

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str]) -> ShardMap:
        """Read a TOML shard map (see :meth:`from_dict`); every error names the file."""
        try:
            with open(path, "rb") as file:
                data = tomllib.load(file)
        except OSError as exc:
            raise ConfigurationError(f"cannot read shard map {os.fspath(path)}: {exc.strerror or exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigurationError(f"shard map {os.fspath(path)} is not valid TOML: {exc}") from exc
        try:
            return cls.from_dict(data)
        except ConfigurationError as exc:
            raise ConfigurationError(f"{os.fspath(path)}: {exc}") from exc

    @property
    def names(self) -> list[str]:
        """The databases, in declared order."""
        return list(self._urls)

    @property
    def default(self) -> str:
        """The database of every shard no pattern places."""
        return self._default

    def url(self, name: str) -> str:
        return self._urls[self._known(name)]

    def database_for(self, shard: str) -> str:
        """The database holding ``shard``."""
        validate_shard_name(shard)
        if shard in self._exact:
            return self._exact[shard]
        return next((name for glob, name in self._globs if fnmatch.fnmatchcase(shard, glob)), self._default)

    def owns(self, database: str, shard: str) -> bool:
        return self.database_for(shard) == self._known(database)

    def databases_for(self, patterns: Sequence[str] | None) -> list[str]:
        """The databases a worker serving ``patterns`` (None: every shard) must connect to, in declared order."""
        if patterns is None:
            return self.names
        if isinstance(patterns, str):
            raise TypeError("patterns must be a sequence of shard patterns, not a single string")
        needed: set[str] = set()
        for pattern in patterns:
            if not is_glob(validate_shard_pattern(pattern)):
                needed.add(self.database_for(pattern))
                continue
            needed.update(name for shard, name in self._exact.items() if fnmatch.fnmatchcase(shard, pattern))
            owners = first_matches(pattern, [glob for glob, _ in self._globs])
            if owners is None:  # too large to work out: any database with a glob, and the default
                needed.update(name for _, name in self._globs)
                needed.add(self._default)
            else:
                needed.update(self._default if i is None else self._globs[i][1] for i in owners)
        return [name for name in self._urls if name in needed]

    def to_dict(self) -> dict[str, Any]:
        """The :meth:`from_dict` structure of this map (url_env entries appear as their resolved url)."""
        databases = {name: {"url": url, "shards": list(self._shards[name])} for name, url in self._urls.items()}
        return {"default": self._default, "databases": databases}

    def _known(self, name: str) -> str:
        if name not in self._urls:
            raise ConfigurationError(f"unknown database {name!r}; the shard map declares {self.names!r}")
        return name

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ShardMap) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        databases = {name: mask_passwords(url) for name, url in self._urls.items()}
        shards = {name: list(patterns) for name, patterns in self._shards.items() if patterns}
        return f"ShardMap(databases={databases!r}, shards={shards!r}, default={self._default!r})"
