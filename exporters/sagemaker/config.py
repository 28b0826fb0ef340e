"""Settings of `mlscope sagemaker-exporter` and the per-(account, region) targets they describe."""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from .discounts import Discounts, discounts
from .serverless import PROVISIONED_INFERENCE_PRICE_PER_GB_SECOND, PROVISIONED_PRICE_PER_GB_SECOND
from ..settings import (Config, Setting, SettingError, boolean, choice, duration, mapping, non_negative_number,
                        number, positive_duration, positive_int, regex, string, string_list)

_REGION_RE = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d+$")
_STAT_RE = re.compile(r"^p(\d{1,2}(?:\.\d+)?)$")
_ROLE_RE = re.compile(r"^arn:aws[a-z-]*:iam::(\d{12}):role/.+$")
_ACCOUNT_RE = re.compile(r"^\d{12}$")
# GetMetricStatistics requests per second per poller: a quarter of CloudWatch's default quota for it (400 per
# second per account and region), which Grafana, alarms and other tools share
DEFAULT_STATISTICS_RATE = 100.0
MIN_POLL_INTERVAL = 10.0  # seconds: CloudWatch has 1-minute data; faster polling only costs API calls


def _region(raw: Any) -> str:
    text = str(raw).strip()
    if not _REGION_RE.match(text):
        raise ValueError(f"{text!r} is not an AWS region name like us-east-1")
    return text


def regions(raw: Any) -> list[dict]:
    """A list of region names, or of mappings {region, endpoint_url} (file only); comma-separated from flags."""
    if isinstance(raw, str):
        raw = string_list(raw)
    if not isinstance(raw, list):
        raise ValueError("must be a list of AWS regions")
    out = []
    for item in raw:
        if isinstance(item, dict):
            unknown = set(item) - {"region", "endpoint_url"}
            if unknown or "region" not in item:
                raise ValueError("entries must be region names or mappings with keys region and endpoint_url")
            out.append({"region": _region(item["region"]), "endpoint_url": endpoint_url(item.get("endpoint_url"))})
        else:
            out.append({"region": _region(item), "endpoint_url": None})
    names = [r["region"] for r in out]
    if len(set(names)) != len(names):
        raise ValueError("lists a region twice")
    return out


def endpoint_url(raw: Any) -> str | None:
    """An http:// or https:// URL with a host (botocore only complains at the first call otherwise)."""
    if raw is None or raw == "":
        return None
    text = string(raw).strip()
    parsed = urlparse(text)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError(f"must be an http:// or https:// URL like http://127.0.0.1:5000, got {text!r}")
    try:
        parsed.port
    except ValueError:
        raise ValueError(f"has an invalid port: {text!r}") from None
    return text


def poll_interval(raw: Any) -> float:
    value = duration(raw)
    if value < MIN_POLL_INTERVAL:
        raise ValueError(f"must be at least {MIN_POLL_INTERVAL:g} seconds (CloudWatch data has 1-minute "
                         f"resolution), got {raw!r}")
    return value


def role_arn(raw: Any) -> str | None:
    if raw is None or raw == "":
        return None
    text = string(raw).strip()
    if not _ROLE_RE.match(text):
        raise ValueError(f"must be an IAM role ARN like arn:aws:iam::123456789012:role/NAME, got {text!r}")
    return text


def accounts(raw: Any) -> list[dict]:
    """File only: [{role_arn, external_id?, regions?}] — one poller per account and region."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ValueError("must be a list of mappings with role_arn (and optional external_id, regions)")
    out = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or "role_arn" not in item:
            raise ValueError(f"entry {i} must be a mapping with role_arn")
        unknown = set(item) - {"role_arn", "external_id", "regions"}
        if unknown:
            raise ValueError(f"entry {i}: unknown key {sorted(unknown)[0]!r}")
        try:
            out.append({"role_arn": role_arn(item["role_arn"]),
                        "external_id": None if item.get("external_id") is None else str(item["external_id"]),
                        "regions": regions(item["regions"]) if item.get("regions") is not None else None})
        except ValueError as exc:
            raise ValueError(f"entry {i}: {exc}") from None
    return out


def linked_accounts(raw: Any) -> bool | tuple[str, ...]:
    """CloudWatch cross-account observability: false (off), true (every source account linked to the monitoring
    account, found with ListMetrics), or a list of source account ids (comma-separated from a flag)."""
    if raw is None or raw == "" or raw is False:
        return False
    if raw is True or (isinstance(raw, str) and raw.strip().lower() in ("true", "false", "yes", "no", "on", "off")):
        return boolean(raw)
    try:
        return account_ids(raw) or False
    except ValueError as exc:
        raise ValueError(f"must be true, false or {exc}") from None


def account_ids(raw: Any) -> tuple[str, ...]:
    """A list of 12-digit AWS account ids (comma-separated from a flag)."""
    if isinstance(raw, bool) or not isinstance(raw, (str, list)):
        raise ValueError(f"a list of 12-digit AWS account ids, got {raw!r}")
    ids = string_list(raw)
    for item in ids:
        if not _ACCOUNT_RE.match(item):
            raise ValueError(f"a list of 12-digit AWS account ids (quote them in YAML), got {item!r}")
    if len(set(ids)) != len(ids):
        raise ValueError(f"a list of 12-digit AWS account ids, each once: {ids!r} has one twice")
    return tuple(ids)


def tag_filter(raw: Any) -> dict[str, re.Pattern]:
    """{tag key: value regex}; from a flag/env: key=regex,key2=regex2. Every key must match (AND)."""
    if raw is None or raw == "":
        return {}
    if isinstance(raw, str):
        pairs = {}
        for part in string_list(raw):
            key, sep, value = part.partition("=")
            if not sep or not key:
                raise ValueError(f"must be KEY=REGEX pairs separated by commas, got {part!r}")
            pairs[key] = value
        raw = pairs
    out = {}
    for key, value in mapping(raw).items():
        try:
            out[str(key)] = re.compile(".*" if value is None else str(value))
        except re.error as exc:
            raise ValueError(f"tag {key!r}: not a valid regular expression: {exc}") from None
    return out


def period(raw: Any) -> float:
    value = duration(raw)
    if value < 60 or value % 60:
        raise ValueError(f"must be a multiple of 60 seconds (SageMaker publishes 1-minute metrics), got {raw!r}")
    return value


def statistics(raw: Any) -> list[str]:
    """Percentile statistics for the latency quantile gauges, e.g. p50,p90,p99 (empty: none)."""
    items = string_list(raw)
    for item in items:
        if not _STAT_RE.match(item) or not 0 < float(item[1:]) < 100:
            raise ValueError(f"must be percentiles like p50, p90, p99 or p99.9, got {item!r}")
    if len(set(items)) != len(items):
        raise ValueError("lists a statistic twice")
    return items


def positive_rate(raw: Any) -> float:
    value = number(raw)
    if not value > 0 or math.isinf(value):
        raise ValueError(f"must be a number of requests per second above 0, got {raw!r}")
    return value


def quantile_label(stat: str) -> str:
    """p99 -> '0.99', p99.9 -> '0.999', p50 -> '0.5'."""
    return f"{float(stat[1:]) / 100:g}"


def prices(raw: Any) -> dict[str, Any]:
    """File only: {instance_type: $/hour} or {instance_type: {region: $/hour}}."""
    out: dict[str, Any] = {}
    for key, value in mapping(raw).items():
        if isinstance(value, dict):
            inner = {}
            for region_name, price in value.items():
                inner[_region(region_name)] = _price(key, price)
            out[str(key)] = inner
        else:
            out[str(key)] = _price(key, value)
    return out


def _price(key: Any, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{key}: must be a number of dollars per hour")
    try:
        price = float(value)
    except ValueError:
        raise ValueError(f"{key}: must be a number of dollars per hour, got {value!r}") from None
    if price < 0 or math.isnan(price):
        raise ValueError(f"{key}: must be zero or more, got {value!r}")
    return price


def optional_string(raw: Any) -> str | None:
    return None if raw is None or raw == "" else string(raw)


SETTINGS = [
    Setting("regions", regions, [], "AWS regions to poll, comma-separated (default: AWS_REGION)"),
    Setting("role_arn", role_arn, None, "IAM role to assume with STS (default: use the credentials as they are)"),
    Setting("external_id", optional_string, None, "external ID for the role assumption"),
    Setting("accounts", accounts, [], "several accounts: list of {role_arn, external_id, regions}", file_only=True),
    Setting("linked_accounts", linked_accounts, False, "CloudWatch cross-account observability: also poll the source "
            "accounts linked to this (monitoring) account, true for all or a comma-separated list of account ids"),
    Setting("endpoint_name_regex", regex, None, "only endpoints whose name matches this regex (re.search)"),
    Setting("endpoint_tags", tag_filter, {}, "only endpoints whose tags match, KEY=REGEX[,KEY=REGEX]"),
    Setting("poll_interval", poll_interval, 60.0, "how often to poll AWS, seconds or 1m (at least 10 s)"),
    Setting("period", period, 60.0, "CloudWatch period, a multiple of 60 s"),
    Setting("delay", duration, 180.0, "only periods that ended longer ago than this are settled and exported"),
    Setting("statistics", statistics, ["p50", "p95", "p99"], "latency percentiles, comma-separated"),
    Setting("idle_after", duration, 900.0, "a variant with no Invocations this long is idle: its other metrics "
            "are asked for every idle_poll_interval (Invocations still every poll)"),
    Setting("idle_poll_interval", period, 600.0, "how often idle variants' counters, and utilization of variants "
            "without traffic (averaged over it), are fetched; a multiple of 60 s"),
    Setting("list_metrics_interval", duration, 600.0, "refresh the ListMetrics pass (RecentlyActive=PT3H) this "
            "often; only listed metrics are asked for (0: no ListMetrics, ask for every metric)"),
    Setting("statistics_api", choice("auto", "get_metric_data"), "auto", "auto: a metric asked for 2 or more "
            "statistics (Sum and SampleCount, or percentiles) in one window is one GetMetricStatistics request (billed "
            "once) instead of a GetMetricData query per statistic; get_metric_data: GetMetricData only"),
    Setting("max_get_metric_statistics_per_second", positive_rate, DEFAULT_STATISTICS_RATE,
            "client-side cap on GetMetricStatistics requests per account and region (CloudWatch's default quota: "
            "400/s); the requests that do not fit in a poll interval at this rate go to GetMetricData"),
    Setting("endpoint_url", endpoint_url, None, "AWS endpoint override for every service (emulator), an http(s) URL"),
    Setting("inventory_interval", duration, 300.0, "re-describe unchanged endpoints at least this often"),
    Setting("price_table", optional_string, None, "instance price table CSV (default: the shipped one)"),
    Setting("prices", prices, {}, "price overrides {instance_type: $/h or {region: $/h}}", file_only=True),
    Setting("discounts", discounts, Discounts(), "discount off list prices {instance_types: {TYPE|GLOB: 30%}, "
            "accounts: {ID: 0.2}}", file_only=True),
    Setting("serverless_price_per_gb_second", non_negative_number, 0.00002,
            "serverless compute price, $ per GB-second of configured memory (us-east-1 list)"),
    Setting("serverless_price_per_request", non_negative_number, 0.0, "serverless price per request, $"),
    Setting("serverless_provisioned_price_per_gb_second", non_negative_number, PROVISIONED_PRICE_PER_GB_SECOND,
            "serverless provisioned concurrency, $ per GB-second provisioned (used or not)"),
    Setting("serverless_provisioned_inference_price_per_gb_second", non_negative_number,
            PROVISIONED_INFERENCE_PRICE_PER_GB_SECOND, "serverless compute served by provisioned concurrency, "
            "$ per GB-second"),
    Setting("aws_max_attempts", positive_int, 5, "attempts per AWS call (adaptive retries with backoff)"),
    Setting("aws_timeout", positive_duration, 10.0, "connect and read timeout per AWS request"),
]


@dataclass(frozen=True)
class Target:
    """One poller: an account (role or ambient credentials) in one region."""
    region: str
    endpoint_url: str | None = None
    role_arn: str | None = None
    external_id: str | None = None
    owning_account: str | None = None  # a source account read through the monitoring account's CloudWatch link
    monitor: bool = False              # its CloudWatch is a monitoring account's: linked accounts are read here

    @property
    def linked(self) -> bool:
        return self.owning_account is not None

    @property
    def account(self) -> str | None:
        if self.owning_account:
            return self.owning_account
        match = _ROLE_RE.match(self.role_arn or "")
        return match.group(1) if match else None

    @property
    def name(self) -> str:
        return f"sagemaker/{self.account}/{self.region}" if self.account else f"sagemaker/{self.region}"


def targets(cfg: Config, environ: dict[str, str] | None = None) -> list[Target]:
    environ = os.environ if environ is None else environ
    top = list(cfg.regions or [])
    if not top:
        default = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION")
        if default:
            top = regions(default)
    if not top and not any(a.get("regions") for a in cfg.accounts or []):
        raise SettingError("--regions: no region given (set regions in the config, --regions, MLSCOPE_REGIONS "
                           "or AWS_REGION)")
    if cfg.external_id and not cfg.role_arn:
        raise SettingError("--external-id: needs --role-arn")

    def url(entry: dict) -> str | None:
        return entry.get("endpoint_url") or cfg.endpoint_url

    out: list[Target] = []
    monitor = bool(cfg.linked_accounts)
    if cfg.accounts:
        if monitor and not cfg.role_arn:  # the monitoring account: these credentials as they are
            out += [Target(e["region"], url(e), monitor=True) for e in top]
        for acc in cfg.accounts:
            entries = acc["regions"] or top
            if not entries:
                raise SettingError("accounts: an account has no regions and no top-level regions are set")
            out += [Target(e["region"], url(e), acc["role_arn"], acc["external_id"]) for e in entries]
        if cfg.role_arn:
            out += [Target(e["region"], url(e), cfg.role_arn, cfg.external_id, monitor=monitor) for e in top]
    else:
        out = [Target(e["region"], url(e), cfg.role_arn, cfg.external_id, monitor=monitor) for e in top]
    names = [t.name for t in out]
    if len(set(names)) != len(names):
        raise SettingError("accounts: the same account and region is listed twice")
    if monitor and not top:
        raise SettingError("--linked-accounts: needs top-level regions (the monitoring account's)")
    return out


def linked_target(monitor: Target, account: str) -> Target:
    """A source account's target: read through `monitor`'s credentials and CloudWatch link."""
    return Target(monitor.region, monitor.endpoint_url, monitor.role_arn, monitor.external_id, owning_account=account)


def role_accounts(targets: list[Target], region: str) -> set[str]:
    """Accounts polled with a role of their own in `region`: not polled through a link as well (the role gives
    their inventory and cost)."""
    return {t.account for t in targets if t.region == region and t.role_arn and not t.monitor}
