"""Shard names.

A shard is a slice of the job table (a district, a job type): ``finejobs worker --shard district-3``
serves one. Names become partition and identifier names, so they are checked against a short pattern.
"""

from __future__ import annotations

import re

from finejobs.errors import InvalidJobOptions

DEFAULT_SHARD = "default"
SHARD_NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")


def validate_shard_name(name: object) -> str:
    """Return ``name`` if it is a valid shard name, else raise InvalidJobOptions saying why."""
    if not isinstance(name, str) or not SHARD_NAME_PATTERN.fullmatch(name):
        raise InvalidJobOptions(
            f"invalid shard name {name!r}: use 1-63 characters of a-z, 0-9, '_', '.', '-', "
            "starting with a letter or digit"
        )
    return name
