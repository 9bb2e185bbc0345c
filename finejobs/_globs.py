"""Which globs of a shard map can a worker's glob reach? Exact answers by walking automata.

A glob over shard names (``*``, ``?``, ``[...]``, ``[!...]``) is a tiny automaton. Running a worker's glob
and the map's globs side by side over the shard-name alphabet finds, for every name the worker's glob
matches, the first map glob that matches it too, without listing names. The map then knows exactly which
databases a ``--shard 'district-1[1-9]'`` worker needs, instead of every database that has a glob.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789_.-"

# A token is a set of characters (one character of the name), or None for '*'.
Token = frozenset[str] | None


def tokens(glob: str) -> tuple[Token, ...]:
    """The glob as tokens, with fnmatch's meaning of ``?``, ``[...]`` (ranges, ``!`` negation) and ``*``."""
    out: list[Token] = []
    i = 0
    while i < len(glob):
        char = glob[i]
        if char == "*":
            if not out or out[-1] is not None:  # '**' is '*'
                out.append(None)
            i += 1
        elif char == "?":
            out.append(frozenset(ALPHABET))
            i += 1
        elif char == "[":  # validate_shard_pattern guarantees '[', an optional '!', 1+ characters, ']'
            end = glob.index("]", i + 1)
            body = glob[i + 1:end]
            negate = body.startswith("!")
            chars = _class(body[1:] if negate else body)
            out.append(frozenset(ALPHABET) - chars if negate else chars)
            i = end + 1
        else:
            out.append(frozenset(char))
            i += 1
    return tuple(out)


def _class(body: str) -> frozenset[str]:
    chars: set[str] = set()
    i = 0
    while i < len(body):
        if i + 2 < len(body) and body[i + 1] == "-":
            chars.update(c for c in ALPHABET if body[i] <= c <= body[i + 2])
            i += 3
        else:
            chars.add(body[i])
            i += 1
    return frozenset(chars)


def _closure(pattern: tuple[Token, ...], states: frozenset[int]) -> frozenset[int]:
    """Add the positions reachable by letting a '*' match nothing."""
    found = set(states)
    for state in sorted(states):
        while state < len(pattern) and pattern[state] is None:
            state += 1
            found.add(state)
    return frozenset(found)


def _step(pattern: tuple[Token, ...], states: frozenset[int], char: str) -> frozenset[int]:
    after: set[int] = set()
    for state in states:
        if state < len(pattern):
            token = pattern[state]
            if token is None:
                after.add(state)  # '*' eats the character and stays
            elif char in token:
                after.add(state + 1)
    return _closure(pattern, frozenset(after))


def first_matches(pattern: str, globs: Sequence[str], *, limit: int = 50_000) -> set[int | None] | None:
    """For the names ``pattern`` matches: the index of the first of ``globs`` matching each (None for names
    no glob matches). None if the walk grew past ``limit`` product states (callers then assume any)."""
    mine = tokens(pattern)
    theirs = [tokens(glob) for glob in globs]
    start = (_closure(mine, frozenset({0})),
             tuple(_closure(t, frozenset({0})) for t in theirs), False)
    seen = {start}
    queue = deque([start])
    owners: set[int | None] = set()
    while queue:
        states, others, nonempty = queue.popleft()
        if nonempty and len(mine) in states:
            owners.add(next((i for i, (t, s) in enumerate(zip(theirs, others, strict=True)) if len(t) in s), None))
        for char in ALPHABET:
            after = _step(mine, states, char)
            if not after:
                continue
            state = (after, tuple(_step(t, s, char) for t, s in zip(theirs, others, strict=True)), True)
            if state not in seen:
                if len(seen) >= limit:
                    return None
                seen.add(state)
                queue.append(state)
    return owners
