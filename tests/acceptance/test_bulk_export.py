"""The bulk-export example runs end to end: fake FHIR resources through fetch ids -> expand -> write -> report,
every resource in exactly one NDJSON line, the report and per-step progress printed."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import psycopg

from finejobs.store import libpq_url

from .helpers import REPO_ROOT, cli_env


def test_bulk_export_writes_every_resource_once_and_reports_per_type(empty_database_url: str,
                                                                     tmp_path: Path) -> None:
    out = tmp_path / "export"
    proc = subprocess.run(
        [sys.executable, "-m", "examples.bulk_export", "--resources", "1200", "--workers", "2", "--out", str(out)],
        cwd=REPO_ROOT, env=cli_env(empty_database_url), capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = proc.stdout
    assert "every resource exported once" in text
    report = json.loads(re.search(r"^report: (.*)$", text, re.MULTILINE).group(1))  # type: ignore[union-attr]
    assert report["resources"] == 1200
    assert re.search(r"^expand\s+done\s+3/3\s+1200/1200", text, re.MULTILINE), text
    assert re.search(r"^report\s+done", text, re.MULTILINE), text
    lines = [line for f in sorted(out.glob("*.ndjson")) for line in f.read_text().splitlines()]
    assert len(lines) == 1200
    ids = sorted(int(json.loads(line)["id"]) for line in lines)
    assert ids == list(range(1, 1201))
    for f in out.glob("*.ndjson"):
        rtype = f.name.split("-", 1)[0]
        assert all(json.loads(line)["resourceType"] == rtype for line in f.read_text().splitlines())
    with psycopg.connect(libpq_url(empty_database_url), autocommit=True) as conn:
        assert conn.execute("SELECT state, result->>'resources' FROM finejobs_pipelines").fetchall() == [
            ("succeeded", "1200")]
        assert conn.execute("SELECT count(*) FROM finejobs_jobs WHERE kind = 'bulk-export.report'").fetchone() == (1,)
