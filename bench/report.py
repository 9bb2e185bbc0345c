"""The benchmark's outputs: a markdown table, a JSON file, a PNG of throughput against concurrency."""

from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import finejobs
from bench.core import Row
from bench.latency import Latency
from bench.shards import TARGET, ShardRow, ShardsResult


def header(server_version: str) -> str:
    return (f"finejobs {finejobs.__version__}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, Python "
            f"{platform.python_version()}, {server_version}")


def markdown(rows: list[Row], latency: Latency | None) -> str:
    lines = [
        "| measurement | jobs | seconds | jobs/s | baseline | baseline jobs/s | ratio |",
        "| --- | ---: | ---: | ---: | --- | ---: | ---: |",
    ]
    for r in rows:
        lines.append(f"| {r.name} | {r.jobs:,} | {r.seconds:.2f} | {r.rate:,.0f} | {r.baseline} | "
                     f"{r.baseline_rate:,.0f} | {r.ratio:.0%} |")
    if latency is not None:
        lines += [
            "",
            "| enqueue-to-start latency, idle worker | samples | p50 | p95 | p99 | max |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
            f"| finejobs worker, LISTEN/NOTIFY (poll 1 s) | {latency.samples} | {latency.p50_ms:.1f} ms | "
            f"{latency.p95_ms:.1f} ms | {latency.p99_ms:.1f} ms | {latency.max_ms:.1f} ms |",
        ]
        if latency.raw is not None:
            raw = latency.raw
            lines.append(f"| raw baseline: LISTEN + UPDATE ... SKIP LOCKED | {raw.samples} | {raw.p50_ms:.1f} ms | "
                         f"{raw.p95_ms:.1f} ms | {raw.p99_ms:.1f} ms | {raw.max_ms:.1f} ms |")
    return "\n".join(lines)


def _verdict(r: ShardRow) -> str:
    """Met when the best runs' ratio reaches the target; the medians' ratio says whether noise could decide."""
    best, median = r.ratio >= TARGET, r.median_ratio >= TARGET
    if len(r.runs) < 2:
        return "yes" if best else "no"
    if best == median:
        return f"{'yes' if best else 'no'} (medians agree: {r.median_ratio:.1%})"
    return f"undecided: best runs say {'yes' if best else 'no'}, medians {r.median_ratio:.1%} (noise)"


def shards_markdown(result: ShardsResult) -> str:
    """Two tables: (a) claim throughput over 1 vs 16 shards, (b) a hot shard beside many waiting jobs."""
    c = result.concurrency

    def each(k: int) -> str:
        return "one run" if k == 1 else f"best of {k} runs, taken in rounds (the median and slowest run beside it)"

    def figures(r: ShardRow) -> str:
        return (f"{r.name} | {r.jobs:,} | {r.seconds:.2f} | {r.rate:,.0f} | {r.median_rate:,.0f} | "
                f"{r.slowest_rate:,.0f}")

    lines = [
        f"Shards (a): claim throughput, 1 shard vs 16, {result.claim_jobs:,} no-op jobs, concurrency={c} per "
        f"worker process; {each(result.repeats)}",
        "",
        "| measurement | jobs | seconds | jobs/s | median | slowest | vs 1 shard | vs raw loop, 1 shard |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in result.claim:
        lines.append(f"| {figures(r)} | {r.ratio:.0%} | {r.raw_ratio:.0%} |")
    lines += [
        "",
        f"Shards (b): shard 'hot', {result.hot_jobs:,} no-op jobs, 1 worker process (--shard hot, "
        f"concurrency={c}), beside {result.other_pending:,} waiting jobs in 15 other shards; "
        f"{each(result.hot_repeats)}",
        "",
        "| measurement | jobs | seconds | jobs/s | median | slowest | vs empty table "
        f"| vs raw loop, same table | within {1 - TARGET:.0%}? |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    verdicts = []
    for i, r in enumerate(result.noisy):
        if r.raw or i == 0:
            verdict = "—"
        elif "control" in r.name:
            verdict = "(control)"
        else:
            verdict = _verdict(r)
            verdicts.append(f"{r.name.removeprefix('finejobs, ')}: {r.ratio:.1%} → {verdict}")
        lines.append(f"| {figures(r)} | {r.ratio:.1%} | {r.raw_ratio:.0%} | {verdict} |")
    smoke = " (one run of a --quick size: a smoke test, not a measurement)" if result.hot_repeats == 1 else ""
    lines += ["", f"Target{smoke}: one shard's throughput with the waiting jobs at least {TARGET:.0%} of its "
              "empty-table figure. " + "; ".join(verdicts) + f". Load average (1 min, {os.cpu_count()} CPUs): "
              f"{result.load[0]:.1f} before, {result.load[1]:.1f} after."]
    return "\n".join(lines)


def write_json(path: Path, title: str, rows: list[Row], latency: Latency | None,
               shards: ShardsResult | None = None) -> None:
    doc: dict[str, Any] = {
        "title": title,
        "rows": [asdict(r) | {"rate": r.rate, "ratio": r.ratio} for r in rows],
        "latency": asdict(latency) if latency else None,
    }
    if shards is not None:
        doc["shards"] = asdict(shards) | {
            "claim": [asdict(r) | {"rate": r.rate, "median_rate": r.median_rate, "ratio": r.ratio,
                                   "median_ratio": r.median_ratio} for r in shards.claim],
            "noisy": [asdict(r) | {"rate": r.rate, "median_rate": r.median_rate, "ratio": r.ratio,
                                   "median_ratio": r.median_ratio,
                                   "target_met": None if r.raw else r.ratio >= TARGET} for r in shards.noisy],
        }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2))


def write_png(path: Path, title: str, rows: list[Row]) -> str:
    """Throughput against concurrency per process count, with the raw baselines as lines."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "no PNG: matplotlib is not installed (pip install 'finejobs[bench]')"
    fig, ax = plt.subplots(figsize=(8, 5))
    series: dict[int, list[Row]] = {}
    for r in rows:
        if r.group == "processing" and r.concurrency is not None and r.processes is not None:
            series.setdefault(r.processes, []).append(r)
    for processes, points in sorted(series.items()):
        points.sort(key=lambda r: r.concurrency or 0)
        ax.plot([p.concurrency or 0 for p in points], [p.rate for p in points], marker="o",
                label=f"finejobs, {processes} worker process{'es' if processes > 1 else ''}")
    for r in rows:
        if r.name.startswith("raw SKIP LOCKED loop"):
            ax.axhline(r.rate, linestyle="--", linewidth=1, color="grey")
            ax.annotate(r.name, (0.01, r.rate), xycoords=("axes fraction", "data"), fontsize=8,
                        va="bottom", color="grey")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("concurrency (handlers per worker process)")
    ax.set_ylabel("no-op jobs per second")
    ax.set_title(title, fontsize=9)
    ax.legend()
    ax.grid(True, which="both", alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return f"wrote {path}"
