"""Percentiles and the summary of repeated runs."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Sequence


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100): a value that was actually observed."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def summary(values: Sequence[float]) -> dict:
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p99": percentile(values, 99),
        "max": max(values) if values else math.nan,
    }


def over_runs(runs: list[dict]) -> dict:
    """Median of each run's p50 and p99 (runs are repeated to show the spread)."""
    return {
        "runs": runs,
        "p50": statistics.median(r["p50"] for r in runs),
        "p99": statistics.median(r["p99"] for r in runs),
        "p99_worst_run": max(r["p99"] for r in runs),
    }


def time_page(client, url: str, requests: int) -> tuple[dict, str]:
    """``requests`` timed GETs of ``url`` after three unmeasured; the summary in ms and
    the last page."""
    for _ in range(3):  # warm the connection pool, template cache and PostgreSQL's caches
        client.get(url)
    times = []
    for _ in range(requests):
        t0 = time.perf_counter()
        response = client.get(url)
        body = response.get_data()
        times.append((time.perf_counter() - t0) * 1000)
        assert response.status_code == 200, response.status_code
    return summary(times), body.decode()
