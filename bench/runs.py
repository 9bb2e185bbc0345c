"""What the benchmarks that repeat a run share: the best and the median of its timings."""

from __future__ import annotations

import statistics
from collections.abc import Sequence


class BestOfRuns:
    """A mixin for a dataclass with ``jobs`` and ``runs`` (seconds of each run of the same ``jobs``)."""

    jobs: int
    runs: Sequence[float]

    @property
    def seconds(self) -> float:
        return min(self.runs)

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds

    @property
    def median_rate(self) -> float:
        return self.jobs / statistics.median(self.runs)
