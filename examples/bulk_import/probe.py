"""The "interactive" process: small indexed queries in a loop, one JSON line per query (time, name, ms).

``python -m examples.bulk_import.probe URL FIRST_JOB_ID CLAIMS`` runs until it is terminated (SIGTERM). Its
queries are what a claims clerk's screen would send while the import and the processing run: one job by
its id (the job table's primary key), one claim's decision (the app's table, by an indexed column) and a
facility's running total (an index range of a few hundred rows).
"""

from __future__ import annotations

import json
import random
import signal
import sys
import time

import psycopg

from examples.bulk_import.data import FACILITIES, claim_id

QUERIES = {
    "job by id": "SELECT id, state, payload->>'claim_id' FROM finejobs_jobs WHERE id = %s",
    "claim decision": "SELECT decision, amount FROM claim_decisions WHERE claim_id = %s",
    "facility total": "SELECT count(*), coalesce(sum(amount), 0) FROM claim_decisions WHERE facility = %s",
}


def main(url: str, first_job_id: int, claims: int, pause: float = 0.01) -> None:
    stop = False

    def on_term(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    rng = random.Random(7)
    out = sys.stdout
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT 1")
        print(json.dumps({"ready": True}), file=out, flush=True)
        while not stop:
            args = {"job by id": (first_job_id + rng.randint(0, max(0, claims - 1)),),
                    "claim decision": (claim_id(rng.randint(1, claims)),),
                    "facility total": (f"FAC{rng.randint(1, FACILITIES):04d}",)}
            for name, sql in QUERIES.items():
                start = time.perf_counter()
                conn.execute(sql, args[name]).fetchall()
                ms = (time.perf_counter() - start) * 1000
                print(json.dumps({"t": time.time(), "query": name, "ms": round(ms, 3)}), file=out)
            out.flush()
            time.sleep(pause)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
