"""The bulk-import example, small: a CSV of claims imported with COPY into a group, reviewed by a worker
process, every claim accounted for, and the interactive process's latency reported per phase."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import psycopg

from finejobs.store import libpq_url

from .helpers import REPO_ROOT, cli_env


def number(text: str) -> int:
    return int(text.replace(",", ""))


def test_the_bulk_import_example_accounts_for_every_claim(empty_database_url: str, tmp_path: Path) -> None:
    claims = tmp_path / "claims.csv"
    proc = subprocess.run(
        [sys.executable, "-m", "examples.bulk_import", "--claims", "2000", "--csv", str(claims),
         "--concurrency", "16"],
        cwd=REPO_ROOT, env=cli_env(empty_database_url), capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    out = proc.stdout
    assert claims.exists() and len(claims.read_text().splitlines()) == 2001  # the header and 2,000 claims
    imported = re.search(r"imported ([\d,]+) claims into group '([^']+)' .* group total ([\d,]+), state sealed", out)
    assert imported, out
    assert number(imported.group(1)) == number(imported.group(3)) == 2000
    counts = re.search(r"^([\d,]+)\s+([\d,]+)\s+([\d,]+)\s+([\d,]+)\s+([\d,]+)\s+([\d,]+)$", out, re.MULTILINE)
    assert counts, out
    got, total, succeeded, failed, expired, cancelled = (number(g) for g in counts.groups())
    assert got == total == 2000
    assert succeeded + failed + expired + cancelled == total
    assert failed > 0 and succeeded > 1900  # about 0.1% of the claims name an unknown facility
    decisions = re.search(r"^decisions: (.*) \(= ([\d,]+) written\)$", out, re.MULTILINE)
    assert decisions, out
    parts = {name: number(n) for name, n in re.findall(r"(\w+) ([\d,]+)", decisions.group(1))}
    assert set(parts) <= {"approved", "denied", "referred"}
    assert sum(parts.values()) == number(decisions.group(2)) == succeeded
    assert "every claim accounted for: yes" in out
    for phase in ("idle", "import", "processing"):
        assert re.search(rf"^{phase}\s+job by id\s+\d+\s+[\d.]+\s+[\d.]+\s+[\d.]+$", out, re.MULTILINE), out
    with psycopg.connect(libpq_url(empty_database_url), autocommit=True) as conn:
        row = conn.execute("SELECT total, succeeded, failed, finished_at IS NOT NULL FROM finejobs_groups "
                           "WHERE name = %s", (imported.group(2),)).fetchone()
        assert row == (2000, succeeded, failed, True)
        stored = conn.execute("SELECT count(*) FROM finejobs_jobs WHERE group_id IS NOT NULL").fetchone()
        assert stored == (2000,)
