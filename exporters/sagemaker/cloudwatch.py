"""GetMetricData: period alignment, batching (500 queries per call), NextToken, PartialData and Messages."""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Hashable, Iterable, Iterator, Sequence

from botocore.exceptions import BotoCoreError, ClientError

from .aws import Aws, describe_error, is_credentials_error

log = logging.getLogger(__name__)

MAX_QUERIES = 500  # GetMetricData's limit per call


@dataclass(frozen=True)
class Query:
    key: Hashable           # what the caller wants back, e.g. (endpoint, variant, series)
    namespace: str
    metric: str
    stat: str
    dimensions: tuple[tuple[str, str], ...]
    kind: str = "counts"    # what the query is for, in mlscope_cloudwatch_metrics_requested_total{kind}
    account_id: str | None = None  # a linked source account's metric, read in the monitoring account


@dataclass
class FetchResult:
    values: dict[Hashable, list[tuple[float, float]]] = field(default_factory=dict)  # key -> [(period start, v)]
    failed: set = field(default_factory=set)       # keys with no complete answer: try again next cycle
    error: BaseException | None = None             # the call failure that stopped this fetch, if any
    problems: int = 0                              # per-query or per-call problems (logged and counted)


def align_down(t: float, period: float) -> float:
    """The start of the period that contains t (CloudWatch periods start on multiples of the period)."""
    return math.floor(t / period) * period


def settled_end(now: float, delay: float, period: float) -> float:
    """End of the newest period that ended at least `delay` seconds ago: periods before it are settled."""
    return align_down(now - delay, period)


def batches(items: Sequence, size: int = MAX_QUERIES) -> Iterator[Sequence]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _utc(t: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc)


def request_params(queries: Sequence[Query], start: float, end: float, period: float) -> dict:
    return {
        "MetricDataQueries": [
            {"Id": f"q{i}", "ReturnData": True,
             "MetricStat": {"Metric": {"Namespace": q.namespace, "MetricName": q.metric,
                                       "Dimensions": [{"Name": n, "Value": v} for n, v in q.dimensions]},
                            "Period": int(period), "Stat": q.stat},
             **({"AccountId": q.account_id} if q.account_id else {})}
            for i, q in enumerate(queries)
        ],
        "StartTime": _utc(start), "EndTime": _utc(end), "ScanBy": "TimestampAscending",
    }


def fetch(aws: Aws, queries: Sequence[Query], start: float, end: float, period: float) -> FetchResult:
    """Fetch [start, end) for all queries, 500 per call; a failed call stops the rest (they count as failed)."""
    result = FetchResult()
    region = aws.target.name
    chunks = list(batches(queries))
    for index, chunk in enumerate(chunks):
        params = request_params(chunk, start, end, period)
        by_id = {f"q{i}": q for i, q in enumerate(chunk)}
        points: dict[str, list[tuple[float, float]]] = defaultdict(list)
        status: dict[str, str] = {}
        token = None
        try:
            while True:
                resp = aws.call("cloudwatch", "GetMetricData", metrics=Counter(q.kind for q in chunk),
                                **params, **({"NextToken": token} if token else {}))
                for msg in resp.get("Messages") or []:
                    result.problems += 1
                    aws.stats.count_error("GetMetricData", str(msg.get("Code") or "Message"))
                    log.warning("%s: GetMetricData message %s: %s", region, msg.get("Code"), msg.get("Value"))
                for r in resp.get("MetricDataResults", []):
                    qid = r.get("Id")
                    if qid not in by_id:
                        continue
                    points[qid] += [(ts.timestamp(), float(v)) for ts, v in zip(r.get("Timestamps", []),
                                                                               r.get("Values", []))]
                    status[qid] = r.get("StatusCode", "Complete")
                    for msg in r.get("Messages") or []:
                        result.problems += 1
                        aws.stats.count_error("GetMetricData", str(msg.get("Code") or "Message"))
                        log.warning("%s: GetMetricData %s %s: message %s: %s", region, by_id[qid].metric,
                                    dict(by_id[qid].dimensions), msg.get("Code"), msg.get("Value"))
                token = resp.get("NextToken")
                if not token:
                    break
        except (ClientError, BotoCoreError) as exc:
            result.error = exc
            result.problems += 1
            for rest in chunks[index:]:
                result.failed.update(q.key for q in rest)
            if not is_credentials_error(exc):
                log.warning("%s: GetMetricData failed (%d of %d queries not fetched, kept for the next cycle): %s",
                            region, sum(len(c) for c in chunks[index:]), len(queries), describe_error(exc))
            return result
        incomplete = defaultdict(int)
        for qid, query in by_id.items():
            code = status.get(qid)
            if code == "Complete":
                result.values[query.key] = sorted(points[qid])
            else:
                # PartialData left after the last NextToken, InternalError, Forbidden, or no answer at all.
                code = code or "Missing"
                incomplete[code] += 1
                result.failed.add(query.key)
        for code, n in incomplete.items():
            result.problems += n
            aws.stats.count_error("GetMetricData", code, n)
            log.warning("%s: GetMetricData: %d queries answered %s; they are kept for the next cycle",
                        region, n, code)
    return result


def group_by_start(items: Iterable[tuple[float, Query]]) -> dict[float, list[Query]]:
    """One GetMetricData window per distinct start time (all calls end at the same settled end)."""
    groups: dict[float, list[Query]] = defaultdict(list)
    for start, query in items:
        groups[start].append(query)
    return dict(sorted(groups.items()))
