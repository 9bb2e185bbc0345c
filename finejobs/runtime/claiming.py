"""How a worker chooses what to claim: the shards it serves (names, globs, or every shard with work),
fair shares across them, and the pauses of the control table (a paused kind, shard, or kind within a
shard is left alone by every claim; running jobs finish).

The pauses are read from the store at most every ``PAUSE_REFRESH`` seconds, and at once when a NOTIFY says
they changed, so a pause reaches every worker of every process within about a second.
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, cast

from finejobs.errors import DatabaseUnavailable
from finejobs.jobs import Job
from finejobs.sharding import match_shards
from finejobs.store import JobStore, PauseRow

if TYPE_CHECKING:
    from finejobs.clock import Clock
    from finejobs.runtime.observers import Observers
    from finejobs.runtime.worker import Worker

log = logging.getLogger("finejobs.worker")

PAUSE_REFRESH = 1.0  # seconds between reads of the control table
PAUSE_NOTICE = "pause"  # the NOTIFY payload that says the pauses changed


MIN_WINDOW = 4  # a claim round visits at least this many shards (as many as it has free slots, if fewer)
MIN_SHARE = 10  # ... and beyond that, only as many as leave each a share of this many jobs


def claim_window(limit: int) -> int:
    """How many shards one claim round of ``limit`` jobs visits at most."""
    return max(MIN_WINDOW, limit // MIN_SHARE)


def _offset(worker_id: str) -> int:
    """A stable number per worker (never Python's salted hash()): where its rotation over shards starts."""
    return zlib.crc32(worker_id.encode("utf-8"))


@dataclass(frozen=True)
class Pauses:
    """The pauses in force, as a claim consults them."""

    kinds: frozenset[str]
    shards: frozenset[str]
    pairs: frozenset[tuple[str, str]]

    @classmethod
    def of(cls, rows: Sequence[PauseRow]) -> Pauses:
        return cls(kinds=frozenset(r.kind for r in rows if r.kind is not None and r.shard is None),
                   shards=frozenset(r.shard for r in rows if r.shard is not None and r.kind is None),
                   pairs=frozenset((r.kind, r.shard) for r in rows if r.kind is not None and r.shard is not None))

    def stops(self, kind: str, shard: str) -> bool:
        return kind in self.kinds or shard in self.shards or (kind, shard) in self.pairs


NO_PAUSES = Pauses(frozenset(), frozenset(), frozenset())


class PauseCache:
    """The control table, read again when older than ``refresh`` seconds or when told it changed."""

    def __init__(self, refresh: float = PAUSE_REFRESH) -> None:
        self.refresh = refresh
        self._pauses = NO_PAUSES
        self._read_at: float | None = None
        self._lock = threading.Lock()
        self._warned = False

    def current(self, store: JobStore, *, max_age: float | None = None) -> Pauses:
        """The pauses, read again if older than ``max_age`` seconds (default: ``refresh``). The listener reads
        them at half that age between notifications, so that a claim right after a wake-up (an enqueue's
        notification) rarely waits for this read."""
        with self._lock:
            read_at = self._read_at
        if read_at is None or time.monotonic() - read_at >= (self.refresh if max_age is None else max_age):
            try:
                pauses = Pauses.of(store.pause_list())
            except DatabaseUnavailable:
                raise  # the producer logs it and backs off, as for a claim
            except Exception as exc:  # e.g. a role without SELECT on finejobs_pauses: work on, and say so
                if not self._warned:
                    log.error("cannot read the control table (%s): pauses are not honoured until it can be read; "
                              "GRANT SELECT ON finejobs_pauses to this role", exc)
                    self._warned = True
                pauses = NO_PAUSES
            with self._lock:
                self._pauses, self._read_at = pauses, time.monotonic()
        with self._lock:
            return self._pauses

    def invalidate(self) -> None:
        with self._lock:
            self._read_at = None


class Claiming:
    """The claim side of a Worker (a mixin: the Worker sets these attributes)."""

    worker_id: str
    shards: list[str] | None
    _globs: bool
    lease: timedelta
    clock: Clock
    shard_refresh_interval: float
    pauses: PauseCache
    stats: dict[str, int]
    observers: Observers
    _pending_shards: list[str] | None
    _pending_shards_at: float
    _rotation: int
    _last_round_claimed: bool
    _wake: threading.Event
    _hinted: set[str]  # shards named by notifications since the last claim (serving all shards, or globs)
    _hint_lock: threading.Lock

    @property
    def store(self) -> JobStore:
        raise NotImplementedError

    @property
    def kinds(self) -> list[str]:
        raise NotImplementedError

    def owns(self, shard: str) -> bool:
        raise NotImplementedError

    def _claim(self, limit: int) -> list[Job]:
        """Claim up to ``limit`` jobs from the shards served.

        Fair across shards: each shard first gets an equal share of the free slots (one statement for all
        of them), and only then do shards with more waiting take the slots others left; the starting shard
        rotates every round (with more shards than free slots, the next ones get the next round), so a
        shard with a backlog of 100k jobs cannot starve one with 10.
        """
        if not self.kinds:  # a worker of local schedules only: nothing to claim, nothing to ask the database
            return []
        pauses = self.pauses.current(self.store)
        groups: dict[tuple[str, ...], list[str]] = {}
        for shard in self._shards_to_claim():
            allowed = tuple(k for k in self.kinds if not pauses.stops(k, shard))
            if allowed:
                groups.setdefault(allowed, []).append(shard)
        claimed: list[Job] = []
        for kinds, shards in groups.items():  # one group unless a kind is paused within some shards only
            if limit - len(claimed) > 0:
                claimed += self._claim_group(shards, list(kinds), limit - len(claimed))
        self._last_round_claimed = bool(claimed)
        self.stats["claimed"] += len(claimed)
        if claimed and self.observers:
            self.observers.jobs_claimed(cast("Worker", self), claimed)
        return claimed

    def _claim_group(self, shards: list[str], kinds: list[str], limit: int) -> list[Job]:
        """Claim from shards that allow the same kinds: an equal share each, then the leftovers.

        A statement visits at most ``claim_window(limit)`` shards, so that each share stays a batch: with many
        shards, a claim of a few jobs from every shard costs a probe per shard for little, and every worker
        serving them meets the others at every shard's head. While slots are left, the round goes on to the
        next window (empty shards never make a worker wait for its poll); the next round starts where this
        one stopped. Workers start their rotation at different shards (by their id), so that several serving
        the same shards take different windows."""
        start = (self._rotation + _offset(self.worker_id)) % len(shards)
        rotated = shards[start:] + shards[:start]
        window = claim_window(limit)
        now = self.clock()
        claimed: list[Job] = []
        visited = 0
        while visited < len(rotated) and len(claimed) < limit:
            room = limit - len(claimed)
            order = rotated[visited:visited + min(room, window)]
            visited += len(order)
            claimed += self._claim_window(order, kinds, room, now)
        self._rotation += visited if visited < len(shards) else 1
        return claimed

    def _claim_window(self, order: list[str], kinds: list[str], limit: int, now: datetime) -> list[Job]:
        # The slots split as evenly as they go (the first shards of the window one more), so that one statement
        # can fill them all: 25 slots over 4 shards are 7, 6, 6, 6, not 6 each and a statement for the last one.
        base, extra = divmod(limit, len(order))
        shares = [base + (1 if i < extra else 0) for i in range(len(order))]
        claimed = self.store.job_claim_shards(owner=self.worker_id, shards=order, kinds=kinds, share=shares,
                                              lease=self.lease, now=now)
        taken = Counter(job.shard for job in claimed)
        more = [shard for shard, n in zip(order, shares, strict=True) if n and taken[shard] == n]  # may have more
        for shard in more:
            room = limit - len(claimed)
            if room <= 0:
                break
            claimed += self.store.job_claim(owner=self.worker_id, shard=shard, kinds=kinds, limit=room,
                                            lease=self.lease, now=now)
        return claimed

    def _shards_to_claim(self) -> list[str]:
        """The shards to claim from: the names given; or the shards that exist and match the globs, or
        (serving all) the shards with waiting jobs, looked up again every shard_refresh_interval, after an
        empty round, and when a notification names a shard not seen yet. Only shards of this database."""
        if self.shards is not None and not self._globs:
            if self._pending_shards is None:
                self._pending_shards = [s for s in self.shards if self.owns(s)]
            return self._pending_shards
        now = time.monotonic()
        with self._hint_lock:
            hinted, self._hinted = self._hinted, set()
        if hinted and self._pending_shards is not None and now < self._pending_shards_at + self.shard_refresh_interval:
            # Woken by enqueue notifications: the work is in the shards they name, so claim there (and in the
            # shards known to have work) without asking which shards have waiting jobs: one round trip less
            # between an enqueue and its start.
            extra = [s for s in sorted(hinted) if s not in self._pending_shards and self._serves(s)]
            if extra:
                self._pending_shards = self._pending_shards + extra
            return self._pending_shards
        if (self._pending_shards is None or not self._last_round_claimed
                or now >= self._pending_shards_at + self.shard_refresh_interval):
            if self.shards is None:
                found = self.store.shard_list_pending()
            else:
                found = match_shards(self.shards, self.store.shard_list_known())
            self._pending_shards = [s for s in found if self.owns(s)]
            self._pending_shards_at = now
        return self._pending_shards

    def _notified(self, shard: str) -> None:
        if shard == PAUSE_NOTICE:  # an operator paused or resumed something: read the control table again
            self.pauses.invalidate()
            self._wake.set()
            return
        if shard != "*" and self.shards is not None and not any(fnmatchcase(shard, s) for s in self.shards):
            return
        if self.shards is None or self._globs:
            if shard == "*":  # work in shards not named: look again before the next claim
                self._pending_shards = None
            else:
                with self._hint_lock:
                    self._hinted.add(shard)
        self._wake.set()

    def _serves(self, shard: str) -> bool:
        """Whether a shard a notification named is one this worker claims from (its globs, and its database)."""
        return (self.shards is None or any(fnmatchcase(shard, s) for s in self.shards)) and self.owns(shard)
