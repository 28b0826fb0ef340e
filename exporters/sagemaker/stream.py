"""CloudWatch Metric Streams (JSON) delivered by Firehose to S3: a second source for the SageMaker poller.

Pipeline, once per poll: list the new S3 objects (ListObjectsV2 after the last key seen) -> GetObject (gunzip
when compressed) -> parse the JSON lines -> keep each (account, namespace, metric, dimensions, minute) once in a
bounded window -> answer the poller's queries from it exactly as GetMetricData would (`fetch` returns the same
FetchResult), so watermarks, counters, gauges and series names are the poller's own (cycle.py, series.py).

Streams are at-least-once: a minute seen again is a duplicate and is not counted twice; a minute that arrives
after the poller counted past it (or older than the window) is late. Both are counted, never added.
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import re
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from botocore.exceptions import BotoCoreError, ClientError
from prometheus_client.metrics_core import Metric

from .aws import Aws, describe_error
from .cloudwatch import FetchResult, Query
from .cycle import MAX_CATCH_UP

log = logging.getLogger(__name__)

MINUTE = 60.0
WINDOW = MAX_CATCH_UP               # seconds of minutes kept for dedup: as far back as a poll catches up
SECONDS_PER_MONTH = 730 * 3600.0
# us-east-1 list prices (docs/cost.md cites the pages)
PRICE_PER_UPDATE = 0.003 / 1000     # CloudWatch metric stream, per metric update
STATISTICS_PER_UPDATE = 5           # each started set of 5 additional statistics bills one more update
FIREHOSE_PRICE_PER_GB = 0.029       # Firehose direct PUT ingestion, records rounded up to 5 KB
S3_PUT_PRICE = 0.005 / 1000         # PUT/LIST requests
S3_GET_PRICE = 0.0004 / 1000        # GET requests

BASIC = {"Sum": "sum", "SampleCount": "count", "Minimum": "min", "Maximum": "max"}
_PERCENTILE = re.compile(r"^p(\d+(?:\.\d+)?)$", re.IGNORECASE)
_THRESHOLD = re.compile(r"^(TC|PR|TM|WM|TS)\((-?[\d.]*%?):(-?[\d.]*%?)\)$", re.IGNORECASE)


def _number(text: str) -> str:
    if not text or text.endswith("%"):
        return text
    return f"{float(text):.10g}"


def stat_key(stat: str) -> str:
    """One spelling for a statistic, so that a query's `TC(:250000)` finds a stream's `TC(:250000.0)`."""
    if stat in BASIC:
        return BASIC[stat]
    if match := _PERCENTILE.match(stat):
        return f"p{float(match.group(1)):.10g}"
    if match := _THRESHOLD.match(stat.replace(" ", "")):
        kind, lo, hi = match.groups()
        return f"{kind.upper()}({_number(lo)}:{_number(hi)})"
    return stat


@dataclass(frozen=True)
class Update:
    """One metric stream record: one metric, one minute, its statistics by stat_key."""
    account: str
    namespace: str
    metric: str
    dimensions: frozenset
    minute: float                    # epoch seconds of the minute's start
    values: dict

    @property
    def key(self) -> tuple:
        return (self.account, self.namespace, self.metric, self.dimensions)

    @property
    def billed(self) -> int:
        """Metric updates billed for it: one, plus one per started set of 5 additional statistics."""
        extra = len(set(self.values) - set(BASIC.values()))
        return 1 + math.ceil(extra / STATISTICS_PER_UPDATE)


def parse_record(record: dict) -> Update:
    """One JSON line of the metric streams JSON output format (raises ValueError/KeyError/TypeError if not)."""
    value = record["value"]
    if not isinstance(value, dict) or not {"sum", "count", "min", "max"} <= set(value):
        raise ValueError("value has no sum, count, min and max")
    dims = record.get("dimensions") or {}
    if not isinstance(dims, dict):
        raise ValueError("dimensions is not an object")
    return Update(str(record["account_id"]), str(record["namespace"]), str(record["metric_name"]),
                  frozenset((str(k), str(v)) for k, v in dims.items()),
                  math.floor(float(record["timestamp"]) / 1000 / MINUTE) * MINUTE,
                  {stat_key(k): float(v) for k, v in value.items()})


def parse(body: bytes) -> tuple[list[Update], int, int]:
    """An S3 object written by Firehose (gzip or not): (updates, lines that are not records, bytes of records)."""
    if body[:2] == b"\x1f\x8b":
        try:
            body = gzip.decompress(body)
        except (OSError, EOFError):
            return [], 1, 0
    updates, invalid = [], 0
    # Firehose concatenates records; the stream ends each JSON record with a newline
    for line in body.splitlines():
        if not line.strip():
            continue
        try:
            updates.append(parse_record(json.loads(line)))
        except (ValueError, KeyError, TypeError, AttributeError):
            invalid += 1
    return updates, invalid, len(body)


class Store:
    """The minutes of each metric seen in the window, each once; knows how far the poller has counted."""

    def __init__(self, window: float = WINDOW):
        self.window = window
        self.minutes: dict[tuple, dict[float, dict]] = defaultdict(dict)
        self.newest = -math.inf
        self.counted_until = -math.inf    # the end of the newest window the poller has fetched
        self.results: Counter = Counter()  # new | duplicate | late
        self.billed = 0                     # metric updates CloudWatch bills for what was received

    def add(self, update: Update) -> str:
        minutes = self.minutes[update.key]
        if update.minute in minutes:
            result = "duplicate"
        elif update.minute < max(self.counted_until, self.newest - self.window):
            result = "late"
        else:
            minutes[update.minute] = update.values
            self.newest = max(self.newest, update.minute)
            result = "new"
        if result != "duplicate":
            self.billed += update.billed
        self.results[result] += 1
        return result

    def prune(self) -> None:
        cutoff = self.newest - self.window
        for key in list(self.minutes):
            minutes = self.minutes[key]
            for minute in [m for m in minutes if m < cutoff]:
                del minutes[minute]
            if not minutes:
                del self.minutes[key]

    def value(self, account: str, query: Query, start: float, period: float) -> float | None:
        """The query's statistic over [start, start + period), as GetMetricData computes it (None: no data)."""
        minutes = self.minutes.get((account, query.namespace, query.metric, frozenset(query.dimensions)), {})
        first = math.ceil(start / MINUTE) * MINUTE
        inside = [minutes[m] for m in range(int(first), int(start + period), int(MINUTE)) if m in minutes]
        if not inside:
            return None
        stat = stat_key(query.stat)
        if stat in ("sum", "count"):
            return sum(v[stat] for v in inside)
        if stat == "min":
            return min(v["min"] for v in inside)
        if stat == "max":
            return max(v["max"] for v in inside)
        if query.stat == "Average":
            count = sum(v["count"] for v in inside)
            return sum(v["sum"] for v in inside) / count if count else None
        # percentiles and threshold statistics cannot be combined across minutes
        return inside[0].get(stat) if len(inside) == 1 else None

    def fetch(self, account: str, queries: Sequence[Query], start: float, end: float,
              period: float) -> FetchResult:
        result = FetchResult()
        starts = [start + i * period for i in range(int((end - start) // period))]
        for query in queries:
            points = [(s, v) for s in starts if (v := self.value(account, query, s, period)) is not None]
            result.values[query.key] = points
        self.counted_until = max(self.counted_until, end)
        return result


class StreamSource:
    """Reads one metric stream's S3 objects for one poller and answers its queries."""

    def __init__(self, aws: Aws, bucket: str, prefix: str = "", clock: Callable[[], float] = time.time):
        self.aws = aws
        self.bucket = bucket
        self.prefix = prefix
        self.clock = clock
        self.store = Store()
        self.last_key: str | None = None
        self.ok = True                   # the last read reached the newest object
        self.objects = 0
        self.bytes = 0                   # uncompressed bytes of records read (what Firehose ingested)
        self.invalid = 0                 # lines that are not metric stream records
        self.requests: Counter = Counter()  # S3 API -> calls (for the modelled cost)
        self.started: float | None = None
        self.lock = threading.Lock()

    def _call(self, api: str, **params) -> dict:
        self.requests[api] += 1
        return self.aws.call("s3", api, **params)

    def _new_keys(self) -> Iterable[str]:
        token, start_after = None, self.last_key
        while True:
            params = {"Bucket": self.bucket, "Prefix": self.prefix}
            if start_after:
                params["StartAfter"] = start_after
            if token:
                params["ContinuationToken"] = token
            page = self._call("ListObjectsV2", **params)
            yield from (obj["Key"] for obj in page.get("Contents") or [])
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return

    def read(self, now: float) -> bool:
        """Read every object delivered since the last read; False (and one log line) if S3 failed."""
        if self.started is None:
            self.started = now
        try:
            for key in self._new_keys():
                body = self._call("GetObject", Bucket=self.bucket, Key=key)["Body"].read()
                updates, invalid, size = parse(body)
                with self.lock:
                    for update in updates:
                        if self.store.add(update) == "late":
                            log.debug("late update %s %s at %s", update.metric, dict(update.dimensions),
                                      update.minute)
                    self.objects += 1
                    self.invalid += invalid
                    self.bytes += size
                if invalid:
                    log.warning("%s: s3://%s/%s: %d lines are not metric stream JSON records; skipped",
                                self.aws.target.name, self.bucket, key, invalid)
                self.last_key = key
        except (ClientError, BotoCoreError) as exc:
            if self.ok:
                log.error("%s: metric stream s3://%s/%s unreadable: %s; its metrics are not updated until it is",
                          self.aws.target.name, self.bucket, self.prefix, describe_error(exc))
            self.ok = False
            return False
        if not self.ok:
            log.info("%s: metric stream s3://%s/%s readable again", self.aws.target.name, self.bucket, self.prefix)
        self.ok = True
        with self.lock:
            self.store.prune()
        return True

    def fetch(self, account: str, queries: Sequence[Query], start: float, end: float,
              period: float) -> FetchResult:
        """Like cloudwatch.fetch; after a failed read every query fails, so no watermark moves past a gap."""
        if not self.ok:
            return FetchResult(failed={q.key for q in queries}, problems=1)
        with self.lock:
            return self.store.fetch(account, queries, start, end, period)

    def monthly_cost(self, now: float) -> dict[str, float]:
        """$/month at the rate seen since the first read: metric updates, Firehose ingestion, S3 requests."""
        elapsed = now - (self.started if self.started is not None else now)
        if elapsed <= 0:
            return {}
        scale = SECONDS_PER_MONTH / elapsed
        with self.lock:
            updates = self.store.billed * PRICE_PER_UPDATE
            firehose = self.bytes / 1e9 * FIREHOSE_PRICE_PER_GB
            s3 = self.requests["ListObjectsV2"] * S3_PUT_PRICE + self.requests["GetObject"] * S3_GET_PRICE
            # Firehose's own PUT of each object into the bucket is billed to the bucket owner as well
            s3 += self.objects * S3_PUT_PRICE
        return {"metric_updates": updates * scale, "firehose": firehose * scale, "s3_requests": s3 * scale}


def families(sources: list[tuple[dict, StreamSource]]) -> list[Metric]:
    """The self-metrics of the metric stream sources, labelled with their place {account, region}."""
    updates = Metric("mlscope_metric_stream_updates", "Metric stream updates read from S3, by result: new "
                     "(kept), duplicate (seen before: not counted again), late (after the exporter counted that "
                     "minute, or older than the window: not counted).", "counter")
    objects = Metric("mlscope_metric_stream_objects", "S3 objects of the metric stream read.", "counter")
    invalid = Metric("mlscope_metric_stream_invalid_records", "Lines of metric stream objects that are not "
                     "metric stream JSON records (skipped).", "counter")
    up = Metric("mlscope_metric_stream_up", "1 if the last read of the metric stream's S3 objects succeeded.",
                "gauge")
    cost = Metric("mlscope_metric_stream_cost_dollars_per_month", "Modelled monthly cost of the metric stream "
                  "at the rate seen since start, by part: metric_updates (CloudWatch), firehose (ingestion), "
                  "s3_requests.", "gauge")
    for place, source in sources:
        with source.lock:
            results = dict(source.store.results)
        for result in ("new", "duplicate", "late"):
            updates.add_sample("mlscope_metric_stream_updates_total", {**place, "result": result},
                               results.get(result, 0))
        objects.add_sample("mlscope_metric_stream_objects_total", place, source.objects)
        invalid.add_sample("mlscope_metric_stream_invalid_records_total", place, source.invalid)
        up.add_sample("mlscope_metric_stream_up", place, 1.0 if source.ok else 0.0)
        for part, dollars in source.monthly_cost(source.clock()).items():
            cost.add_sample(cost.name, {**place, "part": part}, dollars)
    return [updates, objects, invalid, up, cost] if sources else []
