"""Patch 11 of the AWS emulator (see patches.py): CloudWatch Metric Streams, which moto 5.2.5 lacks.

moto answers every metric-stream operation with "not implemented". This adds, per account and region, with
the API reference's shapes:
- PutMetricStream (Name, IncludeFilters or ExcludeFilters of {Namespace, MetricNames}, FirehoseArn, RoleArn,
  OutputFormat, StatisticsConfigurations, Tags): creates the stream `running`, or updates it keeping its
  state. Errors as CloudWatch: IncludeFilters with ExcludeFilters -> InvalidParameterCombination; a bad name,
  an OutputFormat other than json (the only format this emulator writes), an unknown additional statistic or
  a FirehoseArn that is not a delivery stream ARN -> InvalidParameterValue.
- GetMetricStream (ResourceNotFoundException when missing), ListMetricStreams (MaxResults, NextToken),
  DeleteMetricStream (succeeds for a missing name, as CloudWatch does).
- `pump(now)`: what CloudWatch does every minute. For each running stream, each stored metric that its
  filters include and each clock minute that ended at least a minute ago and was not streamed yet (from two hours before the stream was
  created), one JSON record in the "Metric streams output in JSON format" shape: metric_stream_name,
  account_id, region, namespace, metric_name, dimensions, timestamp (ms, the minute's start),
  value {max, min, sum, count, and the configured additional statistics computed from the stored samples
  with the same code as GetMetricData: patches.compute_stat}, unit. The records go through the stream's
  Firehose delivery stream (moto's PutRecordBatch -> one S3 object per batch of up to 500 records).
  A minute is streamed once: data put later for a minute already streamed is not sent again.
  The emulator runs `pump` every minute (EmulatorServer); tests call it directly.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import re
import time
from typing import Any

from moto.cloudwatch import models as cw_models
from moto.cloudwatch import responses as cw_responses
from moto.cloudwatch.exceptions import InvalidParameterCombination, InvalidParameterValue, ResourceNotFoundException
from moto.core.responses import ActionResult, EmptyResult
from moto.firehose import models as fh_models

from . import patches

log = logging.getLogger("mlscope.demo.aws")

NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
FIREHOSE_ARN_RE = re.compile(r"^arn:aws[a-z-]*:firehose:([a-z0-9-]+):(\d{12}):deliverystream/([A-Za-z0-9_.-]+)$")
LOOKBACK = 2 * 3600       # seconds before a stream's creation whose minutes it still streams
MAX_RECORDS = 500         # Firehose PutRecordBatch's limit
SETTLE = 60               # a minute is streamed once it ended this long ago (late writers, as CloudWatch waits)
BASIC = (("max", "Maximum"), ("min", "Minimum"), ("sum", "Sum"), ("count", "SampleCount"))


def _streams(backend: Any) -> dict[str, dict]:
    return backend.__dict__.setdefault("_mlscope_metric_streams", {})


def _filters(raw: Any) -> list[dict]:
    return [{"Namespace": f.get("Namespace"), **({"MetricNames": list(f["MetricNames"])} if f.get("MetricNames")
                                                 else {})} for f in raw or []]


def put_metric_stream(self: Any) -> ActionResult:
    params = self._get_params()
    backend = self.cloudwatch_backend
    name = params.get("Name") or ""
    if not NAME_RE.match(name):
        raise InvalidParameterValue(f"The value {name!r} for parameter Name is invalid.")
    include, exclude = _filters(params.get("IncludeFilters")), _filters(params.get("ExcludeFilters"))
    if include and exclude:
        raise InvalidParameterCombination("The parameters IncludeFilters and ExcludeFilters are mutually exclusive.")
    output = params.get("OutputFormat")
    if output != "json":
        raise InvalidParameterValue(f"The value {output!r} for parameter OutputFormat is invalid: this emulator "
                                    "writes json only.")
    firehose = params.get("FirehoseArn") or ""
    if not FIREHOSE_ARN_RE.match(firehose):
        raise InvalidParameterValue(f"The value {firehose!r} for parameter FirehoseArn is invalid.")
    statistics = []
    for config in params.get("StatisticsConfigurations") or []:
        stats = list(config.get("AdditionalStatistics") or [])
        for stat in stats:
            if not patches.valid_stat(stat) or stat in patches.BASIC_STATS:
                raise InvalidParameterValue(f"The value {stat!r} for parameter AdditionalStatistics is invalid.")
        statistics.append({"IncludeMetrics": [{"Namespace": m["Namespace"], "MetricName": m["MetricName"]}
                                              for m in config.get("IncludeMetrics") or []],
                           "AdditionalStatistics": stats})
    now = dt.datetime.now(dt.timezone.utc)
    old = _streams(backend).get(name)
    arn = f"arn:aws:cloudwatch:{backend.region_name}:{backend.account_id}:metric-stream/{name}"
    _streams(backend)[name] = {
        "Arn": arn, "Name": name, "IncludeFilters": include, "ExcludeFilters": exclude, "FirehoseArn": firehose,
        "RoleArn": params.get("RoleArn"), "State": old["State"] if old else "running",
        "CreationDate": old["CreationDate"] if old else now, "LastUpdateDate": now, "OutputFormat": output,
        "StatisticsConfigurations": statistics, "IncludeLinkedAccountsMetrics": False,
        "_sent": old["_sent"] if old else {},
    }
    return ActionResult({"Arn": arn})


def _get(backend: Any, name: str) -> dict:
    try:
        return _streams(backend)[name]
    except KeyError:
        raise ResourceNotFoundException() from None


def _public(stream: dict) -> dict:
    return {k: v for k, v in stream.items() if not k.startswith("_")}


def get_metric_stream(self: Any) -> ActionResult:
    return ActionResult(_public(_get(self.cloudwatch_backend, self._get_param("Name"))))


def list_metric_streams(self: Any) -> ActionResult:
    streams = sorted(_streams(self.cloudwatch_backend).values(), key=lambda s: s["Name"])
    start = int(self._get_param("NextToken") or 0)
    size = int(self._get_param("MaxResults") or 500)
    keys = ("Arn", "CreationDate", "LastUpdateDate", "Name", "FirehoseArn", "State", "OutputFormat")
    result: dict[str, Any] = {"Entries": [{k: s[k] for k in keys} for s in streams[start:start + size]]}
    if start + size < len(streams):
        result["NextToken"] = str(start + size)
    return ActionResult(result)


def delete_metric_stream(self: Any) -> EmptyResult:
    _streams(self.cloudwatch_backend).pop(self._get_param("Name"), None)
    return EmptyResult()


def _included(stream: dict, namespace: str, metric: str) -> bool:
    def match(f: dict) -> bool:
        return f["Namespace"] == namespace and (not f.get("MetricNames") or metric in f["MetricNames"])
    if stream["IncludeFilters"]:
        return any(match(f) for f in stream["IncludeFilters"])
    return not any(match(f) for f in stream["ExcludeFilters"])


def _additional(stream: dict, namespace: str, metric: str) -> list[str]:
    return [stat for config in stream["StatisticsConfigurations"]
            if any(m["Namespace"] == namespace and m["MetricName"] == metric for m in config["IncludeMetrics"])
            for stat in config["AdditionalStatistics"]]


def record(stream: dict, backend: Any, key: tuple, minute: float, datums: list) -> dict:
    """One metric's minute as a JSON-format metric stream record."""
    namespace, metric, dims = key
    value = {field: patches.compute_stat(datums, stat) for field, stat in BASIC}
    for stat in _additional(stream, namespace, metric):
        computed = patches.compute_stat(datums, stat)
        if computed is not None:
            value[stat] = computed
    return {"metric_stream_name": stream["Name"], "account_id": backend.account_id, "region": backend.region_name,
            "namespace": namespace, "metric_name": metric, "dimensions": dict(sorted(dims)),
            "timestamp": int(minute * 1000), "value": value, "unit": datums[0].unit or "None"}


def _deliver(stream: dict, records: list[dict]) -> None:
    region, account, name = FIREHOSE_ARN_RE.match(stream["FirehoseArn"]).groups()
    firehose = fh_models.firehose_backends[account][region]
    for i in range(0, len(records), MAX_RECORDS):
        batch = [{"Data": (json.dumps(r, separators=(",", ":")) + "\n").encode()} for r in records[i:i + MAX_RECORDS]]
        firehose.put_record_batch(name, batch)


def pump(now: float | None = None) -> int:
    """Stream every complete minute not streamed yet; returns the number of records delivered."""
    now = time.time() if now is None else now
    complete = math.floor(now / 60) * 60 - SETTLE  # minutes before this one are complete and settled
    delivered = 0
    for account in list(cw_models.cloudwatch_backends):
        for region in list(cw_models.cloudwatch_backends[account]):
            backend = cw_models.cloudwatch_backends[account][region]
            streams = [s for s in _streams(backend).values() if s["State"] == "running"]
            if not streams:
                continue
            with patches._LOCK:
                index = {k: list(datums) for k, (_, datums) in patches._index(backend).items()}
            for stream in streams:
                since = stream["CreationDate"].timestamp() - LOOKBACK
                sent = stream["_sent"]
                records = []
                for key, datums in index.items():
                    if not _included(stream, key[0], key[1]):
                        continue
                    by_minute: dict[float, list] = {}
                    for d in datums:
                        minute = math.floor(d.ts / 60) * 60
                        if since <= minute < complete and minute not in sent.get(key, set()):
                            by_minute.setdefault(minute, []).append(d)
                    for minute, inside in sorted(by_minute.items()):
                        records.append(record(stream, backend, key, minute, inside))
                        sent.setdefault(key, set()).add(minute)
                for key in list(sent):  # bounded: forget minutes older than the retention
                    sent[key] = {m for m in sent[key] if m >= now - patches._RETENTION[0]}
                if records:
                    try:
                        _deliver(stream, records)
                    except Exception as exc:  # a missing delivery stream or bucket: as CloudWatch, drop and go on
                        log.warning("metric stream %s: delivery failed: %s", stream["Name"], exc)
                        continue
                    delivered += len(records)
    return delivered


def targets() -> list[tuple[type, str, Any]]:
    """(owner, attribute, patch) for patches.apply(), which installs them and puts moto back on undo()."""
    return [(cw_responses.CloudWatchResponse, handler.__name__, handler)
            for handler in (put_metric_stream, get_metric_stream, list_metric_streams, delete_metric_stream)]
