"""The README's main job, small: the dosage-reminders demo runs end to end and accounts for every alert."""

from __future__ import annotations

import re
import subprocess
import sys

import psycopg

from finejobs.sharding import partition_name
from finejobs.store import libpq_url

from .helpers import REPO_ROOT, cli_env


def test_dosage_reminders_demo_sends_or_explains_every_alert(database_url: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "examples.dosage_reminders", "--patients", "200", "--districts", "3",
         "--failure-rate", "0.2", "--workers", "2"],
        cwd=REPO_ROOT, env=cli_env(database_url), capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    planned = re.search(r"planned (\d+) alerts .* \(planning again created (\d+) new jobs\)", out)
    assert planned, out
    assert planned.group(2) == "0", "planning twice must create nothing new"
    total = re.search(r"^total\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)$", out, re.MULTILINE)
    assert total, out
    sent, _retries, expired, failed, cancelled = map(int, total.groups())
    # Every planned alert ends somewhere. (A late dose whose window closed before the planner ran is not
    # planned at all, hence <= 200.)
    assert sent + expired + failed + cancelled == int(planned.group(1))
    assert 180 <= int(planned.group(1)) <= 200
    assert sent > 0
    assert "unfinished: 0" in out
    for district in ("district-1", "district-2", "district-3"):
        assert district in out
    # The demo gives each district a partition of its own; every alert sits in its district's partition.
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        placed = conn.execute("SELECT shard, tableoid::regclass::text, count(*) FROM finejobs_jobs "
                              "WHERE kind = 'dosage.alert' GROUP BY 1, 2").fetchall()
    assert {shard for shard, _, _ in placed} == {"district-1", "district-2", "district-3"}
    for shard, table, _ in placed:
        assert table == partition_name(shard)


def test_the_demo_keeps_the_console_open_with_console(empty_database_url: str) -> None:
    """--console: after the summary, the console serves the demo's database until interrupted (a database of
    its own: the console's counts are the demo's alone)."""
    import signal

    import httpx

    proc = subprocess.Popen(
        [sys.executable, "-m", "examples.dosage_reminders", "--patients", "40", "--districts", "2",
         "--failure-rate", "0", "--console", "--console-port", "0"],
        cwd=REPO_ROOT, env=cli_env(empty_database_url), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("console: "):
                break
        url = re.search(r"console: (http://127\.0\.0\.1:\d+)/", "".join(lines))
        assert url, "".join(lines)
        total = re.search(r"^total\s+(\d+)", "".join(lines), re.MULTILINE)
        assert total, "".join(lines)
        stats = httpx.get(f"{url.group(1)}/api/v1/stats", timeout=10).json()
        assert stats["by_kind"]["dosage.alert"]["succeeded"] == int(total.group(1))
        page = httpx.get(f"{url.group(1)}/jobs?kind=dosage.alert", timeout=10)
        assert page.status_code == 200 and "dosage.alert" in page.text
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert "console stopped" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
