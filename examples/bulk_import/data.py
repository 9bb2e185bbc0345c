"""The fake claims: a CSV file written with the csv module, one claim a row, reproducible from a seed."""

from __future__ import annotations

import csv
import random
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

from examples.bulk_import.app import UNKNOWN_FACILITY

COLUMNS = ("claim_id", "insuree", "amount", "service_date", "facility", "procedure")
FACILITIES = 400
PROCEDURES = ("A100", "A200", "B310", "C420", "D530", "E640", "X900")  # X...: not covered


def claim_id(i: int) -> str:
    return f"CLM{i:09d}"


def rows(n: int, *, seed: int = 14, unknown_share: float = 0.001) -> Iterator[tuple[str, ...]]:
    rng = random.Random(seed)
    start = date(2026, 1, 1)
    for i in range(1, n + 1):
        facility = UNKNOWN_FACILITY if rng.random() < unknown_share else f"FAC{rng.randint(1, FACILITIES):04d}"
        amount = round(rng.lognormvariate(5.5, 1.1), 2)
        yield (claim_id(i), f"INS{rng.randint(1, max(1, n // 4)):08d}", f"{min(amount, 999_999):.2f}",
               (start + timedelta(days=rng.randint(0, 330))).isoformat(), facility, rng.choice(PROCEDURES))


def ensure_csv(path: Path, n: int) -> bool:
    """Write ``n`` claims to ``path`` unless a file with that many rows is already there; True if written."""
    if path.exists():
        with path.open(newline="") as f:
            if sum(1 for _ in f) - 1 == n:
                return False
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    with partial.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        writer.writerows(rows(n))
    partial.replace(path)
    return True
