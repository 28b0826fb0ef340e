"""GetMetricStatistics for metrics asked for several statistics of the same window: one request, one billed unit.

GetMetricData bills each metric-statistic requested; GetMetricStatistics bills each request, and one request
returns up to 5 standard statistics (`Statistics`) or up to 10 percentiles (`ExtendedStatistics`, p0.0-p100),
never both, and at most 1,440 datapoints. So ModelLatency {Sum, SampleCount} is one request instead of two
metrics, {p50, p95, p99} one instead of three. Everything else (single statistics, TC(...), linked accounts)
stays on GetMetricData, which takes 500 metrics per call.

One request per metric is thousands per cycle at 1,000 busy endpoints: they run on a small thread pool behind
a client-side rate cap (per poller, i.e. per account and region, like CloudWatch's quota).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import re
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Hashable, Sequence

from botocore.exceptions import BotoCoreError, ClientError

from .aws import MAX_CONNECTIONS, Aws, describe_error, is_credentials_error
from .cloudwatch import FetchResult, Query

log = logging.getLogger(__name__)

STANDARD = frozenset({"SampleCount", "Average", "Sum", "Minimum", "Maximum"})
PERCENTILE = re.compile(r"^p(\d{1,2}(\.\d+)?|100)$")
MAX_STANDARD = 5              # Statistics per request
MAX_PERCENTILES = 10          # ExtendedStatistics per request
MAX_DATAPOINTS = 1440         # per request; more is an error
WORKERS = MAX_CONNECTIONS     # concurrent requests per poller, one botocore connection each


def statistic_class(stat: str) -> str | None:
    """'standard' or 'extended' when GetMetricStatistics can ask for it, else None (TC(...), IQM, ...)."""
    if stat in STANDARD:
        return "standard"
    if PERCENTILE.match(stat):
        return "extended"
    return None


def plan(queries: Sequence[Query], start: float, end: float, period: float,
         budget: int | None) -> tuple[list[list[Query]], list[Query], int]:
    """Split one window's queries: (GetMetricStatistics requests, each a list of queries; the rest for
    GetMetricData; how many requests did not fit in `budget`).

    A request is made where one metric x dimension set asks for >= 2 statistics of one class; at most `budget`
    requests, in the order given (phase order: counters first); the overflow goes to GetMetricData. No budget
    (None): GetMetricData only.
    """
    if budget is None or math.ceil((end - start) / period) > MAX_DATAPOINTS:
        return [], list(queries), 0
    groups: dict[tuple, list[Query]] = {}
    rest: list[Query] = []
    for query in queries:
        cls = statistic_class(query.stat)
        # linked-account queries (AccountId) exist only in GetMetricData
        if cls is None or query.account_id:
            rest.append(query)
        else:
            groups.setdefault((query.namespace, query.metric, query.dimensions, cls), []).append(query)
    requests: list[list[Query]] = []
    overflow = 0
    for (_, _, _, cls), members in groups.items():
        if len(members) < 2 or len(members) > (MAX_STANDARD if cls == "standard" else MAX_PERCENTILES):
            rest += members
        elif len(requests) >= budget:
            rest += members
            overflow += 1
        else:
            requests.append(members)
    return requests, rest, overflow


class RateLimiter:
    """At most `rate` starts per second, spaced evenly (no bursts), shared by the pool's threads."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.interval = 0.0 if math.isinf(rate) else 1.0 / rate
        self.clock = clock
        self.sleep = sleep
        self._next = -math.inf
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = self.clock()
            slot = max(now, self._next)
            self._next = slot + self.interval
        if slot > now:
            self.sleep(slot - now)


def _utc(t: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc)


def request_params(members: Sequence[Query], start: float, end: float, period: float) -> dict:
    first = members[0]
    stats = [q.stat for q in members]
    key = "Statistics" if statistic_class(first.stat) == "standard" else "ExtendedStatistics"
    return {"Namespace": first.namespace, "MetricName": first.metric,
            "Dimensions": [{"Name": n, "Value": v} for n, v in first.dimensions],
            "StartTime": _utc(start), "EndTime": _utc(end), "Period": int(period), key: stats}


def datapoints(members: Sequence[Query], response: dict) -> dict[Hashable, list[tuple[float, float]]]:
    """{query key: [(period start, value)]} in time order (CloudWatch returns datapoints unordered)."""
    out: dict[Hashable, list[tuple[float, float]]] = {q.key: [] for q in members}
    for point in response.get("Datapoints") or []:
        ts = point["Timestamp"].timestamp()
        extended = point.get("ExtendedStatistics") or {}
        for q in members:
            v = point.get(q.stat) if q.stat in STANDARD else extended.get(q.stat)
            if v is not None:
                out[q.key].append((ts, float(v)))
    return {k: sorted(v) for k, v in out.items()}


def fetch(aws: Aws, requests: Sequence[Sequence[Query]], start: float, end: float, period: float,
          limiter: RateLimiter, workers: int = WORKERS) -> FetchResult:
    """One GetMetricStatistics request per entry (one billed unit each); after a failed one, those not yet
    started are not made (their keys fail, for the next cycle), like GetMetricData's calls."""
    result = FetchResult()
    lock = threading.Lock()
    region = aws.target.name

    def one(members: Sequence[Query]) -> None:
        if result.error is not None:
            with lock:
                result.failed.update(q.key for q in members)
            return
        limiter.wait()
        try:
            response = aws.call("cloudwatch", "GetMetricStatistics", metrics=Counter({members[0].kind: 1}),
                                **request_params(members, start, end, period))
        except (ClientError, BotoCoreError) as exc:
            with lock:
                result.failed.update(q.key for q in members)
                result.problems += 1
                if result.error is None:
                    result.error = exc
                    if not is_credentials_error(exc):
                        log.warning("%s: GetMetricStatistics failed for %s %s (kept for the next cycle, and the "
                                    "requests not yet made too): %s", region, members[0].metric,
                                    dict(members[0].dimensions), describe_error(exc))
            return
        values = datapoints(members, response)
        with lock:
            result.values.update(values)

    if requests:
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(requests))),
                                thread_name_prefix="mlscope-gms") as pool:
            list(pool.map(one, requests))
    return result
